/*
 * pull.c: etcd into the replica. cb_fleet_sync reads every key under the prefix once and
 * makes the replica equal to it: rows whose mod_revision differs from the one the replica
 * noted are applied, rows etcd does not hold are removed (so a first sync, a replica that
 * followed another store, or one that fell behind a compaction all end identical to etcd;
 * a sync where nothing changed writes nothing but the time of contact). cb_fleet_follow
 * then applies the watch's events, one SQLite transaction per etcd revision, in the change
 * log as a command's would be, and not pushed back (applying mode).
 */
#include "fleet/fleet_int.h"
#include "util/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROW_KEY_MAX 1024

static int note_state(struct cb_fleet *f, int64_t rev, struct cb_err *err)
{
    struct cb_store_replica r = {.revision = rev, .synced_at = (int64_t)time(NULL)};
    int ret;

    snprintf(r.url, sizeof(r.url), "%s", f->url);
    if ((ret = cb_store_replica_set(f->st, &r, err)) != 0)
        return ret;
    f->revision = rev;
    f->synced_at = r.synced_at;
    return 0;
}

/* Applies one etcd key's new value (value NULL: deleted) inside the open transaction.
 * *changed counts rows written. */
static int apply_one(struct cb_fleet *f, const char *ek, const unsigned char *value, size_t len,
                     int64_t mod_rev, bool force, size_t *changed, struct cb_err *err)
{
    char row_key[ROW_KEY_MAX], q[ROW_KEY_MAX + 8];
    const char *table;
    int64_t seen;
    bool partial = false;
    int ret;

    if (cb_fleet__row_of(f, ek, &table, row_key, sizeof(row_key)) != 0)
        return 0; /* a lock, or what a newer certbind keeps */
    if ((ret = cb_store_replica_key_rev(f->st, ek, &seen, err)) != 0)
        return ret;
    if (value == NULL) {
        if ((ret = cb_fleet__apply_delete(f, table, row_key, err)) != 0)
            return ret;
        (*changed)++;
        return cb_store_replica_key_set(f->st, ek, 0, err);
    }
    if (!force && (seen == mod_rev || (seen == -mod_rev && !f->have_key)))
        return 0;
    ret = cb_fleet__apply_put(f, table, row_key, ek, value, len, &partial, err);
    if (ret == CB_EBADFILE) {
        cb_log("warn", "fleet_damaged", "key=%s reason=%s", cb_log_quote(ek, q, sizeof(q)),
               cb_log_quote(err ? err->msg : "damaged", row_key, sizeof(row_key)));
        ret = 0;
    }
    if (ret != 0)
        return ret;
    (*changed)++;
    return cb_store_replica_key_set(f->st, ek, partial ? -mod_rev : mod_rev, err);
}

static int cmp_kv_key(const void *key, const void *elem)
{
    return strcmp(key, ((const struct cb_etcd_kv *)elem)->key);
}

struct sweep {
    struct cb_fleet *f;
    const struct cb_etcd_kvs *kvs;
    const char *table;
    char **gone; /* owned: row keys (or etcd keys) to remove */
    size_t n;
    int ret;
};

static int sweep_add(struct sweep *s, const char *k)
{
    char **nv = realloc(s->gone, (s->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return CB_ENOMEM;
    s->gone = nv;
    if ((s->gone[s->n] = strdup(k)) == NULL)
        return CB_ENOMEM;
    s->n++;
    return 0;
}

static void sweep_clear(struct sweep *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->gone[i]);
    free(s->gone);
    s->gone = NULL;
    s->n = 0;
}

static bool in_etcd(const struct cb_etcd_kvs *kvs, const char *ek)
{
    return kvs->n > 0 && bsearch(ek, kvs->v, kvs->n, sizeof(kvs->v[0]), cmp_kv_key) != NULL;
}

/* A replica row whose etcd key is not in etcd. */
static int sweep_row(const char *row_key, void *ctx)
{
    struct sweep *s = ctx;
    char ek[ROW_KEY_MAX];
    if (cb_fleet__etcd_key(s->f, s->table, row_key, ek, sizeof(ek)) != 0)
        return 0; /* node-local */
    return in_etcd(s->kvs, ek) ? 0 : sweep_add(s, row_key);
}

/* A key the replica noted that etcd no longer holds. */
static int sweep_key(const char *ek, int64_t mod_rev, void *ctx)
{
    struct sweep *s = ctx;
    (void)mod_rev;
    return in_etcd(s->kvs, ek) ? 0 : sweep_add(s, ek);
}

static const char *const tables[] = {"bindings",   "certs",      "meta",       "acme_account",
                                     "acme_state", "challenges", "ticket_keys"};

static int sweep(struct cb_fleet *f, const struct cb_etcd_kvs *kvs, size_t *changed,
                 struct cb_err *err)
{
    struct sweep s = {.f = f, .kvs = kvs};
    int ret = 0;

    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]) && ret == 0; t++) {
        s.table = tables[t];
        if ((ret = cb_store_row_keys(f->st, tables[t], sweep_row, &s, err)) == CB_ENOMEM)
            ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        for (size_t i = 0; i < s.n && ret == 0; i++) {
            ret = cb_fleet__apply_delete(f, tables[t], s.gone[i], err);
            (*changed)++;
        }
        sweep_clear(&s);
    }
    if (ret == 0 && (ret = cb_store_replica_keys(f->st, sweep_key, &s, err)) == CB_ENOMEM)
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
    for (size_t i = 0; i < s.n && ret == 0; i++)
        ret = cb_store_replica_key_set(f->st, s.gone[i], 0, err);
    sweep_clear(&s);
    return ret;
}

int cb_fleet_sync(struct cb_fleet *f, struct cb_err *err)
{
    struct cb_etcd_kvs kvs;
    struct cb_store_replica rep;
    const struct cb_etcd_kv *ck = NULL;
    char check[ROW_KEY_MAX];
    size_t changed = 0;
    int ret;

    if ((ret = cb_etcd_range_prefix(f->etcd, cb_etcd_prefix(f->etcd), 0, &kvs, err)) != 0)
        return ret;
    if ((ret = cb_store_replica_get(f->st, &rep, err)) != 0)
        goto out_clear;
    /* The store key first: the wrong one fails before anything is applied. */
    snprintf(check, sizeof(check), "%s%s", cb_etcd_prefix(f->etcd), CB_FLEET_KEY_CHECK);
    if (kvs.n > 0)
        ck = bsearch(check, kvs.v, kvs.n, sizeof(kvs.v[0]), cmp_kv_key);
    f->key_verified = false;
    if (ck != NULL && (ret = cb_fleet__key_check(f, ck, err)) != 0)
        goto out_clear;
    /* Another store's replica (or none yet): every row is read again. */
    bool full = strcmp(rep.url, f->url) != 0;
    if ((ret = cb_store_begin(f->st, err)) != 0)
        goto out_clear;
    cb_store_set_applying(f->st, true);
    if (full && (ret = cb_store_replica_keys_clear(f->st, err)) != 0)
        goto out_rollback;
    for (size_t i = 0; i < kvs.n; i++)
        if ((ret = apply_one(f, kvs.v[i].key, kvs.v[i].value, kvs.v[i].value_len, kvs.v[i].mod_rev,
                             full, &changed, err)) != 0)
            goto out_rollback;
    if ((ret = sweep(f, &kvs, &changed, err)) != 0)
        goto out_rollback;
    if (changed == 0) {
        /* Nothing to tell the workers: no commit, no new generation. */
        cb_store_rollback(f->st);
        cb_store_set_applying(f->st, false);
        ret = note_state(f, kvs.revision, err);
        goto out_clear;
    }
    if ((ret = note_state(f, kvs.revision, err)) != 0)
        goto out_rollback;
    ret = cb_store_commit(f->st, err);
    cb_store_set_applying(f->st, false);
    if (ret != 0) {
        struct cb_store_replica back;
        if (cb_store_replica_get(f->st, &back, NULL) == 0)
            f->revision = back.revision;
    }
    goto out_clear;
out_rollback:
    cb_store_rollback(f->st);
    cb_store_set_applying(f->st, false);
out_clear:
    /* The key check value is no row: noted apart, so a push knows it exists. */
    if (ret == 0 && ck != NULL)
        ret = cb_store_replica_key_set(f->st, check, ck->mod_rev, err);
    cb_etcd_kvs_clear(&kvs);
    return ret;
}

struct follow {
    struct cb_fleet *f;
    void (*on_applied)(int64_t rev, void *ctx);
    void *ctx;
    struct cb_err *err;
};

static int on_events(const struct cb_etcd_event *ev, size_t n, int64_t rev, void *ctx)
{
    struct follow *w = ctx;
    struct cb_fleet *f = w->f;
    size_t changed = 0;
    int ret;

    if (n == 0) /* progress: nothing under the prefix changed up to rev */
        return note_state(f, rev, w->err);
    if ((ret = cb_store_begin(f->st, w->err)) != 0)
        return ret;
    cb_store_set_applying(f->st, true);
    for (size_t i = 0; i < n; i++) {
        const struct cb_etcd_kv *kv = &ev[i].kv;
        bool del = ev[i].type == CB_ETCD_EV_DELETE;
        if ((ret = apply_one(f, kv->key, del ? NULL : kv->value, kv->value_len, kv->mod_rev, false,
                             &changed, w->err)) != 0)
            goto out_rollback;
    }
    if ((ret = note_state(f, rev, w->err)) != 0)
        goto out_rollback;
    if (changed == 0) {
        cb_store_rollback(f->st);
        cb_store_set_applying(f->st, false);
        ret = note_state(f, rev, w->err);
    } else {
        ret = cb_store_commit(f->st, w->err);
        cb_store_set_applying(f->st, false);
    }
    if (ret == 0 && w->on_applied != NULL)
        w->on_applied(rev, w->ctx);
    return ret;
out_rollback:
    cb_store_rollback(f->st);
    cb_store_set_applying(f->st, false);
    return ret;
}

int cb_fleet_follow(struct cb_fleet *f, const _Atomic bool *stop,
                    void (*on_applied)(int64_t rev, void *ctx), void *ctx, struct cb_err *err)
{
    struct follow w = {.f = f, .on_applied = on_applied, .ctx = ctx, .err = err};
    int ret;

    for (;;) {
        int64_t resume;
        ret = cb_etcd_watch(f->etcd, cb_etcd_prefix(f->etcd), f->revision + 1, on_events, &w, stop,
                            &resume, err);
        if (ret != CB_ENOENT)
            return ret;
        /* Compacted past what the replica has: read everything again, then follow. */
        cb_log("info", "fleet_resync", "reason=compacted revision=%lld", (long long)f->revision);
        if ((ret = cb_fleet_sync(f, err)) != 0)
            return ret;
        if (on_applied != NULL)
            on_applied(f->revision, ctx);
        if (stop != NULL && atomic_load(stop))
            return 0;
    }
}
