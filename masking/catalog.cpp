#include "masking/catalog.hpp"

#include <algorithm>
#include <deque>

namespace pgveil::masking {

const CatalogColumn* CatalogRelation::column(std::string_view n) const {
  for (const auto& c : columns) {
    if (c.name == n) return &c;
  }
  return nullptr;
}

const CatalogColumn* CatalogRelation::columnByAttnum(std::int16_t attnum) const {
  for (const auto& c : columns) {
    if (c.attnum == attnum) return &c;
  }
  return nullptr;
}

Catalog::Catalog(std::vector<CatalogRelation> relations, std::vector<CatalogRole> roles, std::uint64_t generation,
                 std::vector<std::string> catalogFunctions)
    : relations_(std::move(relations)),
      catalogFunctions_(catalogFunctions.begin(), catalogFunctions.end()),
      generation_(generation) {
  for (std::size_t i = 0; i < relations_.size(); ++i) {
    byOid_[relations_[i].oid] = i;
    byName_[relations_[i].name].push_back(i);
  }
  for (auto& r : roles) memberOf_[r.name] = std::move(r.memberOf);
}

const CatalogRelation* Catalog::byOid(std::uint32_t oid) const {
  auto it = byOid_.find(oid);
  return it == byOid_.end() ? nullptr : &relations_[it->second];
}

const CatalogRelation* Catalog::find(std::string_view schema, std::string_view name) const {
  auto it = byName_.find(std::string(name));
  if (it == byName_.end()) return nullptr;
  for (auto i : it->second) {
    if (relations_[i].schema == schema) return &relations_[i];
  }
  return nullptr;
}

std::vector<const CatalogRelation*> Catalog::resolve(std::string_view name,
                                                     const std::vector<std::string>& searchPath) const {
  std::vector<const CatalogRelation*> out;
  auto it = byName_.find(std::string(name));
  if (it == byName_.end()) return out;
  if (searchPath.empty()) {
    for (auto i : it->second) out.push_back(&relations_[i]);
    return out;
  }
  // pg_catalog is searched first unless the path names it explicitly (PostgreSQL docs 5.9.3).
  bool explicitCatalog = std::find(searchPath.begin(), searchPath.end(), "pg_catalog") != searchPath.end();
  if (!explicitCatalog) {
    if (auto* r = find("pg_catalog", name)) return {r};
  }
  for (const auto& schema : searchPath) {
    if (auto* r = find(schema, name)) return {r};
  }
  return out;
}

bool Catalog::isMemberOf(std::string_view role, std::string_view group) const {
  for (const auto& r : rolesOf(role)) {
    if (r == group) return true;
  }
  return false;
}

std::vector<std::string> Catalog::rolesOf(std::string_view role) const {
  std::vector<std::string> out{std::string(role)};
  std::unordered_set<std::string> seen{std::string(role)};
  std::deque<std::string> queue{std::string(role)};
  while (!queue.empty()) {
    auto cur = queue.front();
    queue.pop_front();
    auto it = memberOf_.find(cur);
    if (it == memberOf_.end()) continue;
    for (const auto& g : it->second) {
      if (seen.insert(g).second) {
        out.push_back(g);
        queue.push_back(g);
      }
    }
  }
  return out;
}

std::shared_ptr<const Catalog> makeDemoCatalog() {
  constexpr std::uint32_t kText = 25, kInt8 = 20, kDate = 1082, kTimestamptz = 1184, kNumeric = 1700, kName = 19,
                          kInt4 = 23, kFloat4 = 700, kOid = 26;
  auto cols = [](std::initializer_list<std::pair<const char*, std::uint32_t>> list) {
    std::vector<CatalogColumn> out;
    std::int16_t n = 1;
    for (auto& [name, type] : list) out.push_back({n++, name, type});
    return out;
  };
  std::vector<CatalogRelation> rels;
  rels.push_back({16400, "public", "patients", 'r',
                  cols({{"id", kInt8}, {"full_name", kText}, {"email", kText}, {"phone", kText},
                        {"national_id", kText}, {"birth_date", kDate}, {"address", kText}, {"nationality", kText},
                        {"religion", kText}, {"sexual_orientation", kText}, {"created_at", kTimestamptz}}),
                  ""});
  rels.push_back({16410, "public", "appointments", 'r',
                  cols({{"id", kInt8}, {"patient_id", kInt8}, {"doctor", kText}, {"scheduled_at", kTimestamptz},
                        {"notes", kText}}),
                  ""});
  rels.push_back({16420, "public", "invoices", 'r',
                  cols({{"id", kInt8}, {"patient_id", kInt8}, {"amount", kNumeric}, {"iban", kText},
                        {"card_number", kText}, {"paid_at", kTimestamptz}}),
                  ""});
  // A table with quoted mixed-case names, in another schema.
  rels.push_back({16430, "crm", "Users", 'r', cols({{"ID", kInt8}, {"EMAIL", kText}, {"nick name", kText}}), ""});
  // Same relation name in two schemas: resolution depends on search_path.
  rels.push_back({16440, "crm", "patients", 'r', cols({{"id", kInt8}, {"email", kText}}), ""});
  rels.push_back({16450, "public", "patient_contacts", 'v', cols({{"id", kInt8}, {"contact", kText}, {"name", kText}}),
                  " SELECT patients.id, patients.email AS contact, patients.full_name AS name FROM patients;"});
  rels.push_back({16460, "public", "doctors_view", 'v', cols({{"doctor", kText}, {"visits", kInt8}}),
                  " SELECT appointments.doctor, count(*) AS visits FROM appointments GROUP BY appointments.doctor;"});
  rels.push_back({16470, "public", "audit_log", 'r', cols({{"id", kInt8}, {"payload", kText}}), ""});
  rels.push_back({2619, "pg_catalog", "pg_statistic", 'r', cols({{"starelid", kOid}, {"staattnum", kInt4}}), ""});
  rels.push_back({12000, "pg_catalog", "pg_stats", 'v',
                  cols({{"schemaname", kName}, {"tablename", kName}, {"attname", kName},
                        {"null_frac", kFloat4}, {"most_common_vals", kText}, {"histogram_bounds", kText}}),
                  " SELECT n.nspname AS schemaname, c.relname AS tablename, a.attname, s.stanullfrac AS null_frac, "
                  "s.stavalues1 AS most_common_vals, s.stavalues2 AS histogram_bounds FROM pg_statistic s "
                  "JOIN pg_class c ON c.oid = s.starelid JOIN pg_attribute a ON c.oid = a.attrelid "
                  "LEFT JOIN pg_namespace n ON n.oid = c.relnamespace;"});
  rels.push_back({12100, "pg_catalog", "pg_stat_activity", 'v', cols({{"pid", kInt4}, {"query", kText}}),
                  " SELECT s.pid, s.query FROM pg_stat_get_activity(NULL::integer) s;"});
  rels.push_back({1259, "pg_catalog", "pg_class", 'r', cols({{"oid", kOid}, {"relname", kName}, {"relnamespace", kOid}}), ""});
  rels.push_back({1249, "pg_catalog", "pg_attribute", 'r', cols({{"attrelid", kOid}, {"attname", kName}}), ""});
  rels.push_back({2615, "pg_catalog", "pg_namespace", 'r', cols({{"oid", kOid}, {"nspname", kName}}), ""});
  rels.push_back({2613, "pg_catalog", "pg_largeobject", 'r', cols({{"loid", kOid}, {"pageno", kInt4}, {"data", 17}}), ""});
  std::vector<CatalogRole> roles = {{"admin", {}},   {"support", {"support_team"}}, {"support_team", {}},
                                    {"analyst", {}}, {"intern", {}},                 {"app", {}}};
  return std::make_shared<const Catalog>(std::move(rels), std::move(roles), 1);
}

}  // namespace pgveil::masking
