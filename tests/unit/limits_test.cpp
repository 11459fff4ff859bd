#include <gtest/gtest.h>

#include <random>

#include "config/config.hpp"
#include "masking/limits.hpp"

using namespace pgveil::masking;
using namespace std::chrono_literals;

namespace {
Clock::time_point at(std::chrono::milliseconds ms) { return Clock::time_point(ms + 1'000'000'000ms); }
}  // namespace

TEST(SlidingWindows, SumsWithinTheWindowAndForgetsOlderBuckets) {
  SlidingWindows w;
  EXPECT_EQ(w.add("support", 60s, 10, 100, at(0ms)).rows, 10u);
  EXPECT_EQ(w.add("support", 60s, 5, 50, at(30s)).rows, 15u);
  EXPECT_EQ(w.add("support", 60s, 5, 50, at(30s)).bytes, 200u);
  // Another key is independent.
  EXPECT_EQ(w.add("analyst", 60s, 1, 1, at(30s)).rows, 1u);
  // 61 s later the first bucket has left the window; the one at 30 s has not.
  EXPECT_EQ(w.add("support", 60s, 0, 0, at(61s)).rows, 10u);
  // Two minutes later everything has left.
  EXPECT_EQ(w.add("support", 60s, 1, 1, at(200s)).rows, 1u);
}

TEST(DistinctSketch, EstimatesWithinAFewPercent) {
  for (std::uint64_t n : {10ull, 1000ull, 50000ull}) {
    DistinctSketch s;
    std::mt19937_64 rng(n);
    std::vector<std::uint64_t> values(n);
    for (auto& v : values) v = rng();
    for (int rep = 0; rep < 3; ++rep) {
      for (auto v : values) s.add(v);  // repeats do not count
    }
    double e = s.estimate();
    EXPECT_NEAR(e, static_cast<double>(n), static_cast<double>(n) * 0.06 + 1) << n;
  }
}

TEST(DistinctRows, WindowMergesSessionsAndExpires) {
  DistinctRows d;
  DistinctSketch a;
  DistinctSketch b;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 3000; ++i) a.add(rng());
  for (int i = 0; i < 3000; ++i) b.add(rng());
  EXPECT_NEAR(d.add("support", 80s, a, at(0ms)), 3000, 200);
  EXPECT_NEAR(d.add("support", 80s, b, at(5s)), 6000, 400);
  // The same rows again are not new.
  EXPECT_NEAR(d.add("support", 80s, a, at(6s)), 6000, 400);
  EXPECT_NEAR(d.estimate("support", 80s, at(200s)), 0, 1);
  EXPECT_NEAR(d.estimate("analyst", 80s, at(6s)), 0, 1);
}

TEST(EnumerationTracker, CountsDistinctVariantsInTheWindow) {
  EnumerationTracker t;
  EXPECT_EQ(t.record("k", 1, 60s, 10, at(0s)), 1u);
  EXPECT_EQ(t.record("k", 1, 60s, 10, at(1s)), 1u);  // the same text again is not paging
  EXPECT_EQ(t.record("k", 2, 60s, 10, at(2s)), 2u);
  EXPECT_EQ(t.record("k", 3, 60s, 10, at(3s)), 3u);
  EXPECT_EQ(t.record("other", 3, 60s, 10, at(3s)), 1u);
  // Variants older than the window drop out.
  EXPECT_EQ(t.record("k", 4, 60s, 10, at(62s)), 2u);  // 3 (at 3 s) and 4
  for (std::uint64_t v = 10; v < 100; ++v) t.record("k", v, 60s, 10, at(63s));
  EXPECT_EQ(t.record("k", 100, 60s, 10, at(63s)), 11u);  // capped at cap + 1
}

TEST(CanaryMatcher, FindsAnyLiteralAnywhere) {
  CanaryMatcher m({"canary.doe@example.org", "+33 6 00 00 00 01", "a.b*c"});
  EXPECT_EQ(m.find("nothing here"), -1);
  EXPECT_EQ(m.find(std::string("\x00\x01row canary.doe@example.org tail", 33)), 0);
  EXPECT_EQ(m.find("phone=+33 6 00 00 00 01;"), 1);
  EXPECT_EQ(m.find("xxa.b*cxx"), 2);  // literal, not a pattern
  EXPECT_EQ(m.find("aXbbbc"), -1);
  CanaryMatcher none({});
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.find("canary.doe@example.org"), -1);
}

TEST(LimitsConfig, RoleLimitsDefaultAndErrors) {
  using pgveil::config::loadConfigText;
  auto c = loadConfigText(R"(
classify:
  public.patients.email: email
roles:
  default:
    limits:
      rows_per_query: 100
  support:
    mask: {email: redact}
    limits:
      rows_per_query: 1000
      bytes_per_session: 10MB
      window: 2m
      rows_per_window: 5000
      rows_per_window_per_client: 2000
      on_breach: truncate
  analyst:
    mask: {email: redact}
mode: monitor
exfiltration:
  enumeration: {action: block, max_queries: 5, window: 30s}
  distinct_rows: {action: alert, max_rows: 500, window: 1h}
canaries:
  values: [canary.doe@example.org]
  lockout: 10m
  exempt: [analyst]
alerts:
  webhook: {url: "http://127.0.0.1:9999/hook", queue_size: 10, retries: 2, timeout: 500ms}
)", "t.yaml");
  const auto& s = pgveil::config::limitsFor(c, "support");
  EXPECT_EQ(s.rowsPerQuery, 1000u);
  EXPECT_EQ(s.bytesPerSession, 10u << 20);
  EXPECT_EQ(s.window, 120s);
  EXPECT_TRUE(s.truncate);
  EXPECT_EQ(pgveil::config::limitsFor(c, "analyst").rowsPerQuery, 100u);  // from default
  EXPECT_FALSE(pgveil::config::limitsFor(c, "analyst").truncate);
  EXPECT_TRUE(c.monitor);
  EXPECT_EQ(c.exfiltration.enumeration, pgveil::config::RuleAction::Block);
  EXPECT_EQ(c.exfiltration.enumerationMaxQueries, 5u);
  EXPECT_EQ(c.exfiltration.distinctRowsMax, 500u);
  EXPECT_EQ(c.canaries.lockout, 600s);
  EXPECT_EQ(c.alerts.webhook.host, "127.0.0.1");
  EXPECT_EQ(c.alerts.webhook.port, "9999");
  EXPECT_EQ(c.alerts.webhook.target, "/hook");

  auto fails = [](const std::string& yaml, const std::string& needle) {
    try {
      (void)loadConfigText(yaml, "bad.yaml");
    } catch (const pgveil::config::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted: " << yaml;
  };
  fails("roles:\n  a:\n    limits:\n      on_breach: drop\n", "bad.yaml:4");
  fails("roles:\n  a:\n    limits:\n      rows_per_querry: 1\n", "rows_per_querry");
  fails("alerts:\n  webhook:\n    url: https://x/y\n", "bad.yaml:3");
  fails("canaries:\n  values: [abc]\n", "at least 6");
  fails("mode: relaxed\n", "bad.yaml:1");
  fails("exfiltration:\n  enumeration: {action: maybe}\n", "bad.yaml:2");
}
