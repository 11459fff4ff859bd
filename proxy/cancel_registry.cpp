#include "proxy/cancel_registry.hpp"

namespace pgveil::proxy {

void CancelRegistry::add(std::int32_t pid, std::int32_t key) {
  std::lock_guard lock(mutex_);
  keys_.insert(pack(pid, key));
}

void CancelRegistry::remove(std::int32_t pid, std::int32_t key) {
  std::lock_guard lock(mutex_);
  auto it = keys_.find(pack(pid, key));
  if (it != keys_.end()) keys_.erase(it);
}

bool CancelRegistry::contains(std::int32_t pid, std::int32_t key) const {
  std::lock_guard lock(mutex_);
  return keys_.count(pack(pid, key)) > 0;
}

}  // namespace pgveil::proxy
