#pragma once
// A byte stream that is plain TCP until upgraded to TLS in place (client side after SSLRequest,
// upstream side after pgveil's own SSLRequest). I/O errors are returned as values.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace pgveil::proxy {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

// TLS is OpenSSL directly on the non-blocking socket (SSL_set_fd), waiting for readiness with
// Asio: unlike asio::ssl::stream (2 x 17 KB of its own buffers plus a 2 x 17 KB BIO pair per
// connection) an idle TLS connection then holds no record buffers (SSL_MODE_RELEASE_BUFFERS).
class Stream {
 public:
  explicit Stream(tcp::socket socket);
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&&) = delete;
  ~Stream();

  // Plain: Asio's read operation (no coroutine frame of its own while it waits) with pgveil's
  // receive, which tells the reactor when it drained the socket (TCP_INQ, see stream.cpp);
  // TLS: readTls.
  asio::awaitable<std::tuple<error_code, std::size_t>> readSome(char* data, std::size_t size);
  asio::awaitable<error_code> writeAll(std::span<const asio::const_buffer> buffers);
  asio::awaitable<error_code> writeAll(std::string_view data);

  // TLS handshake over the existing connection; afterwards all I/O is encrypted.
  // serverName: SNI and, with verify, the expected host name (client role only).
  asio::awaitable<error_code> startTls(asio::ssl::context& ctx, asio::ssl::stream_base::handshake_type type,
                                       const std::string& serverName, bool verifyHost);

  [[nodiscard]] bool isTls() const { return ssl_ != nullptr; }
  [[nodiscard]] tcp::socket& socket() { return socket_; }
  // Subject CN of a verified peer certificate (client certificates), empty if none.
  [[nodiscard]] std::string peerCommonName();
  void cancel();
  // Plain: when the kernel has closed the connection (a reset), makes a read waiting for it
  // complete with that reset. A reset that arrives with data, before the reactor looks, leaves
  // no event for the read after the one that returned the data (see stream.cpp); each worker
  // calls this for its sessions once a second. True when the connection was closed.
  bool wakeReaderIfReset();
  void shutdownSend();
  void close();

 private:
  // Runs an OpenSSL call until it succeeds, waiting for the socket as it asks; the error of a
  // failed call otherwise. `op` returns SSL_* style results (1 / <= 0).
  template <typename Op>
  asio::awaitable<error_code> tlsCall(Op op);
  asio::awaitable<std::tuple<error_code, std::size_t>> readTls(char* data, std::size_t size);
  // One non-blocking sendmsg of what is left of `buffers` from (index, offset), which it
  // advances; would_block when the socket's buffer is full.
  error_code sendSome(std::span<const asio::const_buffer> buffers, std::size_t& index, std::size_t& offset);

  tcp::socket socket_;
  SSL* ssl_ = nullptr;
  bool tlsWriteAbandoned_ = false;
  std::string coalesce_;  // TLS: one record per batch instead of one per buffer
};

}  // namespace pgveil::proxy
