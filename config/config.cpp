#include "config/config.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <sys/stat.h>

#include "config/yaml_reader.hpp"

namespace pgveil::config {

std::string Endpoint::toString() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool parseEndpoint(const std::string& text, Endpoint& out) {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) return false;
  }
  if (host.empty() || port.empty() || port.size() > 5) return false;
  unsigned long p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + static_cast<unsigned long>(c - '0');
  }
  if (p > 65535) return false;
  out.host = host;
  out.port = static_cast<std::uint16_t>(p);
  return true;
}

std::string CatalogConfig::resolvedPassword() const {
  if (!passwordEnv.empty()) {
    const char* v = std::getenv(passwordEnv.c_str());
    return v ? v : "";
  }
  return password;
}

std::string MaskingConfig::resolvedKey() const {
  if (!keyEnv.empty()) {
    const char* v = std::getenv(keyEnv.c_str());
    return v ? v : "";
  }
  return key;
}

std::string StrategySpec::toString() const {
  std::string out = name;
  if (!args.empty()) {
    out += "(";
    for (std::size_t i = 0; i < args.size(); ++i) out += (i ? ", " : "") + args[i];
    out += ")";
  }
  return out;
}

bool parseStrategySpec(const std::string& text, StrategySpec& out, std::string& error) {
  static const std::map<std::string, std::pair<std::size_t, std::size_t>> kArity = {
      {"redact", {0, 0}}, {"null", {0, 0}},     {"partial", {2, 2}},  {"partial_email", {0, 0}},
      {"last4", {0, 0}},  {"hash", {0, 0}},     {"tokenize", {0, 0}}, {"generalize", {1, 1}},
      {"fixed", {1, 1}},  {"detect", {0, 0}}, {"none", {0, 0}}};
  out = {};
  auto open = text.find('(');
  std::string name = text.substr(0, open);
  while (!name.empty() && name.back() == ' ') name.pop_back();
  out.name = name;
  if (open != std::string::npos) {
    auto close = text.rfind(')');
    if (close == std::string::npos || close < open || text.find_first_not_of(' ', close + 1) != std::string::npos) {
      error = "unbalanced parentheses in strategy '" + text + "'";
      return false;
    }
    std::string inner = text.substr(open + 1, close - open - 1);
    // Arguments: comma-separated; a single-quoted argument may contain commas ('' escapes ').
    std::string cur;
    bool quoted = false, wasQuoted = false;
    for (std::size_t i = 0; i <= inner.size(); ++i) {
      char c = i < inner.size() ? inner[i] : ',';
      if (quoted) {
        if (c == '\'' && i + 1 < inner.size() && inner[i + 1] == '\'') {
          cur += '\'';
          ++i;
        } else if (c == '\'') {
          quoted = false;
        } else {
          cur += c;
        }
        continue;
      }
      if (c == '\'') {
        quoted = true;
        wasQuoted = true;
        continue;
      }
      if (c == ',') {
        if (!wasQuoted) {
          auto b = cur.find_first_not_of(' ');
          auto e = cur.find_last_not_of(' ');
          cur = b == std::string::npos ? "" : cur.substr(b, e - b + 1);
        }
        if (!cur.empty() || wasQuoted || i < inner.size()) out.args.push_back(cur);
        cur.clear();
        wasQuoted = false;
        continue;
      }
      cur += c;
    }
    if (quoted) {
      error = "unterminated quote in strategy '" + text + "'";
      return false;
    }
  }
  auto it = kArity.find(out.name);
  if (it == kArity.end()) {
    error = "unknown masking strategy '" + out.name +
            "' (known: redact, null, partial(first, last), partial_email, last4, hash, tokenize, "
            "generalize(year|month|N), fixed(value), detect, none)";
    return false;
  }
  if (out.args.size() < it->second.first || out.args.size() > it->second.second) {
    error = "strategy '" + out.name + "' takes " + std::to_string(it->second.first) + " argument(s)";
    return false;
  }
  if (out.name == "partial") {
    for (const auto& a : out.args) {
      if (a.empty() || a.size() > 3 || a.find_first_not_of("0123456789") != std::string::npos) {
        error = "partial(first, last) takes two small whole numbers";
        return false;
      }
    }
  }
  if (out.name == "generalize") {
    const auto& a = out.args[0];
    bool number = !a.empty() && a.find_first_not_of("0123456789") == std::string::npos && a != "0" && a.size() < 19;
    if (a != "year" && a != "month" && !number) {
      error = "generalize takes year, month or a positive bucket size";
      return false;
    }
  }
  return true;
}

namespace {

Endpoint readEndpoint(YamlMap& m, const std::string& key, const Endpoint& def) {
  auto n = m.get(key);
  if (!n) return def;
  Endpoint e;
  if (!n.IsScalar() || !parseEndpoint(n.Scalar(), e)) m.fail(n, key, "expected host:port, for example 127.0.0.1:6432");
  return e;
}

void checkReadable(YamlMap& m, const std::string& key, const std::string& path, const YAML::Node& at) {
  if (path.empty()) return;
  std::ifstream f(path);
  if (!f) m.fail(at, key, "cannot read file '" + path + "'");
}

// The catalog connection (libpq) refuses a private key others can read: the same rule here,
// so that the mistake is a start-up error rather than masked roles refused later.
void checkPrivateKeyMode(YamlMap& m, const std::string& key, const std::string& path, const YAML::Node& at) {
  struct stat st {};
  if (path.empty() || stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
  bool tooOpen = st.st_uid == 0 ? (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO)) != 0
                                : (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
  if (tooOpen) {
    m.fail(at, key,
           "'" + path + "' is readable by group or others: use mode 0600 (or 0640 when owned by root), as libpq requires");
  }
}

UpstreamTls parseUpstreamTls(YamlMap& m, const std::string& key, UpstreamTls def) {
  auto n = m.get(key);
  if (!n) return def;
  const auto s = n.IsScalar() ? n.Scalar() : std::string();
  if (s == "disable") return UpstreamTls::Disable;
  if (s == "prefer") return UpstreamTls::Prefer;
  if (s == "require") return UpstreamTls::Require;
  if (s == "verify-ca") return UpstreamTls::VerifyCa;
  if (s == "verify-full") return UpstreamTls::VerifyFull;
  m.fail(n, key, "expected one of disable, prefer, require, verify-ca, verify-full");
}

LimitsConfig readLimits(YamlMap& l) {
  LimitsConfig out;
  constexpr std::uint64_t kMax = 1ull << 50;
  out.rowsPerQuery = l.uint("rows_per_query", 0, 0, kMax);
  out.bytesPerQuery = l.size("bytes_per_query", 0, 0, kMax);
  out.rowsPerSession = l.uint("rows_per_session", 0, 0, kMax);
  out.bytesPerSession = l.size("bytes_per_session", 0, 0, kMax);
  out.window = l.duration("window", out.window);
  if (out.window.count() < 1000) l.fail(l.get("window"), "window", "must be at least 1s");
  out.rowsPerWindow = l.uint("rows_per_window", 0, 0, kMax);
  out.bytesPerWindow = l.size("bytes_per_window", 0, 0, kMax);
  out.rowsPerWindowPerClient = l.uint("rows_per_window_per_client", 0, 0, kMax);
  out.bytesPerWindowPerClient = l.size("bytes_per_window_per_client", 0, 0, kMax);
  out.largePullRows = l.uint("large_pull_rows", 0, 0, kMax);
  auto b = l.get("on_breach");
  std::string mode = b && b.IsScalar() ? b.Scalar() : "error";
  if (mode != "error" && mode != "truncate") l.fail(b, "on_breach", "expected error or truncate");
  out.truncate = mode == "truncate";
  l.finish();
  return out;
}

// A list of role names that must all be defined under `roles:`.
std::set<std::string> readRoleList(YamlMap& m, const char* key, const std::map<std::string, RolePolicyConfig>& roles) {
  std::set<std::string> out;
  auto list = m.get(key);
  if (!list) return out;
  if (!list.IsSequence()) m.fail(list, key, "expected a list of roles");
  for (const auto& r : list) {
    auto role = r.as<std::string>();
    if (!roles.count(role)) failAt(m.file(), r.Mark(), m.keyPath(key) + ": role '" + role + "' is not defined in roles");
    out.insert(role);
  }
  return out;
}

RuleAction readAction(YamlMap& x, const char* key, const YAML::Node& n) {
  if (!n) return RuleAction::Off;
  auto v = n.IsScalar() ? n.Scalar() : std::string();
  if (v == "block") return RuleAction::Block;
  if (v == "alert") return RuleAction::Alert;
  if (v == "monitor") return RuleAction::Monitor;
  if (v == "off") return RuleAction::Off;
  x.fail(n, key, "expected block, alert, monitor or off");
}

// http://host[:port]/path; https is not supported (alerts go to a local collector or sidecar).
bool parseWebhookUrl(const std::string& url, WebhookConfig& w) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) return false;
  auto rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  auto hostPort = rest.substr(0, slash);
  w.target = slash == std::string::npos ? "/" : rest.substr(slash);
  Endpoint e;
  if (parseEndpoint(hostPort, e)) {
    w.host = e.host;
    w.port = std::to_string(e.port);
  } else {
    if (hostPort.empty() || hostPort.find_first_of(":[]") != std::string::npos) return false;
    w.host = hostPort;
    w.port = "80";
  }
  return !w.host.empty();
}

Config parse(const YAML::Node& root, const std::string& path) {
  Config c;
  c.sourcePath = path;
  YamlMap top(root, "", path);
  c.listen = readEndpoint(top, "listen", c.listen);
  c.workers = static_cast<unsigned>(top.uint("workers", 0, 0, 256));
  c.pinWorkers = top.boolean("pin_workers", c.pinWorkers);

  {
    auto u = top.map("upstream");
    c.upstream.host = u.str("host", c.upstream.host);
    if (c.upstream.host.empty()) u.fail(u.get("host"), "host", "must not be empty");
    c.upstream.port = static_cast<std::uint16_t>(u.uint("port", c.upstream.port, 1, 65535));
    c.upstream.tls = parseUpstreamTls(u, "tls", c.upstream.tls);
    c.upstream.caFile = u.str("ca_file", "");
    checkReadable(u, "ca_file", c.upstream.caFile, u.get("ca_file"));
    c.upstream.serverName = u.str("server_name", "");
    c.upstream.certFile = u.str("cert_file", "");
    checkReadable(u, "cert_file", c.upstream.certFile, u.get("cert_file"));
    c.upstream.keyFile = u.str("key_file", "");
    checkReadable(u, "key_file", c.upstream.keyFile, u.get("key_file"));
    checkPrivateKeyMode(u, "key_file", c.upstream.keyFile, u.get("key_file"));
    c.upstream.connectTimeout = u.duration("connect_timeout", c.upstream.connectTimeout);
    if ((c.upstream.tls == UpstreamTls::VerifyCa || c.upstream.tls == UpstreamTls::VerifyFull) &&
        c.upstream.caFile.empty()) {
      u.fail(u.get("tls"), "tls", "verify-ca and verify-full need upstream.ca_file");
    }
    if (c.upstream.certFile.empty() != c.upstream.keyFile.empty()) {
      u.fail(u.get("cert_file"), "cert_file", "cert_file and key_file go together");
    }
    u.finish();
  }
  {
    auto t = top.map("tls");
    auto modeNode = t.get("mode");
    auto mode = modeNode && modeNode.IsScalar() ? modeNode.Scalar() : std::string("disable");
    if (mode == "disable") c.tls.mode = ClientTls::Disable;
    else if (mode == "allow" || mode == "prefer") c.tls.mode = ClientTls::Allow;
    else if (mode == "require") c.tls.mode = ClientTls::Require;
    else t.fail(modeNode, "mode", "expected one of disable, allow, require");
    c.tls.certFile = t.str("cert", "");
    checkReadable(t, "cert", c.tls.certFile, t.get("cert"));
    c.tls.keyFile = t.str("key", "");
    checkReadable(t, "key", c.tls.keyFile, t.get("key"));
    c.tls.caFile = t.str("client_ca", "");
    checkReadable(t, "client_ca", c.tls.caFile, t.get("client_ca"));
    if (c.tls.mode != ClientTls::Disable && (c.tls.certFile.empty() || c.tls.keyFile.empty())) {
      t.fail(modeNode, "mode", "TLS for clients needs tls.cert and tls.key");
    }
    t.finish();
  }
  {
    auto k = top.map("connections");
    c.connections.maxClients = static_cast<std::uint32_t>(k.uint("max_clients", c.connections.maxClients, 1, 1'000'000));
    c.connections.startupTimeout = k.duration("startup_timeout", c.connections.startupTimeout);
    if (c.connections.startupTimeout.count() == 0) k.fail(k.get("startup_timeout"), "startup_timeout", "must be positive");
    c.connections.maxMessageSize =
        static_cast<std::uint32_t>(k.size("max_message_size", c.connections.maxMessageSize, 1024, 0x3fffffff));
    c.connections.shutdownTimeout = k.duration("shutdown_timeout", c.connections.shutdownTimeout);
    k.finish();
  }
  {
    auto a = top.map("admin");
    c.admin.enabled = top.has("admin");
    c.admin.listen = readEndpoint(a, "listen", c.admin.listen);
    a.finish();
  }
  {
    auto a = top.map("analyzer");
    c.analyzer.maxQuerySize = static_cast<std::uint32_t>(a.size("max_query_size", c.analyzer.maxQuerySize, 1024, 64u << 20));
    c.analyzer.cacheSize = a.size("cache_size", c.analyzer.cacheSize, 0, 4ull << 30);
    a.finish();
  }
  {
    auto k = top.map("catalog");
    c.catalog.user = k.str("user", c.catalog.user);
    c.catalog.password = k.str("password", "");
    c.catalog.passwordEnv = k.str("password_env", "");
    if (!c.catalog.password.empty() && !c.catalog.passwordEnv.empty()) {
      k.fail(k.get("password_env"), "password_env", "give either password or password_env, not both");
    }
    c.catalog.refreshInterval = k.duration("refresh_interval", c.catalog.refreshInterval);
    c.catalog.loadTimeout = k.duration("load_timeout", c.catalog.loadTimeout);
    if (c.catalog.loadTimeout.count() < 100) k.fail(k.get("load_timeout"), "load_timeout", "must be at least 100ms");
    k.finish();
  }
  {
    auto m = top.map("masking");
    c.masking.key = m.str("key", "");
    c.masking.keyEnv = m.str("key_env", "");
    if (!c.masking.key.empty() && !c.masking.keyEnv.empty()) {
      m.fail(m.get("key_env"), "key_env", "give either key or key_env, not both");
    }
    if (!c.masking.key.empty() && c.masking.key.size() < 16) {
      m.fail(m.get("key"), "key", "the masking key must be at least 16 characters");
    }
    m.finish();
  }
  std::set<std::string> classes;
  {
    auto node = top.get("classify");
    if (node && !node.IsMap()) top.fail(node, "classify", "expected a mapping of schema.table.column: class");
    if (node) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        auto key = it->first.as<std::string>();
        int dots = 0;
        for (char ch : key) dots += ch == '.';
        if (dots != 2 || key.front() == '.' || key.back() == '.' || key.find("..") != std::string::npos) {
          failAt(path, it->first.Mark(), "classify." + key + ": expected schema.table.column");
        }
        if (!it->second.IsScalar() || it->second.Scalar().empty()) {
          failAt(path, it->second.Mark(), "classify." + key + ": expected a class name");
        }
        c.masking.classify[key] = it->second.Scalar();
        classes.insert(it->second.Scalar());
      }
    }
  }
  {
    auto node = top.get("roles");
    if (node && !node.IsMap()) top.fail(node, "roles", "expected a mapping of role names");
    if (node) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        RolePolicyConfig role;
        role.name = it->first.as<std::string>();
        role.line = it->first.Mark().line + 1;
        YamlMap r(it->second, "roles." + role.name, path);
        role.unmasked = r.boolean("unmasked", false);
        auto useNode = r.get("use_in_sql");
        std::string use = useNode && useNode.IsScalar() ? useNode.Scalar() : "refuse";
        if (use == "allow") role.allowSqlUse = true;
        else if (use == "rewrite") r.fail(useNode, "use_in_sql", "rewrite is not supported yet: use refuse or allow");
        else if (use != "refuse") r.fail(useNode, "use_in_sql", "expected refuse or allow");
        auto modeNode = r.get("mode");
        std::string mode = modeNode && modeNode.IsScalar() ? modeNode.Scalar() : "enforce";
        if (mode != "enforce" && mode != "monitor") r.fail(modeNode, "mode", "expected enforce or monitor");
        role.monitor = mode == "monitor";
        auto maskNode = r.get("mask");
        if (maskNode && !maskNode.IsMap()) r.fail(maskNode, "mask", "expected a mapping of class: strategy");
        if (maskNode) {
          for (auto m = maskNode.begin(); m != maskNode.end(); ++m) {
            auto cls = m->first.as<std::string>();
            if (cls != "*" && !classes.count(cls)) {
              failAt(path, m->first.Mark(),
                     "roles." + role.name + ".mask." + cls + ": class '" + cls + "' is not used in classify");
            }
            StrategySpec spec;
            std::string err;
            if (!m->second.IsScalar() || !parseStrategySpec(m->second.Scalar(), spec, err)) {
              failAt(path, m->second.Mark(), "roles." + role.name + ".mask." + cls + ": " +
                                                 (err.empty() ? "expected a strategy" : err));
            }
            role.mask[cls] = spec;
          }
        }
        if (role.unmasked && !role.mask.empty()) r.fail(maskNode, "mask", "an unmasked role takes no mask");
        auto allowNode = r.get("allow");
        if (allowNode) {
          if (!allowNode.IsSequence()) r.fail(allowNode, "allow", "expected a list of gate rules");
          for (const auto& a : allowNode) {
            auto rule = a.as<std::string>();
            bool known = false;
            for (auto* k : kGateRules) known = known || rule == k;
            if (!known) failAt(path, a.Mark(), "roles." + role.name + ".allow: unknown gate rule '" + rule + "'");
            role.allowRules.insert(rule);
          }
        }
        if (r.has("limits")) {
          auto l = r.map("limits");
          role.hasLimits = true;
          role.limits = readLimits(l);
        }
        auto trusted = r.get("trusted_functions");
        if (trusted) {
          if (!trusted.IsSequence()) r.fail(trusted, "trusted_functions", "expected a list of function names");
          for (const auto& f : trusted) role.trustedFunctions.insert(f.as<std::string>());
        }
        r.finish();
        c.masking.roles[role.name] = role;
      }
    }
    if (!c.masking.roles.count("default")) {
      RolePolicyConfig def;
      def.name = "default";
      def.mask["*"] = StrategySpec{"redact", {}};
      c.masking.roles["default"] = def;
    }
  }
  {
    auto x = top.map("exfiltration");
    auto modeNode = x.get("mode");
    std::string mode = modeNode && modeNode.IsScalar() ? modeNode.Scalar() : "enforce";
    if (mode != "enforce" && mode != "monitor") x.fail(modeNode, "mode", "expected enforce or monitor");
    c.exfiltration.monitorOnly = mode == "monitor";
    auto action = [&](const char* key) { return readAction(x, key, x.get(key)); };
    c.exfiltration.unboundedRead = action("unbounded_read");
    c.exfiltration.selectStar = action("select_star");
    c.exfiltration.copyTo = action("copy_to");
    c.exfiltration.maxLimit = static_cast<std::int64_t>(x.uint("max_limit", 1000, 1, 1ull << 40));
    if (x.has("enumeration")) {
      auto e = x.map("enumeration");
      c.exfiltration.enumeration = readAction(e, "action", e.get("action"));
      c.exfiltration.enumerationMaxQueries =
          static_cast<std::uint32_t>(e.uint("max_queries", c.exfiltration.enumerationMaxQueries, 1, 1'000'000));
      c.exfiltration.enumerationWindow = e.duration("window", c.exfiltration.enumerationWindow);
      if (c.exfiltration.enumerationWindow.count() < 1000) e.fail(e.get("window"), "window", "must be at least 1s");
      e.finish();
    }
    if (x.has("distinct_rows")) {
      auto d = x.map("distinct_rows");
      c.exfiltration.distinctRows = readAction(d, "action", d.get("action"));
      c.exfiltration.distinctRowsMax = d.uint("max_rows", c.exfiltration.distinctRowsMax, 1, 1ull << 40);
      c.exfiltration.distinctRowsWindow = d.duration("window", c.exfiltration.distinctRowsWindow);
      if (c.exfiltration.distinctRowsWindow.count() < 1000) d.fail(d.get("window"), "window", "must be at least 1s");
      d.finish();
    }
    c.exfiltration.exempt = readRoleList(x, "exempt", c.masking.roles);
    x.finish();
  }
  {
    auto a = top.map("alerts");
    c.alerts.auditFile = a.str("audit_file", "");
    c.alerts.auditFileMaxBytes = a.size("audit_file_max_size", c.alerts.auditFileMaxBytes, 1024, 1ull << 40);
    c.alerts.auditFileCount = static_cast<std::uint32_t>(a.uint("audit_file_count", c.alerts.auditFileCount, 1, 1000));
    c.alerts.largePullRows = a.uint("large_pull_rows", 0, 0, 1ull << 40);
    c.alerts.maxPerSecond = static_cast<std::uint32_t>(a.uint("max_per_second", c.alerts.maxPerSecond, 1, 1'000'000));
    if (a.has("webhook")) {
      auto w = a.map("webhook");
      auto urlNode = w.get("url");
      c.alerts.webhook.url = urlNode && urlNode.IsScalar() ? urlNode.Scalar() : "";
      if (!parseWebhookUrl(c.alerts.webhook.url, c.alerts.webhook)) {
        w.fail(urlNode, "url", "expected http://host[:port]/path");
      }
      c.alerts.webhook.queueSize = static_cast<std::uint32_t>(w.uint("queue_size", c.alerts.webhook.queueSize, 1, 1'000'000));
      c.alerts.webhook.retries = static_cast<std::uint32_t>(w.uint("retries", c.alerts.webhook.retries, 0, 100));
      c.alerts.webhook.timeout = w.duration("timeout", c.alerts.webhook.timeout);
      if (c.alerts.webhook.timeout.count() < 10) w.fail(w.get("timeout"), "timeout", "must be at least 10ms");
      c.alerts.webhook.backoff = w.duration("backoff", c.alerts.webhook.backoff);
      w.finish();
    }
    a.finish();
  }
  {
    auto k = top.map("canaries");
    auto values = k.get("values");
    if (values) {
      if (!values.IsSequence()) k.fail(values, "values", "expected a list of strings");
      for (const auto& v : values) {
        if (!v.IsScalar() || v.Scalar().size() < 6) {
          failAt(path, v.Mark(), "canaries.values: each canary must be a string of at least 6 characters");
        }
        c.canaries.values.push_back(v.Scalar());
      }
    }
    c.canaries.lockout = k.duration("lockout", c.canaries.lockout);
    c.canaries.exempt = readRoleList(k, "exempt", c.masking.roles);
    k.finish();
  }
  {
    auto modeNode = top.get("mode");
    std::string mode = modeNode && modeNode.IsScalar() ? modeNode.Scalar() : "enforce";
    if (mode != "enforce" && mode != "monitor") top.fail(modeNode, "mode", "expected enforce or monitor");
    c.monitor = mode == "monitor";
  }
  {
    auto id = top.map("identity");
    auto cn = id.get("client_cert_cn");
    if (cn) {
      if (!cn.IsMap()) id.fail(cn, "client_cert_cn", "expected a mapping of certificate CN: role");
      for (auto it = cn.begin(); it != cn.end(); ++it) {
        auto role = it->second.as<std::string>();
        if (!c.masking.roles.count(role)) {
          failAt(path, it->second.Mark(), "identity.client_cert_cn: role '" + role + "' is not defined in roles");
        }
        c.masking.clientCertRoles[it->first.as<std::string>()] = role;
      }
    }
    id.finish();
  }
  if (!c.masking.classify.empty() && c.masking.resolvedKey().empty()) {
    bool needsKey = false;
    for (const auto& [_, role] : c.masking.roles) {
      for (const auto& [__, spec] : role.mask) needsKey = needsKey || spec.name == "hash" || spec.name == "tokenize";
    }
    if (needsKey) {
      throw ConfigError(path + ": masking.key or masking.key_env is required by the hash and tokenize strategies" +
                        (c.masking.keyEnv.empty() ? std::string() : " (environment variable " + c.masking.keyEnv + " is empty)"));
    }
  }
  {
    auto l = top.map("log");
    c.log.level = l.str("level", c.log.level);
    static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    bool known = false;
    for (auto* lv : kLevels) known = known || c.log.level == lv;
    if (!known) l.fail(l.get("level"), "level", "expected trace, debug, info, warn, error, critical or off");
    l.finish();
  }
  top.finish();
  return c;
}

}  // namespace

Config loadConfigText(const std::string& text, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    failAt(path, e.mark, e.msg);
  }
  if (root.IsNull()) return parse(YAML::Node(YAML::NodeType::Map), path);
  try {
    return parse(root, path);
  } catch (const YAML::Exception& e) {
    failAt(path, e.mark, e.msg);
  }
}

const LimitsConfig& limitsFor(const Config& c, const std::string& policyRole) {
  static const LimitsConfig kNone;
  auto it = c.masking.roles.find(policyRole);
  if (it != c.masking.roles.end() && it->second.hasLimits) return it->second.limits;
  auto def = c.masking.roles.find("default");
  if (def != c.masking.roles.end() && def->second.hasLimits) return def->second.limits;
  return kNone;
}

Config loadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open configuration file");
  std::stringstream ss;
  ss << in.rdbuf();
  return loadConfigText(ss.str(), path);
}

}  // namespace pgveil::config
