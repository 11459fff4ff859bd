#include "masking/limits.hpp"

#include <re2/re2.h>
#include <re2/set.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cmath>

namespace pgveil::masking {

namespace {

std::int64_t slotOf(Clock::time_point now, std::chrono::milliseconds width) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  return ms / std::max<std::int64_t>(1, width.count());
}

}  // namespace

std::uint64_t hash64(std::string_view data) { return XXH3_64bits(data.data(), data.size()); }

SlidingWindows::Totals SlidingWindows::add(const std::string& key, std::chrono::milliseconds window, std::uint64_t rows,
                                           std::uint64_t bytes, Clock::time_point now) {
  auto width = std::max(std::chrono::milliseconds(1), window / static_cast<int>(kBuckets));
  auto slot = slotOf(now, width);
  std::lock_guard lock(mutex_);
  if (++calls_ % 4096 == 0) {
    // Forget keys whose whole window has passed.
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (slot - it->second.lastSlot >= static_cast<std::int64_t>(kBuckets)) it = entries_.erase(it);
      else ++it;
    }
  }
  auto& e = entries_[key];
  auto& b = e.buckets[static_cast<std::size_t>(slot) % kBuckets];
  if (b.slot != slot) b = {slot, 0, 0};
  b.rows += rows;
  b.bytes += bytes;
  e.lastSlot = slot;
  Totals t;
  for (const auto& x : e.buckets) {
    if (x.slot > slot - static_cast<std::int64_t>(kBuckets)) {
      t.rows += x.rows;
      t.bytes += x.bytes;
    }
  }
  return t;
}

std::size_t SlidingWindows::keys() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

void DistinctSketch::add(std::uint64_t hash) {
  auto index = static_cast<std::size_t>(hash >> (64 - kBits));
  std::uint64_t rest = (hash << kBits) | (std::uint64_t{1} << (kBits - 1));  // never all zero
  auto rank = static_cast<std::uint8_t>(std::countl_zero(rest) + 1);
  if (rank > regs_[index]) regs_[index] = rank;
}

void DistinctSketch::merge(const DistinctSketch& other) {
  for (std::size_t i = 0; i < kRegisters; ++i) regs_[i] = std::max(regs_[i], other.regs_[i]);
}

bool DistinctSketch::empty() const {
  return std::all_of(regs_.begin(), regs_.end(), [](std::uint8_t r) { return r == 0; });
}

double DistinctSketch::estimate() const {
  constexpr double m = static_cast<double>(kRegisters);
  const double alpha = 0.7213 / (1.0 + 1.079 / m);
  double sum = 0;
  std::size_t zeros = 0;
  for (auto r : regs_) {
    sum += std::ldexp(1.0, -static_cast<int>(r));
    zeros += r == 0;
  }
  double e = alpha * m * m / sum;
  if (e <= 2.5 * m && zeros) e = m * std::log(m / static_cast<double>(zeros));  // linear counting for small sets
  return e;
}

double DistinctRows::estimateLocked(const Entry& e, std::int64_t current) {
  DistinctSketch all;
  for (std::size_t i = 0; i < kSlots; ++i) {
    if (e.slot[i] > current - static_cast<std::int64_t>(kSlots) && e.slot[i] <= current) all.merge(e.sketches[i]);
  }
  return all.estimate();
}

double DistinctRows::add(const std::string& key, std::chrono::milliseconds window, const DistinctSketch& rows,
                         Clock::time_point now) {
  auto slot = slotOf(now, std::max(std::chrono::milliseconds(1), window / static_cast<int>(kSlots)));
  std::lock_guard lock(mutex_);
  auto& e = entries_[key];
  if (!e) e = std::make_unique<Entry>();
  auto i = static_cast<std::size_t>(slot) % kSlots;
  if (e->slot[i] != slot) {
    e->sketches[i].clear();
    e->slot[i] = slot;
  }
  e->sketches[i].merge(rows);
  return estimateLocked(*e, slot);
}

double DistinctRows::estimate(const std::string& key, std::chrono::milliseconds window, Clock::time_point now) const {
  auto slot = slotOf(now, std::max(std::chrono::milliseconds(1), window / static_cast<int>(kSlots)));
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  return it == entries_.end() ? 0.0 : estimateLocked(*it->second, slot);
}

std::size_t EnumerationTracker::record(const std::string& key, std::uint64_t variant, std::chrono::milliseconds window,
                                       std::size_t cap, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (++calls_ % 4096 == 0) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second.empty() || now - it->second.back().at >= window) it = entries_.erase(it);
      else ++it;
    }
  }
  auto& seen = entries_[key];
  while (!seen.empty() && now - seen.front().at >= window) seen.pop_front();
  auto same = std::find_if(seen.begin(), seen.end(), [&](const Seen& s) { return s.variant == variant; });
  if (same != seen.end()) seen.erase(same);
  seen.push_back({now, variant});
  while (seen.size() > cap + 1) seen.pop_front();
  return seen.size();
}

std::size_t EnumerationTracker::keys() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

struct CanaryMatcher::Impl {
  RE2::Options options() {
    RE2::Options o;
    o.set_literal(true);
    o.set_log_errors(false);
    o.set_max_mem(64 << 20);
    return o;
  }
  RE2::Set set{options(), RE2::UNANCHORED};
};

CanaryMatcher::CanaryMatcher(const std::vector<std::string>& values) : impl_(std::make_unique<Impl>()) {
  for (const auto& v : values) {
    if (v.empty()) continue;
    if (impl_->set.Add(v, nullptr) < 0) continue;
    ++count_;
  }
  if (count_ && !impl_->set.Compile()) count_ = 0;
}

CanaryMatcher::~CanaryMatcher() = default;

int CanaryMatcher::find(std::string_view data) const {
  if (!count_) return -1;
  if (!impl_->set.Match(data, nullptr)) return -1;  // the fast DFA path: no hit is the common case
  std::vector<int> hits;
  if (!impl_->set.Match(data, &hits) || hits.empty()) return 0;
  return hits.front();
}

}  // namespace pgveil::masking
