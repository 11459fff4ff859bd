#include "protocol/frame.hpp"

#include "protocol/bytes.hpp"

namespace pgveil::protocol {

HeaderStatus peekHeader(std::string_view data, std::uint32_t maxLength, FrameHeader& out) {
  if (data.size() < kHeaderSize) return HeaderStatus::NeedMore;
  out.type = data[0];
  out.length = loadBe32(data.data() + 1);
  if (out.length < 4) return HeaderStatus::TooShort;
  if (out.length > maxLength || out.length > kAbsoluteMaxMessage) return HeaderStatus::TooLong;
  return HeaderStatus::Ok;
}

StartupStatus peekStartupLength(std::string_view data, std::uint32_t maxLength, std::uint32_t& length) {
  if (data.size() < 4) return StartupStatus::NeedMore;
  length = loadBe32(data.data());
  // The shortest valid packet is 8 bytes: the length and a request code or protocol version.
  if (length < 8) return StartupStatus::TooShort;
  if (length > maxLength) return StartupStatus::TooLong;
  return StartupStatus::Ok;
}

}  // namespace pgveil::protocol
