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

/* A binding's certificate: a reference to a cached, lazily loaded certificate. */
struct cb_tls_cert;
struct cb_tls_entry {
    struct cb_tls_cert *cert; /* owned reference; NULL when out of memory */
};

struct cb_tls_cache; /* thumbprint/path -> certificate, owned by one worker */

/* Returns an owned cache, without a budget; NULL when out of memory. */
struct cb_tls_cache *cb_tls_cache_new(void);
/*
 * The budget for parsed certificates (cb_cert_bundle_mem: their leaf, chain and key), 0
 * for none. Over it, the least recently served parsed certificate is dropped back to
 * unparsed (parsed again on its next use). What a dropped certificate held stays alive
 * as long as a connection uses it (OpenSSL's references); the entry itself is never
 * freed, so no binding ever loses or changes its certificate. Certificates loaded at
 * once because their files can change in place (linked and central-store files) are
 * never dropped and not counted.
 */
void cb_tls_cache_set_budget(struct cb_tls_cache *c, size_t bytes);
struct cb_tls_cache_stats {
    uint64_t id;        /* different for every cache this process made */
    uint64_t evictions; /* parsed certificates dropped to stay within the budget */
    size_t parsed;      /* parsed certificates held, within the budget */
    size_t bytes;       /* their estimated heap */
    size_t limit;       /* the budget, 0: none */
};
void cb_tls_cache_get_stats(const struct cb_tls_cache *c, struct cb_tls_cache_stats *out);
void cb_tls_cache_free(struct cb_tls_cache *c);
/* Marks every entry unseen; entries still unseen at _sweep() are dropped. */
void cb_tls_cache_mark(struct cb_tls_cache *c);
void cb_tls_cache_sweep(struct cb_tls_cache *c);
/*
 * Within a build (between _mark and _sweep): folder dir is read once, and the new entries'
 * files in it are taken as there when it names them and as missing when it does not,
 * without a lookup each; whether they can be read (and the key is not open to others) is
 * then learnt on first use, as their content is. For the store's own folders of a large
 * store: at 10^6 certificates, one pass over each folder in place of 2 x 10^6 path
 * lookups (seconds warm, minutes on a cold disk). expect: about how many names it holds
 * (a size hint). At most two folders; 0, or CB_EIO / CB_ENOMEM when it cannot be read (its
 * files are then looked up one by one).
 */
int cb_tls_cache_list_folder(struct cb_tls_cache *c, const char *dir, size_t expect);
/* Room for n entries made at once (a build of n certificates), so that the table is not
 * grown, and every entry moved, several times on the way. Without memory: grown as needed. */
void cb_tls_cache_reserve(struct cb_tls_cache *c, size_t n);
/* How many certificates in the cache are neither parsed nor known broken yet: with none,
 * every connection is served where it lands (nothing is left for affinity to save). */
size_t cb_tls_cache_untried(const struct cb_tls_cache *c);
/*
 * Fills *out for certificate `key` (a thumbprint or a ccs file path) with files
 * cert_path/key_path (key_path NULL: the key is in cert_path), served with client CA file
 * ca_path (clientca=FILE; NULL: none): the CA file is parsed with the certificate, and a
 * certificate used with different CA files (or none) has one entry for each. Unless eager,
 * nothing is parsed here: the files are only checked (present, readable, key not
 * open to others) and parsed on first use. Files that can change in place (linked
 * or central-store files) are loaded eagerly, so that the certificate they held is
 * still served while they are being rewritten. A cached certificate whose files
 * have not changed is reused (*reused). The caller owns the reference in *out
 * (release with cb_tls_entry_clear).
 */
void cb_tls_cache_get(struct cb_tls_cache *c, const char *key, const char *cert_path,
                      const char *key_path, const char *ca_path, bool eager,
                      struct cb_tls_entry *out, bool *reused);
/*
 * The same for a binding with two certificates (certhash=T1,T2): key "T1,T2", the files
 * of each. The entry holds both, parsed together (one ECDSA and one RSA, else it cannot be
 * served), and serves both: the client's signature algorithms choose. Either one unusable
 * makes the entry unusable, so the binding fails its handshakes and says why; it never
 * serves the other alone.
 */
void cb_tls_cache_get_pair(struct cb_tls_cache *c, const char *key, const char *cert_path,
                           const char *key_path, const char *cert_path2, const char *key_path2,
                           const char *ca_path, bool eager, struct cb_tls_entry *out, bool *reused);
void cb_tls_entry_clear(struct cb_tls_entry *e);
/* Loads the certificate if not yet tried (*loaded_now, may be NULL, says so).
 * Returns NULL when it can be served, else why not (borrowed). */
const char *cb_tls_entry_load(const struct cb_tls_entry *e, bool *loaded_now);
/*
 * A certificate's first parse, off the event loop (libuv's thread pool): begin, then
 * run on another thread, then finish back on the loop's thread.
 * cb_tls_load_begin: when e is neither parsed nor known broken and no parse of it is
 * under way, returns an owned job (it holds a reference to the certificate); else NULL.
 * cb_tls_load_run touches nothing but the job (files, parsing): safe on any thread.
 * cb_tls_load_finish installs the result in the certificate and frees the job.
 */
struct cb_tls_load;
struct cb_tls_load *cb_tls_load_begin(const struct cb_tls_entry *e);
void cb_tls_load_run(struct cb_tls_load *j);
void cb_tls_load_finish(struct cb_tls_load *j);
/* A job that was never run: the certificate is left untried, the job freed. */
void cb_tls_load_cancel(struct cb_tls_load *j);
/* Whether e is neither parsed nor known broken yet (cb_tls_entry_load would parse it). */
bool cb_tls_entry_untried(const struct cb_tls_entry *e);
/* Whether a parse of e's certificate is under way (cb_tls_load_begin ... _finish). */
bool cb_tls_entry_loading(const struct cb_tls_entry *e);

/* Why the entry cannot be served, as far as known without loading it; NULL if no reason yet. */
const char *cb_tls_entry_error(const struct cb_tls_entry *e);

/*
 * Certificate affinity between workers (serve with more than one): each certificate
 * has an owner worker, the same in all of them (a hash of its thumbprint or file),
 * that parses it; the others pass it their connections, so that with many
 * certificates each is parsed and held once, not once per worker. Returns the worker
 * (0..workers-1) that should take a connection for e now: self when e is parsed here
 * already or broken, or when this worker has passed CB_TLS_HOT_HANDOFFS connections
 * for it within CB_TLS_HOT_WINDOW_MS (a hot certificate is parsed in every worker
 * that is asked for it, so its handshakes still spread over all cores); else the
 * owner. Counts the pass.
 */
#define CB_TLS_HOT_HANDOFFS 16
#define CB_TLS_HOT_WINDOW_MS 10000
int cb_tls_entry_worker(const struct cb_tls_entry *e, int self, int workers, uint64_t now_ms);

/* *dst becomes another reference to src's certificate. */
void cb_tls_entry_copy(struct cb_tls_entry *dst, const struct cb_tls_entry *src);
/* Makes *e an entry that cannot be served, for reason msg (copied). */
void cb_tls_entry_set_error(struct cb_tls_entry *e, const char *msg);

/* The context of every connection: no certificate; its ClientHello callback picks one. Owned. */
SSL_CTX *cb_tls_default_ctx(int (*on_client_hello)(SSL *ssl, int *alert, void *arg));

/* Serves e's certificate (loaded: cb_tls_entry_load returned NULL) on ssl with b's
 * toggles: with e's client CA, a client certificate is required and verified against it;
 * else with clientcertnegotiation=enable one is requested and accepted unverified.
 * CB_ETLS when the TLS library refuses it. */
int cb_tls_apply_binding(SSL *ssl, const struct cb_tls_entry *e,
                         const struct cb_snap_binding *b) CB_MUST_CHECK;

#endif
