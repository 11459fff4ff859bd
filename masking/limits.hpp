#pragma once
// Shared, thread-safe counters behind the blast-radius limits and the exfiltration rules that
// look across statements and sessions: sliding windows of rows and bytes, distinct-row
// sketches, the enumeration tracker, and the canary matcher. Time is passed in (testable).

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace re2 {
class RE2;
}

namespace pgveil::masking {

using Clock = std::chrono::steady_clock;

// XXH3 of a byte string (row identities, query-text variants).
[[nodiscard]] std::uint64_t hash64(std::string_view data);

// Rows and bytes per key over a sliding window, kept as 60 sub-buckets of window/60 each
// (the window slides in steps of one sub-bucket).
class SlidingWindows {
 public:
  struct Totals {
    std::uint64_t rows = 0;
    std::uint64_t bytes = 0;
  };
  // Adds to the key's current bucket and returns the key's totals over its window.
  Totals add(const std::string& key, std::chrono::milliseconds window, std::uint64_t rows, std::uint64_t bytes,
             Clock::time_point now);
  [[nodiscard]] std::size_t keys() const;

 private:
  static constexpr std::size_t kBuckets = 60;
  struct Bucket {
    std::int64_t slot = -1;
    std::uint64_t rows = 0;
    std::uint64_t bytes = 0;
  };
  struct Entry {
    std::array<Bucket, kBuckets> buckets{};
    std::int64_t lastSlot = 0;
  };
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  std::uint64_t calls_ = 0;
};

// HyperLogLog (2^12 registers, ~1.6% standard error) of 64-bit row hashes.
class DistinctSketch {
 public:
  static constexpr unsigned kBits = 12;
  static constexpr std::size_t kRegisters = std::size_t{1} << kBits;
  void add(std::uint64_t hash);
  void merge(const DistinctSketch& other);
  [[nodiscard]] double estimate() const;
  void clear() { regs_.fill(0); }
  [[nodiscard]] bool empty() const;

 private:
  std::array<std::uint8_t, kRegisters> regs_{};
};

// Distinct rows per key over a sliding window (8 sub-windows, each one sketch).
class DistinctRows {
 public:
  // Merges a session's sketch into the key's current sub-window; returns the window's estimate.
  double add(const std::string& key, std::chrono::milliseconds window, const DistinctSketch& rows, Clock::time_point now);
  [[nodiscard]] double estimate(const std::string& key, std::chrono::milliseconds window, Clock::time_point now) const;

 private:
  static constexpr std::size_t kSlots = 8;
  struct Entry {
    std::array<DistinctSketch, kSlots> sketches{};
    std::array<std::int64_t, kSlots> slot{};
  };
  static double estimateLocked(const Entry& e, std::int64_t current);
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<Entry>> entries_;
};

// The number of different variants (query texts, or parameter values) one fingerprint was run
// with by one key within the window.
class EnumerationTracker {
 public:
  // Records a variant; returns how many different variants the window holds now (counting at
  // most `cap` + 1, which is all a threshold needs).
  std::size_t record(const std::string& key, std::uint64_t variant, std::chrono::milliseconds window, std::size_t cap,
                     Clock::time_point now);
  [[nodiscard]] std::size_t keys() const;

 private:
  struct Seen {
    Clock::time_point at;
    std::uint64_t variant;
  };
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::deque<Seen>> entries_;
  std::uint64_t calls_ = 0;
};

// Finds any of a set of literal values in a byte string (one pass, RE2::Set over literals).
class CanaryMatcher {
 public:
  explicit CanaryMatcher(const std::vector<std::string>& values);
  ~CanaryMatcher();
  CanaryMatcher(const CanaryMatcher&) = delete;
  CanaryMatcher& operator=(const CanaryMatcher&) = delete;
  [[nodiscard]] bool empty() const { return count_ == 0; }
  // The index of a canary found in `data`, or -1.
  [[nodiscard]] int find(std::string_view data) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::size_t count_ = 0;
};

}  // namespace pgveil::masking
