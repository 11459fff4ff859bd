#pragma once
// The backend keys (pid, secret) of sessions that pgveil relays. A CancelRequest is forwarded
// upstream only for a key that belongs to one of our live sessions. Thread-safe; not on the hot path.

#include <cstdint>
#include <mutex>
#include <unordered_set>

namespace pgveil::proxy {

class CancelRegistry {
 public:
  void add(std::int32_t pid, std::int32_t key);
  void remove(std::int32_t pid, std::int32_t key);
  [[nodiscard]] bool contains(std::int32_t pid, std::int32_t key) const;

 private:
  static std::uint64_t pack(std::int32_t pid, std::int32_t key) {
    return (std::uint64_t{static_cast<std::uint32_t>(pid)} << 32) | static_cast<std::uint32_t>(key);
  }
  mutable std::mutex mutex_;
  std::unordered_multiset<std::uint64_t> keys_;
};

}  // namespace pgveil::proxy
