#include "config/config.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace pgveil::config {
namespace {

std::string errorOf(const std::string& yaml) {
  try {
    (void)loadConfigText(yaml, "test.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigTest, DefaultsFromEmptyFile) {
  auto c = loadConfigText("", "empty.yaml");
  EXPECT_EQ(c.listen.host, "127.0.0.1");
  EXPECT_EQ(c.listen.port, 6432);
  EXPECT_EQ(c.upstream.port, 5432);
  EXPECT_EQ(c.upstream.tls, UpstreamTls::Prefer);
  EXPECT_EQ(c.tls.mode, ClientTls::Disable);
  EXPECT_EQ(c.connections.maxMessageSize, 64u << 20);
  EXPECT_EQ(c.workers, 0u);
  EXPECT_TRUE(c.pinWorkers);
}

TEST(ConfigTest, ReadsEverySection) {
  auto c = loadConfigText(R"(
listen: 0.0.0.0:7000
workers: 3
pin_workers: false
upstream:
  host: db.internal
  port: 5433
  tls: require
  connect_timeout: 250ms
connections:
  max_clients: 50
  startup_timeout: 2m
  max_message_size: 1MB
  shutdown_timeout: 1h
admin:
  listen: "[::1]:9931"
log:
  level: debug
)",
                          "x.yaml");
  EXPECT_EQ(c.listen.host, "0.0.0.0");
  EXPECT_EQ(c.listen.port, 7000);
  EXPECT_EQ(c.workers, 3u);
  EXPECT_FALSE(c.pinWorkers);
  EXPECT_EQ(c.upstream.host, "db.internal");
  EXPECT_EQ(c.upstream.tls, UpstreamTls::Require);
  EXPECT_EQ(c.upstream.connectTimeout.count(), 250);
  EXPECT_EQ(c.connections.maxClients, 50u);
  EXPECT_EQ(c.connections.startupTimeout.count(), 120000);
  EXPECT_EQ(c.connections.maxMessageSize, 1u << 20);
  EXPECT_EQ(c.connections.shutdownTimeout.count(), 3600000);
  EXPECT_TRUE(c.admin.enabled);
  EXPECT_EQ(c.admin.listen.host, "::1");
  EXPECT_EQ(c.admin.listen.port, 9931);
  EXPECT_EQ(c.log.level, "debug");
}

TEST(ConfigTest, UnknownKeyNamesFileLineAndKey) {
  auto e = errorOf("listen: 127.0.0.1:1\nupstream:\n  host: x\n  prot: 5432\n");
  EXPECT_NE(e.find("test.yaml:4:3"), std::string::npos) << e;
  EXPECT_NE(e.find("upstream.prot"), std::string::npos) << e;
  e = errorOf("bogus: 1\n");
  EXPECT_NE(e.find("test.yaml:1:1"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'bogus'"), std::string::npos) << e;
}

TEST(ConfigTest, BadValuesNameTheKey) {
  struct Case {
    const char* yaml;
    const char* expect;
  } cases[] = {
      {"listen: nope\n", "test.yaml:1:9: listen: expected host:port"},
      {"listen: 1.2.3.4:70000\n", "listen: expected host:port"},
      {"workers: -1\n", "workers: expected a whole number"},
      {"pin_workers: sometimes\n", "test.yaml:1:14: pin_workers: expected true or false"},
      {"upstream:\n  port: 0\n", "test.yaml:2:9: upstream.port: must be between 1 and 65535"},
      {"upstream:\n  tls: maybe\n", "upstream.tls: expected one of"},
      {"upstream:\n  tls: verify-full\n", "verify-full need upstream.ca_file"},
      {"upstream:\n  ca_file: /nonexistent/ca.pem\n", "cannot read file '/nonexistent/ca.pem'"},
      {"connections:\n  startup_timeout: 5 days\n", "connections.startup_timeout"},
      {"connections:\n  startup_timeout: 5d\n", "unknown duration unit 'd'"},
      {"connections:\n  max_message_size: 12XB\n", "unknown size unit 'XB'"},
      {"connections:\n  max_message_size: 2GB\n", "connections.max_message_size: must be"},
      {"tls:\n  mode: require\n", "TLS for clients needs tls.cert and tls.key"},
      {"log:\n  level: loud\n", "log.level"},
      {"upstream: [1, 2]\n", "upstream: expected a mapping"},
      {"listen: [\n", "test.yaml:"},
  };
  for (const auto& c : cases) {
    auto e = errorOf(c.yaml);
    EXPECT_NE(e.find(c.expect), std::string::npos) << "yaml: " << c.yaml << "\nerror: " << e;
  }
}

TEST(ConfigTest, UpstreamKeyFileMustNotBeReadableByOthers) {
  char dir[] = "/tmp/pgveil-config-test.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string cert = std::string(dir) + "/client.crt";
  const std::string key = std::string(dir) + "/client.key";
  std::ofstream(cert) << "not parsed here\n";
  std::ofstream(key) << "not parsed here\n";
  const std::string yaml = "upstream:\n  cert_file: " + cert + "\n  key_file: " + key + "\n";
  ASSERT_EQ(chmod(key.c_str(), 0644), 0);
  auto e = errorOf(yaml);
  EXPECT_NE(e.find("test.yaml:3:13: upstream.key_file: '" + key + "' is readable by group or others"), std::string::npos)
      << e;
  ASSERT_EQ(chmod(key.c_str(), 0600), 0);
  EXPECT_EQ(errorOf(yaml), "");
  std::remove(cert.c_str());
  std::remove(key.c_str());
  rmdir(dir);
}

TEST(ConfigTest, MaskingPolicy) {
  auto c = loadConfigText(R"Y(
masking: { key: "0123456789abcdef0123" }
classify:
  public.users.email: email
  public.users.ssn: national_id
roles:
  support: { mask: { email: "partial(1, 2)", national_id: "fixed('n/a, sorry')" }, allow: [notify] }
  ops: { unmasked: true }
identity:
  client_cert_cn: { "ops.example.com": ops }
)Y",
                          "m.yaml");
  EXPECT_EQ(c.masking.classify.size(), 2u);
  const auto& s = c.masking.roles.at("support");
  EXPECT_EQ(s.mask.at("email").args, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(s.mask.at("national_id").args, (std::vector<std::string>{"n/a, sorry"}));
  EXPECT_TRUE(s.allowRules.count("notify"));
  EXPECT_EQ(c.masking.roles.at("default").mask.at("*").name, "redact");  // implicit default
  EXPECT_EQ(c.masking.clientCertRoles.at("ops.example.com"), "ops");
}

TEST(ConfigTest, MaskingErrorsNameFileAndLine) {
  struct Case {
    const char* yaml;
    const char* expect;
  } cases[] = {
      {"classify:\n  users.email: email\n", "test.yaml:2:3: classify.users.email: expected schema.table.column"},
      {"classify:\n  a.b.c: email\nroles:\n  r: { mask: { phone: redact } }\n",
       "test.yaml:4:16: roles.r.mask.phone: class 'phone' is not used in classify"},
      {"classify:\n  a.b.c: email\nroles:\n  r: { mask: { email: scramble } }\n", "unknown masking strategy 'scramble'"},
      {"classify:\n  a.b.c: email\nroles:\n  r: { mask: { email: partial(1) } }\n", "strategy 'partial' takes 2"},
      {"classify:\n  a.b.c: email\nroles:\n  r: { mask: { email: generalize(decade) } }\n", "generalize takes year"},
      {"roles:\n  r: { use_in_sql: rewrite }\n", "rewrite is not supported yet"},
      {"roles:\n  r: { allow: [everything] }\n", "test.yaml:2:16: roles.r.allow: unknown gate rule 'everything'"},
      {"roles:\n  r: { colour: red }\n", "unknown key 'roles.r.colour'"},
      {"identity:\n  client_cert_cn: { x: nobody }\n", "role 'nobody' is not defined in roles"},
      {"classify:\n  a.b.c: email\nroles:\n  r: { mask: { email: hash } }\n", "masking.key or masking.key_env is required"},
      {"masking: { key: short }\n", "at least 16 characters"},
  };
  for (const auto& c : cases) {
    auto e = errorOf(c.yaml);
    EXPECT_NE(e.find(c.expect), std::string::npos) << "yaml: " << c.yaml << "\nerror: " << e;
  }
}

TEST(ConfigTest, MissingFileIsAnError) {
  EXPECT_THROW((void)loadConfigFile("/nonexistent/pgveil.yaml"), ConfigError);
}

TEST(ConfigTest, EndpointParsing) {
  Endpoint e;
  EXPECT_TRUE(parseEndpoint("localhost:5432", e));
  EXPECT_EQ(e.host, "localhost");
  EXPECT_TRUE(parseEndpoint("[::1]:6432", e));
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.toString(), "[::1]:6432");
  EXPECT_FALSE(parseEndpoint("::1:6432", e));
  EXPECT_FALSE(parseEndpoint("host:", e));
  EXPECT_FALSE(parseEndpoint(":5432", e));
  EXPECT_FALSE(parseEndpoint("host:12ab", e));
  EXPECT_FALSE(parseEndpoint("host:123456", e));
}

TEST(ConfigTest, ExampleConfigIsValid) {
  setenv("PGVEIL_MASKING_KEY", "example-key-for-the-unit-test", 1);
  auto c = loadConfigFile(PGVEIL_SOURCE_DIR "/examples/pgveil.yaml");
  EXPECT_EQ(c.masking.classify.at("public.patients.email"), "email");
  EXPECT_TRUE(c.masking.roles.at("admin").unmasked);
  EXPECT_EQ(c.masking.roles.at("support").mask.at("email").name, "partial_email");
  EXPECT_TRUE(c.masking.roles.at("analyst").allowSqlUse);
  EXPECT_EQ(c.masking.roles.at("default").mask.at("*").name, "redact");
  EXPECT_EQ(c.listen.port, 6432);
  EXPECT_EQ(c.upstream.port, 54320);
}

}  // namespace
}  // namespace pgveil::config
