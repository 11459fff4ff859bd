// pgveil's catalog connection (proxy/pg_client.cpp) against a scripted fake server: what a
// hostile or broken server (or a man in the middle without verified TLS) can send must end the
// load with a clear error, quickly, never with a catalog.

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include "proxy/catalog_service.hpp"

namespace pgveil::proxy {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// Reads a big-endian length (counting itself) at p, then the rest of that many bytes.
std::string readCounted(tcp::socket& s, const char* p) {
  std::uint32_t n = (static_cast<std::uint32_t>(static_cast<std::uint8_t>(p[0])) << 24) |
                    (static_cast<std::uint32_t>(static_cast<std::uint8_t>(p[1])) << 16) |
                    (static_cast<std::uint32_t>(static_cast<std::uint8_t>(p[2])) << 8) | static_cast<std::uint8_t>(p[3]);
  if (n < 4 || n > (1u << 20)) throw std::runtime_error("fake server: bad length");
  std::string rest(n - 4, '\0');
  asio::read(s, asio::buffer(rest));
  return rest;
}

// One connection, then the script. The startup packet is read before the script runs.
class FakeServer {
 public:
  using Script = std::function<void(tcp::socket&)>;
  explicit FakeServer(Script script) : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this, script = std::move(script)] {
      try {
        tcp::socket s(io_);
        acceptor_.accept(s);
        std::string len(4, '\0');
        asio::read(s, asio::buffer(len));
        (void)readCounted(s, len.data());  // the startup packet
        script(s);
      } catch (const std::exception&) {
        // The client gave up first: nothing to do.
      }
    });
  }
  ~FakeServer() { thread_.join(); }
  [[nodiscard]] std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  static void send(tcp::socket& s, char type, const std::string& payload) {
    std::string m(1, type);
    m += be32(static_cast<std::uint32_t>(payload.size() + 4)) + payload;
    asio::write(s, asio::buffer(m));
  }
  // type and payload of the next message
  static std::pair<char, std::string> receive(tcp::socket& s) {
    std::string head(5, '\0');
    asio::read(s, asio::buffer(head));
    return {head[0], readCounted(s, head.data() + 1)};
  }
  static void authOk(tcp::socket& s) {
    send(s, 'R', be32(0));
    send(s, 'Z', "I");
  }
  // AuthenticationSASL, then the client's nonce from its first message.
  static std::string scramStart(tcp::socket& s) {
    send(s, 'R', be32(10) + std::string("SCRAM-SHA-256\0\0", 15));
    auto [type, payload] = receive(s);
    auto r = payload.find("r=");
    return r == std::string::npos ? std::string() : payload.substr(r + 2);
  }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
};

config::Config configFor(const FakeServer& server) {
  config::Config cfg;
  cfg.upstream.host = "127.0.0.1";
  cfg.upstream.port = server.port();
  cfg.upstream.tls = config::UpstreamTls::Disable;
  cfg.catalog.user = "pgveil_catalog";
  cfg.catalog.password = "secret-password";
  cfg.catalog.loadTimeout = std::chrono::milliseconds(5000);
  return cfg;
}

// The error of a load that must fail; fails the test if the load succeeds.
std::string loadError(const config::Config& cfg) {
  try {
    (void)loadCatalog(cfg, "clinic", 1);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "the catalog loaded";
  return {};
}

TEST(PgClientTest, ScramWithoutTheServersProofIsRefused) {
  FakeServer server([](tcp::socket& s) {
    std::string nonce = FakeServer::scramStart(s);
    FakeServer::send(s, 'R', be32(11) + "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    (void)FakeServer::receive(s);  // client-final-message
    FakeServer::authOk(s);         // no SASLFinal: the server never proved it knows the verifier
  });
  auto error = loadError(configFor(server));
  EXPECT_NE(error.find("without proving itself"), std::string::npos) << error;
  EXPECT_EQ(error.find("secret-password"), std::string::npos) << error;
}

TEST(PgClientTest, ScramWithAWrongServerSignatureIsRefused) {
  FakeServer server([](tcp::socket& s) {
    std::string nonce = FakeServer::scramStart(s);
    FakeServer::send(s, 'R', be32(11) + "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    (void)FakeServer::receive(s);
    FakeServer::send(s, 'R', be32(12) + "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    FakeServer::authOk(s);
  });
  auto error = loadError(configFor(server));
  EXPECT_NE(error.find("signature"), std::string::npos) << error;
}

// PBKDF2 cannot be interrupted by the deadline: an absurd iteration count is refused outright.
TEST(PgClientTest, AHugeIterationCountIsRefusedAtOnce) {
  FakeServer server([](tcp::socket& s) {
    std::string nonce = FakeServer::scramStart(s);
    FakeServer::send(s, 'R', be32(11) + "r=" + nonce + "srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=2000000000");
    try {
      (void)FakeServer::receive(s);
    } catch (const std::exception&) {
    }
  });
  auto start = std::chrono::steady_clock::now();
  auto error = loadError(configFor(server));
  EXPECT_NE(error.find("iterations"), std::string::npos) << error;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

// A FATAL error and then the end of the connection (pg_terminate_backend): the server's
// message is the error.
TEST(PgClientTest, FatalErrorThenCloseKeepsTheServersMessage) {
  FakeServer server([](tcp::socket& s) {
    FakeServer::authOk(s);
    (void)FakeServer::receive(s);  // SET statement_timeout
    FakeServer::send(s, 'E',
                     std::string("SFATAL\0C57P01\0Mterminating connection due to administrator command\0\0", 68));
    s.close();
  });
  auto error = loadError(configFor(server));
  EXPECT_NE(error.find("terminating connection due to administrator command"), std::string::npos) << error;
}

// A message longer than connections.max_message_size is refused from its header, before
// pgveil allocates for it.
TEST(PgClientTest, OversizedMessageIsRefused) {
  FakeServer server([](tcp::socket& s) {
    FakeServer::authOk(s);
    (void)FakeServer::receive(s);
    std::string header = "T" + be32(1u << 30);
    asio::write(s, asio::buffer(header));
    try {
      (void)FakeServer::receive(s);
    } catch (const std::exception&) {
    }
  });
  auto cfg = configFor(server);
  cfg.connections.maxMessageSize = 1u << 20;
  auto error = loadError(cfg);
  EXPECT_NE(error.find("oversized"), std::string::npos) << error;
}

// A server that asks for a method pgveil does not speak (GSSAPI) is an error that says so.
TEST(PgClientTest, UnsupportedAuthenticationMethodIsNamed) {
  FakeServer server([](tcp::socket& s) { FakeServer::send(s, 'R', be32(7)); });
  auto error = loadError(configFor(server));
  EXPECT_NE(error.find("authentication method 7 is not supported"), std::string::npos) << error;
}

}  // namespace
}  // namespace pgveil::proxy
