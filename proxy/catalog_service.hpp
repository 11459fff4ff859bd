#pragma once
// Catalog snapshots per database, loaded from the upstream server through pgveil's own service
// connection (proxy/pg_client.hpp, on a dedicated thread with its own io_context: never a
// session's connection, never a session thread). Snapshots are immutable and swapped whole; refreshed on an interval and on demand
// (an OID the snapshot does not know).

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "masking/catalog.hpp"

namespace pgveil::proxy {

// Loads one snapshot synchronously (used by the service thread, `pgveil explain` and tests).
// Throws std::runtime_error with the reason (connection, TLS, authentication, server error, or
// catalog.load_timeout exceeded) on failure.
[[nodiscard]] std::shared_ptr<const masking::Catalog> loadCatalog(const config::Config& cfg, const std::string& database,
                                                                  std::uint64_t generation);

class CatalogService {
 public:
  explicit CatalogService(std::shared_ptr<const config::Config> config);
  ~CatalogService();
  CatalogService(const CatalogService&) = delete;
  CatalogService& operator=(const CatalogService&) = delete;

  // The current snapshot, or null when none has loaded yet (then a load is requested, as it is
  // when the snapshot is older than catalog.refresh_interval).
  [[nodiscard]] std::shared_ptr<const masking::Catalog> current(const std::string& database);
  // Counts the snapshots stored so far, of any database. Sessions call current() per statement
  // only when it changed (or once a second): not a lock and a shared reference count that every
  // worker thread would write per statement.
  [[nodiscard]] std::uint64_t published() const { return published_.load(std::memory_order_acquire); }
  // Waits (bounded by catalog.load_timeout) for a snapshot; null when loading failed.
  boost::asio::awaitable<std::shared_ptr<const masking::Catalog>> acquire(std::string database);
  // Asks for a fresh snapshot (an unknown OID); at most one refresh per second per database.
  void requestRefresh(const std::string& database);
  // The same for a statement naming a relation the snapshot lacks, at most once every 10 s per
  // database: the name may be new, but may also never exist (a typo, information_schema, which
  // the loader skips), and every load makes every session analyse its statements again.
  void requestRefreshForUnknownRelation(const std::string& database);
  [[nodiscard]] std::uint64_t loads() const;
  [[nodiscard]] std::uint64_t failures() const;

 private:
  struct Entry {
    std::shared_ptr<const masking::Catalog> snapshot;
    std::chrono::steady_clock::time_point loadedAt{};
    std::chrono::steady_clock::time_point lastRequest{};
    std::chrono::steady_clock::time_point lastUnknownRelationRequest{};
    bool queued = false;
    std::string lastError;
    std::uint64_t attempts = 0;
  };
  void run();
  void requestLocked(const std::string& database, Entry& e, std::chrono::steady_clock::time_point now);

  std::shared_ptr<const config::Config> config_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::string, Entry> entries_;
  std::deque<std::string> queue_;
  bool stopping_ = false;
  std::uint64_t generation_ = 0;
  std::uint64_t loads_ = 0;
  std::uint64_t failures_ = 0;
  std::thread thread_;
  alignas(64) std::atomic<std::uint64_t> published_{0};  // read by every worker: a cache line of its own
};

}  // namespace pgveil::proxy
