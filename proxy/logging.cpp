#include "proxy/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace pgveil::proxy {

void initLogging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("pgveil");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

std::string logSafe(std::string_view s, std::size_t maxLen) {
  std::string out;
  out.reserve(s.size() + 2);
  for (std::size_t i = 0; i < s.size() && i < maxLen; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      static const char* kHex = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (s.size() > maxLen) out += "...";
  return out;
}

}  // namespace pgveil::proxy
