/*
 * A server-side TLS connection on a non-blocking socket, for net/: OpenSSL stays
 * behind these calls. Each operation says what happened as one of a few outcomes
 * (done, would block, the peer ended, refused, failed) instead of OpenSSL's error
 * codes; cb_tls_io_reason() then says why a failure failed.
 */
#ifndef CB_TLS_IO_H
#define CB_TLS_IO_H

#include "tls/ctx.h"
#include "tls/proxy_info.h"

#include <stdbool.h>
#include <stddef.h>

enum cb_tls_io {
    CB_TLS_IO_OK,         /* done: the handshake is complete, or *n bytes moved */
    CB_TLS_IO_WANT_READ,  /* try again when the socket is readable */
    CB_TLS_IO_WANT_WRITE, /* try again when the socket is writable */
    CB_TLS_IO_CLOSED,     /* read: the client ended (close_notify, or EOF without one) */
    CB_TLS_IO_REFUSED,    /* handshake: the ClientHello callback refused, and said why */
    CB_TLS_IO_PAUSED,     /* handshake: the ClientHello callback paused it (CB_TLS_HELLO_RETRY) */
    CB_TLS_IO_ERROR,      /* failed: cb_tls_io_reason() says why */
};

/* The ClientHello callback's answers, and the alert for a refusal over a cap. */
#define CB_TLS_HELLO_OK 1
#define CB_TLS_HELLO_REFUSE 0
/* Pause the handshake (the certificate is being parsed off the loop); call it again later. */
#define CB_TLS_HELLO_RETRY (-1)
int cb_tls_alert_handshake_failure(void);
int cb_tls_alert_internal_error(void);

/* A connection on fd (borrowed) from ctx, for the accepting side; owner is what
 * cb_tls_conn_owner returns in callbacks. Owned: cb_tls_conn_free. NULL: out of memory. */
SSL *cb_tls_conn_new(SSL_CTX *ctx, int fd, void *owner);
void cb_tls_conn_free(SSL *ssl);
void *cb_tls_conn_owner(SSL *ssl);

enum cb_tls_io cb_tls_handshake(SSL *ssl);
/* Up to size bytes into buf; *n gets how many (CB_TLS_IO_OK only). */
enum cb_tls_io cb_tls_read(SSL *ssl, void *buf, size_t size, size_t *n);
/* Up to len bytes of buf; *n gets how many. After WANT_*, the same bytes must be offered again. */
enum cb_tls_io cb_tls_write(SSL *ssl, const void *buf, size_t len, size_t *n);
/* Sends close_notify (best effort: the socket is non-blocking). */
void cb_tls_shutdown(SSL *ssl);
/* Why the last operation failed: the TLS library's reason, the system error, or "connection
 * closed by client". Clears the library's error queue. */
const char *cb_tls_io_reason(char *buf, size_t size);

/* Why ssl's handshake failed (cb_tls_io_reason), said plainly for a client certificate
 * that a client CA required: none sent, or why verification refused it (the X.509 error,
 * with the certificate's CN when the TLS library kept it). Clears the error queue. */
const char *cb_tls_handshake_reason(SSL *ssl, char *buf, size_t size);

/* Whether the handshake resumed a session (from a ticket) rather than making a new one. */
bool cb_tls_resumed(SSL *ssl);

/* Whether ALPN settled on HTTP (h2 or http/1.1): protocols where the client speaks first. */
bool cb_tls_alpn_is_http(SSL *ssl);

/* The TLS half of a PROXY v2 header: ALPN, version, cipher, client certificate (its CN
 * into cn, its DER into *der, to be freed with cb_tls_free_der). */
void cb_tls_proxy_fields(SSL *ssl, struct cb_proxy_info *pi, char *cn, size_t cn_size,
                         unsigned char **der);
void cb_tls_free_der(unsigned char *der);

void cb_tls_ctx_free(SSL_CTX *ctx);

/* n bytes from the TLS library's random generator. CB_ETLS when it cannot. */
int cb_tls_random(void *buf, size_t n) CB_MUST_CHECK;
/* The TLS library's name and version, e.g. "OpenSSL 3.0.19 27 Jan 2026". */
const char *cb_tls_library(void);

#endif
