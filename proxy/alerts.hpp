#pragma once
// Alerts: one JSON object per event (time, rule, action, role, user, database,
// application_name, client, session, normalized query, fingerprint, rows, bytes, duration),
// written to a rotating JSON-lines audit file and the log, rate-limited per rule and role.
// Queries appear only normalized (constants replaced): never a raw value.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "config/config.hpp"

namespace spdlog {
class logger;
}

namespace pgveil::proxy {

class Webhook;

struct AlertEvent {
  std::string severity = "warning";  // critical for canaries
  std::string rule;    // e.g. refused.classified_in_predicate, exfiltration.unbounded_read, large_pull
  std::string action;  // blocked, alerted, monitored (would have been blocked)
  std::string policyRole;
  std::string user;
  std::string database;
  std::string applicationName;
  std::string client;
  std::uint64_t sessionId = 0;
  std::string query;        // normalized
  std::string fingerprint;
  std::uint64_t rows = 0;
  std::uint64_t bytes = 0;
  std::int64_t durationMs = 0;
};

class Alerts {
 public:
  explicit Alerts(const config::AlertsConfig& cfg);
  ~Alerts();
  void emit(const AlertEvent& e);
  // Alert thresholds and rate limits from a reloaded configuration (the sinks stay).
  void setLimits(std::uint32_t maxPerSecond);
  // Prometheus lines: pgveil_alerts_total{rule,action} and pgveil_alerts_suppressed_total.
  [[nodiscard]] std::string metrics() const;
  [[nodiscard]] static std::string toJson(const AlertEvent& e, const std::string& time);

 private:
  config::AlertsConfig cfg_;
  std::shared_ptr<spdlog::logger> audit_;
  std::unique_ptr<Webhook> webhook_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> counts_;  // (rule, action)
  std::map<std::pair<std::string, std::string>, std::pair<std::int64_t, std::uint32_t>> window_;  // (rule, role) -> (second, n)
  std::uint64_t suppressed_ = 0;
};

}  // namespace pgveil::proxy
