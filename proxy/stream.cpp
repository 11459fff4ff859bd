#include "proxy/stream.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detail/reactive_socket_recv_op.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/version.hpp>
#include <array>
#include <cerrno>
#include <cstring>

namespace pgveil::proxy {
namespace {
// The buffer of a plain-socket read (see the specialisation below): one mutable_buffer under a
// type of its own (and of this file only), so that no other read in the process changes.
struct InqReadBuffer {
  asio::mutable_buffer buffer;
  [[nodiscard]] const asio::mutable_buffer* begin() const { return &buffer; }
  [[nodiscard]] const asio::mutable_buffer* end() const { return &buffer + 1; }
};
}  // namespace
}  // namespace pgveil::proxy

// Asio 1.81 reads a socket speculatively before it waits for readiness, unless the last read
// found the receive queue "exhausted", which it concludes only from end of file. After each
// message that speculative receive fails with EAGAIN: two wasted receive calls per pgbench
// transaction. A short read alone does not prove the queue empty: the receive that stops at the
// peer's FIN returns only the data before it, and if data and FIN raised one edge-triggered
// event together, no later event would report the FIN (StreamTest.EndOfFileQueuedBehindDataIsSeen).
// The kernel says it: with TCP_INQ (set in Stream's constructor), recvmsg returns the bytes left
// in the queue as a control message, and counts a pending FIN as 1 ("continue reading",
// tcp_inq_hint). Zero means nothing is queued, and anything arriving later (data, FIN, reset)
// raises a new epoll event, which makes Asio read again. One case the count cannot show: a reset
// that arrived together with the data, before the reactor looked (the count is 0 then too, and
// the event that announced both is spent). Nothing else would tell the waiting read, so each
// worker looks once a second for connections the kernel has closed (Stream::wakeReaderIfReset):
// such a reset is reported within a second instead of on the next receive. Without the control
// message (TCP_INQ refused) the read behaves as Asio's own.
static_assert(BOOST_VERSION / 100 == 1081, "InqReadBuffer's recv operation mirrors Boost 1.81's; check it");
namespace boost::asio::detail {
template <>
class reactive_socket_recv_op_base<pgveil::proxy::InqReadBuffer> : public reactor_op {
 public:
  reactive_socket_recv_op_base(const boost::system::error_code& success_ec, socket_type socket,
                               socket_ops::state_type state, const pgveil::proxy::InqReadBuffer& buffers,
                               socket_base::message_flags flags, func_type complete_func)
      : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
        socket_(socket),
        state_(state),
        buffers_(buffers),
        flags_(flags) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<reactive_socket_recv_op_base*>(base);
    const bool stream = (o->state_ & socket_ops::stream_oriented) != 0;
    for (;;) {
      iovec iov{o->buffers_.buffer.data(), o->buffers_.buffer.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(o->socket_, &msg, o->flags_);
      if (n < 0) {
        const int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return not_done;
        // Asio says done_and_exhausted here (0 bytes); done keeps the next read speculative,
        // which only matters if the caller reads again after an error.
        o->ec_ = boost::system::error_code(err, boost::asio::error::get_system_category());
        o->bytes_transferred_ = 0;
        return done;
      }
      o->ec_ = boost::system::error_code();
      o->bytes_transferred_ = static_cast<std::size_t>(n);
      if (stream && n == 0) {
        if (o->buffers_.buffer.size() == 0) return done;
        o->ec_ = boost::asio::error::eof;
        return done_and_exhausted;
      }
      if (!stream) return done;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
          int inq = 0;
          std::memcpy(&inq, CMSG_DATA(c), sizeof inq);
          return inq == 0 ? done_and_exhausted : done;
        }
      }
      return done;
    }
  }

 private:
  socket_type socket_;
  socket_ops::state_type state_;
  pgveil::proxy::InqReadBuffer buffers_;
  socket_base::message_flags flags_;
};
}  // namespace boost::asio::detail

namespace pgveil::proxy {

namespace {
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

// An OpenSSL failure that queued no error must still be an error (value 0 would mean success).
error_code sslError(unsigned long e) {
  return e ? error_code(static_cast<int>(e), asio::error::get_ssl_category()) : error_code(asio::error::invalid_argument);
}
}  // namespace

Stream::Stream(tcp::socket socket) : socket_(std::move(socket)) {
  // Lets a read tell that it drained the socket (see InqReadBuffer). A socket that refuses it
  // (not TCP, not yet open) reads as Asio does.
  if (socket_.is_open()) {
    int one = 1;
    (void)::setsockopt(socket_.native_handle(), SOL_TCP, TCP_INQ, &one, sizeof one);
  }
}

Stream::Stream(Stream&& other) noexcept
    : socket_(std::move(other.socket_)),
      ssl_(std::exchange(other.ssl_, nullptr)),
      tlsWriteAbandoned_(other.tlsWriteAbandoned_),
      coalesce_(std::move(other.coalesce_)) {}

Stream::~Stream() {
  if (ssl_) SSL_free(ssl_);
}

// OpenSSL reads and writes the non-blocking socket itself; when it would block, wait until
// the socket is ready in the direction it asks for, then call it again. The read and the
// write coroutines of a session never run an SSL call at the same time (one thread).
template <typename Op>
asio::awaitable<error_code> Stream::tlsCall(Op op) {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int r = op();
    if (r > 0) co_return error_code{};
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      auto [ec] = co_await socket_.async_wait(err == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write,
                                              kUse);
      if (ec) co_return ec;
      continue;
    }
    if (err == SSL_ERROR_ZERO_RETURN) co_return asio::error::eof;  // close_notify
    if (err == SSL_ERROR_SYSCALL) {
      auto e = ERR_get_error();
      if (e) co_return sslError(e);
      // EOF without close_notify (errno 0), or a socket error.
      if (errno != 0 && errno != EAGAIN) co_return error_code(errno, asio::error::get_system_category());
      co_return asio::ssl::error::stream_truncated;
    }
    auto e = ERR_get_error();
    // OpenSSL 3 reports a peer that closed without close_notify as an SSL error.
    if (!e || ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) co_return asio::ssl::error::stream_truncated;
    co_return sslError(e);
  }
}

asio::awaitable<std::tuple<error_code, std::size_t>> Stream::readSome(char* data, std::size_t size) {
  if (ssl_) return readTls(data, size);
  return socket_.async_read_some(InqReadBuffer{asio::buffer(data, size)}, kUse);
}

asio::awaitable<std::tuple<error_code, std::size_t>> Stream::readTls(char* data, std::size_t size) {
  std::size_t n = 0;
  auto ec = co_await tlsCall([&] { return SSL_read_ex(ssl_, data, size, &n); });
  co_return std::tuple{ec, n};
}

asio::awaitable<error_code> Stream::writeAll(std::span<const asio::const_buffer> buffers) {
  if (ssl_) {
    // A write abandoned after WANT_WRITE (the session was cancelled) leaves part of a record
    // inside OpenSSL: a different buffer must not follow it.
    if (tlsWriteAbandoned_) co_return asio::error::broken_pipe;
    std::string_view all;
    if (buffers.size() == 1) {
      all = {static_cast<const char*>(buffers[0].data()), buffers[0].size()};
    } else {
      coalesce_.clear();
      for (const auto& b : buffers) coalesce_.append(static_cast<const char*>(b.data()), b.size());
      all = coalesce_;
    }
    error_code ec;
    while (!all.empty() && !ec) {
      std::size_t n = 0;
      ec = co_await tlsCall([&] { return SSL_write_ex(ssl_, all.data(), all.size(), &n); });
      if (ec == asio::error::operation_aborted) tlsWriteAbandoned_ = true;
      all.remove_prefix(ec ? all.size() : n);
    }
    if (coalesce_.capacity() > (256u << 10)) std::string().swap(coalesce_);
    co_return ec;
  }
  // sendmsg first, and wait for writability only when the socket's buffer is full. Asio's
  // async_write would make the same call but post its completion to the scheduler: a queued
  // handler per write, and a non-blocking epoll_wait for the reactor's turn that comes before it.
  // Here a write that fits continues the coroutine at once.
  std::size_t index = 0;   // first buffer not completely written
  std::size_t offset = 0;  // bytes of it already written
  for (;;) {
    auto ec = sendSome(buffers, index, offset);
    if (!ec) {
      if (index == buffers.size()) co_return error_code{};
      continue;
    }
    if (ec != asio::error::would_block) co_return ec;
    auto [waited] = co_await socket_.async_wait(tcp::socket::wait_write, kUse);
    if (waited) co_return waited;
  }
}

// Not a coroutine: the iovec array lives on the thread's stack, not in the coroutine frame
// (a frame above about 1 KB is not recycled by Asio and would be allocated per write).
error_code Stream::sendSome(std::span<const asio::const_buffer> buffers, std::size_t& index, std::size_t& offset) {
  constexpr std::size_t kMaxIov = 64;
  std::array<iovec, kMaxIov> iov;
  std::size_t count = 0;
  for (std::size_t i = index; i < buffers.size() && count < kMaxIov; ++i) {
    const std::size_t skip = i == index ? offset : 0;
    if (buffers[i].size() > skip) {
      iov[count++] = iovec{const_cast<char*>(static_cast<const char*>(buffers[i].data())) + skip, buffers[i].size() - skip};
    }
  }
  if (count == 0) {  // only empty buffers left
    index = buffers.size();
    offset = 0;
    return {};
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = count;
  ssize_t sent = 0;
  do {
    sent = ::sendmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) return asio::error::would_block;
    return {err, asio::error::get_system_category()};
  }
  // Advance past what was sent.
  auto left = static_cast<std::size_t>(sent);
  while (index < buffers.size() && left >= buffers[index].size() - offset) {
    left -= buffers[index].size() - offset;
    offset = 0;
    ++index;
  }
  offset += left;
  return {};
}

asio::awaitable<error_code> Stream::writeAll(std::string_view data) {
  asio::const_buffer b(data.data(), data.size());
  co_return co_await writeAll(std::span<const asio::const_buffer>(&b, 1));
}

asio::awaitable<error_code> Stream::startTls(asio::ssl::context& ctx, asio::ssl::stream_base::handshake_type type,
                                             const std::string& serverName, bool verifyHost) {
  error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) co_return ec;
  ERR_clear_error();
  ssl_ = SSL_new(ctx.native_handle());
  if (!ssl_ || SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle())) != 1) co_return sslError(ERR_get_error());
  // Partial writes and a retried write from the same (moved) buffer, as the loop above does.
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // A peer that closes TCP without close_notify is an end of stream (as asio::ssl treated it),
  // not an error that would also fail the other direction of a half-closed session.
  SSL_set_options(ssl_, SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (type == asio::ssl::stream_base::client) {
    SSL_set_connect_state(ssl_);
    if (!serverName.empty()) {
      error_code notAddress;
      (void)asio::ip::make_address(serverName, notAddress);
      // SNI only for names, not for literal addresses (RFC 6066, section 3).
      if (notAddress) SSL_set_tlsext_host_name(ssl_, serverName.c_str());
      if (verifyHost) {
        auto* param = SSL_get0_param(ssl_);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = notAddress ? X509_VERIFY_PARAM_set1_host(param, serverName.c_str(), 0)
                            : X509_VERIFY_PARAM_set1_ip_asc(param, serverName.c_str());
        if (ok != 1) co_return sslError(ERR_get_error());
      }
    }
  } else {
    SSL_set_accept_state(ssl_);
  }
  co_return co_await tlsCall([&] { return SSL_do_handshake(ssl_); });
}

std::string Stream::peerCommonName() {
  if (!ssl_) return {};
  if (SSL_get_verify_result(ssl_) != X509_V_OK) return {};
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (!cert) return {};
  char buf[256] = {};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  X509_free(cert);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

void Stream::cancel() {
  error_code ignored;
  socket_.cancel(ignored);
}

bool Stream::wakeReaderIfReset() {
  if (ssl_ || !socket_.is_open()) return false;
  const int fd = socket_.native_handle();
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, SOL_TCP, TCP_INFO, &info, &len) != 0 || len == 0 || info.tcpi_state != TCP_CLOSE) return false;
  // Changing the socket's state raises the event a waiting read needs; the error stays pending
  // (getsockopt(SO_ERROR) or a peek would take it), so that read reports the reset itself.
  (void)::shutdown(fd, SHUT_RD);
  return true;
}

void Stream::shutdownSend() {
  // TLS: close_notify first (best effort, non-blocking), then the TCP half-close.
  if (ssl_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);
  }
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
}

void Stream::close() {
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace pgveil::proxy
