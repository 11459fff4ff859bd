#include "masking/analysis_cache.hpp"

#include <xxhash.h>

namespace pgveil::masking {

std::uint64_t AnalysisCache::hash(std::string_view sql, std::uint64_t context) {
  return XXH3_64bits_withSeed(sql.data(), sql.size(), context);
}

std::uint64_t AnalysisCache::contextKey(std::uint64_t catalogGeneration, std::string_view searchPath) {
  return XXH3_64bits_withSeed(searchPath.data(), searchPath.size(), catalogGeneration);
}

std::shared_ptr<const Analysis> AnalysisCache::find(std::string_view sql, std::uint64_t contextKey) {
  auto key = hash(sql, contextKey);
  auto it = index_.find(key);
  // A 64-bit collision is possible in theory: the stored text decides.
  if (it == index_.end() || it->second->context != contextKey || it->second->analysis->sql != sql) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  hits_.fetch_add(1, std::memory_order_relaxed);
  return it->second->analysis;
}

void AnalysisCache::insert(std::string_view sql, std::uint64_t contextKey, std::shared_ptr<const Analysis> analysis) {
  auto bytes = analysis->memoryEstimate() + sizeof(Entry) + 64;
  if (bytes > maxBytes_) return;  // would evict everything else
  auto key = hash(sql, contextKey);
  if (auto it = index_.find(key); it != index_.end()) {
    bytes_ -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  evictTo(maxBytes_ - bytes);
  lru_.push_front({key, contextKey, std::move(analysis), bytes});
  index_[key] = lru_.begin();
  bytes_ += bytes;
  entries_.store(index_.size(), std::memory_order_relaxed);
  bytesStat_.store(bytes_, std::memory_order_relaxed);
}

void AnalysisCache::evictTo(std::size_t budget) {
  while (bytes_ > budget && !lru_.empty()) {
    auto& last = lru_.back();
    bytes_ -= last.bytes;
    index_.erase(last.key);
    lru_.pop_back();
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
}

void AnalysisCache::clear() {
  lru_.clear();
  index_.clear();
  bytes_ = 0;
  entries_.store(0, std::memory_order_relaxed);
  bytesStat_.store(0, std::memory_order_relaxed);
}

CacheStats AnalysisCache::stats() const {
  return {hits_.load(std::memory_order_relaxed), misses_.load(std::memory_order_relaxed),
          evictions_.load(std::memory_order_relaxed), entries_.load(std::memory_order_relaxed),
          bytesStat_.load(std::memory_order_relaxed)};
}

}  // namespace pgveil::masking
