#include "masking/analysis_cache.hpp"

#include <xxhash.h>

namespace pgveil::masking {

namespace {
constexpr std::uint64_t kShapeSeed = 0x9e3779b97f4a7c15ULL;  // keeps shape keys apart from text keys
}

std::uint64_t AnalysisCache::hash(std::string_view sql, std::uint64_t context) {
  return XXH3_64bits_withSeed(sql.data(), sql.size(), context);
}

std::uint64_t AnalysisCache::contextKey(std::uint64_t catalogGeneration, std::string_view searchPath) {
  return XXH3_64bits_withSeed(searchPath.data(), searchPath.size(), catalogGeneration);
}

// A 64-bit collision is possible in theory: the stored text (or shape) decides.
std::shared_ptr<const Analysis> AnalysisCache::findText(std::string_view sql, std::uint64_t contextKey) {
  auto it = index_.find(hash(sql, contextKey));
  if (it == index_.end() || it->second->context != contextKey || it->second->analysis->sql != sql) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->analysis;
}

std::shared_ptr<const Analysis> AnalysisCache::findShape(const std::string& shape, std::uint64_t contextKey) {
  auto it = shapeIndex_.find(hash(shape, contextKey ^ kShapeSeed));
  if (it == shapeIndex_.end() || it->second->context != contextKey || it->second->shape != shape) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->analysis;
}

void AnalysisCache::count(bool hit, bool byShape) {
  if (!hit) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  if (byShape) shapeHits_.fetch_add(1, std::memory_order_relaxed);
}

void AnalysisCache::put(Index& index, std::uint64_t key, Entry entry) {
  if (entry.bytes > maxBytes_) return;  // would evict everything else
  if (auto it = index.find(key); it != index.end()) {
    bytes_ -= it->second->bytes;
    lru_.erase(it->second);
    index.erase(it);
  }
  evictTo(maxBytes_ - entry.bytes);
  bytes_ += entry.bytes;
  lru_.push_front(std::move(entry));
  index[key] = lru_.begin();
  entries_.store(index_.size() + shapeIndex_.size(), std::memory_order_relaxed);
  bytesStat_.store(bytes_, std::memory_order_relaxed);
}

void AnalysisCache::insert(std::string_view sql, std::uint64_t contextKey, std::shared_ptr<const Analysis> analysis) {
  auto bytes = analysis->memoryEstimate() + sizeof(Entry) + 64;
  auto key = hash(sql, contextKey);
  put(index_, key, {key, contextKey, std::move(analysis), bytes, {}});
}

void AnalysisCache::insertShape(std::string_view shape, std::uint64_t contextKey,
                                std::shared_ptr<const Analysis> analysis) {
  if (!analysis->literalInsensitive) return;
  // Counted whole although the exact entry may share the analysis: the bound stays an upper one.
  auto bytes = analysis->memoryEstimate() + sizeof(Entry) + 64 + shape.size();
  auto key = hash(shape, contextKey ^ kShapeSeed);
  put(shapeIndex_, key, {key, contextKey, std::move(analysis), bytes, std::string(shape)});
}

void AnalysisCache::evictTo(std::size_t budget) {
  while (bytes_ > budget && !lru_.empty()) {
    auto& last = lru_.back();
    bytes_ -= last.bytes;
    (last.shape.empty() ? index_ : shapeIndex_).erase(last.key);
    lru_.pop_back();
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
}

void AnalysisCache::clear() {
  lru_.clear();
  index_.clear();
  shapeIndex_.clear();
  bytes_ = 0;
  entries_.store(0, std::memory_order_relaxed);
  bytesStat_.store(0, std::memory_order_relaxed);
}

CacheStats AnalysisCache::stats() const {
  return {hits_.load(std::memory_order_relaxed), shapeHits_.load(std::memory_order_relaxed),
          misses_.load(std::memory_order_relaxed), evictions_.load(std::memory_order_relaxed),
          entries_.load(std::memory_order_relaxed), bytesStat_.load(std::memory_order_relaxed)};
}

}  // namespace pgveil::masking
