#pragma once
// SQLSTATE codes that pgveil itself sends to clients.
// See PostgreSQL documentation, Appendix A "PostgreSQL Error Codes".

namespace pgveil::protocol::sqlstate {

inline constexpr const char* kProtocolViolation = "08P01";
inline constexpr const char* kConnectionFailure = "08006";
inline constexpr const char* kConnectionException = "08000";
inline constexpr const char* kSqlClientUnableToEstablish = "08001";
inline constexpr const char* kFeatureNotSupported = "0A000";
inline constexpr const char* kInsufficientPrivilege = "42501";
inline constexpr const char* kProgramLimitExceeded = "54000";
inline constexpr const char* kTooManyConnections = "53300";
inline constexpr const char* kAdminShutdown = "57P01";
inline constexpr const char* kCannotConnectNow = "57P03";
inline constexpr const char* kQueryCanceled = "57014";
inline constexpr const char* kInvalidAuthorization = "28000";
inline constexpr const char* kInternalError = "XX000";
inline constexpr const char* kSyntaxError = "42601";
inline constexpr const char* kConfigFileError = "F0000";

}  // namespace pgveil::protocol::sqlstate
