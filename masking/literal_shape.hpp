#pragma once
// The shape of a SQL text: the text with every numeric and plain string literal replaced by a
// marker of its lexical class. Simple-protocol clients send the same statement with different
// constants (`... WHERE aid = 17`, `... WHERE aid = 42`); when the analyzer has proved that a
// statement's analysis does not depend on its literals' values (Analysis::literalInsensitive,
// checked on the parse tree), texts of the same shape share that analysis instead of being
// parsed again.
//
// The scanner delimits literals the way PostgreSQL 15's lexer does for the subset it models
// (standard_conforming_strings on, UTF-8) and gives up, returning false, on everything else:
// dollar quotes, parameters, E'' B'' X'' N'' U&'' strings, numbers with trailing junk,
// unterminated comments or quotes, NUL bytes. Giving up only costs a parse.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgveil::masking {

struct SqlLiteral {
  enum class Kind : std::uint8_t { Integer, Numeric, String };
  std::uint32_t offset = 0;  // byte offset of the literal's first character
  Kind kind = Kind::Integer; // Integer: fits int4 (the lexer's ICONST); Numeric: FCONST; String: '...'
};

// Fills `shape` and `literals` (cleared first; their capacity is reused). Returns false when the
// text holds something the scanner does not model; the outputs are then meaningless.
bool literalShape(std::string_view sql, std::string& shape, std::vector<SqlLiteral>& literals);

}  // namespace pgveil::masking
