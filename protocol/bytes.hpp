#pragma once
// Bounds-checked big-endian reading and building of PostgreSQL wire data.
// Readers never throw and never read past their view: a short read sets a sticky failure flag.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace pgveil::protocol {

inline std::uint32_t loadBe32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         std::uint32_t{b[3]};
}
inline std::uint16_t loadBe16(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return static_cast<std::uint16_t>((b[0] << 8) | b[1]);
}
inline void storeBe32(char* p, std::uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

// Reads fields of one message payload. Every accessor checks the remaining length first;
// after a failure every further read returns an empty value and ok() stays false.
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}

  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] bool atEnd() const { return pos_ == data_.size(); }
  [[nodiscard]] std::size_t remaining() const { return data_.size() - pos_; }
  [[nodiscard]] std::size_t position() const { return pos_; }

  std::uint8_t u8() {
    if (!need(1)) return 0;
    return static_cast<std::uint8_t>(data_[pos_++]);
  }
  std::int16_t i16() {
    if (!need(2)) return 0;
    auto v = static_cast<std::int16_t>(loadBe16(data_.data() + pos_));
    pos_ += 2;
    return v;
  }
  std::int32_t i32() {
    if (!need(4)) return 0;
    auto v = static_cast<std::int32_t>(loadBe32(data_.data() + pos_));
    pos_ += 4;
    return v;
  }
  // A NUL-terminated string; the terminator is consumed but not returned.
  std::string_view cstring() {
    if (!ok_) return {};
    auto end = data_.find('\0', pos_);
    if (end == std::string_view::npos) {
      ok_ = false;
      return {};
    }
    auto s = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  std::string_view bytes(std::size_t n) {
    if (!need(n)) return {};
    auto s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  void fail() { ok_ = false; }

 private:
  bool need(std::size_t n) {
    if (!ok_ || data_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }

  std::string_view data_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// Appends typed messages to a caller-owned buffer. A string with an embedded NUL
// cannot be encoded as a C string: it sets the sticky failure flag instead.
class MessageBuilder {
 public:
  explicit MessageBuilder(std::string& out) : out_(out) {}

  void begin(char type) {
    out_.push_back(type);
    start_ = out_.size();
    out_.append(4, '\0');
  }
  // A startup-phase packet has no type byte.
  void beginUntyped() {
    start_ = out_.size();
    out_.append(4, '\0');
  }
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void i16(std::int16_t v) {
    out_.push_back(static_cast<char>(static_cast<std::uint16_t>(v) >> 8));
    out_.push_back(static_cast<char>(v));
  }
  void i32(std::int32_t v) {
    char b[4];
    storeBe32(b, static_cast<std::uint32_t>(v));
    out_.append(b, 4);
  }
  void cstring(std::string_view s) {
    if (s.find('\0') != std::string_view::npos) {
      ok_ = false;
      return;
    }
    out_.append(s);
    out_.push_back('\0');
  }
  void bytes(std::string_view s) { out_.append(s); }
  void end() { storeBe32(out_.data() + start_, static_cast<std::uint32_t>(out_.size() - start_)); }

  [[nodiscard]] bool ok() const { return ok_; }

 private:
  std::string& out_;
  std::size_t start_ = 0;
  bool ok_ = true;
};

}  // namespace pgveil::protocol
