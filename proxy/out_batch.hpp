#pragma once
// Pieces of one write: views into a read buffer (forwarded unchanged, merged when adjacent)
// and bytes pgveil produced itself. Materialised into one gathered write.

#include <boost/asio/buffer.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgveil::proxy {

class OutBatch {
 public:
  void ref(std::string_view s) {
    if (s.empty()) return;
    if (!segs_.empty() && !segs_.back().owned && segs_.back().ptr + segs_.back().size == s.data()) {
      segs_.back().size += s.size();
    } else {
      segs_.push_back({s.data(), s.size(), 0, false});
    }
    bytes_ += s.size();
  }
  // Append to owned() then call commitOwned(mark) with owned().size() taken before.
  std::string& owned() { return owned_; }
  void commitOwned(std::size_t mark) {
    if (owned_.size() == mark) return;
    segs_.push_back({nullptr, owned_.size() - mark, mark, true});
    bytes_ += owned_.size() - mark;
  }
  void own(std::string_view s) {
    auto mark = owned_.size();
    owned_.append(s);
    commitOwned(mark);
  }
  [[nodiscard]] bool empty() const { return segs_.empty(); }
  [[nodiscard]] std::size_t bytes() const { return bytes_; }
  std::span<const boost::asio::const_buffer> buffers() {
    bufs_.clear();
    for (const auto& s : segs_) bufs_.emplace_back(s.owned ? owned_.data() + s.offset : s.ptr, s.size);
    return bufs_;
  }
  void clear() {
    segs_.clear();
    owned_.clear();
    bytes_ = 0;
    if (owned_.capacity() > (1u << 20)) std::string().swap(owned_);
  }
  // Called when the session goes idle: gives back what a large result made grow.
  void trim() {
    if (!segs_.empty()) return;
    if (owned_.capacity() > (16u << 10)) std::string().swap(owned_);
    if (segs_.capacity() > 256) std::vector<Seg>().swap(segs_);
    if (bufs_.capacity() > 256) std::vector<boost::asio::const_buffer>().swap(bufs_);
  }

 private:
  struct Seg {
    const char* ptr;
    std::size_t size;
    std::size_t offset;
    bool owned;
  };
  std::vector<Seg> segs_;
  std::vector<boost::asio::const_buffer> bufs_;
  std::string owned_;
  std::size_t bytes_ = 0;
};

}  // namespace pgveil::proxy
