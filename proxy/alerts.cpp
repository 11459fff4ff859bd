#include "proxy/alerts.hpp"

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

#include "masking/json_text.hpp"
#include "proxy/logging.hpp"
#include "proxy/webhook.hpp"

namespace pgveil::proxy {

Alerts::Alerts(const config::AlertsConfig& cfg) : cfg_(cfg) {
  if (!cfg_.auditFile.empty()) {
    audit_ = spdlog::rotating_logger_mt("pgveil-audit", cfg_.auditFile, cfg_.auditFileMaxBytes, cfg_.auditFileCount);
    audit_->set_pattern("%v");
    audit_->flush_on(spdlog::level::info);
  }
  if (!cfg_.webhook.url.empty()) webhook_ = std::make_unique<Webhook>(cfg_.webhook);
}

void Alerts::setLimits(std::uint32_t maxPerSecond) {
  std::lock_guard lock(mutex_);
  cfg_.maxPerSecond = maxPerSecond;
}

Alerts::~Alerts() {
  if (audit_) spdlog::drop("pgveil-audit");
}

std::string Alerts::toJson(const AlertEvent& e, const std::string& time) {
  std::string j = "{\"time\":" + masking::jsonQuote(time) + ",\"severity\":" + masking::jsonQuote(e.severity) + ",\"rule\":" + masking::jsonQuote(e.rule) + ",\"action\":" +
                  masking::jsonQuote(e.action) + ",\"role\":" + masking::jsonQuote(e.policyRole) + ",\"user\":" + masking::jsonQuote(e.user) +
                  ",\"database\":" + masking::jsonQuote(e.database) + ",\"application_name\":" + masking::jsonQuote(e.applicationName) +
                  ",\"client\":" + masking::jsonQuote(e.client) + ",\"session_id\":" + std::to_string(e.sessionId) +
                  ",\"query\":" + masking::jsonQuote(e.query) + ",\"fingerprint\":" + masking::jsonQuote(e.fingerprint) +
                  ",\"rows\":" + std::to_string(e.rows) + ",\"bytes\":" + std::to_string(e.bytes) +
                  ",\"duration_ms\":" + std::to_string(e.durationMs) + "}";
  return j;
}

void Alerts::emit(const AlertEvent& e) {
  auto now = std::chrono::system_clock::now();
  auto second = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  {
    std::lock_guard lock(mutex_);
    ++counts_[{e.rule, e.action}];
    auto& w = window_[{e.rule, e.policyRole}];
    if (w.first != second) w = {second, 0};
    // Canaries are never rate-limited: each hit matters.
    if (++w.second > cfg_.maxPerSecond && e.severity != "critical") {
      ++suppressed_;
      return;
    }
  }
  auto t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(ms));
  auto json = toJson(e, buf);
  if (audit_) audit_->info(json);
  if (webhook_) webhook_->post(json);
  if (e.severity == "critical") spdlog::critical("alert {}", json);
  else spdlog::warn("alert {}", json);
}

std::string Alerts::metrics() const {
  std::lock_guard lock(mutex_);
  std::string out = "# HELP pgveil_alerts_total Alerts raised, by rule and action.\n# TYPE pgveil_alerts_total counter\n";
  for (const auto& [k, v] : counts_) {
    out += "pgveil_alerts_total{rule=\"" + logSafe(k.first) + "\",action=\"" + logSafe(k.second) + "\"} " +
           std::to_string(v) + "\n";
  }
  out += "# HELP pgveil_alerts_suppressed_total Alerts over the per-rule rate limit.\n# TYPE pgveil_alerts_suppressed_total counter\n";
  out += "pgveil_alerts_suppressed_total " + std::to_string(suppressed_) + "\n";
  if (webhook_) {
    out += "# HELP pgveil_webhook_alerts_total Alerts by webhook delivery outcome (dropped: queue full; failed: retries exhausted).\n"
           "# TYPE pgveil_webhook_alerts_total counter\n";
    out += "pgveil_webhook_alerts_total{outcome=\"sent\"} " + std::to_string(webhook_->sent()) + "\n";
    out += "pgveil_webhook_alerts_total{outcome=\"dropped\"} " + std::to_string(webhook_->dropped()) + "\n";
    out += "pgveil_webhook_alerts_total{outcome=\"failed\"} " + std::to_string(webhook_->failed()) + "\n";
    out += "pgveil_webhook_alerts_total{outcome=\"retried\"} " + std::to_string(webhook_->retried()) + "\n";
  }
  return out;
}

}  // namespace pgveil::proxy
