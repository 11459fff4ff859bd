#pragma once
// What the analyzer knows about one SQL text: per statement, its kind, the lineage of every
// output column, the columns used in predicates, relations read and written, and risk flags.
// Callers treat `unknown` lineage as sensitive (fail closed).

#include <compare>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace pgveil::masking {

struct ColumnId {
  std::uint32_t relOid = 0;
  std::int16_t attnum = 0;
  auto operator<=>(const ColumnId&) const = default;
};

// How an output value derives from a source column, weakest first. Count reveals no value
// (count(x)); Direct is the value itself; Aggregate reveals values (min, max, string_agg ...);
// Expression is anything computed from it (casts, functions, operators, CASE, set operations).
enum class Derivation : std::uint8_t { Count = 0, Direct = 1, Aggregate = 2, Expression = 3 };
const char* derivationName(Derivation d);

struct SourceUse {
  ColumnId column;
  Derivation how = Derivation::Direct;
  bool operator==(const SourceUse&) const = default;
};

struct Lineage {
  std::vector<SourceUse> uses;  // sorted by column, one entry per column (strongest derivation)
  bool unknown = false;         // could not be decided: treat as sensitive

  void add(ColumnId c, Derivation how);
  void merge(const Lineage& other);
  // The same sources seen through an operation: Count stays Count (it reveals nothing), other
  // derivations become at least `how`; wrapping in an aggregate of kind Count makes all Count.
  [[nodiscard]] Lineage wrapped(Derivation how) const;
  [[nodiscard]] bool empty() const { return uses.empty() && !unknown; }
};

struct OutputColumn {
  std::string name;
  Lineage lineage;
};

enum class StatementKind {
  Empty, Select, Insert, Update, Delete, Merge, CopyTo, CopyFrom, Ddl, Set, Reset, Show, Transaction,
  Prepare, Execute, Deallocate, DeclareCursor, Fetch, ClosePortal, Call, Do, Listen, Notify, Unlisten,
  Explain, Other,
};
const char* statementKindName(StatementKind k);

struct RelationRead {
  std::uint32_t relOid = 0;
  bool filtered = false;  // a WHERE or join condition that references the relation restricts it
  bool operator==(const RelationRead&) const = default;
};

struct StatementAnalysis {
  StatementKind kind = StatementKind::Other;
  std::string nodeType;       // libpg_query node name, e.g. "SelectStmt"
  int location = 0;           // byte offset of the statement in the text
  int length = 0;             // 0: to the end
  bool returnsRows = false;
  bool hasReturning = false;
  bool selectStar = false;    // `*` or `t.*` in an output list
  std::string parameter;      // SET/RESET/SHOW: parameter name (lower case); set_config: first argument
  std::vector<std::string> setConfigParameters;  // every set_config call's parameter ("?" when not constant)
  std::string parameterValue; // SET: the value as written, when a single constant
  std::string name;           // PREPARE/EXECUTE/DEALLOCATE statement, DECLARE/FETCH/CLOSE cursor, LISTEN channel
  std::vector<OutputColumn> outputs;
  bool outputsIncomplete = false;  // the number of output columns is not known (unknown relation or function)
  std::vector<ColumnId> predicateColumns;  // WHERE, JOIN ON/USING, GROUP BY, HAVING, ORDER BY, window, DISTINCT ON
  bool predicatesUnknown = false;
  std::vector<RelationRead> reads;
  std::vector<std::uint32_t> writes;
  Lineage writtenValues;      // lineage of values written by INSERT/UPDATE/MERGE/CREATE TABLE AS/VIEW
  Lineage sideChannelValues;  // arguments of set_config, pg_notify, setval, locks, unknown functions
  bool hasLimit = false;
  std::optional<std::int64_t> limit;  // constant LIMIT; nullopt with hasLimit: a parameter or expression
  // Flags.
  bool copiesOutOfReach = false;   // CREATE TABLE AS, SELECT INTO, CREATE VIEW/FUNCTION/RULE/TRIGGER, DO, INSERT ... SELECT
  bool changesIdentity = false;    // SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE, set_config('role'...), GRANT role
  bool readsValueCatalogs = false; // pg_stats, pg_statistic, pg_stat_activity, pg_largeobject ...
  bool fileOrNetworkAccess = false;// pg_read_file, lo_export, dblink, COPY ... PROGRAM / file
  bool dynamicSql = false;         // query_to_xml and friends, EXECUTE of text
  bool unknownRelations = false;   // a relation not in the catalog snapshot
  std::vector<std::string> functions;        // functions called that are not known built-ins
  std::vector<std::string> riskyFunctions;   // built-ins behind the flags above
  std::vector<std::string> notes;            // why something is unknown
  // COPY: output format and the options that change its layout.
  std::string copyFormat;          // "text", "csv" or "binary"
  char copyDelimiter = 0;          // 0: the format's default
  bool copyHeader = false;
  bool copyNonDefaultQuoting = false;  // QUOTE/ESCAPE/NULL/FORCE_QUOTE: layout pgveil does not parse
  std::shared_ptr<const StatementAnalysis> inner;  // PREPARE/DECLARE/EXPLAIN/COPY (query): the query itself
};

struct Analysis {
  std::string sql;
  bool parsed = false;
  std::string error;   // parse error, or why analysis was refused (size, depth)
  bool refused = false;  // over a bound: never parsed
  // Proved on the parse tree: one SELECT/INSERT/UPDATE/DELETE whose every literal (as found by
  // literalShape) sits where its value cannot change this analysis. Texts of the same shape may
  // then share it (AnalysisCache::find with a shape).
  // CAUTION: an analysis found by shape was made from another text: `sql` and the statements'
  // location/length are that text's (fingerprint() and normalized() are the same for both).
  // Code that needs the text itself must take it from the message, never from here.
  bool literalInsensitive = false;
  std::vector<StatementAnalysis> statements;

  // Fingerprint (hex) and normalized text (constants replaced by $n) are computed on first use:
  // they cost a second parse and most queries never need them.
  const std::string& fingerprint() const;
  const std::string& normalized() const;
  [[nodiscard]] std::size_t memoryEstimate() const;

 private:
  mutable std::once_flag fingerprintOnce_;
  mutable std::once_flag normalizedOnce_;
  mutable std::string fingerprint_;
  mutable std::string normalized_;
};

}  // namespace pgveil::masking
