/*
 * push.c: the store's commit hook. The rows a transaction changed go to etcd in one txn
 * whose compares are each key's mod_revision as the replica last saw it (create_revision 0
 * for a key it never saw): a node that missed another's change fails instead of writing
 * over it, and SQLite's transaction is rolled back with it.
 */
#include "fleet/fleet_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct push_item {
    char key[1024];
    char *value; /* owned; NULL: delete */
    size_t len;
    int64_t seen;
};

static int cmp_dirty(const void *a, const void *b)
{
    const struct cb_store_dirty *x = a, *y = b;
    int c = strcmp(x->table, y->table);
    return c ? c : strcmp(x->key, y->key);
}

int cb_fleet__push(struct cb_store *st, const struct cb_store_dirty *d, size_t n, void *ctx,
                   struct cb_err *err)
{
    struct cb_fleet *f = ctx;
    struct cb_store_dirty *v = NULL;
    struct push_item *items = NULL;
    struct cb_etcd_cmp *cmp = NULL;
    struct cb_etcd_op *ops = NULL;
    size_t m = 0;
    int ret = 0;

    (void)st;
    if ((v = malloc(n * sizeof(*v))) == NULL || (items = calloc(n, sizeof(*items))) == NULL ||
        (cmp = calloc(n + 1, sizeof(*cmp))) == NULL ||
        (ops = calloc(n + 1, sizeof(*ops))) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    memcpy(v, d, n * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_dirty);
    for (size_t i = 0; i < n; i++) {
        struct push_item *it = &items[m];
        if (i > 0 && cmp_dirty(&v[i], &v[i - 1]) == 0)
            continue;
        ret = cb_fleet__etcd_key(f, v[i].table, v[i].key, it->key, sizeof(it->key));
        if (ret == CB_ENOENT) {
            ret = 0; /* stays on this node */
            continue;
        }
        if (ret != 0) {
            ret = cb_err_set(err, CB_EINVAL, "the row %s of %s has a key too long for the fleet",
                             v[i].key, v[i].table);
            goto out_free;
        }
        if ((ret = cb_store_replica_key_rev(f->st, it->key, &it->seen, err)) != 0)
            goto out_free;
        if (it->seen < 0)
            it->seen = -it->seen; /* seen without its secret: the revision still holds */
        ret = cb_fleet__encode(f, v[i].table, v[i].key, it->key, &it->value, &it->len, err);
        if (ret == CB_ENOENT) {
            ret = 0;
            if (it->seen == 0)
                continue; /* never in etcd, gone again */
        } else if (ret != 0) {
            goto out_free;
        }
        cmp[m].key = it->key;
        cmp[m].target = it->seen > 0 ? CB_ETCD_MOD_REV : CB_ETCD_CREATE_REV;
        cmp[m].rev = it->seen;
        ops[m].kind = it->value ? CB_ETCD_PUT : CB_ETCD_DELETE;
        ops[m].key = it->key;
        ops[m].value = it->value;
        ops[m].value_len = it->len;
        m++;
    }
    if (m == 0)
        goto out_free;
    /* The fleet's first secret: the key check value goes with it (created once: a node
     * racing to do the same fails its compare and runs the command again). */
    unsigned char *check = NULL;
    size_t check_len = 0;
    char check_key[1024];
    int64_t check_seen = 0;
    snprintf(check_key, sizeof(check_key), "%s%s", cb_etcd_prefix(f->etcd), CB_FLEET_KEY_CHECK);
    if (f->have_key && (ret = cb_store_replica_key_rev(f->st, check_key, &check_seen, err)) != 0)
        goto out_free;
    if (f->have_key && check_seen == 0) {
        if ((ret = cb_fleet__key_check_value(f, check_key, &check, &check_len, err)) != 0)
            goto out_free;
        cmp[m] = (struct cb_etcd_cmp){check_key, CB_ETCD_CREATE_REV, 0};
        ops[m] = (struct cb_etcd_op){
            .kind = CB_ETCD_PUT, .key = check_key, .value = check, .value_len = check_len};
    }
    size_t n_ops = m + (check != NULL ? 1 : 0);
    bool ok;
    int64_t rev;
    ret = cb_etcd_txn(f->etcd, cmp, n_ops, ops, n_ops, &ok, &rev, err);
    free(check);
    if (ret != 0) {
        if (ret == CB_EIO && err != NULL && strstr(err->msg, "too many operations") != NULL) {
            ret = cb_err_set(err, CB_EFAILED,
                             "the change touches %zu entries of the fleet store, more than etcd "
                             "takes in one transaction (its --max-txn-ops, 128 by default); "
                             "nothing changed: split it (smaller -f files), or raise "
                             "--max-txn-ops on every etcd member",
                             n_ops);
        } else if (ret == CB_EIO && err != NULL) {
            char why[sizeof(err->msg)];
            snprintf(why, sizeof(why), "%s", err->msg);
            ret = cb_err_set(err, CB_EIO, "%.600s; nothing changed", why);
        }
        goto out_free;
    }
    if (!ok) {
        ret = cb_err_set(err, CB_EBUSY,
                         "the fleet store changed meanwhile (another node or command changed "
                         "the same entries); nothing changed: run the command again");
        goto out_free;
    }
    f->pushed = rev;
    /* etcd has the change now: the command succeeded. Failing to note the revisions only
     * makes the next sync read those rows again. */
    bool noted = true;
    for (size_t i = 0; i < m; i++)
        noted =
            cb_store_replica_key_set(f->st, items[i].key, items[i].value ? rev : 0, NULL) == 0 &&
            noted;
    if (n_ops > m)
        noted = cb_store_replica_key_set(f->st, check_key, rev, NULL) == 0 && noted;
    if (noted && f->revision == rev - 1) {
        /* Nothing else happened in between: the replica is at rev. */
        struct cb_store_replica r = {.revision = rev, .synced_at = f->synced_at};
        snprintf(r.url, sizeof(r.url), "%s", f->url);
        if (cb_store_replica_set(f->st, &r, NULL) == 0)
            f->revision = rev;
    }
out_free:
    for (size_t i = 0; items != NULL && i < n; i++)
        free(items[i].value);
    free(items);
    free(cmp);
    free(ops);
    free(v);
    return ret;
}
