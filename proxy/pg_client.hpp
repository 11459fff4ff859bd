#pragma once
// pgveil's own connection to the upstream server, for catalog loads (never a session's
// connection). It connects as the sessions do (upstreamEndpoints, negotiateUpstreamTls with the
// same TLS context settings: mode, CA, server name, client certificate), authenticates as
// catalog.user (trust, certificate, cleartext password, md5 or SCRAM-SHA-256), and runs simple
// queries whose rows come back as text. Errors are thrown as std::runtime_error; their text
// comes from the server's ErrorResponse (authentication, catalog queries: never row values).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "protocol/read_buffer.hpp"
#include "proxy/stream.hpp"

namespace pgveil::proxy {

class PgClient {
 public:
  using Row = std::vector<std::optional<std::string>>;

  // `tls` is the upstream TLS context (null when upstream.tls is disable).
  static asio::awaitable<std::unique_ptr<PgClient>> connect(const config::Config& cfg, asio::ssl::context* tls,
                                                            const std::string& database,
                                                            const std::string& applicationName);
  // A simple Query; the rows of its (last) result.
  asio::awaitable<std::vector<Row>> query(std::string_view sql);
  // Terminate, then close (the server logs no unexpected EOF).
  asio::awaitable<void> terminate();

  // maxMessage bounds each answer's messages (connections.max_message_size).
  PgClient(Stream stream, std::string target, std::uint32_t maxMessage);

 private:
  asio::awaitable<void> startup(const config::Config& cfg, const std::string& database,
                                const std::string& applicationName);
  asio::awaitable<void> send(const std::string& bytes);
  [[noreturn]] void fail(const std::string& why) const;

  Stream stream_;
  std::string target_;  // host:port, for messages
  protocol::ReadBuffer in_;
  std::uint32_t maxMessage_;
};

}  // namespace pgveil::proxy
