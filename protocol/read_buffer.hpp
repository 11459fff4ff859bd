#pragma once
// One connection direction's bounded read buffer: bytes arrive at the end, complete messages are
// consumed from the front, and views stay valid until compact() (called only after a write).

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace pgveil::protocol {

class ReadBuffer {
 public:
  ReadBuffer(std::size_t initial, std::size_t maxAdaptive) : initial_(initial), maxAdaptive_(maxAdaptive) {}

  // Unconsumed bytes.
  [[nodiscard]] std::string_view data() const { return {buf_.get() + begin_, end_ - begin_}; }
  [[nodiscard]] std::size_t size() const { return end_ - begin_; }
  [[nodiscard]] bool empty() const { return begin_ == end_; }
  [[nodiscard]] std::size_t capacity() const { return cap_; }

  // Free space after the data, allocating the first time. Never moves data:
  // callers run compact() before reading when they may hold no views.
  [[nodiscard]] char* writePtr() {
    if (!buf_) allocate(initial_);
    return buf_.get() + end_;
  }
  [[nodiscard]] std::size_t writable() const { return buf_ ? cap_ - end_ : initial_; }

  void commit(std::size_t n) {
    lastFill_ = (n == cap_ - end_);
    end_ += n;
  }
  void consume(std::size_t n) { begin_ += n; }

  // Nothing buffered and the last read did not fill the buffer: the peer went quiet (as
  // opposed to a bulk stream, where the next read follows at once).
  [[nodiscard]] bool quiet() const { return begin_ == end_ && !lastFill_; }
  // Frees the memory of an empty buffer; the next writePtr() allocates the initial size again.
  // Idle sessions then hold no read buffer.
  void release() {
    if (begin_ != end_) return;
    buf_.reset();
    cap_ = 0;
    begin_ = end_ = 0;
    lastFill_ = false;
  }

  // Moves unconsumed bytes to the front and makes room for at least `need` unconsumed bytes
  // in total (a message that must be inspected whole). Grows when the last read filled the
  // buffer (throughput), shrinks back to the initial size when idle and empty (memory).
  void compact(std::size_t need = 0) {
    std::size_t n = end_ - begin_;
    std::size_t want = cap_;
    if (lastFill_ && cap_ < maxAdaptive_) want = cap_ * 2;
    if (need > want) want = need;
    if (n == 0 && need == 0 && cap_ > initial_ && !lastFill_) {
      buf_.reset();
      cap_ = 0;
      begin_ = end_ = 0;
      return;
    }
    if (want != cap_ && buf_) {
      std::unique_ptr<char[]> next(new char[want]);
      if (n) std::memcpy(next.get(), buf_.get() + begin_, n);
      buf_ = std::move(next);
      cap_ = want;
    } else if (begin_ != 0 && n) {
      std::memmove(buf_.get(), buf_.get() + begin_, n);
    } else if (!buf_ && want > 0) {
      allocate(want > initial_ ? want : initial_);
    }
    begin_ = 0;
    end_ = n;
    lastFill_ = false;
  }

 private:
  void allocate(std::size_t n) {
    buf_.reset(new char[n]);
    cap_ = n;
    begin_ = end_ = 0;
  }

  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::size_t initial_;
  std::size_t maxAdaptive_;
  bool lastFill_ = false;
};

}  // namespace pgveil::protocol
