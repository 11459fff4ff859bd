#pragma once
// Delivers alert JSON documents to an HTTP endpoint (POST, application/json) from its own
// thread: a bounded queue in front, retries with exponential backoff behind. A session never
// waits for it; when the queue is full the alert is dropped and counted.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "config/config.hpp"

namespace pgveil::proxy {

class Webhook {
 public:
  explicit Webhook(const config::WebhookConfig& cfg);
  ~Webhook();  // waits up to the timeout for queued alerts, then stops
  Webhook(const Webhook&) = delete;
  Webhook& operator=(const Webhook&) = delete;

  void post(std::string json);

  [[nodiscard]] std::uint64_t sent() const { return sent_.load(); }
  [[nodiscard]] std::uint64_t dropped() const { return dropped_.load(); }   // queue full
  [[nodiscard]] std::uint64_t failed() const { return failed_.load(); }     // retries exhausted
  [[nodiscard]] std::uint64_t retried() const { return retried_.load(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> retried_{0};
};

}  // namespace pgveil::proxy
