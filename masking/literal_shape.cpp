#include "masking/literal_shape.hpp"

#include <limits>

namespace pgveil::masking {

namespace {

// PostgreSQL 15 scan.l: ident_start [A-Za-z\200-\377_], ident_cont adds [0-9\$].
bool identStart(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80; }
bool digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool identCont(unsigned char c) { return identStart(c) || digit(c) || c == '$'; }

// process_integer_literal: ICONST when the decimal value fits int4, FCONST otherwise.
bool fitsInt4(std::string_view digits) {
  while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
  if (digits.size() > 10) return false;
  std::uint64_t v = 0;
  for (char c : digits) v = v * 10 + static_cast<unsigned>(c - '0');
  return v <= static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max());
}

}  // namespace

bool literalShape(std::string_view sql, std::string& shape, std::vector<SqlLiteral>& literals) {
  shape.clear();
  literals.clear();
  const std::size_t n = sql.size();
  if (n >= std::numeric_limits<std::uint32_t>::max()) return false;
  std::size_t i = 0;
  std::size_t verbatim = 0;  // start of the text not yet copied to the shape
  auto at = [&](std::size_t k) -> unsigned char { return k < n ? static_cast<unsigned char>(sql[k]) : 0; };
  auto literal = [&](std::size_t start, std::size_t end, SqlLiteral::Kind kind) {
    shape.append(sql.data() + verbatim, start - verbatim);
    shape.push_back('\0');  // texts with NUL bytes are refused, so the marker is unambiguous
    shape.push_back(kind == SqlLiteral::Kind::Integer ? 'I' : kind == SqlLiteral::Kind::Numeric ? 'N' : 'S');
    literals.push_back({static_cast<std::uint32_t>(start), kind});
    verbatim = end;
  };
  // From an opening quote to just past its closing one (a doubled quote stands for itself);
  // false when unterminated or holding a NUL.
  auto skipQuoted = [&](char q) {
    for (++i;; ++i) {
      if (i >= n || at(i) == 0) return false;
      if (at(i) != static_cast<unsigned char>(q)) continue;
      if (at(i + 1) != static_cast<unsigned char>(q)) {
        ++i;
        return true;
      }
      ++i;  // the doubled quote
    }
  };
  while (i < n) {
    unsigned char c = at(i);
    if (c == 0) return false;
    if (c == '-' && at(i + 1) == '-') {  // comment to the end of the line
      i += 2;
      while (i < n && at(i) != '\n' && at(i) != '\r') {
        if (at(i) == 0) return false;
        ++i;
      }
      continue;
    }
    if (c == '/' && at(i + 1) == '*') {  // block comments nest
      int depth = 1;
      i += 2;
      while (depth > 0) {
        if (i + 1 >= n) return false;  // unterminated
        if (at(i) == '/' && at(i + 1) == '*') {
          ++depth;
          i += 2;
        } else if (at(i) == '*' && at(i + 1) == '/') {
          --depth;
          i += 2;
        } else {
          if (at(i) == 0) return false;
          ++i;
        }
      }
      continue;
    }
    if (c == '"') {  // quoted identifier, "" inside
      if (!skipQuoted('"')) return false;
      continue;
    }
    if (c == '\'') {
      // A quote glued to a word or to '&' is E'', B'', X'', N'', U&'' or `type'literal'`:
      // prefixes whose lexing rules this scanner does not model.
      if (i > 0 && (identCont(at(i - 1)) || at(i - 1) == '&')) return false;
      std::size_t start = i;
      if (!skipQuoted('\'')) return false;
      literal(start, i, SqlLiteral::Kind::String);
      continue;
    }
    if (c == '$') return false;  // dollar quote or parameter
    if (identStart(c)) {
      while (i < n && identCont(at(i))) ++i;
      continue;
    }
    if (digit(c) || (c == '.' && digit(at(i + 1)))) {
      std::size_t start = i;
      bool integer = true;
      while (digit(at(i))) ++i;
      if (at(i) == '.') {
        if (at(i + 1) == '.') return false;  // `1..`: the lexer splits it differently
        integer = false;
        ++i;
        while (digit(at(i))) ++i;
      }
      if (at(i) == 'e' || at(i) == 'E') {
        std::size_t j = i + 1;
        if (at(j) == '+' || at(j) == '-') ++j;
        if (!digit(at(j))) return false;  // trailing junk
        integer = false;
        i = j;
        while (digit(at(i))) ++i;
      }
      if (i < n && (identCont(at(i)) || at(i) == '.')) return false;  // trailing junk, 0x.., 1_000
      bool int4 = integer && fitsInt4(sql.substr(start, i - start));
      literal(start, i, int4 ? SqlLiteral::Kind::Integer : SqlLiteral::Kind::Numeric);
      continue;
    }
    ++i;
  }
  shape.append(sql.data() + verbatim, n - verbatim);
  return true;
}

}  // namespace pgveil::masking
