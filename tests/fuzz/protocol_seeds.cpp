// Seed inputs for fuzz_protocol: one valid instance of each message shape.
#include <string>
#include <vector>

#include "protocol/encode.hpp"
#include "protocol/startup.hpp"

std::vector<std::string> fuzzSeeds() {
  using namespace pgveil::protocol;
  std::vector<std::string> seeds;
  seeds.push_back(encodeStartup(kProtocolV3, {{"user", "u"}, {"database", "d"}, {"options", "-c x=y"}}));
  seeds.push_back(encodeSslRequest());
  seeds.push_back(encodeCancelRequest(1, 2));
  std::string m;
  appendErrorResponse(m, {.severity = "ERROR", .sqlstate = "42501", .message = "m", .detail = "d"});
  appendQuery(m, "SELECT 1");
  appendDataRow(m, {std::string_view("a"), std::nullopt, std::string_view("bc")});
  appendAuthenticationSasl(m, {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"});
  appendReadyForQuery(m, 'I');
  seeds.push_back(m);
  // Parse, Bind, RowDescription by hand.
  using namespace std::string_literals;
  seeds.push_back("P\0\0\0\x17s\0SELECT $1\0\0\x01\0\0\0\x17"s);
  seeds.push_back("B\0\0\0\x1ap\0s\0\0\x01\0\x01\0\x01\0\0\0\x02" "42\0\x01\0\x01"s);
  seeds.push_back("T\0\0\0\x1d\0\x01id\0\0\0\x40\0\0\x01\0\0\0\x14\0\x08\xff\xff\xff\xff\0\0"s);
  return seeds;
}
