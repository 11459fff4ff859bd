#include "proxy/ring_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <string>

namespace pgveil::proxy {
namespace {

// Against std::deque as the reference: FIFO order through growth and wrap-around, no element
// overwritten when full (boost::circular_buffer's own push_back would drop the oldest).
TEST(RingQueueTest, BehavesLikeADequeAcrossGrowthAndWrapAround) {
  RingQueue<std::string> q;
  std::deque<std::string> ref;
  unsigned seed = 7;
  for (int step = 0; step < 20000; ++step) {
    seed = seed * 1103515245u + 12345u;
    bool push = ref.empty() || (seed >> 16) % 3 != 0;
    if (push) {
      std::string v = "value-" + std::to_string(step) + std::string((seed >> 8) % 40, 'x');
      q.push_back(v);
      ref.push_back(v);
    } else {
      ASSERT_EQ(q.front(), ref.front());
      q.pop_front();
      ref.pop_front();
    }
    ASSERT_EQ(q.size(), ref.size());
    if (!ref.empty()) {
      ASSERT_EQ(q.front(), ref.front());
      ASSERT_EQ(q[q.size() - 1], ref.back());
    }
  }
  q.erase(std::remove_if(q.begin(), q.end(), [](const std::string& s) { return s.size() % 2 == 0; }), q.end());
  ref.erase(std::remove_if(ref.begin(), ref.end(), [](const std::string& s) { return s.size() % 2 == 0; }), ref.end());
  ASSERT_EQ(q.size(), ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) EXPECT_EQ(q[i], ref[i]);
}

// Steady traffic keeps the storage; popped elements are destroyed (a portal they hold is freed).
TEST(RingQueueTest, KeepsItsStorageAndReleasesPoppedElements) {
  RingQueue<std::shared_ptr<int>> q;
  auto held = std::make_shared<int>(1);
  for (int i = 0; i < 5; ++i) q.push_back(held);
  auto cap = q.capacity();
  EXPECT_GE(cap, 5u);
  for (int round = 0; round < 1000; ++round) {
    q.pop_front();
    q.push_back(held);
  }
  EXPECT_EQ(q.capacity(), cap);
  EXPECT_EQ(held.use_count(), 6);
  while (!q.empty()) q.pop_front();
  EXPECT_EQ(held.use_count(), 1);
}

}  // namespace
}  // namespace pgveil::proxy
