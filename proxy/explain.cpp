#include "proxy/explain.hpp"

#include <sstream>

#include "masking/analyzer.hpp"
#include "masking/describe.hpp"
#include "masking/json_text.hpp"
#include "masking/policy.hpp"
#include "proxy/catalog_service.hpp"

namespace pgveil::proxy {

namespace {

std::string qualified(const masking::Catalog& c, masking::ColumnId id) {
  const auto* r = c.byOid(id.relOid);
  const auto* col = r ? r->columnByAttnum(id.attnum) : nullptr;
  if (!r || !col) return "#" + std::to_string(id.relOid) + "." + std::to_string(id.attnum);
  return r->schema + "." + r->name + "." + col->name;
}

// What the masker would do with each output, from the lineage alone (as if PostgreSQL reported
// a table only for plain columns).
masking::ResultPlan planFor(const masking::StatementAnalysis& s, const masking::Policy& p,
                            const masking::Classification& cls, const masking::Catalog& c) {
  protocol::RowDescriptionMsg rd;
  for (const auto& o : s.outputs) {
    protocol::FieldDescription f;
    f.typeOid = 25;
    if (o.lineage.uses.size() == 1 && o.lineage.uses[0].how == masking::Derivation::Direct && !o.lineage.unknown) {
      f.tableOid = o.lineage.uses[0].column.relOid;
      f.column = o.lineage.uses[0].column.attnum;
      const auto* r = c.byOid(f.tableOid);
      const auto* col = r ? r->columnByAttnum(f.column) : nullptr;
      if (col) f.typeOid = col->typeOid;
    }
    rd.fields.push_back(f);
  }
  return masking::planResult(rd, &s, p, cls, c);
}

}  // namespace

int explainQuery(const config::Config& cfg, const std::string& role, const std::string& database,
                 const std::string& sql, std::ostream& out, std::ostream& err) {
  std::shared_ptr<const masking::Catalog> catalog;
  try {
    catalog = loadCatalog(cfg, database, 1);
  } catch (const std::exception& e) {
    err << "pgveil explain: " << e.what() << "\n";
    return 1;
  }
  masking::PolicySet policies(cfg.masking);
  auto policy = policies.forRole(role, catalog.get());
  masking::Classification cls(cfg.masking, *catalog);
  masking::Analyzer analyzer({.maxQueryBytes = cfg.analyzer.maxQuerySize, .maxJsonDepth = 2000});
  auto a = analyzer.analyze(sql, {catalog.get(), {}});
  bool maskingOn = !cfg.masking.classify.empty();
  auto verdict = maskingOn ? masking::gate(*a, *policy, cls, *catalog) : masking::Verdict{};

  std::ostringstream o;
  o << "{\n  \"role\": " << masking::jsonQuote(role) << ",\n  \"database\": " << masking::jsonQuote(database) << ",\n  \"policy\": "
    << masking::jsonQuote(policy->role()) << ",\n  \"unmasked\": " << (policy->unmasked() || !maskingOn ? "true" : "false")
    << ",\n  \"use_in_sql\": " << masking::jsonQuote(policy->allowSqlUse() ? "allow" : "refuse") << ",\n  \"verdict\": {\"allowed\": "
    << (verdict.allowed ? "true" : "false");
  if (!verdict.allowed) o << ", \"rule\": " << masking::jsonQuote(verdict.rule) << ", \"message\": " << masking::jsonQuote(verdict.message);
  o << "},\n  \"parsed\": " << (a->parsed ? "true" : "false");
  if (!a->error.empty()) o << ",\n  \"error\": " << masking::jsonQuote(a->error);
  if (a->parsed) {
    o << ",\n  \"fingerprint\": " << masking::jsonQuote(a->fingerprint()) << ",\n  \"normalized\": " << masking::jsonQuote(a->normalized());
  }
  o << ",\n  \"statements\": [";
  for (std::size_t si = 0; si < a->statements.size(); ++si) {
    const auto& s = a->statements[si];
    auto plan = planFor(s, *policy, cls, *catalog);
    o << (si ? "," : "") << "\n    {\"kind\": " << masking::jsonQuote(masking::statementKindName(s.kind));
    if (!s.name.empty()) o << ", \"name\": " << masking::jsonQuote(s.name);
    if (!s.parameter.empty()) o << ", \"parameter\": " << masking::jsonQuote(s.parameter);
    o << ",\n     \"outputs\": [";
    for (std::size_t i = 0; i < s.outputs.size(); ++i) {
      const auto& out = s.outputs[i];
      o << (i ? "," : "") << "\n       {\"name\": " << masking::jsonQuote(out.name) << ", \"sources\": [";
      for (std::size_t u = 0; u < out.lineage.uses.size(); ++u) {
        const auto& use = out.lineage.uses[u];
        const auto* c = cls.classOf(use.column);
        o << (u ? ", " : "") << "{\"column\": " << masking::jsonQuote(qualified(*catalog, use.column))
          << ", \"derivation\": " << masking::jsonQuote(masking::derivationName(use.how));
        if (c) o << ", \"class\": " << masking::jsonQuote(*c);
        o << "}";
      }
      o << "], \"unknown\": " << (out.lineage.unknown ? "true" : "false");
      bool masked = i < plan.fields.size() && plan.fields[i].mask && !policy->unmasked() && maskingOn;
      o << ", \"masked_with\": " << (masked ? masking::jsonQuote(plan.fields[i].strategy.name()) : std::string("null")) << "}";
    }
    o << "],\n     \"predicates\": [";
    for (std::size_t i = 0; i < s.predicateColumns.size(); ++i) {
      o << (i ? ", " : "") << masking::jsonQuote(qualified(*catalog, s.predicateColumns[i]));
    }
    o << "],\n     \"reads\": [";
    for (std::size_t i = 0; i < s.reads.size(); ++i) {
      const auto* r = catalog->byOid(s.reads[i].relOid);
      o << (i ? ", " : "") << "{\"relation\": " << masking::jsonQuote(r ? r->schema + "." + r->name : "?")
        << ", \"filtered\": " << (s.reads[i].filtered ? "true" : "false") << "}";
    }
    o << "],\n     \"flags\": " << masking::jsonQuote(masking::describeFlags(s));
    if (s.hasLimit) o << ", \"limit\": " << (s.limit ? std::to_string(*s.limit) : std::string("null"));
    if (!s.notes.empty()) {
      o << ", \"notes\": [";
      for (std::size_t i = 0; i < s.notes.size(); ++i) o << (i ? ", " : "") << masking::jsonQuote(s.notes[i]);
      o << "]";
    }
    o << "}";
  }
  o << "\n  ]\n}\n";
  out << o.str();
  return verdict.allowed ? 0 : 3;
}

}  // namespace pgveil::proxy
