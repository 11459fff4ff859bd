#pragma once
// OpenSSL contexts for the client-facing listener and for upstream connections, built once
// from the configuration. Throws std::runtime_error with the OpenSSL reason at start-up.

#include <boost/asio/ssl/context.hpp>
#include <memory>

#include "config/config.hpp"

namespace pgveil::proxy {

[[nodiscard]] std::unique_ptr<boost::asio::ssl::context> makeClientTlsContext(const config::ClientTlsConfig& cfg);
[[nodiscard]] std::unique_ptr<boost::asio::ssl::context> makeUpstreamTlsContext(const config::UpstreamConfig& cfg);

}  // namespace pgveil::proxy
