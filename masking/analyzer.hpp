#pragma once
// Analyzer: SQL text -> Analysis, through libpg_query's JSON parse tree walked with simdjson.
// Pure and thread-safe (a parser per thread); bounded in query size and nesting depth.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "masking/analysis.hpp"
#include "masking/catalog.hpp"
#include "masking/literal_shape.hpp"

namespace pgveil::masking {

struct AnalyzerOptions {
  std::size_t maxQueryBytes = 1 << 20;  // larger texts are refused unparsed
  std::size_t maxJsonDepth = 2000;      // parse-tree nesting bound (about 1000 expression levels)
};

struct AnalyzeContext {
  const Catalog* catalog = nullptr;
  // The session's search_path, "$user" already replaced; empty means unknown: unqualified names
  // then resolve to every schema that has them.
  std::vector<std::string> searchPath;
};

class Analyzer {
 public:
  explicit Analyzer(AnalyzerOptions options = {}) : options_(options) {}
  // With `literals` (literalShape's output for this text), also decides literalInsensitive.
  [[nodiscard]] std::shared_ptr<const Analysis> analyze(std::string_view sql, const AnalyzeContext& ctx,
                                                        const std::vector<SqlLiteral>* literals = nullptr) const;
  [[nodiscard]] const AnalyzerOptions& options() const { return options_; }

 private:
  AnalyzerOptions options_;
};

// Built-in function knowledge (masking/functions.cpp).
enum class FunctionClass {
  Unknown,         // not a known built-in: its result has unknown lineage
  Scalar,          // result computed from its arguments only
  CountAggregate,  // count: reveals no value
  Aggregate,       // reveals values: min, max, string_agg, array_agg ...
  RankWindow,      // row_number, rank ...: reveals ordering only
  ValueWindow,     // lag, lead, first_value ...: reveals values
  SetReturning,    // unnest, generate_series, jsonb_each ... (scalar lineage)
  FileOrNetwork,   // pg_read_file, lo_export, dblink ...
  DynamicSql,      // query_to_xml and friends
  SetConfig,       // set_config
  NoLineage,       // now(), random(), version() ...: no source columns
  ValueCatalog,    // pg_stat_get_*: other sessions' query texts and the like
};
[[nodiscard]] FunctionClass classifyFunction(std::string_view schema, std::string_view name);

}  // namespace pgveil::masking
