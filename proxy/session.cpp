#include "proxy/session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "protocol/bytes.hpp"
#include "protocol/encode.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "protocol/read_buffer.hpp"
#include "protocol/sqlstate.hpp"
#include "protocol/startup.hpp"
#include "proxy/logging.hpp"
#include "proxy/masked_flow.hpp"
#include "proxy/out_batch.hpp"
#include "proxy/ring_queue.hpp"
#include "proxy/stream.hpp"
#include "proxy/upstream.hpp"

namespace pgveil::proxy {

namespace {

using namespace boost::asio::experimental::awaitable_operators;
using protocol::Message;
namespace msg = protocol::msg;
namespace sqlstate = protocol::sqlstate;

constexpr auto kUse = asio::as_tuple(asio::use_awaitable);
// Authentication messages (SASL tokens, passwords) are small; PostgreSQL caps SASL at 64 kB.
constexpr std::uint32_t kMaxAuthMessage = 1u << 17;
constexpr std::size_t kClientBufferInitial = 8 << 10;
constexpr std::size_t kServerBufferInitial = 16 << 10;
constexpr std::size_t kBufferAdaptiveMax = 256 << 10;

// Why a session ended: decides the log level and what the client is told.
enum class CloseReason {
  ClientClosed,
  ClientTerminated,
  ServerClosed,
  ClientProtocolError,
  ServerProtocolError,
  StartupRefused,
  UpstreamUnavailable,
  AuthFailed,
  StartupTimeout,
  Shutdown,
  CancelRequest,
};

const char* reasonName(CloseReason r) {
  switch (r) {
    case CloseReason::ClientClosed: return "client_closed";
    case CloseReason::ClientTerminated: return "client_terminated";
    case CloseReason::ServerClosed: return "server_closed";
    case CloseReason::ClientProtocolError: return "client_protocol_error";
    case CloseReason::ServerProtocolError: return "server_protocol_error";
    case CloseReason::StartupRefused: return "startup_refused";
    case CloseReason::UpstreamUnavailable: return "upstream_unavailable";
    case CloseReason::AuthFailed: return "auth_failed";
    case CloseReason::StartupTimeout: return "startup_timeout";
    case CloseReason::Shutdown: return "shutdown";
    case CloseReason::CancelRequest: return "cancel_request";
  }
  return "unknown";
}

bool isFrontendType(char t) {
  switch (t) {
    case msg::kQuery: case msg::kParse: case msg::kBind: case msg::kDescribe: case msg::kExecute:
    case msg::kSync: case msg::kFlush: case msg::kClose: case msg::kTerminate: case msg::kPassword:
    case msg::kFunctionCall: case msg::kCopyData: case msg::kCopyDone: case msg::kCopyFail:
      return true;
    default:
      return false;
  }
}

bool isBackendType(char t) {
  switch (t) {
    case msg::kAuthentication: case msg::kBackendKeyData: case msg::kParameterStatus:
    case msg::kReadyForQuery: case msg::kRowDescription: case msg::kDataRow: case msg::kCommandComplete:
    case msg::kErrorResponse: case msg::kNoticeResponse: case msg::kNotification: case msg::kParseComplete:
    case msg::kBindComplete: case msg::kCloseComplete: case msg::kNoData: case msg::kPortalSuspended:
    case msg::kParameterDescription: case msg::kEmptyQuery: case msg::kCopyInResponse:
    case msg::kCopyOutResponse: case msg::kCopyBothResponse: case msg::kNegotiateProtocol:
    case msg::kFunctionCallResponse: case msg::kCopyData: case msg::kCopyDone:
      return true;
    default:
      return false;
  }
}

// Frontend messages streamed through without being buffered whole: their content is not
// inspected, and they can legitimately be large.
bool clientMayStream(char t) {
  return t == msg::kCopyData || t == msg::kBind || t == msg::kFunctionCall || t == msg::kExecute ||
         t == msg::kDescribe || t == msg::kClose;
}
// Backend messages streamed through without being buffered whole.
bool serverMayStream(char t) { return t == msg::kDataRow || t == msg::kCopyData; }

}  // namespace

class Session {
 public:
  Session(SharedState& shared, Worker& worker, tcp::socket socket)
      : shared_(shared),
        worker_(worker),
        config_(shared.config),
        client_(std::move(socket)),
        clientIn_(kClientBufferInitial, kBufferAdaptiveMax),
        serverIn_(kServerBufferInitial, kBufferAdaptiveMax),
        id_(shared.nextSessionId.fetch_add(1)),
        start_(std::chrono::steady_clock::now()) {
    shared_.activeClients.fetch_add(1);
    shared_.totalSessions.fetch_add(1);
    worker_.sessions.insert(this);
    error_code ec;
    auto ep = client_.socket().remote_endpoint(ec);
    if (!ec) clientAddr_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    client_.socket().set_option(tcp::no_delay(true), ec);
  }

  ~Session() {
    if (info_) {
      std::lock_guard lock(shared_.sessionsMutex);
      shared_.sessionInfos.erase(id_);
    }
    if (backendKey_) shared_.cancels.remove(backendKey_->first, backendKey_->second);
    worker_.sessions.erase(this);
    shared_.activeClients.fetch_sub(1);
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  asio::awaitable<void> run();

  [[nodiscard]] std::uint64_t id() const { return id_; }

  void wakeReadersIfReset() {
    client_.wakeReaderIfReset();
    if (server_) server_->wakeReaderIfReset();
  }

  void terminate() {
    terminating_ = true;
    client_.cancel();
    if (server_) server_->cancel();
  }

  // After a reload: a session on the plain relay whose role the new rules inspect cannot be
  // switched mid-stream, so it is ended (fail closed) and reconnects under the new rules.
  void onReload(const Rules& rules) {
    if (flow_ || !authenticated_ || !info_) return;
    std::string cn = client_.peerCommonName();
    std::shared_ptr<const masking::Policy> p = rules.effective(rules.policies->forRole(user_, catalog_.get(), cn));
    const auto& cfg = rules.policies->config();
    // Without a catalog group membership is unknown: only a role named in the rules (or mapped
    // from its certificate) can be judged; any other plain session is ended when masking is on.
    bool judged = catalog_ || cfg.classify.empty() || cfg.roles.count(user_) > 0 ||
                  (!cn.empty() && cfg.clientCertRoles.count(cn) > 0);
    if (!judged || rules.needsInspection(*p, user_)) {
      spdlog::warn("session {} ended by a configuration reload: user \"{}\" is now inspected (role policy {})", id_,
                   logSafe(user_), p->role());
      reloadEnded_ = true;
      terminate();
    }
  }

 private:
  asio::awaitable<bool> startupPhase();
  asio::awaitable<bool> readStartup(protocol::StartupPacket& out);
  asio::awaitable<void> forwardCancel(std::int32_t pid, std::int32_t key);
  asio::awaitable<void> sendCancel(std::int32_t pid, std::int32_t key);
  asio::awaitable<void> cancelAfterBreach();

 public:
  asio::awaitable<void> waitForCancels();

 private:
  asio::awaitable<bool> connectUpstream();
  asio::awaitable<bool> authenticate(const protocol::StartupPacket& sp);
  asio::awaitable<bool> choosePolicy(const protocol::StartupPacket& sp);
  asio::awaitable<void> clientToServer();
  asio::awaitable<void> serverToClient();
  asio::awaitable<std::tuple<error_code, std::size_t>> readFrom(Stream& s, protocol::ReadBuffer& buf, std::size_t want,
                                                               OutBatch& out);
  void noteBuffers() {
    if (info_) info_->bufferBytes.store(clientIn_.heapBytes() + serverIn_.heapBytes(), std::memory_order_relaxed);
  }
  bool scanClient(OutBatch& out, bool& terminated);
  bool scanServer(OutBatch& out);
  asio::awaitable<void> idleForever();
  asio::awaitable<void> fatalToClient(const char* code, std::string_view message);
  std::string encodeFatal(const char* code, std::string_view message) const;
  void logClose() const;
  // In the relay, the direction that stops first decides why the session ends; the other
  // direction is then cancelled and must not overwrite it.
  void setRelayReason(CloseReason r) {
    if (!relayReasonSet_) reason_ = r;
    relayReasonSet_ = true;
  }

  SharedState& shared_;
  Worker& worker_;
  std::shared_ptr<const config::Config> config_;
  Stream client_;
  std::optional<Stream> server_;
  protocol::ReadBuffer clientIn_;
  protocol::ReadBuffer serverIn_;
  std::uint64_t id_;
  std::chrono::steady_clock::time_point start_;
  std::string clientAddr_;
  std::string user_;
  std::string database_;
  std::string appName_;
  std::uint64_t bytesFromClient_ = 0;
  std::uint64_t bytesToClient_ = 0;
  CloseReason reason_ = CloseReason::ClientClosed;
  std::optional<std::pair<std::int32_t, std::int32_t>> backendKey_;
  bool clientTlsDone_ = false;
  bool authenticated_ = false;
  bool terminating_ = false;
  bool relayReasonSet_ = false;
  std::size_t clientStreamLeft_ = 0;  // bytes of a streamed client message still to forward
  std::size_t serverStreamLeft_ = 0;  // bytes of a streamed server message still to forward
  std::size_t clientWant_ = 0;        // capacity needed for a client message inspected whole
  std::size_t serverWant_ = 0;
  std::string pendingFatal_;  // error for the client, sent once the relay has stopped
  char txStatus_ = 'I';
  char lastServerType_ = 0;
  // Masking: null policy_ or flow_ means the role is unmasked and bytes are relayed unchanged.
  std::shared_ptr<const masking::Policy> policy_;
  std::shared_ptr<const masking::Catalog> catalog_;
  std::unique_ptr<MaskedFlow> flow_;
  std::shared_ptr<SessionInfo> info_;
  std::shared_ptr<const Rules> rules_;
  bool reloadEnded_ = false;
  // A CancelRequest pgveil sent after a limit breach: the client's next messages wait until the
  // server has taken it, so that it cannot cancel the next query instead.
  int cancelsInFlight_ = 0;
  std::optional<asio::steady_timer> cancelDone_;
  // When each Query/Sync/FunctionCall went upstream, for the latency histogram (one
  // ReadyForQuery answers each).
  // A ring: nothing allocated before the first query (a deque takes 576 bytes at construction).
  RingQueue<std::pair<char, std::chrono::steady_clock::time_point>> pendingQueries_;
  bool copyIn_ = false;  // the server is in COPY FROM STDIN: it ignores Sync
};

std::string Session::encodeFatal(const char* code, std::string_view message) const {
  std::string out;
  protocol::appendErrorResponse(out, {.severity = "FATAL", .sqlstate = code, .message = message});
  return out;
}

asio::awaitable<void> Session::fatalToClient(const char* code, std::string_view message) {
  auto bytes = encodeFatal(code, message);
  auto ec = co_await client_.writeAll(bytes);
  if (!ec) bytesToClient_ += bytes.size();
}

asio::awaitable<void> Session::idleForever() {
  asio::steady_timer t(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
  co_await t.async_wait(kUse);
}

asio::awaitable<void> Session::run() {
  auto exec = co_await asio::this_coro::executor;
  asio::steady_timer timer(exec, config_->connections.startupTimeout);
  auto started = co_await (startupPhase() || timer.async_wait(kUse));
  bool ok = started.index() == 0 && std::get<0>(started);
  if (started.index() == 1) {
    reason_ = terminating_ ? CloseReason::Shutdown : CloseReason::StartupTimeout;
    // Only when the client is not in the middle of a TLS handshake can it read our message.
    if (!client_.isTls() || clientTlsDone_) {
      co_await fatalToClient(terminating_ ? sqlstate::kAdminShutdown : sqlstate::kProtocolViolation,
                             terminating_ ? "terminating connection due to administrator command"
                                          : "pgveil: canceling authentication due to timeout");
    }
  }
  if (ok && terminating_) {
    ok = false;
    reason_ = CloseReason::Shutdown;
    co_await fatalToClient(sqlstate::kAdminShutdown, "terminating connection due to administrator command");
  }
  if (ok) {
    spdlog::info("session {} ready user=\"{}\" database=\"{}\" application_name=\"{}\" client={} tls={}", id_,
                 logSafe(user_), logSafe(database_), logSafe(appName_), clientAddr_, client_.isTls());
    co_await (clientToServer() || serverToClient());
    // The client's output is at a message boundary unless a streamed message was cut off.
    bool aligned = serverStreamLeft_ == 0;
    if (terminating_) {
      reason_ = CloseReason::Shutdown;
      pendingFatal_ = encodeFatal(sqlstate::kAdminShutdown,
                                  reloadEnded_ ? "terminating connection due to administrator command: pgveil's "
                                                 "configuration was reloaded and this role is now inspected; reconnect"
                                               : "terminating connection due to administrator command");
    } else if (reason_ == CloseReason::ServerClosed && lastServerType_ != msg::kErrorResponse) {
      pendingFatal_ = encodeFatal(sqlstate::kConnectionFailure, "pgveil: server closed the connection unexpectedly");
    }
    if (aligned && !pendingFatal_.empty()) {
      auto ec = co_await client_.writeAll(pendingFatal_);
      if (!ec) bytesToClient_ += pendingFatal_.size();
    }
    if (server_ && reason_ != CloseReason::ServerClosed && reason_ != CloseReason::ClientTerminated) {
      // Tell the server we are leaving so it does not log an unexpected EOF; bounded by the
      // socket buffer, never waits on a dead peer because the write is tiny.
      static constexpr char kTerminate[] = {'X', 0, 0, 0, 4};
      if (clientStreamLeft_ == 0) co_await server_->writeAll(std::string_view(kTerminate, 5));
    }
  }
  if (server_) server_->close();
  client_.close();
  logClose();
}

void Session::logClose() const {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_).count();
  if (reason_ == CloseReason::CancelRequest) {
    spdlog::debug("session {} cancel request from {}", id_, clientAddr_);
    return;
  }
  auto level = spdlog::level::info;
  if (reason_ == CloseReason::ClientProtocolError || reason_ == CloseReason::ServerProtocolError ||
      reason_ == CloseReason::UpstreamUnavailable || reason_ == CloseReason::StartupTimeout) {
    level = spdlog::level::warn;
  }
  spdlog::log(level,
              "session {} closed user=\"{}\" database=\"{}\" application_name=\"{}\" client={} duration_ms={} "
              "bytes_in={} bytes_out={} reason={}",
              id_, logSafe(user_), logSafe(database_), logSafe(appName_), clientAddr_, ms, bytesFromClient_,
              bytesToClient_, reasonName(reason_));
}

asio::awaitable<bool> Session::readStartup(protocol::StartupPacket& out) {
  for (;;) {
    auto data = clientIn_.data();
    std::uint32_t len = 0;
    auto st = protocol::peekStartupLength(data, protocol::kMaxStartupPacket, len);
    if (st == protocol::StartupStatus::TooShort || st == protocol::StartupStatus::TooLong) {
      reason_ = CloseReason::ClientProtocolError;
      co_await fatalToClient(sqlstate::kProtocolViolation, "invalid length of startup packet");
      co_return false;
    }
    if (st == protocol::StartupStatus::Ok && data.size() >= len) {
      out = protocol::decodeStartup(data.substr(0, len));
      clientIn_.consume(len);
      co_return true;
    }
    clientIn_.compact(st == protocol::StartupStatus::Ok ? len : 0);
    auto [ec, n] = co_await client_.readSome(clientIn_.writePtr(), clientIn_.writable());
    if (ec) {
      reason_ = CloseReason::ClientClosed;
      co_return false;
    }
    clientIn_.commit(n);
    bytesFromClient_ += n;
  }
}

asio::awaitable<bool> Session::startupPhase() {
  protocol::StartupPacket sp;
  bool encryptionAnswered = false;
  for (;;) {
    if (!co_await readStartup(sp)) co_return false;
    if (sp.kind == protocol::StartupKind::SslRequest || sp.kind == protocol::StartupKind::GssEncRequest) {
      // Bytes sent after the request but before our answer would be read as if they had been
      // encrypted (CVE-2021-23214): refuse them, as PostgreSQL does.
      if (!clientIn_.empty()) {
        reason_ = CloseReason::ClientProtocolError;
        co_await fatalToClient(sqlstate::kProtocolViolation,
                               sp.kind == protocol::StartupKind::SslRequest
                                   ? "received unencrypted data after SSL request"
                                   : "received unencrypted data after GSSAPI encryption request");
        co_return false;
      }
      if (encryptionAnswered && (sp.kind == protocol::StartupKind::SslRequest || client_.isTls())) {
        reason_ = CloseReason::ClientProtocolError;
        co_await fatalToClient(sqlstate::kProtocolViolation, "duplicate encryption request");
        co_return false;
      }
      encryptionAnswered = true;
      bool accept = sp.kind == protocol::StartupKind::SslRequest && shared_.clientTls != nullptr;
      if (co_await client_.writeAll(accept ? "S" : "N")) co_return false;
      bytesToClient_ += 1;
      if (accept) {
        clientIn_.compact();
        if (auto ec = co_await client_.startTls(*shared_.clientTls, asio::ssl::stream_base::server, "", false)) {
          reason_ = CloseReason::ClientProtocolError;
          spdlog::warn("session {} TLS handshake with client {} failed: {}", id_, clientAddr_, ec.message());
          co_return false;
        }
        clientTlsDone_ = true;
      }
      continue;
    }
    break;
  }
  switch (sp.kind) {
    case protocol::StartupKind::Cancel:
      reason_ = CloseReason::CancelRequest;
      co_await forwardCancel(sp.cancelPid, sp.cancelKey);
      co_return false;
    case protocol::StartupKind::UnsupportedVersion:
      reason_ = CloseReason::ClientProtocolError;
      co_await fatalToClient(sqlstate::kFeatureNotSupported, sp.error);
      co_return false;
    case protocol::StartupKind::Malformed:
      reason_ = CloseReason::ClientProtocolError;
      co_await fatalToClient(sqlstate::kProtocolViolation, sp.error);
      co_return false;
    default:
      break;
  }
  user_ = *sp.param("user");
  database_ = sp.param("database") ? *sp.param("database") : user_;
  appName_ = sp.param("application_name") ? *sp.param("application_name") : std::string();
  if (sp.hasDuplicateParam()) {
    reason_ = CloseReason::StartupRefused;
    co_await fatalToClient(sqlstate::kProtocolViolation, "pgveil: startup packet repeats a parameter");
    co_return false;
  }
  if (config_->tls.mode == config::ClientTls::Require && !client_.isTls()) {
    reason_ = CloseReason::StartupRefused;
    co_await fatalToClient(sqlstate::kInvalidAuthorization, "pgveil: this proxy requires TLS (use sslmode=require)");
    co_return false;
  }
  if (shared_.shuttingDown.load()) {
    reason_ = CloseReason::Shutdown;
    co_await fatalToClient(sqlstate::kCannotConnectNow, "the database system is shutting down");
    co_return false;
  }
  if (shared_.activeClients.load() > config_->connections.maxClients) {
    reason_ = CloseReason::StartupRefused;
    co_await fatalToClient(sqlstate::kTooManyConnections, "sorry, too many clients already");
    co_return false;
  }
  if (!co_await choosePolicy(sp)) co_return false;
  if (!co_await connectUpstream()) co_return false;
  if (!co_await authenticate(sp)) co_return false;
  info_ = std::make_shared<SessionInfo>();
  info_->id = id_;
  info_->user = user_;
  info_->database = database_;
  info_->applicationName = appName_;
  info_->client = clientAddr_;
  info_->started = std::chrono::steady_clock::now();
  if (policy_ && catalog_ && rules_->needsInspection(*policy_, user_)) {
    info_->policy = policy_->role();
    flow_ = std::make_unique<MaskedFlow>(
        shared_, worker_, rules_, policy_, catalog_,
        SessionIdentity{id_, client_.peerCommonName(), user_, database_, clientAddr_, appName_, info_});
  }
  {
    std::lock_guard lock(shared_.sessionsMutex);
    shared_.sessionInfos[id_] = info_;
  }
  if (rules_ && shared_.rulesGeneration.load() != rules_->generation) {
    // Reloaded while this session was authenticating: its policy was chosen under the old rules.
    reason_ = CloseReason::Shutdown;
    co_await fatalToClient(sqlstate::kAdminShutdown, "terminating connection due to administrator command: pgveil's "
                                                     "configuration was reloaded during start-up; reconnect");
    co_return false;
  }
  co_return true;
}

// Which masking policy applies: the role's own, its nearest group's (catalog membership), or
// `default`. Masked roles also may not change identity through startup parameters.
asio::awaitable<bool> Session::choosePolicy(const protocol::StartupPacket& sp) {
  rules_ = shared_.rules();
  const auto& policies = *rules_->policies;
  std::string cn = client_.peerCommonName();
  auto direct = rules_->effective(policies.forRole(user_, nullptr, cn));
  const auto& roles = policies.config().roles;
  bool named = roles.count(user_) > 0 || (!cn.empty() && policies.config().clientCertRoles.count(cn) > 0);
  auto lockedOut = [&](const std::string& role) {
    std::lock_guard lock(shared_.lockoutMutex);
    auto it = shared_.lockouts.find(role);
    return it != shared_.lockouts.end() && it->second > std::chrono::steady_clock::now();
  };
  if (named && lockedOut(direct->role())) {
    reason_ = CloseReason::StartupRefused;
    co_await fatalToClient(sqlstate::kInvalidAuthorization,
                           "pgveil: role " + direct->role() + " is locked out after a canary hit; ask the security team");
    co_return false;
  }
  bool masking = !policies.config().classify.empty();
  if ((named || !masking) && direct->unmasked() && !rules_->needsInspection(*direct, user_)) {
    policy_ = direct;
    co_return true;
  }
  catalog_ = co_await shared_.catalogs->acquire(database_);
  if (!catalog_) {
    reason_ = CloseReason::StartupRefused;
    co_await fatalToClient(sqlstate::kCannotConnectNow,
                           "pgveil: the catalog of database \"" + database_ +
                               "\" could not be loaded, so roles it masks or limits cannot connect yet");
    co_return false;
  }
  policy_ = rules_->effective(policies.forRole(user_, catalog_.get(), cn));
  if (lockedOut(policy_->role())) {
    reason_ = CloseReason::StartupRefused;
    co_await fatalToClient(sqlstate::kInvalidAuthorization,
                           "pgveil: role " + policy_->role() + " is locked out after a canary hit; ask the security team");
    co_return false;
  }
  if (policy_->unmasked()) co_return true;
  // Masked roles may set only parameters that neither change identity nor how SQL text is read.
  for (const auto& p : sp.params) {
    std::string value = p.value;
    for (auto& ch : value) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    bool ok = p.name == "user" || p.name == "database" || p.name == "application_name" ||
              p.name == "DateStyle" || p.name == "TimeZone" || p.name == "extra_float_digits" ||
              p.name == "IntervalStyle" || p.name == "lc_messages" ||
              (p.name == "client_encoding" && (value == "utf8" || value == "utf-8" || value == "unicode")) ||
              (p.name == "options" && p.value.find_first_not_of(' ') == std::string::npos);
    if (!ok) {
      reason_ = CloseReason::StartupRefused;
      spdlog::warn("session {} refused: startup parameter {} for masked user \"{}\"", id_, logSafe(p.name), logSafe(user_));
      co_await fatalToClient(sqlstate::kInsufficientPrivilege,
                             "pgveil: permission denied by rule identity_change: the startup parameter \"" +
                                 logSafe(p.name) + "\" is not allowed for this role");
      co_return false;
    }
  }
  co_return true;
}

asio::awaitable<void> Session::forwardCancel(std::int32_t pid, std::int32_t key) {
  if (!shared_.cancels.contains(pid, key)) {
    spdlog::debug("session {} cancel request for an unknown backend key ignored", id_);
    co_return;
  }
  co_await sendCancel(pid, key);
  spdlog::info("session {} forwarded a cancel request from {} to backend {}", id_, clientAddr_, pid);
}

asio::awaitable<void> Session::cancelAfterBreach() {
  // Counted down however this ends (the client side and the session's end wait for it).
  struct Done {
    Session& s;
    ~Done() {
      if (--s.cancelsInFlight_ == 0 && s.cancelDone_) s.cancelDone_->cancel();
    }
  } done{*this};
  if (backendKey_) {
    try {
      co_await sendCancel(backendKey_->first, backendKey_->second);
      spdlog::info("session {} cancelled its query upstream after a limit breach", id_);
    } catch (const std::exception& e) {
      spdlog::warn("session {} could not cancel its query upstream: {}", id_, e.what());
    }
  }
}

// A CancelRequest sent after a breach refers to this session: it ends before the session does
// (each is bounded by the upstream connect timeout).
asio::awaitable<void> Session::waitForCancels() {
  while (cancelsInFlight_ > 0) {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(10));
    co_await t.async_wait(kUse);
  }
}

// Sends a CancelRequest on a new upstream connection and waits until the server has handled it.
asio::awaitable<void> Session::sendCancel(std::int32_t pid, std::int32_t key) {
  auto exec = co_await asio::this_coro::executor;
  const auto& up = config_->upstream;
  asio::steady_timer timer(exec, up.connectTimeout);
  auto resolved = co_await (upstreamEndpoints(up) || timer.async_wait(kUse));
  if (resolved.index() != 0 || std::get<0>(resolved).first) co_return;
  auto results = std::move(std::get<0>(resolved).second);
  tcp::socket sock(exec);
  timer.expires_after(up.connectTimeout);
  auto r = co_await (asio::async_connect(sock, results, kUse) || timer.async_wait(kUse));
  if (r.index() != 0 || std::get<0>(std::get<0>(r))) co_return;
  Stream s(std::move(sock));
  auto packet = protocol::encodeCancelRequest(pid, key);
  if (co_await s.writeAll(packet)) co_return;
  // The server closes the connection once it has handled the request.
  char c;
  timer.expires_after(up.connectTimeout);
  co_await (s.readSome(&c, 1) || timer.async_wait(kUse));
}

asio::awaitable<bool> Session::connectUpstream() {
  auto exec = co_await asio::this_coro::executor;
  const auto& up = config_->upstream;
  std::string target = up.host + ":" + std::to_string(up.port);
  auto [rec, results] = co_await upstreamEndpoints(up);
  auto fail = [&](std::string why) {
    reason_ = CloseReason::UpstreamUnavailable;
    spdlog::warn("session {} upstream {} unavailable: {}", id_, target, why);
    return "pgveil: could not connect to the upstream server: " + why;
  };
  if (rec) {
    co_await fatalToClient(sqlstate::kConnectionFailure, fail(rec.message()));
    co_return false;
  }
  tcp::socket sock(exec);
  asio::steady_timer timer(exec, up.connectTimeout);
  auto connectStart = std::chrono::steady_clock::now();
  auto r = co_await (asio::async_connect(sock, results, kUse) || timer.async_wait(kUse));
  shared_.upstreamConnectLatency.observe(std::chrono::steady_clock::now() - connectStart);
  if (r.index() != 0) {
    co_await fatalToClient(sqlstate::kConnectionFailure, fail("connection timed out"));
    co_return false;
  }
  if (auto ec = std::get<0>(std::get<0>(r))) {
    co_await fatalToClient(sqlstate::kConnectionFailure, fail(ec.message()));
    co_return false;
  }
  error_code ignored;
  sock.set_option(tcp::no_delay(true), ignored);
  server_.emplace(std::move(sock));
  if (auto why = co_await negotiateUpstreamTls(*server_, up, shared_.upstreamTls.get()); !why.empty()) {
    co_await fatalToClient(sqlstate::kConnectionFailure, fail(why));
    co_return false;
  }
  co_return true;
}

asio::awaitable<bool> Session::authenticate(const protocol::StartupPacket& sp) {
  if (co_await server_->writeAll(protocol::encodeStartup(sp.code, sp.params))) {
    co_await fatalToClient(sqlstate::kConnectionFailure, "pgveil: upstream connection lost during start-up");
    reason_ = CloseReason::UpstreamUnavailable;
    co_return false;
  }
  std::string toClient;
  std::uint64_t serverBytes = 0;
  auto flush = [&]() -> asio::awaitable<bool> {
    if (toClient.empty()) co_return true;
    auto ec = co_await client_.writeAll(toClient);
    bytesToClient_ += toClient.size();
    toClient.clear();
    co_return !ec;
  };
  for (;;) {
    Message m;
    int r = co_await readMessage(*server_, serverIn_, kMaxAuthMessage, m, serverBytes);
    if (r <= 0 || !isBackendType(m.type)) {
      co_await flush();
      reason_ = r == 0 ? CloseReason::UpstreamUnavailable : CloseReason::ServerProtocolError;
      co_await fatalToClient(r == 0 ? sqlstate::kConnectionFailure : sqlstate::kProtocolViolation,
                             r == 0 ? "pgveil: upstream closed the connection during authentication"
                                    : "pgveil: invalid message from the upstream server during authentication");
      co_return false;
    }
    bool needReply = false;
    bool done = false;
    switch (m.type) {
      case msg::kAuthentication: {
        protocol::AuthenticationMsg a;
        if (!protocol::decodeAuthentication(m.payload, a)) {
          reason_ = CloseReason::ServerProtocolError;
          co_await flush();
          co_await fatalToClient(sqlstate::kProtocolViolation, "pgveil: invalid authentication request from server");
          co_return false;
        }
        if (a.code == protocol::auth::kSasl) {
          // Channel binding ties SCRAM to one TLS connection; pgveil terminates TLS, so the
          // client and the server never share one. Offer only the unbound mechanisms.
          std::vector<std::string_view> kept;
          for (auto mech : a.saslMechanisms) {
            if (mech.size() < 5 || mech.substr(mech.size() - 5) != "-PLUS") kept.push_back(mech);
          }
          protocol::appendAuthenticationSasl(toClient, kept);
        } else {
          toClient.append(m.bytes);
        }
        authenticated_ = authenticated_ || a.code == protocol::auth::kOk;
        needReply = a.code == protocol::auth::kCleartext || a.code == protocol::auth::kMd5 ||
                    a.code == protocol::auth::kSasl || a.code == protocol::auth::kSaslContinue ||
                    a.code == protocol::auth::kGss || a.code == 8 || a.code == protocol::auth::kSspi;
        break;
      }
      case msg::kErrorResponse:
        toClient.append(m.bytes);
        serverIn_.consume(m.bytes.size());
        co_await flush();
        reason_ = CloseReason::AuthFailed;
        co_return false;
      case msg::kBackendKeyData: {
        protocol::BackendKeyDataMsg k;
        if (protocol::decodeBackendKeyData(m.payload, k) && !backendKey_) {
          backendKey_ = {k.pid, k.key};
          shared_.cancels.add(k.pid, k.key);
        }
        toClient.append(m.bytes);
        break;
      }
      case msg::kReadyForQuery: {
        protocol::ReadyForQueryMsg z;
        if (protocol::decodeReadyForQuery(m.payload, z)) txStatus_ = z.status;
        toClient.append(m.bytes);
        done = authenticated_;
        break;
      }
      case msg::kParameterStatus: {
        protocol::ParameterStatusMsg ps;
        bool masked = policy_ && !policy_->unmasked();
        if (masked && protocol::decodeParameterStatus(m.payload, ps)) {
          std::string v(ps.value);
          for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          bool unsafe = (ps.name == "standard_conforming_strings" && v != "on") ||
                        (ps.name == "client_encoding" && v != "utf8" && v != "unicode");
          if (unsafe) {
            // The role's or database's defaults make SQL text read differently than pgveil parses it.
            reason_ = CloseReason::StartupRefused;
            serverIn_.consume(m.bytes.size());
            co_await flush();
            co_await fatalToClient(sqlstate::kInsufficientPrivilege,
                                   "pgveil: " + std::string(ps.name) + " must be on/UTF8 for masked roles");
            co_return false;
          }
        }
        toClient.append(m.bytes);
        break;
      }
      case msg::kNoticeResponse:
      case msg::kNegotiateProtocol:
        toClient.append(m.bytes);
        break;
      default:
        reason_ = CloseReason::ServerProtocolError;
        co_await flush();
        co_await fatalToClient(sqlstate::kProtocolViolation, "pgveil: unexpected message from server during start-up");
        co_return false;
    }
    serverIn_.consume(m.bytes.size());
    if (needReply || done) {
      if (!co_await flush()) co_return false;
    }
    if (done) co_return true;
    if (!needReply) continue;
    Message c;
    int cr = co_await readMessage(client_, clientIn_, kMaxAuthMessage, c, bytesFromClient_);
    if (cr <= 0) {
      reason_ = cr == 0 ? CloseReason::ClientClosed : CloseReason::ClientProtocolError;
      if (cr < 0) co_await fatalToClient(sqlstate::kProtocolViolation, "invalid message length");
      co_return false;
    }
    if (c.type == msg::kTerminate) {
      reason_ = CloseReason::ClientTerminated;
      co_return false;
    }
    if (c.type != msg::kPassword) {
      reason_ = CloseReason::ClientProtocolError;
      co_await fatalToClient(sqlstate::kProtocolViolation,
                             "expected password response, got message type " + std::to_string(int(c.type)));
      co_return false;
    }
    auto ec = co_await server_->writeAll(c.bytes);
    clientIn_.consume(c.bytes.size());
    if (ec) {
      reason_ = CloseReason::UpstreamUnavailable;
      co_await fatalToClient(sqlstate::kConnectionFailure, "pgveil: upstream connection lost during authentication");
      co_return false;
    }
  }
}

bool Session::scanClient(OutBatch& out, bool& terminated) {
  const std::uint32_t maxLen = config_->connections.maxMessageSize;
  clientWant_ = 0;
  for (;;) {
    auto data = clientIn_.data();
    if (data.empty()) return true;
    if (clientStreamLeft_ > 0) {
      auto take = std::min(clientStreamLeft_, data.size());
      out.ref(data.substr(0, take));
      clientIn_.consume(take);
      clientStreamLeft_ -= take;
      continue;
    }
    protocol::FrameHeader h;
    switch (protocol::peekHeader(data, maxLen, h)) {
      case protocol::HeaderStatus::NeedMore:
        return true;
      case protocol::HeaderStatus::TooShort:
        pendingFatal_ = encodeFatal(sqlstate::kProtocolViolation, "invalid message length");
        return false;
      case protocol::HeaderStatus::TooLong:
        pendingFatal_ = encodeFatal(sqlstate::kProgramLimitExceeded,
                                    "pgveil: message of " + std::to_string(h.length) +
                                        " bytes exceeds connections.max_message_size (" + std::to_string(maxLen) + ")");
        return false;
      case protocol::HeaderStatus::Ok:
        break;
    }
    if (!isFrontendType(h.type)) {
      pendingFatal_ = encodeFatal(sqlstate::kProtocolViolation,
                                  "invalid frontend message type " + std::to_string(static_cast<unsigned char>(h.type)));
      return false;
    }
    if (data.size() >= h.total()) {
      if (h.type == msg::kQuery || (h.type == msg::kSync && !copyIn_) || h.type == msg::kFunctionCall) {
        if (pendingQueries_.size() >= 4096) pendingQueries_.pop_front();
        pendingQueries_.push_back({h.type, std::chrono::steady_clock::now()});
        if (info_) info_->state.store('A', std::memory_order_relaxed);
      } else if (h.type == msg::kCopyDone || h.type == msg::kCopyFail) {
        copyIn_ = false;
      }
      if (flow_) {
        Message m{h.type, data.substr(protocol::kHeaderSize, h.payloadSize()), data.substr(0, h.total())};
        if (!flow_->onClientMessage(m, out)) {
          pendingFatal_ = encodeFatal(flow_->fatalCode().c_str(), flow_->fatalMessage());
          return false;
        }
      } else {
        out.ref(data.substr(0, h.total()));
      }
      clientIn_.consume(h.total());
      if (h.type == msg::kTerminate) {
        terminated = true;
        return true;
      }
      continue;
    }
    if (flow_ ? flow_->clientNeedsWhole(h.type) : !clientMayStream(h.type)) {
      clientWant_ = h.total();
      return true;
    }
    out.ref(data);
    clientIn_.consume(data.size());
    clientStreamLeft_ = h.total() - data.size();
    return true;
  }
}

bool Session::scanServer(OutBatch& out) {
  serverWant_ = 0;
  for (;;) {
    auto data = serverIn_.data();
    if (data.empty()) return true;
    if (serverStreamLeft_ > 0) {
      auto take = std::min(serverStreamLeft_, data.size());
      out.ref(data.substr(0, take));
      serverIn_.consume(take);
      serverStreamLeft_ -= take;
      continue;
    }
    protocol::FrameHeader h;
    auto st = protocol::peekHeader(data, protocol::kAbsoluteMaxMessage, h);
    if (st == protocol::HeaderStatus::NeedMore) return true;
    if (st != protocol::HeaderStatus::Ok || !isBackendType(h.type) || h.type == msg::kAuthentication) {
      pendingFatal_ = encodeFatal(sqlstate::kProtocolViolation, "pgveil: invalid message from the upstream server");
      return false;
    }
    lastServerType_ = h.type;
    if (data.size() >= h.total()) {
      if (h.type == msg::kReadyForQuery && h.length == 5) {
        txStatus_ = data[5];
        if (info_) info_->state.store(txStatus_, std::memory_order_relaxed);
        if (!pendingQueries_.empty()) {
          shared_.queryLatency.local().observe(std::chrono::steady_clock::now() - pendingQueries_.front().second);
          pendingQueries_.pop_front();
        }
      } else if (h.type == msg::kCopyInResponse) {
        // Syncs sent after the COPY's Execute are ignored by the server (no ReadyForQuery):
        // every Sync still waiting was sent after it (earlier batches are answered by now).
        copyIn_ = true;
        pendingQueries_.erase(std::remove_if(pendingQueries_.begin(), pendingQueries_.end(),
                                             [](const auto& q) { return q.first == msg::kSync; }),
                              pendingQueries_.end());
      }
      if (flow_) {
        Message m{h.type, data.substr(protocol::kHeaderSize, h.payloadSize()), data.substr(0, h.total())};
        if (!flow_->onServerMessage(m, out)) {
          pendingFatal_ = encodeFatal(flow_->fatalCode().c_str(), flow_->fatalMessage());
          serverIn_.consume(h.total());
          return false;
        }
      } else {
        out.ref(data.substr(0, h.total()));
      }
      serverIn_.consume(h.total());
      continue;
    }
    if (flow_ ? flow_->serverNeedsWhole(h.type) : !serverMayStream(h.type)) {
      // A message pgveil must hold whole is bounded like a client's: a broken or hostile
      // upstream must not make one session allocate up to PostgreSQL's 1 GB limit.
      if (h.total() > config_->connections.maxMessageSize) {
        pendingFatal_ = encodeFatal(sqlstate::kProtocolViolation,
                                    "pgveil: a message from the upstream server exceeds connections.max_message_size");
        return false;
      }
      serverWant_ = h.total();
      return true;
    }
    out.ref(data);
    serverIn_.consume(data.size());
    serverStreamLeft_ = h.total() - data.size();
    return true;
  }
}

asio::awaitable<void> Session::clientToServer() {
  OutBatch out;
  for (;;) {
    bool terminated = false;
    bool ok = false;
    try {
      ok = scanClient(out, terminated);
    } catch (const std::exception& e) {
      // A bug must end this session, closed, never hang it or forward what was not checked.
      spdlog::error("session {} internal error on a client message: {}", id_, e.what());
      out.clear();
      pendingFatal_ = encodeFatal(sqlstate::kInternalError, "pgveil: internal error; the session is closed");
    }
    while (cancelsInFlight_ > 0 && !out.empty()) {
      if (!cancelDone_) cancelDone_.emplace(co_await asio::this_coro::executor);
      cancelDone_->expires_at(asio::steady_timer::time_point::max());
      co_await cancelDone_->async_wait(kUse);
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none) co_return;  // the relay is ending
    }
    if (!out.empty()) {
      auto ec = co_await server_->writeAll(out.buffers());
      out.clear();
      if (ec) {
        setRelayReason(CloseReason::ServerClosed);
        co_return;
      }
    }
    if (!ok) {
      setRelayReason(CloseReason::ClientProtocolError);
      co_return;
    }
    if (terminated) {
      // The server ends the connection after Terminate; serverToClient sees that and ends the relay.
      setRelayReason(CloseReason::ClientTerminated);
      co_await idleForever();
      co_return;
    }
    auto [ec, n] = co_await readFrom(client_, clientIn_, clientWant_, out);
    noteBuffers();
    if (ec) {
      setRelayReason(CloseReason::ClientClosed);
      if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
        // Half-close: the server still answers what it already received, then sees EOF and closes.
        server_->shutdownSend();
        co_await idleForever();
      }
      co_return;
    }
    clientIn_.commit(n);
    bytesFromClient_ += n;
  }
}

// The relay's read. When the peer has gone quiet (nothing buffered, the last read did not fill
// the buffer), the heap buffer is given back and the read waits in the buffer's inline bytes:
// an idle session holds no heap read buffers (about 24 KB otherwise). Small requests and
// responses fit there, so request/response traffic allocates nothing. Not a coroutine: the
// awaited read is the stream's own (an idle session keeps no frame of this function), and the
// caller calls noteBuffers() when it completes.
asio::awaitable<std::tuple<error_code, std::size_t>> Session::readFrom(Stream& s, protocol::ReadBuffer& buf,
                                                                      std::size_t want, OutBatch& out) {
  if (buf.quiet() && want == 0) {
    buf.release();
    out.trim();
    noteBuffers();
  }
  buf.compact(want);
  return s.readSome(buf.writePtr(), buf.writable());
}

asio::awaitable<void> Session::serverToClient() {
  OutBatch out;
  for (;;) {
    bool ok = false;
    try {
      ok = scanServer(out);
    } catch (const std::exception& e) {
      spdlog::error("session {} internal error on a server message: {}", id_, e.what());
      out.clear();
      pendingFatal_ = encodeFatal(sqlstate::kInternalError, "pgveil: internal error; the session is closed");
    }
    if (!out.empty()) {
      auto bytes = out.bytes();
      auto ec = co_await client_.writeAll(out.buffers());
      out.clear();
      if (ec) {
        setRelayReason(CloseReason::ClientClosed);
        co_return;
      }
      bytesToClient_ += bytes;
    }
    if (flow_ && flow_->takeCancelRequest()) {
      ++cancelsInFlight_;
      asio::co_spawn(co_await asio::this_coro::executor, cancelAfterBreach(), asio::detached);
    }
    if (!ok) {
      setRelayReason(CloseReason::ServerProtocolError);
      co_return;
    }
    auto [ec, n] = co_await readFrom(*server_, serverIn_, serverWant_, out);
    noteBuffers();
    if (ec) {
      setRelayReason(CloseReason::ServerClosed);
      co_return;
    }
    serverIn_.commit(n);
  }
}

asio::awaitable<void> runSession(SharedState& shared, Worker& worker, tcp::socket socket) {
  Session session(shared, worker, std::move(socket));
  try {
    co_await session.run();
  } catch (const std::exception& e) {
    spdlog::error("session ended by an internal error: {}", e.what());
  }
  co_await session.waitForCancels();  // never destroy the session under its cancel coroutine
}

void reloadSessions(Worker& worker, const std::shared_ptr<const Rules>& rules) {
  std::vector<Session*> sessions(worker.sessions.begin(), worker.sessions.end());
  for (auto* s : sessions) s->onReload(*rules);
}

void wakeReadersOfResetConnections(Worker& worker, unsigned slice, unsigned slices) {
  for (auto* s : worker.sessions) {
    if (s->id() % slices == slice) s->wakeReadersIfReset();
  }
}

void terminateSessions(Worker& worker) {
  // terminate() cancels I/O; sessions remove themselves from the set when they end.
  std::vector<Session*> sessions(worker.sessions.begin(), worker.sessions.end());
  for (auto* s : sessions) s->terminate();
}

}  // namespace pgveil::proxy
