#pragma once
// Logging set-up and helpers. Log lines carry identifiers and counts, never row values or
// query constants; client-supplied strings are escaped so they cannot forge log lines.

#include <string>
#include <string_view>

namespace pgveil::proxy {

void initLogging(const std::string& level);
// Escapes control characters and quotes, and truncates to maxLen bytes.
[[nodiscard]] std::string logSafe(std::string_view s, std::size_t maxLen = 64);

}  // namespace pgveil::proxy
