#pragma once
// `pgveil explain`: the analysis of one SQL text and the verdict pgveil would give it for a
// role, as JSON, with the catalog read from the upstream server. For debugging policies.

#include <ostream>
#include <string>

#include "config/config.hpp"

namespace pgveil::proxy {

// Returns the process exit code: 0 allowed, 3 refused, 1 error (message on `err`).
int explainQuery(const config::Config& cfg, const std::string& role, const std::string& database,
                 const std::string& sql, std::ostream& out, std::ostream& err);

}  // namespace pgveil::proxy
