#include "config/config.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

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

Config parse(const YAML::Node& root, const std::string& path) {
  Config c;
  c.sourcePath = path;
  YamlMap top(root, "", path);
  c.listen = readEndpoint(top, "listen", c.listen);
  c.workers = static_cast<unsigned>(top.uint("workers", 0, 0, 256));

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

Config loadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open configuration file");
  std::stringstream ss;
  ss << in.rdbuf();
  return loadConfigText(ss.str(), path);
}

}  // namespace pgveil::config
