#include "masking/sql_parser.hpp"

#include <pg_query.h>

#include <cstring>

namespace pgveil::masking {

ParseResult parseSql(const std::string& sql) {
  ParseResult out;
  PgQueryParseResult r = pg_query_parse(sql.c_str());
  if (r.error) {
    out.error = r.error->message ? r.error->message : "syntax error";
    out.errorPosition = r.error->cursorpos;
  } else {
    out.ok = true;
    if (r.parse_tree) {
      // Room for simdjson's padding so that it can parse in place without copying.
      std::size_t n = std::strlen(r.parse_tree);
      out.json.reserve(n + 64);
      out.json.assign(r.parse_tree, n);
    }
  }
  pg_query_free_parse_result(r);
  return out;
}

Fingerprint fingerprintSql(const std::string& sql) {
  Fingerprint out;
  PgQueryFingerprintResult r = pg_query_fingerprint(sql.c_str());
  if (!r.error) {
    out.ok = true;
    out.value = r.fingerprint;
    out.hex = r.fingerprint_str ? r.fingerprint_str : "";
  }
  pg_query_free_fingerprint_result(r);
  return out;
}

std::string normalizeSql(const std::string& sql) {
  PgQueryNormalizeResult r = pg_query_normalize(sql.c_str());
  std::string out;
  if (!r.error && r.normalized_query) out = r.normalized_query;
  pg_query_free_normalize_result(r);
  return out;
}

}  // namespace pgveil::masking
