/* runtime_build.c: from the store to what a worker serves. */
#include "daemon/runtime_build.h"
#include "daemon/staples_build.h"
#include "binding/hostport.h"
#include "store/challenge.h"
#include "store/tickets.h"
#include "tls/cert.h"
#include "tls/challenge.h"
#include "tls/ticket.h"
#include "util/log.h"
#include "util/strindex.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cert_ref {
    char thumb[CB_THUMB_LEN + 1];
    char *cert_path, *key_path;
};

/* The paths' bytes, in blocks of CHUNK_BYTES (each its own mapping, given back whole when
 * the build ends: 10^6 certificates' paths are ~200 MB that small allocations would leave
 * scattered in the worker's heap). */
#define CHUNK_BYTES ((size_t)1 << 20)

struct chunk {
    struct chunk *next;
    size_t used, size;
    char bytes[];
};

/* The store's certificates, in the order read, with a hash index by thumbprint (open
 * addressing, at most half full): one probe a binding, where sorting 10^6 of them and
 * searching took ~20 cache misses a binding. */
struct certs {
    struct cert_ref *v;
    size_t n, cap;
    struct cb_strindex by_thumb;                /* filled once every certificate is read */
    struct chunk *chunks;                       /* the newest first */
    const struct cb_runtime_progress *progress; /* or NULL */
};

/* A copy of str in cs's blocks, or NULL (out of memory). */
static char *chunk_strdup(struct certs *cs, const char *str)
{
    size_t n = strlen(str) + 1;
    struct chunk *c = cs->chunks;

    if (c == NULL || c->size - c->used < n) {
        size_t size = n > CHUNK_BYTES ? n : CHUNK_BYTES;
        if ((c = malloc(sizeof(*c) + size)) == NULL)
            return NULL;
        c->used = 0;
        c->size = size;
        c->next = cs->chunks;
        cs->chunks = c;
    }
    char *p = c->bytes + c->used;
    memcpy(p, str, n);
    c->used += n;
    return p;
}

static const char *ref_thumb(const void *ctx, uint32_t i)
{
    return ((const struct certs *)ctx)->v[i].thumb;
}

/* The index of every certificate read, at most half full (once, when all are read). A
 * thumbprint is the table's key, so none is there twice. CB_ENOMEM. */
static int index_build(struct certs *cs)
{
    uint32_t found;

    if (cb_strindex_init(&cs->by_thumb, cs->n, ref_thumb, cs) != 0)
        return CB_ENOMEM;
    for (size_t i = 0; i < cs->n; i++)
        if (cb_strindex_add_unique(&cs->by_thumb, (uint32_t)i, &found) != 0)
            return CB_ENOMEM;
    return 0;
}

static int collect(const char *thumb, const char *cert_path, const char *key_path, void *arg)
{
    struct certs *cs = arg;
    size_t tlen = strlen(thumb);
    if (cs->n >= UINT32_MAX - 1)
        return CB_ENOMEM;
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? cs->cap * 2 : 64;
        struct cert_ref *nv = realloc(cs->v, cap * sizeof(*nv));
        if (nv == NULL)
            return CB_ENOMEM;
        cs->v = nv;
        cs->cap = cap;
    }
    if (cs->progress != NULL && cs->n % CB_RUNTIME_PROGRESS_EVERY == CB_RUNTIME_PROGRESS_EVERY - 1)
        cs->progress->fn(cs->progress->arg, 0, 0);
    struct cert_ref *r = &cs->v[cs->n];
    /* Longer than a thumbprint (a row damaged or edited by other means): no binding can
     * name it, and cut to 40 it could pass for another's. A binding that names the
     * missing certificate is reported as unknown, as for any certificate not stored. */
    if (tlen >= sizeof(r->thumb))
        return 0;
    memcpy(r->thumb, thumb, tlen);
    r->thumb[tlen] = '\0';
    r->cert_path = chunk_strdup(cs, cert_path);
    r->key_path = chunk_strdup(cs, key_path);
    if (r->cert_path == NULL || r->key_path == NULL)
        return CB_ENOMEM;
    cs->n++;
    return 0;
}

static const struct cert_ref *find_ref(const struct certs *cs, const char *thumb)
{
    uint32_t at = cb_strindex_find(&cs->by_thumb, thumb);
    return at != UINT32_MAX ? &cs->v[at] : NULL;
}

static void certs_free(struct certs *cs)
{
    for (struct chunk *c = cs->chunks, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(cs->v);
    cb_strindex_free(&cs->by_thumb);
}

/* Whether backend text names a host (resolving it asks DNS) rather than an address. */
static bool backend_is_name(const char *text)
{
    struct cb_hostport hp;
    return cb_hostport_parse(text, CB_HOSTPORT_NAME, &hp, NULL, NULL) == 0 && hp.family == 0;
}

/* Backend HOST:PORT to an address. Names are resolved here, once per snapshot. */
static void resolve_backend(const char *text, struct cb_backend *be)
{
    struct cb_hostport hp;
    char port[8];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;

    be->addr_len = 0;
    be->error = NULL;
    if (cb_hostport_parse(text, CB_HOSTPORT_NAME, &hp, NULL, NULL) != 0) {
        be->error = strdup("not HOST:PORT");
        return;
    }
    snprintf(port, sizeof(port), "%u", (unsigned)hp.port);
    int rc = getaddrinfo(hp.host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        be->error = strdup(gai_strerror(rc));
        return;
    }
    if (res->ai_addrlen > sizeof(be->addr)) {
        be->error = strdup("address family not supported");
        freeaddrinfo(res);
        return;
    }
    memcpy(&be->addr, res->ai_addr, res->ai_addrlen);
    be->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
}

static void missing_cert(const char *thumb, struct cb_tls_entry *out)
{
    char msg[200];
    snprintf(msg, sizeof(msg),
             "certificate %s is not in the store; import it with 'certbind add cert'", thumb);
    cb_tls_entry_set_error(out, msg);
}

/* A stored certificate's entry from the cache. Copies in the state folder never change;
 * linked files can, at any time, so those are loaded at once (see cb_tls_cache_get). */
static void cert_entry(struct cb_store *st, struct cb_tls_cache *cache, const char *thumb,
                       const char *cert_path, const char *key_path, const char *ca_path,
                       struct cb_tls_entry *out, bool *reused)
{
    bool eager = !cb_store_owns(st, cert_path) || !cb_store_owns(st, key_path);
    cb_tls_cache_get(cache, thumb, cert_path, key_path, ca_path, eager, out, reused);
}

/* A binding's two certificates (certhash=T1,T2) as one entry, keyed "T1,T2": parsed,
 * cached, passed between workers and served together (tls/ctx.h). */
static void pair_entry(struct cb_store *st, struct cb_tls_cache *cache,
                       const struct cb_snap_binding *b, const struct cert_ref *r1,
                       const struct cert_ref *r2, const char *ca_path, struct cb_tls_entry *out,
                       bool *reused)
{
    char key[2 * CB_THUMB_LEN + 2];
    bool eager = !cb_store_owns(st, r1->cert_path) || !cb_store_owns(st, r1->key_path) ||
                 !cb_store_owns(st, r2->cert_path) || !cb_store_owns(st, r2->key_path);

    snprintf(key, sizeof(key), "%s,%s", b->certhash, b->certhash2);
    cb_tls_cache_get_pair(cache, key, r1->cert_path, r1->key_path, r2->cert_path, r2->key_path,
                          ca_path, eager, out, reused);
}

/* A managed binding (acme=enable) that has no certificate yet: its handshakes fail, and
 * say so, until the manager binds the first one the ACME CA issues. */
static bool awaiting_acme(const struct cb_snap_binding *b)
{
    return (b->flags & CB_OPT_ACME) && b->certhash[0] == '\0';
}

/* One log line for a binding that cannot serve: an error, except for a managed binding
 * waiting for its first certificate (a normal state, said once per full read). */
static void log_unusable(const struct cb_snap_binding *b, const char *why)
{
    char q[900];
    bool waiting = awaiting_acme(b);
    cb_log(waiting ? "info" : "error", waiting ? "binding_waiting" : "binding_broken",
           "binding=%s certhash=%s%s%s reason=%s", b->key_text, b->certhash,
           b->certhash2[0] ? "," : "", b->certhash2, cb_log_quote(why, q, sizeof(q)));
}

static void awaiting(struct cb_tls_entry *out)
{
    cb_tls_entry_set_error(out, "waiting for its first certificate from the ACME CA");
}

/* The pending TLS-ALPN-01 challenges, parsed: a small set, always read whole. One that
 * cannot be served is kept (its validations fail and say why) and, when log, logged. */
static int load_challenges(struct cb_store *st, bool log, struct cb_tls_challenges **out,
                           struct cb_err *err)
{
    struct cb_challenge *v = NULL;
    size_t n = 0;
    int ret;

    if ((ret = cb_store_challenges_load(st, &v, &n, err)) != 0)
        return ret;
    ret = cb_tls_challenges_new(v, n, out, err);
    cb_challenges_free(v, n);
    for (size_t i = 0; ret == 0 && log && i < cb_tls_challenges_count(*out); i++) {
        const struct cb_tls_challenge *c = cb_tls_challenges_at(*out, i);
        const char *why = cb_tls_challenge_error(c);
        char q[900];
        if (why != NULL)
            cb_log("error", "challenge_broken", "name=%s reason=%s", cb_tls_challenge_name(c),
                   cb_log_quote(why, q, sizeof(q)));
    }
    return ret;
}

/* The session ticket keys, read whole (three at most). */
static int load_tickets(struct cb_store *st, struct cb_tls_tickets **out, struct cb_err *err)
{
    struct cb_ticket_keys k;
    int ret;

    if ((ret = cb_store_ticket_keys_load(st, &k, err)) != 0)
        return ret;
    *out = cb_tls_tickets_new(&k);
    cb_ticket_keys_clear(&k);
    return *out != NULL ? 0 : cb_err_set(err, CB_ENOMEM, "out of memory");
}

/* A binding whose store row is damaged: it fails its handshakes until the row is fixed. */
static void damaged(struct cb_tls_entry *out)
{
    cb_tls_entry_set_error(out, "its row in the store is damaged; delete it with 'certbind "
                                "delete sslcert' and add it again");
}

/* Rows the store cannot read: each breaks only its own binding; say which and how. */
static int log_damaged(const char *key_text, const char *reason, bool key_readable, void *arg)
{
    char q[900], k[300];
    (void)arg;
    cb_log("error", "binding_damaged", "binding=%s reason=%s action=%s",
           cb_log_quote(key_text, k, sizeof(k)), cb_log_quote(reason, q, sizeof(q)),
           key_readable ? "fails-handshakes" : "left-out");
    return 0;
}

/* Appends binding i to rt's list of broken ones (*cap: the list's room). CB_ENOMEM. */
static int broken_add(struct cb_runtime *rt, size_t *cap, uint32_t i)
{
    if (rt->n_broken == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        uint32_t *nv = realloc(rt->broken, nc * sizeof(*nv));
        if (nv == NULL)
            return CB_ENOMEM;
        rt->broken = nv;
        *cap = nc;
    }
    rt->broken[rt->n_broken++] = i;
    return 0;
}

/* The per-binding tables of a runtime of n bindings, zeroed. CB_ENOMEM. */
static int tables_init(struct cb_runtime *rt, size_t n)
{
    if (cb_cow_init(&rt->bind_tls, &cb_runtime_tls_ops, n) != 0 ||
        cb_cow_init(&rt->backends, &cb_runtime_backend_ops, n) != 0 ||
        cb_cow_init(&rt->active, &cb_runtime_active_ops, n) != 0 ||
        cb_cow_init(&rt->stat, &cb_runtime_stat_ops, n) != 0)
        return CB_ENOMEM;
    return 0;
}

/* A store of CB_RUNTIME_LIST_MIN certificates or more: its certs/ and keys/ folders are
 * read once for the build, and each certificate's files are found in those listings rather
 * than looked up one by one (tls/ctx.h: whether they can be read is then learnt on first
 * use). Below that, each is looked up, and a file the service user cannot read is reported
 * at once. */
#define CB_RUNTIME_LIST_MIN 1024

static void list_store_folders(struct cb_store *st, struct cb_tls_cache *cache, size_t n_certs)
{
    static const char *const folders[] = {"certs", "keys"};
    char dir[CB_PATH_MAX + 1];

    if (n_certs < CB_RUNTIME_LIST_MIN)
        return;
    for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
        int len = snprintf(dir, sizeof(dir), "%s/%s", cb_store_dir(st), folders[i]);
        /* Not read: looked up one by one, as in a small store. */
        if (len > 0 && (size_t)len < sizeof(dir))
            (void)cb_tls_cache_list_folder(cache, dir, n_certs);
    }
}

int cb_runtime_build(struct cb_store *st, struct cb_tls_cache *cache, bool log_broken,
                     const struct cb_runtime_progress *progress, struct cb_runtime **out,
                     struct cb_runtime_stats *stats, struct cb_err *err)
{
    struct certs cs = {.progress = progress};
    struct cb_runtime *rt;
    struct timespec t0, t1;
    size_t broken_cap = 0;
    int ret;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(stats, 0, sizeof(*stats));
    rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    rt->refs = 1;
    rt->cache = cache;
    if ((ret = cb_store_load_snapshot_reporting(st, &rt->snap, log_broken ? log_damaged : NULL,
                                                NULL, false, err)) != 0)
        goto out_free;
    rt->generation = cb_snapshot_generation(rt->snap);
    /* Read after the snapshot's generation: at least as new as it, never older. */
    if ((ret = load_challenges(st, log_broken, &rt->challenges, err)) != 0 ||
        (ret = load_tickets(st, &rt->tickets, err)) != 0)
        goto out_free;
    if ((ret = cb_store_cert_paths_foreach(st, collect, &cs, err)) != 0 ||
        (ret = index_build(&cs)) != 0) {
        if (ret == CB_ENOMEM)
            cb_err_set(err, ret, "out of memory");
        goto out_free;
    }
    size_t n = cb_snapshot_count(rt->snap), nf = cb_snapshot_ccs_count(rt->snap);
    rt->file_tls = calloc(nf ? nf : 1, sizeof(*rt->file_tls));
    if (tables_init(rt, n) != 0 || rt->file_tls == NULL ||
        cb_cow_init(&rt->port_bindings, &cb_runtime_active_ops, 65536) != 0) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    cb_tls_cache_mark(cache);
    list_store_folders(st, cache, cs.n);
    cb_tls_cache_reserve(cache, cs.n);
    for (uint32_t i = 0; i < n; i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(rt->snap, i);
        /* Parts held by this runtime alone: written in place, never copied. */
        struct cb_tls_entry *tls = cb_cow_mut(&rt->bind_tls, i);
        bool reused = false;
        if (progress != NULL && i % CB_RUNTIME_PROGRESS_EVERY == CB_RUNTIME_PROGRESS_EVERY - 1)
            progress->fn(progress->arg, i + 1, n);
        if (b->kind != CB_KEY_IP)
            (*(uint32_t *)cb_cow_mut(&rt->port_bindings, b->port))++;
        if (b->backend != NULL)
            resolve_backend(b->backend, cb_cow_mut(&rt->backends, i));
        if (b->flags & CB_OPT_DAMAGED) {
            damaged(tls);
        } else if (b->kind == CB_KEY_CCS) {
            continue;
        } else if (awaiting_acme(b)) {
            awaiting(tls);
        } else {
            const struct cert_ref *ref = find_ref(&cs, b->certhash);
            const struct cert_ref *ref2 = b->certhash2[0] ? find_ref(&cs, b->certhash2) : NULL;
            if (ref == NULL) {
                missing_cert(b->certhash, tls);
            } else if (b->certhash2[0] && ref2 == NULL) {
                missing_cert(b->certhash2, tls);
            } else {
                if (ref2 != NULL)
                    pair_entry(st, cache, b, ref, ref2, cb_snapshot_clientca(rt->snap, b), tls,
                               &reused);
                else
                    cert_entry(st, cache, ref->thumb, ref->cert_path, ref->key_path,
                               cb_snapshot_clientca(rt->snap, b), tls, &reused);
                if (reused)
                    stats->certs_reused++;
                else
                    stats->certs_new++;
            }
        }
        const char *why = cb_tls_entry_error(tls);
        if (why != NULL) {
            if (broken_add(rt, &broken_cap, i) != 0) {
                ret = cb_err_set(err, CB_ENOMEM, "out of memory");
                goto out_free;
            }
            if (log_broken)
                log_unusable(b, why);
        }
    }
    for (size_t i = 0; i < nf; i++) {
        const struct cb_ccs_file *f = cb_snapshot_ccs_file(rt->snap, i);
        bool reused = false;
        const char *ca = cb_snapshot_clientca(rt->snap, cb_snapshot_binding(rt->snap, f->binding));
        cb_tls_cache_get(cache, f->path, f->path, NULL, ca, true, &rt->file_tls[i], &reused);
        const char *why = cb_tls_entry_error(&rt->file_tls[i]);
        if (why != NULL && log_broken) {
            char q[900];
            cb_log("error", "ccs_file_broken", "file=%s reason=%s", f->path,
                   cb_log_quote(why, q, sizeof(q)));
        }
    }
    cb_tls_cache_sweep(cache);
    certs_free(&cs);
    if ((ret = cb_staples_build(st, rt)) != 0) {
        cb_err_set(err, ret, "out of memory");
        cb_runtime_unref(rt);
        return ret;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    stats->bindings = n;
    stats->broken = rt->n_broken;
    stats->generation = rt->generation;
    stats->challenges = cb_tls_challenges_count(rt->challenges);
    stats->ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    *out = rt;
    return 0;
out_free:
    certs_free(&cs);
    if (rt->snap == NULL) {
        free(rt);
        return ret;
    }
    cb_runtime_unref(rt);
    return ret;
}

/* The certificate of a new or changed binding, looked up by itself. */
static void entry_for(struct cb_store *st, struct cb_tls_cache *cache,
                      const struct cb_snapshot *snap, const struct cb_snap_binding *b,
                      struct cb_tls_entry *out, bool *loaded)
{
    struct cb_cert_row row;
    struct cb_err err = {0};
    bool reused = false;

    *loaded = false;
    if (b->flags & CB_OPT_DAMAGED) {
        damaged(out);
        return;
    }
    if (awaiting_acme(b)) {
        awaiting(out);
        return;
    }
    int ret = cb_store_cert_get(st, b->certhash, &row, &err);
    if (ret == CB_ENOENT) {
        missing_cert(b->certhash, out);
        return;
    }
    if (ret != 0) {
        cb_tls_entry_set_error(out, err.msg);
        return;
    }
    if (b->certhash2[0] != '\0') {
        struct cb_cert_row row2;
        ret = cb_store_cert_get(st, b->certhash2, &row2, &err);
        if (ret == CB_ENOENT) {
            missing_cert(b->certhash2, out);
        } else if (ret != 0) {
            cb_tls_entry_set_error(out, err.msg);
        } else {
            struct cert_ref r1 = {.cert_path = row.cert_path, .key_path = row.key_path};
            struct cert_ref r2 = {.cert_path = row2.cert_path, .key_path = row2.key_path};
            pair_entry(st, cache, b, &r1, &r2, cb_snapshot_clientca(snap, b), out, &reused);
            *loaded = !reused;
            cb_cert_row_clear(&row2);
        }
        cb_cert_row_clear(&row);
        return;
    }
    cert_entry(st, cache, b->certhash, row.cert_path, row.key_path, cb_snapshot_clientca(snap, b),
               out, &reused);
    *loaded = !reused;
    cb_cert_row_clear(&row);
}

/* The moves of a derivation, by old index (from): where a binding that moved went. */
struct moved {
    uint32_t from, at;
};

static int cmp_moved(const void *a, const void *b)
{
    uint32_t x = ((const struct moved *)a)->from, y = ((const struct moved *)b)->from;
    return x < y ? -1 : x > y;
}

static int cmp_move_at(const void *a, const void *b)
{
    uint32_t x = ((const struct cb_snapshot_move *)a)->at;
    uint32_t y = ((const struct cb_snapshot_move *)b)->at;
    return x < y ? -1 : x > y;
}

/* Where old's binding j is in the new snapshot, or -1 when it is gone (removed, or
 * replaced by a changed binding of the same key, which the moves cover). */
static long new_index(uint32_t j, size_t n, const struct cb_snapshot_move *moves, size_t n_moves,
                      const struct moved *moved, size_t n_moved)
{
    struct moved mk = {.from = j};
    const struct moved *m =
        n_moved ? bsearch(&mk, moved, n_moved, sizeof(*moved), cmp_moved) : NULL;
    if (m != NULL)
        return m->at;
    struct cb_snapshot_move k = {.at = j};
    if (j >= n || (n_moves && bsearch(&k, moves, n_moves, sizeof(*moves), cmp_move_at) != NULL))
        return -1;
    return j;
}

/* The new runtime's tables: old's, shared, then made n long. CB_ENOMEM. */
static int tables_share(struct cb_runtime *rt, const struct cb_runtime *old, size_t n)
{
    if (cb_cow_share(&rt->bind_tls, &old->bind_tls) != 0 ||
        cb_cow_share(&rt->backends, &old->backends) != 0 ||
        cb_cow_share(&rt->active, &old->active) != 0 || cb_cow_share(&rt->stat, &old->stat) != 0 ||
        cb_cow_resize(&rt->bind_tls, n) != 0 || cb_cow_resize(&rt->backends, n) != 0 ||
        cb_cow_resize(&rt->active, n) != 0 || cb_cow_resize(&rt->stat, n) != 0)
        return CB_ENOMEM;
    return 0;
}

/* Binding i's writable elements, emptied (their parts copied first when shared). */
struct slots {
    struct cb_tls_entry *tls;
    struct cb_backend *be;
    uint32_t *active;
    struct cb_metrics_entry **stat;
};

static int slots_take(struct cb_runtime *rt, uint32_t i, struct slots *sl)
{
    sl->tls = cb_cow_mut(&rt->bind_tls, i);
    sl->be = cb_cow_mut(&rt->backends, i);
    sl->active = cb_cow_mut(&rt->active, i);
    sl->stat = cb_cow_mut(&rt->stat, i);
    if (sl->tls == NULL || sl->be == NULL || sl->active == NULL || sl->stat == NULL)
        return CB_ENOMEM;
    cb_tls_entry_clear(sl->tls);
    free(sl->be->error);
    memset(sl->be, 0, sizeof(*sl->be));
    return 0;
}

/* rt's bindings per port after the change ch to old, and whether that changes where it
 * listens (rt->listen_same). CB_ENOMEM. */
static int count_ports(struct cb_runtime *rt, const struct cb_runtime *old,
                       const struct cb_store_changes *ch)
{
    rt->listen_same = true;
    for (size_t k = 0; k < ch->n_removed; k++) {
        long j = cb_snapshot_find(old->snap, &ch->removed[k]);
        if (j < 0)
            continue;
        if (ch->removed[k].kind == CB_KEY_IP) {
            rt->listen_same = false;
            continue;
        }
        uint32_t *c = cb_cow_mut(&rt->port_bindings, ch->removed[k].port);
        if (c == NULL)
            return CB_ENOMEM;
        if (--*c == 0)
            rt->listen_same = false;
    }
    for (size_t k = 0; k < ch->n_set; k++) {
        const struct cb_binding_key *key = &ch->set[k].key;
        /* Changed in place: the same key, so the same port and kind. */
        if (cb_snapshot_find(old->snap, key) >= 0)
            continue;
        if (key->kind == CB_KEY_IP) {
            rt->listen_same = false;
            continue;
        }
        uint32_t *c = cb_cow_mut(&rt->port_bindings, key->port);
        if (c == NULL)
            return CB_ENOMEM;
        if ((*c)++ == 0)
            rt->listen_same = false;
    }
    return 0;
}

int cb_runtime_derive(struct cb_store *st, struct cb_tls_cache *cache, const struct cb_runtime *old,
                      bool log_broken, struct cb_runtime **out, struct cb_runtime_stats *stats,
                      struct cb_err *err)
{
    struct cb_store_changes ch;
    struct cb_snapshot *snap = NULL;
    struct cb_runtime *rt = NULL;
    struct cb_snapshot_move *moves = NULL;
    struct moved *moved = NULL;
    size_t n_moves = 0, n_moved = 0, broken_cap = 0;
    struct timespec t0, t1;
    int ret;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(stats, 0, sizeof(*stats));
    ret = cb_store_changes_since(st, old->generation, &ch, err);
    if (ret == CB_ENOENT)
        return CB_SNAPSHOT_REBUILD;
    if (ret != 0)
        return ret;
    if (ch.generation == old->generation) {
        cb_store_changes_clear(&ch);
        *out = cb_runtime_ref((struct cb_runtime *)old);
        stats->generation = ch.generation;
        stats->bindings = cb_snapshot_count(old->snap);
        stats->broken = old->n_broken;
        stats->challenges = cb_tls_challenges_count(old->challenges);
        return 0;
    }
    /* Only challenges or ticket keys changed: the same snapshot (with central-store files
     * too), shared, and so are the bindings' tables; nothing is read but the challenges or
     * keys. Otherwise the snapshot follows the changed bindings, and the tables follow it:
     * shared, written only where the derivation moved or set a binding. */
    bool shared = ch.only_challenges;
    bool challenges = ch.challenges, tickets = ch.tickets;
    uint64_t generation = ch.generation;
    char(*ocsp)[CB_THUMB_LEN + 1] = ch.ocsp; /* taken from ch: freed below */
    size_t n_ocsp = ch.n_ocsp;
    ch.ocsp = NULL;
    ch.n_ocsp = 0;
    if (shared)
        snap = cb_snapshot_ref(old->snap);
    else
        ret = cb_snapshot_derive_moves(old->snap, ch.set, ch.n_set, ch.removed, ch.n_removed,
                                       ch.generation, &snap, &moves, &n_moves, err);
    if (ret != 0) {
        cb_store_changes_clear(&ch);
        free(ocsp);
        return ret; /* CB_SNAPSHOT_REBUILD included */
    }

    size_t n = cb_snapshot_count(snap), nf = shared ? cb_snapshot_ccs_count(snap) : 0;
    rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        cb_snapshot_unref(snap);
        free(moves);
        free(ocsp);
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    }
    rt->refs = 1;
    rt->cache = cache;
    rt->snap = snap;
    rt->generation = generation;
    rt->counts_of = old;
    rt->file_tls = calloc(nf ? nf : 1, sizeof(*rt->file_tls));
    moved = malloc((n_moves ? n_moves : 1) * sizeof(*moved));
    if (rt->file_tls == NULL || moved == NULL || tables_share(rt, old, n) != 0 ||
        cb_cow_share(&rt->port_bindings, &old->port_bindings) != 0 ||
        (ret = count_ports(rt, old, &ch)) != 0) {
        cb_store_changes_clear(&ch);
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    cb_store_changes_clear(&ch);
    if (challenges) {
        if ((ret = load_challenges(st, log_broken, &rt->challenges, err)) != 0)
            goto out_free;
    } else {
        rt->challenges = cb_tls_challenges_ref(old->challenges);
    }
    if (tickets) {
        if ((ret = load_tickets(st, &rt->tickets, err)) != 0)
            goto out_free;
    } else {
        rt->tickets = cb_tls_tickets_ref(old->tickets);
    }
    for (size_t i = 0; i < nf; i++)
        cb_tls_entry_copy(&rt->file_tls[i], &old->file_tls[i]);
    /* The bindings the derivation moved or set; every other index holds what it held in
     * old, in parts shared with it. */
    for (size_t k = 0; k < n_moves; k++) {
        uint32_t i = moves[k].at, from = moves[k].from;
        const struct cb_snap_binding *b = cb_snapshot_binding(snap, i);
        struct slots sl;
        bool loaded = false;
        if (slots_take(rt, i, &sl) != 0) {
            ret = cb_err_set(err, CB_ENOMEM, "out of memory");
            goto out_free;
        }
        if (from != CB_SNAPSHOT_NEW) {
            /* Unchanged, moved: the same certificate, backend address and counters (if it
             * was broken, it is looked at again with old's broken ones below). */
            cb_tls_entry_copy(sl.tls, cb_runtime_tls(old, from));
            if (cb_runtime_backend_ops.copy(sl.be, cb_runtime_backend(old, from)) != 0) {
                ret = cb_err_set(err, CB_ENOMEM, "out of memory");
                goto out_free;
            }
            *sl.active = *(const uint32_t *)cb_cow_at(&old->active, from);
            *sl.stat = *(struct cb_metrics_entry *const *)cb_cow_at(&old->stat, from);
            moved[n_moved++] = (struct moved){.from = from, .at = i};
            stats->certs_reused++;
            continue;
        }
        /* Added, or changed in place: a changed binding keeps its key's open connections
         * (for the cap) and counters. */
        struct cb_binding_key key;
        long j = cb_key_parse_word(b->key_text, &key, NULL) == 0 ? cb_snapshot_find(old->snap, &key)
                                                                 : -1;
        if (j >= 0) {
            *sl.active = *(const uint32_t *)cb_cow_at(&old->active, (size_t)j);
            *sl.stat = *(struct cb_metrics_entry *const *)cb_cow_at(&old->stat, (size_t)j);
        }
        if (b->backend != NULL) {
            if (backend_is_name(b->backend)) {
                /* Asking DNS may take seconds: a full build does it, off the loop. */
                ret = CB_RUNTIME_BUILD_ASIDE;
                goto out_free;
            }
            resolve_backend(b->backend, sl.be);
        }
        entry_for(st, cache, snap, b, sl.tls, &loaded);
        if (loaded)
            stats->certs_new++;
        else
            stats->certs_reused++;
        const char *why = cb_tls_entry_error(sl.tls);
        if (why != NULL && b->kind != CB_KEY_CCS && broken_add(rt, &broken_cap, i) != 0) {
            ret = cb_err_set(err, CB_ENOMEM, "out of memory");
            goto out_free;
        }
        if (why != NULL && log_broken)
            log_unusable(b, why);
    }
    /* Old's broken bindings that are still there: looked at again, they may have been
     * fixed since (the certificate imported, say). */
    if (n_moved > 1)
        qsort(moved, n_moved, sizeof(*moved), cmp_moved);
    for (size_t k = 0; k < old->n_broken; k++) {
        long i = new_index(old->broken[k], n, moves, n_moves, moved, n_moved);
        if (i < 0)
            continue;
        const struct cb_snap_binding *b = cb_snapshot_binding(snap, (uint32_t)i);
        struct cb_tls_entry *tls = cb_cow_mut(&rt->bind_tls, (size_t)i);
        bool loaded = false;
        if (tls == NULL) {
            ret = cb_err_set(err, CB_ENOMEM, "out of memory");
            goto out_free;
        }
        cb_tls_entry_clear(tls);
        entry_for(st, cache, snap, b, tls, &loaded);
        const char *why = cb_tls_entry_error(tls);
        if (why != NULL && broken_add(rt, &broken_cap, (uint32_t)i) != 0) {
            ret = cb_err_set(err, CB_ENOMEM, "out of memory");
            goto out_free;
        }
        if (why != NULL && log_broken)
            log_unusable(b, why);
    }
    if ((ret = cb_staples_derive(st, rt, old, moves, n_moves,
                                 (const char(*)[CB_THUMB_LEN + 1]) ocsp, n_ocsp)) != 0) {
        cb_err_set(err, ret, "out of memory");
        goto out_free;
    }
    free(moves);
    free(moved);
    free(ocsp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    stats->bindings = n;
    stats->broken = rt->n_broken;
    stats->generation = rt->generation;
    stats->challenges = cb_tls_challenges_count(rt->challenges);
    stats->derived = true;
    stats->ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    *out = rt;
    return 0;
out_free:
    free(moves);
    free(moved);
    free(ocsp);
    cb_runtime_unref(rt);
    return ret;
}
