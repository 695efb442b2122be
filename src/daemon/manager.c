/*
 * manager.c: the background process of `certbind serve`. Work that writes the store
 * or waits on the outside world runs here, never on a worker's loop:
 *  - the linked certificate files (`add cert … link=yes`), whose renewal on disk this
 *    process turns into a store change that the workers then pick up like any other;
 *  - ACME (design/bindings.md section 7): every second the managed bindings are looked
 *    at, and the first one due is ordered on a thread of libuv's pool (one order at a
 *    time), so that this loop still answers signals while a CA, a DNS hook or a
 *    validation takes its time;
 *  - a fleet node's replica (fleet_node.c): a thread follows etcd and applies its changes
 *    to the store in --state, which the workers then pick up like any other change;
 *  - OCSP stapling (section 9): on the same tick, the responses of the bound certificates
 *    are fetched and cached on the thread pool too (daemon/ocsp_fetch.h);
 *  - the session ticket keys (daemon/ticket_rotate.h), rotated when due, looked at every
 *    second: workers learn of a new key through the store's change log.
 */
#include "daemon/acme_order.h"
#include "daemon/acme_policy.h"
#include "daemon/fleet_node.h"
#include "daemon/ocsp_fetch.h"
#include "daemon/serve_int.h"
#include "daemon/ticket_rotate.h"
#include "daemon/watch.h"
#include "fleet/fleet.h"
#include "store/acme.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <time.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CB_MANAGER_POLL_MS 500
#define CB_ACME_TICK_MS 1000
#define CB_MANAGER_NICE 10     /* setpriority: below the workers */
#define CB_ACME_SKIP_PAUSE_S 5 /* a fleet node that found the lock taken looks again then */
#define CB_TICKET_TICK_MS 1000

struct manager {
    uv_loop_t loop;
    struct cb_store *st;
    struct cb_watch *watch;
    uv_timer_t poll;
    uv_signal_t sigterm, sigint, sighup;
    uint64_t data_version;
    const struct cb_serve_opts *opts;
    struct cb_fleet_node *fleet;        /* a fleet node's follow thread, or NULL */
    char node_id[CB_FLEET_NODE_ID_MAX]; /* its presence key's (fleet_node.h) */
    struct cb_fleet *push;              /* a fleet node: st's own writes go to etcd, or NULL */
    int64_t acme_held_until;            /* a fleet node: another node holds the lock; look later */
    /* ACME: one order at a time, on the thread pool. */
    uv_timer_t acme_tick;
    uv_work_t acme_work;
    struct cb_acme_job order;
    volatile int acme_abort; /* SIGTERM: the order stops at its next step */
    bool acme_busy, acme_recovered, stopping;
    struct cb_ocsp_fetcher *ocsp; /* NULL: another serve owns the state folder */
    uv_timer_t ticket_tick;
    bool ticket_failing; /* a failure is logged once, until a rotation works again */
};

/* ---- ACME ------------------------------------------------------------------ */

#define CB_ACME_BATCH 16 /* state writes collected during one walk of the store */

struct pick {
    int64_t now;
    char due[CB_KEY_TEXT_MAX]; /* the first binding due, "" none */
    /* Writes to make once the walk is over (the store is being read during it). */
    struct cb_acme_state put[CB_ACME_BATCH];
    size_t n_put;
};

/* Looks at one managed binding: the first due is taken; a request that is not forced
 * and finds nothing due is declined (cleared). */
static int on_state(const struct cb_acme_state *s, void *arg)
{
    struct pick *p = arg;
    int64_t when;

    switch (cb_acme_due(s, p->now, &when)) {
    case CB_ACME_DUE:
        if (p->due[0] == '\0')
            snprintf(p->due, sizeof(p->due), "%s", s->key);
        break;
    case CB_ACME_DECLINE:
        if (p->n_put == CB_ACME_BATCH)
            break; /* the next tick takes the rest */
        p->put[p->n_put] = *s;
        p->put[p->n_put].renew_requested = 0;
        p->put[p->n_put].renew_force = false;
        p->n_put++;
        cb_log("info", "acme_renew_declined",
               "binding=%s reason=\"not due; force=yes orders anyway\" renew_after=%lld", s->key,
               (long long)s->renew_after);
        break;
    case CB_ACME_NOT_DUE:
        break;
    }
    return 0;
}

/* An attempt cut short (serve stopped or crashed during it) is not under way any more. */
static int on_recover(const struct cb_acme_state *s, void *arg)
{
    struct pick *p = arg;
    if (s->status != CB_ACME_RENEWING || p->n_put == CB_ACME_BATCH)
        return 0;
    struct cb_acme_state *r = &p->put[p->n_put++];
    *r = *s;
    r->status = r->certhash[0] ? CB_ACME_VALID : CB_ACME_PENDING;
    r->next_attempt = p->now;
    return 0;
}

/* Makes the writes a walk collected, in one transaction. */
static void put_collected(struct manager *m, struct pick *p)
{
    struct cb_err err = {0};
    char q[900];

    if (p->n_put == 0)
        return;
    if (cb_store_begin(m->st, &err) == 0) {
        for (size_t i = 0; i < p->n_put; i++)
            if (cb_store_acme_state_put(m->st, &p->put[i], &err) != 0)
                goto out_rollback;
        if (cb_store_commit(m->st, &err) == 0)
            goto out_done;
    out_rollback:
        cb_store_rollback(m->st);
    }
    cb_log("error", "acme_state_failed", "reason=%s", cb_log_quote(err.msg, q, sizeof(q)));
out_done:
    p->n_put = 0;
}

/* Where this serve answers for its own self-check: the first listed address (its loopback
 * for a listed "any" address), else 127.0.0.1. */
static void probe_host(const struct cb_iplisten *l, char *buf, size_t size)
{
    static const uint8_t any[16];

    if (l->n == 0)
        snprintf(buf, size, "127.0.0.1");
    else if (memcmp(l->a[0].addr, any, l->a[0].family == AF_INET ? 4 : 16) == 0)
        snprintf(buf, size, "%s", l->a[0].family == AF_INET ? "127.0.0.1" : "::1");
    else
        inet_ntop(l->a[0].family, l->a[0].addr, buf, (socklen_t)size);
}

static void on_order_work(uv_work_t *req)
{
    struct manager *m = req->data;
    cb_acme_job_run(&m->order);
}

static void on_order_done(uv_work_t *req, int status)
{
    struct manager *m = req->data;
    char q[1200];
    (void)status;

    m->acme_busy = false;
    if (m->order.skipped) {
        m->acme_held_until = time(NULL) + CB_ACME_SKIP_PAUSE_S;
        return;
    }
    if (m->order.ok)
        cb_log("info", "acme_issued", "binding=%s certhash=%s not_after=%lld renew_after=%lld",
               m->order.key, m->order.thumb, (long long)m->order.not_after,
               (long long)m->order.renew_after);
    else
        cb_log("error", "acme_failed", "binding=%s reason=%s next_attempt_in_s=%lld", m->order.key,
               cb_log_quote(m->order.error, q, sizeof(q)),
               (long long)(m->order.next_attempt ? m->order.next_attempt - time(NULL) : 0));
}

static void on_acme_tick(uv_timer_t *t)
{
    struct manager *m = t->data;
    struct cb_err err = {0};
    struct pick p = {.now = time(NULL)};
    struct cb_acme_settings set;

    if (m->ocsp != NULL && !m->stopping)
        cb_ocsp_fetcher_tick(m->ocsp);
    if (m->acme_busy || m->stopping || !m->opts->acme_owner || p.now < m->acme_held_until)
        return;
    if (cb_store_acme_settings_get(m->st, &set, NULL) != 0)
        return; /* no account: nothing is managed */
    if (!m->acme_recovered) {
        m->acme_recovered = true;
        if (cb_store_acme_state_foreach(m->st, on_recover, &p, &err) != 0)
            return;
        put_collected(m, &p);
    }
    if (cb_store_acme_state_foreach(m->st, on_state, &p, &err) != 0)
        return;
    put_collected(m, &p);
    if (p.due[0] == '\0')
        return;
    memset(&m->order, 0, sizeof(m->order));
    snprintf(m->order.state_dir, sizeof(m->order.state_dir), "%s", m->opts->state_dir);
    snprintf(m->order.key, sizeof(m->order.key), "%s", p.due);
    m->order.abort = &m->acme_abort;
    if (m->opts->store_url[0] != '\0') {
        m->order.store_url = m->opts->store_url;
        m->order.store_key = m->opts->store_key[0] ? m->opts->store_key : NULL;
    }
    probe_host(&m->opts->iplisten, m->order.probe_host, sizeof(m->order.probe_host));
    memcpy(m->order.node_id, m->node_id, sizeof(m->order.node_id));
    m->acme_work.data = m;
    if (uv_queue_work(&m->loop, &m->acme_work, on_order_work, on_order_done) == 0) {
        m->acme_busy = true;
        cb_log("info", "acme_order", "binding=%s", p.due);
    }
}

/* ---- session ticket keys ----------------------------------------------------- */

static void on_ticket_tick(uv_timer_t *t)
{
    struct manager *m = t->data;
    struct cb_err err = {0};
    char q[900];

    if (m->stopping)
        return;
    if (cb_ticket_rotate(m->st, m->opts->ticket_period_s, &err) == 0) {
        m->ticket_failing = false;
        return;
    }
    if (!m->ticket_failing)
        cb_log("error", "ticket_keys_rotate_failed",
               "reason=%s consequence=\"the current keys stay in use; tried again every second\"",
               cb_log_quote(err.msg, q, sizeof(q)));
    m->ticket_failing = true;
}

/* The store changed (by a command, or by the watcher itself): linked files may differ. */
static void on_poll(uv_timer_t *t)
{
    struct manager *m = t->data;
    uint64_t v;

    if (cb_store_data_version(m->st, &v) != 0 || v == m->data_version)
        return;
    m->data_version = v;
    cb_watch_refresh(m->watch);
}

static void on_watch_change(void *arg)
{
    struct manager *m = arg;
    cb_watch_refresh(m->watch);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct manager *m = h->data;

    if (signum == SIGHUP) {
        cb_watch_refresh(m->watch);
        return;
    }
    m->stopping = true;
    m->acme_abort = 1; /* an order under way stops at its next step; the loop waits for it */
    if (m->ocsp != NULL)
        cb_ocsp_fetcher_stop(m->ocsp);
    cb_watch_close(m->watch);
    m->watch = NULL;
    uv_walk(&m->loop, close_walk, NULL);
}

int cb_manager_main(const struct cb_serve_opts *opts, int ready_fd)
{
    struct manager m = {.opts = opts};
    struct cb_err err = {0};
    char q[900];
    int status = 1;

    /* Background work (OCSP, ACME, linked files, the fleet replica): it waits on the outside
     * world, not on the CPU, so it yields the CPU to the workers' handshakes and to their
     * start-up (at 10^6 certificates its first OCSP scan takes ~3 s of CPU). A lower
     * priority only; it still runs whenever a core is free. */
    if (setpriority(PRIO_PROCESS, 0, CB_MANAGER_NICE) != 0)
        cb_log("warn", "manager_priority", "reason=\"setpriority: %s\"", strerror(errno));
    if (uv_loop_init(&m.loop) != 0) {
        cb_err_set(&err, CB_ENOMEM, "cannot make an event loop");
        goto out_log;
    }
    if (cb_store_open(opts->state_dir, CB_STORE_READ, &m.st, &err) != 0)
        goto out_loop;
    if (cb_store_data_version(m.st, &m.data_version) != 0)
        m.data_version = 0;
    if (opts->acme_owner && cb_ocsp_fetcher_new(&m.loop, m.st, &m.ocsp, &err) != 0)
        goto out_store;
    if (cb_watch_new(&m.loop, m.st, on_watch_change, &m, &m.watch, &err) != 0)
        goto out_store;
    if (opts->store_url[0] != '\0' &&
        cb_fleet_open(opts->store_url, opts->store_key[0] ? opts->store_key : NULL, m.st, &m.push,
                      &err) != 0)
        goto out_watch;
    char probe[64];
    probe_host(&opts->iplisten, probe, sizeof(probe));
    cb_fleet_node_id(opts->state_dir, m.node_id);
    if (opts->store_url[0] != '\0' &&
        cb_fleet_node_start(opts->state_dir, opts->store_url,
                            opts->store_key[0] ? opts->store_key : NULL, opts->fleet_unreachable,
                            probe, &m.fleet, &err) != 0)
        goto out_watch;
    cb_watch_refresh(m.watch);
    uv_timer_init(&m.loop, &m.poll);
    m.poll.data = &m;
    uv_timer_start(&m.poll, on_poll, CB_MANAGER_POLL_MS, CB_MANAGER_POLL_MS);
    uv_timer_init(&m.loop, &m.acme_tick);
    m.acme_tick.data = &m;
    uv_timer_start(&m.acme_tick, on_acme_tick, 0, CB_ACME_TICK_MS);
    uv_timer_init(&m.loop, &m.ticket_tick);
    m.ticket_tick.data = &m;
    uv_timer_start(&m.ticket_tick, on_ticket_tick, 0, CB_TICKET_TICK_MS);
    uv_signal_init(&m.loop, &m.sigterm);
    uv_signal_init(&m.loop, &m.sigint);
    uv_signal_init(&m.loop, &m.sighup);
    m.sigterm.data = m.sigint.data = m.sighup.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sighup, on_signal, SIGHUP);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (write(ready_fd, "R", 1) != 1)
        goto out_run; /* the master is gone: stop as on SIGTERM */
    close(ready_fd);
    ready_fd = -1;
    uv_run(&m.loop, UV_RUN_DEFAULT);
    status = 0;
out_run:
    cb_fleet_node_stop(m.fleet);
out_watch:
    if (m.watch != NULL) {
        cb_watch_close(m.watch);
        uv_walk(&m.loop, close_walk, NULL);
        uv_run(&m.loop, UV_RUN_DEFAULT);
    }
    cb_fleet_close(m.push);
out_store:
    cb_ocsp_fetcher_free(m.ocsp);
    cb_store_close(m.st);
out_loop:
    uv_loop_close(&m.loop);
out_log:
    if (status != 0)
        cb_log("error", "manager_failed", "reason=%s",
               cb_log_quote(err.msg[0] ? err.msg : "cannot start", q, sizeof(q)));
    return status;
}
