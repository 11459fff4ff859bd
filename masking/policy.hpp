#pragma once
// Compiled masking policy: which columns are classified (resolved against a catalog snapshot),
// what each role may see, the statement gate (refuse before the query runs) and the result
// plan (mask while rows flow). Pure: no I/O.

#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "config/config.hpp"
#include "masking/analysis.hpp"
#include "masking/catalog.hpp"
#include "masking/strategy.hpp"
#include "protocol/messages.hpp"

namespace pgveil::masking {

// `classify:` resolved to OIDs and attnums of one catalog snapshot. Views and materialized
// views inherit the classes of the columns they expose (through the analyzer).
class Classification {
 public:
  Classification(const config::MaskingConfig& cfg, const Catalog& catalog);

  [[nodiscard]] const std::string* classOf(ColumnId c) const;
  [[nodiscard]] bool relationClassified(std::uint32_t relOid) const;
  // Classes reached by a lineage; `how` of the strongest use per class.
  [[nodiscard]] bool touches(const Lineage& l) const;
  [[nodiscard]] bool readsClassified(const StatementAnalysis& s) const;
  [[nodiscard]] std::size_t size() const { return byColumn_.size(); }

 private:
  static std::uint64_t key(ColumnId c) {
    return (std::uint64_t{c.relOid} << 16) | static_cast<std::uint16_t>(c.attnum);
  }
  std::unordered_map<std::uint64_t, std::string> byColumn_;
  std::unordered_set<std::uint32_t> relations_;
};

class Policy {
 public:
  explicit Policy(const config::RolePolicyConfig& cfg);
  [[nodiscard]] const std::string& role() const { return role_; }
  [[nodiscard]] bool unmasked() const { return unmasked_; }
  [[nodiscard]] bool allowSqlUse() const { return allowSqlUse_; }
  [[nodiscard]] bool monitor() const { return monitor_; }  // exfiltration blocks become alerts
  [[nodiscard]] bool allows(std::string_view rule) const { return allowRules_.count(std::string(rule)) > 0; }
  [[nodiscard]] bool trusts(std::string_view fn) const;
  // The strategy for a class: the role's own entry, else its "*" entry, else redact.
  [[nodiscard]] const Strategy& strategyFor(const std::string& cls) const;

 private:
  std::string role_;
  bool unmasked_ = false;
  bool allowSqlUse_ = false;
  bool monitor_ = false;
  std::set<std::string> allowRules_;
  std::set<std::string> trusted_;
  std::unordered_map<std::string, Strategy> byClass_;
  Strategy fallback_;
};

class PolicySet {
 public:
  explicit PolicySet(const config::MaskingConfig& cfg);
  // The policy for an authenticated role: a client-certificate mapping if given, else the role's
  // own entry, else the nearest group role's entry (catalog membership), else `default`.
  [[nodiscard]] std::shared_ptr<const Policy> forRole(std::string_view role, const Catalog* catalog,
                                                      std::string_view certificateCn = {}) const;
  [[nodiscard]] const config::MaskingConfig& config() const { return cfg_; }

 private:
  config::MaskingConfig cfg_;
  std::unordered_map<std::string, std::shared_ptr<const Policy>> policies_;
};

struct Verdict {
  bool allowed = true;
  std::string rule;     // gate rule that refused
  std::string message;  // for the client: names the rule and the column, never a value
};

// The statement gate for a masked role, over every statement of a text.
[[nodiscard]] Verdict gate(const Analysis& analysis, const Policy& policy, const Classification& cls,
                           const Catalog& catalog);

struct FieldPlan {
  bool mask = false;
  Strategy strategy;
  std::uint32_t typeOid = 0;
  std::int16_t format = 0;
};

struct ResultPlan {
  std::vector<FieldPlan> fields;
  bool any = false;  // some field is masked: rows must be rewritten
  // Empty again, keeping the storage for the next result.
  void clear() {
    fields.clear();
    any = false;
  }
};

// Plans masking for one result from its RowDescription. `stmt` may be null (no analysis):
// then every field without a table OID is masked when in doubt.
[[nodiscard]] ResultPlan planResult(const protocol::RowDescriptionMsg& rd, const StatementAnalysis* stmt,
                                    const Policy& policy, const Classification& cls, const Catalog& catalog);
// The same into an existing plan, reusing its storage.
void planResult(const protocol::RowDescriptionMsg& rd, const StatementAnalysis* stmt, const Policy& policy,
                const Classification& cls, const Catalog& catalog, ResultPlan& plan);

// Plans masking for COPY TO output (no RowDescription: types from the catalog where known).
[[nodiscard]] ResultPlan planCopy(const StatementAnalysis& stmt, std::size_t columns, std::int16_t format,
                                  const Policy& policy, const Classification& cls, const Catalog& catalog);

// Rewrites one DataRow payload into a whole DataRow message appended to `out`.
// Returns false when the payload is malformed or does not match the plan.
[[nodiscard]] bool rewriteDataRow(const ResultPlan& plan, std::string_view payload, const ValueMasker& masker,
                                  std::string& out, std::string& scratch);

}  // namespace pgveil::masking
