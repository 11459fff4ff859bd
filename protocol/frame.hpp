#pragma once
// Framing of PostgreSQL protocol v3 messages: type byte + int32 length (which counts itself).
// Pure functions over byte views; callers own buffers and decide what to inspect or stream.

#include <cstdint>
#include <string_view>

namespace pgveil::protocol {

// Size of a typed message header: one type byte and a 4-byte length.
inline constexpr std::size_t kHeaderSize = 5;
// PostgreSQL's own upper bound for any protocol message (PqRecvLength checks, 1 GB - 1).
inline constexpr std::uint32_t kAbsoluteMaxMessage = 0x3fffffff;

struct FrameHeader {
  char type = 0;
  std::uint32_t length = 0;  // as on the wire: includes the 4 length bytes, not the type byte
  [[nodiscard]] std::size_t total() const { return std::size_t{length} + 1; }
  [[nodiscard]] std::size_t payloadSize() const { return std::size_t{length} - 4; }
};

enum class HeaderStatus {
  Ok,        // header decoded and its length is within bounds
  NeedMore,  // fewer than kHeaderSize bytes available
  TooShort,  // length < 4: a desynchronised or hostile peer
  TooLong,   // length > the configured maximum
};

// Decodes the header at the start of data. maxLength bounds the length field.
[[nodiscard]] HeaderStatus peekHeader(std::string_view data, std::uint32_t maxLength, FrameHeader& out);

// A whole message: header plus payload, both views into the caller's buffer.
struct Message {
  char type = 0;
  std::string_view payload;  // after the 5-byte header
  std::string_view bytes;    // the whole message as received (header + payload)
};

// Startup-phase packets have no type byte: int32 length (counting itself) then int32 code.
enum class StartupStatus { Ok, NeedMore, TooShort, TooLong };
[[nodiscard]] StartupStatus peekStartupLength(std::string_view data, std::uint32_t maxLength,
                                              std::uint32_t& length);

}  // namespace pgveil::protocol
