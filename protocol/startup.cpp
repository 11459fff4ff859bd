#include "protocol/startup.hpp"

#include <algorithm>

#include "protocol/bytes.hpp"

namespace pgveil::protocol {

const std::string* StartupPacket::param(std::string_view name) const {
  for (const auto& p : params) {
    if (p.name == name) return &p.value;
  }
  return nullptr;
}

bool StartupPacket::hasDuplicateParam() const {
  for (std::size_t i = 0; i < params.size(); ++i) {
    for (std::size_t j = i + 1; j < params.size(); ++j) {
      if (params[i].name == params[j].name) return true;
    }
  }
  return false;
}

StartupPacket decodeStartup(std::string_view packet) {
  StartupPacket out;
  ByteReader r(packet);
  auto length = static_cast<std::uint32_t>(r.i32());
  out.code = r.i32();
  if (!r.ok() || length != packet.size()) {
    out.error = "invalid startup packet length";
    return out;
  }
  switch (out.code) {
    case kSslRequestCode:
    case kGssEncRequestCode:
      if (packet.size() != 8) {
        out.error = "invalid length of encryption request packet";
        return out;
      }
      out.kind = out.code == kSslRequestCode ? StartupKind::SslRequest : StartupKind::GssEncRequest;
      return out;
    case kCancelRequestCode:
      out.cancelPid = r.i32();
      out.cancelKey = r.i32();
      if (!r.ok() || !r.atEnd()) {
        out.error = "invalid length of cancel request packet";
        return out;
      }
      out.kind = StartupKind::Cancel;
      return out;
    default:
      break;
  }
  // Protocol 3.x only: major version 3, any minor (the server negotiates the minor).
  if ((out.code >> 16) != 3) {
    out.kind = StartupKind::UnsupportedVersion;
    out.error = "unsupported frontend protocol " + std::to_string(out.code >> 16) + "." +
                std::to_string(out.code & 0xffff) + ": server supports 3.0 to 3.0";
    return out;
  }
  // Name/value pairs, each a C string, terminated by an empty name.
  for (;;) {
    auto name = r.cstring();
    if (!r.ok()) {
      out.error = "invalid startup packet layout: expected terminator as last byte";
      return out;
    }
    if (name.empty()) break;
    auto value = r.cstring();
    if (!r.ok()) {
      out.error = "invalid startup packet layout: expected terminator as last byte";
      return out;
    }
    out.params.push_back({std::string(name), std::string(value)});
  }
  if (!r.atEnd()) {
    out.error = "invalid startup packet layout: expected terminator as last byte";
    return out;
  }
  if (out.param("user") == nullptr || out.param("user")->empty()) {
    out.error = "no PostgreSQL user name specified in startup packet";
    return out;
  }
  out.kind = StartupKind::Startup;
  return out;
}

std::string encodeStartup(std::int32_t version, const std::vector<StartupParam>& params) {
  std::string out;
  MessageBuilder b(out);
  b.beginUntyped();
  b.i32(version);
  for (const auto& p : params) {
    b.cstring(p.name);
    b.cstring(p.value);
  }
  b.u8(0);
  b.end();
  return out;
}

std::string encodeSslRequest() {
  std::string out;
  MessageBuilder b(out);
  b.beginUntyped();
  b.i32(kSslRequestCode);
  b.end();
  return out;
}

std::string encodeCancelRequest(std::int32_t pid, std::int32_t key) {
  std::string out;
  MessageBuilder b(out);
  b.beginUntyped();
  b.i32(kCancelRequestCode);
  b.i32(pid);
  b.i32(key);
  b.end();
  return out;
}

}  // namespace pgveil::protocol
