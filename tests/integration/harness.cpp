#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "protocol/bytes.hpp"
#include "protocol/startup.hpp"

extern char** environ;

namespace pgveil::it {

namespace {

std::string readEnvFile(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  }
  return {};
}

std::vector<char*> cstrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> mergedEnv(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string s(*e);
    auto eq = s.find('=');
    if (eq != std::string::npos && extra.count(s.substr(0, eq))) continue;
    // Tests must not inherit a developer's libpq defaults.
    if (s.rfind("PG", 0) == 0 && s.rfind("PGVEIL", 0) != 0) continue;
    env.push_back(s);
  }
  for (auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

}  // namespace

const Cluster& Cluster::get() {
  static Cluster c = [] {
    Cluster out;
    const char* file = std::getenv("PGVEIL_TEST_ENV");
    if (file) {
      out.dir = readEnvFile(file, "PGVEIL_TEST_PGDIR");
      auto p = readEnvFile(file, "PGVEIL_TEST_PGPORT");
      out.port = p.empty() ? 0 : std::stoi(p);
    }
    return out;
  }();
  if (c.port == 0) {
    ADD_FAILURE() << "PGVEIL_TEST_ENV does not point to a running test cluster; run the tests through ctest";
  }
  return c;
}

std::string sourceDir() { return PGVEIL_SOURCE_DIR; }
std::string pgveilBinary() { return PGVEIL_BINARY; }

CommandResult runCommand(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                         const std::string& input, std::chrono::seconds timeout) {
  CommandResult r;
  int inPipe[2], outPipe[2], errPipe[2];
  if (pipe(inPipe) || pipe(outPipe) || pipe(errPipe)) return r;
  auto args = argv;
  auto envs = mergedEnv(env);
  auto argp = cstrings(args);
  auto envp = cstrings(envs);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(inPipe[0], 0);
    dup2(outPipe[1], 1);
    dup2(errPipe[1], 2);
    for (int fd : {inPipe[0], inPipe[1], outPipe[0], outPipe[1], errPipe[0], errPipe[1]}) close(fd);
    execvpe(argp[0], argp.data(), envp.data());
    _exit(127);
  }
  close(inPipe[0]);
  close(outPipe[1]);
  close(errPipe[1]);
  fcntl(inPipe[1], F_SETFL, O_NONBLOCK);
  std::size_t written = 0;
  if (input.empty()) {
    close(inPipe[1]);
    inPipe[1] = -1;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool outOpen = true, errOpen = true;
  while (outOpen || errOpen) {
    std::vector<pollfd> fds;
    if (outOpen) fds.push_back({outPipe[0], POLLIN, 0});
    if (errOpen) fds.push_back({errPipe[0], POLLIN, 0});
    if (inPipe[1] >= 0) fds.push_back({inPipe[1], POLLOUT, 0});
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timedOut = true;
      kill(pid, SIGKILL);
      break;
    }
    poll(fds.data(), fds.size(), static_cast<int>(std::min<long>(left.count(), 1000)));
    for (auto& f : fds) {
      if (!f.revents) continue;
      if (f.fd == inPipe[1]) {
        auto n = write(inPipe[1], input.data() + written, input.size() - written);
        if (n > 0) written += static_cast<std::size_t>(n);
        if (n < 0 || written == input.size()) {
          close(inPipe[1]);
          inPipe[1] = -1;
        }
        continue;
      }
      char buf[65536];
      auto n = read(f.fd, buf, sizeof buf);
      if (n <= 0) {
        if (f.fd == outPipe[0]) outOpen = false;
        else errOpen = false;
        continue;
      }
      (f.fd == outPipe[0] ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
    }
  }
  if (inPipe[1] >= 0) close(inPipe[1]);
  close(outPipe[0]);
  close(errPipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

Proxy::Proxy(const std::string& extraYaml, bool defaultUpstream) {
  const auto& cluster = Cluster::get();
  std::string yaml = "listen: 127.0.0.1:0\nworkers: 2\n";
  if (defaultUpstream) {
    yaml += "upstream:\n  host: 127.0.0.1\n  port: " + std::to_string(cluster.port) + "\n  tls: disable\n";
  }
  yaml += extraYaml + "\n";
  start(yaml);
}

Proxy::Proxy(Raw, const std::string& yaml) { start(yaml); }

void Proxy::reload(const std::string& yaml) {
  {
    std::ofstream out(configPath_);
    out << yaml;
  }
  kill(pid_, SIGHUP);
}

bool Proxy::waitForLog(const std::string& text, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (log().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::string httpGet(int port, const std::string& path) {
  RawClient c(port);
  c.send("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  std::string out;
  for (;;) {
    auto chunk = c.readSome(65536);
    if (chunk.empty()) break;
    out += chunk;
  }
  return out;
}

std::map<std::string, double> parseMetrics(const std::string& text) {
  std::map<std::string, double> values;
  auto body = text.find("\r\n\r\n");
  std::istringstream in(body == std::string::npos ? text : text.substr(body + 4));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    if (sp == std::string::npos) {
      ADD_FAILURE() << "bad metrics line: " << line;
      continue;
    }
    values[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return values;
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    usleep(10000);
  }
}

std::string readFileWhenContains(const std::string& path, const std::string& text) {
  std::string content;
  eventually([&] {
    content = readFile(path);
    return content.find(text) != std::string::npos;
  });
  return content;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void replaceIn(std::string& text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  if (pos == std::string::npos) {
    ADD_FAILURE() << "text to replace not found: '" << from << "'";
    return;
  }
  text.replace(pos, from.size(), to);
}

void Proxy::start(const std::string& yaml) {
  char path[] = "/tmp/pgveil-it-config.XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  configPath_ = path;
  {
    std::ofstream out(configPath_);
    out << yaml;
  }
  int errPipe[2];
  if (pipe(errPipe)) throw std::runtime_error("pipe");
  std::vector<std::string> args = {pgveilBinary(), "--config", configPath_};
  auto argp = cstrings(args);
  pid_ = fork();
  if (pid_ == 0) {
    // Die with the test process, and keep no handle on ctest's output pipe: a crashed test
    // must never leave a pgveil behind that makes ctest wait forever.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // Signal dispositions as a shell would leave them: what pgveil ignores, it sets up itself.
    signal(SIGPIPE, SIG_DFL);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(errPipe[1], 2);
    close(errPipe[0]);
    close(errPipe[1]);
    execv(argp[0], argp.data());
    _exit(127);
  }
  close(errPipe[1]);
  int rfd = errPipe[0];
  // Read until the "listening on" line (no sleeps: the line is written once bound), then keep
  // draining stderr on a thread so that pgveil never blocks on a full pipe.
  std::string seen;
  std::regex re("pgveil listening on 127\\.0\\.0\\.1:([0-9]+)");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (port_ == 0 && std::chrono::steady_clock::now() < deadline) {
    pollfd p{rfd, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) continue;
    char buf[4096];
    auto n = read(rfd, buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<std::size_t>(n));
    std::smatch m;
    if (std::regex_search(seen, m, re)) port_ = std::stoi(m[1]);
  }
  log_ = seen;
  std::smatch am;
  if (std::regex_search(seen, am, std::regex("admin endpoint listening on 127\\.0\\.0\\.1:([0-9]+)"))) {
    adminPort_ = std::stoi(am[1]);
  }
  reader_ = std::thread([this, rfd] {
    char buf[4096];
    for (;;) {
      auto n = read(rfd, buf, sizeof buf);
      if (n <= 0) break;
      std::lock_guard lock(mutex_);
      log_.append(buf, static_cast<std::size_t>(n));
    }
    close(rfd);
  });
  if (port_ == 0) {
    ADD_FAILURE() << "pgveil did not start; its output:\n" << seen;
  }
}

int Proxy::stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  // Bounded: SIGKILL after 30 s so that a hung proxy fails the test instead of hanging it.
  for (int i = 0; i < 3000; ++i) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) break;
    if (i == 2999) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      ADD_FAILURE() << "pgveil did not stop within 30 s of SIGTERM";
    }
    usleep(10000);
  }
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Proxy::~Proxy() {
  stop();
  unlink(configPath_.c_str());
}

std::string Proxy::log() const {
  std::lock_guard lock(mutex_);
  return log_;
}

std::string conninfo(int port, const std::string& user, const std::string& db, const std::string& extra) {
  std::string password = user;
  return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=" + db + " user=" + user + " password=" + password +
         " connect_timeout=10 sslmode=disable " + extra;
}

PgConn connect(const std::string& info) { return PgConn(PQconnectdb(info.c_str())); }

PgResult exec(PGconn* c, const std::string& sql) { return PgResult(PQexec(c, sql.c_str())); }

std::string scalar(PGconn* c, const std::string& sql) {
  auto r = exec(c, sql);
  auto st = PQresultStatus(r.get());
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) return std::string("ERROR: ") + PQresultErrorMessage(r.get());
  if (PQntuples(r.get()) == 0 || PQnfields(r.get()) == 0) return "";
  return PQgetvalue(r.get(), 0, 0);
}

RawClient::RawClient(int port) {
  fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect to 127.0.0.1:" << port << " failed: " << std::strerror(errno);
  }
}

RawClient::~RawClient() {
  if (fd_ >= 0) close(fd_);
}

void RawClient::send(const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

void RawClient::shutdownWrite() { ::shutdown(fd_, SHUT_WR); }

void RawClient::resetClose() {
  linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd_);
  fd_ = -1;
}

std::string RawClient::readSome(std::size_t n, std::chrono::milliseconds timeout) {
  if (!pending_.empty()) {
    auto take = std::min(n, pending_.size());
    auto out = pending_.substr(0, take);
    pending_.erase(0, take);
    return out;
  }
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return {};
  std::string buf(n, '\0');
  auto r = recv(fd_, buf.data(), n, 0);
  if (r <= 0) return {};
  buf.resize(static_cast<std::size_t>(r));
  return buf;
}

std::optional<std::pair<char, std::string>> RawClient::readMessage(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pending_.size() < 5 || pending_.size() < 1 + protocol::loadBe32(pending_.data() + 1)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
    char buf[65536];
    auto r = recv(fd_, buf, sizeof buf, 0);
    if (r <= 0) return std::nullopt;
    pending_.append(buf, static_cast<std::size_t>(r));
  }
  auto len = protocol::loadBe32(pending_.data() + 1);
  std::pair<char, std::string> out{pending_[0], pending_.substr(5, len - 4)};
  pending_.erase(0, 1 + len);
  return out;
}

bool RawClient::waitClosed(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pending_.clear();
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    auto r = recv(fd_, buf, sizeof buf, 0);
    if (r <= 0) return true;
  }
}

bool RawClient::startupTrust(const std::string& user, const std::string& database) {
  send(protocol::encodeStartup(protocol::kProtocolV3, {{"user", user}, {"database", database}}));
  for (;;) {
    auto m = readMessage();
    if (!m) return false;
    if (m->first == 'E') return false;
    if (m->first == 'Z') return true;
  }
}

std::string demoConfigForTests() {
  std::ifstream in(sourceDir() + "/examples/pgveil.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string y = ss.str();
  auto replace = [&](const std::string& from, const std::string& to) {
    auto pos = y.find(from);
    if (pos == std::string::npos) {
      ADD_FAILURE() << "examples/pgveil.yaml no longer contains '" << from << "'";
      return;
    }
    y.replace(pos, from.size(), to);
  };
  replace("listen: 127.0.0.1:6432", "listen: 127.0.0.1:0");
  replace("listen: 127.0.0.1:9930", "listen: 127.0.0.1:0");
  replace("port: 54320", "port: " + std::to_string(Cluster::get().port));
  replace("workers: 0", "workers: 2");
  replace("level: info", "level: debug");
  // The demo's canary is a real row of the demo data: tests that read whole tables run without
  // it (canary tests put it back).
  replace("  values: [\"joseph.dubois4242@example.net\"]", "  values: []");
  return y;
}

CaptureRelay::CaptureRelay(int targetPort) : target_(targetPort) {
  listenFd_ = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listenFd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listenFd_, 64) != 0) {
    ADD_FAILURE() << "capture relay: cannot listen";
    return;
  }
  socklen_t len = sizeof addr;
  getsockname(listenFd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { acceptLoop(); });
}

void CaptureRelay::acceptLoop() {
  while (!stop_) {
    pollfd p{listenFd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int client = accept(listenFd_, nullptr, nullptr);
    if (client < 0) continue;
    int server = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(target_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(client);
      close(server);
      continue;
    }
    relays_.emplace_back([this, client, server] {
      char buf[65536];
      for (;;) {
        pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
        if (poll(fds, 2, 100) < 0) break;
        if (stop_) break;
        bool done = false;
        for (int i = 0; i < 2 && !done; ++i) {
          if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          auto n = recv(fds[i].fd, buf, sizeof buf, 0);
          if (n <= 0) {
            done = true;
            break;
          }
          if (i == 1) {
            std::lock_guard lock(mutex_);
            captured_.append(buf, static_cast<std::size_t>(n));
          }
          int to = i == 0 ? server : client;
          std::size_t off = 0;
          while (off < static_cast<std::size_t>(n)) {
            auto w = ::send(to, buf + off, static_cast<std::size_t>(n) - off, MSG_NOSIGNAL);
            if (w <= 0) {
              done = true;
              break;
            }
            off += static_cast<std::size_t>(w);
          }
        }
        if (done) break;
      }
      close(client);
      close(server);
    });
  }
}

CaptureRelay::~CaptureRelay() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  for (auto& t : relays_) t.join();
  if (listenFd_ >= 0) close(listenFd_);
}

std::string CaptureRelay::captured() const {
  std::lock_guard lock(mutex_);
  return captured_;
}

void CaptureRelay::clear() {
  std::lock_guard lock(mutex_);
  captured_.clear();
}

std::string errorField(const std::string& payload, char code) {
  std::size_t i = 0;
  while (i < payload.size() && payload[i] != '\0') {
    char c = payload[i++];
    auto end = payload.find('\0', i);
    if (end == std::string::npos) return {};
    if (c == code) return payload.substr(i, end - i);
    i = end + 1;
  }
  return {};
}

}  // namespace pgveil::it
