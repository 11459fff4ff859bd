// Blast-radius limits (per query, session and window; error and truncate), enumeration, canaries,
// the alert webhook, /metrics, and configuration reload, against the real server with the demo
// policy (examples/pgveil.yaml).

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "harness.hpp"

namespace pgveil::it {
namespace {

const std::string kSupportLimits =
    "      rows_per_query: 250000      # the demo's largest table fits; a real deployment sets far less\n"
    "      rows_per_window_per_client: 1000000\n"
    "      window: 1m";
const std::string kCanary = "joseph.dubois4242@example.net";


std::string errorOf(PGresult* r) {
  const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  return std::string(code ? code : "-") + " " + (msg ? msg : "");
}

// Direct connection to the test cluster as its superuser.
PgConn direct() { return connect(conninfo(Cluster::get().port, "pgveil_test", "clinic")); }



// A loopback HTTP server that records request bodies; answers 200 unless `silent`.
class WebhookReceiver {
 public:
  explicit WebhookReceiver(bool silent = false) : silent_(silent) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 16);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~WebhookReceiver() {
    stop_ = true;
    thread_.join();
    for (int c : held_) close(c);
    close(fd_);
  }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::vector<std::string> bodies() const {
    std::lock_guard lock(mutex_);
    return bodies_;
  }
  bool waitFor(const std::string& needle, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      for (const auto& b : bodies()) {
        if (b.find(needle) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      if (silent_) {
        held_.push_back(c);  // never answers: the sender times out
        continue;
      }
      std::string req;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (std::chrono::steady_clock::now() < deadline) {
        pollfd q{c, POLLIN, 0};
        if (poll(&q, 1, 50) <= 0) continue;
        char buf[4096];
        auto n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<std::size_t>(n));
        auto end = req.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        std::smatch m;
        std::regex re("[Cc]ontent-[Ll]ength: *([0-9]+)");
        std::string head = req.substr(0, end);
        std::size_t length = std::regex_search(head, m, re) ? std::stoul(m[1]) : 0;
        if (req.size() >= end + 4 + length) {
          std::lock_guard lock(mutex_);
          bodies_.push_back(req.substr(end + 4, length));
          break;
        }
      }
      std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      (void)!write(c, ok.data(), ok.size());
      close(c);
    }
  }
  bool silent_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<int> held_;
  mutable std::mutex mutex_;
  std::vector<std::string> bodies_;
};

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override { setenv("PGVEIL_MASKING_KEY", "integration-test-key-0123456789", 1); }
  static std::string withSupportLimits(const std::string& limits) {
    auto y = demoConfigForTests();
    replaceIn(y, kSupportLimits, limits);
    return y;
  }
  // Whether the cluster still runs a query containing `marker` (other than this check).
  static bool serverStillRuns(const std::string& marker) {
    auto c = direct();
    auto n = scalar(c.get(), "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" + marker +
                                 "%' AND pid <> pg_backend_pid()");
    return n != "0";
  }
};

// Rows 1..1499 come at once; at row 1500 the server sleeps 30 s: only a cancel ends it quickly.
std::string slowAfter1500(const std::string& marker) {
  return "SELECT id, email, (CASE WHEN id = 1500 THEN pg_sleep(30) END) IS NULL AS " + marker +
         " FROM patients ORDER BY id";
}

TEST_F(LimitsTest, RowsPerQueryErrorCancelsTheServerQueryAndTheSessionGoesOn) {
  Proxy proxy(Proxy::Raw{}, withSupportLimits("      rows_per_query: 1000"));
  ASSERT_GT(proxy.port(), 0) << proxy.log();
  auto c = connect(conninfo(proxy.port(), "support"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  auto start = std::chrono::steady_clock::now();
  auto r = exec(c.get(), slowAfter1500("marker_simple"));
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_FATAL_ERROR);
  auto err = errorOf(r.get());
  EXPECT_EQ(err.substr(0, 5), "54000") << err;
  EXPECT_NE(err.find("rows_per_query (1000)"), std::string::npos) << err;
  EXPECT_LT(elapsed, std::chrono::seconds(10));
  // The server-side query was cancelled, not left sleeping.
  EXPECT_TRUE(eventually([&] { return !serverStillRuns("marker_simple"); })) << "the query still runs on the server";
  // The same connection serves the next query, masked as usual.
  EXPECT_EQ(scalar(c.get(), "SELECT email FROM patients WHERE id = 1"), "l***@example.org");
  EXPECT_EQ(PQtransactionStatus(c.get()), PQTRANS_IDLE);

  // Extended protocol: the same through Parse/Bind/Execute.
  const char* params[] = {"1"};
  r.reset(PQexecParams(c.get(),
                       "SELECT id, email, (CASE WHEN id = 1500 THEN pg_sleep(30) END) IS NULL AS marker_ext "
                       "FROM patients WHERE id >= $1::int ORDER BY id",
                       1, nullptr, params, nullptr, nullptr, 0));
  EXPECT_EQ(errorOf(r.get()).substr(0, 5), "54000") << errorOf(r.get());
  EXPECT_TRUE(eventually([&] { return !serverStillRuns("marker_ext"); }));
  EXPECT_EQ(scalar(c.get(), "SELECT count(*) FROM patients WHERE id <= 1000"), "1000");

  // Inside a transaction: the cancelled statement fails it, as any error would, and ROLLBACK
  // recovers.
  exec(c.get(), "BEGIN");
  r = exec(c.get(), slowAfter1500("marker_tx"));
  EXPECT_EQ(errorOf(r.get()).substr(0, 5), "54000");
  EXPECT_EQ(PQtransactionStatus(c.get()), PQTRANS_INERROR);
  exec(c.get(), "ROLLBACK");
  EXPECT_EQ(scalar(c.get(), "SELECT 1"), "1");

  // COPY TO: the copy stream ends in the error.
  r = exec(c.get(), "COPY (SELECT id, email FROM patients WHERE id <= 5000) TO STDOUT");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_COPY_OUT);
  int lines = 0;
  for (;;) {
    char* buf = nullptr;
    int n = PQgetCopyData(c.get(), &buf, 0);
    if (buf) PQfreemem(buf);
    if (n < 0) break;
    ++lines;
  }
  r.reset(PQgetResult(c.get()));
  EXPECT_EQ(errorOf(r.get()).substr(0, 5), "54000") << errorOf(r.get());
  EXPECT_EQ(lines, 1000);
  while (auto* extra = PQgetResult(c.get())) PQclear(extra);
  EXPECT_EQ(scalar(c.get(), "SELECT 2"), "2");
  EXPECT_TRUE(proxy.waitForLog("breached limit rows_per_query (1000)"));
  EXPECT_EQ(proxy.log().find("linda.wilson1"), std::string::npos);
}

TEST_F(LimitsTest, TruncateEndsTheResultWithAWarningAndTheRightCount) {
  // intern falls under `default`: rows_per_query 1000, on_breach: truncate.
  Proxy proxy(Proxy::Raw{}, demoConfigForTests());
  auto c = connect(conninfo(proxy.port(), "intern"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  static std::string notices;
  notices.clear();
  PQsetNoticeProcessor(c.get(), [](void*, const char* m) { notices += m; }, nullptr);
  auto r = exec(c.get(), "SELECT id FROM patients WHERE id <= 5000 ORDER BY id");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << errorOf(r.get());
  EXPECT_EQ(PQntuples(r.get()), 1000);
  EXPECT_STREQ(PQcmdTuples(r.get()), "1000");
  EXPECT_STREQ(PQgetvalue(r.get(), 999, 0), "1000");
  EXPECT_NE(notices.find("truncated after 1000 rows by limit rows_per_query (1000)"), std::string::npos) << notices;
  // Extended protocol too.
  const char* params[] = {"3000"};
  r.reset(PQexecParams(c.get(), "SELECT id FROM patients WHERE id <= $1::int", 1, nullptr, params, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK);
  EXPECT_EQ(PQntuples(r.get()), 1000);
  EXPECT_STREQ(PQcmdTuples(r.get()), "1000");
  // Under the limit nothing changes.
  EXPECT_EQ(scalar(c.get(), "SELECT count(*) FROM patients"), "200000");
}

TEST_F(LimitsTest, WindowLimitSpansConcurrentSessionsOfTheRole) {
  Proxy proxy(Proxy::Raw{}, withSupportLimits("      rows_per_window: 1500\n      window: 1m"));
  auto a = connect(conninfo(proxy.port(), "support"));
  auto b = connect(conninfo(proxy.port(), "support"));
  ASSERT_EQ(PQstatus(b.get()), CONNECTION_OK);
  auto r = exec(a.get(), "SELECT id FROM patients WHERE id <= 1000");
  EXPECT_EQ(PQntuples(r.get()), 1000) << errorOf(r.get());
  // The second session shares the role's window: 1000 + 1000 > 1500.
  r = exec(b.get(), "SELECT id FROM patients WHERE id <= 1000");
  auto err = errorOf(r.get());
  EXPECT_EQ(err.substr(0, 5), "54000") << err;
  EXPECT_NE(err.find("rows_per_window (1500)"), std::string::npos) << err;
  // Another role is not affected.
  auto other = connect(conninfo(proxy.port(), "analyst"));
  r = exec(other.get(), "SELECT id FROM patients WHERE id <= 1000");
  EXPECT_EQ(PQntuples(r.get()), 1000) << errorOf(r.get());
}

TEST_F(LimitsTest, SessionAndByteLimitsAndPerClientWindow) {
  Proxy proxy(Proxy::Raw{}, withSupportLimits("      rows_per_session: 300\n      bytes_per_query: 20000\n"
                                              "      rows_per_window_per_client: 100000\n      window: 1m"));
  auto c = connect(conninfo(proxy.port(), "support"));
  // ~40 bytes per row: 20000 bytes are passed before 1000 rows.
  auto r = exec(c.get(), "SELECT id, email FROM patients WHERE id <= 250");
  EXPECT_EQ(PQntuples(r.get()), 250) << errorOf(r.get());
  r = exec(c.get(), "SELECT id FROM patients WHERE id <= 100");
  EXPECT_NE(errorOf(r.get()).find("rows_per_session (300)"), std::string::npos) << errorOf(r.get());
  auto d = connect(conninfo(proxy.port(), "support"));
  r = exec(d.get(), "SELECT id, email, phone, full_name FROM patients WHERE id <= 290");
  EXPECT_NE(errorOf(r.get()).find("bytes_per_query (20000)"), std::string::npos) << errorOf(r.get());
}

TEST_F(LimitsTest, UnmaskedRolesAreLimitedTooUnlessNoRuleApplies) {
  auto y = demoConfigForTests();
  replaceIn(y, "  admin:\n    unmasked: true\n", "  admin:\n    unmasked: true\n    limits:\n      rows_per_query: 100\n");
  Proxy proxy(Proxy::Raw{}, y);
  auto c = connect(conninfo(proxy.port(), "admin"));
  EXPECT_EQ(scalar(c.get(), "SELECT email FROM patients WHERE id = 1"), "linda.wilson1@example.org");
  auto r = exec(c.get(), "SELECT id FROM patients WHERE id <= 500");
  EXPECT_EQ(errorOf(r.get()).substr(0, 5), "54000") << errorOf(r.get());
  // The server's own errors reach an unmasked role unchanged.
  r = exec(c.get(), "SELECT 1/0");
  EXPECT_EQ(errorOf(r.get()), "22012 division by zero");
}

TEST_F(LimitsTest, EnumerationByOffsetPagingTrips) {
  auto y = demoConfigForTests();
  replaceIn(y, "  enumeration:                  # the same query shape with many different constants: paging through a table\n"
               "    action: alert\n    max_queries: 50",
            "  enumeration:\n    action: block\n    max_queries: 5");
  Proxy proxy(Proxy::Raw{}, y);
  auto c = connect(conninfo(proxy.port(), "support"));
  int page = 0;
  std::string err;
  for (; page < 20 && err.empty(); ++page) {
    auto r = exec(c.get(), "SELECT id, email FROM patients ORDER BY id LIMIT 10 OFFSET " + std::to_string(page * 10));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) err = errorOf(r.get());
  }
  EXPECT_EQ(page, 6) << "pages served before the block";
  EXPECT_EQ(err.substr(0, 5), "42501") << err;
  EXPECT_NE(err.find("enumeration"), std::string::npos) << err;
  // The same page again is not new paging; another shape is unaffected.
  EXPECT_EQ(scalar(c.get(), "SELECT email FROM patients WHERE id = 1"), "l***@example.org");
  // Paging through a prepared statement with parameters trips the same way.
  auto e = connect(conninfo(proxy.port(), "support"));
  PgResult pr(PQprepare(e.get(), "page", "SELECT id, email FROM patients WHERE id > $1::int ORDER BY id LIMIT 10", 1,
                        nullptr));
  ASSERT_EQ(PQresultStatus(pr.get()), PGRES_COMMAND_OK) << errorOf(pr.get());
  std::string extErr;
  int extPages = 0;
  for (; extPages < 20 && extErr.empty(); ++extPages) {
    auto after = std::to_string(extPages * 10);
    const char* values[] = {after.c_str()};
    PgResult r(PQexecPrepared(e.get(), "page", 1, values, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) extErr = errorOf(r.get());
  }
  EXPECT_EQ(extErr.substr(0, 5), "42501") << extErr;
  EXPECT_NE(extErr.find("enumeration"), std::string::npos) << extErr;
  EXPECT_LE(extPages, 7);
  EXPECT_EQ(scalar(e.get(), "SELECT 3"), "3");
  // In monitor mode the same paging only alerts.
  replaceIn(y, "mode: enforce                   #", "mode: monitor                   #");
  Proxy monitor(Proxy::Raw{}, y);
  auto m = connect(conninfo(monitor.port(), "support"));
  for (int p = 0; p < 8; ++p) {
    auto r = exec(m.get(), "SELECT id FROM patients ORDER BY id LIMIT 10 OFFSET " + std::to_string(p * 10));
    EXPECT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << errorOf(r.get());
  }
  EXPECT_TRUE(monitor.waitForLog("\"rule\":\"exfiltration.enumeration\",\"action\":\"monitored\"")) << monitor.log();
}

TEST_F(LimitsTest, DistinctRowsCounterBlocksOnceTheRoleHasSeenTooMany) {
  auto y = demoConfigForTests();
  replaceIn(y, "  distinct_rows:                # distinct rows of classified relations one role received (estimated)\n"
               "    action: alert\n    max_rows: 50000",
            "  distinct_rows:\n    action: block\n    max_rows: 300");
  Proxy proxy(Proxy::Raw{}, y);
  auto a = connect(conninfo(proxy.port(), "support"));
  auto b = connect(conninfo(proxy.port(), "support"));
  // The same 200 rows three times are 200 distinct rows.
  for (int i = 0; i < 3; ++i) {
    auto r = exec(a.get(), "SELECT id, email FROM patients WHERE id <= 200");
    EXPECT_EQ(PQntuples(r.get()), 200) << errorOf(r.get());
  }
  // 200 more from another session of the role: about 400 > 300.
  auto r = exec(b.get(), "SELECT id, email FROM patients WHERE id > 200 AND id <= 400");
  EXPECT_EQ(PQntuples(r.get()), 200) << errorOf(r.get());
  ASSERT_TRUE(proxy.waitForLog("\"rule\":\"exfiltration.distinct_rows\",\"action\":\"alerted\"")) << proxy.log();
  // From now on reads of classified relations are blocked for the role, in every session.
  r = exec(a.get(), "SELECT email FROM patients WHERE id = 1");
  EXPECT_NE(errorOf(r.get()).find("distinct_rows"), std::string::npos) << errorOf(r.get());
  EXPECT_EQ(errorOf(r.get()).substr(0, 5), "42501");
  // Other roles are not affected.
  auto analyst = connect(conninfo(proxy.port(), "analyst"));
  EXPECT_EQ(scalar(analyst.get(), "SELECT nationality FROM patients WHERE id = 1").substr(0, 6) == "ERROR:", false);
}

TEST_F(LimitsTest, CanaryEndsTheSessionAlertsAndLocksTheRoleOut) {
  auto y = demoConfigForTests();
  replaceIn(y, "  values: []", "  values: [\"" + kCanary + "\"]");
  WebhookReceiver hook;
  replaceIn(y, "  # webhook:", "  webhook:\n    url: http://127.0.0.1:" + std::to_string(hook.port()) + "/alerts\n  # was:");
  char audit[] = "/tmp/pgveil-audit.XXXXXX";
  close(mkstemp(audit));
  replaceIn(y, "  audit_file: \"\"", std::string("  audit_file: ") + audit);
  Proxy proxy(Proxy::Raw{}, y);
  auto c = connect(conninfo(proxy.port(), "support"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK);
  // Masked for support, but the row is the planted one: the session ends before it is sent.
  auto r = exec(c.get(), "SELECT id, email FROM patients WHERE id BETWEEN 4240 AND 4245");
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_FATAL_ERROR);
  EXPECT_NE(std::string(PQerrorMessage(c.get())).find("canary"), std::string::npos) << PQerrorMessage(c.get());
  EXPECT_EQ(PQstatus(c.get()), CONNECTION_BAD);
  // Locked out for 5 minutes; other roles are not.
  auto again = connect(conninfo(proxy.port(), "support"));
  EXPECT_EQ(PQstatus(again.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(again.get())).find("locked out"), std::string::npos) << PQerrorMessage(again.get());
  auto analyst = connect(conninfo(proxy.port(), "analyst"));
  EXPECT_EQ(PQstatus(analyst.get()), CONNECTION_OK);
  // The unmasked admin reads it raw without any alarm... unless the canary is in the result.
  auto admin = connect(conninfo(proxy.port(), "admin"));
  EXPECT_EQ(scalar(admin.get(), "SELECT email FROM patients WHERE id = 1"), "linda.wilson1@example.org");
  // The webhook and the audit file got the critical alert, with the normalized query only.
  ASSERT_TRUE(hook.waitFor("\"rule\":\"canary\"")) << proxy.log();
  std::string body;
  for (const auto& b : hook.bodies()) {
    if (b.find("\"rule\":\"canary\"") != std::string::npos) body = b;
  }
  EXPECT_TRUE(std::regex_match(body, std::regex("\\{\"time\":\"[^\"]+\",\"severity\":\"critical\",\"rule\":\"canary\","
                                                "\"action\":\"terminated\",\"role\":\"support\",\"user\":\"support\","
                                                "\"database\":\"clinic\",\"application_name\":\"\",\"client\":\"127.0.0.1:[0-9]+\","
                                                "\"session_id\":[0-9]+,\"query\":\"SELECT id, email FROM patients WHERE id "
                                                "BETWEEN \\$1 AND \\$2\",\"fingerprint\":\"[0-9a-f]+\",\"rows\":[0-9]+,"
                                                "\"bytes\":[0-9]+,\"duration_ms\":[0-9]+\\}")))
      << body;
  auto file = readFileWhenContains(audit, "canary");
  EXPECT_NE(file.find("\"severity\":\"critical\",\"rule\":\"canary\""), std::string::npos) << file;
  // No raw value from the demo data in the audit file, the webhook bodies or the log.
  for (const auto& raw : {kCanary, std::string("linda.wilson1@example.org"), std::string("4240")}) {
    EXPECT_EQ(file.find(raw), std::string::npos) << raw;
    for (const auto& b : hook.bodies()) EXPECT_EQ(b.find(raw), std::string::npos) << raw;
  }
  EXPECT_EQ(proxy.log().find(kCanary), std::string::npos);
  unlink(audit);
}

TEST_F(LimitsTest, CanaryInMonitorModeOnlyAlerts) {
  auto y = demoConfigForTests();
  replaceIn(y, "  values: []", "  values: [\"" + kCanary + "\"]");
  replaceIn(y, "mode: enforce                   #", "mode: monitor                   #");
  Proxy proxy(Proxy::Raw{}, y);
  auto c = connect(conninfo(proxy.port(), "support"));
  auto r = exec(c.get(), "COPY (SELECT id, email FROM patients WHERE id BETWEEN 4240 AND 4245) TO STDOUT");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_COPY_OUT);
  while (true) {
    char* buf = nullptr;
    int n = PQgetCopyData(c.get(), &buf, 0);
    if (buf) PQfreemem(buf);
    if (n < 0) break;
  }
  r.reset(PQgetResult(c.get()));
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << errorOf(r.get());
  EXPECT_EQ(PQstatus(c.get()), CONNECTION_OK);
  EXPECT_TRUE(proxy.waitForLog("\"rule\":\"canary\",\"action\":\"monitored\"")) << proxy.log();
}

TEST_F(LimitsTest, DeadWebhookDropsPastItsQueueAndCountsThem) {
  WebhookReceiver silent(true);
  auto y = demoConfigForTests();
  replaceIn(y, "  # webhook:", "  webhook:\n    url: http://127.0.0.1:" + std::to_string(silent.port()) +
                                   "/x\n    queue_size: 2\n    retries: 1\n    timeout: 1s\n  # was:");
  Proxy proxy(Proxy::Raw{}, y);
  auto c = connect(conninfo(proxy.port(), "support"));
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 8; ++i) exec(c.get(), "SELECT upper(email) FROM patients WHERE id = " + std::to_string(i + 1));
  // Sessions never wait for the webhook.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  auto metrics = parseMetrics(httpGet(proxy.adminPort(), "/metrics"));
  EXPECT_GE(metrics["pgveil_webhook_alerts_total{outcome=\"dropped\"}"], 5);
  EXPECT_EQ(metrics["pgveil_webhook_alerts_total{outcome=\"sent\"}"], 0);
}

TEST_F(LimitsTest, MetricsPerRoleLatencyAndBreaches) {
  Proxy proxy(Proxy::Raw{}, withSupportLimits("      rows_per_query: 100"));
  auto c = connect(conninfo(proxy.port(), "support"));
  exec(c.get(), "SELECT email FROM patients WHERE id <= 50");
  exec(c.get(), "SELECT id FROM patients WHERE id <= 500");  // breach
  exec(c.get(), "SELECT upper(email) FROM patients WHERE id = 1");  // refused
  auto m = parseMetrics(httpGet(proxy.adminPort(), "/metrics"));
  EXPECT_GE(m["pgveil_role_rows_forwarded_total{role=\"support\"}"], 150);
  EXPECT_GE(m["pgveil_role_rows_masked_total{role=\"support\"}"], 50);
  EXPECT_GE(m["pgveil_role_bytes_forwarded_total{role=\"support\"}"], 1000);
  EXPECT_GE(m["pgveil_role_bytes_masked_total{role=\"support\"}"], 50 * 20);
  EXPECT_LE(m["pgveil_role_bytes_masked_total{role=\"support\"}"], m["pgveil_role_bytes_forwarded_total{role=\"support\"}"]);
  EXPECT_EQ(m["pgveil_role_limit_breaches_total{role=\"support\"}"], 1);
  EXPECT_GE(m["pgveil_role_queries_total{role=\"support\",verdict=\"allowed\"}"], 2);
  EXPECT_EQ(m["pgveil_role_queries_total{role=\"support\",verdict=\"refused\"}"], 1);
  EXPECT_EQ(m["pgveil_alerts_total{rule=\"limit.rows_per_query\",action=\"blocked\"}"], 1);
  EXPECT_GE(m["pgveil_query_duration_seconds_count"], 3);
  EXPECT_GE(m["pgveil_query_duration_seconds_bucket{le=\"+Inf\"}"], 3);
  EXPECT_GE(m["pgveil_upstream_connect_duration_seconds_count"], 1);
  EXPECT_GE(m["pgveil_analyzer_cache_hit_ratio"], 0);
  auto sessions = httpGet(proxy.adminPort(), "/sessions");
  EXPECT_NE(sessions.find("\"state\":\"idle\""), std::string::npos) << sessions;
}

// Counters written per statement and per result have one copy per worker thread (no cache line
// shared by two workers); /metrics adds them up. Two sessions in a row land on the two workers.
TEST_F(LimitsTest, MetricsAddUpTheWorkersCopies) {
  Proxy proxy(Proxy::Raw{}, demoConfigForTests());
  auto a = connect(conninfo(proxy.port(), "support"));
  auto b = connect(conninfo(proxy.port(), "support"));
  for (auto* c : {a.get(), b.get()}) {
    exec(c, "SELECT email FROM patients WHERE id <= 10");
    exec(c, "SELECT upper(email) FROM patients WHERE id = 1");  // refused
  }
  exec(b.get(), "SELECT id FROM patients WHERE id <= 5");
  auto m = parseMetrics(httpGet(proxy.adminPort(), "/metrics"));
  EXPECT_EQ(m["pgveil_role_rows_forwarded_total{role=\"support\"}"], 25);
  EXPECT_EQ(m["pgveil_role_rows_masked_total{role=\"support\"}"], 20);
  EXPECT_EQ(m["pgveil_rows_forwarded_total"], 25);
  EXPECT_EQ(m["pgveil_rows_masked_total"], 20);
  EXPECT_EQ(m["pgveil_role_queries_total{role=\"support\",verdict=\"allowed\"}"], 3);
  EXPECT_EQ(m["pgveil_role_queries_total{role=\"support\",verdict=\"refused\"}"], 2);
  EXPECT_EQ(m["pgveil_statements_refused_total"], 2);
  EXPECT_EQ(m["pgveil_query_duration_seconds_count"], 5);
  EXPECT_EQ(m["pgveil_query_duration_seconds_bucket{le=\"+Inf\"}"], 5);
}

TEST_F(LimitsTest, ReloadAppliesValidConfigToOpenSessionsAndRejectsInvalidOne) {
  auto y = demoConfigForTests();
  Proxy proxy(Proxy::Raw{}, y);
  auto c = connect(conninfo(proxy.port(), "support"));
  EXPECT_EQ(scalar(c.get(), "SELECT email FROM patients WHERE id = 1"), "l***@example.org");
  // Invalid: rejected with file and line, the old configuration stays.
  auto bad = y;
  replaceIn(bad, "      email: partial_email", "      email: partial_emial");
  proxy.reload(bad);
  ASSERT_TRUE(proxy.waitForLog("configuration reload rejected")) << proxy.log();
  EXPECT_TRUE(std::regex_search(proxy.log(), std::regex("reload rejected.*pgveil-it-config\\.[A-Za-z0-9]+:[0-9]+")))
      << proxy.log();
  EXPECT_EQ(scalar(c.get(), "SELECT email FROM patients WHERE id = 1"), "l***@example.org");
  // Valid: the open session's next statement uses it, without reconnecting.
  auto good = y;
  replaceIn(good, "      email: partial_email", "      email: fixed('hidden')");
  proxy.reload(good);
  ASSERT_TRUE(proxy.waitForLog("configuration reloaded")) << proxy.log();
  EXPECT_EQ(scalar(c.get(), "SELECT email FROM patients WHERE id = 1"), "hidden");
  EXPECT_EQ(PQstatus(c.get()), CONNECTION_OK);
  // New limits apply to the open session too.
  auto limited = good;
  replaceIn(limited, kSupportLimits, "      rows_per_query: 10");
  proxy.reload(limited);
  ASSERT_TRUE(proxy.waitForLog("(generation 3)")) << proxy.log();
  auto r = exec(c.get(), "SELECT id FROM patients WHERE id <= 20");
  EXPECT_EQ(errorOf(r.get()).substr(0, 5), "54000") << errorOf(r.get());
  // A plain-relay session whose role becomes inspected is ended, and reconnects inspected.
  auto admin = connect(conninfo(proxy.port(), "admin"));
  EXPECT_EQ(scalar(admin.get(), "SELECT 1"), "1");
  EXPECT_NE(httpGet(proxy.adminPort(), "/sessions").find("\"user\":\"admin\",\"database\":\"clinic\",\"application_name\":\"\",\"client\":"), std::string::npos);
  auto inspected = limited;
  replaceIn(inspected, "  exempt: [admin]\n", "");
  proxy.reload(inspected);
  ASSERT_TRUE(proxy.waitForLog("(generation 4)")) << proxy.log();
  ASSERT_TRUE(proxy.waitForLog("ended by a configuration reload")) << proxy.log();
  EXPECT_NE(scalar(admin.get(), "SELECT 1"), "1");
  auto admin2 = connect(conninfo(proxy.port(), "admin"));
  EXPECT_EQ(scalar(admin2.get(), "SELECT email FROM patients WHERE id = 1"), "linda.wilson1@example.org");
}

TEST_F(LimitsTest, ReloadReachesPreparedStatementsAndEndsSessionsItCannotCarryOver) {
  auto y = demoConfigForTests();
  replaceIn(y, "  admin:\n    unmasked: true\n    limits: {}", "  admin:\n    unmasked: true\n    limits:\n      rows_per_query: 100000");
  Proxy proxy(Proxy::Raw{}, y);
  // analyst may use classified columns in conditions; a reload takes that away.
  auto analyst = connect(conninfo(proxy.port(), "analyst"));
  PgResult prep(PQprepare(analyst.get(), "by_email", "SELECT id FROM patients WHERE email LIKE $1", 1, nullptr));
  ASSERT_EQ(PQresultStatus(prep.get()), PGRES_COMMAND_OK) << errorOf(prep.get());
  const char* like[] = {"linda.wilson1@%"};
  PgResult r(PQexecPrepared(analyst.get(), "by_email", 1, like, nullptr, nullptr, 0));
  EXPECT_EQ(PQntuples(r.get()), 1) << errorOf(r.get());
  // support sees partial emails through a statement prepared before the reload.
  auto support = connect(conninfo(proxy.port(), "support"));
  PgResult sp(PQprepare(support.get(), "email_of", "SELECT email FROM patients WHERE id = $1::int", 1, nullptr));
  const char* one[] = {"1"};
  r.reset(PQexecPrepared(support.get(), "email_of", 1, one, nullptr, nullptr, 0));
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 0), "l***@example.org");
  // A transaction open across the reload finishes under the rules it started with.
  auto inTx = connect(conninfo(proxy.port(), "support"));
  exec(inTx.get(), "BEGIN");
  EXPECT_EQ(scalar(inTx.get(), "SELECT email FROM patients WHERE id = 1"), "l***@example.org");
  // admin is unmasked but inspected (it has limits).
  auto admin = connect(conninfo(proxy.port(), "admin"));
  EXPECT_EQ(scalar(admin.get(), "SELECT email FROM patients WHERE id = 1"), "linda.wilson1@example.org");

  auto next = y;
  replaceIn(next, "  analyst:\n    use_in_sql: allow", "  analyst:\n    use_in_sql: refuse");
  replaceIn(next, "      email: partial_email", "      email: fixed('hidden')");
  replaceIn(next, "  admin:\n    unmasked: true\n", "  admin:\n    mask:\n      \"*\": redact\n");
  proxy.reload(next);
  ASSERT_TRUE(proxy.waitForLog("configuration reloaded")) << proxy.log();
  EXPECT_EQ(scalar(inTx.get(), "SELECT email FROM patients WHERE id = 1"), "l***@example.org");
  exec(inTx.get(), "COMMIT");
  EXPECT_EQ(scalar(inTx.get(), "SELECT email FROM patients WHERE id = 1"), "hidden");
  // Bind/Execute only: the new masking applies.
  r.reset(PQexecPrepared(support.get(), "email_of", 1, one, nullptr, nullptr, 0));
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 0), "hidden") << errorOf(r.get());
  // A statement prepared under the old rules that the new ones refuse ends the session.
  r.reset(PQexecPrepared(analyst.get(), "by_email", 1, like, nullptr, nullptr, 0));
  EXPECT_NE(PQresultStatus(r.get()), PGRES_TUPLES_OK);
  EXPECT_EQ(PQstatus(analyst.get()), CONNECTION_BAD);
  // A role that became masked cannot carry over what it did unmasked: its session ends.
  auto v = scalar(admin.get(), "SELECT email FROM patients WHERE id = 1");
  EXPECT_NE(v, "linda.wilson1@example.org");
  EXPECT_EQ(PQstatus(admin.get()), CONNECTION_BAD) << v;
  auto admin2 = connect(conninfo(proxy.port(), "admin"));
  ASSERT_EQ(PQstatus(admin2.get()), CONNECTION_OK) << PQerrorMessage(admin2.get()) << proxy.log();
  EXPECT_EQ(scalar(admin2.get(), "SELECT email FROM patients WHERE id = 1"), "***");
}

TEST_F(LimitsTest, LimitsApplyWithoutAnyClassification) {
  // No classify: nothing is masked, but limits and canaries still hold.
  Proxy proxy(
      "admin:\n  listen: 127.0.0.1:0\ncatalog:\n  user: pgveil_catalog\n  password: pgveil_catalog\n"
      "roles:\n  default:\n    limits:\n      rows_per_query: 10\n  admin:\n    unmasked: true\n    limits: {}\n");
  ASSERT_GT(proxy.port(), 0) << proxy.log();
  auto c = connect(conninfo(proxy.port(), "support"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get()) << proxy.log();
  EXPECT_EQ(scalar(c.get(), "SELECT email FROM patients WHERE id = 1"), "linda.wilson1@example.org");
  auto r = exec(c.get(), "SELECT id FROM patients WHERE id <= 50");
  EXPECT_EQ(errorOf(r.get()).substr(0, 5), "54000") << errorOf(r.get());
  // Statements a masked role could not run are fine here: there is nothing to protect.
  EXPECT_EQ(scalar(c.get(), "SELECT upper(email) FROM patients WHERE id = 1"), "LINDA.WILSON1@EXAMPLE.ORG");
  // admin has no limits: the byte relay.
  auto a = connect(conninfo(proxy.port(), "admin"));
  r = exec(a.get(), "SELECT id FROM patients WHERE id <= 50");
  EXPECT_EQ(PQntuples(r.get()), 50);
  EXPECT_EQ(httpGet(proxy.adminPort(), "/sessions").find("\"policy\":\"admin\""), std::string::npos);
}

}  // namespace
}  // namespace pgveil::it
