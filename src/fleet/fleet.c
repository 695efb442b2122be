/*
 * fleet.c: a fleet handle: the etcd client, the store key, the replica it feeds and the
 * commit hook that pushes the replica's changes (push.c, pull.c, codec.c).
 */
#include "fleet/fleet_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cb_fleet_open(const char *url, const char *key_path, struct cb_store *st, struct cb_fleet **out,
                  struct cb_err *err)
{
    struct cb_fleet *f;
    struct cb_store_replica rep;
    int ret;

    if (strlen(url) >= sizeof(f->url))
        return cb_err_set(err, CB_EINVAL, "the --store URL is too long");
    if ((f = calloc(1, sizeof(*f))) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    snprintf(f->url, sizeof(f->url), "%s", url);
    f->st = st;
    if ((ret = cb_etcd_open(url, &f->etcd, err)) != 0)
        goto out_free;
    if (key_path != NULL) {
        if ((ret = cb_seal_key_load(key_path, f->key, err)) != 0)
            goto out_free;
        f->have_key = true;
    }
    if ((ret = cb_store_replica_get(st, &rep, err)) != 0)
        goto out_free;
    if (strcmp(rep.url, url) == 0) {
        f->revision = rep.revision;
        f->synced_at = rep.synced_at;
    }
    cb_store_set_commit_hook(st, cb_fleet__push, f);
    *out = f;
    return 0;
out_free:
    cb_fleet_close(f);
    return ret;
}

void cb_fleet_close(struct cb_fleet *f)
{
    if (f == NULL)
        return;
    if (f->st != NULL)
        cb_store_set_commit_hook(f->st, NULL, NULL);
    cb_etcd_close(f->etcd);
    explicit_bzero(f->key, sizeof(f->key));
    free(f);
}

int64_t cb_fleet_revision(const struct cb_fleet *f)
{
    return f->revision;
}

int64_t cb_fleet_pushed_revision(const struct cb_fleet *f)
{
    return f->pushed;
}

int64_t cb_fleet_synced_at(const struct cb_fleet *f)
{
    return f->synced_at;
}

struct cb_etcd *cb_fleet_etcd(struct cb_fleet *f)
{
    return f->etcd;
}
