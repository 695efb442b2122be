/*
 * TLS contexts for `serve`: one SSL_CTX per certificate (shared by every binding
 * that uses it, and reused across snapshot swaps through a cache keyed by
 * thumbprint), the defaults every context gets, and the per-connection choice of
 * context and options made in the ClientHello callback.
 */
#ifndef CB_TLS_CTX_H
#define CB_TLS_CTX_H

#include "binding/snapshot.h"
#include <stdbool.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

/* A usable context, or the reason the binding's certificate cannot be used. */
struct cb_tls_entry {
    SSL_CTX *ctx; /* owned reference, or NULL when broken */
    char *error;  /* owned message when broken, else NULL */
};

struct cb_tls_cache; /* thumbprint/path -> SSL_CTX, owned by one worker */

/* Returns an owned cache; NULL when out of memory. */
struct cb_tls_cache *cb_tls_cache_new(void);
void cb_tls_cache_free(struct cb_tls_cache *c);
/* Marks every entry unseen; entries still unseen at _sweep() are dropped. */
void cb_tls_cache_mark(struct cb_tls_cache *c);
void cb_tls_cache_sweep(struct cb_tls_cache *c);
/*
 * Fills *out for certificate `key` (a thumbprint or a ccs file path) from the
 * files cert_path/key_path (key_path NULL: the key is in cert_path), reusing the
 * cached context when the files have not changed. *reused tells which. The caller
 * owns the references in *out (release with cb_tls_entry_clear).
 */
void cb_tls_cache_get(struct cb_tls_cache *c, const char *key, const char *cert_path,
                      const char *key_path, struct cb_tls_entry *out, bool *reused);
void cb_tls_entry_clear(struct cb_tls_entry *e);

/* The listener context: no certificate; its ClientHello callback picks one. Owned. */
SSL_CTX *cb_tls_default_ctx(int (*on_client_hello)(SSL *ssl, int *alert, void *arg));

/* Applies a binding's toggles to a connection after the context switch. */
void cb_tls_apply_binding(SSL *ssl, SSL_CTX *ctx, const struct cb_snap_binding *b);

#endif
