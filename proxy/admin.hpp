#pragma once
// The admin HTTP endpoint (loopback by default): /healthz, /metrics (Prometheus text format)
// and /sessions (JSON). One short-lived coroutine per request, bounded in size and time.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <string>
#include <vector>

#include "proxy/shared_state.hpp"

namespace pgveil::proxy {

boost::asio::awaitable<void> runAdmin(SharedState& shared, std::vector<Worker*> workers,
                                      boost::asio::ip::tcp::acceptor acceptor);

// The /metrics and /sessions documents (also used by tests).
[[nodiscard]] std::string metricsText(SharedState& shared, const std::vector<Worker*>& workers);
[[nodiscard]] std::string sessionsJson(SharedState& shared);

}  // namespace pgveil::proxy
