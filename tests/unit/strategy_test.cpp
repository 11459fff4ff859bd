// Masking strategies per type, in text and binary format; the PII detector; policies and plans.

#include "masking/strategy.hpp"

#include <gtest/gtest.h>

#include <cctype>

#include "masking/detect.hpp"
#include "protocol/bytes.hpp"

namespace pgveil::masking {
namespace {

constexpr std::uint32_t kText = 25, kVarchar = 1043, kInt2 = 21, kInt4 = 23, kInt8 = 20, kNumeric = 1700,
                        kDate = 1082, kTs = 1114, kTstz = 1184, kUuid = 2950, kBytea = 17, kJson = 114,
                        kJsonb = 3802, kTextArray = 1009, kInt4Array = 1007, kBool = 16;

class StrategyTest : public ::testing::Test {
 protected:
  std::string text(const char* strategy, std::vector<std::string> args, std::uint32_t type, std::string_view in,
                   bool* isNull = nullptr) {
    std::string out;
    bool ok = masker_.mask(makeStrategy(strategy, args), type, 0, in, out);
    if (isNull) *isNull = !ok;
    return ok ? out : "<NULL>";
  }
  std::string binary(const char* strategy, std::vector<std::string> args, std::uint32_t type, std::string_view in) {
    std::string out;
    bool ok = masker_.mask(makeStrategy(strategy, args), type, 1, in, out);
    return ok ? out : "<NULL>";
  }
  static std::string be(std::uint64_t v, int bytes) {
    std::string s;
    for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>(v >> (8 * i)));
    return s;
  }
  ValueMasker masker_{"unit-test-key-0123456789"};
};

TEST_F(StrategyTest, TextStrategies) {
  EXPECT_EQ(text("redact", {}, kText, "secret"), "***");
  EXPECT_EQ(text("null", {}, kText, "secret"), "<NULL>");
  EXPECT_EQ(text("partial", {"1", "2"}, kText, "Linda Wilson"), "L*********on");
  EXPECT_EQ(text("partial", {"2", "2"}, kText, "abc"), "***");  // too short: nothing kept
  EXPECT_EQ(text("partial", {"1", "1"}, kText, "Zoë Ünal"), "Z******l");  // code points, not bytes
  EXPECT_EQ(text("partial_email", {}, kText, "linda.wilson1@example.org"), "l***@example.org");
  EXPECT_EQ(text("partial_email", {}, kVarchar, "no-at-sign"), "n***");
  EXPECT_EQ(text("last4", {}, kText, "+1-238-555-7919"), "+*-***-***-7919");
  EXPECT_EQ(text("last4", {}, kText, "123"), "***");
  EXPECT_EQ(text("fixed", {"n/a"}, kText, "x"), "n/a");
  EXPECT_EQ(text("none", {}, kText, "raw"), "raw");
}

// The text strategies write into the caller's buffer: rewriting a row allocates nothing once
// the scratch buffer has grown (outputs here are longer than the small-string buffer).
TEST_F(StrategyTest, TextStrategiesReuseTheOutputBuffer) {
  struct Case {
    const char* strategy;
    std::vector<std::string> args;
    const char* in;
  } cases[] = {{"partial", {"1", "2"}, "Linda Wilson-Hernandez"},
               {"partial_email", {}, "linda.wilson1@example.org"},
               {"last4", {}, "+1-238-555-7919 extension 42"},
               {"hash", {}, "linda.wilson1@example.org"},
               {"tokenize", {}, "linda.wilson1@example.org"}};
  for (const auto& c : cases) {
    std::string out;
    out.reserve(256);
    const char* buffer = out.data();
    ASSERT_TRUE(masker_.mask(makeStrategy(c.strategy, c.args), kText, 0, c.in, out)) << c.strategy;
    EXPECT_GT(out.size(), 15u) << c.strategy;
    EXPECT_EQ(out.data(), buffer) << c.strategy;
    EXPECT_EQ(out, text(c.strategy, c.args, kText, c.in)) << c.strategy;
  }
}

// last4 decides per byte without isalnum(): every byte value against the C locale's isalnum,
// as a letter/digit (counted, all but the last four masked), an ASCII separator (kept) or a
// byte of a non-ASCII character (masked).
TEST_F(StrategyTest, Last4ClassifiesEveryByteLikeTheCLocale) {
  for (int b = 1; b < 256; ++b) {
    auto c = static_cast<char>(b);
    std::string in = std::string("12") + c + "345678";
    std::string expected;
    bool alnum = std::isalnum(b) != 0;
    std::size_t total = 8 + (alnum ? 1 : 0), seen = 0;
    for (char x : in) {
      auto u = static_cast<unsigned char>(x);
      if (std::isalnum(u)) {
        ++seen;
        expected.push_back(seen + 4 > total ? x : '*');
      } else {
        expected.push_back(u >= 0x80 ? '*' : x);
      }
    }
    EXPECT_EQ(text("last4", {}, kText, in), expected) << "byte " << b;
  }
}

TEST_F(StrategyTest, HashIsDeterministicKeyedAndHex) {
  auto a = text("hash", {}, kText, "linda.wilson1@example.org");
  EXPECT_EQ(a, text("hash", {}, kText, "linda.wilson1@example.org"));
  EXPECT_NE(a, text("hash", {}, kText, "linda.wilson2@example.org"));
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  ValueMasker other("another-key-0123456789");
  std::string b;
  ASSERT_TRUE(other.mask(makeStrategy("hash", {}), kText, 0, "linda.wilson1@example.org", b));
  EXPECT_NE(a, b);
}

// RFC 4231 test case 2, with maskers of two keys interleaved on one thread (the keyed HMAC
// context is cached per thread and must follow the key).
TEST_F(StrategyTest, HmacKnownAnswerAcrossKeys) {
  auto hex = [](const unsigned char* d) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < 32; ++i) {
      out += digits[d[i] >> 4];
      out += digits[d[i] & 15];
    }
    return out;
  };
  ValueMasker jefe("Jefe");
  ValueMasker other("another-key-0123456789");
  unsigned char a[32], b[32], c[32];
  for (int round = 0; round < 3; ++round) {
    jefe.hmac("what do ya want for nothing?", a);
    other.hmac("what do ya want for nothing?", b);
    jefe.hmac("what do ya want for nothing?", c);
    EXPECT_EQ(hex(a), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    EXPECT_EQ(hex(c), hex(a));
    EXPECT_NE(hex(b), hex(a));
  }
  unsigned char empty[32];
  jefe.hmac("", empty);
  EXPECT_NE(hex(empty), hex(a));
}

TEST_F(StrategyTest, TokenizePreservesFormat) {
  auto t = text("tokenize", {}, kText, "AB12-cd34 x");
  EXPECT_EQ(t, text("tokenize", {}, kText, "AB12-cd34 x"));
  ASSERT_EQ(t.size(), 11u);
  EXPECT_TRUE(std::isupper(t[0]) && std::isupper(t[1]));
  EXPECT_TRUE(std::isdigit(t[2]) && std::isdigit(t[3]));
  EXPECT_EQ(t[4], '-');
  EXPECT_TRUE(std::islower(t[5]) && std::islower(t[6]));
  EXPECT_EQ(t[9], ' ');
  EXPECT_NE(t, "AB12-cd34 x");
}

TEST_F(StrategyTest, Integers) {
  EXPECT_EQ(text("redact", {}, kInt4, "12345"), "0");
  EXPECT_EQ(text("generalize", {"100"}, kInt4, "12345"), "12300");
  EXPECT_EQ(text("generalize", {"100"}, kInt8, "-5"), "-100");
  EXPECT_EQ(text("last4", {}, kInt8, "123456789"), "6789");
  EXPECT_EQ(text("partial", {"1", "1"}, kInt4, "12345"), "10005");
  auto h = text("hash", {}, kInt2, "42");
  EXPECT_LE(std::stoll(h), 32767);
  EXPECT_EQ(h, text("hash", {}, kInt2, "42"));
  auto tok = text("tokenize", {}, kInt4, "123456");
  EXPECT_EQ(tok.size(), 6u);
  EXPECT_EQ(text("fixed", {"7"}, kInt4, "123"), "7");
  EXPECT_EQ(text("fixed", {"x"}, kInt4, "123"), "<NULL>");
  EXPECT_EQ(text("detect", {}, kInt4, "123"), "<NULL>");
  // Binary: big-endian of the right width.
  EXPECT_EQ(binary("redact", {}, kInt4, be(12345, 4)), be(0, 4));
  EXPECT_EQ(binary("generalize", {"100"}, kInt8, be(12345, 8)), be(12300, 8));
  EXPECT_EQ(binary("generalize", {"10"}, kInt2, be(static_cast<std::uint16_t>(-15), 2)), be(static_cast<std::uint16_t>(-20), 2));
  EXPECT_EQ(binary("redact", {}, kInt4, "abc"), "<NULL>");  // wrong width: NULL, never raw
}

TEST_F(StrategyTest, NumericTextAndBinary) {
  EXPECT_EQ(text("redact", {}, kNumeric, "99.19"), "0");
  EXPECT_EQ(text("generalize", {"100"}, kNumeric, "257.57"), "200");
  EXPECT_EQ(text("last4", {}, kNumeric, "123456.78"), "000056.78");  // the last four digits
  // 99.19 in binary: ndigits 2, weight 0, sign 0, dscale 2, digits 99, 1900.
  std::string n;
  protocol::MessageBuilder b(n);
  b.i16(2);
  b.i16(0);
  b.i16(0);
  b.i16(2);
  b.i16(99);
  b.i16(1900);
  auto g = binary("generalize", {"10"}, kNumeric, n);
  std::string expect;
  protocol::MessageBuilder e(expect);
  e.i16(1);
  e.i16(0);
  e.i16(0);
  e.i16(0);
  e.i16(90);
  EXPECT_EQ(g, expect);
  EXPECT_EQ(binary("redact", {}, kNumeric, n).size(), 8u);  // zero: no digits
  EXPECT_EQ(binary("redact", {}, kNumeric, "bad"), "<NULL>");
}

TEST_F(StrategyTest, DatesAndTimestamps) {
  EXPECT_EQ(text("generalize", {"year"}, kDate, "1942-12-13"), "1942-01-01");
  EXPECT_EQ(text("generalize", {"month"}, kDate, "1942-12-13"), "1942-12-01");
  EXPECT_EQ(text("redact", {}, kDate, "1942-12-13"), "2000-01-01");
  EXPECT_EQ(text("generalize", {"year"}, kTstz, "2020-01-02 05:05:29+00"), "2020-01-01 00:00:00+00");
  EXPECT_EQ(text("generalize", {"month"}, kTs, "2024-06-28 05:37:43.123"), "2024-06-01 00:00:00");
  EXPECT_EQ(text("generalize", {"year"}, kDate, "infinity"), "infinity");
  EXPECT_EQ(text("generalize", {"year"}, kDate, "0044-03-15 BC"), "0044-01-01 BC");
  auto h = text("hash", {}, kDate, "1942-12-13");
  EXPECT_EQ(h, text("hash", {}, kDate, "1942-12-13"));
  EXPECT_EQ(h.size(), 10u);
  // Not ISO DateStyle: cannot be masked faithfully, so NULL (never the raw value).
  EXPECT_EQ(text("generalize", {"year"}, kDate, "12/13/1942"), "<NULL>");
  // Binary date 1942-12-13 = -20838 days from 2000-01-01; year -> 1942-01-01 = -21184.
  EXPECT_EQ(binary("generalize", {"year"}, kDate, be(static_cast<std::uint32_t>(-20838), 4)),
            be(static_cast<std::uint32_t>(-21184), 4));
  // Binary timestamp 2000-03-04 05:06:07 -> month: 2000-03-01 00:00:00.
  std::int64_t us = ((31LL + 29 + 3) * 86400 + 5 * 3600 + 6 * 60 + 7) * 1000000;
  std::int64_t expect = (31LL + 29) * 86400 * 1000000;
  EXPECT_EQ(binary("generalize", {"month"}, kTstz, be(static_cast<std::uint64_t>(us), 8)),
            be(static_cast<std::uint64_t>(expect), 8));
}

TEST_F(StrategyTest, UuidByteaJson) {
  EXPECT_EQ(text("redact", {}, kUuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "00000000-0000-0000-0000-000000000000");
  auto h = text("hash", {}, kUuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  EXPECT_EQ(h.size(), 36u);
  EXPECT_EQ(h[14], '8');  // version 8
  EXPECT_EQ(binary("hash", {}, kUuid, std::string(16, '\x11')).size(), 16u);
  EXPECT_EQ(text("last4", {}, kUuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "00000000-0000-0000-0000-000000000a11");
  EXPECT_EQ(text("redact", {}, kBytea, "\\x0102"), "\\x");
  EXPECT_EQ(text("hash", {}, kBytea, "\\x0102").size(), 2u + 64u);
  EXPECT_EQ(text("partial", {"1", "0"}, kBytea, "\\x010203"), "\\x010000");
  EXPECT_EQ(binary("redact", {}, kBytea, "abc"), "");
  EXPECT_EQ(text("redact", {}, kJson, "{\"a\":1}"), "\"***\"");
  EXPECT_EQ(text("detect", {}, kJson, "{\"e\":\"linda.wilson1@example.org\"}"), "{\"e\":\"l***@example.org\"}");
  EXPECT_EQ(binary("redact", {}, kJsonb, "\1{\"a\":1}"), "\1\"***\"");
  EXPECT_EQ(text("fixed", {"say \"hi\""}, kJsonb, "{}"), "\"say \\\"hi\\\"\"");
}

TEST_F(StrategyTest, Arrays) {
  EXPECT_EQ(text("partial_email", {}, kTextArray, "{a@x.org,NULL,\"b c@y.org\"}"), "{\"a***@x.org\",NULL,\"b***@y.org\"}");
  EXPECT_EQ(text("redact", {}, kInt4Array, "{{1,2},{3,4}}"), "{{\"0\",\"0\"},{\"0\",\"0\"}}");
  EXPECT_EQ(text("redact", {}, kTextArray, "[0:1]={x,y}"), "[0:1]={\"***\",\"***\"}");
  // Binary int4[] {7, NULL}: ndim 1, hasnull 1, elemtype 23, dim 2, lb 1, elements.
  std::string arr = be(1, 4) + be(1, 4) + be(23, 4) + be(2, 4) + be(1, 4) + be(4, 4) + be(7, 4) + be(0xffffffff, 4);
  std::string expect = be(1, 4) + be(1, 4) + be(23, 4) + be(2, 4) + be(1, 4) + be(4, 4) + be(0, 4) + be(0xffffffff, 4);
  EXPECT_EQ(binary("redact", {}, kInt4Array, arr), expect);
  EXPECT_EQ(binary("redact", {}, kInt4Array, arr.substr(0, 20)), "<NULL>");  // truncated: NULL
}

TEST_F(StrategyTest, OtherTypesBecomeNull) {
  EXPECT_EQ(text("redact", {}, kBool, "t"), "<NULL>");
  EXPECT_EQ(text("partial_email", {}, 600 /* point */, "(1,2)"), "<NULL>");
  EXPECT_FALSE(isSupportedType(kBool));
  EXPECT_TRUE(isSupportedType(kTextArray));
}

}  // namespace
}  // namespace pgveil::masking

#include "masking/policy.hpp"
#include "protocol/encode.hpp"

namespace pgveil::masking {
namespace {

TEST(PolicyTest, PlansAndRewritesRows) {
  config::MaskingConfig cfg;
  cfg.classify = {{"public.patients.email", "email"}, {"public.patients.religion", "special"}};
  config::RolePolicyConfig support;
  support.name = "support";
  support.mask["email"] = {"partial_email", {}};
  cfg.roles["support"] = support;
  config::RolePolicyConfig def;
  def.name = "default";
  def.mask["*"] = {"redact", {}};
  cfg.roles["default"] = def;
  auto catalog = makeDemoCatalog();
  PolicySet policies(cfg);
  Classification cls(cfg, *catalog);
  auto p = policies.forRole("support", catalog.get());
  EXPECT_EQ(p->role(), "support");
  EXPECT_EQ(policies.forRole("intern", catalog.get())->role(), "default");
  // RowDescription: id (unclassified), email (classified), religion (classified, not listed: redact),
  // an expression without table (lineage unknown here: no analysis, reads unknown -> redacted).
  protocol::RowDescriptionMsg rd;
  rd.fields = {{"id", 16400, 1, 20, 8, -1, 0}, {"email", 16400, 3, 25, -1, -1, 0},
               {"religion", 16400, 9, 25, -1, -1, 0}, {"x", 0, 0, 25, -1, -1, 0}};
  auto plan = planResult(rd, nullptr, *p, cls, *catalog);
  ASSERT_EQ(plan.fields.size(), 4u);
  EXPECT_FALSE(plan.fields[0].mask);
  EXPECT_TRUE(plan.fields[1].mask);
  EXPECT_EQ(plan.fields[1].strategy.kind, StrategyKind::PartialEmail);
  EXPECT_EQ(plan.fields[2].strategy.kind, StrategyKind::Redact);
  EXPECT_TRUE(plan.fields[3].mask);  // unattributed expression: fail closed
  ValueMasker masker("unit-test-key-0123456789");
  std::string row;
  protocol::appendDataRow(row, {std::string_view("7"), std::string_view("a.b@example.org"), std::nullopt,
                                std::string_view("x")});
  std::string out, scratch;
  ASSERT_TRUE(rewriteDataRow(plan, std::string_view(row).substr(5), masker, out, scratch));
  protocol::DataRowMsg d;
  ASSERT_TRUE(protocol::decodeDataRow(std::string_view(out).substr(5), d));
  EXPECT_EQ(*d.columns[0], "7");
  EXPECT_EQ(*d.columns[1], "a***@example.org");
  EXPECT_FALSE(d.columns[2].has_value());  // NULL stays NULL
  EXPECT_EQ(*d.columns[3], "***");
  // A row that does not match the plan is refused, never forwarded.
  std::string shortRow;
  protocol::appendDataRow(shortRow, {std::string_view("7")});
  out.clear();
  EXPECT_FALSE(rewriteDataRow(plan, std::string_view(shortRow).substr(5), masker, out, scratch));
  // Unmasked roles plan nothing.
  config::RolePolicyConfig admin;
  admin.name = "admin";
  admin.unmasked = true;
  Policy a(admin);
  EXPECT_FALSE(planResult(rd, nullptr, a, cls, *catalog).any);
}

TEST(DetectTest, ValidatesAndMasks) {
  EXPECT_TRUE(luhnValid("4000009824516531"));
  EXPECT_FALSE(luhnValid("4000009824516532"));
  EXPECT_TRUE(ibanValid("DE51100071210000104723"));
  EXPECT_FALSE(ibanValid("DE52100071210000104723"));
  EXPECT_TRUE(ibanValid("GB82WEST12345698765432"));
  EXPECT_TRUE(nirValid("255081416802538"));
  EXPECT_FALSE(nirValid("255081416802539"));
  PiiDetector d;
  std::string out;
  EXPECT_EQ(d.mask("Call back on +1-491-555-5950 to reschedule the follow-up.", out), 1u);
  EXPECT_EQ(out, "Call back on +*-***-***-5950 to reschedule the follow-up.");
  EXPECT_EQ(d.mask("Patient asked to be contacted at yara.rodriguez176@example.com about the results.", out), 1u);
  EXPECT_EQ(out, "Patient asked to be contacted at y***@example.com about the results.");
  EXPECT_EQ(d.mask("card 4000 0098 2451 6531, iban DE51 1000 7121 0000 1047 23, ssn 132-27-8907", out), 3u);
  EXPECT_EQ(out, "card **** **** **** 6531, iban **** **** **** **** **47 23, ssn ***-**-****");
  EXPECT_EQ(d.mask("nir 2 55 08 14 168 025 38 ok", out), 1u);
  EXPECT_EQ(out, "nir * ** ** ** *** *** ** ok");
  // Not PII: dates, short numbers, invalid card numbers.
  EXPECT_EQ(d.mask("Seen 2024-01-01 at 10:30, room 12, ref 4000009824516532", out), 0u);
  EXPECT_EQ(d.mask("", out), 0u);
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace pgveil::masking
