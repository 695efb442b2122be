/*
 * fleet_node.c: the replica of a fleet node, kept up to date from etcd (design section 8).
 * One thread, in the manager: sync, then follow (it blocks) until stopped; on failure,
 * back off and start over. The workers read the replica as they always do.
 */
#include "daemon/fleet_node.h"
#include "binding/binding.h"
#include "daemon/lease_key.h"
#include "fleet/fleet.h"
#include "store/acme.h"
#include "store/challenge.h"
#include "store/store.h"
#include "tls/probe.h"
#include "util/strindex.h"
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
#include <unistd.h>

struct cb_fleet_node {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    _Atomic bool stop;
    bool unreachable;    /* start-up found etcd unreachable (logged there) */
    struct cb_store *st; /* the thread's own connection to the replica */
    struct cb_fleet *fleet;
    char url[512];
    char id[CB_FLEET_NODE_ID_MAX];
    char probe_host[64];
    struct cb_lease_key *presence; /* NULL until etcd took it */
    bool presence_failing;         /* logged once */
    bool announced;                /* fleet_presence logged for the key held now */
    /* The pending challenges (names and certificates) last asked for, owned: not asked for
     * again until they change, whether this serve answered them (acknowledged) or not. */
    char *asked;
};

void cb_fleet_node_id(const char *state_dir, char out[CB_FLEET_NODE_ID_MAX])
{
    char host[64] = "";
    size_t k = 0;

    gethostname(host, sizeof(host) - 1);
    for (const char *c = host; *c != '\0' && k < sizeof(host) - 1; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '.';
        out[k++] = ok ? *c : '_';
    }
    if (k == 0)
        out[k++] = 'x';
    /* Two nodes on one host (or clones of one machine, which keep its host name) differ by
     * their state folder, or by their machine id (systemd gives a clone a new one). */
    char machine[64] = "";
    FILE *f = fopen("/etc/machine-id", "re");
    if (f != NULL) {
        if (fgets(machine, sizeof(machine), f) == NULL)
            machine[0] = '\0';
        fclose(f);
    }
    uint64_t h = cb_strindex_hash(state_dir) ^ (cb_strindex_hash(machine) * 31);
    snprintf(out + k, CB_FLEET_NODE_ID_MAX - k, "-%012llx",
             (unsigned long long)(h & 0xffffffffffffULL));
}

int cb_fleet_node_parse_acked(const void *value, size_t len, int64_t *rev)
{
    const unsigned char *v = value;
    int64_t r = 0;

    if (len == 0 || len > 19)
        return CB_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return CB_EINVAL;
        int d = v[i] - '0';
        if (r > (INT64_MAX - d) / 10)
            return CB_EINVAL;
        r = r * 10 + d;
    }
    *rev = r;
    return 0;
}

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

/* The port the CA validates `name` on: that of a managed binding hostnameport=name:PORT. */
struct port_of {
    const char *name;
    uint16_t port;
};

static int port_of_fn(const struct cb_acme_state *s, void *ctx)
{
    struct port_of *p = ctx;
    struct cb_binding_key bk;
    if (cb_key_parse_word(s->key, &bk, NULL) == 0 && bk.kind == CB_KEY_HOST &&
        strcmp(bk.host, p->name) == 0) {
        p->port = bk.port;
        return 1;
    }
    return 0;
}

/* Puts the presence key when it is not held yet. */
static int presence_take(struct cb_fleet_node *n)
{
    struct cb_err err = {0};
    char key[CB_FLEET_NODE_ID_MAX + 16], q[900];
    bool elsewhere;

    if (n->presence != NULL)
        return 0;
    snprintf(key, sizeof(key), "%s%s", CB_FLEET_NODE_KEY, n->id);
    if (cb_lease_key_take(n->url, key, "0", CB_FLEET_NODE_TTL_S, false, &n->presence, &elsewhere,
                          &err) == 0) {
        n->presence_failing = false;
        n->announced = false;
        free(n->asked);
        n->asked = NULL; /* the value is 0 again: acknowledged anew */
        return 0;
    }
    if (!n->presence_failing)
        cb_log("warn", "fleet_presence_failed",
               "node=%s reason=%s consequence=\"a node that orders a certificate does not wait "
               "for this one to serve its challenge; tried again at the next change\"",
               n->id, cb_log_quote(err.msg, q, sizeof(q)));
    n->presence_failing = true;
    return CB_EIO;
}

/* The challenges as one text (names and certificates), owned; NULL when out of memory. */
static char *challenges_text(const struct cb_challenge *v, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i].name) + strlen(v[i].cert_pem) + 2;
    char *t = malloc(len), *p = t;
    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s\n%s\n", v[i].name, v[i].cert_pem);
    *p = '\0';
    return t;
}

/*
 * After the replica reached rev: when the pending challenges changed since they were last
 * asked for, asks this serve for each (every worker answers it with that certificate, as
 * the CA will ask), then puts rev as the presence value. A challenge this serve does not
 * answer is logged and not acknowledged, and not asked for again until the challenges
 * change: the ordering node stops waiting at its own deadline.
 */
static void presence_update(struct cb_fleet_node *n, int64_t rev)
{
    struct cb_challenge *v = NULL;
    struct cb_err err = {0};
    size_t count = 0, served = 0;
    char value[24], q[900];
    char *text = NULL;

    if (presence_take(n) != 0)
        return;
    if (cb_store_challenges_load(n->st, &v, &count, &err) != 0 ||
        (text = challenges_text(v, count)) == NULL) {
        cb_log("warn", "fleet_presence_failed", "node=%s reason=%s", n->id,
               cb_log_quote(err.msg[0] ? err.msg : "out of memory", q, sizeof(q)));
        goto out_free;
    }
    if (n->asked != NULL && strcmp(text, n->asked) == 0)
        goto out_free;
    free(n->asked);
    n->asked = text;
    text = NULL;
    for (size_t i = 0; i < count; i++) {
        struct port_of p = {.name = v[i].name};
        int found = cb_store_acme_state_foreach(n->st, port_of_fn, &p, &err);
        if (found < 0) {
            cb_log("warn", "fleet_presence_failed", "node=%s name=%s reason=%s", n->id, v[i].name,
                   cb_log_quote(err.msg, q, sizeof(q)));
            goto out_free;
        }
        if (p.port == 0)
            continue; /* no managed binding of that name: the CA is not sent here */
        if (cb_tls_alpn_probe_steady(n->probe_host, p.port, v[i].name, v[i].cert_pem,
                                     CB_FLEET_NODE_PROBE_MS, &n->stop, &err) != 0) {
            if (!atomic_load(&n->stop))
                cb_log("warn", "fleet_challenge_unserved",
                       "node=%s name=%s reason=%s consequence=\"the CA may fail the validation "
                       "if it asks this node\" fix=\"check that this serve listens on %s port "
                       "%u (--iplisten) and its workers run\"",
                       n->id, v[i].name, cb_log_quote(err.msg, q, sizeof(q)), n->probe_host,
                       p.port);
            goto out_free;
        }
        served++;
    }
    snprintf(value, sizeof(value), "%lld", (long long)rev);
    if (cb_lease_key_set(n->presence, value, &err) != 0) {
        cb_log("warn", "fleet_presence_failed",
               "node=%s reason=%s consequence=\"a node that orders a certificate waits for this "
               "one until its deadline\"",
               n->id, cb_log_quote(err.msg, q, sizeof(q)));
        free(n->asked);
        n->asked = NULL; /* tried again at the next change */
        goto out_free;
    }
    if (!n->announced)
        cb_log("info", "fleet_presence", "node=%s revision=%lld", n->id, (long long)rev);
    n->announced = true;
    if (served > 0)
        cb_log("info", "fleet_challenges_served", "node=%s challenges=%zu revision=%lld", n->id,
               served, (long long)rev);
out_free:
    free(text);
    cb_challenges_free(v, count);
}

static void on_applied(int64_t rev, void *ctx)
{
    presence_update(ctx, rev);
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
            presence_update(n, cb_fleet_revision(n->fleet));
            began = now_ms();
            ret = cb_fleet_follow(n->fleet, &n->stop, on_applied, n, &err);
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
                        bool unreachable, const char *probe_host, struct cb_fleet_node **out,
                        struct cb_err *err)
{
    struct cb_fleet_node *n = calloc(1, sizeof(*n));
    pthread_condattr_t ca;
    int ret;

    if (n == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    atomic_init(&n->stop, false);
    n->unreachable = unreachable;
    snprintf(n->url, sizeof(n->url), "%s", url);
    snprintf(n->probe_host, sizeof(n->probe_host), "%s", probe_host);
    cb_fleet_node_id(state_dir, n->id);
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
    cb_lease_key_release(n->presence);
    free(n->asked);
    pthread_cond_destroy(&n->wake);
    pthread_mutex_destroy(&n->lock);
    cb_fleet_close(n->fleet);
    cb_store_close(n->st);
    free(n);
}
