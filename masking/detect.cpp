#include "masking/detect.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>

namespace pgveil::masking {

const char* piiKindName(PiiKind k) {
  switch (k) {
    case PiiKind::Email: return "email";
    case PiiKind::Phone: return "phone";
    case PiiKind::Card: return "card";
    case PiiKind::Iban: return "iban";
    case PiiKind::Ssn: return "ssn";
    case PiiKind::Nir: return "nir";
  }
  return "?";
}

bool luhnValid(std::string_view digits) {
  if (digits.size() < 12 || digits.size() > 19) return false;
  int sum = 0;
  bool dbl = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    int d = *it - '0';
    if (d < 0 || d > 9) return false;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 == 0;
}

bool ibanValid(std::string_view s) {
  if (s.size() < 15 || s.size() > 34) return false;
  // Move the first four characters to the end, letters to numbers, then mod 97 (ISO 13616).
  int mod = 0;
  auto feed = [&](char c) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      mod = (mod * 10 + (c - '0')) % 97;
    } else if (std::isupper(static_cast<unsigned char>(c))) {
      int v = c - 'A' + 10;
      mod = (mod * 100 + v) % 97;
    } else {
      mod = -1000000;
    }
  };
  for (std::size_t i = 4; i < s.size(); ++i) feed(s[i]);
  for (std::size_t i = 0; i < 4; ++i) feed(s[i]);
  return mod == 1;
}

bool nirValid(std::string_view s) {
  // 13 characters + 2-digit key; Corsica departments 2A/2B count as 19/18.
  if (s.size() != 15) return false;
  std::string n(s.substr(0, 13));
  if (n[5] == 'A' || n[5] == 'B') {
    long long adj = n[5] == 'A' ? 1000000 : 2000000;
    n[5] = '0';
    if (n.find_first_not_of("0123456789") != std::string::npos) return false;
    long long v = std::stoll(n) - adj;
    n = std::to_string(v);
  }
  if (n.find_first_not_of("0123456789") != std::string::npos) return false;
  auto key = s.substr(13);
  if (key.find_first_not_of("0123456789") != std::string_view::npos) return false;
  long long mod = 0;
  for (char c : n) mod = (mod * 10 + (c - '0')) % 97;
  return 97 - mod == std::stoll(std::string(key));
}

struct PiiDetector::Impl {
  // Each pattern has exactly one capturing group: the whole match.
  RE2 email{R"(([A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}))"};
  RE2 iban{R"(\b([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30})\b)"};
  RE2 card{R"(\b([0-9](?:[ \-]?[0-9]){11,18})\b)"};
  RE2 ssn{R"(\b([0-9]{3}-[0-9]{2}-[0-9]{4})\b)"};
  RE2 nir{R"(\b([12] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[AB]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2})\b)"};
  RE2 phone{R"((\+?\(?[0-9]{1,4}\)?(?:[ .\-]?\(?[0-9]{2,4}\)?){2,5}))"};
};

PiiDetector::PiiDetector() : impl_(std::make_unique<Impl>()) {}
PiiDetector::~PiiDetector() = default;

namespace {
std::string compact(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != ' ' && c != '-') out.push_back(c);
  }
  return out;
}
std::size_t digitCount(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }));
}
}  // namespace

std::vector<PiiSpan> PiiDetector::find(std::string_view text) const {
  std::vector<PiiSpan> spans;
  auto scan = [&](const RE2& re, PiiKind kind, auto accept) {
    re2::StringPiece input(text.data(), text.size());
    re2::StringPiece match;
    while (RE2::FindAndConsume(&input, re, &match)) {
      if (match.empty()) {
        if (input.empty()) break;
        input.remove_prefix(1);
        continue;
      }
      std::string_view m(match.data(), match.size());
      if (accept(m)) {
        auto b = static_cast<std::size_t>(match.data() - text.data());
        spans.push_back({b, b + match.size(), kind});
      }
    }
  };
  // Most specific first; later matches overlapping earlier ones are dropped.
  scan(impl_->email, PiiKind::Email, [](std::string_view) { return true; });
  scan(impl_->iban, PiiKind::Iban, [](std::string_view m) { return ibanValid(compact(m)); });
  scan(impl_->nir, PiiKind::Nir, [](std::string_view m) { return nirValid(compact(m)); });
  scan(impl_->card, PiiKind::Card, [](std::string_view m) { return luhnValid(compact(m)); });
  scan(impl_->ssn, PiiKind::Ssn, [](std::string_view m) {
    int area = std::stoi(std::string(m.substr(0, 3)));
    return area != 0 && area != 666 && area < 900 && m.substr(4, 2) != "00" && m.substr(7) != "0000";
  });
  // Phone numbers: at least 9 digits, so that dates and times are left alone.
  scan(impl_->phone, PiiKind::Phone, [](std::string_view m) {
    auto d = digitCount(m);
    return d >= 9 && d <= 15;
  });
  std::stable_sort(spans.begin(), spans.end(), [](const PiiSpan& a, const PiiSpan& b) { return a.begin < b.begin; });
  std::vector<PiiSpan> out;
  for (const auto& s : spans) {
    if (!out.empty() && s.begin < out.back().end) {
      // Overlap: keep the longer span.
      if (s.end - s.begin > out.back().end - out.back().begin) out.back() = s;
      continue;
    }
    out.push_back(s);
  }
  return out;
}

std::size_t PiiDetector::mask(std::string_view text, std::string& out) const {
  out.clear();
  auto spans = find(text);
  std::size_t pos = 0;
  for (const auto& s : spans) {
    out.append(text.substr(pos, s.begin - pos));
    auto m = text.substr(s.begin, s.end - s.begin);
    switch (s.kind) {
      case PiiKind::Email: {
        // j***@example.com
        auto at = m.find('@');
        if (at == std::string_view::npos || at == 0) {
          out.append(m.size(), '*');
          break;
        }
        out.push_back(m[0]);
        out.append("***");
        out.append(m.substr(at));
        break;
      }
      case PiiKind::Ssn:
      case PiiKind::Nir:
        for (char c : m) out.push_back(std::isalnum(static_cast<unsigned char>(c)) ? '*' : c);
        break;
      default: {
        // Keep the last four digits or letters; separators stay.
        std::size_t alnum = 0;
        for (char c : m) alnum += std::isalnum(static_cast<unsigned char>(c)) ? 1 : 0;
        std::size_t seen = 0;
        for (char c : m) {
          if (std::isalnum(static_cast<unsigned char>(c))) {
            ++seen;
            out.push_back(seen + 4 > alnum ? c : '*');
          } else {
            out.push_back(c);
          }
        }
        break;
      }
    }
    pos = s.end;
  }
  out.append(text.substr(pos));
  return spans.size();
}

}  // namespace pgveil::masking
