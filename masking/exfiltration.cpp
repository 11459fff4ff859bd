#include "masking/exfiltration.hpp"

namespace pgveil::masking {

namespace {

std::string relationName(const Catalog& catalog, std::uint32_t oid) {
  const auto* r = catalog.byOid(oid);
  return r ? r->schema + "." + r->name : "#" + std::to_string(oid);
}

void checkStatement(const StatementAnalysis& s, const config::ExfiltrationConfig& cfg, const Classification& cls,
                    const Catalog& catalog, std::vector<ExfiltrationFinding>& out) {
  bool reading = s.kind == StatementKind::Select || s.kind == StatementKind::CopyTo ||
                 s.kind == StatementKind::DeclareCursor || s.kind == StatementKind::Explain;
  if (!reading) return;
  bool classifiedOutput = false;
  for (const auto& o : s.outputs) classifiedOutput = classifiedOutput || cls.touches(o.lineage);
  if (s.kind == StatementKind::CopyTo && cfg.copyTo != config::RuleAction::Off && classifiedOutput) {
    for (const auto& r : s.reads) {
      if (cls.relationClassified(r.relOid)) {
        out.push_back({"copy_to", cfg.copyTo, "COPY TO of " + relationName(catalog, r.relOid)});
        break;
      }
    }
  }
  if (s.selectStar && cfg.selectStar != config::RuleAction::Off && s.kind != StatementKind::CopyTo) {
    for (const auto& r : s.reads) {
      if (cls.relationClassified(r.relOid)) {
        out.push_back({"select_star", cfg.selectStar, "SELECT * on " + relationName(catalog, r.relOid)});
        break;
      }
    }
  }
  if (cfg.unboundedRead != config::RuleAction::Off && s.kind != StatementKind::Explain) {
    bool bounded = s.hasLimit && s.limit && *s.limit <= cfg.maxLimit;
    if (!bounded) {
      for (const auto& r : s.reads) {
        if (!r.filtered && cls.relationClassified(r.relOid)) {
          out.push_back({"unbounded_read", cfg.unboundedRead,
                         "read of " + relationName(catalog, r.relOid) + " without a restricting WHERE and without LIMIT <= " +
                             std::to_string(cfg.maxLimit)});
          break;
        }
      }
    }
  }
}

}  // namespace

std::vector<ExfiltrationFinding> checkExfiltration(const Analysis& analysis, const config::ExfiltrationConfig& cfg,
                                                   const Classification& cls, const Catalog& catalog) {
  std::vector<ExfiltrationFinding> out;
  for (const auto& s : analysis.statements) {
    checkStatement(s, cfg, cls, catalog, out);
    if (s.inner) checkStatement(*s.inner, cfg, cls, catalog, out);
  }
  return out;
}

}  // namespace pgveil::masking
