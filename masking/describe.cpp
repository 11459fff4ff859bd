#include "masking/describe.hpp"

#include <algorithm>
#include <vector>

namespace pgveil::masking {

namespace {
std::string relName(const Catalog& catalog, std::uint32_t oid) {
  const auto* r = catalog.byOid(oid);
  std::string out;
  if (!r) {
    out += '#';
    out += std::to_string(oid);
    return out;
  }
  if (r->schema != "public") {
    out += r->schema;
    out += '.';
  }
  out += r->name;
  return out;
}
char letter(Derivation d) {
  switch (d) {
    case Derivation::Count: return 'c';
    case Derivation::Direct: return 'd';
    case Derivation::Aggregate: return 'a';
    case Derivation::Expression: return 'e';
  }
  return '?';
}
}  // namespace

std::string columnName(const Catalog& catalog, ColumnId c) {
  const auto* r = catalog.byOid(c.relOid);
  const auto* col = r ? r->columnByAttnum(c.attnum) : nullptr;
  std::string out = relName(catalog, c.relOid);
  out += '.';
  if (col) {
    out += col->name;
  } else {
    out += '#';
    out += std::to_string(c.attnum);
  }
  return out;
}

std::string describeLineage(const Catalog& catalog, const Lineage& l) {
  std::vector<std::string> parts;
  for (const auto& u : l.uses) parts.push_back(columnName(catalog, u.column) + ":" + letter(u.how));
  std::sort(parts.begin(), parts.end());
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += '+';
    out += p;
  }
  if (l.unknown) out += "?";
  return out;
}

std::string describeOutputs(const Catalog& catalog, const StatementAnalysis& s) {
  std::string out;
  for (const auto& o : s.outputs) {
    if (!out.empty()) out += " | ";
    out += o.name + "=" + describeLineage(catalog, o.lineage);
  }
  return out;
}

std::string describePredicates(const Catalog& catalog, const StatementAnalysis& s) {
  std::vector<std::string> parts;
  for (auto c : s.predicateColumns) parts.push_back(columnName(catalog, c));
  std::sort(parts.begin(), parts.end());
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += ',';
    out += p;
  }
  if (s.predicatesUnknown) out += "?";
  return out;
}

std::string describeReads(const Catalog& catalog, const StatementAnalysis& s) {
  std::vector<std::string> parts;
  for (const auto& r : s.reads) parts.push_back(relName(catalog, r.relOid) + (r.filtered ? ":f" : ":u"));
  std::sort(parts.begin(), parts.end());
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += ' ';
    out += p;
  }
  return out;
}

std::string describeFlags(const StatementAnalysis& s) {
  std::vector<std::string> f;
  if (s.selectStar) f.push_back("star");
  if (s.hasLimit) f.push_back(s.limit ? "limit=" + std::to_string(*s.limit) : "limit=?");
  if (s.hasReturning) f.push_back("returning");
  if (s.copiesOutOfReach) f.push_back("copies");
  if (s.changesIdentity) f.push_back("identity");
  if (s.readsValueCatalogs) f.push_back("catalogs");
  if (s.fileOrNetworkAccess) f.push_back("file");
  if (s.dynamicSql) f.push_back("dynamic");
  if (s.unknownRelations) f.push_back("unknownrel");
  if (s.outputsIncomplete) f.push_back("incomplete");
  for (const auto& fn : s.functions) f.push_back("fn:" + fn);
  std::sort(f.begin(), f.end());
  f.erase(std::unique(f.begin(), f.end()), f.end());
  std::string out;
  for (const auto& x : f) {
    if (!out.empty()) out += ' ';
    out += x;
  }
  return out;
}

}  // namespace pgveil::masking
