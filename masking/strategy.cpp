// Type-aware masking. Each value is decoded from its wire format (text or binary), transformed
// by the strategy on a canonical form (string, integer, decimal digits, civil date-time, bytes),
// and encoded back in the same format, so that drivers keep parsing masked columns.

#include "masking/strategy.hpp"

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include <array>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "masking/detect.hpp"
#include "masking/json_text.hpp"
#include "protocol/bytes.hpp"

namespace pgveil::masking {

namespace {

namespace oid {
constexpr std::uint32_t kBool = 16, kBytea = 17, kName = 19, kInt8 = 20, kInt2 = 21, kInt4 = 23, kText = 25,
                        kJson = 114, kBpchar = 1042, kVarchar = 1043, kDate = 1082, kTimestamp = 1114,
                        kTimestamptz = 1184, kNumeric = 1700, kUuid = 2950, kJsonb = 3802;
}

enum class TypeKind { Text, Int, Numeric, Date, Timestamp, Uuid, Bytea, Json, Jsonb, Array, Other };

TypeKind kindOf(std::uint32_t t) {
  switch (t) {
    case oid::kText: case oid::kVarchar: case oid::kBpchar: case oid::kName: return TypeKind::Text;
    case oid::kInt2: case oid::kInt4: case oid::kInt8: return TypeKind::Int;
    case oid::kNumeric: return TypeKind::Numeric;
    case oid::kDate: return TypeKind::Date;
    case oid::kTimestamp: case oid::kTimestamptz: return TypeKind::Timestamp;
    case oid::kUuid: return TypeKind::Uuid;
    case oid::kBytea: return TypeKind::Bytea;
    case oid::kJson: return TypeKind::Json;
    case oid::kJsonb: return TypeKind::Jsonb;
    default: return arrayElementType(t) ? TypeKind::Array : TypeKind::Other;
  }
}

int intWidth(std::uint32_t t) { return t == oid::kInt2 ? 2 : t == oid::kInt4 ? 4 : 8; }
std::int64_t intMax(int width) { return width == 2 ? 32767 : width == 4 ? INT32_MAX : INT64_MAX; }

const char kHex[] = "0123456789abcdef";

void appendHex(const unsigned char* p, std::size_t n, std::string& out) {
  auto at = out.size();
  out.resize(at + n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out[at + 2 * i] = kHex[p[i] >> 4];
    out[at + 2 * i + 1] = kHex[p[i] & 15];
  }
}

std::string toHex(const unsigned char* p, std::size_t n) {
  std::string out;
  appendHex(p, n, out);
  return out;
}

int hexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// ---- civil dates (days since 1970-01-01, proleptic Gregorian), after H. Hinnant
std::int64_t daysFromCivil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civilFromDays(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp + (mp < 10 ? 3 : -9);
  y += m <= 2;
}

constexpr std::int64_t kPgEpochDays = 10957;  // 2000-01-01 in days since 1970-01-01
constexpr std::int64_t kUsecPerDay = 86400LL * 1000000;

struct DateTime {
  std::int64_t year = 2000;
  unsigned month = 1, day = 1;
  int hour = 0, minute = 0, second = 0;
  std::string fraction;  // ".123456" as written, or empty
  std::string zone;      // "+02", "-05:30" as written (timestamptz text), or empty
  bool bc = false;
  bool hasTime = false;
  std::string special;   // "infinity", "-infinity"
};

bool parseDigits(std::string_view s, std::size_t& pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += n;
  return true;
}

// ISO (DateStyle ISO) text: YYYY-MM-DD[ HH:MM:SS[.ffffff][+-HH[:MM[:SS]]]][ BC]
bool parseIsoDateTime(std::string_view s, DateTime& dt) {
  if (s == "infinity" || s == "-infinity") {
    dt.special = std::string(s);
    return true;
  }
  if (s.size() >= 3 && s.substr(s.size() - 3) == " BC") {
    dt.bc = true;
    s.remove_suffix(3);
  }
  std::size_t pos = 0;
  std::size_t yearDigits = 0;
  while (pos + yearDigits < s.size() && std::isdigit(static_cast<unsigned char>(s[pos + yearDigits]))) ++yearDigits;
  if (yearDigits < 4) return false;
  int y = 0, m = 0, d = 0;
  if (!parseDigits(s, pos, yearDigits, y) || pos >= s.size() || s[pos++] != '-') return false;
  if (!parseDigits(s, pos, 2, m) || pos >= s.size() || s[pos++] != '-') return false;
  if (!parseDigits(s, pos, 2, d)) return false;
  if (m < 1 || m > 12 || d < 1 || d > 31) return false;
  dt.year = y;
  dt.month = static_cast<unsigned>(m);
  dt.day = static_cast<unsigned>(d);
  if (pos == s.size()) return true;
  if (s[pos++] != ' ') return false;
  dt.hasTime = true;
  if (!parseDigits(s, pos, 2, dt.hour) || pos >= s.size() || s[pos++] != ':') return false;
  if (!parseDigits(s, pos, 2, dt.minute) || pos >= s.size() || s[pos++] != ':') return false;
  if (!parseDigits(s, pos, 2, dt.second)) return false;
  if (pos < s.size() && s[pos] == '.') {
    std::size_t start = pos++;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
    dt.fraction = std::string(s.substr(start, pos - start));
  }
  if (pos < s.size()) {
    if (s[pos] != '+' && s[pos] != '-') return false;
    dt.zone = std::string(s.substr(pos));
    for (std::size_t i = 1; i < dt.zone.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(dt.zone[i])) && dt.zone[i] != ':') return false;
    }
  }
  return true;
}

std::string formatIsoDateTime(const DateTime& dt, bool withTime) {
  if (!dt.special.empty()) return dt.special;
  char buf[64];
  std::int64_t y = dt.year;
  if (withTime) {
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u %02d:%02d:%02d", static_cast<long long>(y), dt.month, dt.day,
                  dt.hour, dt.minute, dt.second);
  } else {
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(y), dt.month, dt.day);
  }
  std::string out = buf;
  if (withTime) {
    out += dt.fraction;
    out += dt.zone;
  }
  if (dt.bc) out += " BC";
  return out;
}

// Binary date: int32 days since 2000-01-01. Binary timestamp: int64 microseconds since then.
DateTime fromPgDays(std::int64_t pgDays) {
  DateTime dt;
  std::int64_t y;
  unsigned m, d;
  civilFromDays(pgDays + kPgEpochDays, y, m, d);
  dt.year = y;
  dt.month = m;
  dt.day = d;
  if (dt.year <= 0) {
    dt.bc = true;
    dt.year = 1 - dt.year;
  }
  return dt;
}

std::int64_t toPgDays(const DateTime& dt) {
  std::int64_t y = dt.bc ? 1 - dt.year : dt.year;
  return daysFromCivil(y, dt.month, dt.day) - kPgEpochDays;
}

// ---- strategies on canonical forms

std::size_t utf8Length(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Byte offset of the n-th code point.
std::size_t utf8Offset(std::string_view s, std::size_t n) {
  std::size_t cp = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (cp == n) return i;
      ++cp;
    }
  }
  return s.size();
}

// The text strategies write into `out` (cleared first), whose capacity is reused across rows.
void partialText(std::string_view s, int first, int last, std::string& out) {
  out.clear();
  auto len = utf8Length(s);
  if (len <= static_cast<std::size_t>(first + last)) {
    out.assign(len, '*');
    return;
  }
  auto headEnd = utf8Offset(s, static_cast<std::size_t>(first));
  auto tailBegin = utf8Offset(s, len - static_cast<std::size_t>(last));
  out.append(s.substr(0, headEnd));
  out.append(len - static_cast<std::size_t>(first + last), '*');
  out.append(s.substr(tailBegin));
}

void partialEmail(std::string_view s, std::string& out) {
  out.clear();
  auto at = s.rfind('@');
  if (at == std::string_view::npos) {
    if (!s.empty()) out.append(s.substr(0, utf8Offset(s, 1))).append("***");
    return;
  }
  if (at > 0) out.append(s.substr(0, utf8Offset(s, 1)));
  out += "***";
  out.append(s.substr(at));
}

// ASCII letters and digits: what isalnum() answers in the C locale pgveil runs in, without a
// call per byte.
constexpr bool asciiAlnum(unsigned char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

void last4Text(std::string_view s, std::string& out) {
  out.clear();
  std::size_t alnum = 0;
  for (unsigned char c : s) alnum += asciiAlnum(c) ? 1 : 0;
  out.resize(s.size());
  std::size_t seen = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (asciiAlnum(c)) {
      ++seen;
      out[i] = alnum > 4 && seen + 4 > alnum ? static_cast<char>(c) : '*';
    } else {
      out[i] = c >= 0x80 ? '*' : static_cast<char>(c);  // a byte of a non-ASCII character: masked, never kept
    }
  }
}

}  // namespace

// ---- public helpers

std::string Strategy::name() const {
  switch (kind) {
    case StrategyKind::Redact: return "redact";
    case StrategyKind::Null: return "null";
    case StrategyKind::Partial: return "partial(" + std::to_string(keepFirst) + ", " + std::to_string(keepLast) + ")";
    case StrategyKind::PartialEmail: return "partial_email";
    case StrategyKind::Last4: return "last4";
    case StrategyKind::Hash: return "hash";
    case StrategyKind::Tokenize: return "tokenize";
    case StrategyKind::GeneralizeYear: return "generalize(year)";
    case StrategyKind::GeneralizeMonth: return "generalize(month)";
    case StrategyKind::GeneralizeBucket: return "generalize(" + std::to_string(bucket) + ")";
    case StrategyKind::Fixed: return "fixed";
    case StrategyKind::Detect: return "detect";
    case StrategyKind::None: return "none";
  }
  return "?";
}

Strategy makeStrategy(const std::string& name, const std::vector<std::string>& args) {
  Strategy s;
  if (name == "null") s.kind = StrategyKind::Null;
  else if (name == "partial") {
    s.kind = StrategyKind::Partial;
    s.keepFirst = args.size() > 0 ? std::stoi(args[0]) : 0;
    s.keepLast = args.size() > 1 ? std::stoi(args[1]) : 0;
  } else if (name == "partial_email") s.kind = StrategyKind::PartialEmail;
  else if (name == "last4") s.kind = StrategyKind::Last4;
  else if (name == "hash") s.kind = StrategyKind::Hash;
  else if (name == "tokenize") s.kind = StrategyKind::Tokenize;
  else if (name == "generalize") {
    const std::string a = args.empty() ? "year" : args[0];
    if (a == "year") s.kind = StrategyKind::GeneralizeYear;
    else if (a == "month") s.kind = StrategyKind::GeneralizeMonth;
    else {
      s.kind = StrategyKind::GeneralizeBucket;
      s.bucket = std::stoll(a);
    }
  } else if (name == "fixed") {
    s.kind = StrategyKind::Fixed;
    s.fixed = args.empty() ? std::string() : args[0];
  } else if (name == "detect") s.kind = StrategyKind::Detect;
  else if (name == "none") s.kind = StrategyKind::None;
  else s.kind = StrategyKind::Redact;
  return s;
}

std::uint32_t arrayElementType(std::uint32_t t) {
  switch (t) {
    case 1009: return oid::kText;
    case 1015: return oid::kVarchar;
    case 1014: return oid::kBpchar;
    case 1003: return oid::kName;
    case 1005: return oid::kInt2;
    case 1007: return oid::kInt4;
    case 1016: return oid::kInt8;
    case 1231: return oid::kNumeric;
    case 1182: return oid::kDate;
    case 1115: return oid::kTimestamp;
    case 1185: return oid::kTimestamptz;
    case 2951: return oid::kUuid;
    case 1001: return oid::kBytea;
    case 199: return oid::kJson;
    case 3807: return oid::kJsonb;
    default: return 0;
  }
}

bool isSupportedType(std::uint32_t t) { return kindOf(t) != TypeKind::Other; }

ValueMasker::ValueMasker(std::string key) : key_(std::move(key)), detector_(std::make_unique<PiiDetector>()) {}
ValueMasker::~ValueMasker() = default;

namespace {

// A keyed HMAC-SHA256 context per thread, re-initialised per value without re-keying: the
// one-shot HMAC() fetches the algorithm and keys a new context every call (about 1 us a value).
struct ThreadHmac {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
  std::string key;
  ~ThreadHmac() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
  bool ready(const std::string& k) {
    if (ctx && key == k) return true;
    EVP_MAC_CTX_free(ctx);
    ctx = nullptr;
    key.clear();
    if (!mac && !(mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr))) return false;
    ctx = EVP_MAC_CTX_new(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
    if (!ctx || !EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(k.data()), k.size(), params)) {
      EVP_MAC_CTX_free(ctx);
      ctx = nullptr;
      return false;
    }
    key = k;
    return true;
  }
};

}  // namespace

void ValueMasker::hmac(std::string_view data, unsigned char out[32]) const {
  thread_local ThreadHmac t;
  std::size_t len = 0;
  if (t.ready(key_) && EVP_MAC_init(t.ctx, nullptr, 0, nullptr) &&
      EVP_MAC_update(t.ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) &&
      EVP_MAC_final(t.ctx, out, &len, 32) && len == 32) {
    return;
  }
  unsigned int n = 32;  // fallback: the one-shot form
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &n);
}

std::size_t ValueMasker::detect(std::string_view in, std::string& out) const { return detector_->mask(in, out); }

namespace {

// A keyed pseudo-random byte stream for tokenize: HMAC(key, value || counter) blocks.
class TokenStream {
 public:
  TokenStream(const ValueMasker& m, std::string_view value) : masker_(m), value_(value) {}
  unsigned next() {
    if (pos_ == 32) {
      std::string input(value_);
      input.push_back('\0');
      input.append(reinterpret_cast<const char*>(&counter_), sizeof counter_);
      masker_.hmac(input, block_);
      ++counter_;
      pos_ = 0;
    }
    return block_[pos_++];
  }

 private:
  const ValueMasker& masker_;
  std::string_view value_;
  unsigned char block_[32] = {};
  std::size_t pos_ = 32;
  std::uint32_t counter_ = 0;
};

void tokenizeText(const ValueMasker& m, std::string_view s, std::string& out) {
  TokenStream ts(m, s);
  out.assign(s);
  for (auto& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u >= '0' && u <= '9') c = static_cast<char>('0' + ts.next() % 10);
    else if (u >= 'a' && u <= 'z') c = static_cast<char>('a' + ts.next() % 26);
    else if (u >= 'A' && u <= 'Z') c = static_cast<char>('A' + ts.next() % 26);
  }
}

std::uint64_t hash64(const ValueMasker& m, std::string_view s) {
  unsigned char h[32];
  m.hmac(s, h);
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | h[i];
  return v;
}

bool maskTextValue(const ValueMasker& m, const Strategy& s, std::string_view in, std::string& out) {
  switch (s.kind) {
    case StrategyKind::Null: return false;
    case StrategyKind::Partial: partialText(in, s.keepFirst, s.keepLast, out); return true;
    case StrategyKind::PartialEmail: partialEmail(in, out); return true;
    case StrategyKind::Last4: last4Text(in, out); return true;
    case StrategyKind::Hash: {
      unsigned char h[32];
      m.hmac(in, h);
      out.clear();
      appendHex(h, 16, out);
      return true;
    }
    case StrategyKind::Tokenize: tokenizeText(m, in, out); return true;
    case StrategyKind::Fixed: out = s.fixed; return true;
    case StrategyKind::Detect: m.detect(in, out); return true;
    default: out = "***"; return true;
  }
}

// Integers: returns false for NULL.
bool maskInt(const ValueMasker& m, const Strategy& s, std::int64_t v, int width, std::string_view raw, std::int64_t& out) {
  std::int64_t max = intMax(width);
  auto digitsTransform = [&](auto fn) {
    bool neg = v < 0;
    std::string d = std::to_string(neg ? -(v + 1) + 1ULL : static_cast<unsigned long long>(v));
    if (neg && v == INT64_MIN) d = "9223372036854775808";
    fn(d);
    unsigned long long r = 0;
    for (char c : d) r = r * 10 + static_cast<unsigned long long>(c - '0');
    if (r > static_cast<unsigned long long>(max)) r %= static_cast<unsigned long long>(max);
    out = neg ? -static_cast<std::int64_t>(r) : static_cast<std::int64_t>(r);
  };
  switch (s.kind) {
    case StrategyKind::Null: case StrategyKind::Detect: return false;
    case StrategyKind::Partial:
      digitsTransform([&](std::string& d) {
        auto n = static_cast<int>(d.size());
        for (int i = 0; i < n; ++i) {
          if (n <= s.keepFirst + s.keepLast || (i >= s.keepFirst && i < n - s.keepLast)) d[i] = '0';
        }
      });
      return true;
    case StrategyKind::Last4:
      digitsTransform([&](std::string& d) {
        for (std::size_t i = 0; i + 4 < d.size(); ++i) d[i] = '0';
        if (d.size() <= 4) d.assign(d.size(), '0');
      });
      return true;
    case StrategyKind::Hash: out = static_cast<std::int64_t>(hash64(m, raw) % static_cast<std::uint64_t>(max)); return true;
    case StrategyKind::Tokenize:
      digitsTransform([&](std::string& d) {
        TokenStream ts(m, raw);
        for (std::size_t i = 0; i < d.size(); ++i) {
          d[i] = static_cast<char>('0' + (i == 0 && d.size() > 1 ? 1 + ts.next() % 9 : ts.next() % 10));
        }
      });
      return true;
    case StrategyKind::GeneralizeBucket: {
      std::int64_t b = s.bucket;
      std::int64_t q = v / b;
      if (v % b != 0 && v < 0) --q;
      out = q * b;
      return true;
    }
    case StrategyKind::Fixed: {
      char* end = nullptr;
      errno = 0;
      long long f = std::strtoll(s.fixed.c_str(), &end, 10);
      if (errno || !end || *end || s.fixed.empty() || f > max || f < -max - 1) return false;
      out = f;
      return true;
    }
    default: out = 0; return true;
  }
}

// Decimal strings (numeric).
bool maskDecimal(const ValueMasker& m, const Strategy& s, std::string_view in, std::string& out) {
  bool special = in == "NaN" || in == "Infinity" || in == "-Infinity";
  switch (s.kind) {
    case StrategyKind::Null: case StrategyKind::Detect: return false;
    case StrategyKind::Hash: out = std::to_string(hash64(m, in) % 1000000000000000ULL); return true;
    case StrategyKind::Tokenize:
    case StrategyKind::Partial:
    case StrategyKind::Last4: {
      if (special) {
        out = "0";
        return true;
      }
      out = std::string(in);
      std::size_t ndigits = 0;
      for (char c : out) ndigits += std::isdigit(static_cast<unsigned char>(c)) ? 1 : 0;
      TokenStream ts(m, in);
      std::size_t idx = 0;
      for (auto& c : out) {
        if (!std::isdigit(static_cast<unsigned char>(c))) continue;
        bool keep = false;
        if (s.kind == StrategyKind::Partial) {
          keep = ndigits > static_cast<std::size_t>(s.keepFirst + s.keepLast) &&
                 (idx < static_cast<std::size_t>(s.keepFirst) || idx >= ndigits - static_cast<std::size_t>(s.keepLast));
        } else if (s.kind == StrategyKind::Last4) {
          keep = ndigits > 4 && idx + 4 >= ndigits;
        }
        if (s.kind == StrategyKind::Tokenize) c = static_cast<char>('0' + (idx == 0 ? 1 + ts.next() % 9 : ts.next() % 10));
        else if (!keep) c = '0';
        ++idx;
      }
      return true;
    }
    case StrategyKind::GeneralizeBucket: {
      if (special) {
        out = "0";
        return true;
      }
      long double v = std::strtold(std::string(in).c_str(), nullptr);
      long double b = static_cast<long double>(s.bucket);
      long double r = std::floor(v / b) * b;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.0Lf", r);
      out = buf;
      return true;
    }
    case StrategyKind::Fixed: {
      char* end = nullptr;
      (void)std::strtold(s.fixed.c_str(), &end);
      if (s.fixed.empty() || !end || *end) return false;
      out = s.fixed;
      return true;
    }
    default: out = "0"; return true;
  }
}

// numeric binary format <-> decimal string (src/backend/utils/adt/numeric.c, numeric_send).
bool numericBinaryToText(std::string_view b, std::string& out) {
  protocol::ByteReader r(b);
  auto ndigits = r.i16();
  auto weight = r.i16();
  auto sign = static_cast<std::uint16_t>(r.i16());
  auto dscale = r.i16();
  if (!r.ok() || ndigits < 0 || dscale < 0 || r.remaining() != static_cast<std::size_t>(ndigits) * 2) return false;
  if (sign == 0xC000) {
    out = "NaN";
    return true;
  }
  if (sign == 0xD000 || sign == 0xF000) {
    out = sign == 0xD000 ? "Infinity" : "-Infinity";
    return true;
  }
  std::vector<int> digits(static_cast<std::size_t>(ndigits));
  for (auto& d : digits) {
    d = r.i16();
    if (d < 0 || d > 9999) return false;
  }
  out.clear();
  if (sign == 0x4000) out.push_back('-');
  // Integer part: groups 0..weight.
  if (weight < 0) {
    out.push_back('0');
  } else {
    for (int g = 0; g <= weight; ++g) {
      int v = g < ndigits ? digits[static_cast<std::size_t>(g)] : 0;
      char buf[8];
      std::snprintf(buf, sizeof buf, g == 0 ? "%d" : "%04d", v);
      out += buf;
    }
  }
  if (dscale > 0) {
    out.push_back('.');
    std::string frac;
    for (int g = weight + 1; static_cast<int>(frac.size()) < dscale; ++g) {
      int v = (g >= 0 && g < ndigits) ? digits[static_cast<std::size_t>(g)] : 0;
      char buf[8];
      std::snprintf(buf, sizeof buf, "%04d", v);
      frac += buf;
    }
    out += frac.substr(0, static_cast<std::size_t>(dscale));
  }
  return true;
}

bool numericTextToBinary(std::string_view t, std::string& out) {
  out.clear();
  protocol::MessageBuilder b(out);
  if (t == "NaN" || t == "Infinity" || t == "-Infinity") {
    b.i16(0);
    b.i16(0);
    b.i16(static_cast<std::int16_t>(t == "NaN" ? 0xC000 : t == "Infinity" ? 0xD000 : 0xF000));
    b.i16(0);
    return true;
  }
  bool neg = !t.empty() && t[0] == '-';
  if (neg) t.remove_prefix(1);
  auto dot = t.find('.');
  std::string ip(t.substr(0, dot));
  std::string fp = dot == std::string_view::npos ? std::string() : std::string(t.substr(dot + 1));
  if (ip.empty()) ip = "0";
  for (char c : ip + fp) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  auto dscale = static_cast<std::int16_t>(fp.size());
  while (ip.size() % 4) ip.insert(ip.begin(), '0');
  while (fp.size() % 4) fp.push_back('0');
  std::vector<std::int16_t> groups;
  for (std::size_t i = 0; i < ip.size(); i += 4) groups.push_back(static_cast<std::int16_t>(std::stoi(ip.substr(i, 4))));
  auto weight = static_cast<int>(groups.size()) - 1;
  for (std::size_t i = 0; i < fp.size(); i += 4) groups.push_back(static_cast<std::int16_t>(std::stoi(fp.substr(i, 4))));
  // Strip leading and trailing zero groups.
  std::size_t first = 0;
  while (first < groups.size() && groups[first] == 0) {
    ++first;
    --weight;
  }
  std::size_t last = groups.size();
  while (last > first && groups[last - 1] == 0) --last;
  if (first == last) weight = 0;
  b.i16(static_cast<std::int16_t>(last - first));
  b.i16(static_cast<std::int16_t>(weight));
  b.i16(static_cast<std::int16_t>(neg && first != last ? 0x4000 : 0));
  b.i16(dscale);
  for (std::size_t i = first; i < last; ++i) b.i16(groups[i]);
  return true;
}

// Dates and timestamps on civil fields.
bool maskDateTime(const ValueMasker& m, const Strategy& s, DateTime& dt, std::string_view raw) {
  if (!dt.special.empty()) {
    if (s.kind == StrategyKind::Null) return false;
    return true;  // infinity reveals nothing
  }
  auto setDays = [&](std::int64_t pgDays) {
    auto n = fromPgDays(pgDays);
    n.hasTime = dt.hasTime;
    n.zone = dt.zone;
    dt = n;
    dt.fraction.clear();
  };
  switch (s.kind) {
    case StrategyKind::Null: case StrategyKind::Detect: return false;
    case StrategyKind::GeneralizeMonth:
      dt.day = 1;
      dt.hour = dt.minute = dt.second = 0;
      if (!dt.fraction.empty()) dt.fraction.clear();
      return true;
    case StrategyKind::GeneralizeYear:
    case StrategyKind::Partial:
    case StrategyKind::PartialEmail:
    case StrategyKind::Last4:
      dt.month = 1;
      dt.day = 1;
      dt.hour = dt.minute = dt.second = 0;
      dt.fraction.clear();
      return true;
    case StrategyKind::GeneralizeBucket: {
      auto days = toPgDays(dt);
      auto q = days / s.bucket;
      if (days % s.bucket != 0 && days < 0) --q;
      setDays(q * s.bucket);
      dt.hour = dt.minute = dt.second = 0;
      return true;
    }
    case StrategyKind::Hash:
    case StrategyKind::Tokenize:
      // A stable pseudo-date between 1900 and 2099.
      setDays(-36524 + static_cast<std::int64_t>(hash64(m, raw) % 73048));
      dt.hour = dt.minute = dt.second = 0;
      return true;
    case StrategyKind::Fixed: {
      DateTime f;
      if (!parseIsoDateTime(s.fixed, f)) return false;
      f.zone = dt.zone;
      f.hasTime = dt.hasTime;
      dt = f;
      return true;
    }
    default:  // redact: 2000-01-01
      setDays(0);
      dt.hour = dt.minute = dt.second = 0;
      return true;
  }
}

bool parseUuidText(std::string_view s, std::array<unsigned char, 16>& out) {
  std::string hex;
  for (char c : s) {
    if (c == '-' || c == '{' || c == '}') continue;
    if (hexVal(c) < 0) return false;
    hex.push_back(c);
  }
  if (hex.size() != 32) return false;
  for (int i = 0; i < 16; ++i) out[i] = static_cast<unsigned char>(hexVal(hex[2 * i]) * 16 + hexVal(hex[2 * i + 1]));
  return true;
}

std::string formatUuid(const std::array<unsigned char, 16>& u) {
  std::string h = toHex(u.data(), 16);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

bool maskUuid(const ValueMasker& m, const Strategy& s, std::array<unsigned char, 16>& u) {
  std::string raw(reinterpret_cast<const char*>(u.data()), 16);
  switch (s.kind) {
    case StrategyKind::Null: case StrategyKind::Detect: return false;
    case StrategyKind::Hash:
    case StrategyKind::Tokenize: {
      unsigned char h[32];
      m.hmac(raw, h);
      std::memcpy(u.data(), h, 16);
      u[6] = static_cast<unsigned char>((u[6] & 0x0F) | 0x80);  // version 8 (custom)
      u[8] = static_cast<unsigned char>((u[8] & 0x3F) | 0x80);  // RFC 4122 variant
      return true;
    }
    case StrategyKind::Partial:
    case StrategyKind::Last4: {
      int first = s.kind == StrategyKind::Partial ? s.keepFirst : 0;
      int last = s.kind == StrategyKind::Partial ? s.keepLast : 4;
      std::string hex = toHex(u.data(), 16);
      for (int i = 0; i < 32; ++i) {
        if (i >= first && i < 32 - last) hex[i] = '0';
      }
      for (int i = 0; i < 16; ++i) u[i] = static_cast<unsigned char>(hexVal(hex[2 * i]) * 16 + hexVal(hex[2 * i + 1]));
      return true;
    }
    case StrategyKind::Fixed: return parseUuidText(s.fixed, u);
    default: u.fill(0); return true;
  }
}

bool decodeByteaText(std::string_view s, std::string& out) {
  out.clear();
  if (s.size() >= 2 && s[0] == '\\' && s[1] == 'x') {
    if (s.size() % 2) return false;
    for (std::size_t i = 2; i < s.size(); i += 2) {
      int hi = hexVal(s[i]), lo = hexVal(s[i + 1]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
    }
    return true;
  }
  // escape format
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out.push_back(s[i]);
    } else if (i + 1 < s.size() && s[i + 1] == '\\') {
      out.push_back('\\');
      ++i;
    } else if (i + 3 < s.size()) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      return false;
    }
  }
  return true;
}

bool maskBytes(const ValueMasker& m, const Strategy& s, std::string_view in, std::string& out) {
  switch (s.kind) {
    case StrategyKind::Null: case StrategyKind::Detect: return false;
    case StrategyKind::Hash: {
      unsigned char h[32];
      m.hmac(in, h);
      out.assign(reinterpret_cast<const char*>(h), 32);
      return true;
    }
    case StrategyKind::Tokenize: {
      TokenStream ts(m, in);
      out.resize(in.size());
      for (auto& c : out) c = static_cast<char>(ts.next());
      return true;
    }
    case StrategyKind::Partial:
    case StrategyKind::Last4: {
      int first = s.kind == StrategyKind::Partial ? s.keepFirst : 0;
      int last = s.kind == StrategyKind::Partial ? s.keepLast : 4;
      out = std::string(in);
      auto n = static_cast<int>(out.size());
      for (int i = 0; i < n; ++i) {
        if (n <= first + last || (i >= first && i < n - last)) out[i] = '\0';
      }
      return true;
    }
    case StrategyKind::Fixed: out = s.fixed; return true;
    default: out.clear(); return true;
  }
}

bool maskJsonText(const ValueMasker& m, const Strategy& s, std::string_view in, std::string& out) {
  switch (s.kind) {
    case StrategyKind::Null: return false;
    case StrategyKind::Detect: m.detect(in, out); return true;  // replacements keep JSON valid
    case StrategyKind::Hash:
    case StrategyKind::Tokenize: {
      unsigned char h[32];
      m.hmac(in, h);
      out = "\"" + toHex(h, 16) + "\"";
      return true;
    }
    case StrategyKind::Fixed: out = jsonQuote(s.fixed); return true;
    default: out = "\"***\""; return true;
  }
}

bool maskScalar(const ValueMasker& m, const Strategy& s, std::uint32_t type, std::int16_t format, std::string_view in,
                std::string& out);

// Array text format: {a,"b c",NULL,{nested}} with an optional [l:u]= dimension prefix.
bool maskArrayText(const ValueMasker& m, const Strategy& s, std::uint32_t elem, std::string_view in, std::string& out) {
  out.clear();
  std::size_t i = 0;
  if (!in.empty() && in[0] == '[') {
    auto eq = in.find('=');
    if (eq == std::string_view::npos) return false;
    out.append(in.substr(0, eq + 1));
    i = eq + 1;
  }
  std::string value, masked;
  int depth = 0;
  while (i < in.size()) {
    char c = in[i];
    if (c == '{') {
      ++depth;
      out.push_back(c);
      ++i;
      continue;
    }
    if (c == '}') {
      --depth;
      out.push_back(c);
      ++i;
      continue;
    }
    if (c == ',' || c == ' ') {
      out.push_back(c);
      ++i;
      continue;
    }
    if (depth <= 0) return false;
    // An element: quoted or unquoted.
    value.clear();
    bool quoted = c == '"';
    if (quoted) {
      ++i;
      while (i < in.size() && in[i] != '"') {
        if (in[i] == '\\' && i + 1 < in.size()) ++i;
        value.push_back(in[i++]);
      }
      if (i >= in.size()) return false;
      ++i;
    } else {
      while (i < in.size() && in[i] != ',' && in[i] != '}') value.push_back(in[i++]);
      if (value == "NULL") {
        out += "NULL";
        continue;
      }
    }
    if (!maskScalar(m, s, elem, 0, value, masked)) {
      out += "NULL";
      continue;
    }
    out.push_back('"');
    for (char ch : masked) {
      if (ch == '"' || ch == '\\') out.push_back('\\');
      out.push_back(ch);
    }
    out.push_back('"');
  }
  return depth == 0;
}

// Array binary format (array_send): ndim, hasnull, elemtype, (dim, lbound) * ndim, elements.
bool maskArrayBinary(const ValueMasker& m, const Strategy& s, std::uint32_t elem, std::string_view in, std::string& out) {
  protocol::ByteReader r(in);
  auto ndim = r.i32();
  (void)r.i32();  // has-null flag: recomputed
  auto elemType = static_cast<std::uint32_t>(r.i32());
  if (!r.ok() || ndim < 0 || ndim > 6 || elemType != elem) return false;
  std::vector<std::pair<std::int32_t, std::int32_t>> dims;
  std::int64_t count = ndim ? 1 : 0;
  for (int d = 0; d < ndim; ++d) {
    auto size = r.i32();
    auto lb = r.i32();
    if (!r.ok() || size < 0) return false;
    dims.push_back({size, lb});
    count *= size;
    if (count > static_cast<std::int64_t>(in.size())) return false;
  }
  std::string body, masked;
  bool hasNull = false;
  protocol::MessageBuilder b(body);
  for (std::int64_t e = 0; e < count; ++e) {
    auto len = r.i32();
    if (!r.ok() || len < -1) return false;
    if (len == -1) {
      b.i32(-1);
      hasNull = true;
      continue;
    }
    auto v = r.bytes(static_cast<std::size_t>(len));
    if (!r.ok()) return false;
    if (!maskScalar(m, s, elem, 1, v, masked)) {
      b.i32(-1);
      hasNull = true;
      continue;
    }
    b.i32(static_cast<std::int32_t>(masked.size()));
    b.bytes(masked);
  }
  if (!r.atEnd()) return false;
  out.clear();
  protocol::MessageBuilder h(out);
  h.i32(ndim);
  h.i32(hasNull ? 1 : 0);
  h.i32(static_cast<std::int32_t>(elem));
  for (auto& [size, lb] : dims) {
    h.i32(size);
    h.i32(lb);
  }
  out += body;
  return true;
}

bool maskScalar(const ValueMasker& m, const Strategy& s, std::uint32_t type, std::int16_t format, std::string_view in,
                std::string& out) {
  out.clear();
  bool binary = format == 1;
  switch (kindOf(type)) {
    case TypeKind::Text:
      return maskTextValue(m, s, in, out);
    case TypeKind::Int: {
      int width = intWidth(type);
      std::int64_t v = 0;
      if (binary) {
        if (in.size() != static_cast<std::size_t>(width)) return false;
        std::uint64_t u = 0;
        for (char c : in) u = (u << 8) | static_cast<unsigned char>(c);
        if (width == 2) v = static_cast<std::int16_t>(u);
        else if (width == 4) v = static_cast<std::int32_t>(u);
        else v = static_cast<std::int64_t>(u);
      } else {
        std::string t(in);
        char* end = nullptr;
        errno = 0;
        v = std::strtoll(t.c_str(), &end, 10);
        if (errno || !end || *end || t.empty()) return false;
      }
      std::int64_t r = 0;
      if (!maskInt(m, s, v, width, in, r)) return false;
      if (binary) {
        for (int i = width - 1; i >= 0; --i) out.push_back(static_cast<char>(static_cast<std::uint64_t>(r) >> (8 * i)));
      } else {
        out = std::to_string(r);
      }
      return true;
    }
    case TypeKind::Numeric: {
      std::string text;
      if (binary) {
        if (!numericBinaryToText(in, text)) return false;
      } else {
        text = std::string(in);
      }
      std::string r;
      if (!maskDecimal(m, s, text, r)) return false;
      if (binary) return numericTextToBinary(r, out);
      out = r;
      return true;
    }
    case TypeKind::Date:
    case TypeKind::Timestamp: {
      bool isDate = type == oid::kDate;
      DateTime dt;
      std::int64_t usecOfDay = 0;
      if (binary) {
        protocol::ByteReader rd(in);
        if (isDate) {
          auto days = rd.i32();
          if (!rd.ok() || !rd.atEnd()) return false;
          if (days == INT32_MAX || days == INT32_MIN) dt.special = days == INT32_MAX ? "infinity" : "-infinity";
          else dt = fromPgDays(days);
        } else {
          if (in.size() != 8) return false;
          std::uint64_t u = 0;
          for (char c : in) u = (u << 8) | static_cast<unsigned char>(c);
          auto us = static_cast<std::int64_t>(u);
          if (us == INT64_MAX || us == INT64_MIN) {
            dt.special = us == INT64_MAX ? "infinity" : "-infinity";
          } else {
            std::int64_t days = us / kUsecPerDay;
            usecOfDay = us % kUsecPerDay;
            if (usecOfDay < 0) {
              usecOfDay += kUsecPerDay;
              --days;
            }
            dt = fromPgDays(days);
            dt.hasTime = true;
            dt.hour = static_cast<int>(usecOfDay / 3600000000LL);
            dt.minute = static_cast<int>(usecOfDay / 60000000LL % 60);
            dt.second = static_cast<int>(usecOfDay / 1000000LL % 60);
          }
        }
      } else if (!parseIsoDateTime(in, dt)) {
        // Not ISO DateStyle: the value cannot be masked faithfully, so it becomes NULL.
        return false;
      }
      if (!maskDateTime(m, s, dt, in)) return false;
      if (!binary) {
        out = formatIsoDateTime(dt, !isDate && dt.hasTime);
        return true;
      }
      protocol::MessageBuilder b(out);
      if (isDate) {
        b.i32(dt.special.empty() ? static_cast<std::int32_t>(toPgDays(dt))
                                 : (dt.special == "infinity" ? INT32_MAX : INT32_MIN));
      } else {
        std::int64_t us = dt.special.empty()
                              ? toPgDays(dt) * kUsecPerDay + (dt.hour * 3600LL + dt.minute * 60LL + dt.second) * 1000000LL
                              : (dt.special == "infinity" ? INT64_MAX : INT64_MIN);
        auto u = static_cast<std::uint64_t>(us);
        for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(u >> (8 * i)));
      }
      return true;
    }
    case TypeKind::Uuid: {
      std::array<unsigned char, 16> u{};
      if (binary) {
        if (in.size() != 16) return false;
        std::memcpy(u.data(), in.data(), 16);
      } else if (!parseUuidText(in, u)) {
        return false;
      }
      if (!maskUuid(m, s, u)) return false;
      if (binary) out.assign(reinterpret_cast<const char*>(u.data()), 16);
      else out = formatUuid(u);
      return true;
    }
    case TypeKind::Bytea: {
      std::string raw, r;
      if (binary) raw = std::string(in);
      else if (!decodeByteaText(in, raw)) return false;
      if (!maskBytes(m, s, raw, r)) return false;
      if (binary) out = r;
      else out = "\\x" + toHex(reinterpret_cast<const unsigned char*>(r.data()), r.size());
      return true;
    }
    case TypeKind::Json:
      return maskJsonText(m, s, in, out);
    case TypeKind::Jsonb: {
      std::string_view text = in;
      if (binary) {
        if (in.empty() || in[0] != 1) return false;
        text.remove_prefix(1);
      }
      std::string r;
      if (!maskJsonText(m, s, text, r)) return false;
      if (binary) out.push_back('\1');
      out += r;
      return true;
    }
    case TypeKind::Array:
      return binary ? maskArrayBinary(m, s, arrayElementType(type), in, out)
                    : maskArrayText(m, s, arrayElementType(type), in, out);
    case TypeKind::Other:
      return false;
  }
  return false;
}

}  // namespace

bool ValueMasker::mask(const Strategy& s, std::uint32_t typeOid, std::int16_t format, std::string_view in,
                       std::string& out) const {
  if (s.kind == StrategyKind::None) {
    out.assign(in);
    return true;
  }
  return maskScalar(*this, s, typeOid, format, in, out);
}

}  // namespace pgveil::masking
