/* acme_lock.c: the lease-held etcd lock around one fleet ACME order. */
#include "daemon/acme_lock.h"
#include "etcd/etcd.h"
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cb_acme_lock {
    struct cb_etcd *etcd; /* the keepalive thread's, until it is joined */
    int64_t lease;
    char key[1024];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    bool stop;
};

static void *keepalive_main(void *arg)
{
    struct cb_acme_lock *l = arg;
    struct timespec until;
    char q[900];

    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += CB_ACME_LOCK_TTL_S / 3;
        while (!l->stop && pthread_cond_timedwait(&l->wake, &l->mu, &until) != ETIMEDOUT) {
        }
        if (l->stop)
            break;
        pthread_mutex_unlock(&l->mu);
        struct cb_err err = {0};
        if (cb_etcd_lease_keepalive(l->etcd, l->lease, &err) != 0)
            cb_log("warn", "acme_lock_keepalive", "lock=%s reason=%s", l->key,
                   cb_log_quote(err.msg, q, sizeof(q)));
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int cb_acme_lock_take(const char *url, const char *key, const char *holder,
                      struct cb_acme_lock **out, bool *elsewhere, struct cb_err *err)
{
    struct cb_acme_lock *l = calloc(1, sizeof(*l));
    struct cb_err ignored;
    pthread_condattr_t ca;
    bool ok = false;
    int64_t rev;
    int ret;

    *out = NULL;
    *elsewhere = false;
    if (l == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    if ((ret = cb_etcd_open(url, &l->etcd, err)) != 0)
        goto out_free;
    snprintf(l->key, sizeof(l->key), "%slock/acme/%s", cb_etcd_prefix(l->etcd), key);
    if ((ret = cb_etcd_lease_grant(l->etcd, CB_ACME_LOCK_TTL_S, &l->lease, err)) != 0)
        goto out_close;
    struct cb_etcd_cmp cmp = {.key = l->key, .target = CB_ETCD_CREATE_REV, .rev = 0};
    struct cb_etcd_op op = {.kind = CB_ETCD_PUT,
                            .key = l->key,
                            .value = holder,
                            .value_len = strlen(holder),
                            .lease = l->lease};
    if ((ret = cb_etcd_txn(l->etcd, &cmp, 1, &op, 1, &ok, &rev, err)) != 0)
        goto out_revoke;
    if (!ok) {
        *elsewhere = true;
        goto out_revoke;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&l->thread, NULL, keepalive_main, l) != 0) {
        pthread_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->mu);
        ret = cb_err_set(err, CB_ENOMEM, "cannot start the lock's keepalive thread");
        goto out_revoke;
    }
    *out = l;
    return 0;
out_revoke:
    if (cb_etcd_lease_revoke(l->etcd, l->lease, &ignored) != 0) {
        /* The lease expires by itself within its TTL. */
    }
out_close:
    cb_etcd_close(l->etcd);
out_free:
    free(l);
    return ret;
}

void cb_acme_lock_release(struct cb_acme_lock *l)
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
    if (cb_etcd_lease_revoke(l->etcd, l->lease, &err) != 0)
        cb_log("warn", "acme_lock_release",
               "lock=%s reason=%s consequence=\"it expires within "
               "%d s\"",
               l->key, cb_log_quote(err.msg, q, sizeof(q)), CB_ACME_LOCK_TTL_S);
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->mu);
    cb_etcd_close(l->etcd);
    free(l);
}
