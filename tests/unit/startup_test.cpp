#include "protocol/startup.hpp"

#include <gtest/gtest.h>

#include "protocol_test_util.hpp"

namespace pgveil::protocol {
namespace {

using testing::be32;
using testing::cstr;
using testing::packet;

std::string startupBody(std::int32_t version, std::initializer_list<std::pair<const char*, const char*>> params) {
  std::string body = be32(static_cast<std::uint32_t>(version));
  for (auto& [k, v] : params) body += cstr(k) + cstr(v);
  body += '\0';
  return body;
}

TEST(StartupTest, DecodesStartupMessage) {
  auto p = packet(startupBody(kProtocolV3, {{"user", "alice"}, {"database", "clinic"}, {"application_name", "psql"}}));
  auto s = decodeStartup(p);
  ASSERT_EQ(s.kind, StartupKind::Startup) << s.error;
  ASSERT_EQ(s.params.size(), 3u);
  EXPECT_EQ(*s.param("user"), "alice");
  EXPECT_EQ(*s.param("database"), "clinic");
  EXPECT_EQ(s.param("options"), nullptr);
  EXPECT_FALSE(s.hasDuplicateParam());
}

TEST(StartupTest, RoundTripsThroughEncoder) {
  auto p = packet(startupBody(kProtocolV3, {{"user", "bob"}, {"options", "-c search_path=x"}}));
  auto s = decodeStartup(p);
  ASSERT_EQ(s.kind, StartupKind::Startup);
  EXPECT_EQ(encodeStartup(s.code, s.params), p);
}

TEST(StartupTest, DetectsDuplicateParameters) {
  auto s = decodeStartup(packet(startupBody(kProtocolV3, {{"user", "a"}, {"role", "x"}, {"role", "y"}})));
  ASSERT_EQ(s.kind, StartupKind::Startup);
  EXPECT_TRUE(s.hasDuplicateParam());
}

TEST(StartupTest, RequestCodes) {
  EXPECT_EQ(decodeStartup(encodeSslRequest()).kind, StartupKind::SslRequest);
  EXPECT_EQ(decodeStartup(packet(be32(kGssEncRequestCode))).kind, StartupKind::GssEncRequest);
  auto c = decodeStartup(encodeCancelRequest(1234, -99));
  ASSERT_EQ(c.kind, StartupKind::Cancel);
  EXPECT_EQ(c.cancelPid, 1234);
  EXPECT_EQ(c.cancelKey, -99);
}

TEST(StartupTest, RejectsWrongSizedRequests) {
  EXPECT_EQ(decodeStartup(packet(be32(kSslRequestCode) + "xx")).kind, StartupKind::Malformed);
  EXPECT_EQ(decodeStartup(packet(be32(kCancelRequestCode) + be32(1))).kind, StartupKind::Malformed);
}

TEST(StartupTest, RejectsUnknownProtocolVersion) {
  auto s = decodeStartup(packet(startupBody(0x00020000, {{"user", "a"}})));
  EXPECT_EQ(s.kind, StartupKind::UnsupportedVersion);
  EXPECT_NE(s.error.find("2.0"), std::string::npos);
  EXPECT_EQ(decodeStartup(packet(startupBody(1235 << 16 | 5678, {{"user", "a"}}))).kind,
            StartupKind::UnsupportedVersion);
}

TEST(StartupTest, AcceptsNewerMinorVersion) {
  // The server answers NegotiateProtocolVersion; pgveil forwards the request as is.
  EXPECT_EQ(decodeStartup(packet(startupBody(kProtocolV3 + 2, {{"user", "a"}}))).kind, StartupKind::Startup);
}

TEST(StartupTest, RejectsMissingUser) {
  auto s = decodeStartup(packet(startupBody(kProtocolV3, {{"database", "x"}})));
  EXPECT_EQ(s.kind, StartupKind::Malformed);
  EXPECT_NE(s.error.find("user"), std::string::npos);
}

TEST(StartupTest, RejectsMissingTerminatorAtEveryTruncation) {
  auto full = packet(startupBody(kProtocolV3, {{"user", "alice"}, {"database", "db"}}));
  auto body = full.substr(4);
  for (std::size_t n = 4; n < body.size(); ++n) {
    auto p = packet(body.substr(0, n));
    EXPECT_NE(decodeStartup(p).kind, StartupKind::Startup) << n;
  }
  // Trailing garbage after the terminator.
  EXPECT_EQ(decodeStartup(packet(body + "zz")).kind, StartupKind::Malformed);
}

TEST(StartupTest, RejectsLengthMismatch) {
  auto p = packet(startupBody(kProtocolV3, {{"user", "a"}}));
  p[3] = static_cast<char>(p[3] + 1);
  EXPECT_EQ(decodeStartup(p).kind, StartupKind::Malformed);
}

}  // namespace
}  // namespace pgveil::protocol
