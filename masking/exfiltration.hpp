#pragma once
// Pre-execution rules against bulk reads of relations that hold classified columns: unbounded
// reads (no restricting WHERE and no LIMIT at or under the cap), SELECT * and COPY TO of them.
// Pure: each finding names the rule, the configured action and what it saw.

#include <string>
#include <vector>

#include "config/config.hpp"
#include "masking/analysis.hpp"
#include "masking/catalog.hpp"
#include "masking/policy.hpp"

namespace pgveil::masking {

struct ExfiltrationFinding {
  std::string rule;  // unbounded_read, select_star, copy_to
  config::RuleAction action = config::RuleAction::Off;
  std::string detail;
};

[[nodiscard]] std::vector<ExfiltrationFinding> checkExfiltration(const Analysis& analysis,
                                                                 const config::ExfiltrationConfig& cfg,
                                                                 const Classification& cls, const Catalog& catalog);

}  // namespace pgveil::masking
