#pragma once
// State shared by all sessions of one pgveil process: the configuration snapshot, TLS contexts,
// the cancel-key registry and process-wide counters. Sessions read it; only start-up writes it.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>
#include <unordered_set>

#include "config/config.hpp"
#include "proxy/cancel_registry.hpp"

namespace pgveil::proxy {

class Session;

struct SharedState {
  std::shared_ptr<const config::Config> config;
  std::unique_ptr<boost::asio::ssl::context> clientTls;    // null when tls.mode is disable
  std::unique_ptr<boost::asio::ssl::context> upstreamTls;  // null when upstream.tls is disable
  CancelRegistry cancels;
  std::atomic<std::uint32_t> activeClients{0};
  std::atomic<std::uint64_t> nextSessionId{1};
  std::atomic<std::uint64_t> totalSessions{0};
  std::atomic<bool> shuttingDown{false};
};

// One worker thread's io_context and the sessions living on it (touched only on that thread).
struct Worker {
  boost::asio::io_context context{1};
  std::unordered_set<Session*> sessions;
};

}  // namespace pgveil::proxy
