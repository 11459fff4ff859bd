#pragma once
// State shared by all sessions of one pgveil process: the configuration snapshot, TLS contexts,
// the cancel-key registry and process-wide counters. Sessions read it; only start-up writes it.

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
#include "masking/policy.hpp"
#include "masking/strategy.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/alerts.hpp"
#include "proxy/catalog_service.hpp"

namespace pgveil::proxy {

class Session;

// What /sessions shows of one session; counters are updated by the session's own thread.
struct SessionInfo {
  std::uint64_t id = 0;
  std::string user;
  std::string database;
  std::string applicationName;
  std::string client;
  std::string policy;  // empty: unmasked
  std::chrono::steady_clock::time_point started;
  std::atomic<std::uint64_t> rows{0};
  std::atomic<std::uint64_t> rowsMasked{0};
  std::atomic<std::uint64_t> refusals{0};
};

struct SharedState {
  std::shared_ptr<const config::Config> config;
  std::unique_ptr<boost::asio::ssl::context> clientTls;    // null when tls.mode is disable
  std::unique_ptr<boost::asio::ssl::context> upstreamTls;  // null when upstream.tls is disable
  CancelRegistry cancels;
  std::atomic<std::uint32_t> activeClients{0};
  std::atomic<std::uint64_t> nextSessionId{1};
  std::atomic<std::uint64_t> totalSessions{0};
  std::atomic<bool> shuttingDown{false};

  // Masking: compiled policies, the value masker, the analyzer and catalog snapshots.
  std::shared_ptr<const masking::PolicySet> policies;
  std::unique_ptr<masking::ValueMasker> masker;
  std::unique_ptr<masking::Analyzer> analyzer;
  std::unique_ptr<CatalogService> catalogs;
  std::atomic<std::uint64_t> refusals{0};
  std::atomic<std::uint64_t> rowsForwarded{0};
  std::atomic<std::uint64_t> rowsMasked{0};
  std::unique_ptr<Alerts> alerts;

  std::mutex sessionsMutex;
  std::map<std::uint64_t, std::shared_ptr<SessionInfo>> sessionInfos;

  // The classification of one catalog snapshot, built once per snapshot.
  std::shared_ptr<const masking::Classification> classificationFor(const std::shared_ptr<const masking::Catalog>& c) {
    std::lock_guard lock(classificationMutex);
    auto it = classifications.find(c.get());
    if (it != classifications.end() && it->second.first.lock() == c) return it->second.second;
    auto cls = std::make_shared<const masking::Classification>(policies->config(), *c);
    // Drop entries of snapshots that no longer exist.
    for (auto i = classifications.begin(); i != classifications.end();) {
      if (i->second.first.expired()) i = classifications.erase(i);
      else ++i;
    }
    classifications[c.get()] = {c, cls};
    return cls;
  }
  std::mutex classificationMutex;
  std::unordered_map<const masking::Catalog*,
                     std::pair<std::weak_ptr<const masking::Catalog>, std::shared_ptr<const masking::Classification>>>
      classifications;
};

// One worker thread's io_context and the sessions living on it (touched only on that thread).
struct Worker {
  boost::asio::io_context context{1};
  std::unordered_set<Session*> sessions;
  std::unique_ptr<masking::AnalysisCache> analysisCache;
};

}  // namespace pgveil::proxy
