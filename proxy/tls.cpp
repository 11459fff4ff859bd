#include "proxy/tls.hpp"

#include <openssl/ssl.h>

#include <stdexcept>

namespace pgveil::proxy {

namespace ssl = boost::asio::ssl;

namespace {
void check(boost::system::error_code ec, const std::string& what) {
  if (ec) throw std::runtime_error(what + ": " + ec.message());
}
}  // namespace

std::unique_ptr<ssl::context> makeClientTlsContext(const config::ClientTlsConfig& cfg) {
  if (cfg.mode == config::ClientTls::Disable) return nullptr;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                   ec);
  check(ec, "tls options");
  // Idle connections give their OpenSSL record buffers back (about 34 KB each); no TLS 1.2
  // renegotiation (PostgreSQL refuses it too; it would interleave handshake records with data).
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_RENEGOTIATION);
  ctx->use_certificate_chain_file(cfg.certFile, ec);
  check(ec, "tls.cert " + cfg.certFile);
  ctx->use_private_key_file(cfg.keyFile, ssl::context::pem, ec);
  check(ec, "tls.key " + cfg.keyFile);
  if (!cfg.caFile.empty()) {
    ctx->load_verify_file(cfg.caFile, ec);
    check(ec, "tls.client_ca " + cfg.caFile);
    // Ask for a client certificate; identity mapping uses it only when it verifies.
    ctx->set_verify_mode(ssl::verify_peer, ec);
    check(ec, "tls verify mode");
  }
  return ctx;
}

std::unique_ptr<ssl::context> makeUpstreamTlsContext(const config::UpstreamConfig& cfg) {
  if (cfg.tls == config::UpstreamTls::Disable) return nullptr;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  check(ec, "upstream tls options");
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_RENEGOTIATION);
  // As libpq: `require` with a CA file verifies the chain like verify-ca (the host name is
  // checked only by verify-full).
  if (cfg.tls == config::UpstreamTls::VerifyCa || cfg.tls == config::UpstreamTls::VerifyFull ||
      (cfg.tls == config::UpstreamTls::Require && !cfg.caFile.empty())) {
    ctx->load_verify_file(cfg.caFile, ec);
    check(ec, "upstream.ca_file " + cfg.caFile);
    ctx->set_verify_mode(ssl::verify_peer, ec);
  } else {
    ctx->set_verify_mode(ssl::verify_none, ec);
  }
  check(ec, "upstream verify mode");
  if (!cfg.certFile.empty()) {
    ctx->use_certificate_chain_file(cfg.certFile, ec);
    check(ec, "upstream.cert_file " + cfg.certFile);
    ctx->use_private_key_file(cfg.keyFile, ssl::context::pem, ec);
    check(ec, "upstream.key_file " + cfg.keyFile);
  }
  return ctx;
}

}  // namespace pgveil::proxy
