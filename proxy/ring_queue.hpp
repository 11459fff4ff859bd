#pragma once
// A FIFO queue that keeps its storage: boost::circular_buffer, grown (never overwritten) when
// full. Steady push_back/pop_front traffic allocates nothing, where std::deque allocates and
// frees a node every few elements. Growing moves the elements, so no reference to an element
// may be held across push_back.

#include <boost/circular_buffer.hpp>
#include <cstddef>
#include <utility>

namespace pgveil::proxy {

template <typename T>
class RingQueue {
 public:
  using iterator = typename boost::circular_buffer<T>::iterator;

  void push_back(T&& v) {
    reserveOne();
    q_.push_back(std::move(v));
  }
  void push_back(const T& v) {
    reserveOne();
    q_.push_back(v);
  }
  void pop_front() { q_.pop_front(); }
  [[nodiscard]] T& front() { return q_.front(); }
  [[nodiscard]] const T& front() const { return q_.front(); }
  [[nodiscard]] T& operator[](std::size_t i) { return q_[i]; }
  [[nodiscard]] const T& operator[](std::size_t i) const { return q_[i]; }
  [[nodiscard]] std::size_t size() const { return q_.size(); }
  [[nodiscard]] bool empty() const { return q_.empty(); }
  [[nodiscard]] std::size_t capacity() const { return q_.capacity(); }
  iterator begin() { return q_.begin(); }
  iterator end() { return q_.end(); }
  iterator erase(iterator first, iterator last) { return q_.erase(first, last); }
  void clear() { q_.clear(); }

 private:
  void reserveOne() {
    if (q_.full()) q_.set_capacity(q_.capacity() < 4 ? 4 : q_.capacity() * 2);
  }
  boost::circular_buffer<T> q_;
};

}  // namespace pgveil::proxy
