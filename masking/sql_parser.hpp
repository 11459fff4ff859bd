#pragma once
// RAII wrapper over libpg_query (PostgreSQL 15 parser): parse to JSON, fingerprint, normalize,
// split. The only place that includes pg_query.h.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgveil::masking {

struct ParseResult {
  bool ok = false;
  std::string json;   // parse tree (libpg_query JSON output)
  std::string error;  // parser message when !ok
  int errorPosition = 0;
};

[[nodiscard]] ParseResult parseSql(const std::string& sql);

struct Fingerprint {
  bool ok = false;
  std::uint64_t value = 0;
  std::string hex;
};
[[nodiscard]] Fingerprint fingerprintSql(const std::string& sql);

// Constants replaced by $n; empty when the text does not parse.
[[nodiscard]] std::string normalizeSql(const std::string& sql);

}  // namespace pgveil::masking
