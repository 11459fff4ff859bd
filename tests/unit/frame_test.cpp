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
    ReadBuffer buf(16, 64, 8);  // 8 inline bytes, then 16 on the heap, doubling to 64
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
  ReadBuffer buf(16, 64, 8);
  EXPECT_EQ(buf.writable(), 8u);  // inline
  EXPECT_EQ(buf.heapBytes(), 0u);
  std::memcpy(buf.writePtr(), "abcd", 4);
  buf.commit(4);
  buf.compact(1000);
  EXPECT_GE(buf.capacity(), 1000u);
  EXPECT_EQ(buf.heapBytes(), buf.capacity());
  EXPECT_EQ(buf.data(), "abcd");
  buf.consume(4);
  buf.compact();
  EXPECT_EQ(buf.heapBytes(), 0u);  // given back: idle sessions hold no heap buffers
  EXPECT_EQ(buf.writable(), 8u);
}

TEST(ReadBufferTest, FullInlineReadMovesToTheHeapThenDoubles) {
  ReadBuffer buf(16, 64, 8);
  auto fill = [&] {
    auto n = buf.writable();
    std::memset(buf.writePtr(), 'x', n);
    buf.commit(n);
    buf.consume(n);
    EXPECT_FALSE(buf.quiet());  // a full read: more is coming, keep the buffer
    buf.compact();
  };
  fill();
  EXPECT_EQ(buf.heapBytes(), 16u);
  fill();
  EXPECT_EQ(buf.heapBytes(), 32u);
}

// Request/response traffic whose messages fit inline never takes heap memory, including a
// partial message carried over between reads.
TEST(ReadBufferTest, SmallTrafficStaysInline) {
  ReadBuffer buf(4096, 65536);
  for (int i = 0; i < 1000; ++i) {
    std::string msg(100 + i % 300, static_cast<char>('a' + i % 26));
    std::memcpy(buf.writePtr(), msg.data(), 60);
    buf.commit(60);
    buf.compact(msg.size());  // the whole message must be inspected
    std::memcpy(buf.writePtr(), msg.data() + 60, msg.size() - 60);
    buf.commit(msg.size() - 60);
    ASSERT_EQ(buf.data(), msg);
    buf.consume(msg.size());
    ASSERT_TRUE(buf.quiet());
    buf.release();
    buf.compact();
    ASSERT_EQ(buf.heapBytes(), 0u) << i;
  }
}

// A message larger than the inline bytes keeps the bytes already read when it moves.
TEST(ReadBufferTest, KeepsBytesWhenLeavingInline) {
  ReadBuffer buf(1024, 65536);
  std::string big(3000, 'q');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  std::memcpy(buf.writePtr(), big.data(), 200);
  buf.commit(200);
  buf.consume(50);
  buf.compact(big.size() - 50);
  EXPECT_GE(buf.writable(), big.size() - 200);
  std::memcpy(buf.writePtr(), big.data() + 200, big.size() - 200);
  buf.commit(big.size() - 200);
  EXPECT_EQ(buf.data(), std::string_view(big).substr(50));
  buf.release();  // not empty: kept
  EXPECT_EQ(buf.data(), std::string_view(big).substr(50));
}

}  // namespace
}  // namespace pgveil::protocol
