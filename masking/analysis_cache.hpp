#pragma once
// A bounded LRU cache of analyses keyed by exact SQL text and an analysis context key (catalog
// generation and search_path), and of literal-insensitive analyses keyed by the text's shape
// (literal_shape.hpp), so that the same statement with other constants is not parsed again.
// Not thread-safe: one per worker thread; counters are atomics so that metrics can read them
// from another thread.

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "masking/analysis.hpp"

namespace pgveil::masking {

struct CacheStats {
  std::uint64_t hits = 0;       // exact or shape
  std::uint64_t shapeHits = 0;  // of which by shape
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;
};

class AnalysisCache {
 public:
  explicit AnalysisCache(std::size_t maxBytes) : maxBytes_(maxBytes) {}

  // The analysis of `sql`; failing that, when `shape` is given (literalShape of `sql`), a
  // literal-insensitive analysis of the same shape. One hit or one miss is counted.
  [[nodiscard]] std::shared_ptr<const Analysis> find(std::string_view sql, std::uint64_t contextKey,
                                                     const std::string* shape = nullptr);
  void insert(std::string_view sql, std::uint64_t contextKey, std::shared_ptr<const Analysis> analysis);
  // Only analyses with literalInsensitive are stored by shape.
  void insertShape(std::string_view shape, std::uint64_t contextKey, std::shared_ptr<const Analysis> analysis);
  void clear();
  [[nodiscard]] CacheStats stats() const;

  // A context key from a catalog generation and a search_path.
  [[nodiscard]] static std::uint64_t contextKey(std::uint64_t catalogGeneration, std::string_view searchPath);

 private:
  struct Entry {
    std::uint64_t key;
    std::uint64_t context;
    std::shared_ptr<const Analysis> analysis;
    std::size_t bytes;
    std::string shape;  // shape entries: the shape; exact entries: empty (the analysis holds the text)
  };
  using Index = std::unordered_map<std::uint64_t, std::list<Entry>::iterator>;
  static std::uint64_t hash(std::string_view sql, std::uint64_t context);
  void put(Index& index, std::uint64_t key, Entry entry);
  void evictTo(std::size_t budget);

  std::size_t maxBytes_;
  std::size_t bytes_ = 0;
  std::list<Entry> lru_;  // front: most recently used
  Index index_;       // exact texts
  Index shapeIndex_;  // shapes
  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> shapeHits_{0};
  std::atomic<std::uint64_t> misses_{0};
  std::atomic<std::uint64_t> evictions_{0};
  std::atomic<std::uint64_t> entries_{0};
  std::atomic<std::uint64_t> bytesStat_{0};
};

}  // namespace pgveil::masking
