#include "proxy/catalog_service.hpp"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <netdb.h>
#include <stdexcept>

namespace pgveil::proxy {

namespace {

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Conn = std::unique_ptr<PGconn, PgConnDeleter>;
using Result = std::unique_ptr<PGresult, PgResultDeleter>;

const char* sslmode(config::UpstreamTls t) {
  switch (t) {
    case config::UpstreamTls::Disable: return "disable";
    case config::UpstreamTls::Prefer: return "prefer";
    case config::UpstreamTls::Require: return "require";
    case config::UpstreamTls::VerifyCa: return "verify-ca";
    case config::UpstreamTls::VerifyFull: return "verify-full";
  }
  return "prefer";
}

// upstream.host's addresses, numeric and comma-separated, in the resolver's order (the sessions
// try them in that order too).
std::string numericAddresses(const std::string& host, std::uint16_t port, std::size_t& count) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0 || !res) {
    throw std::runtime_error("catalog connection failed: cannot resolve " + host + ": " +
                             (rc != 0 ? gai_strerror(rc) : "no address"));
  }
  std::string out;
  count = 0;
  for (const addrinfo* ai = res; ai; ai = ai->ai_next) {
    char buf[NI_MAXHOST];
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST) != 0) continue;
    if (!out.empty()) out += ',';
    out += buf;
    ++count;
  }
  freeaddrinfo(res);
  if (count == 0) throw std::runtime_error("catalog connection failed: cannot resolve " + host);
  return out;
}

Result query(PGconn* c, const char* sql) {
  Result r(PQexecParams(c, sql, 0, nullptr, nullptr, nullptr, nullptr, 0));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    throw std::runtime_error(std::string("catalog query failed: ") + PQresultErrorMessage(r.get()));
  }
  return r;
}

}  // namespace

std::shared_ptr<const masking::Catalog> loadCatalog(const config::Config& cfg, const std::string& database,
                                                    std::uint64_t generation) {
  const auto& up = cfg.upstream;
  auto timeoutSeconds = std::max<long>(1, static_cast<long>(cfg.catalog.loadTimeout.count() / 1000));
  std::string password = cfg.catalog.resolvedPassword();
  std::string port = std::to_string(up.port);
  std::string timeout = std::to_string(timeoutSeconds);
  // The same TLS identity as the sessions' upstream connections: the name checked and sent as
  // SNI is server_name when set (libpq checks `host` and connects to `hostaddr`), and the
  // client certificate is presented.
  // libpq takes one host name per address.
  std::string hostaddr;
  std::string host = up.host;
  if (!up.serverName.empty() && up.serverName != up.host) {
    std::size_t count = 0;
    hostaddr = numericAddresses(up.host, up.port, count);
    host = up.serverName;
    for (std::size_t i = 1; i < count; ++i) host += "," + up.serverName;
  }
  std::vector<const char*> keys = {"host", "port", "dbname", "user", "sslmode", "connect_timeout", "application_name"};
  std::vector<const char*> values = {host.c_str(), port.c_str(), database.c_str(), cfg.catalog.user.c_str(),
                                     sslmode(up.tls), timeout.c_str(), "pgveil catalog"};
  if (!hostaddr.empty()) {
    keys.push_back("hostaddr");
    values.push_back(hostaddr.c_str());
  }
  if (!up.certFile.empty()) {
    keys.push_back("sslcert");
    values.push_back(up.certFile.c_str());
    keys.push_back("sslkey");
    values.push_back(up.keyFile.c_str());
  }
  if (!password.empty()) {
    keys.push_back("password");
    values.push_back(password.c_str());
  }
  if (!up.caFile.empty()) {
    keys.push_back("sslrootcert");
    values.push_back(up.caFile.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  Conn conn(PQconnectdbParams(keys.data(), values.data(), 0));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error(std::string("catalog connection failed: ") + PQerrorMessage(conn.get()));
  }
  // Statements run with a timeout so that a stuck catalog never blocks refreshes forever.
  Result(PQexec(conn.get(), ("SET statement_timeout = " + std::to_string(cfg.catalog.loadTimeout.count())).c_str()));

  auto rels = query(conn.get(),
                    "SELECT c.oid, n.nspname, c.relname, c.relkind, "
                    "CASE WHEN c.relkind IN ('v','m') THEN pg_get_viewdef(c.oid) END "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r','v','m','f','p') AND n.nspname <> 'information_schema' "
                    "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY c.oid");
  std::vector<masking::CatalogRelation> relations;
  std::map<std::uint32_t, std::size_t> index;
  for (int i = 0; i < PQntuples(rels.get()); ++i) {
    masking::CatalogRelation r;
    r.oid = static_cast<std::uint32_t>(std::stoul(PQgetvalue(rels.get(), i, 0)));
    r.schema = PQgetvalue(rels.get(), i, 1);
    r.name = PQgetvalue(rels.get(), i, 2);
    r.kind = PQgetvalue(rels.get(), i, 3)[0];
    if (!PQgetisnull(rels.get(), i, 4)) r.viewDefinition = PQgetvalue(rels.get(), i, 4);
    index[r.oid] = relations.size();
    relations.push_back(std::move(r));
  }
  auto cols = query(conn.get(),
                    "SELECT a.attrelid, a.attnum, a.attname, a.atttypid FROM pg_attribute a "
                    "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','v','m','f','p') "
                    "AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg_toast%' "
                    "ORDER BY a.attrelid, a.attnum");
  for (int i = 0; i < PQntuples(cols.get()); ++i) {
    auto oid = static_cast<std::uint32_t>(std::stoul(PQgetvalue(cols.get(), i, 0)));
    auto it = index.find(oid);
    if (it == index.end()) continue;
    relations[it->second].columns.push_back({static_cast<std::int16_t>(std::stoi(PQgetvalue(cols.get(), i, 1))),
                                             PQgetvalue(cols.get(), i, 2),
                                             static_cast<std::uint32_t>(std::stoul(PQgetvalue(cols.get(), i, 3)))});
  }
  auto roles = query(conn.get(),
                     "SELECT r.rolname, coalesce(array_to_string(array(SELECT g.rolname FROM pg_auth_members m "
                     "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1), E'\\n'), '') "
                     "FROM pg_roles r");
  std::vector<masking::CatalogRole> roleList;
  for (int i = 0; i < PQntuples(roles.get()); ++i) {
    masking::CatalogRole r;
    r.name = PQgetvalue(roles.get(), i, 0);
    std::string groups = PQgetvalue(roles.get(), i, 1);
    std::size_t start = 0;
    while (start < groups.size()) {
      auto end = groups.find('\n', start);
      if (end == std::string::npos) end = groups.size();
      if (end > start) r.memberOf.push_back(groups.substr(start, end - start));
      start = end + 1;
    }
    roleList.push_back(std::move(r));
  }
  auto procs = query(conn.get(), "SELECT DISTINCT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace");
  std::vector<std::string> functions;
  for (int i = 0; i < PQntuples(procs.get()); ++i) functions.emplace_back(PQgetvalue(procs.get(), i, 0));
  return std::make_shared<const masking::Catalog>(std::move(relations), std::move(roleList), generation,
                                                  std::move(functions));
}

CatalogService::CatalogService(std::shared_ptr<const config::Config> config) : config_(std::move(config)) {
  thread_ = std::thread([this] { run(); });
}

CatalogService::~CatalogService() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::shared_ptr<const masking::Catalog> CatalogService::current(const std::string& database) {
  std::lock_guard lock(mutex_);
  auto& e = entries_[database];
  auto now = std::chrono::steady_clock::now();
  bool stale = !e.snapshot || now - e.loadedAt > config_->catalog.refreshInterval;
  if (stale && !e.queued && now - e.lastRequest > std::chrono::seconds(1)) {
    e.queued = true;
    e.lastRequest = now;
    queue_.push_back(database);
    wake_.notify_one();
  }
  return e.snapshot;
}

void CatalogService::requestRefresh(const std::string& database) {
  std::lock_guard lock(mutex_);
  auto& e = entries_[database];
  auto now = std::chrono::steady_clock::now();
  if (e.queued || now - e.lastRequest < std::chrono::seconds(1)) return;
  e.queued = true;
  e.lastRequest = now;
  queue_.push_back(database);
  wake_.notify_one();
}

boost::asio::awaitable<std::shared_ptr<const masking::Catalog>> CatalogService::acquire(std::string database) {
  auto snapshot = current(database);
  if (snapshot) co_return snapshot;
  // Poll with a short timer: loads are rare and this keeps the service free of executor plumbing.
  auto exec = co_await boost::asio::this_coro::executor;
  boost::asio::steady_timer timer(exec);
  auto deadline = std::chrono::steady_clock::now() + config_->catalog.loadTimeout + std::chrono::seconds(1);
  std::uint64_t attemptsBefore = 0;
  {
    std::lock_guard lock(mutex_);
    attemptsBefore = entries_[database].attempts;
  }
  while (std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(5));
    co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    std::lock_guard lock(mutex_);
    auto& e = entries_[database];
    if (e.snapshot) co_return e.snapshot;
    if (e.attempts > attemptsBefore && !e.queued) co_return nullptr;  // the load failed
  }
  co_return nullptr;
}

std::uint64_t CatalogService::loads() const {
  std::lock_guard lock(mutex_);
  return loads_;
}

std::uint64_t CatalogService::failures() const {
  std::lock_guard lock(mutex_);
  return failures_;
}

void CatalogService::run() {
  for (;;) {
    std::string database;
    std::uint64_t generation = 0;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      database = queue_.front();
      queue_.pop_front();
      generation = ++generation_;
    }
    std::shared_ptr<const masking::Catalog> snapshot;
    std::string error;
    auto started = std::chrono::steady_clock::now();
    try {
      snapshot = loadCatalog(*config_, database, generation);
    } catch (const std::exception& e) {
      error = e.what();
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    std::lock_guard lock(mutex_);
    auto& e = entries_[database];
    e.queued = false;
    ++e.attempts;
    if (snapshot) {
      e.snapshot = snapshot;
      e.loadedAt = std::chrono::steady_clock::now();
      e.lastError.clear();
      ++loads_;
      spdlog::info("catalog for database \"{}\" loaded: {} relations in {} ms (generation {})", database,
                   snapshot->relationCount(), ms, generation);
    } else {
      e.lastError = error;
      ++failures_;
      // libpq messages name hosts and users, never row values.
      spdlog::error("catalog for database \"{}\" could not be loaded: {}", database, error);
    }
  }
}

}  // namespace pgveil::proxy
