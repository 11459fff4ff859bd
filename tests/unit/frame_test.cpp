#include "protocol/frame.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "protocol/read_buffer.hpp"
#include "protocol_test_util.hpp"

namespace pgveil::protocol {
namespace {

using testing::be32;
using testing::message;

TEST(FrameTest, DecodesHeader) {
  auto m = message('Q', std::string("SELECT 1") + '\0');
  FrameHeader h;
  ASSERT_EQ(peekHeader(m, 1024, h), HeaderStatus::Ok);
  EXPECT_EQ(h.type, 'Q');
  EXPECT_EQ(h.length, 4u + 9u);
  EXPECT_EQ(h.total(), m.size());
}

TEST(FrameTest, NeedsFiveBytes) {
  auto m = message('Q', "x");
  FrameHeader h;
  for (std::size_t n = 0; n < kHeaderSize; ++n) {
    EXPECT_EQ(peekHeader(std::string_view(m).substr(0, n), 1024, h), HeaderStatus::NeedMore) << n;
  }
}

TEST(FrameTest, RejectsLengthBelowFour) {
  for (std::uint32_t len : {0u, 1u, 2u, 3u}) {
    std::string m = "Q" + be32(len);
    FrameHeader h;
    EXPECT_EQ(peekHeader(m, 1024, h), HeaderStatus::TooShort) << len;
  }
}

TEST(FrameTest, RejectsLengthOverLimit) {
  FrameHeader h;
  EXPECT_EQ(peekHeader("Q" + be32(1025), 1024, h), HeaderStatus::TooLong);
  EXPECT_EQ(peekHeader("Q" + be32(1024), 1024, h), HeaderStatus::Ok);
  EXPECT_EQ(peekHeader("Q" + be32(0xffffffffu), 0xffffffffu, h), HeaderStatus::TooLong);
}

TEST(FrameTest, StartupLength) {
  std::uint32_t len = 0;
  EXPECT_EQ(peekStartupLength(be32(0), 10000, len), StartupStatus::TooShort);
  EXPECT_EQ(peekStartupLength(be32(7), 10000, len), StartupStatus::TooShort);
  EXPECT_EQ(peekStartupLength(be32(10001), 10000, len), StartupStatus::TooLong);
  EXPECT_EQ(peekStartupLength(std::string("\0\0", 2), 10000, len), StartupStatus::NeedMore);
  EXPECT_EQ(peekStartupLength(be32(8), 10000, len), StartupStatus::Ok);
  EXPECT_EQ(len, 8u);
}

// Feeds a stream of messages split at every byte offset through a ReadBuffer, the way the
// session does, and checks that exactly the same messages come out.
TEST(FrameTest, ReassemblesAtEverySplit) {
  std::string stream = message('Q', std::string("SELECT 1") + '\0') + message('S', "") +
                       message('d', std::string(300, 'x')) + message('X', "");
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    ReadBuffer buf(16, 64);
    std::vector<std::string> out;
    auto feed = [&](std::string_view chunk) {
      while (!chunk.empty()) {
        auto n = std::min(chunk.size(), buf.writable());
        ASSERT_GT(n, 0u);
        std::memcpy(buf.writePtr(), chunk.data(), n);
        buf.commit(n);
        chunk.remove_prefix(n);
        for (;;) {
          FrameHeader h;
          auto st = peekHeader(buf.data(), 1 << 20, h);
          ASSERT_NE(st, HeaderStatus::TooShort);
          if (st != HeaderStatus::Ok || buf.size() < h.total()) {
            buf.compact(st == HeaderStatus::Ok ? h.total() : 0);
            break;
          }
          out.emplace_back(buf.data().substr(0, h.total()));
          buf.consume(h.total());
        }
      }
    };
    feed(std::string_view(stream).substr(0, split));
    feed(std::string_view(stream).substr(split));
    ASSERT_EQ(out.size(), 4u) << "split " << split;
    std::string joined;
    for (auto& m : out) joined += m;
    EXPECT_EQ(joined, stream) << "split " << split;
  }
}

TEST(ReadBufferTest, GrowsForWholeMessagesAndShrinksWhenIdle) {
  ReadBuffer buf(16, 64);
  EXPECT_EQ(buf.writable(), 16u);
  std::memcpy(buf.writePtr(), "abcd", 4);
  buf.commit(4);
  buf.compact(1000);
  EXPECT_GE(buf.capacity(), 1000u);
  EXPECT_EQ(buf.data(), "abcd");
  buf.consume(4);
  buf.compact();
  EXPECT_EQ(buf.capacity(), 0u);  // released: idle sessions hold no large buffers
  EXPECT_EQ(buf.writable(), 16u);
}

TEST(ReadBufferTest, DoublesAfterAFullRead) {
  ReadBuffer buf(16, 64);
  auto n = buf.writable();
  std::memset(buf.writePtr(), 'x', n);
  buf.commit(n);
  buf.consume(n);
  buf.compact();
  EXPECT_EQ(buf.capacity(), 32u);
}

}  // namespace
}  // namespace pgveil::protocol
