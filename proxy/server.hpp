#pragma once
// The listener: accepts clients and hands each to a worker thread (one io_context per thread,
// a session stays on its thread for life). Handles SIGINT/SIGTERM (drain) and SIGHUP.

#include <memory>

#include "config/config.hpp"

namespace pgveil::proxy {

class Server {
 public:
  explicit Server(std::shared_ptr<const config::Config> config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, serves until a termination signal has drained the sessions; returns the exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgveil::proxy
