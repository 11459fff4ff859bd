#pragma once
// Helpers to build wire messages in unit tests.

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/bytes.hpp"

namespace pgveil::testing {

inline std::string be32(std::uint32_t v) {
  std::string s(4, '\0');
  protocol::storeBe32(s.data(), v);
  return s;
}
inline std::string be16(std::uint16_t v) { return std::string{static_cast<char>(v >> 8), static_cast<char>(v)}; }
inline std::string cstr(std::string_view s) { return std::string(s) + '\0'; }
// A typed message: type byte, length (payload + 4), payload.
inline std::string message(char type, std::string_view payload) {
  return std::string(1, type) + be32(static_cast<std::uint32_t>(payload.size() + 4)) + std::string(payload);
}
// A startup-phase packet: length (counting itself) then body.
inline std::string packet(std::string_view body) { return be32(static_cast<std::uint32_t>(body.size() + 4)) + std::string(body); }

}  // namespace pgveil::testing
