// Analyzer cost, cold (parse + walk) and cached (hash lookup), for the four reference queries of
// ../shared/PERFORMANCE.md. Targets: cached < 1 us, cold point select < 6 us.

#include <benchmark/benchmark.h>

#include "masking/analysis_cache.hpp"
#include "masking/analyzer.hpp"
#include "masking/sql_parser.hpp"

namespace {

using namespace pgveil::masking;

const char* const kPointSelect = "SELECT full_name, email FROM patients WHERE id = 42";
const char* const kJoin3 =
    "SELECT p.full_name, a.scheduled_at, i.amount FROM patients p JOIN appointments a ON a.patient_id = p.id "
    "JOIN invoices i ON i.patient_id = p.id WHERE p.nationality = 'FR' AND a.scheduled_at > now() - interval '30 days' "
    "ORDER BY a.scheduled_at DESC LIMIT 50";
const char* const kCteUnion =
    "WITH recent AS (SELECT patient_id, max(scheduled_at) AS last_visit FROM appointments GROUP BY patient_id), "
    "billed AS (SELECT patient_id, sum(amount) AS total FROM invoices WHERE paid_at IS NOT NULL GROUP BY patient_id) "
    "SELECT p.id, p.full_name, r.last_visit, b.total FROM patients p JOIN recent r ON r.patient_id = p.id "
    "LEFT JOIN billed b ON b.patient_id = p.id WHERE b.total > 1000 UNION ALL SELECT p.id, p.full_name, NULL, NULL "
    "FROM patients p WHERE p.created_at > now() - interval '7 days' ORDER BY 1 LIMIT 100";

std::string reportQuery() {
  std::string q =
      "WITH monthly AS (SELECT date_trunc('month', a.scheduled_at) AS month, a.doctor, count(*) AS visits, "
      "count(DISTINCT a.patient_id) AS patients FROM appointments a WHERE a.scheduled_at >= $1 AND a.scheduled_at < $2 "
      "GROUP BY 1, 2), revenue AS (SELECT date_trunc('month', i.paid_at) AS month, sum(i.amount) AS total, "
      "avg(i.amount) AS average, percentile_cont(0.9) WITHIN GROUP (ORDER BY i.amount) AS p90 FROM invoices i "
      "WHERE i.paid_at IS NOT NULL GROUP BY 1), by_nationality AS (SELECT p.nationality, count(*) AS n, "
      "min(p.birth_date) AS oldest, max(p.birth_date) AS youngest FROM patients p GROUP BY p.nationality "
      "HAVING count(*) > 10) SELECT m.month, m.doctor, m.visits, m.patients, r.total, r.average, r.p90, "
      "rank() OVER (PARTITION BY m.month ORDER BY m.visits DESC) AS doctor_rank, "
      "sum(m.visits) OVER (PARTITION BY m.doctor ORDER BY m.month ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS rolling, "
      "CASE WHEN r.total > 100000 THEN 'high' WHEN r.total > 10000 THEN 'medium' ELSE 'low' END AS band, "
      "(SELECT string_agg(b.nationality || ':' || b.n, ', ' ORDER BY b.n DESC) FROM by_nationality b) AS mix "
      "FROM monthly m LEFT JOIN revenue r ON r.month = m.month WHERE m.doctor IN ('Dr. Alvarez', 'Dr. Brooks', "
      "'Dr. Chen', 'Dr. Diallo', 'Dr. Evans', 'Dr. Fischer') AND coalesce(r.total, 0) >= 0 ";
  while (q.size() < 1900) q += "AND m.visits > 0 ";
  q += "ORDER BY m.month DESC, doctor_rank LIMIT 500";
  return q;
}

void BM_ParseOnly(benchmark::State& state, std::string sql) {
  for (auto _ : state) benchmark::DoNotOptimize(parseSql(sql));
}

void BM_AnalyzeCold(benchmark::State& state, std::string sql) {
  auto catalog = makeDemoCatalog();
  Analyzer analyzer;
  AnalyzeContext ctx{catalog.get(), {"public"}};
  for (auto _ : state) benchmark::DoNotOptimize(analyzer.analyze(sql, ctx));
}

void BM_AnalyzeCached(benchmark::State& state, std::string sql) {
  auto catalog = makeDemoCatalog();
  Analyzer analyzer;
  AnalyzeContext ctx{catalog.get(), {"public"}};
  AnalysisCache cache(64 << 20);
  auto key = AnalysisCache::contextKey(catalog->generation(), "public");
  cache.insert(sql, key, analyzer.analyze(sql, ctx));
  for (auto _ : state) benchmark::DoNotOptimize(cache.find(sql, key));
}

// The simple protocol's case: the same statement with another constant each time. The exact
// text misses; the literal shape finds the analysis (scan + two hash lookups).
void BM_AnalyzeByShape(benchmark::State& state, std::string sql) {
  auto catalog = makeDemoCatalog();
  Analyzer analyzer;
  AnalyzeContext ctx{catalog.get(), {"public"}};
  AnalysisCache cache(64 << 20);
  auto key = AnalysisCache::contextKey(catalog->generation(), "public");
  std::string shape;
  std::vector<SqlLiteral> lits;
  if (!literalShape(sql, shape, lits)) {
    state.SkipWithError("no shape");
    return;
  }
  auto a = analyzer.analyze(sql, ctx, &lits);
  if (!a->literalInsensitive) {
    state.SkipWithError("not literal-insensitive");
    return;
  }
  cache.insertShape(shape, key, a);
  // Texts with other constants: the digits of the first integer literal replaced.
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i) {
    std::string t = sql;
    auto at = lits.front().offset;
    t.replace(at, 2, std::to_string(10 + i));
    texts.push_back(t);
  }
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& t = texts[i++ & 63];
    benchmark::DoNotOptimize(cache.find(t, key, [&] { return literalShape(t, shape, lits) ? &shape : nullptr; }));
  }
}

void BM_Fingerprint(benchmark::State& state, std::string sql) {
  for (auto _ : state) benchmark::DoNotOptimize(fingerprintSql(sql));
}

BENCHMARK_CAPTURE(BM_ParseOnly, point_select, kPointSelect);
BENCHMARK_CAPTURE(BM_ParseOnly, join3, kJoin3);
BENCHMARK_CAPTURE(BM_ParseOnly, cte_union, kCteUnion);
BENCHMARK_CAPTURE(BM_ParseOnly, report_2kb, reportQuery());
BENCHMARK_CAPTURE(BM_AnalyzeCold, point_select, kPointSelect);
BENCHMARK_CAPTURE(BM_AnalyzeCold, join3, kJoin3);
BENCHMARK_CAPTURE(BM_AnalyzeCold, cte_union, kCteUnion);
BENCHMARK_CAPTURE(BM_AnalyzeCold, report_2kb, reportQuery());
BENCHMARK_CAPTURE(BM_AnalyzeCached, point_select, kPointSelect);
BENCHMARK_CAPTURE(BM_AnalyzeCached, join3, kJoin3);
BENCHMARK_CAPTURE(BM_AnalyzeCached, cte_union, kCteUnion);
BENCHMARK_CAPTURE(BM_AnalyzeCached, report_2kb, reportQuery());
BENCHMARK_CAPTURE(BM_AnalyzeByShape, point_select, kPointSelect);
BENCHMARK_CAPTURE(BM_AnalyzeByShape, pgbench_select, std::string("SELECT abalance FROM pgbench_accounts WHERE aid = 42;"));
BENCHMARK_CAPTURE(BM_Fingerprint, point_select, kPointSelect);

}  // namespace
