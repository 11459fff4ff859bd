#include "proxy/server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <iostream>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pthread.h>
#include <sched.h>

#include "proxy/admin.hpp"
#include "proxy/session.hpp"
#include "proxy/shared_state.hpp"
#include "proxy/tls.hpp"

namespace pgveil::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace {
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);
}

namespace {

std::shared_ptr<Rules> makeRules(std::shared_ptr<const config::Config> cfg) {
  auto r = std::make_shared<Rules>();
  r->config = std::move(cfg);
  r->policies = std::make_shared<const masking::PolicySet>(r->config->masking);
  if (!r->config->canaries.values.empty()) {
    r->canaries = std::make_shared<const masking::CanaryMatcher>(r->config->canaries.values);
  }
  return r;
}

// The CPUs this process may run on (its affinity mask: taskset, a container's cpuset), ascending.
std::vector<int> allowedCpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
  }
  return cpus;
}

// Names the worker thread (top -H, /proc/PID/task/*/comm) and, when `cpu` is set, keeps it on that
// CPU. With one worker per CPU the scheduler then never migrates a worker away from the caches
// holding its sessions, and two workers never queue behind each other on one CPU.
void setUpWorkerThread(unsigned index, std::optional<int> cpu) {
  tWorkerSlot = index + 1;
  auto name = fmt::format("pgveil-w{}", index);
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  if (!cpu) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(*cpu, &set);
  if (int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set); rc != 0) {
    spdlog::warn("worker {}: cannot pin to CPU {}: {}", index, *cpu, std::strerror(rc));
  }
}

// On a worker's thread: reads waiting on connections that a reset closed without an event of
// their own are woken (Stream::wakeReaderIfReset), each session once a second, a tenth of them
// every 100 ms (two system calls per session: no burst that stalls the worker's sessions when
// it has thousands). Ends when the worker stops.
asio::awaitable<void> watchForResets(Worker& worker) {
  constexpr unsigned kSlices = 10;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (unsigned tick = 0;; tick = (tick + 1) % kSlices) {
    timer.expires_after(std::chrono::milliseconds(1000 / kSlices));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    wakeReadersOfResetConnections(worker, tick, kSlices);
  }
}

}  // namespace

struct Server::Impl {
  SharedState shared;
  asio::io_context main{1};
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<tcp::acceptor> adminAcceptor;
  std::size_t next = 0;
  bool stopping = false;

  asio::awaitable<void> acceptLoop();
  asio::awaitable<void> signals();
  asio::awaitable<void> drain();
  void reload();
};

// SIGHUP: a valid configuration applies to new sessions and to open sessions' next statements;
// an invalid one is logged with its error and the current one stays.
void Server::Impl::reload() {
  const auto& path = shared.config->sourcePath;
  std::shared_ptr<const config::Config> next;
  try {
    next = std::make_shared<const config::Config>(config::loadConfigFile(path));
  } catch (const std::exception& e) {
    shared.reloadFailures.fetch_add(1);
    spdlog::error("configuration reload rejected, keeping the current configuration: {}", e.what());
    return;
  }
  const auto& cur = *shared.config;
  std::vector<std::string> restart;
  if (next->listen.toString() != cur.listen.toString()) restart.emplace_back("listen");
  if (next->workers != cur.workers) restart.emplace_back("workers");
  if (next->pinWorkers != cur.pinWorkers) restart.emplace_back("pin_workers");
  if (next->upstream.host != cur.upstream.host || next->upstream.port != cur.upstream.port ||
      next->upstream.tls != cur.upstream.tls) {
    restart.emplace_back("upstream");
  }
  if (next->tls.mode != cur.tls.mode || next->tls.certFile != cur.tls.certFile) restart.emplace_back("tls");
  if (next->admin.enabled != cur.admin.enabled || next->admin.listen.toString() != cur.admin.listen.toString()) {
    restart.emplace_back("admin");
  }
  if (next->masking.resolvedKey() != cur.masking.resolvedKey()) restart.emplace_back("masking.key");
  if (next->alerts.auditFile != cur.alerts.auditFile || next->alerts.webhook.url != cur.alerts.webhook.url) {
    restart.emplace_back("alerts sinks");
  }
  for (const auto& k : restart) spdlog::warn("configuration reload: {} changes only take effect after a restart", k);
  auto rules = makeRules(next);
  shared.setRules(rules);
  if (shared.alerts) shared.alerts->setLimits(next->alerts.maxPerSecond);
  shared.reloads.fetch_add(1);
  std::shared_ptr<const Rules> snapshot = shared.rules();
  for (auto& w : workers) {
    Worker* wp = w.get();
    asio::post(wp->context, [wp, snapshot] { reloadSessions(*wp, snapshot); });
  }
  spdlog::info("configuration reloaded from {} (generation {})", path, snapshot->generation);
}

Server::Server(std::shared_ptr<const config::Config> config) : impl_(std::make_unique<Impl>()) {
  impl_->shared.config = std::move(config);
  impl_->shared.clientTls = makeClientTlsContext(impl_->shared.config->tls);
  impl_->shared.upstreamTls = makeUpstreamTlsContext(impl_->shared.config->upstream);
  const auto& cfg = *impl_->shared.config;
  impl_->shared.setRules(makeRules(impl_->shared.config));
  impl_->shared.masker = std::make_unique<masking::ValueMasker>(cfg.masking.resolvedKey());
  impl_->shared.analyzer = std::make_unique<masking::Analyzer>(
      masking::AnalyzerOptions{.maxQueryBytes = cfg.analyzer.maxQuerySize, .maxJsonDepth = 2000});
  impl_->shared.catalogs = std::make_unique<CatalogService>(impl_->shared.config);
  impl_->shared.alerts = std::make_unique<Alerts>(cfg.alerts);
}

Server::~Server() = default;

asio::awaitable<void> Server::Impl::acceptLoop() {
  for (;;) {
    auto& worker = *workers[next];
    next = (next + 1) % workers.size();
    auto [ec, socket] = co_await acceptor->async_accept(worker.context, kUse);
    if (ec) {
      if (stopping || ec == asio::error::operation_aborted) co_return;
      // EMFILE and friends: keep serving the sessions we have, retry shortly.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer t(main, std::chrono::milliseconds(50));
      co_await t.async_wait(kUse);
      continue;
    }
    asio::co_spawn(worker.context, runSession(shared, worker, std::move(socket)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("session coroutine failed: {}", ex.what());
      }
    });
  }
}

asio::awaitable<void> Server::Impl::drain() {
  stopping = true;
  shared.shuttingDown = true;
  boost::system::error_code ignored;
  acceptor->close(ignored);
  auto deadline = std::chrono::steady_clock::now() + shared.config->connections.shutdownTimeout;
  asio::steady_timer t(main);
  while (shared.activeClients.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(50));
    co_await t.async_wait(kUse);
  }
  if (shared.activeClients.load() > 0) {
    spdlog::info("shutdown timeout: terminating {} sessions", shared.activeClients.load());
    for (auto& w : workers) {
      Worker* wp = w.get();
      asio::post(wp->context, [wp] { terminateSessions(*wp); });
    }
    auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (shared.activeClients.load() > 0 && std::chrono::steady_clock::now() < hard) {
      t.expires_after(std::chrono::milliseconds(20));
      co_await t.async_wait(kUse);
    }
  }
  for (auto& w : workers) w->context.stop();
  main.stop();
}

asio::awaitable<void> Server::Impl::signals() {
  asio::signal_set set(main, SIGINT, SIGTERM, SIGHUP);
  for (;;) {
    auto [ec, sig] = co_await set.async_wait(kUse);
    if (ec) co_return;
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP received: reloading the configuration");
      reload();
      continue;
    }
    spdlog::info("{} received: no new connections, draining {} sessions (up to {} ms)",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", shared.activeClients.load(),
                 shared.config->connections.shutdownTimeout.count());
    co_await drain();
    co_return;
  }
}

int Server::run() {
  auto& cfg = *impl_->shared.config;
  // Sized from the affinity mask, not the machine: a cpuset of 2 of 64 CPUs gives 2 workers.
  const auto cpus = allowedCpus();
  unsigned n = cfg.workers ? cfg.workers
                           : (cpus.empty() ? std::max(1u, std::thread::hardware_concurrency())
                                           : static_cast<unsigned>(cpus.size()));
  for (unsigned i = 0; i < n; ++i) {
    impl_->workers.push_back(std::make_unique<Worker>());
    impl_->workers.back()->analysisCache = std::make_unique<masking::AnalysisCache>(cfg.analyzer.cacheSize);
  }

  boost::system::error_code ec;
  auto addr = asio::ip::make_address(cfg.listen.host, ec);
  if (ec) {
    // A host name: resolve it once at start-up.
    tcp::resolver resolver(impl_->main);
    auto results = resolver.resolve(cfg.listen.host, std::to_string(cfg.listen.port), ec);
    if (ec || results.empty()) {
      spdlog::critical("cannot resolve listen address {}: {}", cfg.listen.toString(), ec.message());
      return 1;
    }
    addr = results.begin()->endpoint().address();
  }
  tcp::endpoint ep(addr, cfg.listen.port);
  impl_->acceptor = std::make_unique<tcp::acceptor>(impl_->main);
  impl_->acceptor->open(ep.protocol(), ec);
  if (!ec) impl_->acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor->bind(ep, ec);
  if (!ec) impl_->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    spdlog::critical("cannot listen on {}: {}", cfg.listen.toString(), ec.message());
    return 1;
  }


  // The admin endpoint binds before any thread starts, so that a bad address fails start-up cleanly.
  if (cfg.admin.enabled) {
    tcp::endpoint aep(asio::ip::make_address(cfg.admin.listen.host, ec), cfg.admin.listen.port);
    impl_->adminAcceptor = std::make_unique<tcp::acceptor>(impl_->main);
    auto& admin = *impl_->adminAcceptor;
    if (!ec) admin.open(aep.protocol(), ec);
    if (!ec) admin.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) admin.bind(aep, ec);
    if (!ec) admin.listen(64, ec);
    if (ec) {
      spdlog::critical("cannot listen on admin endpoint {}: {}", cfg.admin.listen.toString(), ec.message());
      return 1;
    }
    auto abound = admin.local_endpoint();
    spdlog::info("admin endpoint listening on {}:{} (/healthz, /metrics, /sessions)", abound.address().to_string(),
                 abound.port());
  }

  // Logged last: tests and scripts wait for this line.
  auto bound = impl_->acceptor->local_endpoint();
  // More workers than CPUs: two pinned to one CPU could never be spread by the scheduler.
  const bool pin = cfg.pinWorkers && !cpus.empty() && n <= cpus.size();
  std::vector<int> pinnedTo;
  for (unsigned i = 0; pin && i < n; ++i) pinnedTo.push_back(cpus[i]);
  std::string placement = " unpinned";
  if (pin) placement = fmt::format(" on CPUs {}", fmt::join(pinnedTo, ","));
  else if (cfg.pinWorkers && !cpus.empty())
    placement = fmt::format(" unpinned: more workers than the {} CPUs", cpus.size());
  spdlog::info("pgveil listening on {}:{} (upstream {}:{}, {} workers{}, client TLS {})", bound.address().to_string(),
               bound.port(), cfg.upstream.host, cfg.upstream.port, n, placement,
               cfg.tls.mode == config::ClientTls::Disable ? "off" : "on");

  std::vector<std::thread> threads;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& w : impl_->workers) {
    guards.push_back(asio::make_work_guard(w->context));
    Worker* wp = w.get();
    auto index = static_cast<unsigned>(threads.size());
    std::optional<int> cpu;
    if (pin) cpu = pinnedTo[index];
    threads.emplace_back([wp, index, cpu] {
      setUpWorkerThread(index, cpu);
      for (;;) {
        try {
          wp->context.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("worker loop exception: {}", e.what());
        }
      }
    });
  }
  for (auto& w : impl_->workers) asio::co_spawn(w->context, watchForResets(*w), asio::detached);
  auto logFailure = [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("listener failed: {}", ex.what());
    }
  };
  asio::co_spawn(impl_->main, impl_->acceptLoop(), logFailure);
  if (impl_->adminAcceptor) {
    std::vector<Worker*> workers;
    for (auto& w : impl_->workers) workers.push_back(w.get());
    asio::co_spawn(impl_->main, runAdmin(impl_->shared, workers, std::move(*impl_->adminAcceptor)), logFailure);
  }

  asio::co_spawn(impl_->main, impl_->signals(), logFailure);
  impl_->main.run();
  guards.clear();
  for (auto& w : impl_->workers) w->context.stop();
  for (auto& t : threads) t.join();
  spdlog::info("pgveil stopped");
  return 0;
}

}  // namespace pgveil::proxy
