#include "protocol/encode.hpp"

#include "protocol/bytes.hpp"

namespace pgveil::protocol {

namespace {

void appendCleanCString(MessageBuilder& b, std::string_view s) {
  if (s.find('\0') == std::string_view::npos) {
    b.cstring(s);
    return;
  }
  std::string copy(s);
  for (auto& c : copy) {
    if (c == '\0') c = '?';
  }
  b.cstring(copy);
}

void appendFields(std::string& out, char type, const ErrorSpec& spec) {
  MessageBuilder b(out);
  b.begin(type);
  b.u8('S');
  appendCleanCString(b, spec.severity);
  // 'V' is the non-localized severity (protocol 3.0, PostgreSQL 9.6+); drivers such as pgx read it.
  b.u8('V');
  appendCleanCString(b, spec.severity);
  b.u8('C');
  appendCleanCString(b, spec.sqlstate);
  b.u8('M');
  appendCleanCString(b, spec.message);
  if (!spec.detail.empty()) {
    b.u8('D');
    appendCleanCString(b, spec.detail);
  }
  if (!spec.hint.empty()) {
    b.u8('H');
    appendCleanCString(b, spec.hint);
  }
  b.u8(0);
  b.end();
}

}  // namespace

void appendErrorResponse(std::string& out, const ErrorSpec& spec) { appendFields(out, msg::kErrorResponse, spec); }

void appendNoticeResponse(std::string& out, const ErrorSpec& spec) { appendFields(out, msg::kNoticeResponse, spec); }

void appendErrorFields(std::string& out, char type, const std::vector<ErrorField>& fields) {
  MessageBuilder b(out);
  b.begin(type);
  for (const auto& f : fields) {
    b.u8(static_cast<std::uint8_t>(f.code));
    appendCleanCString(b, f.value);
  }
  b.u8(0);
  b.end();
}

void appendReadyForQuery(std::string& out, char status) {
  MessageBuilder b(out);
  b.begin(msg::kReadyForQuery);
  b.u8(static_cast<std::uint8_t>(status));
  b.end();
}

void appendAuthenticationSasl(std::string& out, const std::vector<std::string_view>& mechanisms) {
  MessageBuilder b(out);
  b.begin(msg::kAuthentication);
  b.i32(auth::kSasl);
  for (auto m : mechanisms) appendCleanCString(b, m);
  b.u8(0);
  b.end();
}

void appendDataRow(std::string& out, const std::vector<std::optional<std::string_view>>& columns) {
  MessageBuilder b(out);
  b.begin(msg::kDataRow);
  b.i16(static_cast<std::int16_t>(columns.size()));
  for (const auto& c : columns) {
    if (!c) {
      b.i32(-1);
      continue;
    }
    b.i32(static_cast<std::int32_t>(c->size()));
    b.bytes(*c);
  }
  b.end();
}

void appendQuery(std::string& out, std::string_view sql) {
  MessageBuilder b(out);
  b.begin(msg::kQuery);
  appendCleanCString(b, sql);
  b.end();
}

}  // namespace pgveil::protocol
