#pragma once
// A byte stream that is plain TCP until upgraded to TLS in place (client side after SSLRequest,
// upstream side after pgveil's own SSLRequest). I/O errors are returned as values.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace pgveil::proxy {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

class Stream {
 public:
  explicit Stream(tcp::socket socket);
  Stream(Stream&&) = default;
  ~Stream();

  asio::awaitable<std::pair<error_code, std::size_t>> readSome(char* data, std::size_t size);
  asio::awaitable<error_code> writeAll(std::span<const asio::const_buffer> buffers);
  asio::awaitable<error_code> writeAll(std::string_view data);

  // TLS handshake over the existing connection; afterwards all I/O is encrypted.
  // serverName: SNI and, with verify, the expected host name (client role only).
  asio::awaitable<error_code> startTls(asio::ssl::context& ctx, asio::ssl::stream_base::handshake_type type,
                                       const std::string& serverName, bool verifyHost);

  [[nodiscard]] bool isTls() const { return tls_ != nullptr; }
  [[nodiscard]] tcp::socket& socket() { return tls_ ? tls_->next_layer() : socket_; }
  // Subject CN of a verified peer certificate (client certificates), empty if none.
  [[nodiscard]] std::string peerCommonName();
  void cancel();
  void shutdownSend();
  void close();

 private:
  tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;
  std::string coalesce_;  // TLS: one record per batch instead of one per buffer
};

}  // namespace pgveil::proxy
