/*
 * conn.c: the life of one client connection: its states and the table of the moves
 * between them (net/conn_state.h), its start, handshake, timer and teardown, and the
 * ClientHello callback, the one place a certificate is chosen. Nothing on the handshake
 * path allocates beyond OpenSSL's own objects, locks, or scans: the choice is one
 * cb_hello_choose() call.
 *
 * Each connection is one or two non-blocking sockets watched with uv_poll: the client's,
 * driven through OpenSSL, and once connected the backend's (relay.c). One timer per
 * connection: the handshake deadline, the backend's connect deadline, or the idle
 * timeout, depending on the state.
 */
#include "net/server_int.h"
#include "tls/hello.h"
#include "tls/staple.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- states -------------------------------------------------------------- */

bool cb_conn_enter(struct cb_conn *c, enum cb_conn_state to)
{
    if (cb_conn_transition_ok(c->state, to)) {
        c->state = to;
        return true;
    }
    cb_log("error", "conn_state", "worker=%d from=%s to=%s reason=\"illegal transition\"",
           c->srv->cfg.worker, cb_conn_state_name(c->state), cb_conn_state_name(to));
    assert(!"illegal connection state transition");
    cb_conn_close(c);
    return false;
}

/* ---- logging and counting ------------------------------------------------ */

void cb_conn_addr_text(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)ss;
        inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
        snprintf(buf, size, "%s:%u", a, ntohs(s->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
        snprintf(buf, size, "[%s]:%u", a, ntohs(s->sin6_port));
    } else {
        snprintf(buf, size, "?");
    }
}

void cb_conn_log(struct cb_conn *c, const char *level, const char *event, const char *reason)
{
    char peer[64], local[64], q[600], sni[300];
    cb_conn_addr_text(&c->peer, peer, sizeof(peer));
    cb_conn_addr_text(&c->local, local, sizeof(local));
    cb_log(level, event, "worker=%d client=%s local=%s sni=%s binding=%s reason=%s",
           c->srv->cfg.worker, peer, local,
           c->sni[0] ? cb_log_quote(c->sni, sni, sizeof(sni)) : "-",
           c->binding ? c->binding->key_text : "-", cb_log_quote(reason, q, sizeof(q)));
}

/* The counters of the binding chosen for c (NULL when none, or nothing is counted). */
static struct cb_metrics_entry *binding_metrics(struct cb_conn *c)
{
    if (c->srv->cfg.stats == NULL || c->binding == NULL)
        return NULL;
    struct cb_metrics_entry *const *found = cb_cow_at(&c->rt->stat, c->bidx);
    if (*found != NULL)
        return *found;
    struct cb_metrics_entry *e = cb_metrics_entry_get(c->srv->cfg.stats, c->binding->key_text);
    /* Kept for the next connection (in c's runtime's own copy of the part: a runtime
     * sharing it may be in service elsewhere); out of memory, looked up again then. */
    struct cb_metrics_entry **slot = cb_cow_mut(&c->rt->stat, c->bidx);
    if (slot != NULL)
        *slot = e;
    return e;
}

/* A failed handshake, counted once: under its binding when one was chosen. */
static void count_failure(struct cb_conn *c, enum cb_metric k, enum cb_gmetric gk)
{
    if (c->failure_counted)
        return;
    c->failure_counted = true;
    struct cb_metrics_entry *e = binding_metrics(c);
    if (e != NULL)
        cb_metric_add(&e->v[k], 1);
    else
        cb_server_count(c->srv, gk);
}

/* ---- teardown ------------------------------------------------------------ */

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct cb_conn *c = h->data;
    if (--c->pending_closes > 0)
        return;
    struct cb_server *srv = c->srv;
    free(c);
    cb_server_conn_freed(srv);
}

/* ---- first parse of a certificate, off the loop ------------------------------ */

static void do_handshake(struct cb_conn *c);

struct parse_job {
    uv_work_t req;
    struct cb_tls_load *load;
    struct cb_server *srv;
};

static void unpause(struct cb_conn *c)
{
    struct cb_server *srv = c->srv;

    if (c->paused_on == NULL)
        return;
    if (c->pprev)
        c->pprev->pnext = c->pnext;
    else
        srv->paused = c->pnext;
    if (c->pnext)
        c->pnext->pprev = c->pprev;
    c->pprev = c->pnext = NULL;
    c->paused_on = NULL;
}

static void on_parse_work(uv_work_t *req)
{
    struct parse_job *j = req->data;
    cb_tls_load_run(j->load);
}

/* Back on the loop: the certificate is parsed (or known broken); every handshake that
 * waited for it goes on. */
static void on_parse_done(uv_work_t *req, int status)
{
    struct parse_job *j = req->data;
    struct cb_server *srv = j->srv;
    (void)status;

    cb_tls_load_finish(j->load);
    free(j);
    cb_server_count(srv, CB_GMETRIC_CERTS_LOADED);
    cb_server_publish_cache(srv);
    for (struct cb_conn *c = srv->paused, *next; c != NULL; c = next) {
        next = c->pnext;
        if (cb_tls_entry_loading(c->paused_on))
            continue;
        unpause(c);
        do_handshake(c);
    }
    cb_server_parse_done(srv);
}

/* Pauses c's handshake until e is parsed, starting the parse if nobody has. Returns false
 * when the parse cannot be run off the loop (the caller then parses it here). */
static bool pause_for(struct cb_conn *c, const struct cb_tls_entry *e)
{
    struct cb_server *srv = c->srv;

    if (!cb_tls_entry_loading(e)) {
        struct parse_job *j = calloc(1, sizeof(*j));
        if (j == NULL || (j->load = cb_tls_load_begin(e)) == NULL) {
            free(j);
            return false;
        }
        j->srv = srv;
        j->req.data = j;
        if (uv_queue_work(srv->loop, &j->req, on_parse_work, on_parse_done) != 0) {
            cb_tls_load_cancel(j->load);
            free(j);
            return false;
        }
        srv->parse_jobs++;
        c->parse_started = true;
    }
    c->paused_on = e;
    c->waited_parse = true;
    c->pprev = NULL;
    c->pnext = srv->paused;
    if (srv->paused)
        srv->paused->pprev = c;
    srv->paused = c;
    return true;
}

void cb_conn_close(struct cb_conn *c)
{
    struct cb_server *srv = c->srv;

    if (c->state == CB_CONN_CLOSED)
        return;
    assert(cb_conn_transition_ok(c->state, CB_CONN_CLOSED));
    c->state = CB_CONN_CLOSED;
    unpause(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    srv->conns_closing++;
    c->pending_closes = 1;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    c->pending_closes++;
    uv_close((uv_handle_t *)&c->cpoll, on_conn_handle_closed);
    if (c->bfd >= 0) {
        c->pending_closes++;
        uv_close((uv_handle_t *)&c->bpoll, on_conn_handle_closed);
        close(c->bfd);
        c->bfd = -1;
    }
    cb_tls_conn_free(c->ssl);
    c->ssl = NULL;
    close(c->cfd);
    if (c->counted) {
        /* Out of memory for the part's copy, the count stays one high: the cap errs on
         * refusing, never on letting more in. */
        uint32_t *n = cb_cow_mut(&srv->rt->active, c->cap_idx);
        if (n != NULL)
            (*n)--;
    }
    if (srv->cfg.stats != NULL) {
        cb_metric_sub(&cb_metrics_writer_area(srv->cfg.stats)->g[CB_GMETRIC_OPEN], 1);
        if (c->st != NULL)
            cb_metric_sub(&c->st->v[CB_METRIC_OPEN], 1);
    }
    free(c->c2b.data);
    free(c->b2c.data);
    c->c2b.data = c->b2c.data = NULL;
    cb_runtime_unref(c->rt);
    c->rt = NULL;
}

void cb_conn_fail(struct cb_conn *c, const char *event, const char *reason)
{
    cb_conn_log(c, "warn", event, reason);
    cb_conn_close(c);
}

/* ---- ClientHello: the one place a certificate is chosen ------------------ */

/* Over the per-binding cap: refused (logged at most once a second), true. */
static bool over_binding_cap(struct cb_conn *c, uint32_t binding, int *alert)
{
    struct cb_server *srv = c->srv;

    if (*(const uint32_t *)cb_cow_at(&c->rt->active, binding) < srv->cfg.max_conns_binding)
        return false;
    srv->refused_binding++;
    if (uv_now(srv->loop) - srv->last_refusal_log >= 1000) {
        srv->last_refusal_log = uv_now(srv->loop);
        cb_log("warn", "connection_cap", "worker=%d binding=%s cap=%u refused_total=%llu",
               srv->cfg.worker, c->binding->key_text, srv->cfg.max_conns_binding,
               (unsigned long long)srv->refused_binding);
    }
    count_failure(c, CB_METRIC_FAIL_CAPACITY, CB_GMETRIC_CAPACITY);
    *alert = cb_tls_alert_handshake_failure();
    return true;
}

/*
 * An ACME server's TLS-ALPN-01 validation (RFC 8737): the challenge certificate, or a
 * refusal that says why. It is nobody's binding: no cap, no backend, no request counted.
 */
static int on_validation(struct cb_conn *c, SSL *ssl, enum cb_hello_outcome o,
                         const struct cb_hello_choice *ch, int *alert)
{
    if (o == CB_HELLO_NO_CHALLENGE) {
        count_failure(c, CB_METRIC_FAIL_PROTOCOL, CB_GMETRIC_PROTOCOL);
        cb_conn_log(c, "warn", "handshake_failed", ch->error);
        return CB_TLS_HELLO_REFUSE;
    }
    if (cb_tls_apply_challenge(ssl, ch->challenge) != 0) {
        count_failure(c, CB_METRIC_FAIL_KEY, CB_GMETRIC_PROTOCOL);
        cb_conn_log(c, "warn", "handshake_failed",
                    "the TLS library refused the challenge certificate and key");
        *alert = cb_tls_alert_internal_error();
        return CB_TLS_HELLO_REFUSE;
    }
    c->validation = true;
    return CB_TLS_HELLO_OK;
}

int cb_conn_on_client_hello(SSL *ssl, int *alert, void *arg)
{
    struct cb_conn *c = cb_tls_conn_owner(ssl);
    struct cb_server *srv = c->srv;
    struct cb_runtime *rt = c->rt;
    struct cb_hello_choice ch;
    (void)arg;

    /* A second ClientHello (after HelloRetryRequest) keeps the first one's choice. */
    if (c->binding != NULL || c->validation)
        return CB_TLS_HELLO_OK;
    /* Nothing was chosen yet: resolve against the newest bindings (and count there). */
    if (rt != srv->rt) {
        cb_runtime_unref(rt);
        rt = c->rt = cb_runtime_ref(srv->rt);
    }
    /* A certificate not parsed yet is parsed on the thread pool, the handshake paused
     * meanwhile: the loop goes on serving everyone else. */
    enum cb_hello_outcome o = cb_hello_choose(ssl, rt->snap, &rt->bind_tls, rt->file_tls,
                                              rt->challenges, &c->local, true, &ch);
    if (o == CB_HELLO_UNPARSED) {
        if (pause_for(c, ch.tls))
            return CB_TLS_HELLO_RETRY;
        o = cb_hello_choose(ssl, rt->snap, &rt->bind_tls, rt->file_tls, rt->challenges, &c->local,
                            false, &ch);
        if (ch.loaded_now) /* parsed here after all (counted in on_parse_done otherwise) */
            cb_server_count(srv, CB_GMETRIC_CERTS_LOADED);
    }
    if (o == CB_HELLO_CHOSEN && !ch.loaded_now && !c->waited_parse)
        cb_server_count(srv, CB_GMETRIC_CERT_CACHE_HITS);
    cb_server_publish_cache(srv);
    if (c->parse_started) { /* the parse this handshake asked for: it reports a broken one */
        ch.loaded_now = true;
        c->parse_started = false;
    }
    memcpy(c->sni, ch.sni, strlen(ch.sni) + 1);
    *alert = ch.alert;
    if (o == CB_HELLO_CHALLENGE || o == CB_HELLO_NO_CHALLENGE)
        return on_validation(c, ssl, o, &ch, alert);
    if (o == CB_HELLO_BAD_SNI) {
        count_failure(c, CB_METRIC_FAIL_PROTOCOL, CB_GMETRIC_PROTOCOL);
        cb_conn_log(c, "warn", "handshake_failed", "malformed server_name");
        return CB_TLS_HELLO_REFUSE;
    }
    if (o == CB_HELLO_NO_BINDING) {
        count_failure(c, CB_METRIC_FAIL_PROTOCOL, CB_GMETRIC_NO_BINDING);
        cb_conn_log(c, "warn", "handshake_failed", "no binding matches");
        return CB_TLS_HELLO_REFUSE;
    }
    c->binding = ch.b;
    c->bidx = ch.binding;
    if (o == CB_HELLO_REJECTED) {
        count_failure(c, CB_METRIC_FAIL_REJECTED, CB_GMETRIC_PROTOCOL);
        cb_conn_log(c, "warn", "handshake_failed", "binding is set reject=enable");
        return CB_TLS_HELLO_REFUSE;
    }
    if (o == CB_HELLO_UNUSABLE) {
        /* Never another binding's certificate: fail, and say why. */
        if (ch.loaded_now) {
            char q[900];
            cb_log("error", "binding_broken", "worker=%d binding=%s reason=%s", srv->cfg.worker,
                   c->binding->key_text, cb_log_quote(ch.error, q, sizeof(q)));
        }
        count_failure(c, CB_METRIC_FAIL_KEY, CB_GMETRIC_PROTOCOL);
        cb_conn_log(c, "warn", "handshake_failed", ch.error);
        return CB_TLS_HELLO_REFUSE;
    }
    if (srv->cfg.max_conns_binding != 0) {
        uint32_t *n;
        if (over_binding_cap(c, ch.binding, alert))
            return CB_TLS_HELLO_REFUSE;
        if ((n = cb_cow_mut(&rt->active, ch.binding)) == NULL) {
            cb_conn_log(c, "error", "handshake_failed", "out of memory");
            *alert = cb_tls_alert_handshake_failure();
            return CB_TLS_HELLO_REFUSE;
        }
        (*n)++;
        c->counted = true;
        c->cap_idx = ch.binding;
    }
    if (cb_tls_apply_binding(ssl, ch.tls, c->binding) != 0) {
        count_failure(c, CB_METRIC_FAIL_KEY, CB_GMETRIC_PROTOCOL);
        cb_conn_log(c, "warn", "handshake_failed",
                    "the TLS library refused the certificate and key");
        *alert = cb_tls_alert_internal_error();
        return CB_TLS_HELLO_REFUSE;
    }
    /* This certificate's own response, never another's: found by its thumbprint (a pair's
     * two, the status callback sending the one of the certificate OpenSSL chose). */
    if (!(c->binding->flags & CB_OPT_DISABLEOCSPSTAPLING) && c->binding->kind != CB_KEY_CCS)
        cb_tls_staple_attach(ssl, cb_tls_staples_find(rt->staples, c->binding->certhash),
                             c->binding->certhash2[0] != '\0',
                             c->binding->certhash2[0] != '\0'
                                 ? cb_tls_staples_find(rt->staples, c->binding->certhash2)
                                 : NULL);
    return CB_TLS_HELLO_OK;
}

/* ---- polling and the timer ----------------------------------------------- */

static void on_client_event(uv_poll_t *h, int status, int events);
static void on_backend_event(uv_poll_t *h, int status, int events);
static void on_timer(uv_timer_t *t);

static void set_poll(uv_poll_t *p, int *cur, int want, uv_poll_cb cb)
{
    if (want == *cur)
        return;
    if (want == 0)
        uv_poll_stop(p);
    else
        uv_poll_start(p, want, cb);
    *cur = want;
}

void cb_conn_update_polls(struct cb_conn *c)
{
    if (c->state == CB_CONN_CLOSED)
        return;
    set_poll(&c->cpoll, &c->cevents,
             (c->want_cr ? UV_READABLE : 0) | (c->want_cw ? UV_WRITABLE : 0), on_client_event);
    if (c->bfd >= 0)
        set_poll(&c->bpoll, &c->bevents,
                 (c->want_br ? UV_READABLE : 0) | (c->want_bw ? UV_WRITABLE : 0), on_backend_event);
}

void cb_conn_arm_timer(struct cb_conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct cb_conn *c = t->data;
    uint64_t now = uv_now(c->srv->loop);
    char why[200];

    switch (c->state) {
    case CB_CONN_NEW:
    case CB_CONN_PEEK:
    case CB_CONN_HANDSHAKE:
        snprintf(why, sizeof(why), "no handshake within %llu ms",
                 (unsigned long long)c->srv->cfg.handshake_timeout_ms);
        count_failure(c, CB_METRIC_FAIL_TIMEOUT, CB_GMETRIC_TIMEOUT);
        cb_conn_fail(c, "handshake_timeout", why);
        return;
    case CB_CONN_CONNECTING:
        snprintf(why, sizeof(why), "backend %s did not answer within %llu ms", c->binding->backend,
                 (unsigned long long)c->srv->cfg.connect_timeout_ms);
        cb_conn_fail(c, "backend_timeout", why);
        return;
    case CB_CONN_WAIT:
    case CB_CONN_RELAY:
        if (now - c->last_active >= c->srv->cfg.idle_timeout_ms) {
            snprintf(why, sizeof(why), "idle for %llu ms",
                     (unsigned long long)c->srv->cfg.idle_timeout_ms);
            cb_conn_log(c, "info", "idle_timeout", why);
            cb_conn_close(c);
            return;
        }
        cb_conn_arm_timer(c, c->srv->cfg.idle_timeout_ms - (now - c->last_active));
        return;
    case CB_CONN_CLOSED:
    case CB_CONN_STATE_COUNT:
        return;
    }
}

/* ---- handshake ----------------------------------------------------------- */

static void do_handshake(struct cb_conn *c)
{
    char why[256];

    enum cb_tls_io io = cb_tls_handshake(c->ssl);
    if (io == CB_TLS_IO_OK && c->validation) {
        /* RFC 8737 section 3: the handshake is the whole answer; no application data. */
        cb_server_count(c->srv, CB_GMETRIC_ACME_ANSWERED);
        cb_conn_log(c, "info", "acme_challenge_answered",
                    "TLS-ALPN-01 challenge certificate served");
        cb_tls_shutdown(c->ssl);
        cb_conn_close(c);
        return;
    }
    if (io == CB_TLS_IO_OK) {
        if (cb_tls_resumed(c->ssl))
            cb_server_count(c->srv, CB_GMETRIC_RESUMED);
        if ((c->st = binding_metrics(c)) != NULL) {
            cb_metric_add(&c->st->v[CB_METRIC_HANDSHAKES], 1);
            cb_metric_add(&c->st->v[CB_METRIC_OPEN], 1);
        }
        if (cb_tls_staple_served(c->ssl))
            cb_server_count(c->srv, CB_GMETRIC_OCSP_STAPLED);
        if (cb_relay_client_speaks_first(c)) {
            if (!cb_conn_enter(c, CB_CONN_WAIT))
                return;
            c->last_active = uv_now(c->srv->loop);
            cb_conn_arm_timer(c, c->srv->cfg.idle_timeout_ms);
            c->want_cr = true;
            c->want_cw = c->want_br = c->want_bw = false;
            cb_conn_update_polls(c);
            return;
        }
        cb_relay_connect_backend(c);
        return;
    }
    c->want_cr = c->want_cw = c->want_br = c->want_bw = false;
    switch (io) {
    case CB_TLS_IO_WANT_READ:
        c->want_cr = true;
        break;
    case CB_TLS_IO_WANT_WRITE:
        c->want_cw = true;
        break;
    case CB_TLS_IO_REFUSED: /* the ClientHello callback refused, and logged why */
        cb_conn_close(c);
        return;
    case CB_TLS_IO_PAUSED: /* waiting for a certificate parse: on_parse_done goes on */
        break;
    default:
        count_failure(c, CB_METRIC_FAIL_PROTOCOL, CB_GMETRIC_PROTOCOL);
        cb_conn_fail(c, "handshake_failed", cb_tls_handshake_reason(c->ssl, why, sizeof(why)));
        return;
    }
    cb_conn_update_polls(c);
}

void cb_conn_start_handshake(struct cb_conn *c)
{
    if ((c->ssl = cb_tls_conn_new(c->srv->default_ctx, c->cfd, c)) == NULL) {
        cb_conn_fail(c, "accept_failed", "out of memory");
        return;
    }
    if (cb_conn_enter(c, CB_CONN_HANDSHAKE))
        do_handshake(c);
}

/* ---- events -------------------------------------------------------------- */

static void on_client_event(uv_poll_t *h, int status, int events)
{
    struct cb_conn *c = h->data;
    (void)events;
    if (status < 0 && status != UV_EBADF) {
        cb_conn_fail(c, "client_error", uv_strerror(status));
        return;
    }
    switch (c->state) {
    case CB_CONN_PEEK:
        cb_handoff_on_peek(c);
        return;
    case CB_CONN_HANDSHAKE:
        do_handshake(c);
        return;
    case CB_CONN_WAIT:
        cb_relay_on_first_bytes(c);
        return;
    case CB_CONN_RELAY:
        cb_relay_pump(c);
        return;
    default: /* CONNECTING: the client waits for the backend */
        return;
    }
}

static void on_backend_event(uv_poll_t *h, int status, int events)
{
    struct cb_conn *c = h->data;
    (void)events;
    if (c->state == CB_CONN_CONNECTING) {
        cb_relay_on_connected(c);
        return;
    }
    if (status < 0) {
        /* libuv reports POLLERR as UV_EBADF: the socket itself knows what went wrong. */
        char why[200];
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = 0;
        snprintf(why, sizeof(why), "backend %s: %s", c->binding->backend,
                 err != 0 ? strerror(err) : uv_strerror(status));
        cb_conn_fail(c, "backend_error", why);
        return;
    }
    if (c->state == CB_CONN_RELAY)
        cb_relay_pump(c);
}

/* ---- start --------------------------------------------------------------- */

static void to_v4_if_mapped(struct sockaddr_storage *ss)
{
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
        return;
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = s6->sin6_port};
    memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &s4, sizeof(s4));
}

/*
 * From this worker's listener, or passed by another worker (its ClientHello is waiting:
 * the handshake begins at once, with what is left of the handshake timeout since it was
 * accepted). The connection resolves against the runtime it takes a reference to here,
 * and affinity is judged through that same reference.
 */
void cb_conn_start(struct cb_server *srv, int fd, const struct sockaddr_storage *peer,
                   const struct cb_arrival *how)
{
    struct cb_conn *c = srv->rt != NULL ? calloc(1, sizeof(*c)) : NULL;
    socklen_t len = sizeof(c->local);

    if (c != NULL && how->local != NULL)
        c->local = *how->local;
    if (c == NULL ||
        (how->local == NULL && getsockname(fd, (struct sockaddr *)&c->local, &len) != 0)) {
        free(c);
        close(fd);
        cb_log("error", "accept_failed", "worker=%d reason=\"%s\"", srv->cfg.worker,
               srv->rt != NULL ? "out of memory" : "nothing to serve yet");
        return;
    }
    c->rt = cb_runtime_ref(srv->rt);
    bool peek = !how->adopted && cb_handoff_affinity_on(srv, c->rt);
    if (!peek && (c->ssl = cb_tls_conn_new(srv->default_ctx, fd, c)) == NULL) {
        cb_runtime_unref(c->rt);
        free(c);
        close(fd);
        cb_log("error", "accept_failed", "worker=%d reason=\"out of memory\"", srv->cfg.worker);
        return;
    }
    c->srv = srv;
    c->cfd = fd;
    c->bfd = -1;
    c->accepted_ms = how->accepted_ms;
    if (srv->cfg.stats != NULL) {
        struct cb_metrics_area *a = cb_metrics_writer_area(srv->cfg.stats);
        if (!how->adopted) /* counted once, by the worker that accepted it */
            cb_metric_add(&a->g[CB_GMETRIC_ACCEPTED], 1);
        cb_metric_add(&a->g[CB_GMETRIC_OPEN], 1);
    }
    c->peer = *peer;
    to_v4_if_mapped(&c->local);
    to_v4_if_mapped(&c->peer);
    uv_poll_init(srv->loop, &c->cpoll, fd);
    c->cpoll.data = c;
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    uint64_t spent = cb_accept_clock_ms() - how->accepted_ms;
    uint64_t budget = srv->cfg.handshake_timeout_ms;
    cb_conn_arm_timer(c, spent < budget ? budget - spent : 1);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    if (!cb_conn_enter(c, peek ? CB_CONN_PEEK : CB_CONN_HANDSHAKE))
        return;
    if (how->adopted) {
        do_handshake(c);
        return;
    }
    c->want_cr = true;
    cb_conn_update_polls(c);
}
