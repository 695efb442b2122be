/*
 * OCSP stapling in the workers (design/bindings.md section 9): the cached responses a
 * runtime serves, by certificate thumbprint, and the TLS status callback that staples the
 * one of the certificate a connection was given. The responses were checked by the
 * manager before it cached them (tls/ocsp.h); here only their nextUpdate is read, so an
 * expired one is never stapled. Immutable once finished and reference-counted like the
 * runtime that holds them; a worker is single-threaded, so counts are plain integers.
 */
#ifndef CB_TLS_STAPLE_H
#define CB_TLS_STAPLE_H

#include "binding/binding.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

struct cb_tls_staple;  /* one certificate's response */
struct cb_tls_staples; /* a runtime's responses */

/* Returns an owned, empty set (cb_tls_staples_unref); NULL when out of memory. */
struct cb_tls_staples *cb_tls_staples_new(void);
struct cb_tls_staples *cb_tls_staples_ref(struct cb_tls_staples *s);
/* Drops one reference; frees at zero. NULL is a no-op. */
void cb_tls_staples_unref(struct cb_tls_staples *s);
/*
 * Adds the response der (len bytes, copied) for certificate thumb, before
 * cb_tls_staples_finish. CB_EBADFILE when it is not a successful OCSP response or its
 * nextUpdate is before now (it is then not added), CB_ENOMEM.
 */
int cb_tls_staples_add(struct cb_tls_staples *s, const char *thumb, const unsigned char *der,
                       size_t len, int64_t now) CB_MUST_CHECK;
/* Adds old's response for thumb (a reference to it), if old has one. CB_ENOMEM. */
int cb_tls_staples_add_from(struct cb_tls_staples *s, const struct cb_tls_staples *old,
                            const char *thumb) CB_MUST_CHECK;
/* Adds references to all of old's responses (old may be NULL) but those of the n_skip
 * thumbprints in skip (sorted, borrowed). CB_ENOMEM. */
int cb_tls_staples_add_all_from(struct cb_tls_staples *s, const struct cb_tls_staples *old,
                                const char (*skip)[CB_THUMB_LEN + 1], size_t n_skip) CB_MUST_CHECK;
/* Sorts the set for lookups; a thumbprint added twice keeps one of its
 * responses (callers add each once). */
void cb_tls_staples_finish(struct cb_tls_staples *s);
size_t cb_tls_staples_count(const struct cb_tls_staples *s);
/* The response for thumb in a finished set (borrowed from s), or NULL. s may be NULL. */
const struct cb_tls_staple *cb_tls_staples_find(const struct cb_tls_staples *s, const char *thumb);

/* Installs the status callback on ctx: a client that sends status_request gets the
 * response attached to its connection, if one is and it has not expired. */
void cb_tls_staple_install(SSL_CTX *ctx);
/* Attaches st (borrowed: the caller keeps it alive for the handshake; NULL for none) to
 * ssl, for the certificate ssl serves. Called in the ClientHello callback. For a binding
 * with two certificates (pair: certhash=T1,T2), st is the first's and st2 the second's:
 * the status callback sends the one of the certificate OpenSSL chose, by its thumbprint. */
void cb_tls_staple_attach(SSL *ssl, const struct cb_tls_staple *st, bool pair,
                          const struct cb_tls_staple *st2);
/* Whether ssl's handshake stapled a response. */
bool cb_tls_staple_served(SSL *ssl);

#endif
