// literalShape: where the scanner finds literals, the shape it builds, and the texts it gives up on.

#include "masking/literal_shape.hpp"

#include <gtest/gtest.h>

namespace pgveil::masking {
namespace {

// The shape with its NUL markers spelled "?I", "?N", "?S"; "FAIL" when the scanner gives up.
std::string shapeOf(std::string_view sql, std::vector<SqlLiteral>* lits = nullptr) {
  std::string shape;
  std::vector<SqlLiteral> literals;
  if (!literalShape(sql, shape, literals)) return "FAIL";
  if (lits) *lits = literals;
  std::string out;
  for (char c : shape) out += c == '\0' ? '?' : c;
  return out;
}

struct ShapeCase {
  const char* sql;
  const char* shape;
};

class LiteralShapeCaseTest : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(LiteralShapeCaseTest, Shape) {
  const auto& c = GetParam();
  EXPECT_EQ(shapeOf(c.sql), c.shape) << c.sql;
}

// clang-format off
const ShapeCase kShapeCases[] = {
  {"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;", "SELECT abalance FROM pgbench_accounts WHERE aid = ?I;"},
  {"SELECT 1", "SELECT ?I"},
  {"SELECT 2147483647, 2147483648, 007, 00000000002147483647", "SELECT ?I, ?N, ?I, ?I"},
  {"SELECT 1.5, .5, 5., 1e5, 1E+5, 2.5e-3", "SELECT ?N, ?N, ?N, ?N, ?N, ?N"},
  {"SELECT 'a', 'it''s', '', 'back\\slash'", "SELECT ?S, ?S, ?S, ?S"},
  {"SELECT x-1, -1, - 1", "SELECT x-?I, -?I, - ?I"},
  {"SELECT t1.c, t.5", "SELECT t1.c, t?N"},
  {"SELECT \"a'b\"\"c\" FROM t WHERE x = 'y'", "SELECT \"a'b\"\"c\" FROM t WHERE x = ?S"},
  {"SELECT 1 -- 'not a literal' 2\n, 3", "SELECT ?I -- 'not a literal' 2\n, ?I"},
  {"SELECT /* 1 /* nested 'x' */ still */ 4", "SELECT /* 1 /* nested 'x' */ still */ ?I"},
  {"SELECT a$1, a1 FROM t", "SELECT a$1, a1 FROM t"},
  {"SELECT 'a'::date, date '2020-01-01'", "SELECT ?S::date, date ?S"},
  {"SELECT x FROM t WHERE y IN (1, 2, 3)", "SELECT x FROM t WHERE y IN (?I, ?I, ?I)"},
  {"SELECT 'é' || ünïcode FROM t", "SELECT ?S || ünïcode FROM t"},
  {"SELECT 1/2*3", "SELECT ?I/?I*?I"},
  // Given up: prefixes, dollar quotes, parameters, trailing junk, unterminated text.
  {"SELECT E'a\\'b'", "FAIL"},
  {"SELECT e'a'", "FAIL"},
  {"SELECT B'101', X'1F'", "FAIL"},
  {"SELECT N'abc'", "FAIL"},
  {"SELECT U&'d\\0061t'", "FAIL"},
  {"SELECT date'2020-01-01'", "FAIL"},
  {"SELECT $$a$$", "FAIL"},
  {"SELECT $tag$a$tag$", "FAIL"},
  {"SELECT $1", "FAIL"},
  {"SELECT 0x1F", "FAIL"},
  {"SELECT 1_000", "FAIL"},
  {"SELECT 123abc", "FAIL"},
  {"SELECT 1e", "FAIL"},
  {"SELECT 1e+", "FAIL"},
  {"SELECT 1..2", "FAIL"},
  {"SELECT 1.2.3", "FAIL"},
  {"SELECT 'unterminated", "FAIL"},
  {"SELECT \"unterminated", "FAIL"},
  {"SELECT /* unterminated", "FAIL"},
  {"SELECT /* /* */ 1", "FAIL"},
};
// clang-format on

INSTANTIATE_TEST_SUITE_P(Texts, LiteralShapeCaseTest, ::testing::ValuesIn(kShapeCases));

TEST(LiteralShapeTest, OffsetsAndKinds) {
  std::vector<SqlLiteral> lits;
  ASSERT_NE(shapeOf("SELECT 'x', 12, 1.5 FROM t WHERE a = -3", &lits), "FAIL");
  ASSERT_EQ(lits.size(), 4u);
  EXPECT_EQ(lits[0].offset, 7u);
  EXPECT_EQ(lits[0].kind, SqlLiteral::Kind::String);
  EXPECT_EQ(lits[1].offset, 12u);
  EXPECT_EQ(lits[1].kind, SqlLiteral::Kind::Integer);
  EXPECT_EQ(lits[2].offset, 16u);
  EXPECT_EQ(lits[2].kind, SqlLiteral::Kind::Numeric);
  EXPECT_EQ(lits[3].offset, 38u);  // the digit, not the minus
}

TEST(LiteralShapeTest, SameShapeOnlyForSameStatementAndClasses) {
  EXPECT_EQ(shapeOf("SELECT * FROM t WHERE id = 1"), shapeOf("SELECT * FROM t WHERE id = 987654"));
  EXPECT_EQ(shapeOf("SELECT * FROM t WHERE s = 'a'"), shapeOf("SELECT * FROM t WHERE s = 'a long '' value -- x'"));
  EXPECT_NE(shapeOf("SELECT * FROM t WHERE id = 1"), shapeOf("SELECT * FROM t WHERE id = 1.0"));
  EXPECT_NE(shapeOf("SELECT * FROM t WHERE id = 1"), shapeOf("SELECT * FROM t WHERE id = 4294967296"));
  EXPECT_NE(shapeOf("SELECT * FROM t WHERE id = 1"), shapeOf("SELECT * FROM t WHERE id = '1'"));
  EXPECT_NE(shapeOf("SELECT * FROM t WHERE id = 1"), shapeOf("SELECT * FROM t WHERE id =  1"));
  // A marker cannot be forged: texts holding NUL bytes are given up on.
  EXPECT_EQ(shapeOf(std::string_view("SELECT \0I", 9)), "FAIL");
  EXPECT_EQ(shapeOf(std::string_view("SELECT 'a\0b'", 12)), "FAIL");
}

TEST(LiteralShapeTest, BuffersAreReused) {
  std::string shape;
  std::vector<SqlLiteral> lits;
  ASSERT_TRUE(literalShape("SELECT 1, 2, 3", shape, lits));
  EXPECT_EQ(lits.size(), 3u);
  ASSERT_TRUE(literalShape("SELECT x", shape, lits));
  EXPECT_TRUE(lits.empty());
  EXPECT_EQ(shape, "SELECT x");
}

}  // namespace
}  // namespace pgveil::masking
