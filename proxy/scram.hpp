#pragma once
// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) and of PostgreSQL's md5 password
// exchange, for pgveil's own catalog connection. No channel binding ("n,,"): the catalog
// connection authenticates like a libpq client with channel_binding=disable.

#include <string>
#include <string_view>

namespace pgveil::proxy {

class ScramClient {
 public:
  // `user` is sent in client-first-message; PostgreSQL ignores it (the startup user counts)
  // and libpq sends it empty. `nonce` empty: 18 random bytes, base64.
  ScramClient(std::string user, std::string password, std::string nonce = {});

  [[nodiscard]] std::string clientFirst() const;
  // From server-first-message: client-final-message, or empty with `error` set.
  [[nodiscard]] std::string clientFinal(std::string_view serverFirst, std::string& error);
  // Checks server-final-message (the server's proof that it knows the verifier).
  [[nodiscard]] bool verifyServerFinal(std::string_view serverFinal, std::string& error) const;

 private:
  std::string user_;
  std::string password_;
  std::string nonce_;
  std::string authMessage_;
  std::string serverSignature_;  // base64, expected in server-final
};

// PostgreSQL md5: "md5" + hex(md5(hex(md5(password || user)) || salt)).
[[nodiscard]] std::string md5PasswordResponse(std::string_view user, std::string_view password, std::string_view salt);

}  // namespace pgveil::proxy
