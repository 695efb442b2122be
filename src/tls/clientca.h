/*
 * Client CA files (clientca=FILE, design/bindings.md section 9): PEM with one or more CA
 * certificates that a binding verifies client certificates against. One parser for every
 * reader: `add|update sslcert` and `check` refuse what `serve` could not use, in the same
 * words.
 */
#ifndef CB_TLS_CLIENTCA_H
#define CB_TLS_CLIENTCA_H

#include <certbind/certbind.h>
#include <stddef.h>

/* A parsed CA file: the trust anchors, their names (sent in CertificateRequest) and a
 * digest of the file. Immutable once made. */
struct cb_tls_ca;

#define CB_TLS_CA_FILE_MAX (4u << 20) /* a bundle of every public root is under 1 MiB */

/*
 * Parses pem (len bytes, borrowed; need not end in NUL). Every certificate block must
 * parse; certificates that are not CAs are not trusted (counted in *ignored, may be NULL);
 * at least one CA certificate is required; a private key block is refused (a CA file is
 * no place for one). what names the source in messages ("clientca=/etc/ca.pem"). Returns
 * an owned result in *out (cb_tls_ca_free), or CB_EBADFILE / CB_ENOMEM with a message.
 */
int cb_tls_ca_parse(const char *what, const void *pem, size_t len, struct cb_tls_ca **out,
                    size_t *ignored, struct cb_err *err) CB_MUST_CHECK;
/* Reads and parses the file path (cb_tls_ca_parse). Errors also: CB_EINVAL (no such
 * file), CB_EPERM (unreadable), CB_EBADFILE (not a regular file). */
int cb_tls_ca_load(const char *path, struct cb_tls_ca **out, size_t *ignored,
                   struct cb_err *err) CB_MUST_CHECK;
void cb_tls_ca_free(struct cb_tls_ca *ca);
/* How many CA certificates it trusts. */
size_t cb_tls_ca_count(const struct cb_tls_ca *ca);
/* SHA-256 of the file's bytes: tells two versions of a file apart. */
const unsigned char *cb_tls_ca_digest(const struct cb_tls_ca *ca);

typedef struct ssl_st SSL;
/* Makes ssl require a client certificate verified against ca (borrowed: ssl takes its own
 * references): SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, ca's trust store, and its
 * names in the CertificateRequest. CB_ETLS when the TLS library refuses. */
int cb_tls_ca_apply(SSL *ssl, const struct cb_tls_ca *ca) CB_MUST_CHECK;
/* The subject CN of the client certificate that verification refused on ssl, into buf
 * ("" when none was refused, or it has no CN). */
void cb_tls_ca_rejected_cn(SSL *ssl, char *buf, size_t size);

#endif
