#pragma once
// Typed, validated pgveil configuration loaded from YAML.
// Every error names the file, line and key (ConfigError); unknown keys are errors.

#include <chrono>
#include <map>
#include <set>
#include <vector>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace pgveil::config {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  [[nodiscard]] std::string toString() const;
};

// How pgveil connects to PostgreSQL (libpq's sslmode semantics).
enum class UpstreamTls { Disable, Prefer, Require, VerifyCa, VerifyFull };
// What pgveil answers to a client's SSLRequest.
enum class ClientTls { Disable, Allow, Require };

struct UpstreamConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5432;
  UpstreamTls tls = UpstreamTls::Prefer;
  std::string caFile;       // verify-ca / verify-full: trusted roots (PEM)
  std::string serverName;   // verify-full: expected name; defaults to host
  std::string certFile;     // optional client certificate to present upstream
  std::string keyFile;
  std::chrono::milliseconds connectTimeout{5000};
};

struct ClientTlsConfig {
  ClientTls mode = ClientTls::Disable;
  std::string certFile;
  std::string keyFile;
  std::string caFile;  // optional: request and verify client certificates
};

struct ConnectionsConfig {
  std::uint32_t maxClients = 1000;
  std::chrono::milliseconds startupTimeout{15000};  // startup packet, TLS and authentication
  std::uint32_t maxMessageSize = 64u << 20;          // any single protocol message
  std::chrono::milliseconds shutdownTimeout{10000};  // SIGTERM drain before 57P01
};

struct AdminConfig {
  bool enabled = false;
  Endpoint listen{"127.0.0.1", 9930};
};

struct AnalyzerConfig {
  std::uint32_t maxQuerySize = 1u << 20;   // larger query texts are not parsed (refused for masked roles)
  std::uint64_t cacheSize = 32ull << 20;    // per worker thread
};

// The service connection pgveil uses to read the catalog (relations, columns, views, roles).
struct CatalogConfig {
  std::string user = "pgveil";
  std::string password;
  std::string passwordEnv;  // read the password from this environment variable
  std::chrono::milliseconds refreshInterval{300000};
  std::chrono::milliseconds loadTimeout{10000};
  [[nodiscard]] std::string resolvedPassword() const;
};

// A masking strategy as written in the configuration: `partial(2, 2)` -> {partial, [2, 2]}.
struct StrategySpec {
  std::string name;
  std::vector<std::string> args;
  [[nodiscard]] std::string toString() const;
};

// Rules of the statement gate that a role may be allowed to bypass (`allow:` in a role).
inline constexpr const char* kGateRules[] = {
    "classified_in_expression", "classified_in_predicate", "identity_change", "copy_out", "value_catalog",
    "file_access", "dynamic_sql", "untrusted_function", "notify", "unanalyzable", "function_call",
    "large_object", "ddl"};

enum class RuleAction { Off, Monitor, Alert, Block };

// Blast-radius limits of one role (0: no limit). Rows and bytes count what the server returns
// (DataRow and COPY data messages, whole message size).
struct LimitsConfig {
  std::uint64_t rowsPerQuery = 0;
  std::uint64_t bytesPerQuery = 0;
  std::uint64_t rowsPerSession = 0;
  std::uint64_t bytesPerSession = 0;
  std::chrono::milliseconds window{60000};     // the sliding window of the *_per_window limits
  std::uint64_t rowsPerWindow = 0;             // all sessions of the role together
  std::uint64_t bytesPerWindow = 0;
  std::uint64_t rowsPerWindowPerClient = 0;    // the role's sessions from one client address
  std::uint64_t bytesPerWindowPerClient = 0;
  bool truncate = false;                       // on_breach: truncate (else error)
  std::uint64_t largePullRows = 0;             // alert (without blocking) past this many rows in one result
  [[nodiscard]] bool any() const {
    return rowsPerQuery || bytesPerQuery || rowsPerSession || bytesPerSession || rowsPerWindow || bytesPerWindow ||
           rowsPerWindowPerClient || bytesPerWindowPerClient;
  }
  [[nodiscard]] bool windowed() const {
    return rowsPerWindow || bytesPerWindow || rowsPerWindowPerClient || bytesPerWindowPerClient;
  }
};

// Pre-execution rules against bulk reads of relations holding classified columns.
struct ExfiltrationConfig {
  bool monitorOnly = false;           // mode: monitor: every block becomes an alert
  std::set<std::string> exempt;       // roles the rules do not apply to
  RuleAction unboundedRead = RuleAction::Off;
  RuleAction selectStar = RuleAction::Off;
  RuleAction copyTo = RuleAction::Off;
  std::int64_t maxLimit = 1000;       // a LIMIT above this counts as unbounded
  // The same fingerprint reading a classified relation with more than maxQueries different
  // texts (or parameter values) within the window: paging by OFFSET or by id ranges.
  RuleAction enumeration = RuleAction::Off;
  std::uint32_t enumerationMaxQueries = 50;
  std::chrono::milliseconds enumerationWindow{60000};
  // Distinct rows of classified relations a role received within the window (estimated).
  RuleAction distinctRows = RuleAction::Off;
  std::uint64_t distinctRowsMax = 10000;
  std::chrono::milliseconds distinctRowsWindow{3600000};
  [[nodiscard]] bool any() const {
    return unboundedRead != RuleAction::Off || selectStar != RuleAction::Off || copyTo != RuleAction::Off ||
           enumeration != RuleAction::Off || distinctRows != RuleAction::Off;
  }
};

// Honeytokens: values planted in the data that nobody legitimate reads.
struct CanaryConfig {
  std::vector<std::string> values;
  std::chrono::milliseconds lockout{0};  // refuse the role new sessions this long after a hit (0: no)
  std::set<std::string> exempt;          // policy roles not checked
};

struct WebhookConfig {
  std::string url;  // http://host:port/path (empty: no webhook)
  std::string host;
  std::string port;
  std::string target;
  std::uint32_t queueSize = 1000;
  std::uint32_t retries = 3;
  std::chrono::milliseconds timeout{2000};
  std::chrono::milliseconds backoff{200};  // first retry; doubled each time
};

struct AlertsConfig {
  std::string auditFile;              // JSON lines, rotated; empty: the log only
  std::uint64_t auditFileMaxBytes = 64ull << 20;
  std::uint32_t auditFileCount = 5;
  std::uint64_t largePullRows = 0;    // alert when one result has more rows (0: off)
  std::uint32_t maxPerSecond = 20;    // per rule and role; more are counted as suppressed
  WebhookConfig webhook;
};

struct RolePolicyConfig {
  std::string name;
  bool unmasked = false;
  bool monitor = false;                        // mode: monitor: this role's blocks become alerts
  std::map<std::string, StrategySpec> mask;  // class (or "*") -> strategy
  bool allowSqlUse = false;                   // use_in_sql: allow (refuse is the default)
  std::set<std::string> allowRules;           // gate rules this role may bypass
  std::set<std::string> trustedFunctions;     // user-defined functions the role may call
  bool hasLimits = false;                      // `limits:` given (else the default role's apply)
  LimitsConfig limits;
  int line = 0;
};

struct MaskingConfig {
  std::string key;
  std::string keyEnv;
  std::map<std::string, std::string> classify;  // "schema.table.column" -> class
  std::map<std::string, RolePolicyConfig> roles;  // includes "default" (implicit: mask every class)
  std::map<std::string, std::string> clientCertRoles;  // verified client certificate CN -> policy role
  [[nodiscard]] std::string resolvedKey() const;
};

struct LogConfig {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
};

struct Config {
  std::string sourcePath;
  Endpoint listen{"127.0.0.1", 6432};
  unsigned workers = 0;     // 0: one per CPU this process may use
  bool pinWorkers = true;  // worker i runs only on the i-th allowed CPU
  UpstreamConfig upstream;
  ClientTlsConfig tls;
  ConnectionsConfig connections;
  AdminConfig admin;
  AnalyzerConfig analyzer;
  CatalogConfig catalog;
  MaskingConfig masking;
  bool monitor = false;  // top-level mode: monitor: no block, breach or canary ends anything; alerts say what would have
  ExfiltrationConfig exfiltration;
  CanaryConfig canaries;
  AlertsConfig alerts;
  LogConfig log;
};

// Loads and validates a YAML file. Throws ConfigError with "file:line:column: message".
[[nodiscard]] Config loadConfigFile(const std::string& path);

// The limits that apply to a policy role: its own `limits:`, else the default role's.
[[nodiscard]] const LimitsConfig& limitsFor(const Config& c, const std::string& policyRole);
// Same, from text (path is used in messages only).
[[nodiscard]] Config loadConfigText(const std::string& text, const std::string& path);

// Parses a strategy spec such as `redact`, `partial(1, 2)` or `fixed('n/a')`.
[[nodiscard]] bool parseStrategySpec(const std::string& text, StrategySpec& out, std::string& error);

// Parses "host:port" or "[v6]:port".
[[nodiscard]] bool parseEndpoint(const std::string& text, Endpoint& out);

}  // namespace pgveil::config
