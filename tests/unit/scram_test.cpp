// The catalog connection's password exchanges (proxy/scram.hpp), against published and
// independently computed values.

#include "proxy/scram.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace pgveil::proxy {
namespace {

// RFC 7677, section 3: user "user", password "pencil".
TEST(ScramClientTest, Rfc7677Example) {
  ScramClient c("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
  EXPECT_EQ(c.clientFirst(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  std::string error;
  std::string final = c.clientFinal(
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", error);
  EXPECT_EQ(final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
      << error;
  EXPECT_TRUE(c.verifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", error)) << error;
  // A server that does not know the verifier cannot produce the signature.
  EXPECT_FALSE(c.verifyServerFinal("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", error));
  EXPECT_FALSE(c.verifyServerFinal("e=invalid-proof", error));
  EXPECT_NE(error.find("invalid-proof"), std::string::npos);
}

TEST(ScramClientTest, RejectsAServerFirstMessageThatDoesNotFollowItsOwn) {
  std::string error;
  // The server's nonce must extend the client's.
  ScramClient a("", "pencil", "abc");
  EXPECT_TRUE(a.clientFinal("r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", error).empty());
  EXPECT_TRUE(a.clientFinal("r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", error).empty());
  EXPECT_TRUE(a.clientFinal("r=abcdef,s=not base64,i=4096", error).empty());
  EXPECT_TRUE(a.clientFinal("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", error).empty());
  EXPECT_TRUE(a.clientFinal("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=12x", error).empty());
  EXPECT_TRUE(a.clientFinal("m=ext,r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", error).empty());
  // Before any server-first message there is no signature to accept.
  ScramClient b("", "pencil", "abc");
  EXPECT_FALSE(b.verifyServerFinal("v=", error));
  // Random nonces differ.
  EXPECT_NE(ScramClient("", "x").clientFirst(), ScramClient("", "x").clientFirst());
}

TEST(ScramClientTest, Md5Response) {
  // Computed with Python's hashlib: "md5" + md5(md5("secret" + "pgveil_md5").hex() + salt).
  EXPECT_EQ(md5PasswordResponse("pgveil_md5", "secret", std::string_view("\x01\x02\x03\x04", 4)),
            "md57131b94be8ddda1df5060ba639ddced6");
}

}  // namespace
}  // namespace pgveil::proxy

namespace pgveil::proxy {
namespace {

TEST(ScramClientTest, RefusesAbsurdIterationCountsAndNonCanonicalSalts) {
  std::string error;
  ScramClient a("", "pencil", "abc");
  EXPECT_TRUE(a.clientFinal("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=10000001", error).empty());
  EXPECT_NE(error.find("iterations"), std::string::npos) << error;
  EXPECT_TRUE(a.clientFinal("r=abcdef,s=W22ZaJ0S NY7soEsUEjb6gQ==,i=4096", error).empty());
  EXPECT_TRUE(a.clientFinal("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", error).empty());
  EXPECT_TRUE(a.clientFinal("r=abcdef,s=W22Z=J0SNY7soEsUEjb6gQ==,i=4096", error).empty());
  EXPECT_FALSE(a.clientFinal("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", error).empty()) << error;
}

}  // namespace
}  // namespace pgveil::proxy
