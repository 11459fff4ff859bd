// Runs a libFuzzer target without libFuzzer (GCC builds): replays files given on the command
// line, then mutates a built-in seed corpus for a bounded number of iterations and seconds.
// A crash or sanitizer report fails the ctest test that runs it.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
// Each target provides seeds that reach its interesting paths.
std::vector<std::string> fuzzSeeds();

int main(int argc, char** argv) {
  long iterations = 200000;
  double seconds = 20;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("-runs=", 0) == 0) iterations = std::atol(a.c_str() + 6);
    else if (a.rfind("-max_total_time=", 0) == 0) seconds = std::atof(a.c_str() + 16);
    else files.push_back(a);
  }
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), {});
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  }
  auto seeds = fuzzSeeds();
  std::mt19937_64 rng(0x5eed);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  long done = 0;
  for (; done < iterations && std::chrono::steady_clock::now() < deadline; ++done) {
    std::string s = seeds[rng() % seeds.size()];
    int mutations = 1 + static_cast<int>(rng() % 8);
    for (int m = 0; m < mutations; ++m) {
      switch (rng() % 6) {
        case 0:  // flip a byte
          if (!s.empty()) s[rng() % s.size()] = static_cast<char>(rng());
          break;
        case 1:  // truncate
          if (!s.empty()) s.resize(rng() % s.size());
          break;
        case 2:  // insert random bytes
          s.insert(s.empty() ? 0 : rng() % s.size(), std::string(1 + rng() % 8, static_cast<char>(rng())));
          break;
        case 3:  // splice another seed
          s += seeds[rng() % seeds.size()];
          break;
        case 4:  // interesting lengths
          if (s.size() >= 5) {
            static const std::uint32_t kLens[] = {0, 1, 3, 4, 5, 0x7fffffff, 0xffffffff, 0x40000000};
            auto v = kLens[rng() % 8];
            auto at = rng() % (s.size() - 4);
            for (int b = 0; b < 4; ++b) s[at + b] = static_cast<char>(v >> (24 - 8 * b));
          }
          break;
        default:  // duplicate a slice
          if (s.size() > 2) {
            auto a = rng() % s.size();
            s.insert(a, s.substr(a, rng() % (s.size() - a)));
          }
          break;
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  std::printf("fuzz: %ld inputs, no crash\n", done);
  return 0;
}
