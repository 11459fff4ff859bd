#pragma once
// Canonical, compact text forms of an analysis, for tests, `pgveil explain` and debugging:
//   outputs:    "name=table.column:d+table.column:e | ..."  (d direct, e expression, a aggregate,
//               c count; "?" marks unknown lineage)
//   predicates: "table.column,table.column"
//   reads:      "table:f table:u"  (f filtered, u unfiltered)
//   flags:      space-separated, sorted

#include <string>

#include "masking/analysis.hpp"
#include "masking/catalog.hpp"

namespace pgveil::masking {

[[nodiscard]] std::string columnName(const Catalog& catalog, ColumnId c);
[[nodiscard]] std::string describeLineage(const Catalog& catalog, const Lineage& l);
[[nodiscard]] std::string describeOutputs(const Catalog& catalog, const StatementAnalysis& s);
[[nodiscard]] std::string describePredicates(const Catalog& catalog, const StatementAnalysis& s);
[[nodiscard]] std::string describeReads(const Catalog& catalog, const StatementAnalysis& s);
[[nodiscard]] std::string describeFlags(const StatementAnalysis& s);

}  // namespace pgveil::masking
