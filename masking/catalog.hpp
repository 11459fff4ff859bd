#pragma once
// An immutable snapshot of one database's relations, columns and roles: OID -> schema.table,
// attnum -> column, search_path resolution, view definitions and transitive role membership.
// Built by proxy/catalog_loader (or by tests); shared read-only between sessions.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pgveil::masking {

struct CatalogColumn {
  std::int16_t attnum = 0;
  std::string name;
  std::uint32_t typeOid = 0;
};

struct CatalogRelation {
  std::uint32_t oid = 0;
  std::string schema;
  std::string name;
  char kind = 'r';             // pg_class.relkind: r table, v view, m matview, f foreign, p partitioned
  std::vector<CatalogColumn> columns;  // by attnum order, dropped columns excluded
  std::string viewDefinition;  // views and matviews: pg_get_viewdef()

  [[nodiscard]] const CatalogColumn* column(std::string_view name) const;
  [[nodiscard]] const CatalogColumn* columnByAttnum(std::int16_t attnum) const;
};

struct CatalogRole {
  std::string name;
  std::vector<std::string> memberOf;  // direct memberships
};

class Catalog {
 public:
  Catalog(std::vector<CatalogRelation> relations, std::vector<CatalogRole> roles, std::uint64_t generation = 0,
          std::vector<std::string> catalogFunctions = {});

  [[nodiscard]] const CatalogRelation* byOid(std::uint32_t oid) const;
  [[nodiscard]] const CatalogRelation* find(std::string_view schema, std::string_view name) const;
  // Candidates for an unqualified name. With a known search_path: the first schema on the path
  // (pg_catalog implicitly first) that has it. With an unknown path (empty): every schema that
  // has the name, so that callers stay conservative.
  [[nodiscard]] std::vector<const CatalogRelation*> resolve(std::string_view name,
                                                            const std::vector<std::string>& searchPath) const;
  // Transitive membership: true when role is group or (directly or indirectly) a member of it.
  [[nodiscard]] bool isMemberOf(std::string_view role, std::string_view group) const;
  // All groups of role, transitively, nearest first (role itself first).
  [[nodiscard]] std::vector<std::string> rolesOf(std::string_view role) const;

  // Whether pg_catalog has a function of this name (built-ins, loaded from pg_proc).
  [[nodiscard]] bool hasCatalogFunction(std::string_view name) const {
    return catalogFunctions_.count(std::string(name)) > 0;
  }
  [[nodiscard]] std::uint64_t generation() const { return generation_; }
  [[nodiscard]] std::size_t relationCount() const { return relations_.size(); }
  [[nodiscard]] const std::vector<CatalogRelation>& relations() const { return relations_; }

 private:
  std::vector<CatalogRelation> relations_;
  std::unordered_map<std::uint32_t, std::size_t> byOid_;
  std::unordered_map<std::string, std::vector<std::size_t>> byName_;  // relname -> indexes
  std::unordered_map<std::string, std::vector<std::string>> memberOf_;
  std::unordered_set<std::string> catalogFunctions_;
  std::uint64_t generation_;
};

// A catalog for unit tests and benchmarks: the demo schema (public.patients, appointments,
// invoices), a few pg_catalog relations (pg_stats, pg_statistic, pg_stat_activity, pg_class,
// pg_largeobject) and roles (admin, support, analyst, intern, app; support_team groups support).
[[nodiscard]] std::shared_ptr<const Catalog> makeDemoCatalog();

}  // namespace pgveil::masking
