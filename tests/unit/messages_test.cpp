#include "protocol/messages.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "protocol/encode.hpp"
#include "protocol_test_util.hpp"

namespace pgveil::protocol {
namespace {

using testing::be16;
using testing::be32;
using testing::cstr;

// Every strict prefix of a valid payload must be refused, never read past.
void expectAllTruncationsFail(const std::string& payload, const std::function<bool(std::string_view)>& decode) {
  ASSERT_TRUE(decode(payload));
  for (std::size_t n = 0; n < payload.size(); ++n) {
    // Copy into an exact-size buffer so that AddressSanitizer catches any over-read.
    std::unique_ptr<char[]> exact(new char[n + 1]);
    std::memcpy(exact.get(), payload.data(), n);
    EXPECT_FALSE(decode(std::string_view(exact.get(), n))) << "prefix of " << n << " bytes accepted";
  }
}

TEST(MessagesTest, Query) {
  QueryMsg q;
  auto payload = cstr("SELECT 1");
  ASSERT_TRUE(decodeQuery(payload, q));
  EXPECT_EQ(q.sql, "SELECT 1");
  EXPECT_FALSE(decodeQuery(cstr("a") + "b", q));  // trailing bytes
  expectAllTruncationsFail(cstr("SELECT 1"), [](std::string_view p) { QueryMsg m; return decodeQuery(p, m); });
}

TEST(MessagesTest, Parse) {
  auto p = cstr("s1") + cstr("SELECT $1::int") + be16(1) + be32(23);
  ParseMsg m;
  ASSERT_TRUE(decodeParse(p, m));
  EXPECT_EQ(m.statement, "s1");
  EXPECT_EQ(m.sql, "SELECT $1::int");
  ASSERT_EQ(m.paramTypes.size(), 1u);
  EXPECT_EQ(m.paramTypes[0], 23u);
  expectAllTruncationsFail(p, [](std::string_view x) { ParseMsg m; return decodeParse(x, m); });
  // A count the payload cannot hold is refused before allocating.
  EXPECT_FALSE(decodeParse(cstr("") + cstr("x") + be16(30000), m));
  EXPECT_FALSE(decodeParse(cstr("") + cstr("x") + be16(0xffff), m));
}

TEST(MessagesTest, Bind) {
  auto p = cstr("p") + cstr("s") + be16(2) + be16(0) + be16(1) + be16(3) + be32(2) + "42" + be32(0xffffffff) +
           be32(0) + be16(2) + be16(1) + be16(0);
  BindMsg m;
  ASSERT_TRUE(decodeBind(p, m));
  EXPECT_EQ(m.portal, "p");
  EXPECT_EQ(m.statement, "s");
  ASSERT_EQ(m.params.size(), 3u);
  EXPECT_EQ(*m.params[0], "42");
  EXPECT_FALSE(m.params[1].has_value());
  EXPECT_EQ(*m.params[2], "");
  ASSERT_EQ(m.resultFormats.size(), 2u);
  EXPECT_EQ(m.resultFormats[0], 1);
  expectAllTruncationsFail(p, [](std::string_view x) { BindMsg m; return decodeBind(x, m); });
  // Negative parameter length other than -1.
  EXPECT_FALSE(decodeBind(cstr("") + cstr("") + be16(0) + be16(1) + be32(0xfffffffe) + be16(0), m));
}

TEST(MessagesTest, DescribeExecuteClose) {
  DescribeMsg d;
  auto dp = "S" + cstr("stmt");
  ASSERT_TRUE(decodeDescribe(dp, d));
  EXPECT_EQ(d.target, 'S');
  EXPECT_FALSE(decodeDescribe("X" + cstr("stmt"), d));
  expectAllTruncationsFail("P" + cstr("portal"), [](std::string_view x) { DescribeMsg m; return decodeDescribe(x, m); });
  ExecuteMsg e;
  ASSERT_TRUE(decodeExecute(cstr("") + be32(100), e));
  EXPECT_EQ(e.maxRows, 100);
  expectAllTruncationsFail(cstr("p") + be32(5), [](std::string_view x) { ExecuteMsg m; return decodeExecute(x, m); });
  CloseMsg c;
  ASSERT_TRUE(decodeClose("P" + cstr("p"), c));
  expectAllTruncationsFail("S" + cstr("s"), [](std::string_view x) { CloseMsg m; return decodeClose(x, m); });
}

TEST(MessagesTest, AuthenticationSasl) {
  auto p = be32(10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + '\0';
  AuthenticationMsg a;
  ASSERT_TRUE(decodeAuthentication(p, a));
  EXPECT_EQ(a.code, auth::kSasl);
  ASSERT_EQ(a.saslMechanisms.size(), 2u);
  EXPECT_EQ(a.saslMechanisms[1], "SCRAM-SHA-256");
  expectAllTruncationsFail(p, [](std::string_view x) { AuthenticationMsg m; return decodeAuthentication(x, m); });
  // The encoder writes what the decoder reads.
  std::string out;
  appendAuthenticationSasl(out, {"SCRAM-SHA-256"});
  ASSERT_TRUE(decodeAuthentication(std::string_view(out).substr(5), a));
  ASSERT_EQ(a.saslMechanisms.size(), 1u);
  EXPECT_EQ(a.saslMechanisms[0], "SCRAM-SHA-256");
}

TEST(MessagesTest, AuthenticationMd5KeepsSalt) {
  AuthenticationMsg a;
  auto payload = be32(5) + "salt";
  ASSERT_TRUE(decodeAuthentication(payload, a));
  EXPECT_EQ(a.code, auth::kMd5);
  EXPECT_EQ(a.data, "salt");
}

TEST(MessagesTest, BackendKeyParameterStatusReady) {
  BackendKeyDataMsg k;
  ASSERT_TRUE(decodeBackendKeyData(be32(77) + be32(0x12345678), k));
  EXPECT_EQ(k.pid, 77);
  EXPECT_EQ(k.key, 0x12345678);
  expectAllTruncationsFail(be32(1) + be32(2), [](std::string_view x) { BackendKeyDataMsg m; return decodeBackendKeyData(x, m); });
  ParameterStatusMsg s;
  auto ps = cstr("TimeZone") + cstr("UTC");
  ASSERT_TRUE(decodeParameterStatus(ps, s));
  EXPECT_EQ(s.value, "UTC");
  expectAllTruncationsFail(cstr("a") + cstr("b"), [](std::string_view x) { ParameterStatusMsg m; return decodeParameterStatus(x, m); });
  ReadyForQueryMsg z;
  ASSERT_TRUE(decodeReadyForQuery("T", z));
  EXPECT_EQ(z.status, 'T');
  EXPECT_FALSE(decodeReadyForQuery("Q", z));
  EXPECT_FALSE(decodeReadyForQuery("", z));
}

TEST(MessagesTest, RowDescription) {
  auto field = [](const char* name, std::uint32_t table, std::uint16_t col, std::uint32_t type) {
    return cstr(name) + be32(table) + be16(col) + be32(type) + be16(0xffff) + be32(0xffffffff) + be16(0);
  };
  auto p = be16(2) + field("id", 16384, 1, 20) + field("email", 16384, 3, 25);
  RowDescriptionMsg r;
  ASSERT_TRUE(decodeRowDescription(p, r));
  ASSERT_EQ(r.fields.size(), 2u);
  EXPECT_EQ(r.fields[1].name, "email");
  EXPECT_EQ(r.fields[1].tableOid, 16384u);
  EXPECT_EQ(r.fields[1].column, 3);
  EXPECT_EQ(r.fields[1].typeOid, 25u);
  EXPECT_EQ(r.fields[1].typeSize, -1);
  EXPECT_EQ(r.fields[1].typeModifier, -1);
  expectAllTruncationsFail(p, [](std::string_view x) { RowDescriptionMsg m; return decodeRowDescription(x, m); });
  EXPECT_FALSE(decodeRowDescription(be16(0x7fff), r));
}

TEST(MessagesTest, DataRowRoundTrip) {
  std::string out;
  appendDataRow(out, {std::string_view("1"), std::nullopt, std::string_view("")});
  ASSERT_EQ(out[0], 'D');
  DataRowMsg d;
  auto payload = std::string_view(out).substr(5);
  ASSERT_TRUE(decodeDataRow(payload, d));
  ASSERT_EQ(d.columns.size(), 3u);
  EXPECT_EQ(*d.columns[0], "1");
  EXPECT_FALSE(d.columns[1]);
  EXPECT_EQ(*d.columns[2], "");
  expectAllTruncationsFail(std::string(payload), [](std::string_view x) { DataRowMsg m; return decodeDataRow(x, m); });
  // A column length beyond the payload.
  EXPECT_FALSE(decodeDataRow(be16(1) + be32(100) + "abc", d));
}

TEST(MessagesTest, CommandCompleteNotificationCopy) {
  CommandCompleteMsg c;
  auto cc = cstr("SELECT 5");
  ASSERT_TRUE(decodeCommandComplete(cc, c));
  EXPECT_EQ(c.tag, "SELECT 5");
  NotificationMsg n;
  auto np = be32(9) + cstr("chan") + cstr("payload");
  ASSERT_TRUE(decodeNotification(np, n));
  EXPECT_EQ(n.channel, "chan");
  EXPECT_EQ(n.payload, "payload");
  expectAllTruncationsFail(np, [](std::string_view x) { NotificationMsg m; return decodeNotification(x, m); });
  CopyResponseMsg r;
  auto cp = std::string(1, '\0') + be16(2) + be16(0) + be16(0);
  ASSERT_TRUE(decodeCopyResponse(cp, r));
  EXPECT_EQ(r.columnFormats.size(), 2u);
  expectAllTruncationsFail(cp, [](std::string_view x) { CopyResponseMsg m; return decodeCopyResponse(x, m); });
}

TEST(EncodeTest, ErrorResponseRoundTrip) {
  std::string out;
  appendErrorResponse(out, {.severity = "FATAL", .sqlstate = "08P01", .message = "bad", .detail = "d"});
  ASSERT_EQ(out[0], 'E');
  ASSERT_EQ(loadBe32(out.data() + 1), out.size() - 1);
  ErrorMsg e;
  ASSERT_TRUE(decodeError(std::string_view(out).substr(5), e));
  EXPECT_EQ(e.field('S'), "FATAL");
  EXPECT_EQ(e.field('V'), "FATAL");
  EXPECT_EQ(e.field('C'), "08P01");
  EXPECT_EQ(e.field('M'), "bad");
  EXPECT_EQ(e.field('D'), "d");
  EXPECT_EQ(e.field('H'), "");
}

TEST(EncodeTest, EmbeddedNulIsReplaced) {
  std::string out;
  appendNoticeResponse(out, {.severity = "WARNING", .sqlstate = "01000", .message = std::string_view("a\0b", 3)});
  ErrorMsg e;
  ASSERT_EQ(out[0], 'N');
  ASSERT_TRUE(decodeError(std::string_view(out).substr(5), e));
  EXPECT_EQ(e.field('M'), "a?b");
}

TEST(EncodeTest, ErrorDecodeTruncations) {
  std::string out;
  appendErrorResponse(out, {.severity = "ERROR", .sqlstate = "42501", .message = "no"});
  expectAllTruncationsFail(out.substr(5), [](std::string_view x) { ErrorMsg m; return decodeError(x, m); });
}

TEST(EncodeTest, ReadyForQueryAndQuery) {
  std::string out;
  appendReadyForQuery(out, 'E');
  EXPECT_EQ(out, std::string("Z\0\0\0\x05" "E", 6));
  out.clear();
  appendQuery(out, "SELECT 1");
  QueryMsg q;
  ASSERT_TRUE(decodeQuery(std::string_view(out).substr(5), q));
  EXPECT_EQ(q.sql, "SELECT 1");
}

}  // namespace
}  // namespace pgveil::protocol
