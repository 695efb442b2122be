/*
 * ctx.c: one SSL_CTX for every connection; certificates loaded on first use,
 * cached across snapshots, and set on each connection, with the binding's
 * options, in the ClientHello callback.
 *
 * A certificate costs its parsed leaf, chain and key (a few KB) and nothing until
 * a client asks for it, so start-up and memory do not grow with an SSL_CTX per
 * certificate. What can be checked without parsing (the files exist, the key is
 * readable and not open to others) is checked when a snapshot is built, so a
 * broken binding is reported at once; the rest is checked on first use. In a large
 * store (cb_tls_cache_list_folder) only that the store's own files exist is checked
 * at build time, from one listing of each folder: 2 x 10^6 path lookups would be most
 * of a 10^6-certificate start-up.
 */
#include "tls/ctx.h"
#include "tls/staple.h"
#include "tls/cert.h"
#include "tls/challenge.h"
#include "tls/clientca.h"
#include "tls/ticket.h"
#include "util/lru.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

/* TLS 1.2: forward-secret AEAD suites only. TLS 1.3 suites are OpenSSL's defaults. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char groups[] = "X25519:P-256";

static int binding_index = -1; /* SSL ex_data slot: the binding a connection resolved to */

/* What tells a file rewritten in place from the one looked at before. */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
    bool ok; /* stat succeeded */
};

struct file_ids {
    struct file_id cert, key, ca;
};

static void file_id_take(const char *path, struct file_id *id)
{
    struct stat st;

    memset(id, 0, sizeof(*id));
    if (path == NULL || stat(path, &st) != 0)
        return;
    *id = (struct file_id){
        .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtim = st.st_mtim, .ok = true};
}

/* What only some entries have: a client CA, a second certificate, or files that can change
 * in place. In the entry's own allocation when it has any (cert_new), else not there: 48
 * bytes less at each of the 10^6 certificates of a hosting store, which have none. */
struct cert_extra {
    char *ca_path; /* the binding's clientca=FILE, or NULL */
    /* A binding's second certificate (certhash=T1,T2; key "T1,T2"), else NULL: the two are
     * parsed and served together, and neither is served when either cannot be. */
    char *cert_path2, *key_path2;
    /* The files as they were when looked at, for files that can change in place (central
     * store files, client CA files), owned; NULL for the store's own copies, which never
     * change: 8 bytes, not 432, for each of 10^6 certificates. */
    struct file_ids *ids;
    struct cb_cert_bundle *bundle2; /* with cert_path2 */
    struct cb_tls_ca *ca; /* with ca_path: parsed with the bundle, set whenever bundle is */
    /* With ca: the session id context (has_ca_sid), the digest set_sid made; without,
     * sid_of() makes it from the key. */
    unsigned char ca_sid[32];
    bool has_ca_sid;
};

struct cb_tls_cert {
    int refs;
    uint32_t handoffs;          /* connections passed to its owner worker in this window */
    struct cb_tls_cert *next;   /* in the cache's bucket */
    char *key;                  /* thumbprint, or the path of a central-store file */
    char *cert_path, *key_path; /* NULL when state_dir says where they are */
    struct cert_extra *x;       /* NULL: none of it (cert_new) */
    bool tried;                 /* loaded, or failed: bundle or error is set */
    bool strings_inline;        /* key and paths are in the entry's own allocation (cert_new) */
    uint8_t state_dir;          /* 0, or k + 1: the files are the store's own in state_dirs[k] */
    bool loading;               /* a cb_tls_load job is parsing it off the loop */
    bool seen;                  /* used by the snapshot being built */
    bool in_cache;
    bool pinned;                /* loaded at once (files that change in place): never dropped */
    struct cb_tls_cache *cache; /* while in_cache: its untried count follows this entry */
    struct cb_lru_node lru;     /* while parsed and in_cache (not pinned): in cache->lru */
    struct cb_cert_bundle *bundle;
    char *error;
    uint64_t handoff_window; /* when that window began (loop ms) */
};

static const char *ca_path_of(const struct cb_tls_cert *t)
{
    return t->x != NULL ? t->x->ca_path : NULL;
}

static const char *cert_path2_of(const struct cb_tls_cert *t)
{
    return t->x != NULL ? t->x->cert_path2 : NULL;
}

static const char *key_path2_of(const struct cb_tls_cert *t)
{
    return t->x != NULL ? t->x->key_path2 : NULL;
}

static struct cb_cert_bundle *bundle2_of(const struct cb_tls_cert *t)
{
    return t->x != NULL ? t->x->bundle2 : NULL;
}

static struct cb_tls_ca *ca_of(const struct cb_tls_cert *t)
{
    return t->x != NULL ? t->x->ca : NULL;
}

static const struct file_id *ids_of(const struct cb_tls_cert *t, size_t which)
{
    if (t->x == NULL || t->x->ids == NULL)
        return NULL;
    return which == 0 ? &t->x->ids->cert : which == 1 ? &t->x->ids->key : &t->x->ids->ca;
}

/* What a parse gave beside the bundle, and the context made from it, freed. */
static void extra_unload(struct cb_tls_cert *t)
{
    if (t->x == NULL)
        return;
    cb_cert_bundle_free(t->x->bundle2);
    t->x->bundle2 = NULL;
    cb_tls_ca_free(t->x->ca);
    t->x->ca = NULL;
    t->x->has_ca_sid = false;
}

/* The folders a build looks files up in (the store's certs/ and keys/), held open from
 * cb_tls_cache_mark to cb_tls_cache_sweep: at 10^6 certificates a build makes four lookups
 * a new certificate, and each would walk the whole path again without them. */
#define DIRS_HELD 2

/*
 * The state folders whose certs/THUMB.pem and keys/THUMB.key an entry may name by index
 * (state_dir) instead of keeping both paths: ~140 bytes less at each of 10^6 store
 * certificates. Process-wide and never freed: a process serves one state folder (a test
 * may open a few); when all are taken, entries keep their paths as before.
 */
#define STATE_DIRS_MAX 4
static char *state_dirs[STATE_DIRS_MAX];
static pthread_mutex_t state_dirs_lock = PTHREAD_MUTEX_INITIALIZER;

/* The index + 1 of state folder dir[0..n) (added if new), or 0 when there is no room. */
static uint8_t state_dir_of(const char *dir, size_t n)
{
    uint8_t k, found = 0;

    pthread_mutex_lock(&state_dirs_lock);
    for (k = 0; k < STATE_DIRS_MAX && state_dirs[k] != NULL && !found; k++)
        if (strncmp(state_dirs[k], dir, n) == 0 && state_dirs[k][n] == '\0')
            found = k + 1;
    if (!found && k < STATE_DIRS_MAX && (state_dirs[k] = strndup(dir, n)) != NULL)
        found = k + 1;
    pthread_mutex_unlock(&state_dirs_lock);
    return found;
}

/* Whether the files of certificate key are the store's own (D/certs/KEY.pem and
 * D/keys/KEY.key), and then D's index + 1; else 0. */
static uint8_t store_files(const char *key, const char *cert_path, const char *key_path)
{
    static const char certs[] = "/certs/", keys[] = "/keys/";
    size_t kn = strlen(key), cn = cert_path != NULL ? strlen(cert_path) : 0;
    size_t tail = sizeof(certs) - 1 + kn + 4;

    if (kn != CB_THUMB_LEN || strchr(key, '/') != NULL || key_path == NULL || cn <= tail)
        return 0;
    size_t dn = cn - tail;
    const char *c = cert_path + dn, *k = key_path + dn;
    if (memcmp(c, certs, sizeof(certs) - 1) != 0 || memcmp(c + 7, key, kn) != 0 ||
        strcmp(c + 7 + kn, ".pem") != 0 || strlen(key_path) != dn + sizeof(keys) - 1 + kn + 4 ||
        strncmp(key_path, cert_path, dn) != 0 || memcmp(k, keys, sizeof(keys) - 1) != 0 ||
        memcmp(k + 6, key, kn) != 0 || strcmp(k + 6 + kn, ".key") != 0)
        return 0;
    return state_dir_of(cert_path, dn);
}

/* t's certificate and key files: its own strings, or made into cbuf and kbuf (CB_PATH_MAX
 * + 1 bytes each) from its state folder. */
static void entry_paths(const struct cb_tls_cert *t, char *cbuf, char *kbuf, const char **cert,
                        const char **key)
{
    if (t->state_dir == 0) {
        *cert = t->cert_path;
        *key = t->key_path;
        return;
    }
    const char *dir = state_dirs[t->state_dir - 1];
    snprintf(cbuf, CB_PATH_MAX + 1, "%s/certs/%s.pem", dir, t->key);
    snprintf(kbuf, CB_PATH_MAX + 1, "%s/keys/%s.key", dir, t->key);
    *cert = cbuf;
    *key = kbuf;
}

/* A folder read whole for a build (cb_tls_cache_list_folder): the names it held, as 64-bit
 * hashes in an open-addressed table (0: empty). Two names with the same hash would make a
 * missing file look present: ~10^-7 at 10^6 names, and then it is found on first use. */
struct listing {
    char *dir; /* owned; NULL: none */
    uint64_t *slots;
    size_t mask;
};

struct cb_tls_cache {
    struct cb_tls_cert **buckets;
    size_t n_buckets, n_entries;
    size_t n_untried;  /* entries neither loaded nor failed yet */
    struct cb_lru lru; /* parsed entries, most recently served first */
    struct cb_tls_cache_stats stats;
    int dir_fd[DIRS_HELD]; /* O_PATH, -1 when none */
    char *dir_path[DIRS_HELD];
    unsigned dir_next;                /* the one replaced next */
    struct listing listed[DIRS_HELD]; /* within a build */
    bool building;                    /* between cb_tls_cache_mark and cb_tls_cache_sweep */
    uid_t uid, euid;                  /* this process's, read by cb_tls_cache_mark */
};

static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then mixed (splitmix64's finaliser) */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h ? h : 1;
}

static void listing_free(struct listing *l)
{
    free(l->dir);
    free(l->slots);
    memset(l, 0, sizeof(*l));
}

/* Adds hash h to l, doubling it when half full. CB_ENOMEM. */
static int listing_add(struct listing *l, size_t *count, uint64_t h)
{
    if (2 * (*count + 1) > l->mask + 1) {
        size_t n = (l->mask + 1) * 2;
        uint64_t *nv = calloc(n, sizeof(*nv));
        if (nv == NULL)
            return CB_ENOMEM;
        for (size_t i = 0; i <= l->mask; i++) {
            if (l->slots[i] == 0)
                continue;
            size_t k = l->slots[i] & (n - 1);
            while (nv[k] != 0)
                k = (k + 1) & (n - 1);
            nv[k] = l->slots[i];
        }
        free(l->slots);
        l->slots = nv;
        l->mask = n - 1;
    }
    size_t k = h & l->mask;
    while (l->slots[k] != 0 && l->slots[k] != h)
        k = (k + 1) & l->mask;
    if (l->slots[k] == 0)
        (*count)++;
    l->slots[k] = h;
    return 0;
}

int cb_tls_cache_list_folder(struct cb_tls_cache *c, const char *dir, size_t expect)
{
    struct listing l = {0};
    size_t count = 0;
    struct dirent *d;
    DIR *dp;
    int ret = 0, k;

    for (k = 0; k < DIRS_HELD && c->listed[k].dir != NULL; k++)
        if (strcmp(c->listed[k].dir, dir) == 0)
            return 0;
    if (k == DIRS_HELD)
        return CB_ENOMEM;
    if ((dp = opendir(dir)) == NULL)
        return CB_EIO;
    size_t size = 1024;
    while (size < 2 * expect) /* sized once for the names expected, not grown on the way */
        size *= 2;
    if ((l.dir = strdup(dir)) == NULL || (l.slots = calloc(size, sizeof(*l.slots))) == NULL) {
        ret = CB_ENOMEM;
        goto out_close;
    }
    l.mask = size - 1;
    errno = 0;
    while ((d = readdir(dp)) != NULL) {
        if ((ret = listing_add(&l, &count, name_hash(d->d_name, strlen(d->d_name)))) != 0)
            goto out_close;
        errno = 0;
    }
    if (errno != 0)
        ret = CB_EIO;
out_close:
    closedir(dp);
    if (ret != 0)
        listing_free(&l);
    else
        c->listed[k] = l;
    return ret;
}

/* Whether path lies in a folder listed for this build; if so, *present says whether the
 * listing named it. */
static bool listed(const struct cb_tls_cache *c, const char *path, bool *present)
{
    const char *slash = strrchr(path, '/');
    if (!c->building || slash == NULL)
        return false;
    size_t n = (size_t)(slash - path);
    for (int k = 0; k < DIRS_HELD && c->listed[k].dir != NULL; k++) {
        const struct listing *l = &c->listed[k];
        if (strncmp(l->dir, path, n) != 0 || l->dir[n] != '\0')
            continue;
        uint64_t h = name_hash(slash + 1, strlen(slash + 1));
        size_t i = h & l->mask;
        while (l->slots[i] != 0 && l->slots[i] != h)
            i = (i + 1) & l->mask;
        *present = l->slots[i] == h;
        return true;
    }
    return false;
}

static void dirs_close(struct cb_tls_cache *c)
{
    for (int i = 0; i < DIRS_HELD; i++) {
        if (c->dir_fd[i] >= 0)
            close(c->dir_fd[i]);
        c->dir_fd[i] = -1;
        free(c->dir_path[i]);
        c->dir_path[i] = NULL;
        listing_free(&c->listed[i]);
    }
}

/*
 * path's name and the folder fd (*dirfd) to look it up in through the *at() calls: a held
 * folder, or path itself and AT_FDCWD when its folder cannot be held. What the lookups
 * find is the same either way: a folder held open is the one the path names, for as
 * long as the build (a folder replaced meanwhile is seen at the next build).
 */
static const char *dir_at(struct cb_tls_cache *c, const char *path, int *dirfd)
{
    const char *slash = strrchr(path, '/');
    size_t n;

    *dirfd = AT_FDCWD;
    if (slash == NULL || slash == path || slash[1] == '\0')
        return path;
    n = (size_t)(slash - path);
    for (int i = 0; i < DIRS_HELD; i++)
        if (c->dir_path[i] != NULL && strncmp(c->dir_path[i], path, n) == 0 &&
            c->dir_path[i][n] == '\0') {
            *dirfd = c->dir_fd[i];
            return slash + 1;
        }
    char *dir = strndup(path, n);
    int fd = dir != NULL ? open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0) {
        free(dir);
        return path;
    }
    unsigned k = c->dir_next;
    c->dir_next = (k + 1) % DIRS_HELD;
    if (c->dir_fd[k] >= 0)
        close(c->dir_fd[k]);
    free(c->dir_path[k]);
    c->dir_fd[k] = fd;
    c->dir_path[k] = dir;
    *dirfd = fd;
    return slash + 1;
}

/* Within a build, whether this process owns the file st describes and its mode lets the
 * owner read it (as for the store's own key files): readable then, without asking the
 * kernel again. */
static bool owner_reads(const struct cb_tls_cache *c, const struct stat *st)
{
    return c->building && st->st_nlink > 0 && st->st_uid == c->uid && st->st_uid == c->euid &&
           (st->st_mode & S_IRUSR) != 0 && S_ISREG(st->st_mode);
}

static int stat_in(struct cb_tls_cache *c, const char *path, struct stat *st)
{
    int dirfd;
    const char *name = dir_at(c, path, &dirfd);
    return fstatat(dirfd, name, st, 0);
}

static int access_in(struct cb_tls_cache *c, const char *path)
{
    int dirfd;
    const char *name = dir_at(c, path, &dirfd);
    return faccessat(dirfd, name, R_OK, 0);
}

/* e leaves the cache: it no longer counts among the untried, nor in the budget. */
static void leave_cache(struct cb_tls_cache *c, struct cb_tls_cert *e)
{
    if (!e->tried)
        c->n_untried--;
    cb_lru_remove(&c->lru, &e->lru);
    e->in_cache = false;
    e->cache = NULL;
}

size_t cb_tls_cache_untried(const struct cb_tls_cache *c)
{
    return c != NULL ? c->n_untried : 0;
}

static size_t str_hash(const char *s)
{
    size_t h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

struct cb_tls_cache *cb_tls_cache_new(void)
{
    static _Atomic uint64_t last_id;
    struct cb_tls_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    cb_lru_init(&c->lru, 0);
    for (int i = 0; i < DIRS_HELD; i++)
        c->dir_fd[i] = -1;
    c->stats.id = atomic_fetch_add(&last_id, 1) + 1;
    c->n_buckets = 1024;
    c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void cb_tls_cache_set_budget(struct cb_tls_cache *c, size_t bytes)
{
    c->lru.limit = bytes;
}

void cb_tls_cache_get_stats(const struct cb_tls_cache *c, struct cb_tls_cache_stats *out)
{
    *out = c->stats;
    out->parsed = c->lru.count;
    out->bytes = c->lru.bytes;
    out->limit = c->lru.limit;
}

static void cert_unref(struct cb_tls_cert *t)
{
    if (t == NULL || --t->refs > 0)
        return;
    cb_cert_bundle_free(t->bundle);
    extra_unload(t);
    free(t->error);
    if (t->x != NULL)
        free(t->x->ids);
    if (!t->strings_inline) {
        free(t->key);
        free(t->cert_path);
        free(t->key_path);
    }
    free(t);
}

void cb_tls_entry_clear(struct cb_tls_entry *e)
{
    cert_unref(e->cert);
    e->cert = NULL;
}

void cb_tls_cache_free(struct cb_tls_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct cb_tls_cert *e = c->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            leave_cache(c, e);
            cert_unref(e);
        }
    }
    dirs_close(c);
    free(c->buckets);
    free(c);
}

void cb_tls_cache_mark(struct cb_tls_cache *c)
{
    c->building = true;
    c->uid = getuid();
    c->euid = geteuid();
    for (size_t i = 0; i < c->n_buckets; i++)
        for (struct cb_tls_cert *e = c->buckets[i]; e != NULL; e = e->next)
            e->seen = false;
}

void cb_tls_cache_sweep(struct cb_tls_cache *c)
{
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct cb_tls_cert **pp = &c->buckets[i];
        while (*pp != NULL) {
            struct cb_tls_cert *e = *pp;
            if (e->seen) {
                pp = &e->next;
                continue;
            }
            *pp = e->next;
            leave_cache(c, e);
            cert_unref(e);
            c->n_entries--;
        }
    }
    c->building = false;
    dirs_close(c);
}

/* The table made n buckets large (a power of two, more than it has). */
static void rehash(struct cb_tls_cache *c, size_t n)
{
    struct cb_tls_cert **nb = calloc(n, sizeof(*nb));
    if (nb == NULL)
        return; /* keep the old table: slower, still correct */
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct cb_tls_cert *e = c->buckets[i], *next;
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

static void grow(struct cb_tls_cache *c)
{
    rehash(c, c->n_buckets * 4);
}

void cb_tls_cache_reserve(struct cb_tls_cache *c, size_t n)
{
    size_t want = c->n_buckets;
    while (want < n) /* a new entry's lookup walks its bucket: about one entry each */
        want *= 2;
    if (want > c->n_buckets)
        rehash(c, want);
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    const struct cb_snap_binding *b = SSL_get_ex_data(ssl, binding_index);
    (void)arg;
    /* h2 only where a backend can take it: a binding without one answers in HTTP/1.1.
     * acme-tls/1 only on a connection served a TLS-ALPN-01 challenge (tls/challenge.h). */
    bool h2 = b != NULL && b->backend != NULL && !(b->flags & CB_OPT_DISABLEHTTP2);

    switch (cb_tls_alpn_choose(cb_tls_is_challenge(ssl), h2, in, inlen, out, outlen)) {
    case CB_ALPN_SELECTED:
        return SSL_TLSEXT_ERR_OK;
    case CB_ALPN_FATAL:
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
    case CB_ALPN_NONE:
        break;
    }
    return SSL_TLSEXT_ERR_NOACK;
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
    if (ctx != NULL) {
        SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
        cb_tls_staple_install(ctx);
    }
    return ctx;
}

/* t has been tried (loaded, or found broken): one fewer untried in its cache. */
static void mark_tried(struct cb_tls_cert *t)
{
    if (!t->tried && t->in_cache)
        t->cache->n_untried--;
    t->tried = true;
}

/* t's bundle goes: t is untried again, parsed anew on its next use. Connections served it
 * keep their own references to its leaf, chain and key. */
static void evict(struct cb_tls_cache *c, struct cb_tls_cert *t)
{
    cb_lru_remove(&c->lru, &t->lru);
    cb_cert_bundle_free(t->bundle);
    t->bundle = NULL;
    extra_unload(t); /* the second certificate and client CA: parsed again with the first */
    t->tried = false;
    c->n_untried++;
    c->stats.evictions++;
}

/* t was just parsed: it is charged to its cache's budget, and the least recently served
 * are dropped until the cache is within it again (never t itself). */
static void admit(struct cb_tls_cert *t)
{
    struct cb_lru_node *v;

    if (!t->in_cache || t->pinned || t->bundle == NULL || cb_lru_linked(&t->lru))
        return;
    /* a pair (certhash=T1,T2) is charged for both of its certificates */
    cb_lru_insert(&t->cache->lru, &t->lru,
                  cb_cert_bundle_mem(t->bundle) +
                      (bundle2_of(t) != NULL ? cb_cert_bundle_mem(bundle2_of(t)) : 0));
    while ((v = cb_lru_victim(&t->cache->lru, &t->lru)) != NULL)
        evict(t->cache, (struct cb_tls_cert *)((char *)v - offsetof(struct cb_tls_cert, lru)));
}

static void fail(struct cb_tls_cert *t, const struct cb_err *err)
{
    mark_tried(t);
    t->error = strdup(err->msg[0] ? err->msg : "cannot load the certificate");
}

/* What is known without parsing: the files are there, readable, and the key is safe. In
 * a folder listed for the build, only that they are there (the rest on first use). */
static void precheck_files(struct cb_tls_cert *t, const char *cert_path, const char *key_path)
{
    struct cb_err err = {0};
    const char *kp = key_path ? key_path : cert_path;
    struct stat kst = {0};
    bool cert_there = false, key_there = false;

    if (t->tried)
        return;
    if (listed(t->cache, cert_path, &cert_there) && listed(t->cache, kp, &key_there)) {
        if (!cert_there)
            cb_err_set(&err, CB_EIO, "cannot read %s: %s", cert_path, strerror(ENOENT));
        else if (!key_there)
            cb_err_set(&err, CB_EKEY, "cannot read the key %s: %s", kp, strerror(ENOENT));
        else if (ca_path_of(t) != NULL && access(ca_path_of(t), R_OK) != 0)
            cb_err_set(&err, CB_EIO, "cannot read its clientca=%s: %s", ca_path_of(t),
                       strerror(errno));
        if (err.msg[0])
            fail(t, &err);
        return;
    }
    if (access_in(t->cache, cert_path) != 0) {
        cb_err_set(&err, CB_EIO, "cannot read %s: %s", cert_path, strerror(errno));
        fail(t, &err);
    } else if (stat_in(t->cache, kp, &kst) == 0 && cb_key_mode_safe(kp, kst.st_mode, &err) != 0) {
        fail(t, &err);
    } else if (!owner_reads(t->cache, &kst) && access_in(t->cache, kp) != 0) {
        cb_err_set(&err, CB_EKEY, "cannot read the key %s: %s", kp, strerror(errno));
        fail(t, &err);
    } else if (ca_path_of(t) != NULL && access(ca_path_of(t), R_OK) != 0) {
        cb_err_set(&err, CB_EIO, "cannot read its clientca=%s: %s", ca_path_of(t), strerror(errno));
        fail(t, &err);
    }
}

/* The session id context of t, once parsed: with a client CA, what the sessions made on it
 * were verified against (its certificate or pair and the CA file's bytes), so that a session
 * never resumes where its client certificate would not have been accepted; else the
 * certificate alone (the last 32 characters of its key), or for a pair the first 16 digits of
 * each thumbprint (unlike either alone). Only the first is kept (set_sid); the others are
 * made from the key when a connection needs them. Into buf (32 bytes); its length. */
static unsigned sid_of(const struct cb_tls_cert *t, unsigned char *buf)
{
    size_t n = strlen(t->key);
    unsigned len;

    if (t->x != NULL && t->x->has_ca_sid) {
        memcpy(buf, t->x->ca_sid, 32);
        return 32;
    }
    if (bundle2_of(t) != NULL && n == 2 * CB_THUMB_LEN + 1) {
        memcpy(buf, t->key, 16);
        memcpy(buf + 16, t->key + CB_THUMB_LEN + 1, 16);
        len = 32;
    } else {
        len = (unsigned)(n > 32 ? 32 : n);
        memcpy(buf, t->key + n - len, len);
    }
    if (ca_of(t) != NULL && len > 0) /* no digest: a context no session of another entry has */
        buf[0] ^= 0x80;
    return len;
}

/* t was just parsed: with a client CA, its session id context (sid_of) is the digest of its
 * key and the CA file's bytes, kept in its extra part. Without a digest (no memory for
 * OpenSSL's context), none is kept, and sid_of makes the fallback. */
static void set_sid(struct cb_tls_cert *t)
{
    struct cert_extra *x = t->x;
    EVP_MD_CTX *md;
    unsigned len = 0;

    if (x == NULL)
        return;
    x->has_ca_sid = false;
    if (x->ca == NULL || (md = EVP_MD_CTX_new()) == NULL) {
        ERR_clear_error();
        return;
    }
    bool ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(md, t->key, strlen(t->key) + 1) == 1 &&
              EVP_DigestUpdate(md, cb_tls_ca_digest(x->ca), 32) == 1 &&
              EVP_DigestFinal_ex(md, x->ca_sid, &len) == 1;
    EVP_MD_CTX_free(md);
    x->has_ca_sid = ok && len == sizeof(x->ca_sid);
    if (!x->has_ca_sid)
        ERR_clear_error();
}

static void precheck(struct cb_tls_cert *t)
{
    char cbuf[CB_PATH_MAX + 1], kbuf[CB_PATH_MAX + 1];
    const char *cert_path, *key_path;

    entry_paths(t, cbuf, kbuf, &cert_path, &key_path);
    precheck_files(t, cert_path, key_path);
    if (cert_path2_of(t) != NULL)
        precheck_files(t, cert_path2_of(t), key_path2_of(t));
}

/* Parses the files of certificate `key` (thumbprint or ccs path): *bundle on success,
 * else err. Touches nothing shared: runs on the loop or on a pool thread alike. */
static int parse_files(const char *key, const char *cert_path, const char *key_path,
                       const char *ca_path, struct cb_cert_bundle **out, struct cb_tls_ca **ca,
                       struct cb_err *err)
{
    struct cb_cert_bundle *bundle = NULL;

    *ca = NULL;
    if (cb_key_file_safe(key_path ? key_path : cert_path, err) != 0 ||
        cb_cert_bundle_load(cert_path, key_path, NULL, &bundle, err) != 0)
        goto out_error;
    /* A linked pair rewritten since the store recorded it is not this certificate: serve
     * nothing from it until the watcher has moved the bindings to what it now holds. */
    char thumb[CB_THUMB_LEN + 1] = "(unreadable)";
    if (strchr(key, '/') == NULL &&
        (cb_cert_bundle_thumbprint(bundle, thumb) != 0 || strcmp(thumb, key) != 0)) {
        cb_err_set(err, CB_EKEY,
                   "the files of certificate %s now hold certificate %s; waiting for the store "
                   "to follow them",
                   key, thumb);
        goto out_error;
    }
    /* Fails closed: a binding whose CA file cannot be read serves nobody, rather than
     * serving without verifying. */
    if (ca_path != NULL && cb_tls_ca_load(ca_path, ca, NULL, err) != 0)
        goto out_error;
    *out = bundle;
    return 0;
out_error:
    cb_cert_bundle_free(bundle);
    ERR_clear_error();
    return CB_EKEY;
}

/*
 * The files of a binding's two certificates (key "T1,T2"): both parsed, one ECDSA and
 * one RSA (the store's rule; a store edited by other means may break it), or neither
 * served. *out1 and *out2 on success, else err names the certificate at fault.
 */
static int parse_pair(const char *key, const char *cert_path, const char *key_path,
                      const char *cert_path2, const char *key_path2, struct cb_cert_bundle **out1,
                      struct cb_cert_bundle **out2, struct cb_err *err)
{
    char k1[CB_THUMB_LEN + 1] = "", k2[CB_THUMB_LEN + 1] = "";
    struct cb_cert_bundle *b1 = NULL, *b2 = NULL;
    const char *comma = strchr(key, ',');

    if (comma != NULL && comma - key == CB_THUMB_LEN && strlen(comma + 1) == CB_THUMB_LEN) {
        memcpy(k1, key, CB_THUMB_LEN);
        memcpy(k2, comma + 1, CB_THUMB_LEN);
    }
    struct cb_tls_ca *no_ca = NULL;
    if (parse_files(k1, cert_path, key_path, NULL, &b1, &no_ca, err) != 0 ||
        parse_files(k2, cert_path2, key_path2, NULL, &b2, &no_ca, err) != 0)
        goto out_free;
    enum cb_key_family f1 = cb_cert_bundle_key_family(b1), f2 = cb_cert_bundle_key_family(b2);
    if (!((f1 == CB_KEYS_ECDSA && f2 == CB_KEYS_RSA) ||
          (f1 == CB_KEYS_RSA && f2 == CB_KEYS_ECDSA))) {
        cb_err_set(err, CB_EKEY,
                   "certificates %s and %s are not one ECDSA and one RSA certificate (%s and %s "
                   "keys); bind one ECDSA and one RSA certificate",
                   k1, k2, cb_key_family_name(f1), cb_key_family_name(f2));
        goto out_free;
    }
    *out1 = b1;
    *out2 = b2;
    return 0;
out_free:
    cb_cert_bundle_free(b1);
    cb_cert_bundle_free(b2);
    return CB_EKEY;
}

/* One certificate's files, or a binding's two, and the binding's client CA file (ca_path,
 * may be NULL): what t (or a load job) parses. All or nothing: *out1, *out2 (with
 * cert_path2) and *ca (with ca_path) on success. */
static int parse_entry(const char *key, const char *cert_path, const char *key_path,
                       const char *cert_path2, const char *key_path2, const char *ca_path,
                       struct cb_cert_bundle **out1, struct cb_cert_bundle **out2,
                       struct cb_tls_ca **ca, struct cb_err *err)
{
    *out2 = NULL;
    *ca = NULL;
    if (cert_path2 == NULL)
        return parse_files(key, cert_path, key_path, ca_path, out1, ca, err);
    if (parse_pair(key, cert_path, key_path, cert_path2, key_path2, out1, out2, err) != 0)
        return CB_EKEY;
    /* Fails closed, as for one certificate. */
    if (ca_path != NULL && cb_tls_ca_load(ca_path, ca, NULL, err) != 0) {
        cb_cert_bundle_free(*out1);
        cb_cert_bundle_free(*out2);
        *out1 = *out2 = NULL;
        ERR_clear_error();
        return CB_EKEY;
    }
    return 0;
}

static void load(struct cb_tls_cert *t)
{
    struct cb_err err = {0};
    char cbuf[CB_PATH_MAX + 1], kbuf[CB_PATH_MAX + 1];
    const char *cert_path, *key_path;

    mark_tried(t);
    entry_paths(t, cbuf, kbuf, &cert_path, &key_path);
    struct cb_cert_bundle *bundle2 = NULL;
    struct cb_tls_ca *ca = NULL;
    if (parse_entry(t->key, cert_path, key_path, cert_path2_of(t), key_path2_of(t), ca_path_of(t),
                    &t->bundle, &bundle2, &ca, &err) != 0) {
        fail(t, &err);
        return;
    }
    if (t->x != NULL) { /* else there is no second certificate or CA file to parse */
        t->x->bundle2 = bundle2;
        t->x->ca = ca;
    }
    set_sid(t);
    admit(t);
}

struct cb_tls_load {
    struct cb_tls_cert *cert; /* owned reference */
    char *key, *cert_path, *key_path, *ca_path;
    char *cert_path2, *key_path2;   /* a binding's second certificate, or NULL */
    struct cb_cert_bundle *bundle;  /* the result: owned until finish */
    struct cb_cert_bundle *bundle2; /* with cert_path2 */
    struct cb_tls_ca *ca;           /* with it, when ca_path: owned until finish */
    struct cb_err err;
    bool failed;
};

bool cb_tls_entry_untried(const struct cb_tls_entry *e)
{
    return e->cert != NULL && !e->cert->tried;
}

bool cb_tls_entry_loading(const struct cb_tls_entry *e)
{
    return e->cert != NULL && e->cert->loading;
}

struct cb_tls_load *cb_tls_load_begin(const struct cb_tls_entry *e)
{
    struct cb_tls_cert *t = e->cert;
    struct cb_tls_load *j;
    char cbuf[CB_PATH_MAX + 1], kbuf[CB_PATH_MAX + 1];
    const char *cert_path, *key_path;

    if (t == NULL || t->tried || t->loading || (j = calloc(1, sizeof(*j))) == NULL)
        return NULL;
    entry_paths(t, cbuf, kbuf, &cert_path, &key_path);
    j->key = strdup(t->key);
    j->cert_path = strdup(cert_path);
    j->key_path = key_path ? strdup(key_path) : NULL;
    j->ca_path = ca_path_of(t) ? strdup(ca_path_of(t)) : NULL;
    j->cert_path2 = cert_path2_of(t) ? strdup(cert_path2_of(t)) : NULL;
    j->key_path2 = key_path2_of(t) ? strdup(key_path2_of(t)) : NULL;
    if (j->key == NULL || j->cert_path == NULL || (key_path != NULL && j->key_path == NULL) ||
        (ca_path_of(t) != NULL && j->ca_path == NULL) ||
        (cert_path2_of(t) != NULL && j->cert_path2 == NULL) ||
        (key_path2_of(t) != NULL && j->key_path2 == NULL)) {
        free(j->key);
        free(j->cert_path);
        free(j->key_path);
        free(j->ca_path);
        free(j->cert_path2);
        free(j->key_path2);
        free(j);
        return NULL;
    }
    t->refs++;
    t->loading = true;
    j->cert = t;
    return j;
}

void cb_tls_load_run(struct cb_tls_load *j)
{
    j->failed = parse_entry(j->key, j->cert_path, j->key_path, j->cert_path2, j->key_path2,
                            j->ca_path, &j->bundle, &j->bundle2, &j->ca, &j->err) != 0;
}

static void load_free(struct cb_tls_load *j)
{
    cb_cert_bundle_free(j->bundle);
    cb_tls_ca_free(j->ca);
    cb_cert_bundle_free(j->bundle2);
    cert_unref(j->cert);
    free(j->key);
    free(j->cert_path);
    free(j->key_path);
    free(j->ca_path);
    free(j->cert_path2);
    free(j->key_path2);
    free(j);
}

void cb_tls_load_cancel(struct cb_tls_load *j)
{
    j->cert->loading = false;
    load_free(j);
}

void cb_tls_load_finish(struct cb_tls_load *j)
{
    struct cb_tls_cert *t = j->cert;

    t->loading = false;
    if (!t->tried) { /* else a synchronous load got there first: keep what it found */
        mark_tried(t);
        if (j->failed) {
            fail(t, &j->err);
        } else {
            t->bundle = j->bundle;
            j->bundle = NULL;
            if (t->x != NULL) { /* else the job parsed neither: it had no paths for them */
                t->x->bundle2 = j->bundle2;
                j->bundle2 = NULL;
                t->x->ca = j->ca;
                j->ca = NULL;
            }
            set_sid(t);
            admit(t);
        }
    }
    load_free(j);
}

const char *cb_tls_entry_load(const struct cb_tls_entry *e, bool *loaded_now)
{
    struct cb_tls_cert *t = e->cert;
    if (loaded_now != NULL)
        *loaded_now = false;
    if (t == NULL)
        return "out of memory";
    if (!t->tried) {
        load(t);
        if (loaded_now != NULL)
            *loaded_now = true;
    } else if (t->in_cache && cb_lru_linked(&t->lru)) {
        cb_lru_touch(&t->cache->lru, &t->lru);
    }
    return t->bundle != NULL ? NULL : t->error;
}

const char *cb_tls_entry_error(const struct cb_tls_entry *e)
{
    if (e->cert == NULL)
        return "out of memory";
    return e->cert->tried && e->cert->bundle == NULL ? e->cert->error : NULL;
}

void cb_tls_entry_copy(struct cb_tls_entry *dst, const struct cb_tls_entry *src)
{
    dst->cert = src->cert;
    if (dst->cert != NULL)
        dst->cert->refs++;
}

void cb_tls_entry_set_error(struct cb_tls_entry *e, const char *msg)
{
    struct cb_tls_cert *t = calloc(1, sizeof(*t));
    e->cert = NULL;
    if (t == NULL || (t->key = strdup("-")) == NULL || (t->error = strdup(msg)) == NULL) {
        if (t != NULL)
            free(t->key);
        free(t);
        return;
    }
    t->refs = 1;
    t->tried = true;
    e->cert = t;
}

/* Whether path is still the file a described (a NULL: its entry kept no description,
 * which is never the same). */
/* The bytes of str (NULL: none) at *at, moved past them; the copy, or NULL. */
static char *put_str(char **at, const char *str)
{
    if (str == NULL)
        return NULL;
    size_t n = strlen(str) + 1;
    char *p = memcpy(*at, str, n);
    *at += n;
    return p;
}

/* A new entry (owned, freed by cert_unref) with copies of its strings in the same
 * allocation: one block instead of four for each of 10^6 certificates. */
static struct cb_tls_cert *cert_new(const char *key, const char *cert_path, const char *key_path,
                                    const char *ca_path, const char *cert_path2,
                                    const char *key_path2)
{
    /* The store's own files (one certificate): named by the state folder's index. */
    uint8_t dir = cert_path2 == NULL ? store_files(key, cert_path, key_path) : 0;
    if (dir != 0)
        cert_path = key_path = NULL;
    const char *strs[] = {key, cert_path, key_path, ca_path, cert_path2, key_path2};
    /* Files that can change in place (a central-store file: its key is its path, and a
     * client CA file) are described in the extra part too. */
    bool extra =
        ca_path != NULL || cert_path2 != NULL || key_path2 != NULL || strchr(key, '/') != NULL;
    size_t bytes = sizeof(struct cb_tls_cert) + (extra ? sizeof(struct cert_extra) : 0);
    struct cb_tls_cert *e;

    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        bytes += strs[i] != NULL ? strlen(strs[i]) + 1 : 0;
    if ((e = calloc(1, bytes)) == NULL)
        return NULL;
    char *at = (char *)(e + 1);
    if (extra) {
        e->x = (struct cert_extra *)at;
        at += sizeof(struct cert_extra);
    }
    e->strings_inline = true;
    e->state_dir = dir;
    e->key = put_str(&at, key);
    e->cert_path = put_str(&at, cert_path);
    e->key_path = put_str(&at, key_path);
    if (extra) {
        e->x->ca_path = put_str(&at, ca_path);
        e->x->cert_path2 = put_str(&at, cert_path2);
        e->x->key_path2 = put_str(&at, key_path2);
    }
    return e;
}

static bool same_file(const struct file_id *a, const char *path)
{
    struct stat st;
    if (path == NULL)
        return true;
    if (a == NULL || !a->ok || stat(path, &st) != 0)
        return false;
    /* a stat that failed then matches nothing now: as before, a file that was not there */
    return st.st_ino == a->ino && st.st_dev == a->dev && st.st_size == a->size &&
           st.st_mtim.tv_sec == a->mtim.tv_sec && st.st_mtim.tv_nsec == a->mtim.tv_nsec;
}

/* Whether entry e is of client CA file ca_path (NULL: none). */
static bool same_ca(const struct cb_tls_cert *e, const char *ca_path)
{
    const char *mine = ca_path_of(e);
    return mine == NULL ? ca_path == NULL : ca_path != NULL && strcmp(mine, ca_path) == 0;
}

/* cb_tls_cache_get and _get_pair: cert_path2 NULL for one certificate. */
static void cache_get(struct cb_tls_cache *c, const char *key, const char *cert_path,
                      const char *key_path, const char *cert_path2, const char *key_path2,
                      const char *ca_path, bool eager, struct cb_tls_entry *out, bool *reused)
{
    size_t b = str_hash(key) & (c->n_buckets - 1);
    struct cb_tls_cert **pp, *e;

    out->cert = NULL;
    for (pp = &c->buckets[b]; (e = *pp) != NULL; pp = &e->next)
        if (strcmp(e->key, key) == 0 && same_ca(e, ca_path))
            break;
    /* Store files are named by thumbprint and never rewritten: a hit is valid as is.
     * Central-store files can change in place, so their stat must still match. A
     * failure is tried again, so a fixed key is picked up by the next snapshot. */
    bool fixed_name = strchr(key, '/') == NULL;
    /* A client CA file can be edited in place too (a CA added to it): same test. */
    if (e != NULL && (!e->tried || e->bundle != NULL) &&
        (fixed_name || (same_file(ids_of(e, 0), cert_path) && same_file(ids_of(e, 1), key_path))) &&
        same_file(ids_of(e, 2), ca_path)) {
        e->seen = true;
        *reused = true;
        e->refs++;
        out->cert = e;
        return;
    }
    *reused = false;
    if (e != NULL) { /* replaced: connections and snapshots still using it keep it */
        *pp = e->next;
        leave_cache(c, e);
        c->n_entries--;
        cert_unref(e);
    }
    if ((e = cert_new(key, cert_path, key_path, ca_path, cert_path2, key_path2)) == NULL)
        return;
    e->refs = 2; /* the cache's and out's */
    e->in_cache = true;
    e->pinned = eager;
    e->cache = c;
    c->n_untried++;
    e->seen = true;
    /* Only files that can change in place are described (NULL on no memory: the entry is
     * then never taken for the same files again, so parsed anew at the next build). */
    if ((strchr(key, '/') != NULL || ca_path != NULL) && e->x != NULL &&
        (e->x->ids = calloc(1, sizeof(*e->x->ids))) != NULL) {
        if (strchr(key, '/') != NULL) {
            file_id_take(cert_path, &e->x->ids->cert);
            file_id_take(key_path, &e->x->ids->key);
        }
        file_id_take(ca_path, &e->x->ids->ca);
    }
    precheck(e);
    if (eager && !e->tried)
        load(e);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    if (++c->n_entries > c->n_buckets * 2)
        grow(c);
    out->cert = e;
}

void cb_tls_cache_get(struct cb_tls_cache *c, const char *key, const char *cert_path,
                      const char *key_path, const char *ca_path, bool eager,
                      struct cb_tls_entry *out, bool *reused)
{
    cache_get(c, key, cert_path, key_path, NULL, NULL, ca_path, eager, out, reused);
    if (!c->building) /* a derivation: folders are held only within a build */
        dirs_close(c);
}

void cb_tls_cache_get_pair(struct cb_tls_cache *c, const char *key, const char *cert_path,
                           const char *key_path, const char *cert_path2, const char *key_path2,
                           const char *ca_path, bool eager, struct cb_tls_entry *out, bool *reused)
{
    cache_get(c, key, cert_path, key_path, cert_path2, key_path2, ca_path, eager, out, reused);
    if (!c->building)
        dirs_close(c);
}

int cb_tls_entry_worker(const struct cb_tls_entry *e, int self, int workers, uint64_t now_ms)
{
    struct cb_tls_cert *t = e->cert;
    if (t == NULL || t->tried || workers <= 1)
        return self; /* parsed here already, or known broken: fail or serve here */
    uint64_t h = 1469598103934665603ull; /* FNV-1a: the same owner in every worker */
    for (const char *p = t->key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    int owner = (int)((h ^ (h >> 32)) % (uint64_t)workers);
    if (owner == self)
        return self;
    /* A certificate this worker keeps being asked for is worth its own copy: parse it
     * here too rather than funnel all its handshakes through one worker. */
    if (now_ms - t->handoff_window > CB_TLS_HOT_WINDOW_MS) {
        t->handoff_window = now_ms;
        t->handoffs = 0;
    }
    if (t->handoffs >= CB_TLS_HOT_HANDOFFS)
        return self;
    t->handoffs++;
    return owner;
}

int cb_tls_apply_binding(SSL *ssl, const struct cb_tls_entry *e, const struct cb_snap_binding *b)
{
    const struct cb_tls_cert *t = e->cert;
    /* Two certificates (certhash=T1,T2) fill the SSL's ECDSA and RSA slots; OpenSSL then
     * signs with the one the client's signature algorithms (and, in TLS 1.2, cipher
     * suites) accept, ECDSA first by the server's preference. */
    if (t == NULL || t->bundle == NULL || cb_cert_bundle_use_ssl(t->bundle, ssl) != 0 ||
        (bundle2_of(t) != NULL && cb_cert_bundle_use_ssl(bundle2_of(t), ssl) != 0)) {
        ERR_clear_error();
        return CB_ETLS;
    }
    /* Sessions resume only on the certificate (or pair, and client CA) that made them. */
    unsigned char sid[32];
    unsigned sid_len = sid_of(t, sid);
    SSL_set_session_id_context(ssl, sid, sid_len);
    SSL_set_ex_data(ssl, binding_index, (void *)b);
    if (b->flags & CB_OPT_DISABLETLS12)
        SSL_set_min_proto_version(ssl, TLS1_3_VERSION);
    if (b->flags & CB_OPT_DISABLETLS13)
        SSL_set_max_proto_version(ssl, TLS1_2_VERSION);
    /* disablelegacytls: the floor is TLS 1.2 already, for every binding. */
    /* Tickets only under the store's shared keys: a worker that has none yet issues none. */
    if ((b->flags & CB_OPT_ENABLESESSIONTICKET) && cb_tls_tickets_ready(ssl)) {
        SSL_clear_options(ssl, SSL_OP_NO_TICKET);
        SSL_set_num_tickets(ssl, 2);
    }
    /* clientca=FILE: a certificate is required and verified (the file was parsed with the
     * certificate, off the loop). clientcertnegotiation=enable alone: one is asked for and
     * passed on as presented, unverified. */
    if (ca_of(t) != NULL) {
        if (cb_tls_ca_apply(ssl, ca_of(t)) != 0)
            return CB_ETLS;
    } else if (b->flags & CB_OPT_CLIENTCERTNEGOTIATION) {
        SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, verify_any);
    }
    return 0;
}
