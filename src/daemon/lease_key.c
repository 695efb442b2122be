/* lease_key.c: an etcd key held under a lease kept alive by a thread (lease_key.h). */
#include "daemon/lease_key.h"
#include "etcd/etcd.h"
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cb_lease_key {
    struct cb_etcd *etcd; /* used under io, by the keepalive and by set */
    int64_t lease;
    int ttl_s;
    bool exclusive;
    char key[1024];
    char *value; /* owned: what a new lease puts again */
    pthread_t thread;
    pthread_mutex_t io; /* the etcd connection, lease and value */
    pthread_mutex_t mu; /* stop and wake */
    pthread_cond_t wake;
    bool stop;
    bool failing; /* the last keepalive failed (logged once): release does not wait on etcd */
};

/* A new lease, and the key put under it. Called with io held (or before the thread runs). */
static int put_fresh(struct cb_lease_key *l, struct cb_err *err)
{
    struct cb_etcd_op op = {
        .kind = CB_ETCD_PUT, .key = l->key, .value = l->value, .value_len = strlen(l->value)};
    int64_t rev;
    bool ok;
    int ret;

    if ((ret = cb_etcd_lease_grant(l->etcd, l->ttl_s, &l->lease, err)) != 0)
        return ret;
    op.lease = l->lease;
    return cb_etcd_txn(l->etcd, NULL, 0, &op, 1, &ok, &rev, err);
}

/* Logs a keepalive that failed (once until one succeeds again), or one that succeeds again. */
static void keepalive_log(struct cb_lease_key *l, int ret, bool renewed, const struct cb_err *err)
{
    char k[512], q[600];

    cb_log_quote(l->key, k, sizeof(k));
    if (ret == 0 && (l->failing || renewed))
        cb_log("info", "lease_renewed", "key=%s", k);
    else if (ret != 0 && !l->failing && l->exclusive && ret == CB_ENOENT)
        cb_log("error", "lease_lost",
               "key=%s reason=%s consequence=\"the lock is free: another node may take it while "
               "this one still works under it\"",
               k, cb_log_quote(err->msg, q, sizeof(q)));
    else if (ret != 0 && !l->failing)
        cb_log("warn", "lease_keepalive",
               "key=%s reason=%s consequence=\"etcd drops the key once the lease's %d s have "
               "passed; it is put again when etcd answers\"",
               k, cb_log_quote(err->msg, q, sizeof(q)), l->ttl_s);
    l->failing = ret != 0;
}

static void *keepalive_main(void *arg)
{
    struct cb_lease_key *l = arg;
    struct timespec until;

    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += l->ttl_s / 3 > 0 ? l->ttl_s / 3 : 1;
        while (!l->stop && pthread_cond_timedwait(&l->wake, &l->mu, &until) != ETIMEDOUT) {
        }
        if (l->stop)
            break;
        pthread_mutex_unlock(&l->mu);
        struct cb_err err = {0};
        bool renewed = false;
        pthread_mutex_lock(&l->io);
        int ret = cb_etcd_lease_keepalive(l->etcd, l->lease, &err);
        if (ret == CB_ENOENT && !l->exclusive) {
            /* Expired (etcd was away longer than the TTL): the key went with it. */
            ret = put_fresh(l, &err);
            renewed = ret == 0;
        }
        keepalive_log(l, ret, renewed, &err);
        pthread_mutex_unlock(&l->io);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int cb_lease_key_take(const char *url, const char *key, const char *value, int ttl_s,
                      bool exclusive, struct cb_lease_key **out, bool *elsewhere,
                      struct cb_err *err)
{
    struct cb_lease_key *l = calloc(1, sizeof(*l));
    struct cb_err ignored;
    pthread_condattr_t ca;
    bool ok = false;
    int64_t rev;
    int ret;

    *out = NULL;
    *elsewhere = false;
    if (l == NULL || (l->value = strdup(value)) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    l->ttl_s = ttl_s;
    l->exclusive = exclusive;
    if ((ret = cb_etcd_open(url, &l->etcd, err)) != 0)
        goto out_free;
    snprintf(l->key, sizeof(l->key), "%s%s", cb_etcd_prefix(l->etcd), key);
    if (!exclusive) {
        if ((ret = put_fresh(l, err)) != 0)
            goto out_close; /* put_fresh revoked its lease */
    } else {
        if ((ret = cb_etcd_lease_grant(l->etcd, ttl_s, &l->lease, err)) != 0)
            goto out_close;
        struct cb_etcd_cmp cmp = {.key = l->key, .target = CB_ETCD_CREATE_REV, .rev = 0};
        struct cb_etcd_op op = {.kind = CB_ETCD_PUT,
                                .key = l->key,
                                .value = value,
                                .value_len = strlen(value),
                                .lease = l->lease};
        if ((ret = cb_etcd_txn(l->etcd, &cmp, 1, &op, 1, &ok, &rev, err)) != 0)
            goto out_revoke;
        if (!ok) {
            *elsewhere = true;
            goto out_revoke;
        }
    }
    pthread_mutex_init(&l->io, NULL);
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&l->thread, NULL, keepalive_main, l) != 0) {
        pthread_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->mu);
        pthread_mutex_destroy(&l->io);
        ret = cb_err_set(err, CB_ENOMEM, "cannot start the lease's keepalive thread");
        goto out_revoke;
    }
    *out = l;
    return 0;
out_revoke:
    if (l->lease != 0 && cb_etcd_lease_revoke(l->etcd, l->lease, &ignored) != 0) {
        /* The lease expires by itself within its TTL. */
    }
out_close:
    cb_etcd_close(l->etcd);
out_free:
    if (l != NULL)
        free(l->value);
    free(l);
    return ret;
}

int cb_lease_key_set(struct cb_lease_key *l, const char *value, struct cb_err *err)
{
    char *v = strdup(value);
    struct cb_err why = {0};
    int64_t rev;
    bool ok;
    int ret;

    if (v == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    pthread_mutex_lock(&l->io);
    free(l->value);
    l->value = v;
    struct cb_etcd_op op = {
        .kind = CB_ETCD_PUT, .key = l->key, .value = v, .value_len = strlen(v), .lease = l->lease};
    ret = cb_etcd_txn(l->etcd, NULL, 0, &op, 1, &ok, &rev, &why);
    if (ret != 0 && !l->exclusive && strstr(why.msg, "lease not found") != NULL)
        ret = put_fresh(l, &why); /* expired before the keepalive noticed */
    pthread_mutex_unlock(&l->io);
    if (ret != 0)
        cb_err_set(err, ret, "%s", why.msg);
    return ret;
}

void cb_lease_key_release(struct cb_lease_key *l)
{
    struct cb_err err = {0};
    char q[900];

    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->wake);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    /* etcd away: the lease expires by itself, and stopping does not wait on it. */
    if (!l->failing && cb_etcd_lease_revoke(l->etcd, l->lease, &err) != 0)
        cb_log("warn", "lease_release", "key=%s reason=%s consequence=\"it expires within %d s\"",
               cb_log_quote(l->key, q, sizeof(q) / 2),
               cb_log_quote(err.msg, q + sizeof(q) / 2, sizeof(q) / 2), l->ttl_s);
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->io);
    cb_etcd_close(l->etcd);
    free(l->value);
    free(l);
}
