#pragma once
// One connection direction's bounded read buffer: bytes arrive at the end, complete messages are
// consumed from the front, and views stay valid until compact() (called only after a write).

#include <cassert>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace pgveil::protocol {

// Small messages (the request/response traffic of OLTP) live in a few hundred bytes inside the
// object itself; a heap buffer is taken when a message or a burst does not fit, and given back
// when the peer goes quiet. Steady small traffic then allocates nothing, an idle connection
// holds no heap buffer, and a read can always be pending without one (see Session::readFrom).
class ReadBuffer {
 public:
  static constexpr std::size_t kInlineMax = 512;

  // initial: heap size taken when the inline bytes do not suffice; maxAdaptive: growth limit
  // after full reads; inlineBytes (<= kInlineMax): how much of the inline storage to use.
  ReadBuffer(std::size_t initial, std::size_t maxAdaptive, std::size_t inlineBytes = kInlineMax)
      : initial_(initial), maxAdaptive_(maxAdaptive), inline_(inlineBytes), cap_(inlineBytes) {
    assert(inlineBytes > 0 && inlineBytes <= kInlineMax);
  }
  ReadBuffer(const ReadBuffer&) = delete;  // views point into the object itself
  ReadBuffer& operator=(const ReadBuffer&) = delete;

  // Unconsumed bytes.
  [[nodiscard]] std::string_view data() const { return {base() + begin_, end_ - begin_}; }
  [[nodiscard]] std::size_t size() const { return end_ - begin_; }
  [[nodiscard]] bool empty() const { return begin_ == end_; }
  [[nodiscard]] std::size_t capacity() const { return cap_; }
  // Heap memory held (0 while the inline storage is in use).
  [[nodiscard]] std::size_t heapBytes() const { return heap_ ? cap_ : 0; }

  // Free space after the data. Never moves data: callers run compact() before reading when
  // they may hold no views.
  [[nodiscard]] char* writePtr() { return base() + end_; }
  [[nodiscard]] std::size_t writable() const { return cap_ - end_; }

  void commit(std::size_t n) {
    lastFill_ = (n == cap_ - end_);
    end_ += n;
  }
  void consume(std::size_t n) { begin_ += n; }

  // Nothing buffered and the last read did not fill the buffer: the peer went quiet (as
  // opposed to a bulk stream, where the next read follows at once).
  [[nodiscard]] bool quiet() const { return begin_ == end_ && !lastFill_; }
  // Gives the heap buffer of an empty buffer back; reads continue in the inline storage.
  void release() {
    if (begin_ != end_) return;
    heap_.reset();
    cap_ = inline_;
    begin_ = end_ = 0;
    lastFill_ = false;
  }

  // Moves unconsumed bytes to the front and makes room for at least `need` unconsumed bytes
  // in total (a message that must be inspected whole). Leaves the inline storage for the
  // initial heap size when a read filled it or a message needs more; doubles a heap buffer
  // after a full read (throughput); gives a grown heap buffer back when idle and empty (memory).
  void compact(std::size_t need = 0) {
    std::size_t n = end_ - begin_;
    std::size_t want = cap_;
    if (!heap_) {
      if (lastFill_ || need > inline_) want = initial_ > 2 * inline_ ? initial_ : 2 * inline_;
    } else if (lastFill_ && cap_ < maxAdaptive_) {
      want = cap_ * 2;
    }
    if (need > want) want = need;
    if (n == 0 && need == 0 && heap_ && cap_ > initial_ && !lastFill_) {
      release();
      return;
    }
    if (want != cap_) {
      std::unique_ptr<char[]> next(new char[want]);
      if (n) std::memcpy(next.get(), base() + begin_, n);
      heap_ = std::move(next);
      cap_ = want;
    } else if (begin_ != 0 && n) {
      std::memmove(base(), base() + begin_, n);
    }
    begin_ = 0;
    end_ = n;
    lastFill_ = false;
  }

 private:
  [[nodiscard]] char* base() { return heap_ ? heap_.get() : small_; }
  [[nodiscard]] const char* base() const { return heap_ ? heap_.get() : small_; }

  std::unique_ptr<char[]> heap_;
  std::size_t initial_;
  std::size_t maxAdaptive_;
  std::size_t inline_;
  std::size_t cap_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  bool lastFill_ = false;
  char small_[kInlineMax];
};

}  // namespace pgveil::protocol
