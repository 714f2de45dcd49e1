// TLS links over a socketpair, with credentials made at test time by
// scripts/mkcreds (nothing secret is committed): the right credentials
// carry bytes both ways with the link's EOF semantics; wrong ones, a peer
// that speaks plain TCP and a silent peer are refused on both sides with a
// reason, before any application byte is delivered.
#include "vmm/tls.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace vtime::vmm {
namespace {

namespace fs = std::filesystem;
using Creds = std::shared_ptr<const TlsCredentials>;

constexpr unsigned kTimeoutMs = 5000;

// A fresh directory of credentials for each test program run.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern = (fs::temp_directory_path() / "vtime-tls-test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = new fs::path(pattern);
    const std::string mk = VTIME_MKCREDS;
    const fs::path& d = *dir_;
    for (const std::string& args :
         {"psk " + (d / "good.psk").string(), "psk " + (d / "other.psk").string(),
          "psk " + (d / "stranger.psk").string() + " stranger", "x509 " + (d / "ca1").string(),
          "x509 " + (d / "ca2").string()}) {
      const std::string command = mk + " " + args + " >/dev/null";
      ASSERT_EQ(std::system(command.c_str()), 0) << command;
    }
    // ca2's certificates with a ca-cert.pem holding both CAs: such a side
    // trusts ca1's peers, but ca1's peers do not trust it.
    Mix("ca2_trusts_ca1", "ca2", {"ca1", "ca2"});
  }

  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  // DIR/name: the certificates and keys of `from`, ca-cert.pem the
  // concatenation of the listed sets' CAs.
  static void Mix(const std::string& name, const std::string& from,
                  const std::vector<std::string>& cas) {
    const fs::path out = *dir_ / name;
    fs::create_directory(out);
    for (const char* f :
         {"server-cert.pem", "server-key.pem", "client-cert.pem", "client-key.pem"}) {
      fs::copy_file(*dir_ / from / f, out / f);
      fs::permissions(out / f, fs::perms::owner_read | fs::perms::owner_write);
    }
    std::ofstream ca(out / "ca-cert.pem");
    for (const std::string& c : cas) ca << std::ifstream(*dir_ / c / "ca-cert.pem").rdbuf();
  }

  static std::string Path(const std::string& name) { return (*dir_ / name).string(); }

  static Creds Load(TlsConfig::Kind kind, const std::string& name, TlsRole role) {
    auto c = LoadTlsCredentials({kind, Path(name)}, role);
    EXPECT_TRUE(c.has_value()) << name << ": " << c.error().Message();
    return c ? *c : nullptr;
  }
  static Creds Psk(const std::string& name, TlsRole role) {
    return Load(TlsConfig::Kind::kPsk, name, role);
  }
  static Creds X509(const std::string& name, TlsRole role) {
    return Load(TlsConfig::Kind::kX509, name, role);
  }

  static fs::path* dir_;
};
fs::path* TlsTest::dir_ = nullptr;

struct Ends {
  Result<std::unique_ptr<Link>> client = Fail(ErrorCode::kBadState, "not run");
  Result<std::unique_ptr<Link>> server = Fail(ErrorCode::kBadState, "not run");
};

// Both handshakes over a socketpair, the server's on a thread.
Ends Handshakes(const Creds& client, const Creds& server, unsigned timeout_ms = kTimeoutMs) {
  Ends ends;
  if (client == nullptr || server == nullptr) return ends;
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Fd c(fds[0]);
  Fd s(fds[1]);
  std::thread t([&] { ends.server = TlsHandshake(std::move(s), *server, timeout_ms); });
  ends.client = TlsHandshake(std::move(c), *client, timeout_ms);
  t.join();
  return ends;
}

std::string ErrorOf(const Result<std::unique_ptr<Link>>& r) {
  return r ? "(no error: " + (*r)->Describe() + ")" : r.error().Message();
}

std::vector<std::uint8_t> Pattern(std::size_t size, std::uint8_t seed) {
  std::vector<std::uint8_t> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<std::uint8_t>(i * 7 + seed);
  return v;
}

TEST_F(TlsTest, PskRightKeyCarriesBytesBothWays) {
  Ends e = Handshakes(Psk("good.psk", TlsRole::kClient), Psk("good.psk", TlsRole::kServer));
  ASSERT_TRUE(e.client) << ErrorOf(e.client);
  ASSERT_TRUE(e.server) << ErrorOf(e.server);
  EXPECT_EQ((*e.client)->Describe(), "TLS 1.3 TLS_AES_128_GCM_SHA256, PSK identity 'vtvmm'");
  EXPECT_EQ((*e.server)->Describe(), "TLS 1.3 TLS_AES_128_GCM_SHA256, PSK identity 'vtvmm'");

  // More than a socket buffer and several TLS records each way, at once.
  const auto up = Pattern(1 << 20, 1);
  const auto down = Pattern(300'000, 2);
  std::vector<std::uint8_t> got_up(up.size());
  Result<void> server_read = Ok();
  Result<void> server_write = Ok();
  std::thread s([&] {
    server_read = (*e.server)->ReadAll(got_up, kTimeoutMs);
    server_write = (*e.server)->WriteAll(down);
  });
  ASSERT_TRUE((*e.client)->WriteAll(up));
  std::vector<std::uint8_t> got_down(down.size());
  const Result<void> client_read = (*e.client)->ReadAll(got_down, kTimeoutMs);
  s.join();
  ASSERT_TRUE(server_read) << server_read.error().Message();
  ASSERT_TRUE(server_write) << server_write.error().Message();
  ASSERT_TRUE(client_read) << client_read.error().Message();
  EXPECT_EQ(got_up, up);
  EXPECT_EQ(got_down, down);
}

TEST_F(TlsTest, CloseWriteEndsOneDirectionOnly) {
  Ends e = Handshakes(Psk("good.psk", TlsRole::kClient), Psk("good.psk", TlsRole::kServer));
  ASSERT_TRUE(e.client && e.server) << ErrorOf(e.client) << " / " << ErrorOf(e.server);
  Link& client = **e.client;
  Link& server = **e.server;
  ASSERT_TRUE(client.WriteAll(Pattern(10, 3)));
  client.CloseWrite();
  std::vector<std::uint8_t> ten(10);
  ASSERT_TRUE(server.ReadAll(ten, kTimeoutMs));
  EXPECT_EQ(ten, Pattern(10, 3));
  // The client's close_notify: asking for more is an early close.
  std::vector<std::uint8_t> more(4);
  auto eof = server.ReadAll(more, kTimeoutMs);
  ASSERT_FALSE(eof);
  EXPECT_EQ(eof.error().code, ErrorCode::kMalformed);
  EXPECT_EQ(eof.error().context, "link: the other side closed the link with 4 bytes still to come");
  // The other direction still works.
  ASSERT_TRUE(server.WriteAll(Pattern(5, 4)));
  server.CloseWrite();
  std::vector<std::uint8_t> five(5);
  ASSERT_TRUE(client.ReadAll(five, kTimeoutMs));
  EXPECT_EQ(five, Pattern(5, 4));
  std::vector<std::uint8_t> one(1);
  auto eof2 = client.ReadAll(one, kTimeoutMs);
  ASSERT_FALSE(eof2);
  EXPECT_EQ(eof2.error().code, ErrorCode::kMalformed);
}

TEST_F(TlsTest, PeerGoneWithoutCloseNotifyIsAnEarlyClose) {
  Ends e = Handshakes(Psk("good.psk", TlsRole::kClient), Psk("good.psk", TlsRole::kServer));
  ASSERT_TRUE(e.client && e.server) << ErrorOf(e.client) << " / " << ErrorOf(e.server);
  ASSERT_TRUE((*e.client)->WriteAll(Pattern(3, 5)));
  e.client->reset();  // Closes the socket: no close_notify.
  std::vector<std::uint8_t> bytes(8);
  auto r = (*e.server)->ReadAll(bytes, kTimeoutMs);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kMalformed);
  EXPECT_NE(r.error().context.find("closed the link with 5 bytes still to come"), std::string::npos)
      << r.error().Message();
}

TEST_F(TlsTest, ReadTimesOutWhenNothingComes) {
  Ends e = Handshakes(Psk("good.psk", TlsRole::kClient), Psk("good.psk", TlsRole::kServer));
  ASSERT_TRUE(e.client && e.server) << ErrorOf(e.client) << " / " << ErrorOf(e.server);
  std::vector<std::uint8_t> bytes(1);
  auto r = (*e.server)->ReadAll(bytes, 50);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().context.find("timed out after 50 ms"), std::string::npos);
}

TEST_F(TlsTest, PskWrongKeyIsRefusedOnBothSides) {
  Ends e = Handshakes(Psk("other.psk", TlsRole::kClient), Psk("good.psk", TlsRole::kServer));
  ASSERT_FALSE(e.client);
  ASSERT_FALSE(e.server);  // No Link: the server's application read nothing.
  EXPECT_NE(ErrorOf(e.client).find("TLS handshake with the peer failed: the peer does not know "
                                   "our pre-shared key (identity 'vtvmm')"),
            std::string::npos)
      << ErrorOf(e.client);
  EXPECT_NE(ErrorOf(e.server).find("the client's pre-shared key for identity 'vtvmm' is not the "
                                   "one in " +
                                   Path("good.psk")),
            std::string::npos)
      << ErrorOf(e.server);
}

TEST_F(TlsTest, PskUnknownIdentityIsRefused) {
  Ends e = Handshakes(Psk("stranger.psk", TlsRole::kClient), Psk("good.psk", TlsRole::kServer));
  ASSERT_FALSE(e.client);
  ASSERT_FALSE(e.server);
  EXPECT_NE(ErrorOf(e.client).find("does not know our pre-shared key (identity 'stranger')"),
            std::string::npos)
      << ErrorOf(e.client);
  EXPECT_NE(ErrorOf(e.server).find("the client's PSK identity 'stranger' is not in"),
            std::string::npos)
      << ErrorOf(e.server);
}

TEST_F(TlsTest, PskServerAcceptsAnyListedIdentity) {
  // A server file listing both keys; the client uses the second one.
  const std::string both = Path("both.psk");
  {
    std::ofstream out(both);
    out << std::ifstream(Path("good.psk")).rdbuf() << std::ifstream(Path("stranger.psk")).rdbuf();
  }
  fs::permissions(both, fs::perms::owner_read | fs::perms::owner_write);
  Ends e = Handshakes(Psk("stranger.psk", TlsRole::kClient), Psk("both.psk", TlsRole::kServer));
  ASSERT_TRUE(e.client && e.server) << ErrorOf(e.client) << " / " << ErrorOf(e.server);
  EXPECT_EQ((*e.server)->Describe(), "TLS 1.3 TLS_AES_128_GCM_SHA256, PSK identity 'stranger'");
}

TEST_F(TlsTest, LongPskUsesSha384Suite) {
  const std::string file = Path("long.psk");
  {
    std::ofstream out(file);
    out << "vtvmm:" << std::string(96, 'a') << "\n";
  }
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
  Ends e = Handshakes(Psk("long.psk", TlsRole::kClient), Psk("long.psk", TlsRole::kServer));
  ASSERT_TRUE(e.client && e.server) << ErrorOf(e.client) << " / " << ErrorOf(e.server);
  EXPECT_EQ((*e.client)->Describe(), "TLS 1.3 TLS_AES_256_GCM_SHA384, PSK identity 'vtvmm'");
}

TEST_F(TlsTest, X509RightCaWorksBothWays) {
  Ends e = Handshakes(X509("ca1", TlsRole::kClient), X509("ca1", TlsRole::kServer));
  ASSERT_TRUE(e.client) << ErrorOf(e.client);
  ASSERT_TRUE(e.server) << ErrorOf(e.server);
  EXPECT_NE((*e.client)->Describe().find("TLS 1.3 TLS_"), std::string::npos);
  EXPECT_NE((*e.client)->Describe().find("peer certificate CN=vtvmm-server,O=vtime"),
            std::string::npos)
      << (*e.client)->Describe();
  EXPECT_NE((*e.server)->Describe().find("peer certificate CN=vtvmm-client,O=vtime"),
            std::string::npos)
      << (*e.server)->Describe();
  ASSERT_TRUE((*e.client)->WriteAll(Pattern(1000, 6)));
  std::vector<std::uint8_t> got(1000);
  ASSERT_TRUE((*e.server)->ReadAll(got, kTimeoutMs));
  EXPECT_EQ(got, Pattern(1000, 6));
}

TEST_F(TlsTest, ClientCertificateFromAnotherCaIsRefusedByTheServer) {
  Ends e = Handshakes(X509("ca2_trusts_ca1", TlsRole::kClient), X509("ca1", TlsRole::kServer));
  ASSERT_FALSE(e.server);
  EXPECT_NE(ErrorOf(e.server).find("certificate verify failed: self-signed certificate in "
                                   "certificate chain (peer certificate CN=vtvmm-client,O=vtime, "
                                   "at CN=vtime CA"),
            std::string::npos)
      << ErrorOf(e.server);
  // The client learns it within its own handshake, not at its first read.
  ASSERT_FALSE(e.client);
  EXPECT_NE(ErrorOf(e.client).find("the peer refused our certificate: it sent alert 'unknown CA'"),
            std::string::npos)
      << ErrorOf(e.client);
}

TEST_F(TlsTest, ServerCertificateFromAnotherCaIsRefusedByTheClient) {
  Ends e = Handshakes(X509("ca1", TlsRole::kClient), X509("ca2_trusts_ca1", TlsRole::kServer));
  ASSERT_FALSE(e.client);
  EXPECT_NE(ErrorOf(e.client).find("TLS handshake with the peer failed: certificate verify "
                                   "failed: self-signed certificate in certificate chain (peer "
                                   "certificate CN=vtvmm-server,O=vtime, at CN=vtime CA"),
            std::string::npos)
      << ErrorOf(e.client);
  ASSERT_FALSE(e.server);
  EXPECT_NE(ErrorOf(e.server).find("refused our certificate"), std::string::npos)
      << ErrorOf(e.server);
}

TEST_F(TlsTest, ClientCertificateIsNotAServerCertificate) {
  // A "server" presenting the client's certificate (right CA, wrong usage).
  const fs::path d = *dir_ / "swapped";
  fs::create_directory(d);
  fs::copy_file(*dir_ / "ca1" / "ca-cert.pem", d / "ca-cert.pem");
  fs::copy_file(*dir_ / "ca1" / "client-cert.pem", d / "server-cert.pem");
  fs::copy_file(*dir_ / "ca1" / "client-key.pem", d / "server-key.pem");
  fs::permissions(d / "server-key.pem", fs::perms::owner_read | fs::perms::owner_write);
  auto r = LoadTlsCredentials({TlsConfig::Kind::kX509, d.string()}, TlsRole::kServer);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().context.find("server-cert.pem does not chain to"), std::string::npos)
      << r.error().Message();
  EXPECT_NE(r.error().context.find("unsuitable certificate purpose"), std::string::npos)
      << r.error().Message();
}

TEST_F(TlsTest, PskClientRefusesACertificateServer) {
  Ends e = Handshakes(Psk("good.psk", TlsRole::kClient), X509("ca1", TlsRole::kServer));
  ASSERT_FALSE(e.client);
  EXPECT_NE(ErrorOf(e.client).find("the peer showed a certificate instead of using the "
                                   "pre-shared key"),
            std::string::npos)
      << ErrorOf(e.client);
  ASSERT_FALSE(e.server);
}

TEST_F(TlsTest, PlainTcpPeerIsRefusedByATlsServer) {
  Creds server = Psk("good.psk", TlsRole::kServer);
  ASSERT_NE(server, nullptr);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Fd plain(fds[0]);
  // What a plain vtime-clocksync client sends first: magic and sequence.
  const auto request = Pattern(16, 7);
  ASSERT_EQ(::send(plain.get(), request.data(), request.size(), MSG_NOSIGNAL), 16);
  auto r = TlsHandshake(Fd(fds[1]), *server, kTimeoutMs);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().Message(),
            "TLS handshake with the peer failed: the peer does not speak TLS (what it sent is "
            "not a TLS record)");
}

TEST_F(TlsTest, SilentPeerTimesOut) {
  Creds server = Psk("good.psk", TlsRole::kServer);
  Creds client = Psk("good.psk", TlsRole::kClient);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(client, nullptr);
  for (const Creds& c : {server, client}) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    Fd silent(fds[0]);
    auto r = TlsHandshake(Fd(fds[1]), *c, 100);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().Message(), "TLS handshake with the peer failed: timed out after 100 ms");
  }
}

TEST_F(TlsTest, ClosedPeerFailsTheHandshake) {
  Creds client = Psk("good.psk", TlsRole::kClient);
  ASSERT_NE(client, nullptr);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ::close(fds[0]);
  auto r = TlsHandshake(Fd(fds[1]), *client, kTimeoutMs);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().Message().find("TLS handshake with the peer failed: "), std::string::npos);
}

// ---------------------------------------------------------------- loading

class TlsLoadTest : public TlsTest {
 protected:
  // Writes a PSK file with `text` and `mode`, returns LoadTlsCredentials' error.
  static std::string PskError(const std::string& text,
                              fs::perms mode = fs::perms::owner_read | fs::perms::owner_write) {
    const std::string file = Path("t.psk");
    fs::remove(file);
    {
      std::ofstream out(file);
      out << text;
    }
    fs::permissions(file, mode);
    auto r = LoadTlsCredentials({TlsConfig::Kind::kPsk, file}, TlsRole::kServer);
    return r ? "(loaded)" : r.error().context;
  }
};

TEST_F(TlsLoadTest, PskFileProblemsAreNamed) {
  const std::string f = Path("t.psk");
  const std::string key32(32, '0');
  EXPECT_EQ(PskError("vtvmm:" + key32 + "\n"), "(loaded)");
  EXPECT_EQ(PskError("\nvtvmm:" + key32 + "\r\n\n"), "(loaded)");
  EXPECT_EQ(PskError("vtvmm:" + std::string(30, '0') + "\n"),
            f + " line 1: the key has 30 hex digits, at least 32 (16 bytes) are needed");
  EXPECT_EQ(PskError("a:" + key32 + "\nvtvmm:" + std::string(31, '0') + "g\n"),
            f + " line 2: the key is not hexadecimal (character 38)");
  EXPECT_EQ(PskError("vtvmm:" + std::string(33, '0') + "\n"),
            f + " line 1: the key has an odd number of hex digits (33)");
  EXPECT_EQ(PskError("vtvmm " + key32 + "\n"), f + " line 1: not IDENTITY:HEXKEY (no ':')");
  EXPECT_EQ(PskError(":" + key32 + "\n"), f + " line 1: the identity must have 1..128 bytes");
  EXPECT_EQ(PskError("a:" + key32 + "\na:" + key32 + "\n"),
            f + " line 2: identity 'a' is listed twice");
  EXPECT_EQ(PskError("\n\n"), f + " lists no IDENTITY:HEXKEY line");
  EXPECT_EQ(
      PskError("vtvmm:" + key32 + "\n", fs::perms::owner_read | fs::perms::group_read),
      f + " holds a secret but its mode 0440 lets the group or others at it (chmod 600 " + f + ")");
}

TEST_F(TlsLoadTest, MissingFilesAreNamed) {
  auto r = LoadTlsCredentials({TlsConfig::Kind::kPsk, Path("absent.psk")}, TlsRole::kClient);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().Message(),
            "cannot read " + Path("absent.psk") + " (errno 2: No such file or directory)");
  // The client role needs no server files, the server role no client files.
  const fs::path d = *dir_ / "client_only";
  fs::create_directory(d);
  for (const char* f : {"ca-cert.pem", "client-cert.pem", "client-key.pem"}) {
    fs::copy_file(*dir_ / "ca1" / f, d / f);
  }
  fs::permissions(d / "client-key.pem", fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_TRUE(LoadTlsCredentials({TlsConfig::Kind::kX509, d.string()}, TlsRole::kClient));
  auto s = LoadTlsCredentials({TlsConfig::Kind::kX509, d.string()}, TlsRole::kServer);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().context.find("cannot read " + (d / "server-cert.pem").string()),
            std::string::npos);
}

TEST_F(TlsLoadTest, MixedSetIsRefusedAtLoad) {
  // ca1's CA with ca2's client certificate: refused before any peer is met.
  const fs::path d = *dir_ / "mixed";
  fs::create_directory(d);
  fs::copy_file(*dir_ / "ca1" / "ca-cert.pem", d / "ca-cert.pem");
  for (const char* f : {"client-cert.pem", "client-key.pem"})
    fs::copy_file(*dir_ / "ca2" / f, d / f);
  fs::permissions(d / "client-key.pem", fs::perms::owner_read | fs::perms::owner_write);
  auto r = LoadTlsCredentials({TlsConfig::Kind::kX509, d.string()}, TlsRole::kClient);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().context, (d / "client-cert.pem").string() + " does not chain to " +
                                   (d / "ca-cert.pem").string() +
                                   ": unable to get local issuer certificate");
}

TEST_F(TlsLoadTest, KeyOthersCanReadIsRefused) {
  const fs::path d = *dir_ / "open_key";
  fs::create_directory(d);
  for (const char* f : {"ca-cert.pem", "server-cert.pem", "server-key.pem"}) {
    fs::copy_file(*dir_ / "ca1" / f, d / f);
  }
  fs::permissions(d / "server-key.pem", fs::perms::owner_read | fs::perms::others_read);
  auto r = LoadTlsCredentials({TlsConfig::Kind::kX509, d.string()}, TlsRole::kServer);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().context.find("server-key.pem holds a secret but its mode 0404"),
            std::string::npos)
      << r.error().context;
}

}  // namespace
}  // namespace vtime::vmm
