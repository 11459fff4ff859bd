#pragma once
// Internal to config/: strict reading of YAML mappings with file:line:column errors.
// Keys not consumed by the reader are reported as unknown.

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>

namespace pgveil::config {

class YamlMap {
 public:
  YamlMap(const YAML::Node& node, std::string path, std::string file);

  [[nodiscard]] bool has(const std::string& key) const;
  [[nodiscard]] YAML::Node get(const std::string& key);  // marks the key as known

  std::string str(const std::string& key, const std::string& def);
  bool boolean(const std::string& key, bool def);
  std::uint64_t uint(const std::string& key, std::uint64_t def, std::uint64_t min, std::uint64_t max);
  std::chrono::milliseconds duration(const std::string& key, std::chrono::milliseconds def);
  std::uint64_t size(const std::string& key, std::uint64_t def, std::uint64_t min, std::uint64_t max);
  YamlMap map(const std::string& key);  // empty map when absent

  // Throws for every key present in the node that no accessor asked for.
  void finish() const;

  [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& what) const;
  [[nodiscard]] std::string keyPath(const std::string& key) const;
  [[nodiscard]] const std::string& file() const { return file_; }

 private:
  YAML::Node node_;
  std::string path_;
  std::string file_;
  std::set<std::string> used_;
};

[[noreturn]] void failAt(const std::string& file, const YAML::Mark& mark, const std::string& message);

}  // namespace pgveil::config
