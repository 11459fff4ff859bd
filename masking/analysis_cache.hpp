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

  // The analysis of `sql`; failing that, a literal-insensitive analysis of the same shape when
  // `shapeOf()` returns one (literalShape of `sql`, or null). shapeOf runs only after the exact
  // text missed. One hit or one miss is counted.
  template <typename ShapeOf>
  [[nodiscard]] std::shared_ptr<const Analysis> find(std::string_view sql, std::uint64_t contextKey, ShapeOf&& shapeOf) {
    auto a = findText(sql, contextKey);
    bool byShape = false;
    if (!a) {
      if (const std::string* shape = shapeOf()) {
        a = findShape(*shape, contextKey);
        byShape = a != nullptr;
      }
    }
    count(a != nullptr, byShape);
    return a;
  }
  [[nodiscard]] std::shared_ptr<const Analysis> find(std::string_view sql, std::uint64_t contextKey) {
    return find(sql, contextKey, [] { return static_cast<const std::string*>(nullptr); });
  }
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
  std::shared_ptr<const Analysis> findText(std::string_view sql, std::uint64_t contextKey);
  std::shared_ptr<const Analysis> findShape(const std::string& shape, std::uint64_t contextKey);
  void count(bool hit, bool byShape);
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
