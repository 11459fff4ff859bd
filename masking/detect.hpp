#pragma once
// Finds personal data inside free text with RE2: emails, phone numbers, card numbers (Luhn),
// IBANs (mod 97), US SSNs and French NIRs (key mod 97). Returns spans; masking is the caller's.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgveil::masking {

enum class PiiKind { Email, Phone, Card, Iban, Ssn, Nir };
const char* piiKindName(PiiKind k);

struct PiiSpan {
  std::size_t begin = 0;
  std::size_t end = 0;
  PiiKind kind = PiiKind::Email;
};

class PiiDetector {
 public:
  PiiDetector();
  ~PiiDetector();
  PiiDetector(const PiiDetector&) = delete;
  PiiDetector& operator=(const PiiDetector&) = delete;

  // Non-overlapping spans in text order.
  [[nodiscard]] std::vector<PiiSpan> find(std::string_view text) const;
  // Copies text to out with every span masked; returns the number of spans.
  std::size_t mask(std::string_view text, std::string& out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

[[nodiscard]] bool luhnValid(std::string_view digits);
[[nodiscard]] bool ibanValid(std::string_view compact);
[[nodiscard]] bool nirValid(std::string_view compact);

}  // namespace pgveil::masking
