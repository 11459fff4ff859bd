#include "proxy/scram.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <charconv>
#include <stdexcept>
#include <vector>

namespace pgveil::proxy {

namespace {

using Digest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

std::string base64(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

// Strict base64 (RFC 4648, with padding); false if malformed.
bool unbase64(std::string_view in, std::vector<unsigned char>& out) {
  if (in.empty() || in.size() % 4 != 0) return false;
  out.assign(in.size() / 4 * 3, 0);
  int len = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (len < 0) return false;
  std::size_t pad = in.back() == '=' ? (in[in.size() - 2] == '=' ? 2 : 1) : 0;
  if (static_cast<std::size_t>(len) < pad) return false;
  out.resize(static_cast<std::size_t>(len) - pad);
  // Canonical only: EVP_DecodeBlock skips blanks and tolerates some malformed input.
  return base64(out.data(), out.size()) == in;
}

// PBKDF2 runs on the catalog thread and cannot be interrupted by catalog.load_timeout: a server
// (or a man in the middle without verified TLS) must not make it run for minutes. PostgreSQL's
// default is 4096; ten million takes a few seconds.
constexpr int kMaxIterations = 10'000'000;

Digest hmac(const unsigned char* key, std::size_t keyLen, std::string_view msg) {
  Digest d{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key, static_cast<int>(keyLen), reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
       d.data(), &len);
  return d;
}

// The attribute `name` ("r", "s", "i", "v", "e") of a SCRAM message, or nullopt-like empty view
// with found=false.
std::string_view attribute(std::string_view message, char name, bool& found) {
  found = false;
  std::size_t pos = 0;
  while (pos <= message.size()) {
    auto end = message.find(',', pos);
    if (end == std::string_view::npos) end = message.size();
    auto part = message.substr(pos, end - pos);
    if (part.size() >= 2 && part[0] == name && part[1] == '=') {
      found = true;
      return part.substr(2);
    }
    pos = end + 1;
  }
  return {};
}

std::string hex(const unsigned char* d, std::size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(kHex[d[i] >> 4]);
    out.push_back(kHex[d[i] & 15]);
  }
  return out;
}

std::string md5Hex(std::string_view a, std::string_view b) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), nullptr) == 1 && EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
            EVP_DigestUpdate(ctx, b.data(), b.size()) == 1 && EVP_DigestFinal_ex(ctx, d, &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) throw std::runtime_error("MD5 is not available in this OpenSSL configuration");
  return hex(d, len);
}

}  // namespace

ScramClient::ScramClient(std::string user, std::string password, std::string nonce)
    : user_(std::move(user)), password_(std::move(password)), nonce_(std::move(nonce)) {
  if (nonce_.empty()) {
    unsigned char raw[18];
    if (RAND_bytes(raw, sizeof raw) != 1) throw std::runtime_error("no random bytes for the SCRAM nonce");
    nonce_ = base64(raw, sizeof raw);
  }
}

std::string ScramClient::clientFirst() const { return "n,,n=" + user_ + ",r=" + nonce_; }

std::string ScramClient::clientFinal(std::string_view serverFirst, std::string& error) {
  bool found = false;
  if (!serverFirst.empty() && serverFirst[0] == 'm') {
    error = "SCRAM: the server requires an extension pgveil does not know";
    return {};
  }
  auto nonce = attribute(serverFirst, 'r', found);
  if (!found || nonce.size() <= nonce_.size() || nonce.substr(0, nonce_.size()) != nonce_) {
    error = "SCRAM: the server's nonce does not extend pgveil's";
    return {};
  }
  auto saltB64 = attribute(serverFirst, 's', found);
  std::vector<unsigned char> salt;
  if (!found || !unbase64(saltB64, salt) || salt.empty()) {
    error = "SCRAM: invalid salt from the server";
    return {};
  }
  auto iterText = attribute(serverFirst, 'i', found);
  int iterations = 0;
  auto [p, ec] = std::from_chars(iterText.data(), iterText.data() + iterText.size(), iterations);
  if (!found || ec != std::errc() || p != iterText.data() + iterText.size() || iterations < 1) {
    error = "SCRAM: invalid iteration count from the server";
    return {};
  }
  if (iterations > kMaxIterations) {
    error = "SCRAM: the server asks for " + std::to_string(iterations) + " iterations (pgveil allows at most " +
            std::to_string(kMaxIterations) + ")";
    return {};
  }
  Digest salted{};
  if (PKCS5_PBKDF2_HMAC(password_.data(), static_cast<int>(password_.size()), salt.data(), static_cast<int>(salt.size()),
                        iterations, EVP_sha256(), static_cast<int>(salted.size()), salted.data()) != 1) {
    error = "SCRAM: key derivation failed";
    return {};
  }
  Digest clientKey = hmac(salted.data(), salted.size(), "Client Key");
  Digest storedKey{};
  SHA256(clientKey.data(), clientKey.size(), storedKey.data());
  std::string withoutProof = "c=biws,r=" + std::string(nonce);
  authMessage_ = "n=" + user_ + ",r=" + nonce_ + "," + std::string(serverFirst) + "," + withoutProof;
  Digest signature = hmac(storedKey.data(), storedKey.size(), authMessage_);
  Digest proof{};
  for (std::size_t i = 0; i < proof.size(); ++i) proof[i] = clientKey[i] ^ signature[i];
  Digest serverKey = hmac(salted.data(), salted.size(), "Server Key");
  Digest serverSignature = hmac(serverKey.data(), serverKey.size(), authMessage_);
  serverSignature_ = base64(serverSignature.data(), serverSignature.size());
  return withoutProof + ",p=" + base64(proof.data(), proof.size());
}

bool ScramClient::verifyServerFinal(std::string_view serverFinal, std::string& error) const {
  bool found = false;
  auto e = attribute(serverFinal, 'e', found);
  if (found) {
    error = "SCRAM: the server refused: " + std::string(e);
    return false;
  }
  auto v = attribute(serverFinal, 'v', found);
  // Compared in full; the value is public once sent, so timing does not matter here.
  if (serverSignature_.empty() || !found || v != serverSignature_) {
    error = "SCRAM: the server's signature is wrong (it does not know the password's verifier)";
    return false;
  }
  return true;
}

std::string md5PasswordResponse(std::string_view user, std::string_view password, std::string_view salt) {
  return "md5" + md5Hex(md5Hex(password, user), salt);
}

}  // namespace pgveil::proxy
