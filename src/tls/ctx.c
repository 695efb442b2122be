/*
 * ctx.c: SSL_CTX per certificate, cached across snapshots, and the per-binding
 * connection options applied in the ClientHello callback.
 */
#include "tls/ctx.h"
#include "tls/cert.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* TLS 1.2: forward-secret AEAD suites only. TLS 1.3 suites are OpenSSL's defaults. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char groups[] = "X25519:P-256";

static int binding_index = -1; /* SSL ex_data slot: the binding a connection resolved to */

struct cache_entry {
    struct cache_entry *next;
    char *key;
    struct cb_tls_entry tls;
    struct stat cert_st, key_st; /* files as they were when loaded (ccs and linked files) */
    bool seen;
};

struct cb_tls_cache {
    struct cache_entry **buckets;
    size_t n_buckets, n_entries;
};

static size_t str_hash(const char *s)
{
    size_t h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

struct cb_tls_cache *cb_tls_cache_new(void)
{
    struct cb_tls_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->n_buckets = 1024;
    c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void cb_tls_entry_clear(struct cb_tls_entry *e)
{
    SSL_CTX_free(e->ctx);
    free(e->error);
    e->ctx = NULL;
    e->error = NULL;
}

static void entry_free(struct cache_entry *e)
{
    cb_tls_entry_clear(&e->tls);
    free(e->key);
    free(e);
}

void cb_tls_cache_free(struct cb_tls_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct cache_entry *e = c->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            entry_free(e);
        }
    }
    free(c->buckets);
    free(c);
}

void cb_tls_cache_mark(struct cb_tls_cache *c)
{
    for (size_t i = 0; i < c->n_buckets; i++)
        for (struct cache_entry *e = c->buckets[i]; e != NULL; e = e->next)
            e->seen = false;
}

void cb_tls_cache_sweep(struct cb_tls_cache *c)
{
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct cache_entry **pp = &c->buckets[i];
        while (*pp != NULL) {
            struct cache_entry *e = *pp;
            if (e->seen) {
                pp = &e->next;
                continue;
            }
            *pp = e->next;
            entry_free(e);
            c->n_entries--;
        }
    }
}

static void grow(struct cb_tls_cache *c)
{
    size_t n = c->n_buckets * 4;
    struct cache_entry **nb = calloc(n, sizeof(*nb));
    if (nb == NULL)
        return; /* keep the old table: slower, still correct */
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct cache_entry *e = c->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            size_t b = str_hash(e->key) & (n - 1);
            e->next = nb[b];
            nb[b] = e;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->n_buckets = n;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    static const unsigned char h1[] = "\x08http/1.1";
    const struct cb_snap_binding *b = SSL_get_ex_data(ssl, binding_index);
    (void)arg;
    /* h2 only where a backend can take it: a binding without one answers in HTTP/1.1. */
    bool h2 = b != NULL && b->backend != NULL && !(b->flags & CB_OPT_DISABLEHTTP2);
    const unsigned char *server = h2 ? both : h1;
    unsigned server_len = h2 ? sizeof(both) - 1 : sizeof(h1) - 1;

    if (SSL_select_next_proto((unsigned char **)out, outlen, server, server_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    return SSL_TLSEXT_ERR_OK;
}

/* Every context gets the same safe defaults. */
static SSL_CTX *new_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL)
        return NULL;
    if (binding_index < 0)
        binding_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1 ||
        SSL_CTX_set1_groups_list(ctx, groups) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    return ctx;
}

static int verify_any(int ok, X509_STORE_CTX *store)
{
    (void)ok;
    (void)store;
    return 1; /* the client certificate is passed on to the backend, which judges it */
}

SSL_CTX *cb_tls_default_ctx(int (*on_client_hello)(SSL *ssl, int *alert, void *arg))
{
    SSL_CTX *ctx = new_ctx();
    if (ctx != NULL)
        SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    return ctx;
}

static void load(const char *key, const char *cert_path, const char *key_path,
                 struct cb_tls_entry *out)
{
    struct cb_cert_bundle *bundle = NULL;
    struct cb_err err = {0};
    SSL_CTX *ctx;

    out->ctx = NULL;
    out->error = NULL;
    if (cb_key_file_safe(key_path ? key_path : cert_path, &err) != 0 ||
        cb_cert_bundle_load(cert_path, key_path, NULL, &bundle, &err) != 0)
        goto out_error;
    /* A linked pair rewritten since the store recorded it is not this certificate: serve
     * nothing from it until the watcher has moved the bindings to what it now holds. */
    char thumb[CB_THUMB_LEN + 1] = "(unreadable)";
    if (strchr(key, '/') == NULL &&
        (cb_cert_bundle_thumbprint(bundle, thumb) != 0 || strcmp(thumb, key) != 0)) {
        cb_err_set(&err, CB_EKEY,
                   "the files of certificate %s now hold certificate %s; waiting for the store "
                   "to follow them",
                   key, thumb);
        goto out_error;
    }
    if ((ctx = new_ctx()) == NULL) {
        cb_err_set(&err, CB_ETLS, "cannot create a TLS context");
        cb_tls_err_append(&err);
        goto out_error;
    }
    if (cb_cert_bundle_use(bundle, ctx, &err) != 0) {
        SSL_CTX_free(ctx);
        goto out_error;
    }
    /* Sessions resume only on the certificate that made them. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)key,
                                   (unsigned)(strlen(key) > 32 ? 32 : strlen(key)));
    cb_cert_bundle_free(bundle);
    out->ctx = ctx;
    return;
out_error:
    cb_cert_bundle_free(bundle);
    ERR_clear_error();
    out->error = strdup(err.msg[0] ? err.msg : "cannot load the certificate");
}

static bool same_file(const struct stat *a, const char *path)
{
    struct stat st;
    if (path == NULL)
        return true;
    if (stat(path, &st) != 0)
        return false;
    return st.st_ino == a->st_ino && st.st_dev == a->st_dev && st.st_size == a->st_size &&
           st.st_mtim.tv_sec == a->st_mtim.tv_sec && st.st_mtim.tv_nsec == a->st_mtim.tv_nsec;
}

void cb_tls_cache_get(struct cb_tls_cache *c, const char *key, const char *cert_path,
                      const char *key_path, struct cb_tls_entry *out, bool *reused)
{
    size_t b = str_hash(key) & (c->n_buckets - 1);
    struct cache_entry *e;

    for (e = c->buckets[b]; e != NULL; e = e->next)
        if (strcmp(e->key, key) == 0)
            break;
    /* Store files are named by thumbprint and never rewritten: a hit is valid as is.
     * Central-store files can change in place, so their stat must still match. A
     * failure is tried again, so a fixed key is picked up by the next reload. */
    bool fixed_name = strchr(key, '/') == NULL;
    if (e != NULL && e->tls.ctx != NULL &&
        (fixed_name || (same_file(&e->cert_st, cert_path) && same_file(&e->key_st, key_path)))) {
        e->seen = true;
        *reused = true;
        goto out_copy;
    }
    *reused = false;
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL || (e->key = strdup(key)) == NULL) {
            free(e);
            out->ctx = NULL;
            out->error = strdup("out of memory");
            return;
        }
        e->next = c->buckets[b];
        c->buckets[b] = e;
        if (++c->n_entries > c->n_buckets * 2)
            grow(c);
    }
    cb_tls_entry_clear(&e->tls);
    stat(cert_path, &e->cert_st);
    if (key_path != NULL)
        stat(key_path, &e->key_st);
    load(key, cert_path, key_path, &e->tls);
    e->seen = true;
out_copy:
    out->ctx = e->tls.ctx;
    if (out->ctx != NULL)
        SSL_CTX_up_ref(out->ctx);
    out->error = e->tls.error ? strdup(e->tls.error) : NULL;
}

void cb_tls_apply_binding(SSL *ssl, SSL_CTX *ctx, const struct cb_snap_binding *b)
{
    SSL_set_SSL_CTX(ssl, ctx);
    SSL_set_ex_data(ssl, binding_index, (void *)b);
    if (b->flags & CB_OPT_DISABLETLS12)
        SSL_set_min_proto_version(ssl, TLS1_3_VERSION);
    if (b->flags & CB_OPT_DISABLETLS13)
        SSL_set_max_proto_version(ssl, TLS1_2_VERSION);
    /* disablelegacytls: the floor is TLS 1.2 already, for every binding. */
    if (b->flags & CB_OPT_ENABLESESSIONTICKET) {
        SSL_clear_options(ssl, SSL_OP_NO_TICKET);
        SSL_set_num_tickets(ssl, 2);
    }
    if (b->flags & CB_OPT_CLIENTCERTNEGOTIATION)
        SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, verify_any);
}
