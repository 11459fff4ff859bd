#pragma once
// State shared by all sessions of one pgveil process: the configuration snapshot, TLS contexts,
// the cancel-key registry and process-wide counters. Sessions read it; only start-up writes it.

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>
#include <chrono>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "config/config.hpp"
#include "masking/analysis_cache.hpp"
#include "masking/analyzer.hpp"
#include "masking/limits.hpp"
#include "masking/policy.hpp"
#include "masking/strategy.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/alerts.hpp"
#include "proxy/catalog_service.hpp"

namespace pgveil::proxy {

class Session;

// One generation of the reloadable configuration (SIGHUP): policies, limits, rules, canaries.
// Sessions hold one and pick up a newer one between statements.
struct Rules {
  std::uint64_t generation = 0;
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const masking::PolicySet> policies;
  std::shared_ptr<const masking::CanaryMatcher> canaries;  // null: no canaries

  // Whether a session of this policy role must go through the inspecting flow (masking,
  // limits, exfiltration rules, canaries or large-pull alerts), or may have the byte relay.
  [[nodiscard]] bool needsInspection(const masking::Policy& p, const std::string& user) const {
    const auto& c = *config;
    bool masking = !c.masking.classify.empty();  // nothing classified: nothing to mask or to guard
    if (masking && !p.unmasked()) return true;
    const auto& l = config::limitsFor(c, p.role());
    if (l.any() || l.largePullRows) return true;
    if (masking && c.exfiltration.any() && !exfiltrationExempt(p.role(), user)) return true;
    return canaries && !c.canaries.exempt.count(p.role());
  }
  // The policy a session runs under: with nothing classified, an unmasked one of the same role
  // (limits and canaries still apply; the statement gate has nothing to protect).
  [[nodiscard]] std::shared_ptr<const masking::Policy> effective(std::shared_ptr<const masking::Policy> p) const {
    if (!config->masking.classify.empty() || p->unmasked()) return p;
    config::RolePolicyConfig plain;
    plain.name = p->role();
    plain.unmasked = true;
    plain.monitor = p->monitor();
    return std::make_shared<const masking::Policy>(plain);
  }
  [[nodiscard]] bool exfiltrationExempt(const std::string& role, const std::string& user) const {
    return config->exfiltration.exempt.count(role) > 0 || config->exfiltration.exempt.count(user) > 0;
  }
};

// The copy of a PerWorker value this thread writes: worker i uses i + 1 (set when the worker
// thread starts), every other thread 0.
inline thread_local unsigned tWorkerSlot = 0;

// Counters that every worker thread updates, per statement or per result: one copy per worker,
// each on cache lines of its own. One shared counter costs a cross-core cache miss on each
// update once two workers write it; readers (/metrics) add the copies up.
template <typename T>
class PerWorker {
 public:
  static constexpr unsigned kCopies = 16;  // workers beyond that share copies (still atomic)
  [[nodiscard]] T& local() { return copies_[tWorkerSlot % kCopies].value; }
  template <typename Field>
  [[nodiscard]] std::uint64_t sum(Field field) const {
    std::uint64_t total = 0;
    for (const auto& c : copies_) total += field(c.value);
    return total;
  }

 private:
  struct alignas(64) Copy {
    T value;
  };
  std::array<Copy, kCopies> copies_{};
};

// A Prometheus histogram with fixed bounds (seconds), updated lock-free.
struct Histogram {
  static constexpr double kBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  static constexpr std::size_t kCount = sizeof(kBounds) / sizeof(kBounds[0]);
  std::atomic<std::uint64_t> buckets[kCount + 1]{};
  std::atomic<std::uint64_t> sumMicros{0};
  void observe(std::chrono::steady_clock::duration d) {
    double s = std::chrono::duration<double>(d).count();
    std::size_t i = 0;
    while (i < kCount && s > kBounds[i]) ++i;
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    sumMicros.fetch_add(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count()),
                        std::memory_order_relaxed);
  }
};

// Per policy role counters for /metrics (entries are never removed: references stay valid).
struct RoleCounters {
  std::atomic<std::uint64_t> rowsForwarded{0};
  std::atomic<std::uint64_t> bytesForwarded{0};
  std::atomic<std::uint64_t> rowsMasked{0};
  std::atomic<std::uint64_t> bytesMasked{0};     // size of the rows as the server sent them
  std::atomic<std::uint64_t> queriesAllowed{0};
  std::atomic<std::uint64_t> queriesRefused{0};   // gate refusals
  std::atomic<std::uint64_t> queriesBlocked{0};   // exfiltration blocks
  std::atomic<std::uint64_t> queriesMonitored{0}; // would have been blocked (monitor mode)
  std::atomic<std::uint64_t> breaches{0};         // limits hit
};

// What /sessions shows of one session; counters are updated by the session's own thread.
struct SessionInfo {
  std::uint64_t id = 0;
  std::string user;
  std::string database;
  std::string applicationName;
  std::string client;
  std::string policy;  // empty: unmasked and not inspected
  std::atomic<char> state{'I'};  // last ReadyForQuery status: I idle, T in transaction, E failed; A active
  std::chrono::steady_clock::time_point started;
  std::atomic<std::uint64_t> rows{0};
  std::atomic<std::uint64_t> rowsMasked{0};
  std::atomic<std::uint64_t> refusals{0};
  std::atomic<std::uint64_t> bufferBytes{0};  // read buffers held (none while the session is idle)
};

struct SharedState {
  std::shared_ptr<const config::Config> config;  // as started: listeners, upstream, TLS, connections
  std::unique_ptr<boost::asio::ssl::context> clientTls;    // null when tls.mode is disable
  std::unique_ptr<boost::asio::ssl::context> upstreamTls;  // null when upstream.tls is disable
  CancelRegistry cancels;
  std::atomic<std::uint32_t> activeClients{0};
  std::atomic<std::uint64_t> nextSessionId{1};
  std::atomic<std::uint64_t> totalSessions{0};
  std::atomic<bool> shuttingDown{false};

  // The current rules; `rulesGeneration` lets sessions notice a reload without a lock.
  std::shared_ptr<const Rules> rules() const {
    std::lock_guard lock(rulesMutex);
    return rules_;
  }
  void setRules(std::shared_ptr<Rules> r) {
    std::lock_guard lock(rulesMutex);
    r->generation = rulesGeneration.load() + 1;
    rules_ = std::move(r);
    rulesGeneration.store(rules_->generation);
  }
  std::atomic<std::uint64_t> rulesGeneration{0};
  mutable std::mutex rulesMutex;
  std::shared_ptr<const Rules> rules_;

  // State shared by all sessions for limits and rules across sessions.
  masking::SlidingWindows windows;
  masking::DistinctRows distinctRows;
  masking::EnumerationTracker enumeration;
  std::mutex lockoutMutex;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> lockouts;  // policy role -> until

  std::mutex roleCountersMutex;
  std::map<std::string, PerWorker<RoleCounters>> roleCounters;
  PerWorker<RoleCounters>& countersFor(const std::string& role) {
    std::lock_guard lock(roleCountersMutex);
    return roleCounters[role];
  }
  PerWorker<Histogram> queryLatency;
  Histogram upstreamConnectLatency;
  std::atomic<std::uint64_t> reloads{0};
  std::atomic<std::uint64_t> reloadFailures{0};

  // Masking: the value masker, the analyzer and catalog snapshots.
  std::unique_ptr<masking::ValueMasker> masker;
  std::unique_ptr<masking::Analyzer> analyzer;
  std::unique_ptr<CatalogService> catalogs;
  struct FlowCounters {
    std::atomic<std::uint64_t> refusals{0};
    std::atomic<std::uint64_t> rowsForwarded{0};
    std::atomic<std::uint64_t> rowsMasked{0};
  };
  PerWorker<FlowCounters> flowCounters;
  std::unique_ptr<Alerts> alerts;

  std::mutex sessionsMutex;
  std::map<std::uint64_t, std::shared_ptr<SessionInfo>> sessionInfos;

  // The classification of one catalog snapshot under one rules generation, built once.
  std::shared_ptr<const masking::Classification> classificationFor(const Rules& rules,
                                                                   const std::shared_ptr<const masking::Catalog>& c) {
    std::lock_guard lock(classificationMutex);
    if (classificationsGeneration != rules.generation) {
      classifications.clear();
      classificationsGeneration = rules.generation;
    }
    auto it = classifications.find(c.get());
    if (it != classifications.end() && it->second.first.lock() == c) return it->second.second;
    auto cls = std::make_shared<const masking::Classification>(rules.policies->config(), *c);
    // Drop entries of snapshots that no longer exist.
    for (auto i = classifications.begin(); i != classifications.end();) {
      if (i->second.first.expired()) i = classifications.erase(i);
      else ++i;
    }
    classifications[c.get()] = {c, cls};
    return cls;
  }
  std::mutex classificationMutex;
  std::uint64_t classificationsGeneration = 0;
  std::unordered_map<const masking::Catalog*,
                     std::pair<std::weak_ptr<const masking::Catalog>, std::shared_ptr<const masking::Classification>>>
      classifications;
};

// One worker thread's io_context and the sessions living on it (touched only on that thread).
struct Worker {
  std::unordered_set<Session*> sessions;
  std::unique_ptr<masking::AnalysisCache> analysisCache;
  // Last, so destroyed first: sessions still running after a drain timeout end with the
  // context's destruction, and their destructors leave `sessions`.
  boost::asio::io_context context{1};
};

}  // namespace pgveil::proxy
