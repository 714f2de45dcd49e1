#include "vmm/tls.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

namespace vtime::vmm {
namespace {

// Limits of the PSK file: far above any real use, low enough that a wrong
// file (a disk image, say) is refused before it is read whole.
constexpr std::size_t kMinPskBytes = 16;
constexpr std::size_t kMaxPskBytes = 256;
constexpr std::size_t kMaxIdentityBytes = 128;
constexpr std::streamsize kMaxPskFileBytes = 64 * 1024;
// A key this long is a SHA-384 PSK; see tls.h.
constexpr std::size_t kSha384PskBytes = 48;
constexpr std::array<unsigned char, 2> kAes128GcmSha256 = {0x13, 0x01};
constexpr std::array<unsigned char, 2> kAes256GcmSha384 = {0x13, 0x02};
// How long CloseWrite may wait to hand close_notify to the kernel.
constexpr int kCloseNotifyTimeoutMs = 2000;

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
struct SessionFree {
  void operator()(SSL_SESSION* session) const { SSL_SESSION_free(session); }
};
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};

// One line of a PSK file. The key is wiped when it goes.
struct PskEntry {
  std::string identity;
  std::vector<std::uint8_t> key;

  PskEntry() = default;
  PskEntry(const PskEntry&) = delete;
  PskEntry& operator=(const PskEntry&) = delete;
  PskEntry(PskEntry&&) = default;
  PskEntry& operator=(PskEntry&&) = default;
  ~PskEntry() {
    if (!key.empty()) OPENSSL_cleanse(key.data(), key.size());
  }
};

// The last OpenSSL error's reason, for messages; "" when the queue is empty.
std::string LastOpenSslReason() {
  const unsigned long e = ERR_peek_last_error();
  if (e == 0) return "";
  const char* reason = ERR_reason_error_string(e);
  if (reason != nullptr) return reason;
  std::array<char, 256> text{};
  ERR_error_string_n(e, text.data(), text.size());
  return text.data();
}

// Fails with the OpenSSL reason appended, and empties the error queue.
tl::unexpected<Error> OpenSslFail(ErrorCode code, std::string context) {
  const std::string reason = LastOpenSslReason();
  ERR_clear_error();
  if (!reason.empty()) context += ": " + reason;
  return Fail(code, std::move(context));
}

// Printable form of a peer-supplied identity: it lands in a log line.
std::string Printable(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, 64)) {
    out += (c >= 0x20 && c < 0x7f && c != '\'') ? c : '?';
  }
  if (text.size() > 64) out += "...";
  return out;
}

// A certificate's subject, "CN=vtvmm-server,O=vtime" (RFC 2253 order), or
// "(none)".
std::string NameOf(X509* cert) {
  if (cert == nullptr) return "(none)";
  std::unique_ptr<BIO, BioFree> mem(BIO_new(BIO_s_mem()));
  if (mem == nullptr) return "?";
  X509_NAME_print_ex(mem.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(mem.get(), &data);
  return n > 0 ? Printable(std::string_view(data, static_cast<std::size_t>(n))) : "(empty)";
}

// Refuses a secret file the group or others may access (see tls.h).
Result<void> CheckSecretFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Fail(ErrorCode::kSystem, "cannot read " + path, errno);
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    std::array<char, 8> mode{};
    std::snprintf(mode.data(), mode.size(), "%04o", st.st_mode & 07777);
    return Fail(ErrorCode::kInvalidArgument, path + " holds a secret but its mode " + mode.data() +
                                                 " lets the group or others at it (chmod 600 " +
                                                 path + ")");
  }
  return Ok();
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::vector<PskEntry>> ReadPskFile(const std::string& path) {
  if (auto r = CheckSecretFile(path); !r) return tl::unexpected(r.error());
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kSystem, "cannot open " + path, errno);
  std::string text(static_cast<std::size_t>(kMaxPskFileBytes) + 1, '\0');
  in.read(text.data(), kMaxPskFileBytes + 1);
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (in.bad()) return Fail(ErrorCode::kSystem, "cannot read " + path, errno);
  if (text.size() > static_cast<std::size_t>(kMaxPskFileBytes)) {
    OPENSSL_cleanse(text.data(), text.size());
    return Fail(ErrorCode::kInvalidArgument, path + " is larger than 64 KiB: not a PSK file");
  }
  std::vector<PskEntry> entries;
  std::istringstream lines(text);
  OPENSSL_cleanse(text.data(), text.size());
  std::string line;
  std::string problem;
  for (int number = 1; problem.empty() && std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path + " line " + std::to_string(number) + ": ";
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) {
      problem = where + "not IDENTITY:HEXKEY (no ':')";
    } else if (colon == 0 || colon > kMaxIdentityBytes) {
      problem = where + "the identity must have 1.." + std::to_string(kMaxIdentityBytes) + " bytes";
    } else {
      PskEntry e;
      e.identity = line.substr(0, colon);
      const std::string_view hex = std::string_view(line).substr(colon + 1);
      for (const PskEntry& other : entries) {
        if (other.identity == e.identity) {
          problem = where + "identity '" + Printable(e.identity) + "' is listed twice";
        }
      }
      if (problem.empty() && hex.size() % 2 != 0) {
        problem =
            where + "the key has an odd number of hex digits (" + std::to_string(hex.size()) + ")";
      }
      for (std::size_t i = 0; problem.empty() && i < hex.size(); i += 2) {
        const int hi = HexDigit(hex[i]);
        const int lo = HexDigit(hex[i + 1]);
        if (hi < 0 || lo < 0) {
          problem = where + "the key is not hexadecimal (character " +
                    std::to_string(colon + 2 + i + (hi < 0 ? 0 : 1)) + ")";
        } else {
          e.key.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
        }
      }
      if (problem.empty() && e.key.size() < kMinPskBytes) {
        problem = where + "the key has " + std::to_string(hex.size()) + " hex digits, at least " +
                  std::to_string(2 * kMinPskBytes) + " (" + std::to_string(kMinPskBytes) +
                  " bytes) are needed";
      }
      if (problem.empty() && e.key.size() > kMaxPskBytes) {
        problem = where + "the key is longer than " + std::to_string(kMaxPskBytes) + " bytes";
      }
      if (problem.empty()) entries.push_back(std::move(e));
    }
    OPENSSL_cleanse(line.data(), line.size());
  }
  if (!problem.empty()) return Fail(ErrorCode::kMalformed, problem);
  if (entries.empty()) return Fail(ErrorCode::kMalformed, path + " lists no IDENTITY:HEXKEY line");
  return entries;
}

const std::array<unsigned char, 2>& SuiteOf(const PskEntry& psk) {
  return psk.key.size() >= kSha384PskBytes ? kAes256GcmSha384 : kAes128GcmSha256;
}

// What one handshake saw of the PSK exchange and the peer's chain (the
// callbacks record it; the error messages read it).
struct HandshakeState {
  bool offered = false;      // Server: the client offered an identity.
  bool known = false;        // Server: ... which is in our file.
  bool accepted = false;     // Client: the server's session ticket arrived.
  std::string verify_leaf;   // The peer certificate that failed verification,
  std::string verify_where;  // and the certificate in its chain where it did.
  std::string identity;      // The identity offered (client: ours).
};

// The socket under the TLS layer: send with MSG_NOSIGNAL (a closed peer is
// an error, not a SIGPIPE), recv, and errno kept for the error message.
struct Socket {
  int fd = -1;
  int last_errno = 0;
};

int SocketWrite(BIO* bio, const char* data, int size) {
  auto* s = static_cast<Socket*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  for (;;) {
    const ssize_t n = ::send(s->fd, data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EINTR) continue;
    s->last_errno = errno;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
    return -1;
  }
}

int SocketRead(BIO* bio, char* data, int size) {
  auto* s = static_cast<Socket*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  for (;;) {
    const ssize_t n = ::recv(s->fd, data, static_cast<std::size_t>(size), 0);
    if (n > 0) return static_cast<int>(n);
    if (n == 0) {
      BIO_set_flags(bio, BIO_FLAGS_IN_EOF);
      return 0;
    }
    if (errno == EINTR) continue;
    s->last_errno = errno;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(bio);
    return -1;
  }
}

long SocketCtrl(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    default:
      return 0;
  }
}

int SocketCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

// Made once, kept for the life of the process.
const BIO_METHOD* SocketMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "vtime socket");
    if (m != nullptr) {
      BIO_meth_set_write(m, SocketWrite);
      BIO_meth_set_read(m, SocketRead);
      BIO_meth_set_ctrl(m, SocketCtrl);
      BIO_meth_set_create(m, SocketCreate);
    }
    return m;
  }();
  return method;
}

int64_t MonotonicMs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

// What poll should wait for after an SSL call asked to be retried.
short EventsFor(int ssl_error) { return ssl_error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN; }

// Waits for `events` on fd for at most timeout_ms (-1: no limit). false on a
// timeout; errno is set on a poll failure (then also false, with r < 0).
int PollFor(int fd, short events, int timeout_ms) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

}  // namespace

class TlsCredentials {
 public:
  TlsConfig config;
  TlsRole role = TlsRole::kClient;
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx;
  std::vector<PskEntry> psks;  // Client: the first is ours. Server: all accepted.
};

namespace {

// Index 0 of an SSL's ex_data is its "app data": the handshake's HandshakeState.
HandshakeState* StateOf(SSL* ssl) { return static_cast<HandshakeState*>(SSL_get_ex_data(ssl, 0)); }
const TlsCredentials* CredentialsOf(SSL* ssl) {
  return static_cast<const TlsCredentials*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), 0));
}

// A TLS 1.3 session standing for an external PSK.
SSL_SESSION* PskSession(SSL* ssl, const PskEntry& psk) {
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, SuiteOf(psk).data());
  if (cipher == nullptr) return nullptr;
  std::unique_ptr<SSL_SESSION, SessionFree> session(SSL_SESSION_new());
  if (session == nullptr ||
      SSL_SESSION_set1_master_key(session.get(), psk.key.data(), psk.key.size()) != 1 ||
      SSL_SESSION_set_cipher(session.get(), cipher) != 1 ||
      SSL_SESSION_set_protocol_version(session.get(), TLS1_3_VERSION) != 1) {
    return nullptr;
  }
  return session.release();
}

// Client: offers the first key of the file.
int UsePsk(SSL* ssl, const EVP_MD* md, const unsigned char** id, std::size_t* id_len,
           SSL_SESSION** session) {
  const TlsCredentials* creds = CredentialsOf(ssl);
  const PskEntry& psk = creds->psks.front();
  *session = nullptr;
  *id = nullptr;
  *id_len = 0;
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, SuiteOf(psk).data());
  if (cipher == nullptr) return 0;
  // After a HelloRetryRequest the hash is fixed: offer the key only if it is ours.
  if (md != nullptr &&
      EVP_MD_get_type(md) != EVP_MD_get_type(SSL_CIPHER_get_handshake_digest(cipher))) {
    return 1;
  }
  *session = PskSession(ssl, psk);
  if (*session == nullptr) return 0;
  *id = reinterpret_cast<const unsigned char*>(psk.identity.data());
  *id_len = psk.identity.size();
  return 1;
}

// Server: looks the client's identity up. Unknown: no session, and the
// handshake then fails (there is no certificate to fall back on).
int FindPsk(SSL* ssl, const unsigned char* id, std::size_t id_len, SSL_SESSION** session) {
  const TlsCredentials* creds = CredentialsOf(ssl);
  HandshakeState* state = StateOf(ssl);
  const std::string_view identity(reinterpret_cast<const char*>(id), id_len);
  *session = nullptr;
  state->offered = true;
  state->identity = std::string(identity.substr(0, 256));
  for (const PskEntry& psk : creds->psks) {
    if (psk.identity == identity) {
      state->known = true;
      *session = PskSession(ssl, psk);
      return *session == nullptr ? 0 : 1;
    }
  }
  return 1;
}

// Notes where the peer's chain failed, for the message (OpenSSL forgets the
// peer certificate of a failed handshake).
int NoteVerify(int ok, X509_STORE_CTX* store) {
  if (ok == 1) return 1;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  HandshakeState* state = ssl != nullptr ? StateOf(ssl) : nullptr;
  if (state != nullptr && state->verify_leaf.empty()) {
    state->verify_leaf = NameOf(X509_STORE_CTX_get0_cert(store));
    state->verify_where = NameOf(X509_STORE_CTX_get_current_cert(store));
  }
  return 0;
}

// Server: a ticket is never honoured (see Load).
SSL_TICKET_RETURN IgnoreTicket(SSL* /*ssl*/, SSL_SESSION* /*session*/,
                               const unsigned char* /*key_name*/, std::size_t /*key_name_len*/,
                               SSL_TICKET_STATUS /*status*/, void* /*arg*/) {
  return SSL_TICKET_RETURN_IGNORE;
}

// Client: the server let us in (see Load); the session is not kept.
int TicketArrived(SSL* ssl, SSL_SESSION* /*session*/) {
  StateOf(ssl)->accepted = true;
  return 0;
}

Result<std::shared_ptr<const TlsCredentials>> Load(const TlsConfig& config, TlsRole role) {
  auto creds = std::make_shared<TlsCredentials>();
  creds->config = config;
  creds->role = role;
  const bool server = role == TlsRole::kServer;
  creds->ctx.reset(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  SSL_CTX* ctx = creds->ctx.get();
  if (ctx == nullptr) return OpenSslFail(ErrorCode::kSystem, "TLS: SSL_CTX_new");
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
    return OpenSslFail(ErrorCode::kUnsupported, "TLS: this OpenSSL cannot be limited to TLS 1.3");
  }
  // In TLS 1.3 the client's handshake ends before the server has checked
  // the client's certificate and Finished. The server's one session ticket,
  // sent once it has, is the client's sign that it was let in; the client
  // keeps no session, and the server would not resume one: every link is a
  // full handshake.
  if (server) {
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_session_ticket_cb(ctx, nullptr, IgnoreTicket, nullptr) != 1) {
      return OpenSslFail(ErrorCode::kSystem, "TLS: SSL_CTX_set_session_ticket_cb");
    }
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, TicketArrived);
  }
  SSL_CTX_set_ex_data(ctx, 0, creds.get());

  if (config.kind == TlsConfig::Kind::kPsk) {
    auto psks = ReadPskFile(config.path);
    if (!psks) return tl::unexpected(psks.error());
    creds->psks = std::move(*psks);
    if (server) {
      SSL_CTX_set_psk_find_session_callback(ctx, FindPsk);
      if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256") != 1) {
        return OpenSslFail(ErrorCode::kUnsupported, "TLS: cipher suites");
      }
    } else {
      SSL_CTX_set_psk_use_session_callback(ctx, UsePsk);
      // Offer only the suite of our key's hash, or the server may choose one
      // the key cannot be used with.
      const char* suite = SuiteOf(creds->psks.front()) == kAes256GcmSha384
                              ? "TLS_AES_256_GCM_SHA384"
                              : "TLS_AES_128_GCM_SHA256";
      if (SSL_CTX_set_ciphersuites(ctx, suite) != 1) {
        return OpenSslFail(ErrorCode::kUnsupported, "TLS: cipher suites");
      }
      // A server that shows a certificate instead of using the key is not
      // ours: with no CA to check it against, verification fails.
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NoteVerify);
    }
    return std::shared_ptr<const TlsCredentials>(std::move(creds));
  }

  const std::string& dir = config.path;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Fail(ErrorCode::kSystem, "cannot read " + dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, dir + " is not a directory (ca-cert.pem, " +
                                                 (server ? "server" : "client") +
                                                 "-cert.pem, -key.pem)");
  }
  const std::string ca = dir + "/ca-cert.pem";
  const std::string cert = dir + (server ? "/server-cert.pem" : "/client-cert.pem");
  const std::string key = dir + (server ? "/server-key.pem" : "/client-key.pem");
  for (const std::string* f : {&ca, &cert, &key}) {
    if (::access(f->c_str(), R_OK) != 0)
      return Fail(ErrorCode::kSystem, "cannot read " + *f, errno);
  }
  if (auto r = CheckSecretFile(key); !r) return tl::unexpected(r.error());
  if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
    return OpenSslFail(ErrorCode::kMalformed, ca + ": no CA certificate in it");
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    return OpenSslFail(ErrorCode::kMalformed, cert + ": not a PEM certificate");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return OpenSslFail(ErrorCode::kMalformed, key + ": not an unencrypted PEM private key");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return OpenSslFail(ErrorCode::kInvalidArgument, key + " is not the key of " + cert);
  }
  // Our own certificate must chain to the CA too: a set put together from
  // two runs of mkcreds fails here, not at the peer.
  {
    X509_STORE_CTX* check = X509_STORE_CTX_new();
    if (check == nullptr) return OpenSslFail(ErrorCode::kSystem, "TLS: X509_STORE_CTX_new");
    STACK_OF(X509)* chain = nullptr;
    SSL_CTX_get0_chain_certs(ctx, &chain);
    int ok = X509_STORE_CTX_init(check, SSL_CTX_get_cert_store(ctx), SSL_CTX_get0_certificate(ctx),
                                 chain);
    if (ok == 1) {
      X509_STORE_CTX_set_purpose(check, server ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT);
      ok = X509_verify_cert(check);
    }
    const int why = X509_STORE_CTX_get_error(check);
    X509_STORE_CTX_free(check);
    if (ok != 1) {
      ERR_clear_error();
      return Fail(ErrorCode::kInvalidArgument,
                  cert + " does not chain to " + ca + ": " + X509_verify_cert_error_string(why));
    }
  }
  SSL_CTX_set_verify(ctx,
                     server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                     NoteVerify);
  if (server) {
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
  }
  ERR_clear_error();
  return std::shared_ptr<const TlsCredentials>(std::move(creds));
}

// The peer's certificate subject, or "(none)".
std::string PeerName(SSL* ssl) { return NameOf(SSL_get0_peer_certificate(ssl)); }

class TlsLink final : public Link {
 public:
  // Keeps what Describe and the error messages need: the link may outlive
  // the credentials (the SSL keeps its SSL_CTX alive; the callbacks that
  // read the credentials run only inside Handshake).
  TlsLink(Fd fd, const TlsCredentials& creds)
      : fd_(std::move(fd)),
        psk_mode_(creds.config.kind == TlsConfig::Kind::kPsk),
        server_(creds.role == TlsRole::kServer),
        path_(creds.config.path) {
    socket_.fd = fd_.get();
  }

  Result<void> Handshake(const TlsCredentials& creds, unsigned timeout_ms) {
    ssl_.reset(SSL_new(creds.ctx.get()));
    if (ssl_ == nullptr) return OpenSslFail(ErrorCode::kSystem, "TLS: SSL_new");
    BIO* bio = BIO_new(SocketMethod());
    if (bio == nullptr) return OpenSslFail(ErrorCode::kSystem, "TLS: BIO_new");
    BIO_set_data(bio, &socket_);
    SSL_set_bio(ssl_.get(), bio, bio);
    SSL_set_ex_data(ssl_.get(), 0, &state_);
    if (psk_mode_ && !server_) state_.identity = creds.psks.front().identity;
    const bool server = server_;
    const int64_t deadline = MonotonicMs() + timeout_ms;
    for (;;) {
      ERR_clear_error();
      socket_.last_errno = 0;
      const int r = server ? SSL_accept(ssl_.get()) : SSL_connect(ssl_.get());
      if (r == 1) break;
      const int e = SSL_get_error(ssl_.get(), r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        return HandshakeFail(e == SSL_ERROR_SSL ? Why() : WhyClosed(e));
      }
      const int64_t left = deadline - MonotonicMs();
      const int p = left > 0 ? PollFor(fd_.get(), EventsFor(e), static_cast<int>(left)) : 0;
      if (p < 0) return Fail(ErrorCode::kSystem, "TLS handshake with the peer: poll", errno);
      if (p == 0) {
        return HandshakeFail("timed out after " + std::to_string(timeout_ms) + " ms",
                             ErrorCode::kSystem);
      }
    }
    // Client: wait for the server's verdict on us (see Load).
    while (!server && !state_.accepted) {
      ERR_clear_error();
      socket_.last_errno = 0;
      char byte = 0;
      std::size_t n = 0;
      if (SSL_peek_ex(ssl_.get(), &byte, 1, &n) == 1) break;  // Data: it let us in.
      const int e = SSL_get_error(ssl_.get(), 0);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        return HandshakeFail(e == SSL_ERROR_SSL ? Why() : WhyClosed(e));
      }
      if (state_.accepted) break;
      const int64_t left = deadline - MonotonicMs();
      const int p = left > 0 ? PollFor(fd_.get(), EventsFor(e), static_cast<int>(left)) : 0;
      if (p < 0) return Fail(ErrorCode::kSystem, "TLS handshake with the peer: poll", errno);
      if (p == 0) {
        return HandshakeFail("timed out after " + std::to_string(timeout_ms) +
                                 " ms waiting for the server to accept us",
                             ErrorCode::kSystem);
      }
    }
    if (psk_mode_ && SSL_session_reused(ssl_.get()) != 1) {
      return HandshakeFail("the peer did not use the pre-shared key");
    }
    return Ok();
  }

  Result<void> WriteAll(std::span<const std::uint8_t> bytes) override {
    while (!bytes.empty()) {
      ERR_clear_error();
      socket_.last_errno = 0;
      std::size_t n = 0;
      if (SSL_write_ex(ssl_.get(), bytes.data(), bytes.size(), &n) == 1) {
        bytes = bytes.subspan(n);
        continue;
      }
      const int e = SSL_get_error(ssl_.get(), 0);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (PollFor(fd_.get(), EventsFor(e), -1) < 0) {
          return Fail(ErrorCode::kSystem, "link: TLS send: poll", errno);
        }
        continue;
      }
      return IoFail("link: TLS send", e, bytes.size());
    }
    return Ok();
  }

  Result<void> ReadAll(std::span<std::uint8_t> bytes, unsigned timeout_ms) override {
    while (!bytes.empty()) {
      ERR_clear_error();
      socket_.last_errno = 0;
      std::size_t n = 0;
      if (SSL_read_ex(ssl_.get(), bytes.data(), bytes.size(), &n) == 1) {
        bytes = bytes.subspan(n);
        continue;
      }
      const int e = SSL_get_error(ssl_.get(), 0);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        const int p = PollFor(fd_.get(), EventsFor(e), static_cast<int>(timeout_ms));
        if (p < 0) return Fail(ErrorCode::kSystem, "link: TLS receive: poll", errno);
        if (p == 0) {
          return Fail(ErrorCode::kSystem,
                      "link: receive: timed out after " + std::to_string(timeout_ms) + " ms");
        }
        continue;
      }
      return IoFail("link: TLS receive", e, bytes.size());
    }
    return Ok();
  }

  void CloseWrite() override {
    if (!closed_write_) {
      closed_write_ = true;
      // SSL_shutdown returns 0 once close_notify is out (the peer's is not
      // awaited: reading goes on).
      const int64_t deadline = MonotonicMs() + kCloseNotifyTimeoutMs;
      for (;;) {
        ERR_clear_error();
        const int r = SSL_shutdown(ssl_.get());
        if (r >= 0) break;
        const int e = SSL_get_error(ssl_.get(), r);
        const int64_t left = deadline - MonotonicMs();
        if ((e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) || left <= 0 ||
            PollFor(fd_.get(), EventsFor(e), static_cast<int>(left)) <= 0) {
          break;
        }
      }
      ERR_clear_error();
    }
    ::shutdown(fd_.get(), SHUT_WR);
  }

  [[nodiscard]] int fd() const override { return fd_.get(); }

  [[nodiscard]] std::string Describe() const override {
    const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_.get());
    std::string text = std::string("TLS 1.3 ") + (cipher ? SSL_CIPHER_get_name(cipher) : "?");
    if (psk_mode_) {
      return text + ", PSK identity '" + Printable(state_.identity) + "'";
    }
    return text + ", peer certificate " + PeerName(ssl_.get());
  }

 private:
  // Why the handshake failed, from OpenSSL's error queue and what we saw.
  std::string Why() {
    const unsigned long err = ERR_peek_last_error();
    const int reason = ERR_GET_REASON(err);
    const bool psk = psk_mode_;
    const bool server = server_;
    const std::string ours = "(identity '" + Printable(state_.identity) + "')";
    if (reason > SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
      // The peer refused us and said why with an alert.
      const std::string alert = std::string("it sent alert '") +
                                SSL_alert_desc_string_long(reason - SSL_AD_REASON_OFFSET) + "'";
      if (psk && !server) return "the peer does not know our pre-shared key " + ours + ": " + alert;
      if (!psk) return "the peer refused our certificate: " + alert;
      return "the peer refused the handshake: " + alert;
    }
    switch (reason) {
      case SSL_R_BINDER_DOES_NOT_VERIFY:
        return "the client's pre-shared key for identity '" + Printable(state_.identity) +
               "' is not the one in " + path_;
      case SSL_R_CERTIFICATE_VERIFY_FAILED:
        if (psk) return "the peer showed a certificate instead of using the pre-shared key";
        return std::string("certificate verify failed: ") +
               X509_verify_cert_error_string(SSL_get_verify_result(ssl_.get())) +
               " (peer certificate " + state_.verify_leaf +
               (state_.verify_where != state_.verify_leaf ? ", at " + state_.verify_where : "") +
               ")";
      case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return "the client sent no certificate";
      case SSL_R_WRONG_VERSION_NUMBER:
      case SSL_R_UNKNOWN_PROTOCOL:
      case SSL_R_PACKET_LENGTH_TOO_LONG:
      case SSL_R_HTTP_REQUEST:
      case SSL_R_BAD_RECORD_TYPE:
      case SSL_R_RECORD_LENGTH_MISMATCH:
        return "the peer does not speak TLS (what it sent is not a TLS record)";
      case SSL_R_UNSUPPORTED_PROTOCOL:
        return "the peer does not offer TLS 1.3";
      case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return WhyClosed(SSL_ERROR_ZERO_RETURN);
      default:
        break;
    }
    if (psk && server && state_.offered && !state_.known) {
      return "the client's PSK identity '" + Printable(state_.identity) + "' is not in " + path_;
    }
    if (psk && server && !state_.offered) return "the client offered no pre-shared key";
    const std::string text = LastOpenSslReason();
    return text.empty() ? "unknown OpenSSL error" : text;
  }

  // The peer went away (or the socket failed) during the handshake.
  std::string WhyClosed(int ssl_error) {
    if (ssl_error == SSL_ERROR_SYSCALL && socket_.last_errno != 0) {
      return std::string("the connection failed: ") + std::strerror(socket_.last_errno);
    }
    if (server_ && psk_mode_ && state_.offered && !state_.known) {
      return "the client's PSK identity '" + Printable(state_.identity) + "' is not in " + path_;
    }
    return "the peer closed the connection (it may have refused our credentials)";
  }

  static Result<void> HandshakeFail(const std::string& why,
                                    ErrorCode code = ErrorCode::kInvalidArgument) {
    ERR_clear_error();
    return Fail(code, "TLS handshake with the peer failed: " + why);
  }

  Result<void> IoFail(const std::string& what, int ssl_error, std::size_t left) {
    if (ssl_error == SSL_ERROR_ZERO_RETURN) {
      ERR_clear_error();
      return Fail(ErrorCode::kMalformed, "link: the other side closed the link with " +
                                             std::to_string(left) + " bytes still to come");
    }
    if (ssl_error == SSL_ERROR_SSL &&
        ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ERR_clear_error();
      return Fail(ErrorCode::kMalformed, "link: the other side closed the link with " +
                                             std::to_string(left) +
                                             " bytes still to come (no TLS close_notify)");
    }
    if (ssl_error == SSL_ERROR_SYSCALL) {
      ERR_clear_error();
      if (socket_.last_errno != 0) return Fail(ErrorCode::kSystem, what, socket_.last_errno);
      return Fail(ErrorCode::kMalformed, "link: the other side closed the link with " +
                                             std::to_string(left) + " bytes still to come");
    }
    return OpenSslFail(ErrorCode::kMalformed, what);
  }

  Fd fd_;
  bool psk_mode_;
  bool server_;
  std::string path_;  // The PSK file or x509 directory, for messages.
  Socket socket_;
  HandshakeState state_;
  std::unique_ptr<SSL, SslFree> ssl_;
  bool closed_write_ = false;
};

}  // namespace

Result<std::shared_ptr<const TlsCredentials>> LoadTlsCredentials(const TlsConfig& config,
                                                                 TlsRole role) {
  auto r = Load(config, role);
  ERR_clear_error();
  return r;
}

std::string DescribeTlsCredentials(const TlsCredentials& credentials) {
  if (credentials.config.kind == TlsConfig::Kind::kPsk) {
    if (credentials.role == TlsRole::kClient) {
      return "PSK identity '" + Printable(credentials.psks.front().identity) + "' from " +
             credentials.config.path;
    }
    const std::size_t n = credentials.psks.size();
    return "PSK, " + std::to_string(n) + (n == 1 ? " identity" : " identities") + ", from " +
           credentials.config.path;
  }
  return "x509 from " + credentials.config.path;
}

Result<std::unique_ptr<Link>> TlsHandshake(Fd fd, const TlsCredentials& credentials,
                                           unsigned timeout_ms) {
  if (!fd.valid()) return Fail(ErrorCode::kInvalidArgument, "TLS handshake: no socket");
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    return Fail(ErrorCode::kSystem, "TLS handshake: making the socket non-blocking", errno);
  }
  auto link = std::make_unique<TlsLink>(std::move(fd), credentials);
  if (auto r = link->Handshake(credentials, timeout_ms); !r) return tl::unexpected(r.error());
  return std::unique_ptr<Link>(std::move(link));
}

}  // namespace vtime::vmm
