// A bare byte relay: one thread, level-triggered epoll, each readable socket read once and the
// bytes written to its peer. No parsing, no TLS, no limits. bench/run.sh runs it next to
// pgveil and pgbouncer as the practical limit of any proxy on the machine. Not part of pgveil.
//   bare_relay LISTEN_PORT UPSTREAM_PORT      (127.0.0.1 on both sides)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

void noDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Writes everything; a full socket buffer blocks the relay (fine for a yardstick).
bool sendAll(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      p += w;
      n -= static_cast<std::size_t>(w);
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd pf{fd, POLLOUT, 0};
      poll(&pf, 1, 1000);
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bare_relay LISTEN_PORT UPSTREAM_PORT\n");
    return 2;
  }
  int listenPort = std::atoi(argv[1]);
  int upstreamPort = std::atoi(argv[2]);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto la = loopback(listenPort);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&la), sizeof la) != 0 || listen(lfd, 512) != 0) {
    std::perror("bare_relay: listen");
    return 1;
  }
  int ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = ~std::uint64_t{0};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::fprintf(stderr, "bare_relay listening on 127.0.0.1:%d\n", listenPort);

  static char buf[64 << 10];
  std::vector<epoll_event> events(256);
  std::vector<int> dead;       // closed at the end of a batch, so no fd is reused within it
  std::vector<char> isDead(1024);
  for (;;) {
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::perror("bare_relay: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      std::uint64_t d = events[i].data.u64;
      if (d == ~std::uint64_t{0}) {
        for (;;) {
          int cfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (cfd < 0) break;
          int sfd = socket(AF_INET, SOCK_STREAM, 0);
          auto ua = loopback(upstreamPort);
          if (connect(sfd, reinterpret_cast<sockaddr*>(&ua), sizeof ua) != 0) {
            close(cfd);
            close(sfd);
            continue;
          }
          noDelay(cfd);
          noDelay(sfd);
          auto top = static_cast<std::size_t>(cfd > sfd ? cfd : sfd);
          if (top >= isDead.size()) isDead.resize(2 * top);
          epoll_event ce{};
          ce.events = EPOLLIN;
          ce.data.u64 = (std::uint64_t(std::uint32_t(cfd)) << 32) | std::uint32_t(sfd);
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
          epoll_event se{};
          se.events = EPOLLIN;
          se.data.u64 = (std::uint64_t(std::uint32_t(sfd)) << 32) | std::uint32_t(cfd);
          epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &se);
        }
        continue;
      }
      int fd = static_cast<int>(d >> 32);
      int peer = static_cast<int>(d & 0xffffffffu);
      if (isDead[fd]) continue;
      ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0 || !sendAll(peer, buf, static_cast<std::size_t>(r))) {
        isDead[fd] = isDead[peer] = 1;
        dead.push_back(fd);
        dead.push_back(peer);
      }
    }
    for (int fd : dead) {
      close(fd);
      isDead[fd] = 0;
    }
    dead.clear();
  }
}
