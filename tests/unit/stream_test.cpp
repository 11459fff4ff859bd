// proxy::Stream on a plain loopback socket: a read that drained the socket (TCP_INQ's count of
// bytes left is 0) is not followed by a receive that fails with EAGAIN, and reads in every order
// of data, end of file, reset and the reactor's events lose nothing. Skipping that receive after
// any short read lost an end of file queued behind the data (EndOfFileQueuedBehindDataIsSeen);
// after a read that left 0 bytes, a reset queued behind the data leaves no event, and is
// reported once the worker's once-a-second look (wakeReaderIfReset) finds the connection closed
// (ResetQueuedBehindDataIsReportedByTheCheck). Writes of many buffers through full socket
// buffers arrive in order.

#include "proxy/stream.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

// Receives that found nothing to read, per descriptor.
std::array<std::atomic<int>, 4096> gWouldBlock{};

void countWouldBlock(ssize_t r, int fd) {
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && fd >= 0 &&
      static_cast<std::size_t>(fd) < gWouldBlock.size()) {
    gWouldBlock[static_cast<std::size_t>(fd)].fetch_add(1);
  }
}

}  // namespace

// pgveil's plain reads call ::recvmsg; Asio's own read calls ::recv. These definitions in the
// test executable are the ones those calls bind to.
extern "C" ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  auto r = static_cast<ssize_t>(syscall(SYS_recvmsg, fd, msg, flags));
  countWouldBlock(r, fd);
  return r;
}

extern "C" ssize_t recv(int fd, void* buf, size_t len, int flags) {
  auto r = static_cast<ssize_t>(syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr));
  countWouldBlock(r, fd);
  return r;
}

namespace {
}  // namespace

namespace pgveil::proxy {
namespace {

using namespace std::chrono_literals;

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer_.connect(acceptor.local_endpoint());
    tcp::socket accepted(io_);
    acceptor.accept(accepted);
    accepted.non_blocking(true);
    fd_ = accepted.native_handle();
    ASSERT_LT(static_cast<std::size_t>(fd_), gWouldBlock.size());
    gWouldBlock[static_cast<std::size_t>(fd_)] = 0;
    stream_.emplace(std::move(accepted));
  }

  // Starts one readSome of up to `size` bytes; its result lands in result_.
  void startRead(std::size_t size) {
    result_.reset();
    asio::co_spawn(
        io_,
        [this, size]() -> asio::awaitable<void> {
          std::string buf(size, '\0');
          auto [ec, n] = co_await stream_->readSome(buf.data(), buf.size());
          buf.resize(n);
          result_ = std::pair{ec, buf};
        },
        asio::detached);
  }

  // Runs the io_context, epoll included, for `d` or until done().
  template <typename Done>
  void runUntil(std::chrono::milliseconds d, Done done) {
    asio::steady_timer t(io_, d);
    bool fired = false;
    t.async_wait([&](error_code) { fired = true; });
    while (!fired && !done()) io_.run_one();
    t.cancel();
    io_.poll();
    io_.restart();
  }
  // ... until the read has completed.
  void runFor(std::chrono::milliseconds d) {
    runUntil(d, [this] { return result_.has_value(); });
  }

  std::string read(std::size_t size) {
    startRead(size);
    runFor(5s);
    EXPECT_TRUE(result_.has_value()) << "read did not complete";
    if (!result_) return {};
    EXPECT_FALSE(result_->first) << result_->first.message();
    return result_->second;
  }

  void send(const std::string& s) { asio::write(peer_, asio::buffer(s)); }
  int wouldBlock() const { return gWouldBlock[static_cast<std::size_t>(fd_)].load(); }
  // Waits (up to 5 s) until the kernel has closed the stream's connection (TCP_CLOSE): what
  // the peer sent has arrived, however loaded the machine.
  bool waitForClosedState() {
    for (auto deadline = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < deadline;) {
      tcp_info info{};
      socklen_t len = sizeof info;
      if (::getsockopt(fd_, SOL_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_state == TCP_CLOSE) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }

  asio::io_context io_;
  tcp::socket peer_{io_};
  std::optional<Stream> stream_;
  int fd_ = -1;
  std::optional<std::pair<error_code, std::string>> result_;
};

TEST_F(StreamTest, DrainingReadWaitsForTheNextEventWithoutAReceiveThatFails) {
  send("hello");
  runFor(20ms);  // the first event is taken by the reactor before any read is pending
  EXPECT_EQ(read(512), "hello");
  gWouldBlock[static_cast<std::size_t>(fd_)] = 0;
  // The kernel said the queue is empty: the next read waits for readiness instead of trying
  // first (Asio's own read tries, and its receive fails with EAGAIN).
  startRead(512);
  runFor(50ms);
  EXPECT_FALSE(result_.has_value());
  EXPECT_EQ(wouldBlock(), 0);
  send("world");
  runFor(5s);
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->second, "world");
  EXPECT_EQ(wouldBlock(), 0);
  // A live connection is left alone by the workers' look for resets.
  EXPECT_FALSE(stream_->wakeReaderIfReset());
  send("again");
  EXPECT_EQ(read(512), "again");
}

TEST_F(StreamTest, BytesArrivingBetweenReadsAreRead) {
  send("a");
  EXPECT_EQ(read(512), "a");
  // Data arrives while no read is pending; the next read must find it whether the reactor has
  // seen the event yet (here: not) ...
  send("b");
  EXPECT_EQ(read(512), "b");
  // ... or has already taken it with nothing waiting.
  send("c");
  runFor(20ms);
  EXPECT_EQ(read(512), "c");
}

TEST_F(StreamTest, AFullReadIsFollowedByAnotherReceive) {
  send("0123456789");
  runFor(20ms);
  // A read that filled its buffer does not know the queue is empty: the rest must come
  // without a new event.
  EXPECT_EQ(read(4), "0123");
  EXPECT_EQ(read(4), "4567");
  EXPECT_EQ(read(4), "89");
}

TEST_F(StreamTest, AShortReadOfQueuedDataIsFollowedByAnotherReceive) {
  send("0123456789");
  runFor(20ms);
  EXPECT_EQ(read(3), "012");
  // Bytes are still queued and no new event will come for them: the next read must try.
  EXPECT_EQ(read(512), "3456789");
}

TEST_F(StreamTest, ResetWhileAReadWaitsIsReported) {
  send("x");
  EXPECT_EQ(read(512), "x");
  startRead(512);
  runFor(20ms);
  EXPECT_FALSE(result_.has_value());
  peer_.set_option(asio::socket_base::linger(true, 0));
  peer_.close();  // RST
  runFor(5s);
  ASSERT_TRUE(result_.has_value()) << "reset was not reported";
  EXPECT_EQ(result_->first, asio::error::connection_reset);
}

// Data and then a reset (the peer closed with unread input, or with SO_LINGER 0) arrive before
// the reactor looks: one event for both, and the receive returns the data with TCP_INQ's count
// at 0, as for a drained socket. The next read waits for an event that will not come; the
// workers' once-a-second look (wakeReaderIfReset) finds the closed connection and wakes it, and
// it reports the reset itself (the error is not taken by the look).
TEST_F(StreamTest, ResetQueuedBehindDataIsReportedByTheCheck) {
  send("data");
  peer_.set_option(asio::socket_base::linger(true, 0));
  peer_.close();  // RST
  ASSERT_TRUE(waitForClosedState()) << "the reset did not arrive";
  runFor(20ms);  // the reactor takes the one event for both
  EXPECT_EQ(read(512), "data");
  startRead(512);
  runFor(100ms);
  EXPECT_FALSE(result_.has_value()) << "no event was expected: does the read still skip the receive?";
  EXPECT_TRUE(stream_->wakeReaderIfReset());
  runFor(2s);
  ASSERT_TRUE(result_.has_value()) << "reset queued behind the data was not reported";
  EXPECT_EQ(result_->first, asio::error::connection_reset);
}

// The workers' look also finds connections closed in order (our FIN, then the peer's data and
// FIN: the socket leaves FIN_WAIT2 for TCP_CLOSE with the data still queued). Waking the reader
// there loses nothing: the data, then the end of file.
TEST_F(StreamTest, TheLookForResetsKeepsDataOfAConnectionClosedInOrder) {
  stream_->shutdownSend();
  send("last words");
  peer_.close();
  ASSERT_TRUE(waitForClosedState());
  EXPECT_TRUE(stream_->wakeReaderIfReset());
  EXPECT_EQ(read(512), "last words");
  startRead(512);
  runFor(2s);
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->first, asio::error::eof);
}

TEST_F(StreamTest, EndOfFileAfterAShortRead) {
  send("x");
  EXPECT_EQ(read(512), "x");
  peer_.shutdown(tcp::socket::shutdown_send);
  startRead(512);
  runFor(5s);
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->first, asio::error::eof);
}

// Data and the peer's FIN arrive together, before the reactor looks: one epoll event for both,
// and the receive that returns the data stops at the FIN. The next read must still see EOF
// (an earlier attempt to skip the receive after a short read lost it).
TEST_F(StreamTest, EndOfFileQueuedBehindDataIsSeen) {
  send("data");
  peer_.shutdown(tcp::socket::shutdown_send);
  runFor(20ms);
  EXPECT_EQ(read(512), "data");
  startRead(512);
  runFor(2s);
  ASSERT_TRUE(result_.has_value()) << "EOF queued behind the data was not reported";
  EXPECT_EQ(result_->first, asio::error::eof);
}

TEST_F(StreamTest, EndOfFileQueuedBehindDataWhileAReadWaits) {
  send("a");
  EXPECT_EQ(read(512), "a");
  startRead(512);  // waits in the reactor
  send("data");
  peer_.shutdown(tcp::socket::shutdown_send);
  runFor(2s);
  ASSERT_TRUE(result_.has_value());
  EXPECT_EQ(result_->second, "data");
  startRead(512);
  runFor(2s);
  ASSERT_TRUE(result_.has_value()) << "EOF queued behind the data was not reported";
  EXPECT_EQ(result_->first, asio::error::eof);
}

// Writes: many buffers (more than one sendmsg takes, some empty, some larger than the socket
// buffers) and more bytes than those hold, so the write waits for room many times and resumes
// inside a buffer; every byte arrives, in order.
class StreamWriteTest : public StreamTest {
 protected:
  void SetUp() override {
    StreamTest::SetUp();
    peer_.set_option(asio::socket_base::receive_buffer_size(16384));
    stream_->socket().set_option(asio::socket_base::send_buffer_size(16384));
    for (int i = 0; i < 300; ++i) {
      // Empty, small, and a few larger than the socket buffers (written in several parts).
      std::size_t size = i % 7 == 0 ? 0 : i % 50 == 25 ? 300'000 : static_cast<std::size_t>(i * 7919 % 20000 + 1);
      parts_.emplace_back(size, static_cast<char>('a' + i % 26));
      if (size > 0) parts_.back()[size / 2] = static_cast<char>('A' + i % 26);
      expected_ += parts_.back();
    }
    for (const auto& p : parts_) buffers_.emplace_back(p.data(), p.size());
  }

  void startWrite() {
    asio::co_spawn(
        io_,
        [this]() -> asio::awaitable<void> {
          written_ = co_await stream_->writeAll(std::span<const asio::const_buffer>(buffers_));
        },
        asio::detached);
  }

  void runUntilWritten(std::chrono::milliseconds d) {
    runUntil(d, [this] { return written_.has_value(); });
  }

  std::vector<std::string> parts_;
  std::vector<asio::const_buffer> buffers_;
  std::string expected_;
  std::optional<error_code> written_;
};

TEST_F(StreamWriteTest, ManyBuffersLargerThanTheSocketBuffersArriveInOrder) {
  ASSERT_GT(expected_.size(), 2'000'000u);
  startWrite();
  runUntilWritten(50ms);
  EXPECT_FALSE(written_.has_value()) << "the write should be waiting for the reader";
  std::string received;
  std::thread reader([&] {
    std::vector<char> buf(65536);
    while (received.size() < expected_.size()) {
      error_code ec;
      std::size_t n = peer_.read_some(asio::buffer(buf), ec);
      if (ec) break;
      received.append(buf.data(), n);
    }
  });
  runUntilWritten(20s);
  error_code ignored;
  stream_->socket().shutdown(tcp::socket::shutdown_send, ignored);  // the reader ends even if bytes are missing
  reader.join();
  ASSERT_TRUE(written_.has_value());
  EXPECT_FALSE(*written_) << written_->message();
  EXPECT_EQ(received.size(), expected_.size());
  EXPECT_TRUE(received == expected_) << "bytes out of order";
}

TEST_F(StreamWriteTest, AWriteWaitingForRoomIsCancelled) {
  startWrite();
  runUntilWritten(50ms);
  ASSERT_FALSE(written_.has_value());
  stream_->cancel();
  runUntilWritten(5s);
  ASSERT_TRUE(written_.has_value());
  EXPECT_EQ(*written_, asio::error::operation_aborted);
}

TEST_F(StreamWriteTest, AWriteToAClosedPeerFails) {
  peer_.set_option(asio::socket_base::linger(true, 0));
  peer_.close();  // RST
  runUntilWritten(20ms);
  startWrite();
  runUntilWritten(5s);
  ASSERT_TRUE(written_.has_value());
  EXPECT_TRUE(*written_ == asio::error::connection_reset || *written_ == asio::error::broken_pipe) << written_->message();
}

}  // namespace
}  // namespace pgveil::proxy
