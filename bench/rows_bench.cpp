// Streams a large result through libpq and reports rows per second: the same client for the
// direct, unmasked and masked runs, so the ratios show what pgveil costs.
//   rows_bench CONNINFO SQL REPETITIONS

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: rows_bench CONNINFO SQL REPETITIONS\n");
    return 2;
  }
  int reps = std::atoi(argv[3]);
  std::vector<double> rates;
  long long rows = 0;
  for (int i = 0; i < reps; ++i) {
    PGconn* c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK) {
      std::fprintf(stderr, "%s", PQerrorMessage(c));
      return 1;
    }
    auto start = std::chrono::steady_clock::now();
    PGresult* r = PQexec(c, argv[2]);
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      std::fprintf(stderr, "%s", PQresultErrorMessage(r));
      return 1;
    }
    rows = PQntuples(r);
    rates.push_back(static_cast<double>(rows) / secs);
    PQclear(r);
    PQfinish(c);
  }
  std::sort(rates.begin(), rates.end());
  std::printf("%lld %.0f\n", rows, rates[rates.size() / 2]);
  return 0;
}
