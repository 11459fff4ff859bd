#pragma once
// Connecting to the upstream server, shared by the sessions and by pgveil's own catalog
// connection: its addresses, TLS negotiation (SSLRequest, then the upstream TLS context), and
// reading one whole protocol message.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "protocol/frame.hpp"
#include "protocol/read_buffer.hpp"
#include "proxy/stream.hpp"

namespace pgveil::proxy {

// upstream.host's addresses in the resolver's order. An IP address is used as is: only a host
// name goes through Asio's resolver (getaddrinfo on a thread of its own).
asio::awaitable<std::pair<error_code, std::vector<tcp::endpoint>>> upstreamEndpoints(const config::UpstreamConfig& up);

// After the TCP connection: SSLRequest and the handshake as upstream.tls says (`prefer` stays
// plain when the server answers N). The name checked and sent as SNI is server_name, else host.
// Returns an empty string on success, else why it failed.
asio::awaitable<std::string> negotiateUpstreamTls(Stream& s, const config::UpstreamConfig& up, asio::ssl::context* tls);

// Reads until one whole message is buffered. Returns 1 with `out` viewing the buffer (not yet
// consumed), 0 on EOF or I/O error, -1 on an invalid length.
asio::awaitable<int> readMessage(Stream& s, protocol::ReadBuffer& buf, std::uint32_t maxLen, protocol::Message& out,
                                 std::uint64_t& counter);

}  // namespace pgveil::proxy
