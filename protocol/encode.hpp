#pragma once
// Encoders for the messages pgveil originates: ErrorResponse, NoticeResponse, ReadyForQuery,
// rewritten AuthenticationSASL. They append to a caller-owned buffer (no I/O, no policy).

#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.hpp"

namespace pgveil::protocol {

struct ErrorSpec {
  std::string_view severity = "ERROR";  // ERROR, FATAL, WARNING, NOTICE ...
  std::string_view sqlstate;
  std::string_view message;
  std::string_view detail = {};
  std::string_view hint = {};
};

// Appends an ErrorResponse ('E'). Embedded NULs in text are replaced by '?' so that the
// message always encodes.
void appendErrorResponse(std::string& out, const ErrorSpec& spec);
// Appends a NoticeResponse ('N') with the same fields.
void appendNoticeResponse(std::string& out, const ErrorSpec& spec);
// Appends an ErrorResponse/NoticeResponse from decoded fields, in order.
void appendErrorFields(std::string& out, char type, const std::vector<ErrorField>& fields);
void appendReadyForQuery(std::string& out, char status);
// Appends AuthenticationSASL listing the given mechanisms.
void appendAuthenticationSasl(std::string& out, const std::vector<std::string_view>& mechanisms);
// Appends a DataRow; nullopt encodes SQL NULL (-1).
void appendDataRow(std::string& out, const std::vector<std::optional<std::string_view>>& columns);
// Appends a simple Query message.
void appendQuery(std::string& out, std::string_view sql);

}  // namespace pgveil::protocol
