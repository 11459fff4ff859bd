#include "config/yaml_reader.hpp"

#include <cctype>
#include <limits>

#include "config/config.hpp"

namespace pgveil::config {

void failAt(const std::string& file, const YAML::Mark& mark, const std::string& message) {
  std::string where = file;
  if (!mark.is_null()) where += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
  throw ConfigError(where + ": " + message);
}

YamlMap::YamlMap(const YAML::Node& node, std::string path, std::string file)
    : node_(node), path_(std::move(path)), file_(std::move(file)) {
  if (node_ && !node_.IsNull() && !node_.IsMap()) {
    failAt(file_, node_.Mark(), (path_.empty() ? std::string("top level") : path_) + ": expected a mapping");
  }
}

std::string YamlMap::keyPath(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

void YamlMap::fail(const YAML::Node& at, const std::string& key, const std::string& what) const {
  failAt(file_, at ? at.Mark() : node_.Mark(), keyPath(key) + ": " + what);
}

bool YamlMap::has(const std::string& key) const { return node_ && node_.IsMap() && node_[key]; }

YAML::Node YamlMap::get(const std::string& key) {
  used_.insert(key);
  if (!node_ || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node n = node_[key];
  // `key:` with no value means the default, like an absent key.
  if (n && n.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
  return n;
}

std::string YamlMap::str(const std::string& key, const std::string& def) {
  auto n = get(key);
  if (!n) return def;
  if (!n.IsScalar()) fail(n, key, "expected a string");
  return n.Scalar();
}

bool YamlMap::boolean(const std::string& key, bool def) {
  auto n = get(key);
  if (!n) return def;
  const auto& s = n.IsScalar() ? n.Scalar() : std::string();
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  fail(n, key, "expected true or false");
}

namespace {
bool parseUnsigned(const std::string& s, std::uint64_t& out, std::size_t& end) {
  out = 0;
  end = 0;
  while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) {
    auto d = static_cast<std::uint64_t>(s[end] - '0');
    if (out > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    out = out * 10 + d;
    ++end;
  }
  return end > 0;
}
}  // namespace

std::uint64_t YamlMap::uint(const std::string& key, std::uint64_t def, std::uint64_t min, std::uint64_t max) {
  auto n = get(key);
  if (!n) return def;
  if (!n.IsScalar()) fail(n, key, "expected a whole number");
  std::uint64_t v = 0;
  std::size_t end = 0;
  if (!parseUnsigned(n.Scalar(), v, end) || end != n.Scalar().size()) fail(n, key, "expected a whole number");
  if (v < min || v > max) {
    fail(n, key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return v;
}

std::chrono::milliseconds YamlMap::duration(const std::string& key, std::chrono::milliseconds def) {
  auto n = get(key);
  if (!n) return def;
  if (!n.IsScalar()) fail(n, key, "expected a duration such as 500ms, 10s, 5m or 1h");
  const auto& s = n.Scalar();
  std::uint64_t v = 0;
  std::size_t end = 0;
  if (!parseUnsigned(s, v, end)) fail(n, key, "expected a duration such as 500ms, 10s, 5m or 1h");
  auto unit = s.substr(end);
  std::uint64_t mult = 0;
  if (unit == "ms") mult = 1;
  else if (unit == "s" || unit.empty()) mult = 1000;
  else if (unit == "m" || unit == "min") mult = 60'000;
  else if (unit == "h") mult = 3'600'000;
  else fail(n, key, "unknown duration unit '" + unit + "' (use ms, s, m or h)");
  if (v > 30ull * 24 * 3'600'000 / mult) fail(n, key, "duration too long (at most 30 days)");
  return std::chrono::milliseconds(v * mult);
}

std::uint64_t YamlMap::size(const std::string& key, std::uint64_t def, std::uint64_t min, std::uint64_t max) {
  auto n = get(key);
  if (!n) return def;
  if (!n.IsScalar()) fail(n, key, "expected a size such as 8192, 64kB or 16MB");
  const auto& s = n.Scalar();
  std::uint64_t v = 0;
  std::size_t end = 0;
  if (!parseUnsigned(s, v, end)) fail(n, key, "expected a size such as 8192, 64kB or 16MB");
  auto unit = s.substr(end);
  std::uint64_t mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "kB" || unit == "KB" || unit == "KiB") mult = 1024;
  else if (unit == "MB" || unit == "MiB") mult = 1024 * 1024;
  else if (unit == "GB" || unit == "GiB") mult = 1024ull * 1024 * 1024;
  else fail(n, key, "unknown size unit '" + unit + "' (use B, kB, MB or GB)");
  if (v > max / mult + 1) fail(n, key, "must be at most " + std::to_string(max) + " bytes");
  auto bytes = v * mult;
  if (bytes < min || bytes > max) {
    fail(n, key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + " bytes");
  }
  return bytes;
}

YamlMap YamlMap::map(const std::string& key) {
  auto n = get(key);
  if (n && !n.IsNull() && !n.IsMap()) fail(n, key, "expected a mapping");
  return YamlMap(n, keyPath(key), file_);
}

void YamlMap::finish() const {
  if (!node_ || !node_.IsMap()) return;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    auto key = it->first.as<std::string>();
    if (!used_.count(key)) failAt(file_, it->first.Mark(), "unknown key '" + keyPath(key) + "'");
  }
}

}  // namespace pgveil::config
