// Exfiltration rules (enforce and monitor), alerts in the JSON audit file, and the admin
// endpoint (/healthz, /metrics, /sessions), with the demo policy.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "harness.hpp"

namespace pgveil::it {
namespace {



class ExfiltrationTest : public ::testing::Test {
 protected:
  void SetUp() override { setenv("PGVEIL_MASKING_KEY", "integration-test-key-0123456789", 1); }
  // The demo configuration with every exfiltration rule set to block (or monitor mode).
  static std::string config(const std::string& mode, const std::string& auditFile) {
    auto y = demoConfigForTests();
    auto replace = [&](const std::string& from, const std::string& to) {
      auto pos = y.find(from);
      EXPECT_NE(pos, std::string::npos) << from;
      if (pos != std::string::npos) y.replace(pos, from.size(), to);
    };
    replace("  mode: enforce\n  exempt: [admin]\n  unbounded_read: alert",
            "  mode: " + mode + "\n  exempt: [admin]\n  unbounded_read: block");
    replace("  select_star: alert", "  select_star: block");
    replace("  copy_to: alert", "  copy_to: block");
    replace("  audit_file: \"\"", "  audit_file: " + auditFile);
    replace("  large_pull_rows: 1000", "  large_pull_rows: 10");
    return y;
  }
  static std::string sqlstate(PGconn* c, const std::string& sql) {
    auto r = exec(c, sql);
    auto st = PQresultStatus(r.get());
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return "ok";
    const char* code = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    return std::string(code ? code : "?") + " " + PQresultErrorField(r.get(), PG_DIAG_MESSAGE_PRIMARY);
  }
};

TEST_F(ExfiltrationTest, EnforceBlocksBulkReadsAndAlerts) {
  char path[] = "/tmp/pgveil-audit.XXXXXX";
  close(mkstemp(path));
  Proxy proxy(Proxy::Raw{}, config("enforce", path));
  ASSERT_GT(proxy.port(), 0);
  auto c = connect(conninfo(proxy.port(), "support"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  EXPECT_EQ(sqlstate(c.get(), "SELECT email FROM patients LIMIT 10"), "ok");
  EXPECT_EQ(sqlstate(c.get(), "SELECT email FROM patients WHERE id < 10"), "ok");
  // appointments holds a classified column (notes): an unbounded read of it is blocked even
  // when the columns read are not classified.
  EXPECT_NE(sqlstate(c.get(), "SELECT doctor FROM appointments").find("unbounded_read"), std::string::npos);
  EXPECT_EQ(sqlstate(c.get(), "SELECT doctor FROM appointments WHERE patient_id = 7"), "ok");
  auto unbounded = sqlstate(c.get(), "SELECT email FROM patients");
  EXPECT_EQ(unbounded.substr(0, 5), "42501");
  EXPECT_NE(unbounded.find("unbounded_read"), std::string::npos) << unbounded;
  EXPECT_NE(sqlstate(c.get(), "SELECT email FROM patients LIMIT 5000").find("unbounded_read"), std::string::npos);
  EXPECT_NE(sqlstate(c.get(), "SELECT * FROM patients WHERE id = 1").find("select_star"), std::string::npos);
  EXPECT_NE(sqlstate(c.get(), "COPY (SELECT email FROM patients WHERE id < 10) TO STDOUT").find("copy_to"),
            std::string::npos);
  // A large pull is alerted, not blocked.
  EXPECT_EQ(sqlstate(c.get(), "SELECT email FROM patients WHERE id <= 50"), "ok");
  c.reset();
  // pg_dump of the table as a masked role is refused (and prints no raw value).
  auto dump = runCommand({"pg_dump", "--table=patients", "--data-only", "-h", "127.0.0.1", "-p",
                          std::to_string(proxy.port()), "-U", "support", "clinic"},
                         {{"PGPASSWORD", "support"}});
  EXPECT_NE(dump.exitCode, 0);
  EXPECT_NE(dump.err.find("pgveil"), std::string::npos) << dump.err;
  EXPECT_EQ(dump.out.find("linda.wilson1@example.org"), std::string::npos);
  // The audit file: one JSON object per alert, normalized queries only.
  auto audit = readFileWhenContains(path, "large_pull");
  EXPECT_NE(audit.find("\"rule\":\"exfiltration.unbounded_read\",\"action\":\"blocked\",\"role\":\"support\""),
            std::string::npos) << audit;
  EXPECT_NE(audit.find("\"rule\":\"large_pull\",\"action\":\"alerted\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"rows\":50"), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"query\":\"SELECT email FROM patients WHERE id <= $1\""), std::string::npos) << audit;
  EXPECT_EQ(audit.find("linda.wilson1"), std::string::npos);
  std::istringstream lines(audit);
  std::string line;
  while (std::getline(lines, line)) {
    EXPECT_TRUE(std::regex_match(line, std::regex("\\{\"time\":\"[0-9T:.Z-]+\",\"severity\":\"(warning|critical)\",\"rule\":.*\"duration_ms\":[0-9]+\\}")))
        << line;
  }
  unlink(path);
}

TEST_F(ExfiltrationTest, MonitorModeOnlyAlerts) {
  char path[] = "/tmp/pgveil-audit.XXXXXX";
  close(mkstemp(path));
  Proxy proxy(Proxy::Raw{}, config("monitor", path));
  auto c = connect(conninfo(proxy.port(), "support"));
  EXPECT_EQ(sqlstate(c.get(), "SELECT email FROM patients LIMIT 20000"), "ok");
  EXPECT_EQ(sqlstate(c.get(), "SELECT * FROM patients WHERE id = 1"), "ok");
  // Masking still applies in monitor mode: it is not an exfiltration rule.
  EXPECT_EQ(scalar(c.get(), "SELECT email FROM patients WHERE id = 1"), "l***@example.org");
  EXPECT_EQ(sqlstate(c.get(), "SELECT upper(email) FROM patients").substr(0, 5), "42501");
  auto audit = readFileWhenContains(path, "select_star");
  EXPECT_NE(audit.find("\"rule\":\"exfiltration.unbounded_read\",\"action\":\"monitored\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"rule\":\"exfiltration.select_star\",\"action\":\"monitored\""), std::string::npos) << audit;
  unlink(path);
}

// The simple protocol's usual traffic (one statement, other constants each time) reuses an
// analysis by literal shape: masking and the rules still apply to every text, and a constant
// that matters (LIMIT) is never shared.
TEST_F(ExfiltrationTest, ShapeCacheKeepsMaskingAndRules) {
  char path[] = "/tmp/pgveil-audit.XXXXXX";
  close(mkstemp(path));
  Proxy proxy(Proxy::Raw{}, config("enforce", path));
  auto c = connect(conninfo(proxy.port(), "support"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  auto direct = connect(conninfo(Cluster::get().port, "admin"));
  ASSERT_EQ(PQstatus(direct.get()), CONNECTION_OK);
  for (int id = 1; id <= 20; ++id) {
    auto sql = "SELECT email, full_name, id FROM patients WHERE id = " + std::to_string(id * 37) + " AND 'x' <> 'y'";
    auto raw = exec(direct.get(), sql);
    auto got = exec(c.get(), sql);
    ASSERT_EQ(PQresultStatus(got.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(got.get());
    ASSERT_EQ(PQntuples(got.get()), 1);
    std::string email = PQgetvalue(got.get(), 0, 0);
    EXPECT_NE(email, PQgetvalue(raw.get(), 0, 0));
    EXPECT_NE(email.find("***@"), std::string::npos) << email;
    EXPECT_STREQ(PQgetvalue(got.get(), 0, 2), PQgetvalue(raw.get(), 0, 2));
  }
  auto values = parseMetrics(httpGet(proxy.adminPort(), "/metrics"));
  EXPECT_GE(values["pgveil_analyzer_cache_shape_hits_total"], 19);
  // Same shape, but LIMIT's value decides the rule: each text is judged on its own.
  EXPECT_EQ(sqlstate(c.get(), "SELECT email FROM patients LIMIT 7"), "ok");
  EXPECT_EQ(sqlstate(c.get(), "SELECT email FROM patients LIMIT 8"), "ok");
  EXPECT_NE(sqlstate(c.get(), "SELECT email FROM patients LIMIT 9000").find("unbounded_read"), std::string::npos);
  // A refusal is not cached away either.
  EXPECT_EQ(sqlstate(c.get(), "SELECT upper(email) FROM patients WHERE id = 1").substr(0, 5), "42501");
  EXPECT_EQ(sqlstate(c.get(), "SELECT upper(email) FROM patients WHERE id = 2").substr(0, 5), "42501");
  unlink(path);
}

// Idle sessions give their read buffers back (memory per idle connection): /sessions shows
// buffer_bytes 0 once a session waits for its client, masked or relayed.
TEST_F(ExfiltrationTest, IdleSessionsHoldNoReadBuffers) {
  Proxy proxy(Proxy::Raw{}, demoConfigForTests());
  auto masked = connect(conninfo(proxy.port(), "support", "clinic", "application_name=idle-masked"));
  auto relayed = connect(conninfo(proxy.port(), "admin", "clinic", "application_name=idle-relayed"));
  ASSERT_EQ(PQstatus(masked.get()), CONNECTION_OK) << PQerrorMessage(masked.get());
  ASSERT_EQ(PQstatus(relayed.get()), CONNECTION_OK) << PQerrorMessage(relayed.get());
  // A result larger than the initial buffers, so that they grow first.
  EXPECT_EQ(PQntuples(exec(masked.get(), "SELECT email, full_name, phone FROM patients WHERE id <= 1000").get()), 1000);
  EXPECT_EQ(PQntuples(exec(relayed.get(), "SELECT * FROM patients WHERE id <= 2000").get()), 2000);
  auto bufferBytes = [&](const std::string& sessions, const std::string& app) -> long {
    auto at = sessions.find("\"application_name\":\"" + app + "\"");
    if (at == std::string::npos) return -1;
    auto b = sessions.find("\"buffer_bytes\":", at);
    if (b == std::string::npos) return -1;
    return std::stol(sessions.substr(b + 15));
  };
  std::string sessions;
  eventually([&] {
    sessions = httpGet(proxy.adminPort(), "/sessions");
    return bufferBytes(sessions, "idle-masked") == 0 && bufferBytes(sessions, "idle-relayed") == 0;
  });
  EXPECT_EQ(bufferBytes(sessions, "idle-masked"), 0) << sessions;
  EXPECT_EQ(bufferBytes(sessions, "idle-relayed"), 0) << sessions;
  // And they still work afterwards.
  EXPECT_EQ(scalar(masked.get(), "SELECT count(*) FROM patients WHERE id <= 10"), "10");
  EXPECT_EQ(scalar(relayed.get(), "SELECT email FROM patients WHERE id = 1"),
            scalar(connect(conninfo(Cluster::get().port, "admin")).get(), "SELECT email FROM patients WHERE id = 1"));
}

// Row counters are added up per result (not per row): /sessions and the role metrics still
// show exact counts as soon as the client has its result, across results larger than a batch.
TEST_F(ExfiltrationTest, RowCountsAreExactPerResult) {
  Proxy proxy(Proxy::Raw{}, demoConfigForTests());
  auto c = connect(conninfo(proxy.port(), "support", "clinic", "application_name=row-counts"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  EXPECT_EQ(PQntuples(exec(c.get(), "SELECT email FROM patients WHERE id <= 1000").get()), 1000);
  EXPECT_EQ(PQntuples(exec(c.get(), "SELECT email FROM patients WHERE id <= 3").get()), 3);
  EXPECT_EQ(PQntuples(exec(c.get(), "SELECT id FROM patients WHERE id <= 7").get()), 7);  // nothing to mask
  // COPY rows are counted in batches too, and completely by the end of the COPY.
  ASSERT_EQ(PQresultStatus(exec(c.get(), "COPY (SELECT email FROM patients WHERE id <= 600) TO STDOUT").get()),
            PGRES_COPY_OUT);
  int copied = 0;
  for (char* line = nullptr; PQgetCopyData(c.get(), &line, 0) > 0; PQfreemem(line)) ++copied;
  EXPECT_EQ(PQresultStatus(PgResult(PQgetResult(c.get())).get()), PGRES_COMMAND_OK);
  EXPECT_EQ(copied, 600);
  auto field = [](const std::string& json, const std::string& app, const std::string& name) -> long {
    auto at = json.find("\"application_name\":\"" + app + "\"");
    if (at == std::string::npos) return -1;
    auto b = json.find("\"" + name + "\":", at);
    if (b == std::string::npos) return -1;
    return std::stol(json.substr(b + name.size() + 3));
  };
  auto sessions = httpGet(proxy.adminPort(), "/sessions");
  EXPECT_EQ(field(sessions, "row-counts", "rows"), 1610) << sessions;
  EXPECT_EQ(field(sessions, "row-counts", "rows_masked"), 1603) << sessions;
  auto m = parseMetrics(httpGet(proxy.adminPort(), "/metrics"));
  EXPECT_EQ(m["pgveil_role_rows_forwarded_total{role=\"support\"}"], 1610);
  EXPECT_EQ(m["pgveil_role_rows_masked_total{role=\"support\"}"], 1603);
  EXPECT_EQ(m["pgveil_rows_masked_total"], 1603);
}

TEST_F(ExfiltrationTest, AdminEndpoint) {
  Proxy proxy(Proxy::Raw{}, demoConfigForTests());
  ASSERT_GT(proxy.adminPort(), 0) << proxy.log();
  auto health = httpGet(proxy.adminPort(), "/healthz");
  EXPECT_NE(health.find("200 OK"), std::string::npos) << health;
  EXPECT_NE(health.find("\r\n\r\nok\n"), std::string::npos) << health;
  auto c = connect(conninfo(proxy.port(), "support", "clinic", "application_name=metrics-test"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get()) << proxy.log();
  exec(c.get(), "SELECT upper(email) FROM patients");
  exec(c.get(), "SELECT email FROM patients WHERE id <= 3");
  auto metrics = httpGet(proxy.adminPort(), "/metrics");
  auto values = parseMetrics(metrics);
  EXPECT_EQ(values["pgveil_up"], 1);
  EXPECT_GE(values["pgveil_connections_active"], 1);
  EXPECT_GE(values["pgveil_statements_refused_total"], 1);
  EXPECT_GE(values["pgveil_rows_masked_total"], 3);
  EXPECT_GE(values["pgveil_analyzer_cache_misses_total"], 2);
  EXPECT_GE(values["pgveil_catalog_loads_total"], 1);
  EXPECT_GE(values["pgveil_alerts_total{rule=\"refused.untrusted_function\",action=\"blocked\"}"] +
                values["pgveil_alerts_total{rule=\"refused.classified_in_expression\",action=\"blocked\"}"],
            1)
      << metrics;
  auto sessions = httpGet(proxy.adminPort(), "/sessions");
  EXPECT_NE(sessions.find("\"user\":\"support\""), std::string::npos) << sessions;
  EXPECT_NE(sessions.find("\"application_name\":\"metrics-test\""), std::string::npos);
  EXPECT_NE(sessions.find("\"policy\":\"support\""), std::string::npos);
  EXPECT_NE(sessions.find("\"rows\":3"), std::string::npos) << sessions;
  EXPECT_NE(httpGet(proxy.adminPort(), "/nope").find("404"), std::string::npos);
}

}  // namespace
}  // namespace pgveil::it
