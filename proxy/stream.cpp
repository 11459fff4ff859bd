#include "proxy/stream.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace pgveil::proxy {

namespace {
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);
}

Stream::Stream(tcp::socket socket) : socket_(std::move(socket)) {}

Stream::~Stream() = default;

asio::awaitable<std::pair<error_code, std::size_t>> Stream::readSome(char* data, std::size_t size) {
  auto buf = asio::buffer(data, size);
  if (tls_) {
    auto [ec, n] = co_await tls_->async_read_some(buf, kUse);
    co_return std::pair{ec, n};
  }
  auto [ec, n] = co_await socket_.async_read_some(buf, kUse);
  co_return std::pair{ec, n};
}

asio::awaitable<error_code> Stream::writeAll(std::span<const asio::const_buffer> buffers) {
  if (tls_) {
    if (buffers.size() == 1) {
      auto [ec, n] = co_await asio::async_write(*tls_, asio::buffer(buffers[0]), kUse);
      co_return ec;
    }
    coalesce_.clear();
    for (const auto& b : buffers) coalesce_.append(static_cast<const char*>(b.data()), b.size());
    auto [ec, n] = co_await asio::async_write(*tls_, asio::buffer(coalesce_), kUse);
    if (coalesce_.capacity() > (256u << 10)) std::string().swap(coalesce_);
    co_return ec;
  }
  auto [ec, n] = co_await asio::async_write(socket_, buffers, kUse);
  co_return ec;
}

asio::awaitable<error_code> Stream::writeAll(std::string_view data) {
  asio::const_buffer b(data.data(), data.size());
  co_return co_await writeAll(std::span<const asio::const_buffer>(&b, 1));
}

asio::awaitable<error_code> Stream::startTls(asio::ssl::context& ctx, asio::ssl::stream_base::handshake_type type,
                                             const std::string& serverName, bool verifyHost) {
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(std::move(socket_), ctx);
  if (type == asio::ssl::stream_base::client && !serverName.empty()) {
    // SNI only for names, not for literal addresses (RFC 6066, section 3).
    error_code ignored;
    (void)asio::ip::make_address(serverName, ignored);
    if (ignored) SSL_set_tlsext_host_name(tls_->native_handle(), serverName.c_str());
    if (verifyHost) tls_->set_verify_callback(asio::ssl::host_name_verification(serverName));
  }
  auto [ec] = co_await tls_->async_handshake(type, kUse);
  co_return ec;
}

std::string Stream::peerCommonName() {
  if (!tls_) return {};
  SSL* ssl = tls_->native_handle();
  if (SSL_get_verify_result(ssl) != X509_V_OK) return {};
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return {};
  char buf[256] = {};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  X509_free(cert);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

void Stream::cancel() {
  error_code ignored;
  socket().cancel(ignored);
}

void Stream::shutdownSend() {
  error_code ignored;
  socket().shutdown(tcp::socket::shutdown_send, ignored);
}

void Stream::close() {
  error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

}  // namespace pgveil::proxy
