// The analyzer against the real server: with a catalog loaded through pgveil's service
// connection, `*` expansion and search_path resolution must agree with what PostgreSQL reports
// in RowDescription (table OID and attnum of each field). A field PostgreSQL reports with table
// OID 0 must never be claimed as a direct copy of a column: the masker relies on that to fail
// closed.

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>

#include "harness.hpp"
#include "masking/analyzer.hpp"
#include "masking/describe.hpp"
#include "proxy/catalog_service.hpp"

namespace pgveil::it {
namespace {

config::Config catalogConfig() {
  config::Config cfg;
  cfg.upstream.host = "127.0.0.1";
  cfg.upstream.port = static_cast<std::uint16_t>(Cluster::get().port);
  cfg.upstream.tls = config::UpstreamTls::Disable;
  cfg.catalog.user = "pgveil_test";
  cfg.catalog.password = "pgveil_test";
  return cfg;
}

// A catalog load that must fail with a message containing `needle`.
void expectLoadFails(const config::Config& cfg, const std::string& needle) {
  try {
    (void)proxy::loadCatalog(cfg, "clinic", 1);
    ADD_FAILURE() << "the catalog loaded; expected an error with \"" << needle << "\"";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

struct Probe {
  const char* sql;
  std::vector<std::string> path = {"public"};
};
void PrintTo(const Probe& p, std::ostream* os) {
  *os << p.sql << " [search_path";
  for (const auto& s : p.path) *os << " " << s;
  *os << "]";
}

class AnalyzerAgainstServerTest : public ::testing::TestWithParam<Probe> {
 protected:
  static void SetUpTestSuite() { catalog_ = proxy::loadCatalog(catalogConfig(), "clinic", 1); }
  static std::shared_ptr<const masking::Catalog> catalog_;
};
std::shared_ptr<const masking::Catalog> AnalyzerAgainstServerTest::catalog_;

TEST_P(AnalyzerAgainstServerTest, AgreesWithRowDescription) {
  const auto& p = GetParam();
  ASSERT_TRUE(catalog_);
  auto conn = connect(conninfo(Cluster::get().port, "pgveil_test", "clinic"));
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK);
  std::string path;
  for (const auto& s : p.path) path += (path.empty() ? "" : ", ") + std::string("\"") + s + "\"";
  ASSERT_EQ(PQresultStatus(exec(conn.get(), "SET search_path = " + path).get()), PGRES_COMMAND_OK);
  PgResult prep(PQprepare(conn.get(), "", p.sql, 0, nullptr));
  ASSERT_EQ(PQresultStatus(prep.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(prep.get());
  PgResult desc(PQdescribePrepared(conn.get(), ""));
  ASSERT_EQ(PQresultStatus(desc.get()), PGRES_COMMAND_OK);

  masking::Analyzer analyzer;
  auto a = analyzer.analyze(p.sql, {catalog_.get(), p.path});
  ASSERT_TRUE(a->parsed) << a->error;
  const auto& s = a->statements.at(0);
  ASSERT_FALSE(s.outputsIncomplete);
  ASSERT_EQ(static_cast<int>(s.outputs.size()), PQnfields(desc.get())) << masking::describeOutputs(*catalog_, s);
  for (int i = 0; i < PQnfields(desc.get()); ++i) {
    const auto& out = s.outputs[i];
    auto table = PQftable(desc.get(), i);
    auto col = PQftablecol(desc.get(), i);
    EXPECT_EQ(out.name, PQfname(desc.get(), i)) << "field " << i;
    std::string lineage = masking::describeLineage(*catalog_, out.lineage);
    if (table != 0 && col == 0) {
      // A whole-row value: the server names the table with attnum 0. It must depend on every
      // column of that table, and not as a direct copy.
      const auto* rel = catalog_->byOid(table);
      ASSERT_NE(rel, nullptr);
      for (const auto& c : rel->columns) {
        bool found = false;
        for (const auto& u : out.lineage.uses) {
          found = found || (u.column.relOid == table && u.column.attnum == c.attnum &&
                            u.how != masking::Derivation::Direct);
        }
        EXPECT_TRUE(found) << "whole-row field " << i << " misses " << c.name << ": " << lineage;
      }
    } else if (table != 0) {
      bool found = false;
      for (const auto& u : out.lineage.uses) {
        found = found || (u.column.relOid == table && u.column.attnum == col && u.how == masking::Derivation::Direct);
      }
      EXPECT_TRUE(found) << "field " << i << " (" << PQfname(desc.get(), i) << ") is "
                         << masking::columnName(*catalog_, {table, static_cast<std::int16_t>(col)})
                         << " per the server; analyzer says " << lineage;
    } else {
      for (const auto& u : out.lineage.uses) {
        EXPECT_NE(u.how, masking::Derivation::Direct)
            << "field " << i << " has no table per the server, but the analyzer claims a direct copy: " << lineage;
      }
    }
  }
}

const Probe kProbes[] = {
    {"SELECT * FROM patients"},
    {"SELECT * FROM invoices i"},
    {"SELECT i.*, p.email FROM invoices i JOIN patients p ON p.id = i.patient_id"},
    {"SELECT * FROM patients p JOIN appointments a USING (id)"},
    {"SELECT * FROM patients RIGHT JOIN appointments USING (id)"},
    {"SELECT * FROM patients FULL JOIN appointments USING (id)"},
    {"SELECT * FROM invoices NATURAL JOIN appointments"},
    {"SELECT * FROM patients, appointments"},
    {"SELECT * FROM patients", {"crm", "public"}},
    {"SELECT * FROM patients", {"public", "crm"}},
    {"SELECT * FROM crm.\"Users\""},
    {"SELECT \"EMAIL\", u.\"nick name\" FROM crm.\"Users\" u"},
    {"SELECT U&\"\\0045MAIL\" FROM crm.\"Users\""},
    {"SELECT email, upper(email), email::varchar, email || '' FROM patients"},
    {"SELECT count(*), count(email), max(email) FROM patients"},
    {"SELECT s.e FROM (SELECT email AS e FROM patients) s"},
    {"WITH c AS (SELECT id, phone FROM patients) SELECT * FROM c"},
    {"WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM patients WHERE id = 1 UNION ALL SELECT n + 1, e FROM r WHERE n < 3) SELECT * FROM r"},
    {"SELECT email FROM patients UNION SELECT doctor FROM appointments"},
    {"SELECT * FROM (VALUES (1, 'a')) v(x, y)"},
    {"SELECT p FROM patients p"},
    {"SELECT row_to_json(p) FROM patients p"},
    {"SELECT (SELECT email FROM patients WHERE id = 1) AS e"},
    {"SELECT p.id, l.e FROM patients p, LATERAL (SELECT p.email AS e) l"},
    {"SELECT x FROM patients p, unnest(ARRAY[p.email]) AS x"},
    {"SELECT * FROM patient_contacts"},
    {"SELECT contact, upper(name) FROM patient_contacts"},
    {"SELECT * FROM doctors_view"},
    {"SELECT CASE WHEN religion IS NULL THEN 'n' ELSE religion END, coalesce(phone, '') FROM patients"},
    {"SELECT id, row_number() OVER (ORDER BY email), lag(email) OVER () FROM patients"},
    {"SELECT nationality, count(*) FROM patients GROUP BY nationality"},
    {"SELECT a.doctor, i.iban FROM appointments a JOIN invoices i ON i.patient_id = a.patient_id"},
    {"SELECT j.doctor FROM (patients p JOIN appointments a ON a.patient_id = p.id) AS j"},
    {"SELECT relname, relnamespace FROM pg_class"},
    {"SELECT 1 AS one, now(), $1::text AS param"},
    {"TABLE appointments"},
};

INSTANTIATE_TEST_SUITE_P(Probes, AnalyzerAgainstServerTest, ::testing::ValuesIn(kProbes));

TEST(CatalogLoaderTest, LoadsRelationsViewsAndRoles) {
  auto c = proxy::loadCatalog(catalogConfig(), "clinic", 7);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->generation(), 7u);
  const auto* p = c->find("public", "patients");
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->columns.size(), 11u);
  EXPECT_EQ(p->columns[2].name, "email");
  EXPECT_EQ(p->columns[2].attnum, 3);
  const auto* v = c->find("public", "patient_contacts");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->kind, 'v');
  EXPECT_NE(v->viewDefinition.find("email"), std::string::npos);
  EXPECT_NE(c->find("pg_catalog", "pg_stats"), nullptr);
  EXPECT_TRUE(c->isMemberOf("pg_monitor", "pg_read_all_stats"));
}

// The catalog connection presents the same TLS identity as the sessions' upstream connections.
TEST(CatalogLoaderTest, PresentsTheUpstreamClientCertificate) {
  const auto& dir = Cluster::get().dir;
  auto cfg = catalogConfig();
  cfg.upstream.tls = config::UpstreamTls::Require;
  cfg.catalog.user = "pgveil_cert";  // pg_hba: certificate authentication only
  cfg.catalog.password.clear();
  EXPECT_THROW((void)proxy::loadCatalog(cfg, "clinic", 1), std::runtime_error);
  cfg.upstream.certFile = dir + "/upstream-client.crt";
  cfg.upstream.keyFile = dir + "/upstream-client.key";
  auto c = proxy::loadCatalog(cfg, "clinic", 1);
  ASSERT_TRUE(c);
  EXPECT_NE(c->find("public", "patients"), nullptr);
}

TEST(CatalogLoaderTest, VerifiesTheUpstreamServerName) {
  auto cfg = catalogConfig();
  cfg.upstream.tls = config::UpstreamTls::VerifyFull;
  cfg.upstream.caFile = Cluster::get().dir + "/upstream-ca.crt";
  cfg.upstream.serverName = "localhost";  // in the certificate; the address is 127.0.0.1
  EXPECT_TRUE(proxy::loadCatalog(cfg, "clinic", 1));
  // A host name with every address tried (localhost may resolve to ::1 first; the server listens
  // on 127.0.0.1 only), checked against the name given.
  cfg.upstream.host = "localhost";
  cfg.upstream.serverName = "127.0.0.1";
  EXPECT_TRUE(proxy::loadCatalog(cfg, "clinic", 1));
  cfg.upstream.host = "127.0.0.1";
  cfg.upstream.serverName = "db.example.com";  // not in it: refused, as the sessions refuse it
  expectLoadFails(cfg, "db.example.com");
}

TEST(CatalogLoaderTest, RequireWithCaFileVerifiesTheChain) {
  auto cfg = catalogConfig();
  cfg.upstream.tls = config::UpstreamTls::Require;
  cfg.upstream.caFile = Cluster::get().dir + "/upstream-ca.crt";
  EXPECT_TRUE(proxy::loadCatalog(cfg, "clinic", 1));
  cfg.upstream.caFile = Cluster::get().dir + "/client-ca.crt";  // did not sign the server's certificate
  EXPECT_THROW((void)proxy::loadCatalog(cfg, "clinic", 1), std::runtime_error);
}

TEST(CatalogLoaderTest, WrongPasswordIsAnError) {
  auto cfg = catalogConfig();
  cfg.catalog.password = "wrong";
  EXPECT_THROW((void)proxy::loadCatalog(cfg, "clinic", 1), std::runtime_error);
}

// pgveil's own client (proxy/pg_client.cpp) against each way the server asks for a password:
// SCRAM-SHA-256 (pgveil_test has a SCRAM secret), md5 (pgveil_md5), cleartext (pg_hba
// `password` for pgveil_password), none (trust). A wrong password fails with the server's
// message; so does a missing one.
TEST(CatalogLoaderTest, AuthenticatesWithEachPasswordMethod) {
  struct Case {
    const char* user;
    const char* method;
    bool needsPassword;
  };
  for (const Case& c : {Case{"pgveil_test", "scram", true}, Case{"pgveil_md5", "md5", true},
                        Case{"pgveil_password", "password", true}, Case{"pgveil_trust", "trust", false}}) {
    SCOPED_TRACE(c.method);
    auto cfg = catalogConfig();
    cfg.catalog.user = c.user;
    cfg.catalog.password = c.needsPassword ? c.user : "";
    auto cat = proxy::loadCatalog(cfg, "clinic", 1);
    ASSERT_TRUE(cat);
    EXPECT_NE(cat->find("public", "patients"), nullptr);
    if (!c.needsPassword) continue;
    cfg.catalog.password = "wrong";
    expectLoadFails(cfg, "password authentication failed");
    cfg.catalog.password.clear();
    expectLoadFails(cfg, "catalog.password");
  }
}

// A server that accepts the connection and never answers: the load ends at catalog.load_timeout
// with a message saying so, instead of blocking the catalog thread.
TEST(CatalogLoaderTest, SilentServerTimesOut) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor silent(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  auto cfg = catalogConfig();
  cfg.upstream.port = silent.local_endpoint().port();
  cfg.catalog.loadTimeout = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  expectLoadFails(cfg, "timed out");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace pgveil::it
