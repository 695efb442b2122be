/*
 * fleet_node.c: the replica of a fleet node, kept up to date from etcd (design section 8).
 * One thread, in the manager: sync, then follow (it blocks) until stopped; on failure,
 * back off and start over. The workers read the replica as they always do.
 */
#include "daemon/fleet_node.h"
#include "fleet/fleet.h"
#include "store/store.h"
#include "tls/cert.h"
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cb_fleet_node {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    _Atomic bool stop;
    bool unreachable;    /* start-up found etcd unreachable (logged there) */
    struct cb_store *st; /* the thread's own connection to the replica */
    struct cb_fleet *fleet;
};

/* "42s", or "never" for a replica that never heard from etcd. */
static void age_text(int64_t synced_at, char *buf, size_t size)
{
    if (synced_at <= 0)
        snprintf(buf, size, "never");
    else
        snprintf(buf, size, "%llds", (long long)(time(NULL) - synced_at));
}

static int open_fleet(const char *state_dir, const char *url, const char *key_path,
                      struct cb_store **st, struct cb_fleet **f, struct cb_err *err)
{
    int ret;

    *st = NULL;
    *f = NULL;
    if ((ret = cb_store_open(state_dir, CB_STORE_WRITE, st, err)) != 0)
        return ret;
    if ((ret = cb_fleet_open(url, key_path, *st, f, err)) != 0) {
        cb_store_close(*st);
        *st = NULL;
    }
    return ret;
}

int cb_fleet_node_startup(const char *state_dir, const char *url, const char *key_path,
                          bool *unreachable, struct cb_err *err)
{
    struct cb_store *st;
    struct cb_fleet *f;
    struct cb_err why = {0};
    char q[900], age[32];
    int ret;

    *unreachable = false;
    if ((ret = open_fleet(state_dir, url, key_path, &st, &f, err)) != 0)
        return ret;
    if (cb_fleet_sync(f, &why) == 0) {
        cb_log("info", "fleet_synced", "revision=%lld", (long long)cb_fleet_revision(f));
    } else if (why.code != CB_EIO) {
        /* etcd answered, and what it holds cannot be applied: not something to wait out. */
        ret = cb_err_set(err, why.code, "%s", why.msg);
    } else if (cb_fleet_revision(f) <= 0) {
        ret = cb_err_set(err, CB_EIO,
                         "%s; and this node has no replica of the fleet store in %s yet, so it "
                         "has nothing to serve: start it once etcd answers",
                         why.msg, state_dir);
    } else {
        *unreachable = true;
        age_text(cb_fleet_synced_at(f), age, sizeof(age));
        cb_log("warn", "fleet_unreachable",
               "reason=%s serving=replica revision=%lld age=%s consequence=\"changes made "
               "elsewhere reach this node once etcd answers\"",
               cb_log_quote(why.msg, q, sizeof(q)), (long long)cb_fleet_revision(f), age);
    }
    cb_fleet_close(f);
    cb_store_close(st);
    return ret;
}

/* Waits ms milliseconds, or less when the node is stopped. */
static void nap(struct cb_fleet_node *n, long ms)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&n->lock);
    while (!atomic_load(&n->stop) &&
           pthread_cond_timedwait(&n->wake, &n->lock, &until) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&n->lock);
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void *follow_main(void *arg)
{
    struct cb_fleet_node *n = arg;
    long backoff = CB_FLEET_BACKOFF_MIN_MS;
    bool unreachable = n->unreachable;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)n;
    char q[900], age[32];

    while (!atomic_load(&n->stop)) {
        struct cb_err err = {0};
        int64_t began = now_ms();
        int ret = cb_fleet_sync(n->fleet, &err);

        if (ret == 0) {
            if (unreachable)
                cb_log("info", "fleet_reconnected", "revision=%lld",
                       (long long)cb_fleet_revision(n->fleet));
            unreachable = false;
            began = now_ms();
            ret = cb_fleet_follow(n->fleet, &n->stop, NULL, NULL, &err);
            if (ret == 0)
                continue; /* stopped */
            /* The stream broke: sync again at once; a stream that keeps breaking soon
             * after it started backs off like an unreachable etcd. */
            if (now_ms() - began >= CB_FLEET_BACKOFF_MAX_MS) {
                backoff = CB_FLEET_BACKOFF_MIN_MS;
                continue;
            }
        }
        if (!unreachable) {
            unreachable = true;
            age_text(cb_fleet_synced_at(n->fleet), age, sizeof(age));
            cb_log("warn", "fleet_unreachable",
                   "reason=%s serving=replica revision=%lld age=%s retry=backoff",
                   cb_log_quote(err.msg, q, sizeof(q)), (long long)cb_fleet_revision(n->fleet),
                   age);
        }
        /* Jitter: between half and all of the backoff, so nodes do not retry in step. */
        long wait = backoff / 2 + (long)(rand_r(&seed) % (unsigned)(backoff / 2 + 1));
        nap(n, wait);
        backoff = backoff * 2 > CB_FLEET_BACKOFF_MAX_MS ? CB_FLEET_BACKOFF_MAX_MS : backoff * 2;
    }
    cb_cert_thread_done(); /* applying certificates parsed keys on this thread */
    return NULL;
}

int cb_fleet_node_start(const char *state_dir, const char *url, const char *key_path,
                        bool unreachable, struct cb_fleet_node **out, struct cb_err *err)
{
    struct cb_fleet_node *n = calloc(1, sizeof(*n));
    pthread_condattr_t ca;
    int ret;

    if (n == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    atomic_init(&n->stop, false);
    n->unreachable = unreachable;
    if ((ret = open_fleet(state_dir, url, key_path, &n->st, &n->fleet, err)) != 0)
        goto out_free;
    pthread_mutex_init(&n->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&n->thread, NULL, follow_main, n) != 0) {
        ret = cb_err_set(err, CB_ENOMEM, "cannot start the fleet follow thread");
        goto out_close;
    }
    *out = n;
    return 0;
out_close:
    pthread_cond_destroy(&n->wake);
    pthread_mutex_destroy(&n->lock);
    cb_fleet_close(n->fleet);
    cb_store_close(n->st);
out_free:
    free(n);
    return ret;
}

void cb_fleet_node_stop(struct cb_fleet_node *n)
{
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->lock);
    atomic_store(&n->stop, true);
    pthread_cond_broadcast(&n->wake);
    pthread_mutex_unlock(&n->lock);
    pthread_join(n->thread, NULL);
    pthread_cond_destroy(&n->wake);
    pthread_mutex_destroy(&n->lock);
    cb_fleet_close(n->fleet);
    cb_store_close(n->st);
    free(n);
}
