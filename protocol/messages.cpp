#include "protocol/messages.hpp"

#include "protocol/bytes.hpp"

namespace pgveil::protocol {

namespace {
// Counts on the wire are int16; negative counts are malformed.
bool readCount(ByteReader& r, std::size_t& n) {
  auto v = r.i16();
  if (!r.ok() || v < 0) return false;
  n = static_cast<std::size_t>(v);
  return true;
}
// Each element of a counted list needs at least minBytes more bytes: refuse counts the payload
// cannot hold before reserving memory for them.
bool plausible(const ByteReader& r, std::size_t n, std::size_t minBytes) { return r.remaining() >= n * minBytes; }
}  // namespace

std::string_view ErrorMsg::field(char code) const {
  for (const auto& f : fields) {
    if (f.code == code) return f.value;
  }
  return {};
}

bool decodeQuery(std::string_view payload, QueryMsg& out) {
  ByteReader r(payload);
  out.sql = r.cstring();
  return r.ok() && r.atEnd();
}

bool decodeParse(std::string_view payload, ParseMsg& out) {
  ByteReader r(payload);
  out.statement = r.cstring();
  out.sql = r.cstring();
  std::size_t n = 0;
  if (!r.ok() || !readCount(r, n) || !plausible(r, n, 4)) return false;
  out.paramTypes.clear();
  out.paramTypes.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.paramTypes.push_back(static_cast<std::uint32_t>(r.i32()));
  return r.ok() && r.atEnd();
}

bool decodeBind(std::string_view payload, BindMsg& out) {
  ByteReader r(payload);
  out.portal = r.cstring();
  out.statement = r.cstring();
  std::size_t n = 0;
  if (!r.ok() || !readCount(r, n) || !plausible(r, n, 2)) return false;
  out.paramFormats.clear();
  for (std::size_t i = 0; i < n; ++i) out.paramFormats.push_back(r.i16());
  if (!readCount(r, n) || !plausible(r, n, 4)) return false;
  out.params.clear();
  out.params.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto len = r.i32();
    if (!r.ok() || len < -1) return false;
    if (len == -1) {
      out.params.emplace_back(std::nullopt);
    } else {
      auto v = r.bytes(static_cast<std::size_t>(len));
      if (!r.ok()) return false;
      out.params.emplace_back(v);
    }
  }
  if (!readCount(r, n) || !plausible(r, n, 2)) return false;
  out.resultFormats.clear();
  for (std::size_t i = 0; i < n; ++i) out.resultFormats.push_back(r.i16());
  return r.ok() && r.atEnd();
}

bool decodeDescribe(std::string_view payload, DescribeMsg& out) {
  ByteReader r(payload);
  out.target = static_cast<char>(r.u8());
  out.name = r.cstring();
  return r.ok() && r.atEnd() && (out.target == 'S' || out.target == 'P');
}

bool decodeExecute(std::string_view payload, ExecuteMsg& out) {
  ByteReader r(payload);
  out.portal = r.cstring();
  out.maxRows = r.i32();
  return r.ok() && r.atEnd();
}

bool decodeClose(std::string_view payload, CloseMsg& out) {
  ByteReader r(payload);
  out.target = static_cast<char>(r.u8());
  out.name = r.cstring();
  return r.ok() && r.atEnd() && (out.target == 'S' || out.target == 'P');
}

bool decodeAuthentication(std::string_view payload, AuthenticationMsg& out) {
  ByteReader r(payload);
  out.code = r.i32();
  if (!r.ok()) return false;
  out.saslMechanisms.clear();
  out.data = {};
  if (out.code == auth::kSasl) {
    for (;;) {
      auto m = r.cstring();
      if (!r.ok()) return false;
      if (m.empty()) break;
      out.saslMechanisms.push_back(m);
    }
    return r.atEnd();
  }
  out.data = r.bytes(r.remaining());
  return true;
}

bool decodeBackendKeyData(std::string_view payload, BackendKeyDataMsg& out) {
  ByteReader r(payload);
  out.pid = r.i32();
  out.key = r.i32();
  return r.ok() && r.atEnd();
}

bool decodeParameterStatus(std::string_view payload, ParameterStatusMsg& out) {
  ByteReader r(payload);
  out.name = r.cstring();
  out.value = r.cstring();
  return r.ok() && r.atEnd();
}

bool decodeReadyForQuery(std::string_view payload, ReadyForQueryMsg& out) {
  ByteReader r(payload);
  out.status = static_cast<char>(r.u8());
  return r.ok() && r.atEnd() && (out.status == 'I' || out.status == 'T' || out.status == 'E');
}

bool decodeRowDescription(std::string_view payload, RowDescriptionMsg& out) {
  ByteReader r(payload);
  std::size_t n = 0;
  // Each field takes at least 19 bytes (empty name + 18 fixed bytes).
  if (!readCount(r, n) || !plausible(r, n, 19)) return false;
  out.fields.clear();
  out.fields.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    FieldDescription f;
    f.name = r.cstring();
    f.tableOid = static_cast<std::uint32_t>(r.i32());
    f.column = r.i16();
    f.typeOid = static_cast<std::uint32_t>(r.i32());
    f.typeSize = r.i16();
    f.typeModifier = r.i32();
    f.format = r.i16();
    if (!r.ok()) return false;
    out.fields.push_back(f);
  }
  return r.atEnd();
}

bool decodeDataRow(std::string_view payload, DataRowMsg& out) {
  ByteReader r(payload);
  std::size_t n = 0;
  if (!readCount(r, n) || !plausible(r, n, 4)) return false;
  out.columns.clear();
  out.columns.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto len = r.i32();
    if (!r.ok() || len < -1) return false;
    if (len == -1) {
      out.columns.emplace_back(std::nullopt);
      continue;
    }
    auto v = r.bytes(static_cast<std::size_t>(len));
    if (!r.ok()) return false;
    out.columns.emplace_back(v);
  }
  return r.atEnd();
}

bool decodeCommandComplete(std::string_view payload, CommandCompleteMsg& out) {
  ByteReader r(payload);
  out.tag = r.cstring();
  return r.ok() && r.atEnd();
}

bool decodeError(std::string_view payload, ErrorMsg& out) {
  ByteReader r(payload);
  out.fields.clear();
  for (;;) {
    auto code = static_cast<char>(r.u8());
    if (!r.ok()) return false;
    if (code == '\0') break;
    auto v = r.cstring();
    if (!r.ok()) return false;
    out.fields.push_back({code, v});
  }
  return r.atEnd();
}

bool decodeCopyResponse(std::string_view payload, CopyResponseMsg& out) {
  ByteReader r(payload);
  out.overallFormat = static_cast<std::int8_t>(r.u8());
  std::size_t n = 0;
  if (!r.ok() || !readCount(r, n) || !plausible(r, n, 2)) return false;
  out.columnFormats.clear();
  for (std::size_t i = 0; i < n; ++i) out.columnFormats.push_back(r.i16());
  return r.ok() && r.atEnd();
}

bool decodeNotification(std::string_view payload, NotificationMsg& out) {
  ByteReader r(payload);
  out.pid = r.i32();
  out.channel = r.cstring();
  out.payload = r.cstring();
  return r.ok() && r.atEnd();
}

}  // namespace pgveil::protocol
