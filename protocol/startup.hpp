#pragma once
// Decoding of startup-phase packets (PostgreSQL docs 55.2.1 "Start-up", 55.7 "Message Formats"):
// StartupMessage, SSLRequest, GSSENCRequest and CancelRequest. Pure; no I/O.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgveil::protocol {

inline constexpr std::int32_t kProtocolV3 = 196608;  // 3.0
inline constexpr std::int32_t kSslRequestCode = 80877103;
inline constexpr std::int32_t kGssEncRequestCode = 80877104;
inline constexpr std::int32_t kCancelRequestCode = 80877102;
// PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
inline constexpr std::uint32_t kMaxStartupPacket = 10000;

enum class StartupKind { Startup, SslRequest, GssEncRequest, Cancel, UnsupportedVersion, Malformed };

struct StartupParam {
  std::string name;
  std::string value;
};

struct StartupPacket {
  StartupKind kind = StartupKind::Malformed;
  std::int32_t code = 0;  // protocol version or request code
  std::vector<StartupParam> params;  // Startup only, in wire order
  std::int32_t cancelPid = 0;        // Cancel only
  std::int32_t cancelKey = 0;        // Cancel only
  std::string error;                 // Malformed / UnsupportedVersion: why

  [[nodiscard]] const std::string* param(std::string_view name) const;
  [[nodiscard]] bool hasDuplicateParam() const;
};

// Decodes one whole packet (including its 4-byte length prefix).
[[nodiscard]] StartupPacket decodeStartup(std::string_view packet);

// Encodes a StartupMessage (protocol 3.x) with the given parameters, in order.
[[nodiscard]] std::string encodeStartup(std::int32_t version, const std::vector<StartupParam>& params);

// Encodes an 8-byte request packet (SSLRequest, GSSENCRequest) or a 16-byte CancelRequest.
[[nodiscard]] std::string encodeSslRequest();
[[nodiscard]] std::string encodeCancelRequest(std::int32_t pid, std::int32_t key);

}  // namespace pgveil::protocol
