// Framing cost: scanning a read buffer of DataRow messages the way the relay does.

#include <benchmark/benchmark.h>

#include <string>

#include "protocol/encode.hpp"
#include "protocol/frame.hpp"

namespace {

using namespace pgveil::protocol;

void BM_ScanDataRows(benchmark::State& state) {
  std::string buf;
  for (int i = 0; i < 1000; ++i) {
    appendDataRow(buf, {std::string_view("12345"), std::string_view("Linda Wilson"),
                        std::string_view("linda.wilson1@example.org"), std::string_view("+1-238-555-7919"),
                        std::nullopt, std::string_view("1942-12-13"), std::string_view("NG")});
  }
  for (auto _ : state) {
    std::string_view rest = buf;
    std::size_t n = 0;
    FrameHeader h;
    while (peekHeader(rest, 1 << 20, h) == HeaderStatus::Ok && rest.size() >= h.total()) {
      rest.remove_prefix(h.total());
      ++n;
    }
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(state.iterations() * 1000);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(buf.size()));
}
BENCHMARK(BM_ScanDataRows);

}  // namespace
