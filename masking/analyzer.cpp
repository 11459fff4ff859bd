// The analyzer walks libpg_query's JSON parse tree (one DOM per statement text, simdjson) with
// a scope model of FROM items, CTEs and outer queries, and computes per output column the set of
// source columns it derives from. Anything it cannot resolve is marked unknown (fail closed).

#include "masking/analyzer.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "masking/sql_parser.hpp"

namespace pgveil::masking {

// ---------------------------------------------------------------- Lineage

const char* derivationName(Derivation d) {
  switch (d) {
    case Derivation::Count: return "count";
    case Derivation::Direct: return "direct";
    case Derivation::Aggregate: return "aggregate";
    case Derivation::Expression: return "expression";
  }
  return "?";
}

void Lineage::add(ColumnId c, Derivation how) {
  auto it = std::lower_bound(uses.begin(), uses.end(), c,
                             [](const SourceUse& u, const ColumnId& col) { return u.column < col; });
  if (it != uses.end() && it->column == c) {
    if (how > it->how) it->how = how;
    return;
  }
  uses.insert(it, SourceUse{c, how});
}

void Lineage::merge(const Lineage& other) {
  for (const auto& u : other.uses) add(u.column, u.how);
  unknown = unknown || other.unknown;
}

Lineage Lineage::wrapped(Derivation how) const {
  Lineage out = *this;
  for (auto& u : out.uses) {
    if (how == Derivation::Count) u.how = Derivation::Count;
    else if (u.how != Derivation::Count && u.how < how) u.how = how;
  }
  return out;
}

const char* statementKindName(StatementKind k) {
  switch (k) {
    case StatementKind::Empty: return "empty";
    case StatementKind::Select: return "select";
    case StatementKind::Insert: return "insert";
    case StatementKind::Update: return "update";
    case StatementKind::Delete: return "delete";
    case StatementKind::Merge: return "merge";
    case StatementKind::CopyTo: return "copy_to";
    case StatementKind::CopyFrom: return "copy_from";
    case StatementKind::Ddl: return "ddl";
    case StatementKind::Set: return "set";
    case StatementKind::Reset: return "reset";
    case StatementKind::Show: return "show";
    case StatementKind::Transaction: return "transaction";
    case StatementKind::Prepare: return "prepare";
    case StatementKind::Execute: return "execute";
    case StatementKind::Deallocate: return "deallocate";
    case StatementKind::DeclareCursor: return "declare_cursor";
    case StatementKind::Fetch: return "fetch";
    case StatementKind::ClosePortal: return "close_portal";
    case StatementKind::Call: return "call";
    case StatementKind::Do: return "do";
    case StatementKind::Listen: return "listen";
    case StatementKind::Notify: return "notify";
    case StatementKind::Unlisten: return "unlisten";
    case StatementKind::Explain: return "explain";
    case StatementKind::Other: return "other";
  }
  return "?";
}

const std::string& Analysis::fingerprint() const {
  std::call_once(fingerprintOnce_, [this] {
    auto f = fingerprintSql(sql);
    fingerprint_ = f.ok ? f.hex : std::string();
  });
  return fingerprint_;
}

const std::string& Analysis::normalized() const {
  std::call_once(normalizedOnce_, [this] { normalized_ = normalizeSql(sql); });
  return normalized_;
}

std::size_t Analysis::memoryEstimate() const {
  std::size_t n = sizeof(Analysis) + sql.capacity() + error.capacity();
  for (const auto& s : statements) {
    n += sizeof(StatementAnalysis) + s.reads.size() * sizeof(RelationRead) +
         s.predicateColumns.size() * sizeof(ColumnId) + s.writtenValues.uses.size() * sizeof(SourceUse);
    for (const auto& o : s.outputs) n += sizeof(OutputColumn) + o.name.capacity() + o.lineage.uses.size() * sizeof(SourceUse);
    if (s.inner) n += sizeof(StatementAnalysis) + s.inner->outputs.size() * 64;
  }
  return n;
}

// ---------------------------------------------------------------- JSON helpers

namespace {

using El = simdjson::dom::element;
using Obj = simdjson::dom::object;
using Arr = simdjson::dom::array;

constexpr int kMaxWalkDepth = 900;
constexpr int kMaxViewDepth = 12;

std::optional<El> get(const Obj& o, std::string_view key) {
  El e;
  if (o.at_key(key).get(e)) return std::nullopt;
  return e;
}

std::string_view getString(const Obj& o, std::string_view key) {
  auto e = get(o, key);
  std::string_view s;
  if (!e || e->get_string().get(s)) return {};
  return s;
}

std::int64_t getInt(const Obj& o, std::string_view key) {
  auto e = get(o, key);
  std::int64_t v = 0;
  if (!e || e->get_int64().get(v)) return 0;
  return v;
}

bool getBool(const Obj& o, std::string_view key) {
  auto e = get(o, key);
  bool b = false;
  if (!e || e->get_bool().get(b)) return false;
  return b;
}

std::optional<Arr> getArray(const Obj& o, std::string_view key) {
  auto e = get(o, key);
  Arr a;
  if (!e || e->get_array().get(a)) return std::nullopt;
  return a;
}

std::optional<Obj> getObject(const Obj& o, std::string_view key) {
  auto e = get(o, key);
  Obj b;
  if (!e || e->get_object().get(b)) return std::nullopt;
  return b;
}

// A node is {"TypeName": {...}}.
bool unwrap(const El& e, std::string_view& type, Obj& body) {
  Obj o;
  if (e.get_object().get(o)) return false;
  for (auto field : o) {
    type = field.key;
    return !field.value.get_object().get(body);
  }
  return false;
}

// The sval of a {"String": {"sval": ...}} node.
std::string_view stringNode(const El& e) {
  std::string_view t;
  Obj b;
  if (!unwrap(e, t, b) || t != "String") return {};
  return getString(b, "sval");
}

std::vector<std::string_view> nameList(const Obj& o, std::string_view key) {
  std::vector<std::string_view> out;
  if (auto a = getArray(o, key)) {
    for (auto e : *a) out.push_back(stringNode(e));
  }
  return out;
}

// A constant's text: sval or ival; empty for other constants.
// Every use of a constant's value must be in a position literalsInert() (below) treats as
// sensitive: otherwise texts differing only in that constant would share one analysis.
std::optional<std::string> constantText(const El& e) {
  std::string_view t;
  Obj b;
  if (!unwrap(e, t, b)) return std::nullopt;
  if (t == "TypeCast") {
    if (auto arg = get(b, "arg")) return constantText(*arg);
    return std::nullopt;
  }
  if (t != "A_Const") return std::nullopt;
  if (auto s = getObject(b, "sval")) return std::string(getString(*s, "sval"));
  if (auto i = getObject(b, "ival")) return std::to_string(getInt(*i, "ival"));
  if (getObject(b, "ival") || b.size() <= 1) return std::string("0");  // {"ival":{}} is 0
  return std::nullopt;
}

std::optional<std::int64_t> constantInt(const El& e) {
  std::string_view t;
  Obj b;
  if (!unwrap(e, t, b) || t != "A_Const") return std::nullopt;
  if (auto i = getObject(b, "ival")) return getInt(*i, "ival");
  return std::nullopt;
}

bool isNullConst(const El& e) {
  std::string_view t;
  Obj b;
  return unwrap(e, t, b) && t == "A_Const" && getBool(b, "isnull");
}

const std::unordered_set<std::string_view>& valueCatalogs() {
  static const std::unordered_set<std::string_view> s = {
      "pg_stats", "pg_statistic", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic_ext_data",
      "pg_stat_activity", "pg_stat_statements", "pg_largeobject", "pg_stat_statements_info", "pg_user_mappings",
      "pg_user_mapping", "pg_authid", "pg_shadow"};
  return s;
}

// The name PostgreSQL gives an unnamed output column (FigureColname in parse_target.c).
std::string figureNameSimple(const El& node, std::string_view t, const Obj& b);

// Returns the name and its strength as PostgreSQL ranks it: 2 for a name taken from a column,
// function or field, 1 for a fallback such as "case" or a type name.
std::pair<std::string, int> figureNameStrength(const El& node);

std::string figureName(const El& node) { return figureNameStrength(node).first; }

std::pair<std::string, int> figureNameStrength(const El& node) {
  std::string_view t;
  Obj b;
  if (!unwrap(node, t, b)) return {"?column?", 0};
  if (t == "CaseExpr") {
    // The ELSE branch names the column when it is a strong name.
    if (auto def = get(b, "defresult")) {
      auto r = figureNameStrength(*def);
      if (r.second == 2) return r;
    }
    return {"case", 1};
  }
  if (t == "TypeCast") {
    if (auto arg = get(b, "arg")) {
      auto r = figureNameStrength(*arg);
      if (r.second > 0) return r;
    }
    if (auto tn = getObject(b, "typeName")) {
      auto names = nameList(*tn, "names");
      if (!names.empty()) return {std::string(names.back()), 1};
    }
    return {"?column?", 0};
  }
  auto name = figureNameSimple(node, t, b);
  if (name == "?column?") return {name, 0};
  bool strong = t == "ColumnRef" || t == "FuncCall" || t == "A_Indirection";
  return {name, strong ? 2 : 1};
}

std::string figureNameSimple(const El& node, std::string_view t, const Obj& b) {
  (void)node;
  if (t == "ColumnRef") {
    auto fields = getArray(b, "fields");
    std::string last;
    if (fields) {
      for (auto f : *fields) last = std::string(stringNode(f));
    }
    return last.empty() ? "?column?" : last;
  }
  if (t == "FuncCall") {
    auto names = nameList(b, "funcname");
    return names.empty() ? "?column?" : std::string(names.back());
  }
  if (t == "TypeCast") {
    if (auto arg = get(b, "arg")) {
      auto n = figureName(*arg);
      if (n != "?column?") return n;
    }
    if (auto tn = getObject(b, "typeName")) {
      auto names = nameList(*tn, "names");
      if (!names.empty()) return std::string(names.back());
    }
    return "?column?";
  }
  if (t == "A_Indirection") {
    if (auto ind = getArray(b, "indirection")) {
      std::string last;
      for (auto i : *ind) {
        auto s = stringNode(i);
        if (!s.empty()) last = std::string(s);
      }
      if (!last.empty()) return last;
    }
    if (auto arg = get(b, "arg")) return figureName(*arg);
    return "?column?";
  }
  if (t == "A_Expr" && getString(b, "kind") == "AEXPR_NULLIF") return "nullif";
  if (t == "CaseExpr") return "case";
  if (t == "CoalesceExpr") return "coalesce";
  if (t == "MinMaxExpr") return getString(b, "op") == "IS_GREATEST" ? "greatest" : "least";
  if (t == "RowExpr") return "row";
  if (t == "A_ArrayExpr") return "array";
  if (t == "SubLink") {
    auto kind = getString(b, "subLinkType");
    if (kind == "EXISTS_SUBLINK") return "exists";
    if (kind == "ARRAY_SUBLINK") return "array";
    if (kind == "EXPR_SUBLINK") {
      std::string_view st;
      Obj sb;
      if (auto sub = get(b, "subselect"); sub && unwrap(*sub, st, sb)) {
        if (auto tl = getArray(sb, "targetList"); tl && tl->size() > 0) {
          std::string_view rt;
          Obj rb;
          if (unwrap((*tl).at(0).value(), rt, rb)) {
            auto n = getString(rb, "name");
            if (!n.empty()) return std::string(n);
            if (auto v = get(rb, "val")) return figureName(*v);
          }
        }
      }
    }
  }
  return "?column?";
}

// ---------------------------------------------------------------- scopes

struct Col {
  std::string name;
  Lineage lineage;
};

struct Rel {
  std::string alias;   // name the relation is addressed by (alias or relname)
  std::string schema;  // for schema.table.column references (no alias only)
  std::vector<Col> cols;
  bool unknownShape = false;
};

struct Scope {
  std::vector<Rel> rels;
  std::vector<std::vector<Col>> items;  // per FROM item, in `*` order
  std::vector<bool> itemUnknown;
  const Scope* outer = nullptr;
};

struct Cte {
  std::string name;
  std::vector<Col> cols;
  bool unknownShape = false;
};

struct SelectResult {
  std::vector<Col> cols;
  bool unknownShape = false;
};

class Walker {
 public:
  Walker(const Analyzer& analyzer, const AnalyzeContext& ctx, StatementAnalysis& out, int viewDepth)
      : analyzer_(analyzer), ctx_(ctx), out_(out), viewDepth_(viewDepth) {
    // Unqualified function names resolve in pg_catalog first unless the path puts it later.
    // Only a search_path that names pg_catalog after another schema lets a user function shadow
    // a built-in; an unknown path keeps PostgreSQL's default of pg_catalog first.
    const auto& sp = ctx.searchPath;
    auto it = std::find(sp.begin(), sp.end(), "pg_catalog");
    functionsShadowable_ = it != sp.end() && it != sp.begin();
  }

  void statement(const El& node);

 private:
  // statements
  void selectStatement(const Obj& body);
  void insertStatement(const Obj& body);
  void updateStatement(const Obj& body);
  void deleteStatement(const Obj& body);
  void mergeStatement(const Obj& body);
  void returning(const Obj& body, const Scope& scope);
  void copyStatement(const Obj& body);
  void innerStatement(const El& node, StatementKind kind);
  void mergeFlags(const StatementAnalysis& nested);
  // FROM (or UPDATE's FROM, DELETE's USING) items into the scope; base relations into reads.
  void addFromItems(const Obj& body, const char* key, Scope& scope, std::vector<std::uint32_t>& reads, int depth);
  // WHERE: its columns are conditions; a relation read counts as filtered when the WHERE (or a
  // sub-query in it) uses one of its columns.
  void whereAndReads(const Obj& body, const Scope& scope, const std::vector<std::uint32_t>& reads, int depth);
  SelectResult anyQuery(const El& node, const Scope* outer, int depth);

  SelectResult select(const Obj& sel, const Scope* outer, int depth, bool top);
  void withClause(const Obj& with, const Scope* outer, int depth);
  std::vector<Col> fromItem(const El& node, Scope& scope, std::vector<std::uint32_t>& levelReads, int depth,
                            bool& unknownShape);
  std::vector<Col> relationColumns(const Obj& rangeVar, Scope& scope, std::vector<std::uint32_t>& levelReads,
                                   bool& unknownShape, Rel& rel);
  std::vector<Col> viewColumns(const CatalogRelation& view, std::vector<std::uint32_t>& levelReads, bool& unknownShape);
  void targetRelation(const Obj& rangeVar, Scope& scope);

  Lineage expr(const El& node, const Scope& scope, int depth);
  Lineage columnRef(const Obj& body, const Scope& scope);
  Lineage funcCall(const Obj& body, const Scope& scope, int depth);
  Lineage subLink(const Obj& body, const Scope& scope, int depth);
  Lineage generic(const Obj& body, const Scope& scope, int depth);
  Lineage orderOrGroupItem(const El& node, const Scope& scope, const std::vector<Col>& outputs, int depth);

  void predicates(const Lineage& l) {
    for (const auto& u : l.uses) {
      addPredicate(u.column);
      for (auto* r : restrictStack_) r->insert(u.column.relOid);
    }
    if (l.unknown) out_.predicatesUnknown = true;
  }
  // While a WHERE clause is walked, every column its sub-queries use also counts as restricting.
  std::vector<std::unordered_set<std::uint32_t>*> restrictStack_;
  void addPredicate(ColumnId c) {
    auto& p = out_.predicateColumns;
    auto it = std::lower_bound(p.begin(), p.end(), c);
    if (it == p.end() || *it != c) p.insert(it, c);
  }
  void note(std::string s) {
    if (out_.notes.size() < 16 && std::find(out_.notes.begin(), out_.notes.end(), s) == out_.notes.end()) {
      out_.notes.push_back(std::move(s));
    }
  }
  void addRead(std::uint32_t oid, bool filtered) {
    for (auto& r : out_.reads) {
      if (r.relOid == oid) {
        r.filtered = r.filtered && filtered;
        return;
      }
    }
    out_.reads.push_back({oid, filtered});
  }
  void addWrite(std::uint32_t oid) {
    if (std::find(out_.writes.begin(), out_.writes.end(), oid) == out_.writes.end()) out_.writes.push_back(oid);
  }
  std::vector<const CatalogRelation*> resolveRelation(std::string_view schema, std::string_view name) const {
    if (!ctx_.catalog) return {};
    if (!schema.empty()) {
      auto* r = ctx_.catalog->find(schema, name);
      return r ? std::vector<const CatalogRelation*>{r} : std::vector<const CatalogRelation*>{};
    }
    return ctx_.catalog->resolve(name, ctx_.searchPath);
  }
  static std::vector<Col> unknownColumns(Lineage base) {
    base.unknown = true;
    return {Col{"?column?", std::move(base)}};
  }
  const Cte* findCte(std::string_view name) const {
    for (auto it = ctes_.rbegin(); it != ctes_.rend(); ++it) {
      if (it->name == name) return &*it;
    }
    return nullptr;
  }

  const Analyzer& analyzer_;
  const AnalyzeContext& ctx_;
  StatementAnalysis& out_;
  int viewDepth_;
  bool functionsShadowable_ = false;
  std::vector<Cte> ctes_;
};

// ---------------------------------------------------------------- expressions

Lineage Walker::expr(const El& node, const Scope& scope, int depth) {
  Lineage out;
  if (depth > kMaxWalkDepth) {
    out.unknown = true;
    note("expression nested too deeply");
    return out;
  }
  Arr arr;
  if (!node.get_array().get(arr)) {
    for (auto e : arr) out.merge(expr(e, scope, depth + 1));
    return out;
  }
  std::string_view type;
  Obj body;
  if (!unwrap(node, type, body)) return out;
  if (type == "ColumnRef") return columnRef(body, scope);
  if (type == "A_Const" || type == "ParamRef" || type == "SQLValueFunction" || type == "SetToDefault" ||
      type == "String" || type == "Integer" || type == "Float" || type == "Boolean" || type == "BitString" ||
      type == "TypeName" || type == "A_Star" || type == "CurrentOfExpr") {
    return out;
  }
  if (type == "FuncCall") return funcCall(body, scope, depth);
  if (type == "SubLink") return subLink(body, scope, depth);
  if (type == "TypeCast" || type == "A_Expr" || type == "BoolExpr" || type == "NullTest" || type == "BooleanTest" ||
      type == "CaseExpr" || type == "CaseWhen" || type == "CoalesceExpr" || type == "MinMaxExpr" ||
      type == "RowExpr" || type == "A_ArrayExpr" || type == "A_Indirection" || type == "A_Indices" ||
      type == "CollateClause" || type == "XmlExpr" || type == "XmlSerialize" || type == "GroupingFunc" ||
      type == "NamedArgExpr" || type == "MultiAssignRef" || type == "ResTarget" || type == "SortBy" ||
      type == "GroupingSet" || type == "List") {
    return generic(body, scope, depth).wrapped(Derivation::Expression);
  }
  // A node this walker does not know may introduce a scope or hide a reference: unknown.
  note("unsupported expression node " + std::string(type));
  out = generic(body, scope, depth).wrapped(Derivation::Expression);
  out.unknown = true;
  return out;
}

Lineage Walker::generic(const Obj& body, const Scope& scope, int depth) {
  Lineage out;
  for (auto field : body) {
    if (field.key == "location" || field.key == "typeName") continue;
    auto t = field.value.type();
    if (t == simdjson::dom::element_type::OBJECT || t == simdjson::dom::element_type::ARRAY) {
      out.merge(expr(field.value, scope, depth + 1));
    }
  }
  return out;
}

Lineage Walker::columnRef(const Obj& body, const Scope& scope) {
  std::vector<std::string_view> names;
  bool star = false;
  if (auto fields = getArray(body, "fields")) {
    for (auto f : *fields) {
      std::string_view t;
      Obj b;
      if (unwrap(f, t, b) && t == "A_Star") star = true;
      else names.push_back(stringNode(f));
    }
  }
  Lineage out;
  auto wholeRow = [&](const Rel& rel) {
    Lineage l;
    for (const auto& c : rel.cols) l.merge(c.lineage);
    if (rel.unknownShape) l.unknown = true;
    return l.wrapped(Derivation::Expression);
  };
  auto findRel = [&](std::string_view schema, std::string_view alias) -> const Rel* {
    for (const Scope* s = &scope; s; s = s->outer) {
      for (const auto& r : s->rels) {
        if (r.alias == alias && (schema.empty() || r.schema == schema)) return &r;
      }
    }
    return nullptr;
  };
  if (star) {
    // `t.*` or `*` inside an expression: every column, as a row value.
    if (names.empty()) {
      Lineage l;
      for (std::size_t i = 0; i < scope.items.size(); ++i) {
        for (const auto& c : scope.items[i]) l.merge(c.lineage);
        if (scope.itemUnknown[i]) l.unknown = true;
      }
      return l.wrapped(Derivation::Expression);
    }
    const Rel* rel = findRel(names.size() >= 2 ? names[names.size() - 2] : std::string_view(), names.back());
    if (rel) return wholeRow(*rel);
    out.unknown = true;
    note("unresolved reference " + std::string(names.back()) + ".*");
    return out;
  }
  if (names.size() == 1) {
    // An unqualified column: the first scope level that has it (PostgreSQL errors on ambiguity
    // within a level; taking the union keeps us conservative).
    for (const Scope* s = &scope; s; s = s->outer) {
      bool found = false;
      bool unknownHere = false;
      for (std::size_t i = 0; i < s->items.size(); ++i) {
        for (const auto& c : s->items[i]) {
          if (c.name == names[0]) {
            out.merge(c.lineage);
            found = true;
          }
        }
        if (s->itemUnknown[i]) unknownHere = true;
      }
      if (found) return out;
      if (unknownHere) {
        // The column may come from a relation whose columns are not known.
        out.unknown = true;
        note("column " + std::string(names[0]) + " may come from a relation of unknown shape");
        return out;
      }
      // A bare relation name is a whole-row reference (`SELECT u FROM users u`).
      for (const auto& r : s->rels) {
        if (r.alias == names[0]) return wholeRow(r);
      }
    }
    out.unknown = true;
    note("unresolved column " + std::string(names[0]));
    return out;
  }
  // rel.col, schema.rel.col, db.schema.rel.col
  std::string_view col = names.back();
  std::string_view alias = names[names.size() - 2];
  std::string_view schema = names.size() >= 3 ? names[names.size() - 3] : std::string_view();
  const Rel* rel = findRel(schema, alias);
  if (!rel) {
    out.unknown = true;
    note("unresolved relation " + std::string(alias));
    return out;
  }
  for (const auto& c : rel->cols) {
    if (c.name == col) {
      out.merge(c.lineage);
      return out;
    }
  }
  // A field of a composite-typed column or an unknown column: conservative.
  out = wholeRow(*rel);
  out.unknown = out.unknown || rel->unknownShape || true;
  note("unresolved column " + std::string(alias) + "." + std::string(col));
  return out;
}

Lineage Walker::funcCall(const Obj& body, const Scope& scope, int depth) {
  auto names = nameList(body, "funcname");
  std::string_view name = names.empty() ? std::string_view() : names.back();
  std::string_view schema = names.size() >= 2 ? names[names.size() - 2] : std::string_view();
  auto cls = classifyFunction(schema, name);
  if (schema.empty() && functionsShadowable_ && cls != FunctionClass::Unknown) {
    // search_path may put a user schema before pg_catalog: the name may not be the built-in.
    note("search_path may shadow built-in function " + std::string(name));
    cls = FunctionClass::Unknown;
  }
  Lineage args;
  std::optional<Arr> argList = getArray(body, "args");
  if (argList) {
    for (auto a : *argList) args.merge(expr(a, scope, depth + 1));
  }
  // Ordering, filters and windows reveal information about the columns they use.
  if (auto order = getArray(body, "agg_order")) {
    Lineage l;
    for (auto s : *order) {
      std::string_view st;
      Obj sb;
      if (unwrap(s, st, sb) && st == "SortBy") {
        if (auto n = get(sb, "node")) l.merge(expr(*n, scope, depth + 1));
      } else {
        l.merge(expr(s, scope, depth + 1));
      }
    }
    predicates(l);
    if (getBool(body, "agg_within_group")) args.merge(l);
  }
  if (auto filter = get(body, "agg_filter")) predicates(expr(*filter, scope, depth + 1));
  if (auto over = getObject(body, "over")) {
    for (auto key : {"partitionClause", "orderClause", "startOffset", "endOffset"}) {
      if (auto a = get(*over, key)) predicates(expr(*a, scope, depth + 1));
    }
  }
  if (cls == FunctionClass::Unknown && ctx_.catalog &&
      (schema == "pg_catalog" || (schema.empty() && !functionsShadowable_ && ctx_.catalog->hasCatalogFunction(name)))) {
    // A built-in that the table above does not list: it computes from its arguments.
    cls = FunctionClass::Scalar;
  }
  std::string qualified = schema.empty() ? std::string(name) : std::string(schema) + "." + std::string(name);
  // Functions whose arguments leave the statement by another channel than its result
  // (settings, notifications, sequences, locks): their argument lineage is recorded wherever
  // they appear, so the gate sees a classified value sent down a side channel.
  static const std::unordered_set<std::string_view> kSinks = {
      "set_config", "pg_notify", "setval", "pg_advisory_lock", "pg_advisory_xact_lock", "pg_try_advisory_lock",
      "pg_try_advisory_xact_lock", "pg_advisory_lock_shared", "pg_advisory_xact_lock_shared",
      "pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_shared",
      "pg_logical_emit_message"};
  if (kSinks.count(name) || cls == FunctionClass::Unknown) out_.sideChannelValues.merge(args);
  switch (cls) {
    case FunctionClass::ValueCatalog: {
      out_.readsValueCatalogs = true;
      out_.riskyFunctions.push_back(qualified);
      auto l = args.wrapped(Derivation::Expression);
      l.unknown = true;
      return l;
    }
    case FunctionClass::Scalar:
    case FunctionClass::SetReturning:
    case FunctionClass::NoLineage:
    case FunctionClass::ValueWindow:
      return args.wrapped(Derivation::Expression);
    case FunctionClass::CountAggregate: {
      // count(x) reveals nothing about x's value, but the argument is still evaluated: only a
      // direct column becomes Count; count(f(x)) keeps f's derivation (and f's side effects).
      Lineage l = args;
      for (auto& u : l.uses) {
        if (u.how == Derivation::Direct) u.how = Derivation::Count;
      }
      return l;
    }
    case FunctionClass::Aggregate:
      return args.wrapped(Derivation::Aggregate);
    case FunctionClass::RankWindow:
      // rank() has no arguments; hypothetical-set rank(x) WITHIN GROUP does.
      return args.wrapped(Derivation::Expression);
    case FunctionClass::SetConfig: {
      std::string param;
      if (argList && argList->size() > 0) {
        if (auto c = constantText((*argList).at(0).value())) param = *c;
      }
      std::transform(param.begin(), param.end(), param.begin(), ::tolower);
      out_.parameter = param.empty() ? "?" : param;
      out_.setConfigParameters.push_back(out_.parameter);
      out_.riskyFunctions.push_back(qualified);
      if (param.empty() || param == "role" || param == "session_authorization") out_.changesIdentity = true;
      if (param.empty() || param == "search_path") note("set_config changes search_path");
      return args.wrapped(Derivation::Expression);
    }
    case FunctionClass::FileOrNetwork: {
      out_.fileOrNetworkAccess = true;
      out_.riskyFunctions.push_back(qualified);
      auto l = args.wrapped(Derivation::Expression);
      l.unknown = true;
      return l;
    }
    case FunctionClass::DynamicSql: {
      out_.dynamicSql = true;
      out_.riskyFunctions.push_back(qualified);
      auto l = args.wrapped(Derivation::Expression);
      l.unknown = true;
      return l;
    }
    case FunctionClass::Unknown:
      break;
  }
  if (std::find(out_.functions.begin(), out_.functions.end(), qualified) == out_.functions.end()) {
    out_.functions.push_back(qualified);
  }
  auto l = args.wrapped(Derivation::Expression);
  l.unknown = true;
  note("function " + qualified + " is not a known built-in");
  return l;
}

Lineage Walker::subLink(const Obj& body, const Scope& scope, int depth) {
  auto kind = getString(body, "subLinkType");
  Lineage test;
  if (auto t = get(body, "testexpr")) test = expr(*t, scope, depth + 1);
  SelectResult sub;
  if (auto s = get(body, "subselect")) sub = anyQuery(*s, &scope, depth + 1);
  if (kind == "EXISTS_SUBLINK") return Lineage{};
  Lineage out = test;
  if (kind == "EXPR_SUBLINK" || kind == "ARRAY_SUBLINK" || kind == "MULTIEXPR_SUBLINK") {
    if (!sub.cols.empty()) out.merge(sub.cols[0].lineage);
  } else {
    for (const auto& c : sub.cols) out.merge(c.lineage);
  }
  if (sub.unknownShape) out.unknown = true;
  return out.wrapped(Derivation::Expression);
}

// ORDER BY / GROUP BY items may name an output column or give its position.
Lineage Walker::orderOrGroupItem(const El& node, const Scope& scope, const std::vector<Col>& outputs, int depth) {
  std::string_view t;
  Obj b;
  El target = node;
  if (unwrap(node, t, b) && t == "SortBy") {
    if (auto n = get(b, "node")) target = *n;
  }
  if (auto pos = constantInt(target)) {
    if (*pos >= 1 && static_cast<std::size_t>(*pos) <= outputs.size()) return outputs[*pos - 1].lineage;
    return Lineage{};
  }
  if (unwrap(target, t, b) && t == "ColumnRef") {
    auto fields = nameList(b, "fields");
    if (fields.size() == 1) {
      // An input column takes precedence in GROUP BY; an output name in ORDER BY. Both, to be safe.
      Lineage l;
      bool isOutput = false;
      for (const auto& o : outputs) {
        if (o.name == fields[0]) {
          l.merge(o.lineage);
          isOutput = true;
        }
      }
      if (isOutput) {
        bool inputHas = false;
        for (const Scope* s = &scope; s && !inputHas; s = s->outer) {
          for (const auto& item : s->items) {
            for (const auto& c : item) inputHas = inputHas || c.name == fields[0];
          }
        }
        if (inputHas) l.merge(columnRef(b, scope));
        return l;
      }
    }
  }
  return expr(target, scope, depth + 1);
}

// ---------------------------------------------------------------- queries

SelectResult Walker::anyQuery(const El& node, const Scope* outer, int depth) {
  std::string_view type;
  Obj body;
  SelectResult r;
  if (!unwrap(node, type, body)) return r;
  if (type == "SelectStmt") return select(body, outer, depth, false);
  // Data-modifying statements in WITH: their RETURNING list is the result.
  StatementAnalysis nested;
  Walker w(analyzer_, ctx_, nested, viewDepth_);
  w.ctes_ = ctes_;
  w.statement(node);
  mergeFlags(nested);
  for (auto& o : nested.outputs) r.cols.push_back({o.name, o.lineage});
  r.unknownShape = nested.outputsIncomplete;
  return r;
}

void Walker::withClause(const Obj& with, const Scope* outer, int depth) {
  bool recursive = getBool(with, "recursive");
  auto ctes = getArray(with, "ctes");
  if (!ctes) return;
  for (auto c : *ctes) {
    std::string_view t;
    Obj cte;
    if (!unwrap(c, t, cte) || t != "CommonTableExpr") continue;
    Cte def;
    def.name = std::string(getString(cte, "ctename"));
    auto aliases = nameList(cte, "aliascolnames");
    auto query = get(cte, "ctequery");
    if (!query) continue;
    auto rename = [&](std::vector<Col>& cols) {
      for (std::size_t i = 0; i < aliases.size() && i < cols.size(); ++i) cols[i].name = std::string(aliases[i]);
    };
    std::string_view qt;
    Obj qb;
    if (recursive && unwrap(*query, qt, qb) && qt == "SelectStmt" && getString(qb, "op") != "SETOP_NONE") {
      // Recursive CTE: start from the non-recursive branch, then iterate to a fixed point.
      auto larg = getObject(qb, "larg");
      SelectResult seed = larg ? select(*larg, outer, depth + 1, false) : SelectResult{};
      rename(seed.cols);
      def.cols = seed.cols;
      def.unknownShape = seed.unknownShape;
      for (int iter = 0; iter < 4; ++iter) {
        ctes_.push_back(def);
        auto full = select(qb, outer, depth + 1, false);
        ctes_.pop_back();
        rename(full.cols);
        bool changed = full.cols.size() != def.cols.size();
        for (std::size_t i = 0; !changed && i < full.cols.size(); ++i) {
          changed = full.cols[i].lineage.uses != def.cols[i].lineage.uses ||
                    full.cols[i].lineage.unknown != def.cols[i].lineage.unknown;
        }
        def.cols = full.cols;
        def.unknownShape = full.unknownShape;
        if (!changed) break;
      }
    } else {
      auto r = anyQuery(*query, outer, depth + 1);
      rename(r.cols);
      def.cols = r.cols;
      def.unknownShape = r.unknownShape;
    }
    ctes_.push_back(std::move(def));
  }
}

SelectResult Walker::select(const Obj& sel, const Scope* outer, int depth, bool top) {
  SelectResult result;
  if (depth > kMaxWalkDepth) {
    result.cols = unknownColumns({});
    result.unknownShape = true;
    note("query nested too deeply");
    return result;
  }
  std::size_t cteMark = ctes_.size();
  if (auto with = getObject(sel, "withClause")) withClause(*with, outer, depth);

  auto op = getString(sel, "op");
  if (!op.empty() && op != "SETOP_NONE") {
    auto larg = getObject(sel, "larg");
    auto rarg = getObject(sel, "rarg");
    SelectResult l = larg ? select(*larg, outer, depth + 1, false) : SelectResult{};
    SelectResult r = rarg ? select(*rarg, outer, depth + 1, false) : SelectResult{};
    result = l;
    for (std::size_t i = 0; i < result.cols.size(); ++i) {
      if (i < r.cols.size()) result.cols[i].lineage.merge(r.cols[i].lineage);
      // A set operation's column no longer names its source table in RowDescription.
      result.cols[i].lineage = result.cols[i].lineage.wrapped(Derivation::Expression);
    }
    result.unknownShape = l.unknownShape || r.unknownShape;
    Scope empty;
    empty.outer = outer;
    if (auto sort = getArray(sel, "sortClause")) {
      for (auto s : *sort) predicates(orderOrGroupItem(s, empty, result.cols, depth));
    }
    if (top) {
      if (auto lc = get(sel, "limitCount"); lc && !isNullConst(*lc)) {
        out_.hasLimit = true;
        out_.limit = constantInt(*lc);
      }
    }
    // LIMIT and OFFSET may hold sub-queries: what they use is a condition on the result.
    for (auto key : {"limitCount", "limitOffset"}) {
      if (auto e = get(sel, key)) predicates(expr(*e, empty, depth + 1));
    }
    ctes_.resize(cteMark);
    return result;
  }

  if (auto values = getArray(sel, "valuesLists")) {
    Scope s;
    s.outer = outer;
    for (auto row : *values) {
      Arr items;
      if (row.get_array().get(items)) {
        // {"List": {"items": [...]}} in some versions
        std::string_view t;
        Obj b;
        if (!unwrap(row, t, b)) continue;
        auto it = getArray(b, "items");
        if (!it) continue;
        items = *it;
      }
      std::size_t i = 0;
      for (auto e : items) {
        if (result.cols.size() <= i) result.cols.push_back({"column" + std::to_string(i + 1), {}});
        result.cols[i].lineage.merge(expr(e, s, depth + 1).wrapped(Derivation::Expression));
        ++i;
      }
    }
    ctes_.resize(cteMark);
    return result;
  }

  Scope scope;
  scope.outer = outer;
  std::vector<std::uint32_t> levelReads;
  addFromItems(sel, "fromClause", scope, levelReads, depth + 1);
  if (auto targets = getArray(sel, "targetList")) {
    for (auto t : *targets) {
      std::string_view tt;
      Obj rt;
      if (!unwrap(t, tt, rt) || tt != "ResTarget") continue;
      auto val = get(rt, "val");
      if (!val) continue;
      std::string_view vt;
      Obj vb;
      bool isColumnRef = unwrap(*val, vt, vb) && vt == "ColumnRef";
      if (isColumnRef) {
        auto fields = getArray(vb, "fields");
        bool star = false;
        std::vector<std::string_view> names;
        if (fields) {
          for (auto f : *fields) {
            std::string_view ft;
            Obj fb;
            if (unwrap(f, ft, fb) && ft == "A_Star") star = true;
            else names.push_back(stringNode(f));
          }
        }
        if (star) {
          if (top) out_.selectStar = true;
          if (names.empty()) {
            for (std::size_t i = 0; i < scope.items.size(); ++i) {
              for (const auto& c : scope.items[i]) result.cols.push_back(c);
              bool hasMarker = !scope.items[i].empty() && scope.items[i].back().lineage.unknown &&
                               scope.items[i].back().name == "?column?";
              if (scope.itemUnknown[i]) result.unknownShape = true;
              if (scope.itemUnknown[i] && !hasMarker) {
                result.unknownShape = true;
                auto u = unknownColumns({});
                result.cols.push_back(u[0]);
              }
            }
            if (scope.items.empty()) note("SELECT * without FROM");
            continue;
          }
          const Rel* rel = nullptr;
          std::string_view alias = names.back();
          std::string_view schema = names.size() >= 2 ? names[names.size() - 2] : std::string_view();
          for (const Scope* s = &scope; s && !rel; s = s->outer) {
            for (const auto& r : s->rels) {
              if (r.alias == alias && (schema.empty() || r.schema == schema)) {
                rel = &r;
                break;
              }
            }
          }
          if (!rel) {
            result.unknownShape = true;
            result.cols.push_back(unknownColumns({})[0]);
            note("unresolved " + std::string(alias) + ".*");
            continue;
          }
          for (const auto& c : rel->cols) result.cols.push_back(c);
          if (rel->unknownShape) {
            result.unknownShape = true;
            result.cols.push_back(unknownColumns({})[0]);
          }
          continue;
        }
      }
      Col col;
      auto name = getString(rt, "name");
      col.lineage = expr(*val, scope, depth + 1);
      col.name = name.empty() ? figureName(*val) : std::string(name);
      result.cols.push_back(std::move(col));
    }
  }
  whereAndReads(sel, scope, levelReads, depth + 1);
  if (auto group = getArray(sel, "groupClause")) {
    for (auto g : *group) predicates(orderOrGroupItem(g, scope, result.cols, depth));
  }
  if (auto having = get(sel, "havingClause")) predicates(expr(*having, scope, depth + 1));
  if (auto sort = getArray(sel, "sortClause")) {
    for (auto s : *sort) predicates(orderOrGroupItem(s, scope, result.cols, depth));
  }
  if (auto windows = getArray(sel, "windowClause")) {
    for (auto w : *windows) {
      std::string_view wt;
      Obj wb;
      if (!unwrap(w, wt, wb)) continue;
      for (auto key : {"partitionClause", "orderClause", "startOffset", "endOffset"}) {
        if (auto a = get(wb, key)) predicates(expr(*a, scope, depth + 1));
      }
    }
  }
  if (auto distinct = getArray(sel, "distinctClause")) {
    for (auto d : *distinct) predicates(orderOrGroupItem(d, scope, result.cols, depth));
  }
  if (top) {
    if (auto lc = get(sel, "limitCount"); lc && !isNullConst(*lc)) {
      out_.hasLimit = true;
      out_.limit = constantInt(*lc);
    }
  }
  for (auto key : {"limitCount", "limitOffset"}) {
    if (auto e = get(sel, key)) predicates(expr(*e, scope, depth + 1));
  }
  // Computed classified values in a sub-query's outputs can still shape the result (row counts
  // of set-returning functions, EXISTS): treat them as conditions.
  if (!top) {
    for (const auto& c : result.cols) {
      for (const auto& u : c.lineage.uses) {
        if (u.how == Derivation::Expression || u.how == Derivation::Aggregate) addPredicate(u.column);
      }
    }
  }
  if (get(sel, "intoClause")) {
    out_.copiesOutOfReach = true;
    out_.kind = StatementKind::Ddl;
    for (const auto& c : result.cols) out_.writtenValues.merge(c.lineage);
  }
  ctes_.resize(cteMark);
  return result;
}

std::vector<Col> Walker::viewColumns(const CatalogRelation& view, std::vector<std::uint32_t>& levelReads,
                                     bool& unknownShape) {
  std::vector<Col> cols;
  SelectResult inner;
  bool ok = false;
  if (!view.viewDefinition.empty() && viewDepth_ < kMaxViewDepth) {
    auto a = analyzer_.analyze(view.viewDefinition, ctx_);
    if (a->parsed && a->statements.size() == 1 && a->statements[0].kind == StatementKind::Select) {
      const auto& s = a->statements[0];
      for (const auto& o : s.outputs) inner.cols.push_back({o.name, o.lineage});
      inner.unknownShape = s.outputsIncomplete;
      for (const auto& r : s.reads) levelReads.push_back(r.relOid);
      // The view's own side channels and risks (a view may call set_config or a user function).
      out_.readsValueCatalogs = out_.readsValueCatalogs || s.readsValueCatalogs;
      out_.unknownRelations = out_.unknownRelations || s.unknownRelations;
      out_.dynamicSql = out_.dynamicSql || s.dynamicSql;
      out_.fileOrNetworkAccess = out_.fileOrNetworkAccess || s.fileOrNetworkAccess;
      out_.sideChannelValues.merge(s.sideChannelValues);
      for (const auto& f : s.riskyFunctions) out_.riskyFunctions.push_back(f);
      for (const auto& f : s.functions) {
        if (std::find(out_.functions.begin(), out_.functions.end(), f) == out_.functions.end()) out_.functions.push_back(f);
      }
      ok = true;
    }
  }
  if (!ok) note("view " + view.schema + "." + view.name + " could not be expanded");
  for (std::size_t i = 0; i < view.columns.size(); ++i) {
    Col c;
    c.name = view.columns[i].name;
    c.lineage.add({view.oid, view.columns[i].attnum}, Derivation::Direct);
    if (ok && i < inner.cols.size()) c.lineage.merge(inner.cols[i].lineage);
    else c.lineage.unknown = true;
    cols.push_back(std::move(c));
  }
  unknownShape = unknownShape || !ok || inner.unknownShape;
  return cols;
}

std::vector<Col> Walker::relationColumns(const Obj& rv, Scope& scope, std::vector<std::uint32_t>& levelReads,
                                         bool& unknownShape, Rel& rel) {
  (void)scope;
  auto schema = getString(rv, "schemaname");
  auto name = getString(rv, "relname");
  std::vector<Col> cols;
  if (schema.empty()) {
    if (const Cte* cte = findCte(name)) {
      unknownShape = cte->unknownShape;
      return cte->cols;
    }
  }
  auto candidates = resolveRelation(schema, name);
  if (candidates.empty()) {
    out_.unknownRelations = true;
    unknownShape = true;
    note("relation " + (schema.empty() ? "" : std::string(schema) + ".") + std::string(name) + " is not in the catalog");
    return cols;
  }
  if (candidates.size() > 1) note("relation " + std::string(name) + " resolved in several schemas (search_path unknown)");
  rel.schema = candidates[0]->schema;
  for (const auto* r : candidates) {
    if (r->schema == "pg_catalog" && valueCatalogs().count(r->name)) out_.readsValueCatalogs = true;
    if (valueCatalogs().count(r->name) && r->name == "pg_stat_statements") out_.readsValueCatalogs = true;
    std::vector<Col> rc;
    if ((r->kind == 'v' || r->kind == 'm') && viewDepth_ < kMaxViewDepth) {
      rc = viewColumns(*r, levelReads, unknownShape);
    } else {
      for (const auto& c : r->columns) {
        Col col;
        col.name = c.name;
        col.lineage.add({r->oid, c.attnum}, Derivation::Direct);
        rc.push_back(std::move(col));
      }
    }
    levelReads.push_back(r->oid);
    // Several candidates: union by column name, shape of the first.
    if (cols.empty()) {
      cols = std::move(rc);
    } else {
      for (auto& c : cols) {
        for (const auto& o : rc) {
          if (o.name == c.name) c.lineage.merge(o.lineage);
        }
      }
    }
  }
  return cols;
}

std::vector<Col> Walker::fromItem(const El& node, Scope& scope, std::vector<std::uint32_t>& levelReads, int depth,
                                  bool& unknownShape) {
  std::string_view type;
  Obj body;
  std::vector<Col> cols;
  if (!unwrap(node, type, body)) return cols;
  auto applyAlias = [&](std::vector<Col>& c, const std::optional<Obj>& alias) {
    if (!alias) return;
    auto names = nameList(*alias, "colnames");
    for (std::size_t i = 0; i < names.size() && i < c.size(); ++i) c[i].name = std::string(names[i]);
  };
  if (type == "RangeVar") {
    Rel rel;
    auto alias = getObject(body, "alias");
    cols = relationColumns(body, scope, levelReads, unknownShape, rel);
    applyAlias(cols, alias);
    rel.alias = alias ? std::string(getString(*alias, "aliasname")) : std::string(getString(body, "relname"));
    if (alias) rel.schema.clear();
    rel.cols = cols;
    rel.unknownShape = unknownShape;
    scope.rels.push_back(std::move(rel));
    return cols;
  }
  if (type == "RangeSubselect") {
    bool lateral = getBool(body, "lateral");
    auto alias = getObject(body, "alias");
    SelectResult r;
    if (auto q = get(body, "subquery")) r = anyQuery(*q, lateral ? &scope : scope.outer, depth + 1);
    cols = r.cols;
    unknownShape = r.unknownShape;
    applyAlias(cols, alias);
    Rel rel;
    rel.alias = alias ? std::string(getString(*alias, "aliasname")) : std::string();
    rel.cols = cols;
    rel.unknownShape = unknownShape;
    scope.rels.push_back(std::move(rel));
    return cols;
  }
  if (type == "RangeFunction") {
    // Function calls in FROM may always refer to earlier FROM items (implicit LATERAL).
    auto alias = getObject(body, "alias");
    const Scope& useScope = scope;
    Lineage l;
    std::vector<std::string> funcNames;
    bool known = true;
    if (auto fns = getArray(body, "functions")) {
      for (auto f : *fns) {
        // Each entry is a List of [FuncCall, coldeflist].
        Arr pair;
        std::optional<Arr> items;
        if (!f.get_array().get(pair)) items = pair;
        else {
          std::string_view lt;
          Obj lb;
          if (unwrap(f, lt, lb)) items = getArray(lb, "items");
        }
        if (!items || items->size() == 0) continue;
        auto fn = (*items).at(0).value();
        std::string_view ft;
        Obj fb;
        if (unwrap(fn, ft, fb) && ft == "FuncCall") {
          auto names = nameList(fb, "funcname");
          funcNames.push_back(names.empty() ? "?" : std::string(names.back()));
          auto cls = classifyFunction(names.size() >= 2 ? names[names.size() - 2] : "", names.empty() ? "" : names.back());
          if (cls != FunctionClass::SetReturning && cls != FunctionClass::Scalar) known = false;
        } else {
          known = false;
        }
        l.merge(expr(fn, useScope, depth + 1));
      }
    }
    // The arguments of a function in FROM decide how many rows it returns.
    predicates(l);
    // Column names: a column definition list, else the known shape of the function, else one
    // column named after the function (or the alias); then WITH ORDINALITY; then alias names.
    std::vector<std::string> names;
    if (auto defs = getArray(body, "coldeflist")) {
      for (auto d : *defs) {
        std::string_view dt;
        Obj db;
        if (unwrap(d, dt, db) && dt == "ColumnDef") names.emplace_back(getString(db, "colname"));
      }
    }
    if (names.empty() && funcNames.size() == 1 && known) {
      static const std::unordered_set<std::string_view> twoCols = {"jsonb_each", "json_each", "jsonb_each_text",
                                                                   "json_each_text"};
      if (twoCols.count(funcNames[0])) names = {"key", "value"};
      else names = {alias ? std::string(getString(*alias, "aliasname")) : funcNames[0]};
    }
    if (names.empty()) unknownShape = true;
    for (const auto& n : names) cols.push_back({n, l.wrapped(Derivation::Expression)});
    if (!known) {
      for (auto& c : cols) c.lineage.unknown = true;
      if (cols.empty()) cols = unknownColumns(l.wrapped(Derivation::Expression));
    }
    if (getBool(body, "ordinality")) cols.push_back({"ordinality", {}});
    applyAlias(cols, alias);
    Rel rel;
    rel.alias = alias ? std::string(getString(*alias, "aliasname")) : (funcNames.empty() ? "" : funcNames[0]);
    rel.cols = cols;
    rel.unknownShape = unknownShape;
    scope.rels.push_back(std::move(rel));
    return cols;
  }
  if (type == "JoinExpr") {
    bool lu = false, ru = false;
    std::vector<Col> left, right;
    if (auto l = get(body, "larg")) left = fromItem(*l, scope, levelReads, depth + 1, lu);
    if (auto r = get(body, "rarg")) right = fromItem(*r, scope, levelReads, depth + 1, ru);
    unknownShape = lu || ru;
    auto jointype = getString(body, "jointype");
    std::vector<std::string> usingNames;
    for (auto n : nameList(body, "usingClause")) usingNames.emplace_back(n);
    if (getBool(body, "isNatural")) {
      for (const auto& lc : left) {
        for (const auto& rc : right) {
          if (lc.name == rc.name) usingNames.push_back(lc.name);
        }
      }
    }
    auto isUsing = [&](const std::string& n) {
      return std::find(usingNames.begin(), usingNames.end(), n) != usingNames.end();
    };
    for (const auto& n : usingNames) {
      Col merged{n, {}};
      Lineage ll, rl;
      for (const auto& c : left) {
        if (c.name == n) ll.merge(c.lineage);
      }
      for (const auto& c : right) {
        if (c.name == n) rl.merge(c.lineage);
      }
      predicates(ll);
      predicates(rl);
      if (jointype == "JOIN_FULL") {
        merged.lineage = ll;
        merged.lineage.merge(rl);
        merged.lineage = merged.lineage.wrapped(Derivation::Expression);
      } else if (jointype == "JOIN_RIGHT") {
        merged.lineage = rl;
      } else {
        merged.lineage = ll;
      }
      cols.push_back(std::move(merged));
    }
    for (const auto& c : left) {
      if (!isUsing(c.name)) cols.push_back(c);
    }
    for (const auto& c : right) {
      if (!isUsing(c.name)) cols.push_back(c);
    }
    // Columns are visible by their unqualified names through the join's merged list.
    if (auto quals = get(body, "quals")) {
      Scope joined;
      joined.rels = scope.rels;
      joined.items = scope.items;
      joined.itemUnknown = scope.itemUnknown;
      joined.items.push_back(cols);
      joined.itemUnknown.push_back(unknownShape);
      joined.outer = scope.outer;
      predicates(expr(*quals, joined, depth + 1));
    }
    if (auto alias = getObject(body, "alias")) {
      applyAlias(cols, alias);
      Rel rel;
      rel.alias = std::string(getString(*alias, "aliasname"));
      rel.cols = cols;
      rel.unknownShape = unknownShape;
      scope.rels.push_back(std::move(rel));
    }
    return cols;
  }
  if (type == "RangeTableSample") {
    for (auto key : {"args", "repeatable"}) {
      if (auto a = get(body, key)) predicates(expr(*a, scope, depth + 1));
    }
    if (auto rel = get(body, "relation")) return fromItem(*rel, scope, levelReads, depth + 1, unknownShape);
  }
  note("unsupported FROM item " + std::string(type));
  unknownShape = true;
  Rel rel;
  if (auto alias = getObject(body, "alias")) rel.alias = std::string(getString(*alias, "aliasname"));
  rel.unknownShape = true;
  Lineage l = generic(body, scope, depth + 1);
  l.unknown = true;
  cols = unknownColumns(l);
  rel.cols = cols;
  scope.rels.push_back(std::move(rel));
  return cols;
}

// ---------------------------------------------------------------- statements

void Walker::targetRelation(const Obj& rv, Scope& scope) {
  std::vector<std::uint32_t> reads;
  bool unknownShape = false;
  Rel rel;
  auto cols = relationColumns(rv, scope, reads, unknownShape, rel);
  auto alias = getObject(rv, "alias");
  rel.alias = alias ? std::string(getString(*alias, "aliasname")) : std::string(getString(rv, "relname"));
  rel.cols = cols;
  rel.unknownShape = unknownShape;
  for (auto oid : reads) addWrite(oid);
  scope.rels.push_back(rel);
  scope.items.push_back(cols);
  scope.itemUnknown.push_back(unknownShape);
}

void Walker::selectStatement(const Obj& body) {
  out_.kind = StatementKind::Select;
  out_.returnsRows = true;
  auto r = select(body, nullptr, 0, true);
  if (out_.kind == StatementKind::Ddl) out_.returnsRows = false;  // SELECT INTO
  for (auto& c : r.cols) out_.outputs.push_back({std::move(c.name), std::move(c.lineage)});
  out_.outputsIncomplete = r.unknownShape;
}

// RETURNING lists of INSERT, UPDATE and DELETE: outputs over the target relation's scope.
void Walker::returning(const Obj& body, const Scope& scope) {
  auto ret = getArray(body, "returningList");
  if (!ret) return;
  out_.hasReturning = true;
  out_.returnsRows = true;
  for (auto t : *ret) {
    std::string_view tt;
    Obj rt;
    if (!unwrap(t, tt, rt)) continue;
    auto val = get(rt, "val");
    if (!val) continue;
    std::string_view vt;
    Obj vb;
    if (unwrap(*val, vt, vb) && vt == "ColumnRef") {
      bool star = false;
      if (auto f = getArray(vb, "fields")) {
        for (auto x : *f) {
          std::string_view xt;
          Obj xb;
          if (unwrap(x, xt, xb) && xt == "A_Star") star = true;
        }
      }
      if (star) {
        out_.selectStar = true;
        for (const auto& item : scope.items) {
          for (const auto& c : item) out_.outputs.push_back({c.name, c.lineage});
        }
        continue;
      }
    }
    auto name = getString(rt, "name");
    out_.outputs.push_back({name.empty() ? figureName(*val) : std::string(name), expr(*val, scope, 1)});
  }
}

void Walker::insertStatement(const Obj& body) {
  out_.kind = StatementKind::Insert;
  std::size_t cteMark = ctes_.size();
  if (auto with = getObject(body, "withClause")) withClause(*with, nullptr, 0);
  Scope scope;
  if (auto rel = getObject(body, "relation")) targetRelation(*rel, scope);
  if (auto sel = get(body, "selectStmt")) {
    auto r = anyQuery(*sel, nullptr, 1);
    bool fromRelations = false;
    for (const auto& c : r.cols) {
      out_.writtenValues.merge(c.lineage);
      fromRelations = fromRelations || !c.lineage.uses.empty() || c.lineage.unknown;
    }
    if (fromRelations) out_.copiesOutOfReach = true;
  }
  if (auto oc = getObject(body, "onConflictClause")) {
    Scope s = scope;
    Rel excluded;
    excluded.alias = "excluded";
    if (!scope.items.empty()) excluded.cols = scope.items[0];
    s.rels.push_back(excluded);
    if (auto tl = getArray(*oc, "targetList")) {
      for (auto t : *tl) out_.writtenValues.merge(expr(t, s, 1));
    }
    if (auto w = get(*oc, "whereClause")) predicates(expr(*w, s, 1));
    if (!out_.writtenValues.uses.empty()) out_.copiesOutOfReach = true;
  }
  returning(body, scope);
  ctes_.resize(cteMark);
}

void Walker::addFromItems(const Obj& body, const char* key, Scope& scope, std::vector<std::uint32_t>& reads,
                          int depth) {
  auto items = getArray(body, key);
  if (!items) return;
  for (auto item : *items) {
    bool unknownShape = false;
    auto cols = fromItem(item, scope, reads, depth, unknownShape);
    scope.items.push_back(std::move(cols));
    scope.itemUnknown.push_back(unknownShape);
  }
}

void Walker::whereAndReads(const Obj& body, const Scope& scope, const std::vector<std::uint32_t>& reads, int depth) {
  std::unordered_set<std::uint32_t> restricted;
  if (auto where = get(body, "whereClause")) {
    restrictStack_.push_back(&restricted);
    predicates(expr(*where, scope, depth));
    restrictStack_.pop_back();
  }
  for (auto oid : reads) addRead(oid, restricted.count(oid) > 0);
}

void Walker::updateStatement(const Obj& body) {
  out_.kind = StatementKind::Update;
  std::size_t cteMark = ctes_.size();
  if (auto with = getObject(body, "withClause")) withClause(*with, nullptr, 0);
  Scope scope;
  std::vector<std::uint32_t> reads;
  if (auto rel = getObject(body, "relation")) targetRelation(*rel, scope);
  addFromItems(body, "fromClause", scope, reads, 1);
  if (auto tl = getArray(body, "targetList")) {
    for (auto t : *tl) {
      std::string_view tt;
      Obj rt;
      if (!unwrap(t, tt, rt)) continue;
      if (auto v = get(rt, "val")) out_.writtenValues.merge(expr(*v, scope, 1));
      if (auto ind = get(rt, "indirection")) predicates(expr(*ind, scope, 1));
    }
  }
  if (!out_.writtenValues.uses.empty() || out_.writtenValues.unknown) out_.copiesOutOfReach = true;
  whereAndReads(body, scope, reads, 1);
  returning(body, scope);
  ctes_.resize(cteMark);
}

void Walker::deleteStatement(const Obj& body) {
  out_.kind = StatementKind::Delete;
  std::size_t cteMark = ctes_.size();
  if (auto with = getObject(body, "withClause")) withClause(*with, nullptr, 0);
  Scope scope;
  std::vector<std::uint32_t> reads;
  if (auto rel = getObject(body, "relation")) targetRelation(*rel, scope);
  addFromItems(body, "usingClause", scope, reads, 1);
  whereAndReads(body, scope, reads, 1);
  returning(body, scope);
  ctes_.resize(cteMark);
}

void Walker::mergeStatement(const Obj& body) {
  out_.kind = StatementKind::Merge;
  Scope scope;
  std::vector<std::uint32_t> reads;
  if (auto rel = getObject(body, "relation")) targetRelation(*rel, scope);
  if (auto src = get(body, "sourceRelation")) {
    bool u = false;
    auto cols = fromItem(*src, scope, reads, 1, u);
    scope.items.push_back(cols);
    scope.itemUnknown.push_back(u);
  }
  if (auto jc = get(body, "joinCondition")) predicates(expr(*jc, scope, 1));
  if (auto whens = getArray(body, "mergeWhenClauses")) {
    for (auto w : *whens) {
      std::string_view wt;
      Obj wb;
      if (!unwrap(w, wt, wb)) continue;
      if (auto c = get(wb, "condition")) predicates(expr(*c, scope, 1));
      if (auto tl = get(wb, "targetList")) out_.writtenValues.merge(expr(*tl, scope, 1));
      if (auto v = get(wb, "values")) out_.writtenValues.merge(expr(*v, scope, 1));
    }
  }
  if (!out_.writtenValues.uses.empty() || out_.writtenValues.unknown) out_.copiesOutOfReach = true;
  for (auto oid : reads) addRead(oid, false);
}

void Walker::copyStatement(const Obj& body) {
  bool from = getBool(body, "is_from");
  out_.kind = from ? StatementKind::CopyFrom : StatementKind::CopyTo;
  out_.copyFormat = "text";
  if (auto opts = getArray(body, "options")) {
    for (auto o : *opts) {
      std::string_view ot;
      Obj ob;
      if (!unwrap(o, ot, ob) || ot != "DefElem") continue;
      auto name = getString(ob, "defname");
      std::optional<std::string> value;
      if (auto arg = get(ob, "arg")) {
        value = constantText(*arg);
        std::string_view at;
        Obj ab;
        if (!value && unwrap(*arg, at, ab)) {
          if (at == "String") value = std::string(getString(ab, "sval"));
          else if (at == "Integer") value = std::to_string(getInt(ab, "ival"));
          else if (at == "Boolean") value = getBool(ab, "boolval") ? "true" : "false";
          else if (at == "Float") value = std::string(getString(ab, "fval"));
        }
        if (value) std::transform(value->begin(), value->end(), value->begin(), ::tolower);
      }
      if (name == "format") {
        out_.copyFormat = value ? *value : "text";
        if (out_.copyFormat != "text" && out_.copyFormat != "csv" && out_.copyFormat != "binary") {
          out_.copyNonDefaultQuoting = true;
        }
      } else if (name == "delimiter") {
        if (value && value->size() == 1) out_.copyDelimiter = (*value)[0];
        else out_.copyNonDefaultQuoting = true;
      } else if (name == "header") {
        // defGetCopyHeaderChoice: no value, true/on/1 or match mean a header line.
        out_.copyHeader = !value || *value == "true" || *value == "on" || *value == "1" || *value == "match";
      } else if (name == "quote" || name == "escape" || name == "null" || name == "force_quote" ||
                 name == "force_not_null" || name == "force_null") {
        out_.copyNonDefaultQuoting = true;
      }
    }
  }
  if (getBool(body, "is_program") || !getString(body, "filename").empty()) {
    out_.fileOrNetworkAccess = true;
    out_.riskyFunctions.push_back(getBool(body, "is_program") ? "COPY PROGRAM" : "COPY file");
  }
  if (auto q = get(body, "query")) {
    innerStatement(*q, out_.kind);
    if (out_.inner) {
      auto format = out_.copyFormat;
      auto delimiter = out_.copyDelimiter;
      auto header = out_.copyHeader;
      auto quoting = out_.copyNonDefaultQuoting;
      out_.outputs = out_.inner->outputs;
      out_.outputsIncomplete = out_.inner->outputsIncomplete;
      out_.copyFormat = format;
      out_.copyDelimiter = delimiter;
      out_.copyHeader = header;
      out_.copyNonDefaultQuoting = quoting;
    }
    out_.returnsRows = !from;
    return;
  }
  auto rel = getObject(body, "relation");
  if (!rel) return;
  Scope scope;
  std::vector<std::uint32_t> reads;
  bool unknownShape = false;
  Rel r;
  auto cols = relationColumns(*rel, scope, reads, unknownShape, r);
  if (from) {
    for (auto oid : reads) addWrite(oid);
    return;
  }
  out_.returnsRows = true;
  for (auto oid : reads) addRead(oid, false);
  auto attlist = nameList(body, "attlist");
  if (attlist.empty()) {
    for (auto& c : cols) out_.outputs.push_back({c.name, c.lineage});
    out_.selectStar = true;
  } else {
    for (auto a : attlist) {
      bool found = false;
      for (auto& c : cols) {
        if (c.name == a) {
          out_.outputs.push_back({c.name, c.lineage});
          found = true;
        }
      }
      if (!found) {
        Lineage l;
        l.unknown = true;
        out_.outputs.push_back({std::string(a), l});
      }
    }
  }
  out_.outputsIncomplete = unknownShape;
}

// PREPARE, DECLARE CURSOR, EXPLAIN and COPY (query): analyse the inner statement on its own and
// carry its flags, reads and predicates up to the outer one.
void Walker::innerStatement(const El& node, StatementKind kind) {
  auto inner = std::make_shared<StatementAnalysis>();
  Walker w(analyzer_, ctx_, *inner, viewDepth_);
  w.statement(node);
  out_.kind = kind;
  mergeFlags(*inner);
  out_.selectStar = out_.selectStar || inner->selectStar;
  out_.hasLimit = inner->hasLimit;
  out_.limit = inner->limit;
  if (kind == StatementKind::Prepare || kind == StatementKind::DeclareCursor) {
    // What EXECUTE or FETCH will return.
    out_.outputs = inner->outputs;
    out_.outputsIncomplete = inner->outputsIncomplete;
  }
  out_.inner = std::move(inner);
}

// Everything a nested statement (CTE, PREPARE, DECLARE, EXPLAIN, COPY query) read, wrote and
// risked counts for the statement that contains it.
void Walker::mergeFlags(const StatementAnalysis& n) {
  for (const auto& r : n.reads) addRead(r.relOid, r.filtered);
  for (auto c : n.predicateColumns) addPredicate(c);
  for (auto oid : n.writes) addWrite(oid);
  out_.predicatesUnknown = out_.predicatesUnknown || n.predicatesUnknown;
  out_.writtenValues.merge(n.writtenValues);
  out_.sideChannelValues.merge(n.sideChannelValues);
  out_.copiesOutOfReach = out_.copiesOutOfReach || n.copiesOutOfReach;
  out_.changesIdentity = out_.changesIdentity || n.changesIdentity;
  out_.readsValueCatalogs = out_.readsValueCatalogs || n.readsValueCatalogs;
  out_.fileOrNetworkAccess = out_.fileOrNetworkAccess || n.fileOrNetworkAccess;
  out_.dynamicSql = out_.dynamicSql || n.dynamicSql;
  out_.unknownRelations = out_.unknownRelations || n.unknownRelations;
  for (const auto& f : n.functions) {
    if (std::find(out_.functions.begin(), out_.functions.end(), f) == out_.functions.end()) out_.functions.push_back(f);
  }
  for (const auto& f : n.riskyFunctions) out_.riskyFunctions.push_back(f);
  for (const auto& p : n.setConfigParameters) out_.setConfigParameters.push_back(p);
  for (const auto& x : n.notes) note(x);
  if (out_.parameter.empty()) out_.parameter = n.parameter;
}

void Walker::statement(const El& node) {
  std::string_view type;
  Obj body;
  if (!unwrap(node, type, body)) {
    out_.kind = StatementKind::Other;
    note("statement without a node");
    return;
  }
  out_.nodeType = std::string(type);
  if (type == "SelectStmt") return selectStatement(body);
  if (type == "InsertStmt") return insertStatement(body);
  if (type == "UpdateStmt") return updateStatement(body);
  if (type == "DeleteStmt") return deleteStatement(body);
  if (type == "MergeStmt") return mergeStatement(body);
  if (type == "CopyStmt") return copyStatement(body);
  if (type == "CreateTableAsStmt" || type == "ViewStmt") {
    if (auto q = get(body, "query")) {
      auto r = anyQuery(*q, nullptr, 1);
      for (const auto& c : r.cols) out_.writtenValues.merge(c.lineage);
    }
    out_.kind = StatementKind::Ddl;
    out_.copiesOutOfReach = true;
    return;
  }
  if (type == "CreateFunctionStmt" || type == "RuleStmt" || type == "CreateTrigStmt" ||
      type == "CreateEventTrigStmt" || type == "AlterFunctionStmt" || type == "CreatePLangStmt") {
    out_.kind = StatementKind::Ddl;
    out_.copiesOutOfReach = true;
    out_.dynamicSql = true;
    return;
  }
  if (type == "DoStmt") {
    out_.kind = StatementKind::Do;
    out_.copiesOutOfReach = true;
    out_.dynamicSql = true;
    return;
  }
  if (type == "VariableSetStmt") {
    auto kind = getString(body, "kind");
    out_.kind = (kind == "VAR_RESET" || kind == "VAR_RESET_ALL") ? StatementKind::Reset : StatementKind::Set;
    std::string name(getString(body, "name"));
    if (kind == "VAR_RESET_ALL") name = "all";
    out_.parameter = name;
    if (auto args = getArray(body, "args"); args && args->size() == 1) {
      if (auto c = constantText((*args).at(0).value())) out_.parameterValue = *c;
    } else if (args) {
      std::string joined;
      for (auto a : *args) {
        auto c = constantText(a);
        if (!joined.empty()) joined += ", ";
        joined += c ? *c : "?";
      }
      out_.parameterValue = joined;
    }
    if (name == "role" || name == "session_authorization") out_.changesIdentity = true;
    return;
  }
  if (type == "VariableShowStmt") {
    out_.kind = StatementKind::Show;
    out_.returnsRows = true;
    out_.parameter = std::string(getString(body, "name"));
    return;
  }
  if (type == "TransactionStmt") {
    out_.kind = StatementKind::Transaction;
    return;
  }
  if (type == "PrepareStmt") {
    out_.name = std::string(getString(body, "name"));
    if (auto q = get(body, "query")) innerStatement(*q, StatementKind::Prepare);
    out_.kind = StatementKind::Prepare;
    return;
  }
  if (type == "ExecuteStmt") {
    out_.kind = StatementKind::Execute;
    out_.returnsRows = true;
    out_.name = std::string(getString(body, "name"));
    Scope empty;
    if (auto p = get(body, "params")) {
      auto l = expr(*p, empty, 1);
      if (!l.uses.empty()) note("EXECUTE parameters reference columns");
    }
    return;
  }
  if (type == "DeallocateStmt") {
    out_.kind = StatementKind::Deallocate;
    out_.name = std::string(getString(body, "name"));
    return;
  }
  if (type == "DeclareCursorStmt") {
    out_.name = std::string(getString(body, "portalname"));
    if (auto q = get(body, "query")) innerStatement(*q, StatementKind::DeclareCursor);
    out_.kind = StatementKind::DeclareCursor;
    return;
  }
  if (type == "FetchStmt") {
    out_.kind = StatementKind::Fetch;
    out_.name = std::string(getString(body, "portalname"));
    out_.returnsRows = !getBool(body, "ismove");
    return;
  }
  if (type == "ClosePortalStmt") {
    out_.kind = StatementKind::ClosePortal;
    out_.name = std::string(getString(body, "portalname"));
    return;
  }
  if (type == "CallStmt") {
    out_.kind = StatementKind::Call;
    out_.returnsRows = true;  // OUT parameters come back as a row
    Scope empty;
    // funccall is a typed field (FuncCall*): libpg_query writes it without a node wrapper.
    if (auto fc = getObject(body, "funccall")) (void)funcCall(*fc, empty, 1);
    return;
  }
  if (type == "ListenStmt" || type == "UnlistenStmt") {
    out_.kind = type == "ListenStmt" ? StatementKind::Listen : StatementKind::Unlisten;
    out_.name = std::string(getString(body, "conditionname"));
    return;
  }
  if (type == "NotifyStmt") {
    out_.kind = StatementKind::Notify;
    out_.name = std::string(getString(body, "conditionname"));
    return;
  }
  if (type == "ExplainStmt") {
    if (auto q = get(body, "query")) innerStatement(*q, StatementKind::Explain);
    out_.kind = StatementKind::Explain;
    out_.returnsRows = true;
    if (auto opts = getArray(body, "options")) {
      for (auto o : *opts) {
        std::string_view ot;
        Obj ob;
        if (unwrap(o, ot, ob) && getString(ob, "defname") == "analyze") note("EXPLAIN ANALYZE executes the query");
      }
    }
    return;
  }
  if (type == "GrantRoleStmt" || type == "CreateRoleStmt" || type == "AlterRoleStmt" ||
      type == "AlterRoleSetStmt" || type == "DropRoleStmt" || type == "ReassignOwnedStmt") {
    out_.kind = StatementKind::Ddl;
    out_.changesIdentity = true;
    return;
  }
  if (type == "LoadStmt") {
    out_.kind = StatementKind::Other;
    out_.fileOrNetworkAccess = true;
    out_.riskyFunctions.push_back("LOAD");
    return;
  }
  if (type.starts_with("Create") || type.starts_with("Alter") || type.starts_with("Drop") ||
      type == "IndexStmt" || type == "GrantStmt" || type == "CommentStmt" || type == "TruncateStmt" ||
      type == "RenameStmt" || type == "DefineStmt" || type == "CompositeTypeStmt" || type == "SecLabelStmt" ||
      type == "ReindexStmt" || type == "ClusterStmt" || type == "RefreshMatViewStmt") {
    out_.kind = StatementKind::Ddl;
    if (type == "TruncateStmt") {
      if (auto rels = getArray(body, "relations")) {
        for (auto r : *rels) {
          std::string_view rt;
          Obj rb;
          if (!unwrap(r, rt, rb) || rt != "RangeVar") continue;
          for (auto* c : resolveRelation(getString(rb, "schemaname"), getString(rb, "relname"))) addWrite(c->oid);
        }
      }
    }
    return;
  }
  out_.kind = StatementKind::Other;
}

// A parser per thread and per view-expansion level: simdjson's DOM parser keeps its buffers
// between parses, and a view expanded during a walk must not overwrite the document being walked.
thread_local int tlsViewDepth = 0;

simdjson::dom::parser& threadParser(std::size_t maxDepth) {
  thread_local std::vector<std::unique_ptr<simdjson::dom::parser>> parsers;
  thread_local std::size_t configuredDepth = 0;
  if (configuredDepth != maxDepth) {
    parsers.clear();
    configuredDepth = maxDepth;
  }
  auto level = static_cast<std::size_t>(tlsViewDepth);
  while (parsers.size() <= level) {
    auto p = std::make_unique<simdjson::dom::parser>();
    if (p->allocate(1 << 16, maxDepth) != simdjson::SUCCESS) p = std::make_unique<simdjson::dom::parser>();
    parsers.push_back(std::move(p));
  }
  return *parsers[level];
}

}  // namespace

// ---------------------------------------------------------------- literal insensitivity

namespace {

// A constant: inert when the analyzer never reads its value (so it cannot change the analysis).
struct InertConst {
  std::int64_t location;
  SqlLiteral::Kind kind;
  bool inert;
};

// Keys under which a constant's value matters to the analyzer (LIMIT/OFFSET, ORDER BY and GROUP
// BY positions) or might (type modifiers, window frames, locking, ON CONFLICT, SELECT INTO).
bool sensitiveKey(std::string_view key) {
  static const std::unordered_set<std::string_view> keys = {
      "limitCount", "limitOffset", "sortClause", "groupClause", "distinctClause", "windowClause", "typeName",
      "typmods", "arrayBounds", "lockingClause", "intoClause", "onConflictClause", "over", "cycle_clause",
      "search_clause"};
  return keys.count(key) > 0;
}

// Nodes whose constants below them stay inert. Anything else (function calls, which may name a
// relation or a setting in a string, table functions, TABLESAMPLE, XML, CTE CYCLE marks, ...)
// makes its whole subtree sensitive.
bool inertNode(std::string_view type) {
  static const std::unordered_set<std::string_view> types = {
      "SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "ResTarget", "A_Expr", "BoolExpr", "NullTest",
      "BooleanTest", "CaseExpr", "CaseWhen", "CoalesceExpr", "MinMaxExpr", "RowExpr", "A_ArrayExpr",
      "A_Indirection", "A_Indices", "SubLink", "TypeCast", "ColumnRef", "RangeVar", "JoinExpr", "RangeSubselect",
      "List", "String", "A_Star", "Alias", "CommonTableExpr", "WithClause", "ParamRef", "SQLValueFunction",
      "SetToDefault", "CollateClause", "A_Const"};
  return types.count(type) > 0;
}

// A cast to regclass, regproc, regtype ... turns a string into an object reference.
bool castToRegType(const Obj& typeCast) {
  auto tn = getObject(typeCast, "typeName");
  if (!tn) return true;
  auto names = nameList(*tn, "names");
  return names.empty() || names.back().substr(0, 3) == "reg";
}

bool collectInert(const El& e, bool sensitive, int depth, std::vector<InertConst>& out);

bool collectFields(const Obj& body, bool sensitive, int depth, std::vector<InertConst>& out) {
  for (auto field : body) {
    auto t = field.value.type();
    if (t != simdjson::dom::element_type::OBJECT && t != simdjson::dom::element_type::ARRAY) continue;
    if (!collectInert(field.value, sensitive || sensitiveKey(field.key), depth + 1, out)) return false;
  }
  return true;
}

// Walks a parse-tree fragment, recording its constants and whether each is inert; false when too
// deep. Bodies embedded without a type wrapper take their parent's inertness, so keys leading to
// such bodies with constants the analyzer may read (CYCLE marks ...) are in sensitiveKey().
bool collectInert(const El& e, bool sensitive, int depth, std::vector<InertConst>& out) {
  if (depth > kMaxWalkDepth) return false;
  Arr arr;
  if (!e.get_array().get(arr)) {
    for (auto x : arr) {
      if (!collectInert(x, sensitive, depth + 1, out)) return false;
    }
    return true;
  }
  Obj o;
  if (e.get_object().get(o)) return true;
  // {"NodeType": {...}} wraps a node; other objects are bodies embedded without a wrapper.
  if (o.size() == 1) {
    auto field = *o.begin();
    Obj body;
    if (!field.key.empty() && field.key[0] >= 'A' && field.key[0] <= 'Z' && !field.value.get_object().get(body)) {
      std::string_view type = field.key;
      if (type == "A_Const") {
        std::optional<SqlLiteral::Kind> kind;
        if (get(body, "ival")) kind = SqlLiteral::Kind::Integer;
        else if (get(body, "fval")) kind = SqlLiteral::Kind::Numeric;
        else if (get(body, "sval")) kind = SqlLiteral::Kind::String;
        if (kind) out.push_back({getInt(body, "location"), *kind, !sensitive});
        return true;
      }
      bool s = sensitive || !inertNode(type) || (type == "TypeCast" && castToRegType(body));
      return collectFields(body, s, depth, out);
    }
  }
  return collectFields(o, sensitive, depth, out);
}

bool pgSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

// Every literal of the text is an inert constant of the same lexical class. A negated number
// (`-5`, `- 2.5`) is one constant located at its minus sign.
bool literalsInert(const Arr& stmts, std::string_view sql, const std::vector<SqlLiteral>& literals) {
  if (stmts.size() != 1) return false;
  Obj raw;
  if ((*stmts.begin()).get_object().get(raw)) return false;
  auto stmt = get(raw, "stmt");
  std::string_view type;
  Obj body;
  if (!stmt || !unwrap(*stmt, type, body)) return false;
  if (type != "SelectStmt" && type != "InsertStmt" && type != "UpdateStmt" && type != "DeleteStmt") return false;
  std::vector<InertConst> inert;
  inert.reserve(literals.size() + 4);
  if (!collectInert(*stmt, false, 0, inert)) return false;
  std::sort(inert.begin(), inert.end(), [](const InertConst& a, const InertConst& b) { return a.location < b.location; });
  // Every constant at a location must be inert: a location reached both as inert and as
  // sensitive (a subtree shared by two parents) fails the check.
  auto find = [&](std::int64_t loc) -> std::optional<InertConst> {
    auto it = std::lower_bound(inert.begin(), inert.end(), loc,
                               [](const InertConst& c, std::int64_t l) { return c.location < l; });
    if (it == inert.end() || it->location != loc) return std::nullopt;
    InertConst c = *it;
    for (; it != inert.end() && it->location == loc; ++it) c.inert = c.inert && it->inert && it->kind == c.kind;
    return c;
  };
  for (const auto& lit : literals) {
    auto c = find(lit.offset);
    if (!c) {
      std::size_t m = lit.offset;
      while (m > 0 && pgSpace(sql[m - 1])) --m;
      if (m > 0 && sql[m - 1] == '-') c = find(static_cast<std::int64_t>(m - 1));
    }
    if (!c || !c->inert || c->kind != lit.kind) return false;
  }
  return true;
}

}  // namespace

std::shared_ptr<const Analysis> Analyzer::analyze(std::string_view sql, const AnalyzeContext& ctx,
                                                  const std::vector<SqlLiteral>* literals) const {
  auto a = std::make_shared<Analysis>();
  a->sql = std::string(sql);
  if (sql.size() > options_.maxQueryBytes) {
    a->refused = true;
    a->error = "query of " + std::to_string(sql.size()) + " bytes exceeds the analyzer limit of " +
               std::to_string(options_.maxQueryBytes) + " bytes";
    return a;
  }
  if (sql.find('\0') != std::string_view::npos) {
    a->refused = true;
    a->error = "query contains a NUL byte";
    return a;
  }
  auto parsed = parseSql(a->sql);
  if (!parsed.ok) {
    a->error = parsed.error;
    return a;
  }
  auto& parser = threadParser(options_.maxJsonDepth);
  simdjson::dom::element doc;
  auto err = parser.parse(parsed.json.data(), parsed.json.size(), parsed.json.capacity() < parsed.json.size() + simdjson::SIMDJSON_PADDING).get(doc);
  if (err) {
    a->refused = true;
    a->error = err == simdjson::DEPTH_ERROR ? "query nested too deeply to analyze"
                                           : std::string("cannot read the parse tree: ") + simdjson::error_message(err);
    return a;
  }
  a->parsed = true;
  Arr stmts;
  if (doc["stmts"].get(stmts)) {
    a->statements.push_back(StatementAnalysis{});
    a->statements.back().kind = StatementKind::Empty;
    return a;
  }
  if (literals && !literals->empty()) a->literalInsensitive = literalsInert(stmts, sql, *literals);
  for (auto s : stmts) {
    Obj raw;
    if (s.get_object().get(raw)) continue;
    StatementAnalysis sa;
    std::int64_t loc = getInt(raw, "stmt_location");
    std::int64_t len = getInt(raw, "stmt_len");
    sa.location = static_cast<int>(loc);
    sa.length = static_cast<int>(len);
    if (auto stmt = get(raw, "stmt")) {
      // Views are expanded by re-entering analyze(); bound that recursion.
      ++tlsViewDepth;
      Walker w(*this, ctx, sa, tlsViewDepth);
      w.statement(*stmt);
      --tlsViewDepth;
    }
    a->statements.push_back(std::move(sa));
  }
  if (a->statements.empty()) {
    a->statements.push_back(StatementAnalysis{});
    a->statements.back().kind = StatementKind::Empty;
  }
  return a;
}

}  // namespace pgveil::masking
