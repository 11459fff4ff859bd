#pragma once
// Zero-copy typed views of the protocol v3 messages pgveil inspects (PostgreSQL docs 55.7).
// Each decode* takes a payload (without the 5-byte header) and returns false on any malformation.

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace pgveil::protocol {

// Message type bytes. Frontend (F) and backend (B) share some letters.
namespace msg {
// frontend
inline constexpr char kQuery = 'Q';
inline constexpr char kParse = 'P';
inline constexpr char kBind = 'B';
inline constexpr char kDescribe = 'D';
inline constexpr char kExecute = 'E';
inline constexpr char kSync = 'S';
inline constexpr char kFlush = 'H';
inline constexpr char kClose = 'C';
inline constexpr char kTerminate = 'X';
inline constexpr char kPassword = 'p';  // also SASLInitialResponse, SASLResponse, GSSResponse
inline constexpr char kFunctionCall = 'F';
inline constexpr char kCopyData = 'd';
inline constexpr char kCopyDone = 'c';
inline constexpr char kCopyFail = 'f';
// backend
inline constexpr char kAuthentication = 'R';
inline constexpr char kBackendKeyData = 'K';
inline constexpr char kParameterStatus = 'S';
inline constexpr char kReadyForQuery = 'Z';
inline constexpr char kRowDescription = 'T';
inline constexpr char kDataRow = 'D';
inline constexpr char kCommandComplete = 'C';
inline constexpr char kErrorResponse = 'E';
inline constexpr char kNoticeResponse = 'N';
inline constexpr char kNotification = 'A';
inline constexpr char kParseComplete = '1';
inline constexpr char kBindComplete = '2';
inline constexpr char kCloseComplete = '3';
inline constexpr char kNoData = 'n';
inline constexpr char kPortalSuspended = 's';
inline constexpr char kParameterDescription = 't';
inline constexpr char kEmptyQuery = 'I';
inline constexpr char kCopyInResponse = 'G';
inline constexpr char kCopyOutResponse = 'H';
inline constexpr char kCopyBothResponse = 'W';
inline constexpr char kNegotiateProtocol = 'v';
inline constexpr char kFunctionCallResponse = 'V';
}  // namespace msg

// Authentication request codes.
namespace auth {
inline constexpr std::int32_t kOk = 0;
inline constexpr std::int32_t kCleartext = 3;
inline constexpr std::int32_t kMd5 = 5;
inline constexpr std::int32_t kGss = 7;
inline constexpr std::int32_t kSspi = 9;
inline constexpr std::int32_t kSasl = 10;
inline constexpr std::int32_t kSaslContinue = 11;
inline constexpr std::int32_t kSaslFinal = 12;
}  // namespace auth

struct QueryMsg {
  std::string_view sql;
};
struct ParseMsg {
  std::string_view statement;
  std::string_view sql;
  std::vector<std::uint32_t> paramTypes;
};
struct BindMsg {
  std::string_view portal;
  std::string_view statement;
  std::vector<std::int16_t> paramFormats;
  std::vector<std::optional<std::string_view>> params;  // nullopt = SQL NULL
  std::vector<std::int16_t> resultFormats;
};
struct DescribeMsg {
  char target = 0;  // 'S' statement or 'P' portal
  std::string_view name;
};
struct ExecuteMsg {
  std::string_view portal;
  std::int32_t maxRows = 0;
};
struct CloseMsg {
  char target = 0;
  std::string_view name;
};
struct AuthenticationMsg {
  std::int32_t code = 0;
  std::vector<std::string_view> saslMechanisms;  // code == kSasl
  std::string_view data;                         // md5 salt, SASL continue/final data
};
struct BackendKeyDataMsg {
  std::int32_t pid = 0;
  std::int32_t key = 0;
};
struct ParameterStatusMsg {
  std::string_view name;
  std::string_view value;
};
struct ReadyForQueryMsg {
  char status = 'I';  // 'I' idle, 'T' in transaction, 'E' failed transaction
};
struct FieldDescription {
  std::string_view name;
  std::uint32_t tableOid = 0;
  std::int16_t column = 0;
  std::uint32_t typeOid = 0;
  std::int16_t typeSize = 0;
  std::int32_t typeModifier = 0;
  std::int16_t format = 0;
};
struct RowDescriptionMsg {
  std::vector<FieldDescription> fields;
};
// A DataRow's columns; nullopt is SQL NULL.
struct DataRowMsg {
  std::vector<std::optional<std::string_view>> columns;
};
struct CommandCompleteMsg {
  std::string_view tag;
};
struct ErrorField {
  char code = 0;  // 'S' severity, 'C' SQLSTATE, 'M' message, 'D' detail, ...
  std::string_view value;
};
struct ErrorMsg {  // ErrorResponse and NoticeResponse
  std::vector<ErrorField> fields;
  [[nodiscard]] std::string_view field(char code) const;
};
struct CopyResponseMsg {  // CopyInResponse, CopyOutResponse, CopyBothResponse
  std::int8_t overallFormat = 0;
  std::vector<std::int16_t> columnFormats;
};
struct NotificationMsg {
  std::int32_t pid = 0;
  std::string_view channel;
  std::string_view payload;
};

[[nodiscard]] bool decodeQuery(std::string_view payload, QueryMsg& out);
[[nodiscard]] bool decodeParse(std::string_view payload, ParseMsg& out);
[[nodiscard]] bool decodeBind(std::string_view payload, BindMsg& out);
[[nodiscard]] bool decodeDescribe(std::string_view payload, DescribeMsg& out);
[[nodiscard]] bool decodeExecute(std::string_view payload, ExecuteMsg& out);
[[nodiscard]] bool decodeClose(std::string_view payload, CloseMsg& out);
[[nodiscard]] bool decodeAuthentication(std::string_view payload, AuthenticationMsg& out);
[[nodiscard]] bool decodeBackendKeyData(std::string_view payload, BackendKeyDataMsg& out);
[[nodiscard]] bool decodeParameterStatus(std::string_view payload, ParameterStatusMsg& out);
[[nodiscard]] bool decodeReadyForQuery(std::string_view payload, ReadyForQueryMsg& out);
[[nodiscard]] bool decodeRowDescription(std::string_view payload, RowDescriptionMsg& out);
[[nodiscard]] bool decodeDataRow(std::string_view payload, DataRowMsg& out);
[[nodiscard]] bool decodeCommandComplete(std::string_view payload, CommandCompleteMsg& out);
[[nodiscard]] bool decodeError(std::string_view payload, ErrorMsg& out);
[[nodiscard]] bool decodeCopyResponse(std::string_view payload, CopyResponseMsg& out);
[[nodiscard]] bool decodeNotification(std::string_view payload, NotificationMsg& out);

}  // namespace pgveil::protocol
