#include "proxy/pg_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

#include "protocol/bytes.hpp"
#include "protocol/encode.hpp"
#include "protocol/messages.hpp"
#include "protocol/startup.hpp"
#include "proxy/scram.hpp"
#include "proxy/upstream.hpp"

namespace pgveil::proxy {

namespace {

constexpr auto kUse = asio::as_tuple(asio::use_awaitable);
namespace msg = protocol::msg;
namespace auth = protocol::auth;
constexpr std::uint32_t kMaxStartupMessage = 1u << 17;  // authentication and start-up (as the sessions)
constexpr std::int32_t kProtocol3 = 196608;

std::string serverError(std::string_view payload) {
  protocol::ErrorMsg e;
  if (!protocol::decodeError(payload, e)) return "invalid ErrorResponse";
  std::string out(e.field('S'));
  if (!out.empty()) out += ": ";
  out += e.field('M');
  return out;
}

// A PasswordMessage-type ('p') message: a C string (password, md5 response) or raw SASL data.
// Empty if a C string would hold a NUL byte.
std::string passwordMessage(std::string_view body, bool cString) {
  std::string out;
  protocol::MessageBuilder b(out);
  b.begin('p');
  if (cString) {
    b.cstring(body);
  } else {
    b.bytes(body);
  }
  b.end();
  return b.ok() ? out : std::string();
}

}  // namespace

PgClient::PgClient(Stream stream, std::string target, std::uint32_t maxMessage)
    : stream_(std::move(stream)), target_(std::move(target)), in_(64 << 10, 1 << 20), maxMessage_(maxMessage) {}

void PgClient::fail(const std::string& why) const {
  throw std::runtime_error("catalog connection to " + target_ + " failed: " + why);
}

asio::awaitable<void> PgClient::send(const std::string& bytes) {
  if (auto ec = co_await stream_.writeAll(bytes)) fail("connection lost: " + ec.message());
}

asio::awaitable<std::unique_ptr<PgClient>> PgClient::connect(const config::Config& cfg, asio::ssl::context* tls,
                                                             const std::string& database,
                                                             const std::string& applicationName) {
  const auto& up = cfg.upstream;
  std::string target = up.host + ":" + std::to_string(up.port);
  auto [rec, endpoints] = co_await upstreamEndpoints(up);
  if (rec || endpoints.empty()) {
    throw std::runtime_error("catalog connection to " + target + " failed: cannot resolve " + up.host + ": " +
                             (rec ? rec.message() : std::string("no address")));
  }
  tcp::socket sock(co_await asio::this_coro::executor);
  auto [cec, ep] = co_await asio::async_connect(sock, endpoints, kUse);
  if (cec) throw std::runtime_error("catalog connection to " + target + " failed: " + cec.message());
  error_code ignored;
  sock.set_option(tcp::no_delay(true), ignored);
  auto client = std::make_unique<PgClient>(Stream(std::move(sock)), std::move(target), cfg.connections.maxMessageSize);
  if (auto why = co_await negotiateUpstreamTls(client->stream_, up, tls); !why.empty()) client->fail(why);
  co_await client->startup(cfg, database, applicationName);
  co_return client;
}

asio::awaitable<void> PgClient::startup(const config::Config& cfg, const std::string& database,
                                        const std::string& applicationName) {
  const std::string& user = cfg.catalog.user;
  const std::string password = cfg.catalog.resolvedPassword();
  // Built outside the co_await (GCC 12 rejects the braced temporaries inside one).
  std::vector<protocol::StartupParam> params;
  params.push_back({std::string("user"), user});
  params.push_back({std::string("database"), database});
  params.push_back({std::string("application_name"), applicationName});
  std::string startupPacket = protocol::encodeStartup(kProtocol3, params);
  co_await send(startupPacket);
  std::optional<ScramClient> scram;
  bool scramVerified = false;
  bool authenticated = false;
  std::uint64_t bytes = 0;
  auto needPassword = [&] {
    if (password.empty()) fail("the server asks for a password and catalog.password (or password_env) is empty");
  };
  for (;;) {
    protocol::Message m;
    int r = co_await readMessage(stream_, in_, kMaxStartupMessage, m, bytes);
    if (r <= 0) fail(r == 0 ? "the server closed the connection during start-up" : "invalid message from the server");
    std::string reply;
    switch (m.type) {
      case msg::kAuthentication: {
        protocol::AuthenticationMsg a;
        if (!protocol::decodeAuthentication(m.payload, a)) fail("invalid authentication request");
        switch (a.code) {
          case auth::kOk:
            if (scram && !scramVerified) fail("the server ended SCRAM authentication without proving itself");
            authenticated = true;
            break;
          case auth::kCleartext:
            needPassword();
            reply = passwordMessage(password, true);
            if (reply.empty()) fail("catalog.password holds a NUL byte");
            break;
          case auth::kMd5:
            needPassword();
            if (a.data.size() != 4) fail("invalid md5 salt");
            reply = passwordMessage(md5PasswordResponse(user, password, a.data), true);
            break;
          case auth::kSasl: {
            bool offered = false;
            for (auto mech : a.saslMechanisms) offered = offered || mech == "SCRAM-SHA-256";
            if (!offered) fail("the server offers no SASL mechanism pgveil supports (SCRAM-SHA-256)");
            needPassword();
            scram.emplace("", password);
            std::string first = scram->clientFirst();
            protocol::MessageBuilder b(reply);
            b.begin('p');
            b.bytes("SCRAM-SHA-256");
            b.u8(0);
            b.i32(static_cast<std::int32_t>(first.size()));
            b.bytes(first);
            b.end();
            break;
          }
          case auth::kSaslContinue: {
            if (!scram) fail("unexpected SASL continuation");
            std::string error;
            std::string final = scram->clientFinal(a.data, error);
            if (final.empty()) fail(error);
            reply = passwordMessage(final, false);
            break;
          }
          case auth::kSaslFinal: {
            std::string error = "unexpected SASL final message";
            if (!scram || !scram->verifyServerFinal(a.data, error)) fail(error);
            scramVerified = true;
            break;
          }
          default:
            fail("authentication method " + std::to_string(a.code) +
                 " is not supported for the catalog connection (use trust, password, md5, scram-sha-256 or cert)");
        }
        break;
      }
      case msg::kErrorResponse:
        fail(serverError(m.payload));
      case msg::kReadyForQuery:
        if (!authenticated) fail("ReadyForQuery before authentication");
        in_.consume(m.bytes.size());
        co_return;
      case msg::kParameterStatus:
      case msg::kBackendKeyData:
      case msg::kNoticeResponse:
      case msg::kNegotiateProtocol:
        break;
      default:
        fail(std::string("unexpected message '") + m.type + "' during start-up");
    }
    in_.consume(m.bytes.size());
    if (!reply.empty()) co_await send(reply);
  }
}

asio::awaitable<std::vector<PgClient::Row>> PgClient::query(std::string_view sql) {
  std::string q;
  protocol::appendQuery(q, sql);
  co_await send(q);
  std::vector<Row> rows;
  std::string error;
  std::uint64_t bytes = 0;
  for (;;) {
    protocol::Message m;
    int r = co_await readMessage(stream_, in_, maxMessage_, m, bytes);
    if (r <= 0) {
      // A FATAL error (pg_terminate_backend, shutdown) comes before the server closes: say it.
      if (!error.empty()) fail(error);
      fail(r == 0 ? "the server closed the connection" : "invalid or oversized message from the server");
    }
    switch (m.type) {
      case msg::kRowDescription:
        rows.clear();  // rows of the last result only
        break;
      case msg::kDataRow: {
        protocol::DataRowMsg d;
        if (!protocol::decodeDataRow(m.payload, d)) fail("invalid DataRow");
        Row row;
        row.reserve(d.columns.size());
        for (const auto& c : d.columns) row.push_back(c ? std::optional<std::string>(std::string(*c)) : std::nullopt);
        rows.push_back(std::move(row));
        break;
      }
      case msg::kErrorResponse:
        error = serverError(m.payload);
        break;
      case msg::kReadyForQuery:
        in_.consume(m.bytes.size());
        if (!error.empty()) throw std::runtime_error("catalog query failed: " + error);
        co_return rows;
      case msg::kCommandComplete:
      case msg::kEmptyQuery:
      case msg::kNoticeResponse:
      case msg::kParameterStatus:
      case msg::kNotification:
        break;
      default:
        fail(std::string("unexpected message '") + m.type + "' in a query's answer");
    }
    in_.consume(m.bytes.size());
  }
}

asio::awaitable<void> PgClient::terminate() {
  static constexpr char kTerminate[] = {'X', 0, 0, 0, 4};
  (void)co_await stream_.writeAll(std::string_view(kTerminate, sizeof kTerminate));
  stream_.close();
}

}  // namespace pgveil::proxy
