/*
 * acme_order.c: one order (see acme_order.h). The account key is made on first use
 * (state folder, keys/acme-account.key, 0600) and the account registered once; a new
 * key is made for every certificate. TLS-ALPN-01 challenges are published through the
 * store and checked against serve itself before the CA is told; DNS-01 ones go through
 * the hook. The issued certificate enters the store and the binding moves to it in one
 * transaction, as `deploy` does.
 */
#include "daemon/acme_order.h"
#include "acme/client.h"
#include "certstore/certstore.h"
#include "daemon/lease_key.h"
#include "daemon/acme_policy.h"
#include "daemon/fleet_node.h"
#include "etcd/etcd.h"
#include "fleet/fleet.h"
#include "store/acme.h"
#include "store/challenge.h"
#include "tls/acme_crypto.h"
#include "tls/io.h"
#include "tls/probe.h"
#include "util/log.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CB_ACME_PROBE_WINDOW_MS 5000
#define CB_ACME_LOCK_TTL_S 30       /* the order's lock (lease_key.h) */
#define CB_ACME_NODES_WAIT_MS 10000 /* for the other nodes to serve a challenge */
#define CB_ACME_NODES_POLL_MS 50

struct solver_ctx {
    struct cb_store *st;
    const struct cb_acme_settings *set;
    uint16_t port;
    const char *probe_host;    /* where this serve answers on that port */
    const volatile int *abort; /* serve is stopping: a hook still running is stopped */
    struct cb_fleet *fleet;    /* a fleet node's, else NULL */
    const char *node_id;       /* this node's presence key (fleet_node.h) */
};

static uint32_t rnd32(void)
{
    uint32_t r = 0;
    if (cb_tls_random(&r, sizeof(r)) != 0)
        r = (uint32_t)time(NULL);
    return r;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Runs `hook verb fqdn value` in a process group of its own, bounded by the timeout, and
 * stopped at once when serve stops (abort). */
static int run_hook(const char *hook, const char *verb, const char *fqdn, const char *value,
                    const volatile int *abort, struct cb_err *err)
{
    char *argv[] = {(char *)hook, (char *)verb, (char *)fqdn, (char *)value, NULL};
    posix_spawnattr_t attr;
    pid_t pid;
    int status = 0, rc;

    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    rc = posix_spawn(&pid, hook, NULL, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    if (rc != 0)
        return cb_err_set(err, CB_EFAILED, "the DNS hook %s cannot run: %s", hook, strerror(rc));
    for (long waited = 0;; waited += 50) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return cb_err_set(err, CB_EFAILED, "the DNS hook %s: %s", hook, strerror(errno));
        bool stopping = abort != NULL && *abort;
        if (waited >= CB_ACME_HOOK_TIMEOUT_S * 1000L || stopping) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (stopping)
                return cb_err_set(err, CB_EFAILED,
                                  "serve stopped while the DNS hook %s %s %s ran; it was stopped",
                                  hook, verb, fqdn);
            return cb_err_set(err, CB_EFAILED,
                              "the DNS hook %s %s %s did not finish within %d s; it was stopped",
                              hook, verb, fqdn, CB_ACME_HOOK_TIMEOUT_S);
        }
        sleep_ms(50); /* a child process has no event to wait on here but its exit */
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cb_err_set(err, CB_EFAILED, "the DNS hook %s %s %s failed (exit status %d)", hook,
                          verb, fqdn, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

/* The other live nodes whose presence value is below want (or unreadable): how many in
 * *behind, a list of their ids in buf ("…" when cut). 0, or CB_EIO when etcd did not answer. */
static int nodes_behind(struct cb_etcd *e, const char *prefix, const char *own, int64_t want,
                        size_t *behind, char *buf, size_t size, struct cb_err *err)
{
    struct cb_etcd_kvs kvs;
    size_t used = 0, plen = strlen(prefix);
    int ret;

    buf[0] = '\0';
    *behind = 0;
    if ((ret = cb_etcd_range_prefix(e, prefix, 0, &kvs, err)) != 0)
        return ret;
    for (size_t i = 0; i < kvs.n; i++) {
        const char *id = kvs.v[i].key + plen;
        int64_t acked;
        if (strcmp(id, own) == 0)
            continue;
        if (cb_fleet_node_parse_acked(kvs.v[i].value, kvs.v[i].value_len, &acked) == 0 &&
            acked >= want)
            continue;
        ++*behind;
        int w = snprintf(buf + used, size - used, "%s%s", used ? "," : "", id);
        if (w > 0 && (size_t)w < size - used)
            used += (size_t)w;
        else if (size >= 4)
            memcpy(buf + size - 4, "...", 4); /* cut */
    }
    cb_etcd_kvs_clear(&kvs);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * A fleet node's challenge goes to the others through etcd, and the CA may validate against
 * any of them: waits (at most CB_ACME_NODES_WAIT_MS) until every other live node says it
 * serves the challenges up to the revision that published this one (fleet_node.h). A node
 * that does not get there in time is logged, and the order goes on: the CA may still reach
 * a node that answers.
 */
static void wait_for_nodes(struct solver_ctx *sc, const char *name)
{
    struct cb_etcd *e = cb_fleet_etcd(sc->fleet);
    /* This order's own fleet handle: its last push is the challenge just put. */
    const int64_t want = cb_fleet_pushed_revision(sc->fleet), began = now_ms();
    char prefix[600], list[600], q[900];
    bool logged = false;
    struct cb_err err = {0};

    if (want <= 0)
        return; /* not published through etcd: nothing to wait for */
    snprintf(prefix, sizeof(prefix), "%s%s", cb_etcd_prefix(e), CB_FLEET_NODE_KEY);
    for (;;) {
        size_t behind;
        int64_t waited = now_ms() - began;
        if (nodes_behind(e, prefix, sc->node_id, want, &behind, list, sizeof(list), &err) != 0) {
            cb_log("warn", "acme_nodes_unknown",
                   "name=%s reason=%s consequence=\"the CA is told without knowing whether the "
                   "other nodes serve the challenge yet\"",
                   name, cb_log_quote(err.msg, q, sizeof(q)));
            return;
        }
        if (behind == 0) {
            if (logged)
                cb_log("info", "acme_nodes_ready", "name=%s revision=%lld waited_ms=%lld", name,
                       (long long)want, (long long)waited);
            return;
        }
        if (!logged)
            cb_log("info", "acme_nodes_wait", "name=%s revision=%lld nodes=%s", name,
                   (long long)want, list);
        logged = true;
        if (sc->abort != NULL && *sc->abort)
            return; /* serve is stopping: the order ends at its next step */
        if (waited >= CB_ACME_NODES_WAIT_MS) {
            cb_log("warn", "acme_nodes_lagging",
                   "name=%s revision=%lld nodes=%s waited_ms=%lld consequence=\"the CA may ask "
                   "a node that cannot answer yet; a failed validation is retried with "
                   "backoff\" fix=\"look at those nodes' logs (fleet_challenge_unserved, "
                   "fleet_presence_failed) or whether their serve is running\"",
                   name, (long long)want, list, (long long)waited);
            return;
        }
        sleep_ms(CB_ACME_NODES_POLL_MS);
    }
}

static int present(void *arg, const char *type, const char *identifier, const char *token,
                   const char *key_auth, struct cb_err *err)
{
    struct solver_ctx *sc = arg;
    (void)token;

    if (strcmp(type, "dns-01") == 0) {
        char value[44];
        if (sc->set->dnshook[0] == '\0')
            return cb_err_set(err, CB_EFAILED,
                              "%s needs DNS-01 and no DNS hook is set: certbind set acme "
                              "dnshook=PATH",
                              identifier);
        if (cb_acme_dns01_value(key_auth, value) != 0)
            return cb_err_set(err, CB_EFAILED, "cannot compute the DNS-01 value");
        return run_hook(sc->set->dnshook, "add", identifier, value, sc->abort, err);
    }
    char *cert = NULL, *key = NULL;
    int ret = cb_acme_alpn_cert(identifier, key_auth, &cert, &key, err);
    if (ret == 0)
        ret = cb_store_challenge_put(sc->st, identifier, cert, key, time(NULL) + 3600, err);
    if (key != NULL)
        cb_acme_secret_free(key, strlen(key));
    if (ret == 0)
        ret = cb_tls_alpn_probe_steady(sc->probe_host, sc->port, identifier, cert,
                                       CB_ACME_PROBE_WINDOW_MS, NULL, err);
    free(cert);
    if (ret == 0 && sc->fleet != NULL)
        wait_for_nodes(sc, identifier);
    return ret;
}

static void cleanup(void *arg, const char *type, const char *identifier, const char *token,
                    const char *key_auth)
{
    struct solver_ctx *sc = arg;
    struct cb_err err = {0};
    char q[900];
    (void)token;

    if (strcmp(type, "dns-01") == 0) {
        char value[44];
        if (sc->set->dnshook[0] != '\0' && cb_acme_dns01_value(key_auth, value) == 0 &&
            run_hook(sc->set->dnshook, "del", identifier, value, NULL, &err) != 0)
            cb_log("warn", "acme_hook_failed", "name=%s reason=%s", identifier,
                   cb_log_quote(err.msg, q, sizeof(q)));
        return;
    }
    if (cb_store_challenge_delete(sc->st, identifier, &err) != 0)
        cb_log("warn", "acme_challenge_left", "name=%s reason=%s", identifier,
               cb_log_quote(err.msg, q, sizeof(q)));
}

/* The account key: made (and saved 0600) on first use, its path kept in the settings. */
static int account_key(struct cb_store *st, struct cb_acme_settings *set, struct cb_acme_key **out,
                       struct cb_err *err)
{
    int ret;

    if (set->account_key_path[0] != '\0' && access(set->account_key_path, F_OK) == 0)
        return cb_acme_key_load(set->account_key_path, out, err);
    snprintf(set->account_key_path, sizeof(set->account_key_path), "%s/keys/acme-account.key",
             cb_store_dir(st));
    if ((ret = cb_acme_key_generate(CB_ACME_KEY_EC256, out, err)) != 0)
        return ret;
    if ((ret = cb_acme_key_save(*out, set->account_key_path, err)) != 0 ||
        (ret = cb_store_begin(st, err)) != 0)
        goto out_free;
    if ((ret = cb_store_acme_settings_put(st, set, err)) != 0 ||
        (ret = cb_store_commit(st, err)) != 0) {
        cb_store_rollback(st);
        goto out_free;
    }
    cb_log("info", "acme_account_key", "path=%s", set->account_key_path);
    return 0;
out_free:
    cb_acme_key_free(*out);
    *out = NULL;
    return ret;
}

/* The state at the start of an attempt: the request taken, the attempt recorded. */
static int mark_start(struct cb_store *st, struct cb_acme_state *s, int64_t now, struct cb_err *err)
{
    int ret;

    s->status = s->certhash[0] ? CB_ACME_RENEWING : CB_ACME_PENDING;
    s->last_attempt = now;
    s->renew_requested = 0;
    s->renew_force = false;
    if ((ret = cb_store_begin(st, err)) != 0)
        return ret;
    if ((ret = cb_store_acme_state_put(st, s, err)) != 0 || (ret = cb_store_commit(st, err)) != 0)
        cb_store_rollback(st);
    return ret;
}

/* Orders by result, kept in the store for the admin process's metrics (inside the caller's
 * transaction): acme.orders.valid, acme.orders.failed. */
static int count_order(struct cb_store *st, const char *result, struct cb_err *err)
{
    char name[64], value[32];
    unsigned long long n = 0;

    snprintf(name, sizeof(name), "acme.orders.%s", result);
    if (cb_store_setting_get(st, name, value, sizeof(value), NULL) == 0)
        n = strtoull(value, NULL, 10);
    snprintf(value, sizeof(value), "%llu", n + 1);
    return cb_store_setting_set(st, name, value, err);
}

/* A failed attempt: its state and its count, one transaction. */
static int record_failure(struct cb_store *st, const struct cb_acme_state *s, struct cb_err *err)
{
    int ret;

    if ((ret = cb_store_begin(st, err)) != 0)
        return ret;
    if ((ret = cb_store_acme_state_put(st, s, err)) != 0 ||
        (ret = count_order(st, "failed", err)) != 0 || (ret = cb_store_commit(st, err)) != 0)
        cb_store_rollback(st);
    return ret;
}

/* The issued chain and its key into the store, the binding moved to it, the state valid:
 * one transaction. */
static int bind_issued(struct cb_store *st, struct cb_acme_state *s, const char *chain,
                       size_t chain_len, const struct cb_acme_key *key, struct cb_err *err)
{
    char *pem = NULL;
    size_t pem_len = 0;
    char thumb[CB_THUMB_LEN + 1];
    int ret;

    if ((ret = cb_acme_key_pem(key, &pem, &pem_len, err)) != 0)
        return ret;
    if ((ret = cb_store_begin(st, err)) != 0)
        goto out_free;
    if ((ret = cb_certstore_import_pem(st, chain, chain_len, pem, pem_len, thumb, err)) != 0 ||
        (ret = cb_certstore_rebind(st, s->key, thumb, err)) != 0 ||
        (ret = cb_store_acme_state_put(st, s, err)) != 0 ||
        (ret = count_order(st, "valid", err)) != 0 || (ret = cb_store_commit(st, err)) != 0) {
        cb_store_rollback(st);
        goto out_free;
    }
    snprintf(s->certhash, sizeof(s->certhash), "%s", thumb);
out_free:
    cb_acme_secret_free(pem, pem_len);
    return ret;
}

/*
 * A fleet node's way in: the store's writes go to etcd (fleet on st), the binding's lock is
 * taken, and the replica caught up with etcd under it: *go false when another node holds
 * the lock, or when the order is not due any more (another node has just done it).
 */
static int fleet_enter(struct cb_acme_job *o, struct cb_store *st, struct cb_fleet **fleet,
                       struct cb_lease_key **lock, bool *go, struct cb_err *err)
{
    struct cb_acme_state s;
    char holder[256], host[128] = "", lock_key[CB_KEY_TEXT_MAX + 16];
    bool elsewhere;
    int64_t when;
    int ret;

    *go = false;
    if ((ret = cb_fleet_open(o->store_url, o->store_key, st, fleet, err)) != 0)
        return ret;
    gethostname(host, sizeof(host) - 1);
    snprintf(holder, sizeof(holder), "host=%s pid=%d state=%.100s", host, (int)getpid(),
             o->state_dir);
    snprintf(lock_key, sizeof(lock_key), "lock/acme/%s", o->key);
    if ((ret = cb_lease_key_take(o->store_url, lock_key, holder, CB_ACME_LOCK_TTL_S, true, lock,
                                 &elsewhere, err)) != 0)
        return ret;
    if (elsewhere) {
        cb_log("info", "acme_order_skipped",
               "binding=%s reason=\"another node of the fleet holds its lock\"", o->key);
        return 0;
    }
    if ((ret = cb_fleet_sync(*fleet, err)) != 0 ||
        (ret = cb_store_acme_state_get(st, o->key, &s, err)) != 0)
        return ret;
    if (cb_acme_due(&s, time(NULL), &when) != CB_ACME_DUE) {
        cb_log("info", "acme_order_skipped",
               "binding=%s reason=\"not due any more: another node of the fleet has ordered "
               "it\" certhash=%s",
               o->key, s.certhash);
        return 0;
    }
    *go = true;
    return 0;
}

void cb_acme_job_run(struct cb_acme_job *o)
{
    struct cb_acme_settings set;
    struct cb_acme_state s;
    struct cb_acme_key *akey = NULL, *ckey = NULL;
    struct cb_acme_client *client = NULL;
    struct cb_acme_result res = {0};
    struct cb_acme_problem prob = {0};
    struct cb_binding_key bk;
    struct cb_store *st = NULL;
    struct cb_fleet *fleet = NULL;
    struct cb_lease_key *lock = NULL;
    struct cb_err err = {0};
    int64_t now = time(NULL);
    int ret;

    o->ok = false;
    o->skipped = false;
    if ((ret = cb_store_open(o->state_dir, CB_STORE_READ, &st, &err)) != 0) {
        snprintf(o->error, sizeof(o->error), "%s", err.msg);
        goto out_close;
    }
    if (o->store_url != NULL) {
        bool go;
        if ((ret = fleet_enter(o, st, &fleet, &lock, &go, &err)) != 0) {
            snprintf(o->error, sizeof(o->error), "%s", err.msg);
            goto out_close;
        }
        if (!go) {
            o->skipped = true;
            goto out_close;
        }
    }
    if ((ret = cb_store_acme_settings_get(st, &set, &err)) != 0 ||
        (ret = cb_store_acme_state_get(st, o->key, &s, &err)) != 0) {
        snprintf(o->error, sizeof(o->error), "%s", err.msg);
        goto out_close;
    }
    if ((ret = cb_key_parse_word(o->key, &bk, &err)) != 0 ||
        (ret = mark_start(st, &s, now, &err)) != 0) {
        snprintf(o->error, sizeof(o->error), "%s", err.msg);
        goto out_close;
    }
    struct cb_acme_client_config cfg = {
        .directory_url = set.directory,
        .cafile = set.cafile[0] ? set.cafile : NULL,
        .email = set.email[0] ? set.email : NULL,
        .agree_tos = set.agreetos,
        .eab_kid = set.eab_kid[0] ? set.eab_kid : NULL,
        .eab_hmac_b64url = set.eab_hmac[0] ? set.eab_hmac : NULL,
        .timeout_s = 30,
        .abort = o->abort,
    };
    if ((ret = account_key(st, &set, &akey, &err)) != 0 ||
        (ret = cb_acme_client_new(&cfg, akey, &client, &err)) != 0)
        goto out_failed;
    if (set.account_url[0] == '\0') {
        if ((ret = cb_acme_account(client, set.account_url, sizeof(set.account_url), &prob,
                                   &err)) != 0)
            goto out_failed;
        if ((ret = cb_store_begin(st, &err)) != 0)
            goto out_failed;
        if ((ret = cb_store_acme_settings_put(st, &set, &err)) != 0 ||
            (ret = cb_store_commit(st, &err)) != 0) {
            cb_store_rollback(st);
            goto out_failed;
        }
        cb_log("info", "acme_account", "url=%s", set.account_url);
    }
    enum cb_acme_keytype kt =
        set.keytype == CB_ACME_KT_RSA ? CB_ACME_KEY_RSA2048 : CB_ACME_KEY_EC256;
    if ((ret = cb_acme_key_generate(kt, &ckey, &err)) != 0)
        goto out_failed;
    struct solver_ctx sc = {.st = st,
                            .set = &set,
                            .port = bk.port,
                            .probe_host = o->probe_host[0] ? o->probe_host : "127.0.0.1",
                            .abort = o->abort,
                            .fleet = fleet,
                            .node_id = o->node_id};
    struct cb_acme_solver solver = {.present = present, .cleanup = cleanup, .ctx = &sc};
    const char *names[] = {bk.host};
    if ((ret = cb_acme_obtain(client, names, 1, ckey, false, &solver, &res, &err)) != 0)
        goto out_failed;
    /* Renewal: inside the CA's window when it offers ACME Renewal Information. */
    struct cb_acme_renewal ari = {0, 0};
    struct cb_err ari_err = {0};
    if (cb_acme_renewal_window(client, res.chain_pem, &ari, &ari_err) != 0)
        ari.start = ari.end = 0;
    s.status = CB_ACME_VALID;
    s.failures = 0;
    s.last_error[0] = '\0';
    s.next_attempt = 0;
    s.not_after = res.not_after;
    s.renew_after = cb_acme_renew_at(res.not_before, res.not_after, ari.start, ari.end, rnd32());
    if ((ret = bind_issued(st, &s, res.chain_pem, res.chain_len, ckey, &err)) != 0)
        goto out_failed;
    o->ok = true;
    snprintf(o->thumb, sizeof(o->thumb), "%s", s.certhash);
    o->not_after = s.not_after;
    o->renew_after = s.renew_after;
    goto out_free;
out_failed:
    if (res.has_problem)
        prob = res.problem;
    if (prob.type[0] != '\0')
        snprintf(o->error, sizeof(o->error), "%.400s (the CA said: %s: %.400s)", err.msg, prob.type,
                 prob.detail);
    else
        snprintf(o->error, sizeof(o->error), "%s", err.msg[0] ? err.msg : "the order failed");
    if (o->abort != NULL && *o->abort) {
        /* serve is stopping: not a failure of the CA or the hook, and no backoff; the next
         * start takes it up again. */
        s.status = s.certhash[0] ? CB_ACME_VALID : CB_ACME_PENDING;
        s.next_attempt = 0;
        snprintf(o->error, sizeof(o->error), "interrupted: serve stopped during the order");
        if (cb_store_begin(st, &err) == 0 &&
            (cb_store_acme_state_put(st, &s, &err) != 0 || cb_store_commit(st, &err) != 0))
            cb_store_rollback(st);
        goto out_free;
    }
    s.status = CB_ACME_FAILED;
    s.failures++;
    s.next_attempt = cb_acme_next_attempt(s.failures, time(NULL), res.retry_after, rnd32());
    snprintf(s.last_error, sizeof(s.last_error), "%s", o->error);
    o->next_attempt = s.next_attempt;
    if (record_failure(st, &s, &err) != 0) {
        char q[900];
        cb_log("error", "acme_state_lost", "binding=%s reason=%s", o->key,
               cb_log_quote(err.msg, q, sizeof(q)));
    }
out_free:
    cb_acme_result_clear(&res);
    cb_acme_client_free(client);
    cb_acme_key_free(ckey);
    cb_acme_key_free(akey);
out_close:
    cb_lease_key_release(lock);
    cb_fleet_close(fleet);
    cb_store_close(st);
}
