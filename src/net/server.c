/*
 * server.c: one worker's TLS front as a whole (net/server.h): made, given a runtime to
 * serve from, drained and freed. Its parts are in listen.c, accept.c, handoff.c,
 * conn.c and relay.c (see server_int.h).
 */
#include "net/handoff.h"
#include "net/server_int.h"
#include "tls/cert.h"
#include "tls/ticket.h"
#include "util/log.h"

#include <stdlib.h>
#include <unistd.h>

void cb_server_count(struct cb_server *srv, enum cb_gmetric k)
{
    if (srv->cfg.stats != NULL)
        cb_metric_add(&cb_metrics_writer_area(srv->cfg.stats)->g[k], 1);
}

/*
 * libuv runs close callbacks newest first, so the server's own handles may finish
 * closing before those of connections closed just before them: the server is freed
 * only when both are done.
 */
static void server_free_when_closed(struct cb_server *srv)
{
    if (srv->closing == 0 && srv->conns_closing == 0 && srv->parse_jobs == 0)
        free(srv);
}

void cb_server_publish_cache(struct cb_server *srv)
{
    struct cb_tls_cache_stats s;

    if (srv->cfg.stats == NULL || srv->rt == NULL || srv->rt->cache == NULL)
        return;
    cb_tls_cache_get_stats(srv->rt->cache, &s);
    if (s.id != srv->cache_pub_id) { /* a new cache (a full re-read): its count starts at 0 */
        srv->cache_pub_id = s.id;
        srv->cache_pub_evictions = 0;
    }
    _Atomic uint64_t *g = cb_metrics_writer_area(srv->cfg.stats)->g;
    cb_metric_add(&g[CB_GMETRIC_CERT_CACHE_EVICTIONS], s.evictions - srv->cache_pub_evictions);
    srv->cache_pub_evictions = s.evictions;
    cb_metric_set(&g[CB_GMETRIC_CERT_CACHE_CERTS], s.parsed);
    cb_metric_set(&g[CB_GMETRIC_CERT_CACHE_BYTES], s.bytes);
    cb_metric_set(&g[CB_GMETRIC_CERT_CACHE_LIMIT], s.limit);
}

void cb_server_parse_done(struct cb_server *srv)
{
    srv->parse_jobs--;
    if (srv->freeing)
        server_free_when_closed(srv);
}

void cb_server_conn_freed(struct cb_server *srv)
{
    srv->conns_closing--;
    if (srv->freeing) {
        server_free_when_closed(srv);
        return;
    }
    if (srv->draining && srv->n_conns == 0 && srv->on_drained != NULL)
        srv->on_drained(srv);
}

int cb_server_new(uv_loop_t *loop, const struct cb_server_config *cfg, struct cb_server **out,
                  struct cb_err *err)
{
    struct cb_server *srv = calloc(1, sizeof(*srv));

    if (srv == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->default_ctx = cb_tls_default_ctx(cb_conn_on_client_hello);
    if (srv->default_ctx == NULL) {
        free(srv);
        cb_err_set(err, CB_ETLS, "cannot create the TLS context");
        cb_tls_err_append(err);
        return CB_ETLS;
    }
    /* Session tickets under the store's shared keys, which each runtime brings along. */
    if (cb_tls_tickets_attach(srv->default_ctx) != 0) {
        cb_tls_ctx_free(srv->default_ctx);
        free(srv);
        return cb_err_set(err, CB_ETLS, "cannot set up session tickets");
    }
    loop->data = srv;
    if (srv->cfg.handoff_rx >= 0 && srv->cfg.workers > 1) {
        if (uv_poll_init(loop, &srv->handoff_poll, srv->cfg.handoff_rx) != 0) {
            cb_tls_ctx_free(srv->default_ctx);
            free(srv);
            return cb_err_set(err, CB_EIO, "cannot watch the connections other workers pass");
        }
        srv->handoff_poll.data = srv;
        uv_poll_start(&srv->handoff_poll, UV_READABLE, cb_handoff_on_inbox);
        srv->handoff_polling = true;
    }
    uv_timer_init(loop, &srv->accept_pause);
    srv->accept_pause.data = srv;
    uv_timer_init(loop, &srv->grace);
    srv->grace.data = srv;
    *out = srv;
    return 0;
}

struct cb_runtime *cb_server_runtime(const struct cb_server *srv)
{
    return srv->rt;
}

void cb_server_swap_runtime(struct cb_server *srv, struct cb_runtime *rt)
{
    struct cb_runtime *old = srv->rt;
    if (rt == old)
        return;
    srv->rt = cb_runtime_ref(rt);
    cb_tls_tickets_use(srv->default_ctx, rt->tickets);
    cb_server_publish_cache(srv);
    /* Open connections go on counting against their binding's cap in the new runtime:
     * counted there already when it carries old's counts (cb_runtime_derive), else now. */
    bool carried = old != NULL && rt->counts_of == old;
    for (struct cb_conn *c = srv->conns; c != NULL; c = c->next) {
        struct cb_binding_key key;
        uint32_t *n = NULL;
        long i;
        if (!c->counted)
            continue;
        if (cb_key_parse_word(c->binding->key_text, &key, NULL) != 0 ||
            (i = cb_snapshot_find(rt->snap, &key)) < 0 ||
            (!carried && (n = cb_cow_mut(&rt->active, (size_t)i)) == NULL)) {
            /* The binding is gone: there is no cap left to hold (or, out of memory for
             * its part, it is not counted: the cap errs on letting one more in). */
            c->counted = false;
            continue;
        }
        c->cap_idx = (uint32_t)i;
        if (n != NULL)
            (*n)++;
    }
    cb_runtime_unref(old); /* connections still on it keep their own references */
}

size_t cb_server_connections(const struct cb_server *srv)
{
    return srv->n_conns;
}

static void on_grace(uv_timer_t *t)
{
    struct cb_server *srv = t->data;
    if (srv->n_conns > 0)
        cb_log("warn", "drain_timeout", "worker=%d closing=%zu", srv->cfg.worker, srv->n_conns);
    while (srv->conns != NULL)
        cb_conn_close(srv->conns);
    if (srv->on_drained != NULL && srv->n_conns == 0)
        srv->on_drained(srv);
}

void cb_server_drain(struct cb_server *srv, void (*on_drained)(struct cb_server *srv))
{
    struct cb_err err;

    srv->draining = true;
    srv->on_drained = on_drained;
    if (cb_server_listen(srv, NULL, 0, &err) != 0)
        return;
    uv_timer_stop(&srv->accept_pause);
    /* Connections that have not asked anything yet are closed now, as an idle
     * keep-alive connection would be: only requests in flight get the grace period. */
    bool closed = false;
    for (struct cb_conn *c = srv->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->state == CB_CONN_WAIT) {
            cb_tls_shutdown(c->ssl);
            cb_conn_close(c);
            closed = true;
        }
    }
    if (srv->n_conns == 0) {
        if (!closed) /* else the last close callback reports the drain */
            on_drained(srv);
        return;
    }
    uv_timer_start(&srv->grace, on_grace, srv->cfg.grace_ms, 0);
}

static void on_server_handle_closed(uv_handle_t *h)
{
    struct cb_server *srv = h->data;
    srv->closing--;
    server_free_when_closed(srv);
}

void cb_server_free(struct cb_server *srv)
{
    struct cb_err err;

    if (srv == NULL)
        return;
    srv->on_drained = NULL;
    while (srv->conns != NULL)
        cb_conn_close(srv->conns);
    if (cb_server_listen(srv, NULL, 0, &err) != 0)
        return;
    cb_runtime_unref(srv->rt);
    srv->rt = NULL;
    cb_tls_ctx_free(srv->default_ctx);
    srv->default_ctx = NULL;
    /* srv is freed when its last handle and connection have closed, on a later loop turn. */
    srv->closing = 2;
    srv->freeing = true;
    if (srv->handoff_polling) {
        /* What other workers passed and this one will never serve: closed now, not when
         * the master (which holds the socket for a restart) exits. */
        struct cb_handoff_msg m;
        int fd, flags;
        while (cb_handoff_recv(srv->cfg.handoff_rx, &m, &fd, &flags) >= 0)
            if (fd >= 0)
                close(fd);
        srv->closing++;
        uv_close((uv_handle_t *)&srv->handoff_poll, on_server_handle_closed);
    }
    uv_close((uv_handle_t *)&srv->accept_pause, on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->grace, on_server_handle_closed);
}
