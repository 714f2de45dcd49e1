// TLS 1.3 links (OpenSSL 3) between two vtvmm, or two vtime-clocksync ends:
// both sides authenticate each other before a single application byte
// crosses, with a pre-shared key or with certificates from one CA.
//
// Credentials use QEMU's on-disk layouts, so one set can serve both:
//  - PSK: a file (QEMU's keys.psk) of lines IDENTITY:HEXKEY. The key is at
//    least 16 bytes (32 hex digits) and at most 256; the identity 1-128
//    bytes without ':'. Blank lines are ignored; identities are unique. The
//    client presents the first line; the server accepts any line. A key of
//    48 bytes or more is a SHA-384 PSK (TLS_AES_256_GCM_SHA384), a shorter
//    one a SHA-256 PSK (TLS_AES_128_GCM_SHA256): both ends derive the same
//    suite from the same key. No certificates are involved; a PSK client
//    refuses a server that answers with a certificate instead of the key.
//  - x509: a directory with ca-cert.pem, server-cert.pem, server-key.pem,
//    client-cert.pem, client-key.pem; a role loads only its own pair and the
//    CA. Authentication is mutual: the server requires a client certificate
//    that chains to ca-cert.pem, the client verifies the server's chain
//    against the same file. Certificates must carry the extended key usage
//    of their role where they carry one (serverAuth / clientAuth), so a
//    client's certificate cannot serve as a server's.
//    No host-name or IP check: ca-cert.pem is meant to be a CA of its own
//    for the machines that migrate to each other, so every certificate it
//    signed is one of them whatever address it answers on. (scripts/mkcreds
//    still puts IP SANs in the server certificate, should a check be added.)
//  - Secret files (the PSK file, *-key.pem) are refused when their mode
//    grants the group or others any access, as ssh does: a key others can
//    read is no longer a secret. The error says which file and its mode.
//
// Every link runs a full handshake: the client keeps no session. The server
// sends one session ticket all the same, once it has checked the client; in
// TLS 1.3 the client's handshake would otherwise end before that check, and
// a refused client would learn of it only at its first read. The client's
// TlsHandshake waits for that ticket, so on both sides success means "let
// in" and a refusal is a handshake error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "vmm/link.h"
#include "vtime/fd.h"
#include "vtime/result.h"

namespace vtime::vmm {

/// Which end of the handshake we are: the side that connected, or accepted.
enum class TlsRole : std::uint8_t { kClient, kServer };

/// Where credentials come from: a PSK file, or an x509 directory.
struct TlsConfig {
  enum class Kind : std::uint8_t { kPsk, kX509 } kind = Kind::kPsk;
  std::string path;
};

/// Credentials loaded once for one role (an SSL_CTX inside); immutable, so
/// one set may serve any number of handshakes, from any threads.
class TlsCredentials;

/// Loads and checks credentials for one role; errors name the file and what
/// is wrong ("keys.psk line 2: the key has 30 hex digits, at least 32 ...").
Result<std::shared_ptr<const TlsCredentials>> LoadTlsCredentials(const TlsConfig& config,
                                                                 TlsRole role);

/// For logs: "PSK identity 'vtvmm' from FILE" (client), "PSK, 2 identities,
/// from FILE" (server) or "x509 from DIR".
std::string DescribeTlsCredentials(const TlsCredentials& credentials);

/// Runs the handshake on a connected stream socket, which it takes over and
/// makes non-blocking; waits at most `timeout_ms` in all. On success the
/// Link reads and writes through TLS (ReadAll/WriteAll as in link.h;
/// CloseWrite sends close_notify, then shuts the socket's write side; the
/// peer closing without close_notify is kMalformed like any early close).
/// On failure nothing but handshake bytes was read and the socket is
/// closed; the error says why in one line, e.g. "TLS handshake with the peer
/// failed: the peer does not know our pre-shared key (identity 'vtvmm')",
/// "...: certificate verify failed: self-signed certificate in certificate
/// chain (peer certificate CN=vtvmm-server,O=vtime, at CN=vtime CA 91f4...)",
/// "...: the peer does not speak TLS", "...: timed out after 5000 ms".
/// Writes never raise SIGPIPE (send with MSG_NOSIGNAL underneath).
Result<std::unique_ptr<Link>> TlsHandshake(Fd fd, const TlsCredentials& credentials,
                                           unsigned timeout_ms);

}  // namespace vtime::vmm
