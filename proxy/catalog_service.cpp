#include "proxy/catalog_service.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <stdexcept>

#include "proxy/logging.hpp"
#include "proxy/pg_client.hpp"
#include "proxy/tls.hpp"

namespace pgveil::proxy {

namespace {

using namespace boost::asio::experimental::awaitable_operators;
using Rows = std::vector<PgClient::Row>;

const std::string& text(const PgClient::Row& row, std::size_t i) {
  static const std::string kEmpty;
  if (i >= row.size()) throw std::runtime_error("catalog query failed: a row has too few columns");
  return row[i] ? *row[i] : kEmpty;
}

std::uint32_t oidAt(const PgClient::Row& row, std::size_t i) {
  return static_cast<std::uint32_t>(std::stoul(text(row, i)));
}

std::shared_ptr<const masking::Catalog> buildCatalog(const Rows& rels, const Rows& cols, const Rows& roles,
                                                     const Rows& procs, std::uint64_t generation) {
  std::vector<masking::CatalogRelation> relations;
  std::map<std::uint32_t, std::size_t> index;
  for (const auto& row : rels) {
    masking::CatalogRelation r;
    r.oid = oidAt(row, 0);
    r.schema = text(row, 1);
    r.name = text(row, 2);
    r.kind = text(row, 3).empty() ? '?' : text(row, 3)[0];
    if (row.size() > 4 && row[4]) r.viewDefinition = *row[4];
    index[r.oid] = relations.size();
    relations.push_back(std::move(r));
  }
  for (const auto& row : cols) {
    auto it = index.find(oidAt(row, 0));
    if (it == index.end()) continue;
    relations[it->second].columns.push_back(
        {static_cast<std::int16_t>(std::stoi(text(row, 1))), text(row, 2), oidAt(row, 3)});
  }
  std::vector<masking::CatalogRole> roleList;
  for (const auto& row : roles) {
    masking::CatalogRole r;
    r.name = text(row, 0);
    const std::string& groups = text(row, 1);
    std::size_t start = 0;
    while (start < groups.size()) {
      auto end = groups.find('\n', start);
      if (end == std::string::npos) end = groups.size();
      if (end > start) r.memberOf.push_back(groups.substr(start, end - start));
      start = end + 1;
    }
    roleList.push_back(std::move(r));
  }
  std::vector<std::string> functions;
  for (const auto& row : procs) functions.push_back(text(row, 0));
  return std::make_shared<const masking::Catalog>(std::move(relations), std::move(roleList), generation,
                                                  std::move(functions));
}

// The whole load on pgveil's own connection; errors come back as text (never thrown, so that
// the deadline race below ends when the load does).
asio::awaitable<std::pair<std::shared_ptr<const masking::Catalog>, std::string>> load(
    const config::Config& cfg, asio::ssl::context* tls, const std::string& database, std::uint64_t generation) {
  try {
    auto conn = co_await PgClient::connect(cfg, tls, database, "pgveil catalog");
    // Statements run with a timeout so that a stuck catalog never blocks refreshes forever.
    (void)co_await conn->query("SET statement_timeout = " + std::to_string(cfg.catalog.loadTimeout.count()));
    auto rels = co_await conn->query(
        "SELECT c.oid, n.nspname, c.relname, c.relkind, "
        "CASE WHEN c.relkind IN ('v','m') THEN pg_get_viewdef(c.oid) END "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r','v','m','f','p') AND n.nspname <> 'information_schema' "
        "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY c.oid");
    auto cols = co_await conn->query(
        "SELECT a.attrelid, a.attnum, a.attname, a.atttypid FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','v','m','f','p') "
        "AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg_toast%' "
        "ORDER BY a.attrelid, a.attnum");
    auto roles = co_await conn->query(
        "SELECT r.rolname, coalesce(array_to_string(array(SELECT g.rolname FROM pg_auth_members m "
        "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1), E'\\n'), '') "
        "FROM pg_roles r");
    auto procs =
        co_await conn->query("SELECT DISTINCT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace");
    co_await conn->terminate();
    co_return std::pair{buildCatalog(rels, cols, roles, procs, generation), std::string()};
  } catch (const std::exception& e) {
    co_return std::pair{std::shared_ptr<const masking::Catalog>(), std::string(e.what())};
  }
}

}  // namespace

std::shared_ptr<const masking::Catalog> loadCatalog(const config::Config& cfg, const std::string& database,
                                                    std::uint64_t generation) {
  std::unique_ptr<asio::ssl::context> tls;
  if (cfg.upstream.tls != config::UpstreamTls::Disable) tls = makeUpstreamTlsContext(cfg.upstream);
  asio::io_context io(1);
  std::shared_ptr<const masking::Catalog> result;
  std::string error;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        // One deadline for connecting, authenticating and every query (catalog.load_timeout).
        asio::steady_timer deadline(io, cfg.catalog.loadTimeout);
        auto r = co_await (load(cfg, tls.get(), database, generation) ||
                           deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
        if (r.index() == 1) {
          error = "catalog load timed out after " + std::to_string(cfg.catalog.loadTimeout.count()) + " ms";
          co_return;
        }
        std::tie(result, error) = std::get<0>(std::move(r));
      },
      [&](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          error = ex.what();
        }
      });
  io.run();
  if (!result) throw std::runtime_error(error.empty() ? "catalog load failed" : error);
  return result;
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
  if (stale && !e.queued && now - e.lastRequest > std::chrono::seconds(1)) requestLocked(database, e, now);
  return e.snapshot;
}

void CatalogService::requestLocked(const std::string& database, Entry& e, std::chrono::steady_clock::time_point now) {
  e.queued = true;
  e.lastRequest = now;
  queue_.push_back(database);
  wake_.notify_one();
}

void CatalogService::requestRefresh(const std::string& database) {
  std::lock_guard lock(mutex_);
  auto& e = entries_[database];
  auto now = std::chrono::steady_clock::now();
  if (e.queued || now - e.lastRequest < std::chrono::seconds(1)) return;
  requestLocked(database, e, now);
}

void CatalogService::requestRefreshForUnknownRelation(const std::string& database) {
  std::lock_guard lock(mutex_);
  auto& e = entries_[database];
  auto now = std::chrono::steady_clock::now();
  if (e.queued || now - e.lastRequest < std::chrono::seconds(1) ||
      now - e.lastUnknownRelationRequest < std::chrono::seconds(10)) {
    return;
  }
  e.lastUnknownRelationRequest = now;
  requestLocked(database, e, now);
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
      published_.fetch_add(1, std::memory_order_release);
      e.loadedAt = std::chrono::steady_clock::now();
      e.lastError.clear();
      ++loads_;
      spdlog::info("catalog for database \"{}\" loaded: {} relations in {} ms (generation {})", database,
                   snapshot->relationCount(), ms, generation);
    } else {
      e.lastError = error;
      ++failures_;
      // Messages name hosts, users and server errors of catalog queries, never row values.
      spdlog::error("catalog for database \"{}\" could not be loaded: {}", logSafe(database), logSafe(error, 1024));
    }
  }
}

}  // namespace pgveil::proxy
