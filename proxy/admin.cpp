#include "proxy/admin.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <string>
#include <type_traits>

#include "masking/json_text.hpp"
#include "proxy/logging.hpp"

namespace pgveil::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

void counter(std::string& out, const char* name, const char* help, std::uint64_t v, const char* type = "counter") {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
         std::to_string(v) + "\n";
}

// `h` is a Histogram or a PerWorker<Histogram> (its copies added up).
template <typename H>
void histogram(std::string& out, const char* name, const char* help, const H& h) {
  auto total = [&h](auto field) {
    if constexpr (std::is_same_v<H, Histogram>) return field(h);
    else return h.sum(field);
  };
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= Histogram::kCount; ++i) {
    cumulative += total([i](const Histogram& x) { return x.buckets[i].load(std::memory_order_relaxed); });
    std::string le = i < Histogram::kCount ? fmt::format("{}", Histogram::kBounds[i]) : "+Inf";
    out += std::string(name) + "_bucket{le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  const auto sumMicros = total([](const Histogram& x) { return x.sumMicros.load(std::memory_order_relaxed); });
  out += fmt::format("{}_sum {}\n{}_count {}\n", name, static_cast<double>(sumMicros) / 1e6, name, cumulative);
}

void roleSeries(std::string& out, SharedState& shared) {
  std::lock_guard lock(shared.roleCountersMutex);
  auto family = [&](const char* name, const char* help, auto value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n";
    for (const auto& [role, c] : shared.roleCounters) {
      out += std::string(name) + "{role=\"" + logSafe(role) + "\"} " + std::to_string(c.sum(value)) + "\n";
    }
  };
  family("pgveil_role_rows_forwarded_total", "Rows sent to clients of inspected sessions, by policy role.",
         [](const RoleCounters& c) { return c.rowsForwarded.load(); });
  family("pgveil_role_bytes_forwarded_total", "Bytes of rows sent to clients of inspected sessions, by policy role.",
         [](const RoleCounters& c) { return c.bytesForwarded.load(); });
  family("pgveil_role_rows_masked_total", "Rows rewritten by masking, by policy role.",
         [](const RoleCounters& c) { return c.rowsMasked.load(); });
  family("pgveil_role_bytes_masked_total", "Bytes of rows rewritten by masking (as the server sent them), by policy role.",
         [](const RoleCounters& c) { return c.bytesMasked.load(); });
  family("pgveil_role_limit_breaches_total", "Results stopped or truncated by a limit, by policy role.",
         [](const RoleCounters& c) { return c.breaches.load(); });
  out += "# HELP pgveil_role_queries_total Statements of inspected sessions by verdict (allowed, refused by the gate, "
         "blocked by an exfiltration rule, monitored: would have been blocked).\n# TYPE pgveil_role_queries_total counter\n";
  for (const auto& [role, c] : shared.roleCounters) {
    auto r = logSafe(role);
    auto verdict = [&](const char* v, std::uint64_t n) {
      out += "pgveil_role_queries_total{role=\"" + r + "\",verdict=\"" + v + "\"} " + std::to_string(n) + "\n";
    };
    verdict("allowed", c.sum([](const RoleCounters& x) { return x.queriesAllowed.load(); }));
    verdict("refused", c.sum([](const RoleCounters& x) { return x.queriesRefused.load(); }));
    verdict("blocked", c.sum([](const RoleCounters& x) { return x.queriesBlocked.load(); }));
    verdict("monitored", c.sum([](const RoleCounters& x) { return x.queriesMonitored.load(); }));
  }
}

const char* stateName(char s) {
  switch (s) {
    case 'I': return "idle";
    case 'T': return "idle in transaction";
    case 'E': return "idle in failed transaction";
    default: return "active";
  }
}

asio::awaitable<void> serve(SharedState& shared, std::vector<Worker*> workers, tcp::socket socket) {
  beast::flat_buffer buffer(8192);
  http::request_parser<http::empty_body> parser;
  parser.header_limit(8192);
  asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::seconds(5));
  auto r = co_await (http::async_read(socket, buffer, parser, kUse) || timer.async_wait(kUse));
  if (r.index() != 0 || std::get<0>(std::get<0>(r))) co_return;
  const auto& req = parser.get();
  http::response<http::string_body> res;
  res.version(req.version());
  res.keep_alive(false);
  res.set(http::field::server, "pgveil");
  std::string target(req.target());
  if (req.method() != http::verb::get) {
    res.result(http::status::method_not_allowed);
    res.body() = "only GET\n";
  } else if (target == "/healthz") {
    res.result(http::status::ok);
    res.set(http::field::content_type, "text/plain");
    res.body() = shared.shuttingDown ? "shutting down\n" : "ok\n";
    if (shared.shuttingDown) res.result(http::status::service_unavailable);
  } else if (target == "/metrics") {
    res.result(http::status::ok);
    res.set(http::field::content_type, "text/plain; version=0.0.4");
    res.body() = metricsText(shared, workers);
  } else if (target == "/sessions") {
    res.result(http::status::ok);
    res.set(http::field::content_type, "application/json");
    res.body() = sessionsJson(shared);
  } else {
    res.result(http::status::not_found);
    res.body() = "not found: /healthz, /metrics, /sessions\n";
  }
  res.prepare_payload();
  timer.expires_after(std::chrono::seconds(5));
  co_await (http::async_write(socket, res, kUse) || timer.async_wait(kUse));
  beast::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace

std::string metricsText(SharedState& shared, const std::vector<Worker*>& workers) {
  std::string out;
  counter(out, "pgveil_up", "1 while pgveil runs.", 1, "gauge");
  counter(out, "pgveil_connections_active", "Client connections now open.", shared.activeClients.load(), "gauge");
  counter(out, "pgveil_sessions_total", "Client connections accepted.", shared.totalSessions.load());
  using Flow = SharedState::FlowCounters;
  counter(out, "pgveil_statements_refused_total", "Statements refused for masked roles.",
          shared.flowCounters.sum([](const Flow& f) { return f.refusals.load(); }));
  counter(out, "pgveil_rows_forwarded_total", "Rows sent to clients of inspected sessions.",
          shared.flowCounters.sum([](const Flow& f) { return f.rowsForwarded.load(); }));
  counter(out, "pgveil_rows_masked_total", "Rows rewritten by masking.",
          shared.flowCounters.sum([](const Flow& f) { return f.rowsMasked.load(); }));
  masking::CacheStats total;
  for (auto* w : workers) {
    if (!w->analysisCache) continue;
    auto s = w->analysisCache->stats();
    total.hits += s.hits;
    total.shapeHits += s.shapeHits;
    total.misses += s.misses;
    total.evictions += s.evictions;
    total.entries += s.entries;
    total.bytes += s.bytes;
  }
  counter(out, "pgveil_analyzer_cache_hits_total", "Analyses found in the cache.", total.hits);
  counter(out, "pgveil_analyzer_cache_shape_hits_total",
          "Hits on an analysis of the same statement with other constants (included in hits).", total.shapeHits);
  counter(out, "pgveil_analyzer_cache_misses_total", "Analyses computed.", total.misses);
  counter(out, "pgveil_analyzer_cache_evictions_total", "Analyses evicted.", total.evictions);
  counter(out, "pgveil_analyzer_cache_entries", "Cache entries (by text and by shape; an analysis may have both).",
          total.entries, "gauge");
  counter(out, "pgveil_analyzer_cache_bytes", "Memory held by cached analyses.", total.bytes, "gauge");
  auto lookups = total.hits + total.misses;
  out += fmt::format("# HELP pgveil_analyzer_cache_hit_ratio Cache hits over lookups since start.\n"
                     "# TYPE pgveil_analyzer_cache_hit_ratio gauge\npgveil_analyzer_cache_hit_ratio {}\n",
                     lookups ? static_cast<double>(total.hits) / static_cast<double>(lookups) : 0.0);
  roleSeries(out, shared);
  histogram(out, "pgveil_query_duration_seconds",
            "From a Query, Sync or FunctionCall sent upstream to its ReadyForQuery.", shared.queryLatency);
  histogram(out, "pgveil_upstream_connect_duration_seconds", "TCP connect to the upstream server.",
            shared.upstreamConnectLatency);
  counter(out, "pgveil_config_reloads_total", "Configurations reloaded (SIGHUP).", shared.reloads.load());
  counter(out, "pgveil_config_reload_failures_total", "Reloads rejected (the configuration was invalid).",
          shared.reloadFailures.load());
  if (shared.catalogs) {
    counter(out, "pgveil_catalog_loads_total", "Catalog snapshots loaded.", shared.catalogs->loads());
    counter(out, "pgveil_catalog_failures_total", "Catalog loads that failed.", shared.catalogs->failures());
  }
  if (shared.alerts) out += shared.alerts->metrics();
  return out;
}

std::string sessionsJson(SharedState& shared) {
  std::vector<std::shared_ptr<SessionInfo>> infos;
  {
    std::lock_guard lock(shared.sessionsMutex);
    for (const auto& [_, i] : shared.sessionInfos) infos.push_back(i);
  }
  auto now = std::chrono::steady_clock::now();
  std::string out = "[";
  for (std::size_t k = 0; k < infos.size(); ++k) {
    const auto& i = *infos[k];
    out += (k ? ",\n " : "\n ");
    out += "{\"id\":" + std::to_string(i.id) + ",\"user\":" + masking::jsonQuote(i.user) + ",\"database\":" + masking::jsonQuote(i.database) +
           ",\"application_name\":" + masking::jsonQuote(i.applicationName) + ",\"client\":" + masking::jsonQuote(i.client) +
           ",\"policy\":" + (i.policy.empty() ? std::string("null") : masking::jsonQuote(i.policy)) +
           ",\"state\":" + masking::jsonQuote(stateName(i.state.load())) + ",\"seconds\":" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - i.started).count()) +
           ",\"rows\":" + std::to_string(i.rows.load()) + ",\"rows_masked\":" + std::to_string(i.rowsMasked.load()) +
           ",\"refusals\":" + std::to_string(i.refusals.load()) +
           ",\"buffer_bytes\":" + std::to_string(i.bufferBytes.load()) + "}";
  }
  out += infos.empty() ? "]\n" : "\n]\n";
  return out;
}

asio::awaitable<void> runAdmin(SharedState& shared, std::vector<Worker*> workers, tcp::acceptor acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kUse);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), serve(shared, workers, std::move(socket)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::warn("admin request failed: {}", ex.what());
      }
    });
  }
}

}  // namespace pgveil::proxy
