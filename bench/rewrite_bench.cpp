// DataRow rewriting per strategy: one masked column in a 7-column demo row (the others are
// copied through), the way MaskedFlow rewrites rows of a masked result.

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "masking/policy.hpp"
#include "masking/strategy.hpp"
#include "protocol/encode.hpp"
#include "protocol/frame.hpp"

namespace {

using namespace pgveil;

constexpr std::uint32_t kInt4 = 23, kText = 25, kDate = 1082;

// Columns: id, full_name, email, phone, notes, birth_date, nationality.
std::vector<std::string> rowPayloads() {
  std::vector<std::string> rows;
  for (int i = 0; i < 256; ++i) {
    std::string msg;
    auto id = std::to_string(1000 + i);
    auto email = "linda.wilson" + std::to_string(i) + "@example.org";
    protocol::appendDataRow(msg, {std::string_view(id), std::string_view("Linda Wilson"), std::string_view(email),
                                  std::string_view("+1-238-555-7919"),
                                  std::string_view("Called back on +1-238-555-7919, asked to write to linda@example.org"),
                                  std::string_view("1942-12-13"), std::string_view("NG")});
    rows.push_back(msg.substr(protocol::kHeaderSize));
  }
  return rows;
}

void BM_RewriteDataRow(benchmark::State& state, std::string strategy, std::vector<std::string> args, int column) {
  masking::ValueMasker masker("bench-key-0123456789abcdef");
  masking::ResultPlan plan;
  const std::uint32_t types[] = {kInt4, kText, kText, kText, kText, kDate, kText};
  for (auto t : types) plan.fields.push_back({false, {}, t, 0});
  plan.fields[column].mask = true;
  plan.fields[column].strategy = masking::makeStrategy(strategy, args);
  plan.any = true;
  auto rows = rowPayloads();
  std::string out, scratch;
  std::size_t i = 0;
  for (auto _ : state) {
    out.clear();
    if (!masking::rewriteDataRow(plan, rows[i++ & 255], masker, out, scratch)) {
      state.SkipWithError("rewrite failed");
      return;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_CAPTURE(BM_RewriteDataRow, redact_email, std::string("redact"), std::vector<std::string>{}, 2);
BENCHMARK_CAPTURE(BM_RewriteDataRow, null_email, std::string("null"), std::vector<std::string>{}, 2);
BENCHMARK_CAPTURE(BM_RewriteDataRow, partial_name, std::string("partial"), std::vector<std::string>{"1", "0"}, 1);
BENCHMARK_CAPTURE(BM_RewriteDataRow, partial_email, std::string("partial_email"), std::vector<std::string>{}, 2);
BENCHMARK_CAPTURE(BM_RewriteDataRow, last4_phone, std::string("last4"), std::vector<std::string>{}, 3);
BENCHMARK_CAPTURE(BM_RewriteDataRow, hash_email, std::string("hash"), std::vector<std::string>{}, 2);
BENCHMARK_CAPTURE(BM_RewriteDataRow, tokenize_email, std::string("tokenize"), std::vector<std::string>{}, 2);
BENCHMARK_CAPTURE(BM_RewriteDataRow, generalize_year_birth_date, std::string("generalize"), std::vector<std::string>{"year"}, 5);
BENCHMARK_CAPTURE(BM_RewriteDataRow, fixed_phone, std::string("fixed"), std::vector<std::string>{"(hidden)"}, 3);
BENCHMARK_CAPTURE(BM_RewriteDataRow, detect_notes, std::string("detect"), std::vector<std::string>{}, 4);
BENCHMARK_CAPTURE(BM_RewriteDataRow, none_email, std::string("none"), std::vector<std::string>{}, 2);

}  // namespace
