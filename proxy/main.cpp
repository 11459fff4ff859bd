// pgveil entry point: command-line parsing, configuration loading, logging set-up.
// Usage errors exit 2, configuration errors exit 1 with file:line:column.

#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <csignal>

#include <cstring>
#include <iostream>
#include <string>

#include "config/config.hpp"
#include "pgveil/version.hpp"
#include "proxy/explain.hpp"
#include "proxy/logging.hpp"
#include "proxy/server.hpp"

namespace {

void usage(std::ostream& out) {
  out << "pgveil " << pgveil::kVersion << " - a PostgreSQL proxy that masks personal data\n\n"
      << "Usage:\n"
      << "  pgveil --config FILE          run the proxy\n"
      << "  pgveil --check-config FILE    validate FILE and exit (0: valid, 1: invalid)\n"
      << "  pgveil explain --config FILE --role ROLE [--database DB] SQL\n"
      << "                                print the analysis of SQL and the verdict for ROLE as JSON\n"
      << "                                (exit 0: allowed, 3: refused, 1: error)\n"
      << "  pgveil --version              print the version\n"
      << "  pgveil --help                 print this help\n";
}

}  // namespace

int explainMain(int argc, char** argv) {
  std::string configPath, role, database = "postgres", sql;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) configPath = argv[++i];
    else if (a == "--role" && i + 1 < argc) role = argv[++i];
    else if (a == "--database" && i + 1 < argc) database = argv[++i];
    else if (sql.empty() && a.rfind("--", 0) != 0) sql = a;
    else {
      std::cerr << "pgveil explain: unknown or incomplete argument '" << a << "'\n";
      return 2;
    }
  }
  if (configPath.empty() || role.empty() || sql.empty()) {
    std::cerr << "usage: pgveil explain --config FILE --role ROLE [--database DB] SQL\n";
    return 2;
  }
  try {
    auto cfg = pgveil::config::loadConfigFile(configPath);
    return pgveil::proxy::explainQuery(cfg, role, database, sql, std::cout, std::cerr);
  } catch (const pgveil::config::ConfigError& e) {
    std::cerr << "pgveil: invalid configuration: " << e.what() << "\n";
    return 1;
  }
}

int main(int argc, char** argv) {
  // A peer that closes while pgveil writes must be an error, not death by SIGPIPE: OpenSSL
  // writes the sockets with write(2). Also for `explain`, whose catalog connection uses TLS.
  std::signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && std::string(argv[1]) == "explain") return explainMain(argc, argv);
  std::string configPath;
  bool checkOnly = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(std::cout);
      return 0;
    }
    if (a == "--version" || a == "-V") {
      std::cout << "pgveil " << pgveil::kVersion << "\n";
      return 0;
    }
    if ((a == "--config" || a == "-c" || a == "--check-config") && i + 1 < argc) {
      checkOnly = checkOnly || a == "--check-config";
      configPath = argv[++i];
      continue;
    }
    std::cerr << "pgveil: unknown or incomplete argument '" << a << "'\n\n";
    usage(std::cerr);
    return 2;
  }
  if (configPath.empty()) {
    usage(std::cerr);
    return 2;
  }
  std::shared_ptr<const pgveil::config::Config> config;
  try {
    config = std::make_shared<const pgveil::config::Config>(pgveil::config::loadConfigFile(configPath));
  } catch (const pgveil::config::ConfigError& e) {
    std::cerr << "pgveil: invalid configuration: " << e.what() << "\n";
    return 1;
  }
  if (checkOnly) {
    std::cout << "pgveil: " << configPath << ": configuration is valid\n";
    return 0;
  }
  pgveil::proxy::initLogging(config->log.level);
  // Each session holds two sockets: raise the descriptor limit to what the system allows, and
  // say when it caps max_clients.
  if (rlimit nofile{}; getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    if (nofile.rlim_cur < nofile.rlim_max) {
      nofile.rlim_cur = nofile.rlim_max;
      setrlimit(RLIMIT_NOFILE, &nofile);
      getrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < 2ull * config->connections.maxClients + 64) {
      spdlog::warn("open file limit {} is too low for connections.max_clients {} (each session needs two descriptors)",
                   nofile.rlim_cur, config->connections.maxClients);
    }
  }
  try {
    pgveil::proxy::Server server(config);
    return server.run();
  } catch (const std::exception& e) {
    spdlog::critical("pgveil cannot start: {}", e.what());
    return 1;
  }
}
