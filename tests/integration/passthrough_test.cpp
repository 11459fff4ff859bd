// Pass-through: pgveil must be invisible to clients. Every test talks to the throwaway cluster
// both directly and through a pgveil child process and compares what the client sees.

#include <gtest/gtest.h>
#include <fcntl.h>

#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "protocol/bytes.hpp"
#include "protocol/startup.hpp"

namespace pgveil::it {
namespace {

using namespace std::chrono_literals;

std::string direct(const std::string& user, const std::string& db = "clinic", const std::string& extra = "") {
  return conninfo(Cluster::get().port, user, db, extra);
}

std::string typed(char type, const std::string& payload) {
  std::string len(4, '\0');
  protocol::storeBe32(len.data(), static_cast<std::uint32_t>(payload.size() + 4));
  return std::string(1, type) + len + payload;
}

// psql with a connection string, no psqlrc, output captured.
CommandResult psql(const std::string& info, const std::vector<std::string>& args, const std::string& input = "") {
  std::vector<std::string> argv = {"psql", "-X", "-v", "ON_ERROR_STOP=0", info};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv, {{"PGCONNECT_TIMEOUT", "10"}}, input);
}

class PassThroughTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_GT(proxy_.port(), 0); }
  std::string via(const std::string& user, const std::string& db = "clinic", const std::string& extra = "") {
    return conninfo(proxy_.port(), user, db, extra);
  }
  Proxy proxy_;
};

TEST_F(PassThroughTest, PsqlQuery) {
  auto r = psql(via("admin"), {"-tAc", "SELECT count(*) FROM patients"});
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(r.out, "200000\n");
}

// The same scripted psql session, run directly and through pgveil, gives byte-identical output:
// results, errors, notices, COPY, transactions, prepared statements and describe commands.
TEST_F(PassThroughTest, PsqlScriptIsByteIdentical) {
  const std::string script = R"SQL(
\pset pager off
SELECT id, full_name, email, birth_date FROM patients ORDER BY id LIMIT 5;
\d patients
SELECT 1/0;
SELECT no_such_column FROM patients;
DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$;
BEGIN;
SELECT count(*) FROM appointments WHERE notes LIKE '%@%';
SAVEPOINT s1;
SELECT * FROM missing_table;
ROLLBACK TO s1;
SELECT amount, iban FROM invoices ORDER BY id LIMIT 3;
COMMIT;
PREPARE q(bigint) AS SELECT full_name FROM patients WHERE id = $1;
EXECUTE q(42);
DEALLOCATE q;
COPY (SELECT id, email, phone FROM patients ORDER BY id LIMIT 20) TO STDOUT WITH (FORMAT csv, HEADER);
SELECT id, national_id FROM patients WHERE id = 7 \gdesc
SHOW server_version_num;
SET application_name = 'scripted';
SELECT current_setting('application_name');
SELECT repeat('x', 100000) AS big \gset
SELECT length(:'big');
SELECT generate_series(1, 3) AS g, 'é ü 中文' AS utf8;
)SQL";
  auto args = std::vector<std::string>{"-a", "-f", "-"};
  auto d = psql(direct("admin"), args, script);
  auto p = psql(via("admin"), args, script);
  ASSERT_FALSE(d.out.empty());
  EXPECT_NE(d.err.find("hello from plpgsql"), std::string::npos) << d.err;
  EXPECT_EQ(d.out, p.out);
  EXPECT_EQ(d.err, p.err);
  EXPECT_EQ(d.exitCode, p.exitCode);
}

void expectSameResult(PGresult* a, PGresult* b) {
  ASSERT_EQ(PQresultStatus(a), PQresultStatus(b));
  ASSERT_EQ(PQntuples(a), PQntuples(b));
  ASSERT_EQ(PQnfields(a), PQnfields(b));
  for (int c = 0; c < PQnfields(a); ++c) {
    EXPECT_STREQ(PQfname(a, c), PQfname(b, c));
    EXPECT_EQ(PQftype(a, c), PQftype(b, c));
    EXPECT_EQ(PQftable(a, c), PQftable(b, c));
    EXPECT_EQ(PQfformat(a, c), PQfformat(b, c));
  }
  for (int r = 0; r < PQntuples(a); ++r) {
    for (int c = 0; c < PQnfields(a); ++c) {
      ASSERT_EQ(PQgetisnull(a, r, c), PQgetisnull(b, r, c));
      ASSERT_EQ(PQgetlength(a, r, c), PQgetlength(b, r, c));
      ASSERT_EQ(0, std::memcmp(PQgetvalue(a, r, c), PQgetvalue(b, r, c), PQgetlength(a, r, c)));
    }
  }
}

TEST_F(PassThroughTest, LibpqExecParamsTextAndBinary) {
  auto d = connect(direct("admin"));
  auto p = connect(via("admin"));
  ASSERT_EQ(PQstatus(p.get()), CONNECTION_OK) << PQerrorMessage(p.get());
  const char* sql = "SELECT * FROM patients WHERE id <= $1 AND email LIKE $2 ORDER BY id";
  const char* values[] = {"300", "%example%"};
  for (int format : {0, 1}) {
    PgResult a(PQexecParams(d.get(), sql, 2, nullptr, values, nullptr, nullptr, format));
    PgResult b(PQexecParams(p.get(), sql, 2, nullptr, values, nullptr, nullptr, format));
    ASSERT_EQ(PQresultStatus(b.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(b.get());
    EXPECT_GT(PQntuples(b.get()), 100);
    expectSameResult(a.get(), b.get());
  }
  // Binary parameters too.
  std::uint32_t id = htonl(42);
  const char* bvalues[] = {reinterpret_cast<const char*>(&id)};
  int lengths[] = {4};
  int formats[] = {1};
  Oid types[] = {23};
  PgResult a(PQexecParams(d.get(), "SELECT full_name, birth_date FROM patients WHERE id = $1", 1, types, bvalues,
                          lengths, formats, 1));
  PgResult b(PQexecParams(p.get(), "SELECT full_name, birth_date FROM patients WHERE id = $1", 1, types, bvalues,
                          lengths, formats, 1));
  ASSERT_EQ(PQntuples(b.get()), 1);
  expectSameResult(a.get(), b.get());
}

// Pipeline mode: many queries in flight, one failing in the middle; results and statuses must
// match a direct connection exactly (including the aborted ones until the sync).
std::vector<std::string> runPipeline(PGconn* c) {
  std::vector<std::string> out;
  if (!PQenterPipelineMode(c)) return {"cannot enter pipeline mode"};
  for (int i = 0; i < 30; ++i) {
    std::string v = std::to_string(i + 1);
    const char* values[] = {v.c_str()};
    const char* sql = i == 12 ? "SELECT 1/0 WHERE $1::int > 0" : "SELECT full_name FROM patients WHERE id = $1::int";
    PQsendQueryParams(c, sql, 1, nullptr, values, nullptr, nullptr, 0);
    if (i == 20) PQpipelineSync(c);
  }
  PQpipelineSync(c);
  int syncs = 0;
  while (syncs < 2) {
    PGresult* r = PQgetResult(c);
    if (!r) continue;
    auto st = PQresultStatus(r);
    std::string line = PQresStatus(st);
    if (st == PGRES_TUPLES_OK && PQntuples(r) == 1) line += " " + std::string(PQgetvalue(r, 0, 0));
    if (st == PGRES_FATAL_ERROR) line += std::string(" ") + PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (st == PGRES_PIPELINE_SYNC) ++syncs;
    out.push_back(line);
    PQclear(r);
  }
  PQexitPipelineMode(c);
  return out;
}

TEST_F(PassThroughTest, LibpqPipelining) {
  auto d = connect(direct("admin"));
  auto p = connect(via("admin"));
  ASSERT_EQ(PQstatus(p.get()), CONNECTION_OK);
  auto a = runPipeline(d.get());
  auto b = runPipeline(p.get());
  ASSERT_GT(a.size(), 30u);
  EXPECT_EQ(a, b);
  EXPECT_NE(std::find(b.begin(), b.end(), "PGRES_FATAL_ERROR 22012"), b.end());
  EXPECT_NE(std::find(b.begin(), b.end(), "PGRES_PIPELINE_ABORTED"), b.end());
  EXPECT_EQ(scalar(p.get(), "SELECT 41 + 1"), "42");
}

TEST_F(PassThroughTest, CopyOutIsIdenticalAndCopyInArrives) {
  const std::string out = "COPY (SELECT * FROM patients WHERE id <= 20000 ORDER BY id) TO STDOUT WITH (FORMAT binary)";
  auto d = psql(direct("admin"), {"-c", out});
  auto p = psql(via("admin"), {"-c", out});
  ASSERT_EQ(p.exitCode, 0) << p.err;
  EXPECT_GT(p.out.size(), 1'000'000u);
  EXPECT_TRUE(d.out == p.out) << "binary COPY output differs";

  // COPY FROM STDIN through pgveil: 50,000 rows, then checked directly.
  std::string rows;
  for (int i = 0; i < 50000; ++i) rows += std::to_string(i) + "\tvalue " + std::to_string(i * 7) + "\n";
  auto su = conninfo(proxy_.port(), "pgveil_test", "postgres");
  auto r = psql(su, {"-c", "DROP TABLE IF EXISTS copy_in_test", "-c",
                     "CREATE TABLE copy_in_test(id int, v text)", "-c", "COPY copy_in_test FROM STDIN"},
                rows);
  ASSERT_EQ(r.exitCode, 0) << r.err;
  auto c = connect(conninfo(Cluster::get().port, "pgveil_test", "postgres"));
  EXPECT_EQ(scalar(c.get(), "SELECT count(*) || ':' || sum(id) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM copy_in_test"),
            scalar(c.get(), "SELECT count(*) || ':' || sum(g) || ':' || md5(string_agg('value ' || g * 7, ',' ORDER BY g)) "
                            "FROM generate_series(0, 49999) g"));
  exec(c.get(), "DROP TABLE copy_in_test");
}

TEST_F(PassThroughTest, CancelReachesTheRightBackend) {
  auto p = connect(via("admin"));
  auto other = connect(via("admin"));
  ASSERT_EQ(PQstatus(p.get()), CONNECTION_OK);
  ASSERT_TRUE(PQsendQuery(p.get(), "SELECT pg_sleep(10)"));
  // Wait until the server runs it, without sleeping blindly.
  auto pid = std::to_string(PQbackendPID(p.get()));
  for (int i = 0; i < 500; ++i) {
    if (scalar(other.get(), "SELECT state FROM pg_stat_activity WHERE pid = " + pid) == "active") break;
    std::this_thread::sleep_for(10ms);
  }
  auto start = std::chrono::steady_clock::now();
  PGcancel* cancel = PQgetCancel(p.get());
  char err[256];
  ASSERT_TRUE(PQcancel(cancel, err, sizeof err)) << err;
  PQfreeCancel(cancel);
  PgResult r(PQgetResult(p.get()));
  auto elapsed = std::chrono::steady_clock::now() - start;
  while (PGresult* extra = PQgetResult(p.get())) PQclear(extra);
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(r.get(), PG_DIAG_SQLSTATE), "57014");
  EXPECT_LT(elapsed, 1s);
  // The other session was not cancelled and the cancelled one still works.
  EXPECT_EQ(scalar(p.get(), "SELECT 1"), "1");
  EXPECT_EQ(scalar(other.get(), "SELECT 2"), "2");
}

TEST_F(PassThroughTest, CancelWithUnknownKeyIsIgnored) {
  auto p = connect(via("admin"));
  ASSERT_TRUE(PQsendQuery(p.get(), "SELECT pg_sleep(0.5), 'done'"));
  RawClient raw(proxy_.port());
  raw.send(protocol::encodeCancelRequest(PQbackendPID(p.get()), 12345));
  EXPECT_TRUE(raw.waitClosed());
  PgResult r(PQgetResult(p.get()));
  while (PGresult* extra = PQgetResult(p.get())) PQclear(extra);
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK);
}

TEST_F(PassThroughTest, AuthenticationMethods) {
  for (const char* user : {"admin", "pgveil_md5", "pgveil_password", "pgveil_trust"}) {
    auto c = connect(via(user));
    EXPECT_EQ(PQstatus(c.get()), CONNECTION_OK) << user << ": " << PQerrorMessage(c.get());
    EXPECT_EQ(scalar(c.get(), "SELECT current_user"), user);
  }
}

std::string withoutConnectionPrefix(std::string s) {
  // "connection to server at "127.0.0.1", port N failed: FATAL: ..." -> "FATAL: ..."
  return std::regex_replace(s, std::regex("port [0-9]+"), "port N");
}

TEST_F(PassThroughTest, WrongPasswordGetsTheServersOwnError) {
  for (const char* user : {"admin", "pgveil_md5", "pgveil_password"}) {
    auto d = connect(conninfo(Cluster::get().port, user, "clinic", "password=wrong"));
    auto p = connect(conninfo(proxy_.port(), user, "clinic", "password=wrong"));
    ASSERT_EQ(PQstatus(p.get()), CONNECTION_BAD);
    std::string msg = PQerrorMessage(p.get());
    EXPECT_NE(msg.find("password authentication failed for user \"" + std::string(user) + "\""), std::string::npos)
        << msg;
    EXPECT_EQ(withoutConnectionPrefix(PQerrorMessage(d.get())), withoutConnectionPrefix(msg));
  }
}

TEST_F(PassThroughTest, ListenNotify) {
  auto listener = connect(via("admin"));
  auto notifier = connect(via("admin"));
  ASSERT_EQ(PQresultStatus(exec(listener.get(), "LISTEN pgveil_channel").get()), PGRES_COMMAND_OK);
  ASSERT_EQ(PQresultStatus(exec(notifier.get(), "NOTIFY pgveil_channel, 'payload-1'").get()), PGRES_COMMAND_OK);
  PGnotify* n = nullptr;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!n && std::chrono::steady_clock::now() < deadline) {
    pollfd p{PQsocket(listener.get()), POLLIN, 0};
    poll(&p, 1, 100);
    PQconsumeInput(listener.get());
    n = PQnotifies(listener.get());
  }
  ASSERT_NE(n, nullptr);
  EXPECT_STREQ(n->relname, "pgveil_channel");
  EXPECT_STREQ(n->extra, "payload-1");
  EXPECT_EQ(n->be_pid, PQbackendPID(notifier.get()));
  PQfreemem(n);
}

// libpq's large-object API uses the FunctionCall ('F') message.
TEST_F(PassThroughTest, LargeObjectsThroughFastPath) {
  auto c = connect(conninfo(proxy_.port(), "pgveil_test", "postgres"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK);
  exec(c.get(), "BEGIN");
  Oid oid = lo_creat(c.get(), 0x20000 | 0x40000);
  ASSERT_NE(oid, 0u) << PQerrorMessage(c.get());
  int fd = lo_open(c.get(), oid, 0x20000 | 0x40000);
  ASSERT_GE(fd, 0);
  std::string data(300000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 % 251);
  ASSERT_EQ(lo_write(c.get(), fd, data.data(), data.size()), static_cast<int>(data.size()));
  ASSERT_EQ(lo_lseek(c.get(), fd, 0, SEEK_SET), 0);
  std::string back(data.size(), '\0');
  std::size_t got = 0;
  while (got < back.size()) {
    int n = lo_read(c.get(), fd, back.data() + got, back.size() - got);
    ASSERT_GT(n, 0);
    got += static_cast<std::size_t>(n);
  }
  EXPECT_TRUE(back == data);
  lo_close(c.get(), fd);
  lo_unlink(c.get(), oid);
  exec(c.get(), "COMMIT");
}

TEST_F(PassThroughTest, ManyConcurrentSessions) {
  std::vector<std::future<std::string>> results;
  for (int i = 0; i < 40; ++i) {
    results.push_back(std::async(std::launch::async, [this, i] {
      auto c = connect(via("admin"));
      return scalar(c.get(), "SELECT full_name FROM patients WHERE id = " + std::to_string(i + 1));
    }));
  }
  auto d = connect(direct("admin"));
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(results[i].get(), scalar(d.get(), "SELECT full_name FROM patients WHERE id = " + std::to_string(i + 1)));
  }
}

TEST_F(PassThroughTest, TerminateClosesAndHalfCloseStillGetsAnswers) {
  {
    RawClient raw(proxy_.port());
    ASSERT_TRUE(raw.startupTrust("pgveil_trust", "clinic"));
    raw.send(typed('X', ""));
    EXPECT_TRUE(raw.waitClosed());
  }
  RawClient raw(proxy_.port());
  ASSERT_TRUE(raw.startupTrust("pgveil_trust", "clinic"));
  raw.send(typed('Q', std::string("SELECT 6 * 7") + '\0'));
  raw.shutdownWrite();
  std::string value;
  bool ready = false;
  while (auto m = raw.readMessage()) {
    if (m->first == 'D') value = m->second.substr(6);
    if (m->first == 'Z') ready = true;
  }
  EXPECT_EQ(value, "42");
  EXPECT_TRUE(ready);
}

// A client sends a message and resets the connection at once, and both reach pgveil's socket
// before its worker looks (here: pgveil is stopped meanwhile). The receive that returns the
// message finds nothing left, and no later event reports the reset; the message (a Parse without
// Sync) draws no answer whose write would fail. The workers' once-a-second look for connections
// the kernel has closed must still end the session, and with it the server connection.
TEST(ClientResetTest, ResetQueuedBehindAMessageEndsTheSession) {
  Proxy proxy;
  RawClient raw(proxy.port());
  ASSERT_TRUE(raw.startupTrust("pgveil_trust", "clinic"));
  ASSERT_EQ(kill(proxy.pid(), SIGSTOP), 0);
  struct Continue {
    int pid;
    ~Continue() { kill(pid, SIGCONT); }
  } resume{proxy.pid()};
  // SIGSTOP takes effect asynchronously: wait until every thread is stopped, so that no worker
  // takes the message's event before the reset arrives.
  auto allStopped = [pid = proxy.pid()] {
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      auto close = line.rfind(')');
      if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'T') return false;
    }
    return true;
  };
  for (auto deadline = std::chrono::steady_clock::now() + 5s; !allStopped();) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "pgveil did not stop";
    std::this_thread::sleep_for(1ms);
  }
  raw.send(typed('P', std::string("\0SELECT 1\0", 10) + std::string(2, '\0')));
  raw.resetClose();
  std::this_thread::sleep_for(100ms);
  ASSERT_EQ(kill(proxy.pid(), SIGCONT), 0);
  EXPECT_TRUE(proxy.waitForLog("closed user=\"pgveil_trust\"", 5000ms)) << proxy.log();
}

TEST_F(PassThroughTest, LogHasOneLinePerConnectionWithoutValues) {
  {
    auto c = connect(via("admin", "clinic", "application_name=logcheck"));
    ASSERT_EQ(scalar(c.get(), "SELECT email FROM patients WHERE id = 1"), "linda.wilson1@example.org");
  }
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (proxy_.log().find("closed user=\"admin\"") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  auto log = proxy_.log();
  EXPECT_NE(log.find("application_name=\"logcheck\""), std::string::npos) << log;
  EXPECT_NE(log.find("bytes_in="), std::string::npos);
  EXPECT_EQ(log.find("linda.wilson1"), std::string::npos) << "a row value reached the log";
  EXPECT_EQ(log.find("id = 1"), std::string::npos) << "query text reached the log";
}

// ---- TLS ----

class TlsTest : public ::testing::Test {
 protected:
  static std::string certYaml() {
    const auto& dir = Cluster::get().dir;
    return "tls:\n  mode: allow\n  cert: " + dir + "/pgveil.crt\n  key: " + dir + "/pgveil.key\n";
  }
  static std::string upstreamYaml(const std::string& mode, const std::string& extra = "") {
    return "upstream:\n  host: 127.0.0.1\n  port: " + std::to_string(Cluster::get().port) + "\n  tls: " + mode + "\n" +
           extra;
  }
};

TEST_F(TlsTest, ClientSslModeRequireWithScram) {
  Proxy proxy(certYaml());
  auto c = connect(conninfo(proxy.port(), "admin", "clinic", "sslmode=require"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  EXPECT_EQ(PQsslInUse(c.get()), 1);
  EXPECT_EQ(scalar(c.get(), "SELECT count(*) FROM invoices"), "150000");
  // Upstream link is plain here.
  EXPECT_EQ(scalar(c.get(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "f");
}

TEST_F(TlsTest, PlainClientRefusedWhenTlsRequired) {
  const auto& dir = Cluster::get().dir;
  Proxy proxy("tls:\n  mode: require\n  cert: " + dir + "/pgveil.crt\n  key: " + dir + "/pgveil.key\n");
  auto c = connect(conninfo(proxy.port(), "admin", "clinic", "sslmode=disable"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(c.get())).find("requires TLS"), std::string::npos);
  auto t = connect(conninfo(proxy.port(), "admin", "clinic", "sslmode=require"));
  EXPECT_EQ(PQstatus(t.get()), CONNECTION_OK) << PQerrorMessage(t.get());
}

TEST_F(TlsTest, NoTlsConfiguredAnswersN) {
  Proxy proxy;
  auto c = connect(conninfo(proxy.port(), "admin", "clinic", "sslmode=prefer"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK);
  EXPECT_EQ(PQsslInUse(c.get()), 0);
  auto r = connect(conninfo(proxy.port(), "admin", "clinic", "sslmode=require"));
  EXPECT_EQ(PQstatus(r.get()), CONNECTION_BAD);
}

TEST_F(TlsTest, UpstreamRequireAndBothSides) {
  Proxy proxy(certYaml() + upstreamYaml("require"), false);
  auto c = connect(conninfo(proxy.port(), "pgveil_md5", "clinic", "sslmode=require"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  EXPECT_EQ(PQsslInUse(c.get()), 1);
  EXPECT_EQ(scalar(c.get(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "t");
  auto plain = connect(conninfo(proxy.port(), "admin", "clinic", "sslmode=disable"));
  ASSERT_EQ(PQstatus(plain.get()), CONNECTION_OK) << PQerrorMessage(plain.get());
  EXPECT_EQ(scalar(plain.get(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "t");
}

TEST_F(TlsTest, LargeResultsAndCopyInOverTlsOnBothSides) {
  Proxy proxy(certYaml() + upstreamYaml("require"), false);
  auto c = connect(conninfo(proxy.port(), "pgveil_md5", "clinic", "sslmode=require"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  auto d = connect(conninfo(Cluster::get().port, "pgveil_md5", "clinic", "sslmode=disable"));
  // Many records each way: partial writes and reads across TLS record boundaries.
  const std::string sql = "SELECT md5(g::text) || repeat('x', g % 3000) FROM generate_series(1, 20000) g";
  auto viaProxy = exec(c.get(), sql);
  auto viaDirect = exec(d.get(), sql);
  ASSERT_EQ(PQresultStatus(viaProxy.get()), PGRES_TUPLES_OK) << PQerrorMessage(c.get());
  ASSERT_EQ(PQntuples(viaProxy.get()), 20000);
  for (int i = 0; i < 20000; i += 997) {
    ASSERT_STREQ(PQgetvalue(viaProxy.get(), i, 0), PQgetvalue(viaDirect.get(), i, 0)) << i;
  }
  EXPECT_EQ(scalar(c.get(), "SELECT length(repeat('y', 3000000))"), "3000000");
  auto big = exec(c.get(), "SELECT repeat('z', 3000000)");
  EXPECT_EQ(std::strlen(PQgetvalue(big.get(), 0, 0)), 3000000u);
  // COPY IN of 2 MB over TLS.
  exec(c.get(), "CREATE TEMP TABLE tls_in (v text)");
  auto r = exec(c.get(), "COPY tls_in FROM STDIN");
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_COPY_IN);
  std::string line(999, 'q');
  line += "\n";
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(PQputCopyData(c.get(), line.data(), static_cast<int>(line.size())), 1);
  ASSERT_EQ(PQputCopyEnd(c.get(), nullptr), 1);
  r.reset(PQgetResult(c.get()));
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQerrorMessage(c.get());
  while (auto* extra = PQgetResult(c.get())) PQclear(extra);
  EXPECT_EQ(scalar(c.get(), "SELECT count(*) || ':' || sum(length(v)) FROM tls_in"), "2000:1998000");
}

// OpenSSL writes to TLS sockets with plain send(): a peer that went away must be an error on
// that connection, never a SIGPIPE that ends the process. (The harness starts pgveil with the
// default disposition, so this reads what pgveil set up itself.)
TEST_F(TlsTest, ProcessIgnoresSigpipe) {
  Proxy proxy(certYaml());
  std::ifstream status("/proc/" + std::to_string(proxy.pid()) + "/status");
  std::string line;
  std::string sigIgn;
  while (std::getline(status, line)) {
    if (line.rfind("SigIgn:", 0) == 0) sigIgn = line.substr(7);
  }
  ASSERT_FALSE(sigIgn.empty());
  std::uint64_t ignored = std::stoull(sigIgn, nullptr, 16);
  EXPECT_NE(ignored & (std::uint64_t{1} << (SIGPIPE - 1)), 0u) << "SigIgn:" << sigIgn;
}

TEST_F(TlsTest, TlsClientVanishingMidResultLeavesOthersAlone) {
  Proxy proxy(certYaml() + upstreamYaml("require"), false);
  auto bystander = connect(conninfo(proxy.port(), "pgveil_md5", "clinic", "sslmode=require"));
  ASSERT_EQ(PQstatus(bystander.get()), CONNECTION_OK);
  for (int round = 0; round < 3; ++round) {
    auto c = connect(conninfo(proxy.port(), "pgveil_md5", "clinic", "sslmode=require"));
    ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
    ASSERT_EQ(PQsendQuery(c.get(), "SELECT repeat('v', 1000) FROM generate_series(1, 200000)"), 1);
    // Gone without a TLS close_notify or a Terminate, while pgveil still has rows to write.
    // The socket is closed with a reset under libpq (its descriptor now points to /dev/null).
    linger lg{1, 0};
    setsockopt(PQsocket(c.get()), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    usleep(50000);  // rows are on their way
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, PQsocket(c.get()));
    close(devnull);
    usleep(300000);
  }
  EXPECT_EQ(scalar(bystander.get(), "SELECT 7"), "7") << proxy.log();
  auto after = connect(conninfo(proxy.port(), "pgveil_md5", "clinic", "sslmode=require"));
  EXPECT_EQ(PQstatus(after.get()), CONNECTION_OK) << proxy.log();
}

TEST_F(TlsTest, TlsClientHalfCloseWithoutCloseNotifyStillGetsItsAnswer) {
  Proxy proxy(certYaml() + upstreamYaml("require"), false);
  auto c = connect(conninfo(proxy.port(), "pgveil_md5", "clinic", "sslmode=require"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  ASSERT_EQ(PQsendQuery(c.get(), "SELECT pg_sleep(0.2), count(*) FROM generate_series(1, 1000)"), 1);
  ASSERT_EQ(PQflush(c.get()), 0);
  // TCP FIN without a TLS close_notify: pgveil sees the end of the client's stream, the server
  // still answers what it received, and the answer still reaches the client.
  shutdown(PQsocket(c.get()), SHUT_WR);
  PgResult r(PQgetResult(c.get()));
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQerrorMessage(c.get()) << proxy.log();
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 1), "1000");
}

TEST_F(TlsTest, UpstreamClientCertificate) {
  // pgveil_cert may log in only with a certificate: pgveil presents upstream.cert_file.
  const auto& dir = Cluster::get().dir;
  {
    Proxy proxy(upstreamYaml("require", "  cert_file: " + dir + "/upstream-client.crt\n  key_file: " + dir +
                                            "/upstream-client.key\n"),
                false);
    auto c = connect(conninfo(proxy.port(), "pgveil_cert"));
    ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get()) << proxy.log();
    EXPECT_EQ(scalar(c.get(), "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
              "pgveil_cert true");
  }
  {
    Proxy proxy(upstreamYaml("require"), false);
    auto c = connect(conninfo(proxy.port(), "pgveil_cert"));
    EXPECT_EQ(PQstatus(c.get()), CONNECTION_BAD);
    EXPECT_NE(std::string(PQerrorMessage(c.get())).find("certificate"), std::string::npos) << PQerrorMessage(c.get());
  }
}

TEST_F(TlsTest, UpstreamVerifyFull) {
  const auto ca = Cluster::get().dir + "/upstream-ca.crt";
  {
    Proxy proxy(upstreamYaml("verify-full", "  ca_file: " + ca + "\n"), false);
    auto c = connect(conninfo(proxy.port(), "admin"));
    ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
    EXPECT_EQ(scalar(c.get(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "t");
  }
  {
    // The certificate names localhost and 127.0.0.1, not this name: refused with 08006.
    Proxy proxy(upstreamYaml("verify-full", "  ca_file: " + ca + "\n  server_name: db.example.com\n"), false);
    auto c = connect(conninfo(proxy.port(), "admin"));
    ASSERT_EQ(PQstatus(c.get()), CONNECTION_BAD);
    EXPECT_NE(std::string(PQerrorMessage(c.get())).find("TLS handshake failed"), std::string::npos)
        << PQerrorMessage(c.get());
  }
}

// `require` with a CA file checks the server's chain (libpq's rule), not its name; without the
// CA file it checks nothing.
TEST_F(TlsTest, UpstreamRequireWithCaFileVerifiesTheChain) {
  const auto& dir = Cluster::get().dir;
  {
    Proxy proxy(upstreamYaml("require", "  ca_file: " + dir + "/upstream-ca.crt\n  server_name: db.example.com\n"),
                false);
    auto c = connect(conninfo(proxy.port(), "admin"));
    ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  }
  {
    // Not the CA that signed the server's certificate.
    Proxy proxy(upstreamYaml("require", "  ca_file: " + dir + "/client-ca.crt\n"), false);
    auto c = connect(conninfo(proxy.port(), "admin"));
    ASSERT_EQ(PQstatus(c.get()), CONNECTION_BAD);
    EXPECT_NE(std::string(PQerrorMessage(c.get())).find("TLS handshake failed"), std::string::npos)
        << PQerrorMessage(c.get());
  }
}

// ---- hostile and broken input ----

class HostileInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(proxy_.port(), 0);
    bystander_ = connect(conninfo(proxy_.port(), "admin"));
    ASSERT_EQ(PQstatus(bystander_.get()), CONNECTION_OK);
  }
  void TearDown() override {
    // Other sessions are unaffected by whatever the test sent.
    EXPECT_EQ(scalar(bystander_.get(), "SELECT 'still fine'"), "still fine");
  }
  // Expects an ErrorResponse with this SQLSTATE, then the connection closed.
  static void expectFatal(RawClient& raw, const char* sqlstate, const std::string& messagePart = "") {
    std::optional<std::pair<char, std::string>> m;
    while ((m = raw.readMessage()) && m->first != 'E') {
    }
    ASSERT_TRUE(m.has_value()) << "no ErrorResponse";
    EXPECT_EQ(errorField(m->second, 'C'), sqlstate) << errorField(m->second, 'M');
    if (!messagePart.empty()) {
      EXPECT_NE(errorField(m->second, 'M').find(messagePart), std::string::npos) << errorField(m->second, 'M');
    }
    EXPECT_TRUE(raw.waitClosed());
  }
  std::string be32(std::uint32_t v) {
    std::string s(4, '\0');
    protocol::storeBe32(s.data(), v);
    return s;
  }
  Proxy proxy_{"connections:\n  max_message_size: 64kB\n  startup_timeout: 1s\n"};
  PgConn bystander_;
};

TEST_F(HostileInputTest, StartupLengthZero) {
  RawClient raw(proxy_.port());
  raw.send(be32(0));
  expectFatal(raw, "08P01", "invalid length of startup packet");
}

TEST_F(HostileInputTest, StartupLengthOverLimit) {
  RawClient raw(proxy_.port());
  raw.send(be32(1'000'000) + be32(196608));
  expectFatal(raw, "08P01", "invalid length of startup packet");
}

TEST_F(HostileInputTest, UnknownProtocolVersion) {
  RawClient raw(proxy_.port());
  raw.send(protocol::encodeStartup(0x00090000, {{"user", "admin"}}));
  expectFatal(raw, "0A000", "unsupported frontend protocol");
}

TEST_F(HostileInputTest, PlaintextStuffedAfterSslRequest) {
  RawClient raw(proxy_.port());
  raw.send(protocol::encodeSslRequest() + protocol::encodeStartup(protocol::kProtocolV3, {{"user", "admin"}}));
  expectFatal(raw, "08P01", "unencrypted data after SSL request");
}

TEST_F(HostileInputTest, GssEncRequestRefusedThenStartupWorks) {
  RawClient raw(proxy_.port());
  raw.send(be32(8) + be32(80877104));
  EXPECT_EQ(raw.readSome(1), "N");
  EXPECT_TRUE(raw.startupTrust("pgveil_trust", "clinic"));
}

TEST_F(HostileInputTest, MessageLengthBelowFour) {
  RawClient raw(proxy_.port());
  ASSERT_TRUE(raw.startupTrust("pgveil_trust", "clinic"));
  raw.send(std::string("Q") + be32(3));
  expectFatal(raw, "08P01", "invalid message length");
}

TEST_F(HostileInputTest, MessageOverMaxSize) {
  RawClient raw(proxy_.port());
  ASSERT_TRUE(raw.startupTrust("pgveil_trust", "clinic"));
  raw.send(std::string("Q") + be32(10'000'000) + "SELECT");
  expectFatal(raw, "54000", "max_message_size");
}

TEST_F(HostileInputTest, UnknownMessageType) {
  RawClient raw(proxy_.port());
  ASSERT_TRUE(raw.startupTrust("pgveil_trust", "clinic"));
  raw.send(typed('y', "abc"));
  expectFatal(raw, "08P01", "invalid frontend message type 121");
}

TEST_F(HostileInputTest, SlowStartupTimesOut) {
  RawClient raw(proxy_.port());
  raw.send(be32(40));  // a length, then nothing
  auto start = std::chrono::steady_clock::now();
  expectFatal(raw, "08P01", "timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
}

TEST_F(HostileInputTest, PasswordPhaseExpectsPasswordMessage) {
  RawClient raw(proxy_.port());
  raw.send(protocol::encodeStartup(protocol::kProtocolV3, {{"user", "pgveil_password"}, {"database", "clinic"}}));
  auto m = raw.readMessage();
  ASSERT_TRUE(m && m->first == 'R');
  raw.send(typed('Q', std::string("SELECT 1") + '\0'));
  expectFatal(raw, "08P01", "expected password response");
}

TEST_F(HostileInputTest, GarbageAtEverySplitNeverCrashes) {
  // A valid startup followed by random bytes, in several shapes: pgveil answers or closes.
  std::uint32_t seed = 12345;
  for (int round = 0; round < 20; ++round) {
    RawClient raw(proxy_.port());
    ASSERT_TRUE(raw.startupTrust("pgveil_trust", "clinic"));
    std::string junk;
    for (int i = 0; i < 64; ++i) {
      seed = seed * 1103515245 + 12345;
      junk.push_back(static_cast<char>(seed >> 16));
    }
    raw.send(junk);
    raw.waitClosed(3s);
  }
}

// A fake upstream on loopback: completes trust authentication for one connection, reads the
// client's first query, then runs `then` with the connected socket.
class FakeUpstream {
 public:
  explicit FakeUpstream(std::function<void(int)> then) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    listen(fd_, 4);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::jthread([this, then] {
      int c = accept(fd_, nullptr, nullptr);
      char buf[4096];
      auto n = recv(c, buf, sizeof buf, 0);  // the startup packet
      std::string ok = std::string("R\0\0\0\x08\0\0\0\0", 9) + std::string("Z\0\0\0\x05I", 6);
      send(c, ok.data(), ok.size(), MSG_NOSIGNAL);
      n = recv(c, buf, sizeof buf, 0);  // the client's query
      (void)n;
      then(c);
      close(c);
    });
  }
  ~FakeUpstream() {
    thread_ = {};  // joins
    close(fd_);
  }
  [[nodiscard]] std::string yaml(const std::string& extra = "") const {
    return "upstream:\n  host: 127.0.0.1\n  port: " + std::to_string(port_) + "\n  tls: disable\n" + extra;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::jthread thread_;
};

TEST(UpstreamTest, ByHostName) {
  // A host name goes through the resolver (localhost: /etc/hosts), for sessions and cancels.
  Proxy proxy("upstream:\n  host: localhost\n  port: " + std::to_string(Cluster::get().port) + "\n  tls: disable\n",
              false);
  auto c = connect(conninfo(proxy.port(), "admin"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get()) << proxy.log();
  ASSERT_EQ(PQsendQuery(c.get(), "SELECT pg_sleep(30)"), 1);
  usleep(200000);
  char err[256];
  PGcancel* cancel = PQgetCancel(c.get());
  ASSERT_EQ(PQcancel(cancel, err, sizeof err), 1) << err;
  PQfreeCancel(cancel);
  PgResult r(PQgetResult(c.get()));
  const char* code = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
  EXPECT_STREQ(code ? code : "", "57014") << PQresultErrorMessage(r.get());
  while (PgResult(PQgetResult(c.get()))) {
  }
  EXPECT_EQ(scalar(c.get(), "SELECT 2"), "2");
}

TEST(UpstreamDownTest, ClientGetsConnectionFailure) {
  // A port with nothing listening: bind, read the port, close.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int deadPort = ntohs(addr.sin_port);
  close(fd);
  Proxy proxy("upstream:\n  host: 127.0.0.1\n  port: " + std::to_string(deadPort) + "\n  tls: disable\n", false);
  RawClient raw(proxy.port());
  raw.send(protocol::encodeStartup(protocol::kProtocolV3, {{"user", "admin"}, {"database", "clinic"}}));
  auto m = raw.readMessage();
  ASSERT_TRUE(m.has_value());
  ASSERT_EQ(m->first, 'E');
  EXPECT_EQ(errorField(m->second, 'C'), "08006");
  EXPECT_NE(errorField(m->second, 'M').find("could not connect to the upstream server"), std::string::npos);
  EXPECT_TRUE(raw.waitClosed());
}

TEST(UpstreamDownTest, UpstreamDropsMidSession) {
  // The upstream closes the connection right after the client's first query.
  FakeUpstream fake([](int) {});
  Proxy proxy(fake.yaml(), false);
  RawClient raw(proxy.port());
  ASSERT_TRUE(raw.startupTrust("x", "y"));
  raw.send(typed('Q', std::string("SELECT 1") + '\0'));
  auto m = raw.readMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->first, 'E');
  EXPECT_EQ(errorField(m->second, 'C'), "08006");
  EXPECT_TRUE(raw.waitClosed());
}

TEST(UpstreamDownTest, OversizedServerMessageEndsOnlyThatSession) {
  // The upstream answers the query with a notice announced as 512 MB.
  FakeUpstream fake([](int c) {
    std::string huge = std::string("N\x20\0\0\0", 5) + std::string(1000, 'x');
    send(c, huge.data(), huge.size(), MSG_NOSIGNAL);
    char buf[4096];
    (void)recv(c, buf, sizeof buf, 0);  // until pgveil closes
  });
  Proxy proxy(fake.yaml("connections:\n  max_message_size: 1MB\n"), false);
  RawClient raw(proxy.port());
  ASSERT_TRUE(raw.startupTrust("x", "y"));
  raw.send(typed('Q', std::string("SELECT 1") + '\0'));
  auto m = raw.readMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->first, 'E');
  EXPECT_EQ(errorField(m->second, 'C'), "08P01");
  EXPECT_NE(errorField(m->second, 'M').find("max_message_size"), std::string::npos);
  EXPECT_TRUE(raw.waitClosed());
}

TEST(ConnectionLimitTest, TooManyClients) {
  Proxy proxy("connections:\n  max_clients: 2\n");
  auto a = connect(conninfo(proxy.port(), "admin"));
  auto b = connect(conninfo(proxy.port(), "admin"));
  ASSERT_EQ(PQstatus(b.get()), CONNECTION_OK);
  auto c = connect(conninfo(proxy.port(), "admin"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(c.get())).find("too many clients"), std::string::npos);
  a.reset();
  // The slot frees once pgveil sees the close; retry within a bound.
  bool ok = false;
  for (int i = 0; i < 100 && !ok; ++i) {
    auto d = connect(conninfo(proxy.port(), "admin"));
    ok = PQstatus(d.get()) == CONNECTION_OK;
    if (!ok) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(ok);
}

TEST(ShutdownTest, SigtermDrainsThenTerminatesWith57P01) {
  Proxy proxy("connections:\n  shutdown_timeout: 300ms\n");
  auto c = connect(conninfo(proxy.port(), "admin"));
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK);
  ASSERT_TRUE(PQsendQuery(c.get(), "SELECT pg_sleep(3)"));
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(proxy.stop(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  PgResult r(PQgetResult(c.get()));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_FATAL_ERROR);
  const char* code = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
  EXPECT_STREQ(code ? code : "", "57P01") << PQresultErrorMessage(r.get());
}

// ---- worker threads: one per allowed CPU, each pinned to its own ----

std::vector<int> cpuList(cpu_set_t& set) {
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

std::vector<int> allowedCpusOfThisProcess() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  return cpuList(set);
}

// Worker thread name ("pgveil-w0"...) -> the CPUs it may run on, from /proc/PID/task.
std::map<std::string, std::vector<int>> workerCpus(int pid) {
  std::map<std::string, std::vector<int>> out;
  auto dir = "/proc/" + std::to_string(pid) + "/task";
  auto listing = runCommand({"ls", dir});
  std::istringstream tids(listing.out);
  for (std::string tid; tids >> tid;) {
    std::string name;
    std::getline(std::ifstream(dir + "/" + tid + "/comm"), name);
    if (name.rfind("pgveil-w", 0) != 0) continue;
    cpu_set_t set;
    CPU_ZERO(&set);
    EXPECT_EQ(sched_getaffinity(std::stoi(tid), sizeof set, &set), 0) << name;
    out[name] = cpuList(set);
  }
  return out;
}

TEST(WorkerThreadTest, EachWorkerIsPinnedToItsOwnAllowedCpu) {
  auto allowed = allowedCpusOfThisProcess();  // pgveil inherits it
  ASSERT_FALSE(allowed.empty());
  Proxy proxy;  // workers: 2
  auto workers = workerCpus(proxy.pid());
  ASSERT_EQ(workers.size(), 2u) << proxy.log();
  EXPECT_EQ(workers["pgveil-w0"], std::vector<int>{allowed[0]});
  EXPECT_EQ(workers["pgveil-w1"], std::vector<int>{allowed[1 % allowed.size()]});
  // Sessions on both workers. The upstream is an IP address: no resolver thread (Asio's would
  // inherit a worker's name and CPU).
  std::vector<PgConn> sessions;
  for (int i = 0; i < 4; ++i) {
    sessions.push_back(connect(conninfo(proxy.port(), "admin")));
    EXPECT_EQ(scalar(sessions.back().get(), "SELECT 1"), "1");
  }
  auto listing = runCommand({"ls", "/proc/" + std::to_string(proxy.pid()) + "/task"});
  std::istringstream tids(listing.out);
  int workerNamed = 0;
  for (std::string tid; tids >> tid;) {
    std::string name;
    std::getline(std::ifstream("/proc/" + std::to_string(proxy.pid()) + "/task/" + tid + "/comm"), name);
    if (name.rfind("pgveil-w", 0) == 0) ++workerNamed;
  }
  EXPECT_EQ(workerNamed, 2);
  auto expected = "2 workers on CPUs " + std::to_string(allowed[0]) + "," + std::to_string(allowed[1 % allowed.size()]);
  EXPECT_NE(proxy.log().find(expected), std::string::npos) << proxy.log();
}

TEST(WorkerThreadTest, MoreWorkersThanCpusAreNotPinned) {
  auto allowed = allowedCpusOfThisProcess();
  Proxy proxy(Proxy::Raw{}, "listen: 127.0.0.1:0\nworkers: " + std::to_string(allowed.size() + 1) +
                                "\nupstream:\n  host: 127.0.0.1\n  port: " + std::to_string(Cluster::get().port) +
                                "\n  tls: disable\n");
  auto workers = workerCpus(proxy.pid());
  ASSERT_EQ(workers.size(), allowed.size() + 1) << proxy.log();
  for (auto& [name, cpus] : workers) EXPECT_EQ(cpus, allowed) << name;
  EXPECT_NE(proxy.log().find("unpinned: more workers than the"), std::string::npos) << proxy.log();
}

TEST(WorkerThreadTest, PinningCanBeTurnedOff) {
  auto allowed = allowedCpusOfThisProcess();
  Proxy proxy("pin_workers: false\n");
  auto workers = workerCpus(proxy.pid());
  ASSERT_EQ(workers.size(), 2u) << proxy.log();
  for (auto& [name, cpus] : workers) EXPECT_EQ(cpus, allowed) << name;
  EXPECT_NE(proxy.log().find("2 workers unpinned"), std::string::npos) << proxy.log();
}

TEST(WorkerThreadTest, DefaultWorkerCountFollowsTheAffinityMask) {
  // Started with one allowed CPU (as in a container's cpuset), `workers: 0` means one worker.
  auto allowed = allowedCpusOfThisProcess();
  ASSERT_FALSE(allowed.empty());
  cpu_set_t saved;
  CPU_ZERO(&saved);
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(allowed.back(), &one);
  std::optional<Proxy> proxy;
  {
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    struct Restore {
      cpu_set_t& saved;
      ~Restore() { sched_setaffinity(0, sizeof saved, &saved); }
    } restore{saved};
    proxy.emplace(Proxy::Raw{}, "listen: 127.0.0.1:0\nworkers: 0\nupstream:\n  host: 127.0.0.1\n  port: " +
                                   std::to_string(Cluster::get().port) + "\n  tls: disable\n");
  }
  auto workers = workerCpus(proxy->pid());
  ASSERT_EQ(workers.size(), 1u) << proxy->log();
  EXPECT_EQ(workers["pgveil-w0"], std::vector<int>{allowed.back()});
  EXPECT_EQ(scalar(connect(conninfo(proxy->port(), "admin")).get(), "SELECT 1"), "1");
}

// ---- pgbench: simple, extended and prepared protocol, zero errors ----

class PgbenchTest : public ::testing::TestWithParam<const char*> {};

TEST_P(PgbenchTest, SelectOnlyTenSecondsWithoutErrors) {
  Proxy proxy;
  auto r = runCommand({"pgbench", "-S", "-n", "-T", "10", "-c", "4", "-j", "2", "-M", GetParam(), "-h", "127.0.0.1",
                       "-p", std::to_string(proxy.port()), "-U", "admin", "bench"},
                      {{"PGPASSWORD", "admin"}}, "", std::chrono::seconds(60));
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("number of failed transactions: 0 "), std::string::npos) << r.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("number of transactions actually processed: ([0-9]+)"))) << r.out;
  EXPECT_GT(std::stol(m[1]), 1000) << r.out;
  std::cout << "pgbench -M " << GetParam() << " through pgveil (ASan build): "
            << std::regex_replace(r.out.substr(r.out.find("tps")), std::regex("\n"), " ") << "\n";
}

INSTANTIATE_TEST_SUITE_P(Modes, PgbenchTest, ::testing::Values("simple", "extended", "prepared"));

// ---- command line ----

TEST(CommandLineTest, CheckConfigVersionHelp) {
  auto ok = runCommand({pgveilBinary(), "--check-config", sourceDir() + "/examples/pgveil.yaml"},
                       {{"PGVEIL_MASKING_KEY", "a-key-for-the-command-line-test"}});
  EXPECT_EQ(ok.exitCode, 0) << ok.err;
  EXPECT_NE(ok.out.find("configuration is valid"), std::string::npos);
  char path[] = "/tmp/pgveil-bad.XXXXXX";
  int fd = mkstemp(path);
  std::string bad = "listen: 127.0.0.1:6432\nupstream:\n  host: x\n  colour: blue\n";
  ASSERT_EQ(write(fd, bad.data(), bad.size()), static_cast<ssize_t>(bad.size()));
  close(fd);
  auto err = runCommand({pgveilBinary(), "--check-config", path});
  unlink(path);
  EXPECT_EQ(err.exitCode, 1);
  EXPECT_NE(err.err.find(std::string(path) + ":4:3: unknown key 'upstream.colour'"), std::string::npos) << err.err;
  auto v = runCommand({pgveilBinary(), "--version"});
  EXPECT_EQ(v.exitCode, 0);
  EXPECT_EQ(v.out.rfind("pgveil ", 0), 0u);
  auto h = runCommand({pgveilBinary(), "--help"});
  EXPECT_NE(h.out.find("--check-config"), std::string::npos);
  auto u = runCommand({pgveilBinary(), "--bogus"});
  EXPECT_EQ(u.exitCode, 2);
}

}  // namespace
}  // namespace pgveil::it
