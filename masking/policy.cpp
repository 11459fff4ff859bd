#include "masking/policy.hpp"

#include <cctype>

#include "protocol/bytes.hpp"

namespace pgveil::masking {

// ---------------------------------------------------------------- classification

Classification::Classification(const config::MaskingConfig& cfg, const Catalog& catalog) {
  for (const auto& [path, cls] : cfg.classify) {
    auto d1 = path.find('.');
    auto d2 = path.find('.', d1 + 1);
    auto schema = path.substr(0, d1);
    auto table = path.substr(d1 + 1, d2 - d1 - 1);
    auto column = path.substr(d2 + 1);
    const auto* rel = catalog.find(schema, table);
    if (!rel) continue;
    const auto* col = rel->column(column);
    if (!col) continue;
    byColumn_[key({rel->oid, col->attnum})] = cls;
    relations_.insert(rel->oid);
  }
}

const std::string* Classification::classOf(ColumnId c) const {
  auto it = byColumn_.find(key(c));
  return it == byColumn_.end() ? nullptr : &it->second;
}

bool Classification::relationClassified(std::uint32_t relOid) const { return relations_.count(relOid) > 0; }

bool Classification::touches(const Lineage& l) const {
  for (const auto& u : l.uses) {
    if (classOf(u.column)) return true;
  }
  return false;
}

bool Classification::readsClassified(const StatementAnalysis& s) const {
  for (const auto& r : s.reads) {
    if (relationClassified(r.relOid)) return true;
  }
  // RETURNING and rules return rows of the written relation.
  for (auto w : s.writes) {
    if (relationClassified(w)) return true;
  }
  return false;
}

// ---------------------------------------------------------------- policies

Policy::Policy(const config::RolePolicyConfig& cfg)
    : role_(cfg.name),
      unmasked_(cfg.unmasked),
      allowSqlUse_(cfg.allowSqlUse),
      monitor_(cfg.monitor),
      allowRules_(cfg.allowRules),
      trusted_(cfg.trustedFunctions) {
  for (const auto& [cls, spec] : cfg.mask) {
    auto s = makeStrategy(spec.name, spec.args);
    if (cls == "*") fallback_ = s;
    else byClass_[cls] = s;
  }
}

bool Policy::trusts(std::string_view fn) const { return trusted_.count(std::string(fn)) > 0; }

const Strategy& Policy::strategyFor(const std::string& cls) const {
  auto it = byClass_.find(cls);
  return it == byClass_.end() ? fallback_ : it->second;
}

PolicySet::PolicySet(const config::MaskingConfig& cfg) : cfg_(cfg) {
  for (const auto& [name, role] : cfg_.roles) policies_[name] = std::make_shared<const Policy>(role);
}

std::shared_ptr<const Policy> PolicySet::forRole(std::string_view role, const Catalog* catalog,
                                                 std::string_view certificateCn) const {
  if (!certificateCn.empty()) {
    auto it = cfg_.clientCertRoles.find(std::string(certificateCn));
    if (it != cfg_.clientCertRoles.end()) return policies_.at(it->second);
  }
  if (auto it = policies_.find(std::string(role)); it != policies_.end() && role != "default") return it->second;
  if (catalog) {
    // Nearest group first (rolesOf is breadth-first from the role itself).
    for (const auto& g : catalog->rolesOf(role)) {
      if (g == "default") continue;
      if (auto it = policies_.find(g); it != policies_.end()) return it->second;
    }
  }
  return policies_.at("default");
}

// ---------------------------------------------------------------- gate

namespace {

std::string columnLabel(const Catalog& catalog, ColumnId c) {
  const auto* r = catalog.byOid(c.relOid);
  const auto* col = r ? r->columnByAttnum(c.attnum) : nullptr;
  if (!r || !col) return "a classified column";
  return r->schema + "." + r->name + "." + col->name;
}

Verdict refuse(const char* rule, std::string detail) {
  return {false, rule, "pgveil: permission denied by rule " + std::string(rule) + ": " + detail};
}

Verdict gateStatement(const StatementAnalysis& s, const Policy& p, const Classification& cls, const Catalog& catalog) {
  auto allowed = [&](const char* rule) { return p.allows(rule); };
  if (s.changesIdentity && !allowed("identity_change")) {
    return refuse("identity_change", "changing the session's role or authorization is not allowed");
  }
  if (s.kind == StatementKind::Notify && !allowed("notify")) {
    return refuse("notify", "NOTIFY is not allowed for this role");
  }
  // Settings that change how the server reads SQL text, or that pgveil cannot follow.
  bool viaSetConfig = s.kind != StatementKind::Set && s.kind != StatementKind::Reset && !s.parameter.empty();
  if (s.parameter == "standard_conforming_strings" && (viaSetConfig || (s.kind == StatementKind::Set && s.parameterValue != "on")) &&
      !allowed("unanalyzable")) {
    return refuse("unanalyzable", "standard_conforming_strings must stay on: queries would no longer parse as analyzed");
  }
  if (s.parameter == "client_encoding" && !allowed("unanalyzable")) {
    std::string v = s.parameterValue;
    for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (viaSetConfig || (s.kind == StatementKind::Set && v != "utf8" && v != "utf-8" && v != "unicode")) {
      return refuse("unanalyzable", "client_encoding must stay UTF8: other encodings can hide quotes from the parser");
    }
  }
  if (viaSetConfig && (s.parameter == "search_path" || s.parameter == "?") && !allowed("unanalyzable")) {
    return refuse("unanalyzable", "set_config on search_path is not followed by pgveil: use SET search_path");
  }
  // Every set_config call of the statement, not only the last one.
  for (const auto& p : s.setConfigParameters) {
    if ((p == "client_encoding" || p == "standard_conforming_strings" || p == "search_path" || p == "?") &&
        !allowed("unanalyzable")) {
      return refuse("unanalyzable", "set_config on " + p + " is not allowed for this role");
    }
  }
  if (s.readsValueCatalogs && !allowed("value_catalog")) {
    return refuse("value_catalog", "catalogs that expose column values (pg_stats, pg_stat_activity, ...) are not allowed");
  }
  for (const auto& fn : s.riskyFunctions) {
    bool lo = fn.rfind("lo_", 0) == 0 || fn.find(".lo_") != std::string::npos || fn == "loread" || fn == "lowrite";
    if (lo && !allowed("large_object")) return refuse("large_object", "large-object function " + fn + " is not allowed");
  }
  if (s.fileOrNetworkAccess && !allowed("file_access")) {
    return refuse("file_access", "file, program or network access (" +
                                     (s.riskyFunctions.empty() ? std::string("?") : s.riskyFunctions[0]) + ") is not allowed");
  }
  if (s.dynamicSql && !allowed("dynamic_sql")) {
    return refuse("dynamic_sql", "statements that run SQL given as text (DO, functions, query_to_xml, ...) are not allowed");
  }
  for (const auto& fn : s.functions) {
    if (!p.trusts(fn) && !allowed("untrusted_function")) {
      return refuse("untrusted_function", "function " + fn + " is not a known built-in nor listed in trusted_functions");
    }
  }
  if (cls.touches(s.sideChannelValues) && !allowed("copy_out")) {
    for (const auto& u : s.sideChannelValues.uses) {
      if (cls.classOf(u.column)) {
        return refuse("copy_out", "sending " + columnLabel(catalog, u.column) +
                                      " through settings, notifications, sequences or locks is not allowed");
      }
    }
  }
  if (s.copiesOutOfReach && (cls.touches(s.writtenValues) || s.writtenValues.unknown) && !allowed("copy_out")) {
    for (const auto& u : s.writtenValues.uses) {
      if (cls.classOf(u.column)) {
        return refuse("copy_out", "copying " + columnLabel(catalog, u.column) + " out of masking's reach is not allowed");
      }
    }
    return refuse("copy_out", "copying data of unknown origin out of masking's reach is not allowed");
  }
  // Schema changes could shadow built-ins (CREATE AGGREGATE count(text)), add computed columns
  // or rules: none of it for masked roles unless allowed.
  if (s.kind == StatementKind::Ddl && !allowed("ddl")) {
    return refuse("ddl", "schema changes (CREATE, ALTER, DROP, TRUNCATE ...) are not allowed for this role");
  }
  bool readsClassified = cls.readsClassified(s) || s.unknownRelations;
  if (!p.allowSqlUse()) {
    const auto& outputs = (s.kind == StatementKind::Explain && s.inner) ? s.inner->outputs : s.outputs;
    for (const auto& o : outputs) {
      for (const auto& u : o.lineage.uses) {
        if (cls.classOf(u.column) && u.how != Derivation::Direct && u.how != Derivation::Count &&
            !allowed("classified_in_expression")) {
          return refuse("classified_in_expression",
                        columnLabel(catalog, u.column) + " may only be selected as a plain column (output \"" + o.name + "\")");
        }
      }
      if (o.lineage.unknown && readsClassified && !allowed("unanalyzable")) {
        return refuse("unanalyzable", "pgveil cannot tell what output \"" + o.name + "\" is derived from");
      }
    }
    for (auto c : s.predicateColumns) {
      if (cls.classOf(c) && !allowed("classified_in_predicate")) {
        return refuse("classified_in_predicate",
                      columnLabel(catalog, c) + " may not be used in WHERE, JOIN, GROUP BY, HAVING, ORDER BY or windows");
      }
    }
    if (s.predicatesUnknown && readsClassified && !allowed("unanalyzable")) {
      return refuse("unanalyzable", "pgveil cannot resolve a column used in a condition");
    }
  }
  return {};
}

}  // namespace

Verdict gate(const Analysis& a, const Policy& p, const Classification& cls, const Catalog& catalog) {
  if (p.unmasked()) return {};
  if (!a.parsed) {
    if (p.allows("unanalyzable")) return {};
    return refuse("unanalyzable", a.refused ? a.error : "the statement does not parse: " + a.error);
  }
  for (const auto& s : a.statements) {
    auto v = gateStatement(s, p, cls, catalog);
    if (!v.allowed) return v;
  }
  return {};
}

// ---------------------------------------------------------------- result plans

namespace {

const Strategy& redact() {
  static const Strategy s{};
  return s;
}

// Decides one field from its classes: nothing, a class's strategy, or redact when in doubt.
FieldPlan decide(const Lineage* lineage, const std::string* directClass, bool failClosed, const Policy& p,
                 const Classification& cls) {
  FieldPlan f;
  std::vector<const std::string*> classes;
  bool onlyCount = true;
  if (directClass) {
    classes.push_back(directClass);
    onlyCount = false;
  }
  if (lineage) {
    for (const auto& u : lineage->uses) {
      if (const auto* c = cls.classOf(u.column)) {
        bool seen = false;
        for (const auto* x : classes) seen = seen || *x == *c;
        if (!seen) classes.push_back(c);
        if (u.how != Derivation::Count) onlyCount = false;
      }
    }
  }
  if (classes.empty()) {
    if (failClosed) {
      f.mask = true;
      f.strategy = redact();
    }
    return f;
  }
  if (onlyCount) return f;  // count(x) reveals no value
  f.strategy = classes.size() == 1 ? p.strategyFor(*classes[0]) : redact();
  if (classes.size() > 1) {
    // Several classes in one value: the strictest treatment unless every class is left raw.
    bool allNone = true;
    for (const auto* c : classes) allNone = allNone && p.strategyFor(*c).kind == StrategyKind::None;
    if (allNone) f.strategy = p.strategyFor(*classes[0]);
  }
  f.mask = f.strategy.kind != StrategyKind::None || failClosed;
  if (f.strategy.kind == StrategyKind::None && failClosed) f.strategy = redact();
  return f;
}

}  // namespace

ResultPlan planResult(const protocol::RowDescriptionMsg& rd, const StatementAnalysis* stmt, const Policy& p,
                      const Classification& cls, const Catalog& catalog) {
  ResultPlan plan;
  planResult(rd, stmt, p, cls, catalog, plan);
  return plan;
}

void planResult(const protocol::RowDescriptionMsg& rd, const StatementAnalysis* stmt, const Policy& p,
                const Classification& cls, const Catalog& catalog, ResultPlan& plan) {
  plan.any = false;
  plan.fields.assign(rd.fields.size(), FieldPlan{});
  if (p.unmasked()) return;
  bool lineageUsable = stmt && !stmt->outputsIncomplete && stmt->outputs.size() == rd.fields.size();
  bool doubtful = !stmt || cls.readsClassified(*stmt) || stmt->unknownRelations;
  for (std::size_t i = 0; i < rd.fields.size(); ++i) {
    const auto& fd = rd.fields[i];
    const Lineage* lineage = lineageUsable ? &stmt->outputs[i].lineage : nullptr;
    const std::string* direct = nullptr;
    bool failClosed = false;
    if (fd.tableOid != 0 && fd.column > 0) {
      direct = cls.classOf({fd.tableOid, fd.column});
      const auto* rel = catalog.byOid(fd.tableOid);
      // A view's column: its classes come from the lineage; without one, fail closed.
      if (!direct && rel && (rel->kind == 'v' || rel->kind == 'm') && !lineage) failClosed = true;
      if (!rel && !lineage) failClosed = doubtful;
    } else if (fd.tableOid != 0 && fd.column == 0) {
      // A whole-row value of a table.
      failClosed = cls.relationClassified(fd.tableOid) || !catalog.byOid(fd.tableOid);
    } else {
      failClosed = lineage ? (lineage->unknown && doubtful) : doubtful;
    }
    auto f = decide(lineage, direct, failClosed, p, cls);
    f.typeOid = fd.typeOid;
    f.format = fd.format;
    plan.any = plan.any || f.mask;
    plan.fields[i] = f;
  }
}

ResultPlan planCopy(const StatementAnalysis& stmt, std::size_t columns, std::int16_t format, const Policy& p,
                    const Classification& cls, const Catalog& catalog) {
  ResultPlan plan;
  plan.fields.resize(columns);
  if (p.unmasked()) return plan;
  bool usable = !stmt.outputsIncomplete && stmt.outputs.size() == columns;
  bool doubtful = cls.readsClassified(stmt) || stmt.unknownRelations;
  for (std::size_t i = 0; i < columns; ++i) {
    const Lineage* lineage = usable ? &stmt.outputs[i].lineage : nullptr;
    auto f = decide(lineage, nullptr, lineage ? (lineage->unknown && doubtful) : doubtful, p, cls);
    // COPY carries no type OIDs: take the source column's type for a direct copy, else text.
    f.typeOid = 25;
    if (lineage && lineage->uses.size() == 1 && lineage->uses[0].how == Derivation::Direct) {
      const auto* rel = catalog.byOid(lineage->uses[0].column.relOid);
      const auto* col = rel ? rel->columnByAttnum(lineage->uses[0].column.attnum) : nullptr;
      if (col) f.typeOid = col->typeOid;
    }
    f.format = format;
    plan.any = plan.any || f.mask;
    plan.fields[i] = f;
  }
  return plan;
}

bool rewriteDataRow(const ResultPlan& plan, std::string_view payload, const ValueMasker& masker, std::string& out,
                    std::string& scratch) {
  protocol::ByteReader r(payload);
  auto n = r.i16();
  if (!r.ok() || n < 0 || static_cast<std::size_t>(n) != plan.fields.size()) return false;
  protocol::MessageBuilder b(out);
  b.begin(protocol::msg::kDataRow);
  b.i16(n);
  for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
    auto len = r.i32();
    if (!r.ok() || len < -1) return false;
    if (len == -1) {
      b.i32(-1);
      continue;
    }
    auto v = r.bytes(static_cast<std::size_t>(len));
    if (!r.ok()) return false;
    const auto& f = plan.fields[i];
    if (!f.mask) {
      b.i32(len);
      b.bytes(v);
      continue;
    }
    if (!masker.mask(f.strategy, f.typeOid, f.format, v, scratch)) {
      b.i32(-1);
      continue;
    }
    b.i32(static_cast<std::int32_t>(scratch.size()));
    b.bytes(scratch);
  }
  if (!r.atEnd()) return false;
  b.end();
  return true;
}

}  // namespace pgveil::masking
