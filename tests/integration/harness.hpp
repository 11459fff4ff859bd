#pragma once
// Integration-test toolkit: the throwaway cluster's coordinates (written by scripts/test-cluster.sh),
// pgveil started as a child process on port 0, commands with captured output, raw sockets, libpq.

#include <libpq-fe.h>

#include <atomic>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace pgveil::it {

struct Cluster {
  std::string dir;
  int port = 0;
  static const Cluster& get();  // from PGVEIL_TEST_ENV; fails the test when missing
};

std::string sourceDir();
std::string pgveilBinary();

struct CommandResult {
  int exitCode = -1;
  std::string out;
  std::string err;
  bool timedOut = false;
};
// Runs argv with extra environment variables, feeding `input` on stdin; killed after `timeout`.
CommandResult runCommand(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
                         const std::string& input = "", std::chrono::seconds timeout = std::chrono::seconds(60));

// A pgveil process with a generated configuration. The YAML given is appended after the
// listen/upstream defaults (listen on 127.0.0.1:0, upstream = the test cluster), so it can
// override them. Stops with SIGTERM on destruction.
class Proxy {
 public:
  explicit Proxy(const std::string& extraYaml = "", bool defaultUpstream = true);
  // A pgveil with exactly this configuration text (it must listen on 127.0.0.1:0).
  struct Raw {};
  Proxy(Raw, const std::string& yaml);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] int adminPort() const { return adminPort_; }  // 0 without an admin endpoint
  [[nodiscard]] int pid() const { return pid_; }
  [[nodiscard]] std::string log() const;  // everything pgveil wrote to stderr so far
  // Sends SIGTERM and waits; returns the exit status.
  int stop();
  // Rewrites the configuration file with `yaml` and sends SIGHUP.
  void reload(const std::string& yaml);
  // Waits until the log contains `text` (true) or the timeout passes.
  bool waitForLog(const std::string& text, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) const;

 private:
  void start(const std::string& yaml);
  int pid_ = -1;
  int port_ = 0;
  int adminPort_ = 0;
  std::string configPath_;
  std::thread reader_;
  mutable std::mutex mutex_;
  std::string log_;
};

// libpq connection string for user (password = user name unless given) through host/port.
std::string conninfo(int port, const std::string& user, const std::string& db = "clinic",
                     const std::string& extra = "");

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using PgConn = std::unique_ptr<PGconn, PgConnDeleter>;
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

PgConn connect(const std::string& conninfo);
// Runs sql, returns the result; the caller checks the status.
PgResult exec(PGconn* c, const std::string& sql);
// The first column of the first row as text, or the error message prefixed with "ERROR: ".
std::string scalar(PGconn* c, const std::string& sql);

// A blocking TCP client for speaking raw protocol to pgveil.
class RawClient {
 public:
  explicit RawClient(int port);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void send(const std::string& bytes);
  void shutdownWrite();
  // Closes with SO_LINGER 0: the peer gets a reset, not a FIN.
  void resetClose();
  // Reads up to n bytes, waiting at most timeout; empty on EOF or timeout.
  std::string readSome(std::size_t n, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // Reads one typed message (type + length + payload); nullopt on EOF/timeout.
  std::optional<std::pair<char, std::string>> readMessage(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // True when the peer has closed (EOF) within timeout, after discarding any data.
  bool waitClosed(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // Sends a StartupMessage for user/database and reads until ReadyForQuery (trust auth).
  bool startupTrust(const std::string& user, const std::string& database);

 private:
  int fd_ = -1;
  std::string pending_;
};

// The demo configuration (examples/pgveil.yaml) pointed at the test cluster, on port 0.
std::string demoConfigForTests();

// A loopback relay in front of a port that records every byte sent back to clients, so that
// tests can search what a client really received for raw values.
class CaptureRelay {
 public:
  explicit CaptureRelay(int targetPort);
  ~CaptureRelay();
  CaptureRelay(const CaptureRelay&) = delete;
  CaptureRelay& operator=(const CaptureRelay&) = delete;
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string captured() const;
  void clear();

 private:
  void acceptLoop();
  int listenFd_ = -1;
  int port_ = 0;
  int target_;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> relays_;
  mutable std::mutex mutex_;
  std::string captured_;
};

// GET http://127.0.0.1:port/path; the whole response (status line, headers, body).
std::string httpGet(int port, const std::string& path);
// Prometheus text exposition (after the HTTP headers, if any) -> {series with labels: value}.
std::map<std::string, double> parseMetrics(const std::string& text);
std::string readFile(const std::string& path);
// Polls `condition` every 10 ms until it holds (true) or `timeout` passes (false).
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
// The file's contents once they contain `text` (or whatever they hold after the timeout).
std::string readFileWhenContains(const std::string& path, const std::string& text);

// Replaces the first occurrence of `from` in `text` (a test failure when it is missing).
void replaceIn(std::string& text, const std::string& from, const std::string& to);

// Field value from an ErrorResponse/NoticeResponse payload ('C' SQLSTATE, 'M' message, 'S' severity).
std::string errorField(const std::string& payload, char code);

}  // namespace pgveil::it
