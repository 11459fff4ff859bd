#pragma once
// Masking strategies applied to one field value, valid for the column's type in text (0) and
// binary (1) result format: text/varchar/bpchar/name, int2/4/8, numeric, date, timestamp(tz),
// uuid, bytea, json/jsonb and arrays of those. Any other type masks to NULL.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgveil::masking {

enum class StrategyKind {
  Redact, Null, Partial, PartialEmail, Last4, Hash, Tokenize, GeneralizeYear, GeneralizeMonth,
  GeneralizeBucket, Fixed, Detect,
  None,  // explicitly not masked for this role
};

struct Strategy {
  StrategyKind kind = StrategyKind::Redact;
  int keepFirst = 0;
  int keepLast = 0;
  std::int64_t bucket = 0;
  std::string fixed;
  [[nodiscard]] std::string name() const;
};

// Builds a Strategy from a configuration name and arguments (validated by config/).
[[nodiscard]] Strategy makeStrategy(const std::string& name, const std::vector<std::string>& args);

class PiiDetector;

// Session-independent masking engine: the HMAC key and the free-text detector.
class ValueMasker {
 public:
  explicit ValueMasker(std::string key);
  ~ValueMasker();
  ValueMasker(const ValueMasker&) = delete;
  ValueMasker& operator=(const ValueMasker&) = delete;

  // Masks `in` (one non-NULL field of type typeOid in `format`) into `out`.
  // Returns false when the result is SQL NULL. `out` is cleared first.
  bool mask(const Strategy& s, std::uint32_t typeOid, std::int16_t format, std::string_view in, std::string& out) const;

  // Masks PII found inside free text (detect strategy); returns the number of spans masked.
  std::size_t detect(std::string_view in, std::string& out) const;

  // Keyed HMAC-SHA256 of data, 32 bytes.
  void hmac(std::string_view data, unsigned char out[32]) const;

  [[nodiscard]] const PiiDetector& detector() const { return *detector_; }

 private:
  std::string key_;
  std::unique_ptr<PiiDetector> detector_;
};

// Type helpers shared with the result masker.
[[nodiscard]] bool isSupportedType(std::uint32_t typeOid);
[[nodiscard]] std::uint32_t arrayElementType(std::uint32_t typeOid);  // 0 when not an array we know

}  // namespace pgveil::masking
