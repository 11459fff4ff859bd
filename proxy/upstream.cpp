#include "proxy/upstream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "protocol/startup.hpp"

namespace pgveil::proxy {

namespace {
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);
}  // namespace

asio::awaitable<std::pair<error_code, std::vector<tcp::endpoint>>> upstreamEndpoints(const config::UpstreamConfig& up) {
  std::vector<tcp::endpoint> endpoints;
  error_code ec;
  auto addr = asio::ip::make_address(up.host, ec);
  if (!ec) {
    endpoints.emplace_back(addr, up.port);
    co_return std::pair{ec, std::move(endpoints)};
  }
  tcp::resolver resolver(co_await asio::this_coro::executor);
  auto [rec, results] = co_await resolver.async_resolve(up.host, std::to_string(up.port), kUse);
  for (const auto& r : results) endpoints.push_back(r.endpoint());
  co_return std::pair{rec, std::move(endpoints)};
}

asio::awaitable<std::string> negotiateUpstreamTls(Stream& s, const config::UpstreamConfig& up, asio::ssl::context* tls) {
  if (up.tls == config::UpstreamTls::Disable) co_return std::string();
  if (!tls) co_return std::string("no upstream TLS context");
  if (co_await s.writeAll(protocol::encodeSslRequest())) co_return std::string("connection lost during TLS negotiation");
  char answer = 0;
  auto [ec, n] = co_await s.readSome(&answer, 1);
  if (ec || n != 1) co_return std::string("connection lost during TLS negotiation");
  if (answer == 'S') {
    bool verifyHost = up.tls == config::UpstreamTls::VerifyFull;
    std::string name = up.serverName.empty() ? up.host : up.serverName;
    if (auto hec = co_await s.startTls(*tls, asio::ssl::stream_base::client, name, verifyHost)) {
      co_return "TLS handshake failed: " + hec.message() + (verifyHost ? " (expected server name " + name + ")" : "");
    }
    co_return std::string();
  }
  if (answer == 'N' && up.tls == config::UpstreamTls::Prefer) co_return std::string();
  co_return std::string(answer == 'N' ? "the server does not support TLS" : "unexpected answer to SSLRequest");
}

asio::awaitable<int> readMessage(Stream& s, protocol::ReadBuffer& buf, std::uint32_t maxLen, protocol::Message& out,
                                 std::uint64_t& counter) {
  for (;;) {
    protocol::FrameHeader h;
    auto data = buf.data();
    auto st = protocol::peekHeader(data, maxLen, h);
    if (st == protocol::HeaderStatus::TooShort || st == protocol::HeaderStatus::TooLong) co_return -1;
    if (st == protocol::HeaderStatus::Ok && data.size() >= h.total()) {
      out = {h.type, data.substr(protocol::kHeaderSize, h.payloadSize()), data.substr(0, h.total())};
      co_return 1;
    }
    buf.compact(st == protocol::HeaderStatus::Ok ? h.total() : 0);
    auto [ec, n] = co_await s.readSome(buf.writePtr(), buf.writable());
    if (ec) co_return 0;
    buf.commit(n);
    counter += n;
  }
}

}  // namespace pgveil::proxy
