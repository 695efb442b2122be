/*
 * server.c: listeners, TLS handshakes and forwarding for one worker.
 *
 * Each connection is two non-blocking sockets watched with uv_poll: the client's,
 * driven through OpenSSL, and the backend's. Data moves through one shared
 * scratch buffer; only bytes the other side cannot take yet are copied into a
 * per-connection buffer, and while such bytes wait, their source is not read
 * (back-pressure). Nothing on the handshake path allocates beyond OpenSSL's own
 * objects, locks, or scans: certificate choice is one cb_resolve() call.
 */
#include "net/server.h"
#include "net/peek.h"
#include "net/proxy.h"
#include "tls/cert.h"
#include "tls/hello.h"
#include "tls/io.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CB_BUF_SIZE 16384
#define CB_ACCEPT_BATCH 64
#define CB_PUMP_ROUNDS 8

/* ST_PEEK: accepted, the ClientHello not yet looked at (certificate affinity: the
 * connection may still be passed to another worker). ST_WAIT: handshake done, HTTP negotiated, no
 * request yet: the backend is connected when the first bytes come (a client that never sends costs
 * no backend connection). */
enum conn_state { ST_PEEK, ST_HANDSHAKE, ST_WAIT, ST_CONNECTING, ST_RELAY, ST_CLOSED };

struct dir_buf {
    char *data; /* allocated only while bytes wait */
    uint32_t off, len;
};

struct conn {
    struct cb_server *srv;
    struct cb_runtime *rt;
    const struct cb_snap_binding *binding;
    uint32_t bidx; /* the binding's index in rt */
    SSL *ssl;
    int cfd, bfd;
    uv_poll_t cpoll, bpoll;
    uv_timer_t timer;
    enum conn_state state;
    int cevents, bevents; /* what each poll watches now */
    int pending_closes;
    bool client_eof, backend_eof, backend_shut, client_shut, respond_503;
    bool counted;     /* holds one of srv->rt->active[cap_idx] (per-binding cap) */
    bool proxy_sent;  /* the PROXY header is queued already (ahead of the first bytes) */
    uint32_t cap_idx; /* its binding's index in srv->rt, which may be newer than rt */
    bool want_cr, want_cw, want_br, want_bw;
    bool failure_counted;        /* a failed handshake was counted under its reason */
    struct cb_metrics_entry *st; /* the binding's counters once the handshake is done (open) */
    uint64_t last_active;
    uint64_t accepted_ms; /* mono_ms() at accept, in whichever worker accepted it */
    size_t lowat;         /* ST_PEEK: SO_RCVLOWAT set to this many bytes (0: not set) */
    struct sockaddr_storage local, peer;
    char sni[CB_NAME_MAX + 1];
    struct dir_buf c2b, b2c;
    struct conn *prev, *next;
};

struct listener {
    uv_poll_t poll;
    int fd;
    struct cb_listen_addr addr;
    bool keep;
    struct listener *next;
};

struct cb_server {
    uv_loop_t *loop;
    int closing;          /* handles of the server itself still closing */
    size_t conns_closing; /* closed connections whose handles are still closing */
    bool freeing;         /* cb_server_free was called: free when nothing is closing */
    struct cb_server_config cfg;
    SSL_CTX *default_ctx;
    struct cb_runtime *rt;
    struct listener *listeners;
    struct conn *conns;
    size_t n_conns;
    bool draining;
    void (*on_drained)(struct cb_server *srv);
    uv_timer_t accept_pause, grace;
    bool accept_paused;
    uint64_t refused_total, refused_binding; /* over the caps, closed at once */
    uint64_t last_refusal_log;
    uint64_t pauses, last_pause_log; /* accept pauses for lack of descriptors */
    uv_poll_t handoff_poll;          /* connections passed by other workers (handoff_rx) */
    bool handoff_polling;
    char scratch[CB_BUF_SIZE];
};

struct cb_runtime *cb_runtime_ref(struct cb_runtime *rt)
{
    rt->refs++;
    return rt;
}

void cb_runtime_unref(struct cb_runtime *rt)
{
    if (rt == NULL || --rt->refs > 0)
        return;
    size_t n = rt->snap ? cb_snapshot_count(rt->snap) : 0;
    size_t nf = rt->snap ? cb_snapshot_ccs_count(rt->snap) : 0;
    for (size_t i = 0; i < n; i++) {
        if (rt->bind_tls != NULL)
            cb_tls_entry_clear(&rt->bind_tls[i]);
        if (rt->backends != NULL)
            free(rt->backends[i].error);
    }
    for (size_t i = 0; rt->file_tls != NULL && i < nf; i++)
        cb_tls_entry_clear(&rt->file_tls[i]);
    free(rt->bind_tls);
    free(rt->file_tls);
    free(rt->backends);
    free(rt->active);
    free(rt->stat);
    cb_snapshot_unref(rt->snap);
    free(rt);
}

/* ---- logging helpers ---------------------------------------------------- */

static void addr_text(const struct sockaddr_storage *ss, char *buf, size_t size)
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

/* One log line about a connection: event, binding, client, and a reason. */
static void conn_log(struct conn *c, const char *level, const char *event, const char *reason)
{
    char peer[64], local[64], q[600], sni[300];
    addr_text(&c->peer, peer, sizeof(peer));
    addr_text(&c->local, local, sizeof(local));
    cb_log(level, event, "worker=%d client=%s local=%s sni=%s binding=%s reason=%s",
           c->srv->cfg.worker, peer, local,
           c->sni[0] ? cb_log_quote(c->sni, sni, sizeof(sni)) : "-",
           c->binding ? c->binding->key_text : "-", cb_log_quote(reason, q, sizeof(q)));
}

/* ---- counters (serve --admin) ------------------------------------------- */

static void gcount(struct cb_server *srv, enum cb_gmetric k)
{
    if (srv->cfg.stats != NULL)
        cb_metric_add(&cb_metrics_writer_area(srv->cfg.stats)->g[k], 1);
}

/* The counters of the binding chosen for c (NULL when none, or nothing is counted). */
static struct cb_metrics_entry *binding_stats(struct conn *c)
{
    if (c->srv->cfg.stats == NULL || c->binding == NULL)
        return NULL;
    struct cb_metrics_entry **slot = &c->rt->stat[c->bidx];
    if (*slot == NULL)
        *slot = cb_metrics_entry_get(c->srv->cfg.stats, c->binding->key_text);
    return *slot;
}

/* A failed handshake, counted once: under its binding when one was chosen. */
static void count_failure(struct conn *c, enum cb_metric k, enum cb_gmetric gk)
{
    if (c->failure_counted)
        return;
    c->failure_counted = true;
    struct cb_metrics_entry *e = binding_stats(c);
    if (e != NULL)
        cb_metric_add(&e->v[k], 1);
    else
        gcount(c->srv, gk);
}

/* ---- connection teardown ------------------------------------------------ */

/*
 * libuv runs close callbacks newest first, so the server's own handles may finish
 * closing before those of connections closed just before them: the server is freed
 * only when both are done.
 */
static void server_free_when_closed(struct cb_server *srv)
{
    if (srv->closing == 0 && srv->conns_closing == 0)
        free(srv);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->pending_closes > 0)
        return;
    struct cb_server *srv = c->srv;
    free(c);
    srv->conns_closing--;
    if (srv->freeing) {
        server_free_when_closed(srv);
        return;
    }
    if (srv->draining && srv->n_conns == 0 && srv->on_drained != NULL)
        srv->on_drained(srv);
}

static void conn_close(struct conn *c)
{
    struct cb_server *srv = c->srv;

    if (c->state == ST_CLOSED)
        return;
    c->state = ST_CLOSED;
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
    if (c->counted)
        srv->rt->active[c->cap_idx]--;
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

static void conn_fail(struct conn *c, const char *event, const char *reason)
{
    conn_log(c, "warn", event, reason);
    conn_close(c);
}

/* ---- ClientHello: the one place a certificate is chosen ------------------ */

static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    struct conn *c = cb_tls_conn_owner(ssl);
    struct cb_server *srv = c->srv;
    struct cb_runtime *rt = c->rt;
    struct cb_hello_choice ch;
    (void)arg;

    /* A second ClientHello (after HelloRetryRequest) keeps the first one's choice. */
    if (c->binding != NULL)
        return CB_TLS_HELLO_OK;
    /* Nothing was chosen yet: resolve against the newest bindings (and count there). */
    if (rt != srv->rt) {
        cb_runtime_unref(rt);
        rt = c->rt = cb_runtime_ref(srv->rt);
    }
    enum cb_hello_outcome o =
        cb_hello_choose(ssl, rt->snap, rt->bind_tls, rt->file_tls, &c->local, &ch);
    memcpy(c->sni, ch.sni, strlen(ch.sni) + 1);
    *alert = ch.alert;
    if (ch.loaded_now)
        gcount(srv, CB_GMETRIC_CERTS_LOADED);
    if (o == CB_HELLO_BAD_SNI) {
        count_failure(c, CB_METRIC_FAIL_PROTOCOL, CB_GMETRIC_PROTOCOL);
        conn_log(c, "warn", "handshake_failed", "malformed server_name");
        return CB_TLS_HELLO_REFUSE;
    }
    if (o == CB_HELLO_NO_BINDING) {
        count_failure(c, CB_METRIC_FAIL_PROTOCOL, CB_GMETRIC_NO_BINDING);
        conn_log(c, "warn", "handshake_failed", "no binding matches");
        return CB_TLS_HELLO_REFUSE;
    }
    c->binding = ch.b;
    c->bidx = ch.binding;
    if (o == CB_HELLO_REJECTED) {
        count_failure(c, CB_METRIC_FAIL_REJECTED, CB_GMETRIC_PROTOCOL);
        conn_log(c, "warn", "handshake_failed", "binding is set reject=enable");
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
        conn_log(c, "warn", "handshake_failed", ch.error);
        return CB_TLS_HELLO_REFUSE;
    }
    if (srv->cfg.max_conns_binding != 0) {
        if (rt->active[ch.binding] >= srv->cfg.max_conns_binding) {
            srv->refused_binding++;
            if (uv_now(srv->loop) - srv->last_refusal_log >= 1000) {
                srv->last_refusal_log = uv_now(srv->loop);
                cb_log("warn", "connection_cap", "worker=%d binding=%s cap=%u refused_total=%llu",
                       srv->cfg.worker, c->binding->key_text, srv->cfg.max_conns_binding,
                       (unsigned long long)srv->refused_binding);
            }
            count_failure(c, CB_METRIC_FAIL_CAPACITY, CB_GMETRIC_CAPACITY);
            *alert = cb_tls_alert_handshake_failure();
            return CB_TLS_HELLO_REFUSE;
        }
        rt->active[ch.binding]++;
        c->counted = true;
        c->cap_idx = ch.binding;
    }
    if (cb_tls_apply_binding(ssl, ch.tls, c->binding) != 0) {
        count_failure(c, CB_METRIC_FAIL_KEY, CB_GMETRIC_PROTOCOL);
        conn_log(c, "warn", "handshake_failed", "the TLS library refused the certificate and key");
        *alert = cb_tls_alert_internal_error();
        return CB_TLS_HELLO_REFUSE;
    }
    return CB_TLS_HELLO_OK;
}

/* ---- polling ------------------------------------------------------------ */

static void on_client_event(uv_poll_t *h, int status, int events);
static void on_backend_event(uv_poll_t *h, int status, int events);

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

static void update_polls(struct conn *c)
{
    if (c->state == ST_CLOSED)
        return;
    set_poll(&c->cpoll, &c->cevents,
             (c->want_cr ? UV_READABLE : 0) | (c->want_cw ? UV_WRITABLE : 0), on_client_event);
    if (c->bfd >= 0)
        set_poll(&c->bpoll, &c->bevents,
                 (c->want_br ? UV_READABLE : 0) | (c->want_bw ? UV_WRITABLE : 0), on_backend_event);
}

/* ---- the relay ---------------------------------------------------------- */

static int buf_keep(struct dir_buf *b, const char *p, size_t n)
{
    if (b->data == NULL && (b->data = malloc(CB_BUF_SIZE)) == NULL)
        return -1;
    memcpy(b->data, p, n);
    b->off = 0;
    b->len = (uint32_t)n;
    return 0;
}

static void buf_consumed(struct dir_buf *b, size_t n)
{
    b->off += (uint32_t)n;
    b->len -= (uint32_t)n;
    if (b->len == 0) {
        free(b->data); /* an idle connection holds no buffer */
        b->data = NULL;
        b->off = 0;
    }
}

static const char response_503_fmt[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                       "Content-Type: text/plain; charset=utf-8\r\n"
                                       "Content-Length: %d\r\n"
                                       "Connection: close\r\n"
                                       "\r\n"
                                       "%s";

static void queue_503(struct conn *c)
{
    char body[512], msg[700];
    int blen = snprintf(body, sizeof(body),
                        "certbind: binding %s has no backend.\n"
                        "Give it one: certbind update sslcert %s backend=HOST:PORT\n",
                        c->binding->key_text, c->binding->key_text);
    int n = snprintf(msg, sizeof(msg), response_503_fmt, blen, body);
    if (n > 0 && buf_keep(&c->b2c, msg, (size_t)n) == 0)
        c->backend_eof = true; /* nothing more will follow the response */
}

/*
 * An end of input is passed on as soon as it is seen (and the bytes before it are out),
 * not on a later pump round: when the last round sees it, no poll would bring us back.
 */
static void client_ended(struct conn *c)
{
    if (!c->backend_shut && c->bfd >= 0) {
        shutdown(c->bfd, SHUT_WR);
        c->backend_shut = true;
    }
    /* No backend and no request before the client's end: nothing will be answered,
     * so close now instead of holding the connection until the idle timeout, and
     * without a close_notify the client, gone already, would only answer with a reset
     * (as when a client leaves a binding with a backend before asking: ST_WAIT). */
    if (c->respond_503 && !c->backend_eof) {
        c->backend_eof = true;
        c->client_shut = true;
    }
}

static void backend_ended(struct conn *c)
{
    if (!c->client_shut) {
        cb_tls_shutdown(c->ssl); /* close_notify: the client knows the reply is whole */
        c->client_shut = true;
    }
}

/* Client -> backend. Returns 1 on progress, 0 when blocked, -1 when closed. */
static int pump_c2b(struct conn *c)
{
    char why[256];
    int progress = 0;

    if (c->c2b.len > 0) {
        ssize_t n = send(c->bfd, c->c2b.data + c->c2b.off, c->c2b.len, MSG_NOSIGNAL);
        if (n > 0) {
            buf_consumed(&c->c2b, (size_t)n);
            progress = 1;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->want_bw = true;
            return 0;
        } else if (n < 0 && errno != EINTR) {
            snprintf(why, sizeof(why), "backend write failed: %s", strerror(errno));
            conn_fail(c, "backend_error", why);
            return -1;
        }
        if (c->c2b.len > 0)
            return progress;
    }
    if (c->client_eof) {
        client_ended(c);
        return progress;
    }
    size_t got;
    enum cb_tls_io io = cb_tls_read(c->ssl, c->srv->scratch, sizeof(c->srv->scratch), &got);
    if (io == CB_TLS_IO_OK) {
        ssize_t n = (ssize_t)got;
        if (c->st != NULL)
            cb_metric_add(&c->st->v[CB_METRIC_BYTES_IN], (uint64_t)n);
        if (c->respond_503) {
            if (c->b2c.len == 0 && !c->backend_eof)
                queue_503(c);
            return 1; /* the request itself is read and dropped */
        }
        ssize_t w = send(c->bfd, c->srv->scratch, (size_t)n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(why, sizeof(why), "backend write failed: %s", strerror(errno));
            conn_fail(c, "backend_error", why);
            return -1;
        }
        if (w < 0)
            w = 0;
        if (w < n && buf_keep(&c->c2b, c->srv->scratch + w, (size_t)(n - w)) != 0) {
            conn_fail(c, "conn_error", "out of memory");
            return -1;
        }
        return 1;
    }
    switch (io) {
    case CB_TLS_IO_WANT_READ:
        c->want_cr = true;
        return progress;
    case CB_TLS_IO_WANT_WRITE:
        c->want_cw = true;
        return progress;
    case CB_TLS_IO_CLOSED: /* close_notify, or EOF without one: a half-close either way */
        c->client_eof = true;
        client_ended(c);
        return 1;
    default:
        conn_fail(c, "client_error", cb_tls_io_reason(why, sizeof(why)));
        return -1;
    }
}

/* Backend -> client. */
static int pump_b2c(struct conn *c)
{
    char why[256];
    int progress = 0;

    if (c->b2c.len > 0) {
        size_t n;
        enum cb_tls_io io = cb_tls_write(c->ssl, c->b2c.data + c->b2c.off, c->b2c.len, &n);
        if (io == CB_TLS_IO_OK) {
            buf_consumed(&c->b2c, n);
            progress = 1;
        } else {
            switch (io) {
            case CB_TLS_IO_WANT_WRITE:
                c->want_cw = true;
                return 0;
            case CB_TLS_IO_WANT_READ:
                c->want_cr = true;
                return 0;
            default:
                conn_fail(c, "client_error", cb_tls_io_reason(why, sizeof(why)));
                return -1;
            }
        }
        if (c->b2c.len > 0)
            return progress;
    }
    if (c->backend_eof) {
        if (!c->client_shut) {
            backend_ended(c);
            progress = 1;
        }
        return progress;
    }
    if (c->bfd < 0)
        return progress;
    ssize_t n = recv(c->bfd, c->srv->scratch, sizeof(c->srv->scratch), 0);
    if (n > 0) {
        if (c->st != NULL)
            cb_metric_add(&c->st->v[CB_METRIC_BYTES_OUT], (uint64_t)n);
        size_t wrote;
        enum cb_tls_io io = cb_tls_write(c->ssl, c->srv->scratch, (size_t)n, &wrote);
        if (io == CB_TLS_IO_ERROR || io == CB_TLS_IO_CLOSED) {
            conn_fail(c, "client_error", cb_tls_io_reason(why, sizeof(why)));
            return -1;
        }
        ssize_t w = (ssize_t)wrote; /* 0 after WANT_*: the same bytes are kept and offered again */
        if (w < n && buf_keep(&c->b2c, c->srv->scratch + w, (size_t)(n - w)) != 0) {
            conn_fail(c, "conn_error", "out of memory");
            return -1;
        }
        return 1;
    }
    if (n == 0) {
        c->backend_eof = true;
        backend_ended(c);
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->want_br = true;
        return progress;
    }
    if (errno == EINTR)
        return progress;
    snprintf(why, sizeof(why), "backend read failed: %s", strerror(errno));
    conn_fail(c, "backend_error", why);
    return -1;
}

static void pump(struct conn *c)
{
    for (int round = 0; round < CB_PUMP_ROUNDS; round++) {
        c->want_cr = c->want_cw = c->want_br = c->want_bw = false;
        int a = pump_c2b(c);
        if (a < 0)
            return;
        int b = pump_b2c(c);
        if (b < 0)
            return;
        if (a || b)
            c->last_active = uv_now(c->srv->loop);
        if (c->client_eof && c->backend_eof && c->c2b.len == 0 && c->b2c.len == 0 &&
            c->client_shut) {
            conn_close(c);
            return;
        }
        if (!a && !b)
            break;
        if (round == CB_PUMP_ROUNDS - 1) {
            /* Yield to other connections; level-triggered polls bring us back. */
            c->want_cr = c->c2b.len == 0 && !c->client_eof;
            c->want_br = c->b2c.len == 0 && !c->backend_eof && c->bfd >= 0;
            c->want_cw = c->b2c.len > 0;
            c->want_bw = c->c2b.len > 0;
        }
    }
    if (c->respond_503 && c->backend_eof && c->b2c.len == 0 && c->client_shut) {
        conn_close(c); /* the response and close_notify are out */
        return;
    }
    update_polls(c);
}

/* ---- backend connection ------------------------------------------------- */

/* The binding's PROXY header for c into hdr; its length, or a negative CB_E* code. */
static int build_proxy_header(struct conn *c, unsigned char *hdr, size_t size)
{
    struct cb_proxy_info pi = {0};
    unsigned char *der = NULL;
    char cn[256] = "";
    int n;

    pi.src = c->peer;
    pi.dst = c->local;
    if (c->binding->proxy == CB_PROXY_V1) {
        n = cb_proxy_v1(&pi, (char *)hdr, size);
    } else {
        pi.sni = c->sni[0] ? c->sni : NULL;
        cb_tls_proxy_fields(c->ssl, &pi, cn, sizeof(cn), &der);
        n = cb_proxy_v2(&pi, hdr, size);
        cb_tls_free_der(der);
    }
    return n;
}

#define CB_PROXY_HDR_MAX 8192

static void write_proxy_header(struct conn *c)
{
    unsigned char hdr[CB_PROXY_HDR_MAX];
    int n = build_proxy_header(c, hdr, sizeof(hdr));
    if (n > 0 && buf_keep(&c->c2b, (const char *)hdr, (size_t)n) != 0)
        conn_fail(c, "conn_error", "out of memory");
}

static void on_timer(uv_timer_t *t);

static void start_relay(struct conn *c)
{
    c->state = ST_RELAY;
    c->last_active = uv_now(c->srv->loop);
    uv_timer_start(&c->timer, on_timer, c->srv->cfg.idle_timeout_ms, 0);
    if (c->binding->proxy != CB_PROXY_OFF && !c->proxy_sent)
        write_proxy_header(c);
    if (c->state != ST_CLOSED)
        pump(c);
}

static void connect_backend(struct conn *c)
{
    const struct cb_backend *be = &c->rt->backends[c->bidx];
    char why[300];

    if (c->binding->backend == NULL) {
        c->respond_503 = true;
        start_relay(c);
        return;
    }
    if (be->addr_len == 0) {
        snprintf(why, sizeof(why), "backend %s has no address: %s", c->binding->backend,
                 be->error ? be->error : "unresolved");
        conn_fail(c, "backend_error", why);
        return;
    }
    c->bfd = socket(be->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->bfd < 0) {
        snprintf(why, sizeof(why), "cannot create a socket for backend %s: %s", c->binding->backend,
                 strerror(errno));
        conn_fail(c, "backend_error", why);
        return;
    }
    int one = 1;
    setsockopt(c->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uv_poll_init(c->srv->loop, &c->bpoll, c->bfd);
    c->bpoll.data = c;
    c->bevents = 0;
    if (connect(c->bfd, &be->addr.sa, be->addr_len) != 0 && errno != EINPROGRESS) {
        snprintf(why, sizeof(why), "backend %s refused the connection: %s", c->binding->backend,
                 strerror(errno));
        conn_fail(c, "backend_error", why);
        return;
    }
    c->state = ST_CONNECTING;
    uv_timer_start(&c->timer, on_timer, c->srv->cfg.connect_timeout_ms, 0);
    c->want_cr = c->want_cw = c->want_br = false;
    c->want_bw = true; /* writable = connected (or failed) */
    update_polls(c);
}

static void on_connected(struct conn *c)
{
    char why[300];
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        snprintf(why, sizeof(why), "backend %s: %s", c->binding->backend, strerror(err));
        conn_fail(c, "backend_error", why);
        return;
    }
    start_relay(c);
}

/* ---- waiting for the first request --------------------------------------- */

/*
 * HTTP (h2 or http/1.1 negotiated with ALPN) is a protocol where the client speaks
 * first, so the backend can wait for the first bytes: browsers open connections they
 * may never use. Without ALPN the protocol is unknown and may be one where the
 * server speaks first (a greeting): the backend is connected at once.
 */
static bool client_speaks_first(struct conn *c)
{
    if (c->binding->backend == NULL || c->rt->backends[c->bidx].addr_len == 0)
        return false;
    return cb_tls_alpn_is_http(c->ssl);
}

static void on_first_bytes(struct conn *c)
{
    unsigned char hdr[CB_PROXY_HDR_MAX];
    char why[256];
    int hn = 0;

    /* The PROXY header goes ahead of the first bytes, in the same buffer: read no
     * more than fits beside it (the rest stays in OpenSSL for the relay). */
    if (c->binding->proxy != CB_PROXY_OFF && (hn = build_proxy_header(c, hdr, sizeof(hdr))) < 0)
        hn = 0;
    size_t n;
    enum cb_tls_io io =
        cb_tls_read(c->ssl, c->srv->scratch, sizeof(c->srv->scratch) - (size_t)hn, &n);
    if (io == CB_TLS_IO_OK) {
        if (c->st != NULL)
            cb_metric_add(&c->st->v[CB_METRIC_BYTES_IN], (uint64_t)n);
        if (buf_keep(&c->c2b, (const char *)hdr, (size_t)hn) != 0) {
            conn_fail(c, "conn_error", "out of memory");
            return;
        }
        memcpy(c->c2b.data + hn, c->srv->scratch, n);
        c->c2b.len += (uint32_t)n;
        c->proxy_sent = true;
        connect_backend(c);
        return;
    }
    switch (io) {
    case CB_TLS_IO_WANT_READ:
        c->want_cr = true;
        c->want_cw = false;
        update_polls(c);
        return;
    case CB_TLS_IO_WANT_WRITE:
        c->want_cw = true;
        c->want_cr = false;
        update_polls(c);
        return;
    case CB_TLS_IO_CLOSED:
        conn_close(c); /* closed before asking anything: nothing to forward */
        return;
    default:
        conn_fail(c, "client_error", cb_tls_io_reason(why, sizeof(why)));
        return;
    }
}

/* ---- handshake ----------------------------------------------------------- */

static void do_handshake(struct conn *c)
{
    char why[256];

    enum cb_tls_io io = cb_tls_handshake(c->ssl);
    if (io == CB_TLS_IO_OK) {
        if ((c->st = binding_stats(c)) != NULL) {
            cb_metric_add(&c->st->v[CB_METRIC_HANDSHAKES], 1);
            cb_metric_add(&c->st->v[CB_METRIC_OPEN], 1);
        }
        if (client_speaks_first(c)) {
            c->state = ST_WAIT;
            c->last_active = uv_now(c->srv->loop);
            uv_timer_start(&c->timer, on_timer, c->srv->cfg.idle_timeout_ms, 0);
            c->want_cr = true;
            c->want_cw = c->want_br = c->want_bw = false;
            update_polls(c);
            return;
        }
        connect_backend(c);
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
        conn_close(c);
        return;
    default:
        count_failure(c, CB_METRIC_FAIL_PROTOCOL, CB_GMETRIC_PROTOCOL);
        conn_fail(c, "handshake_failed", cb_tls_io_reason(why, sizeof(why)));
        return;
    }
    update_polls(c);
}

/* ---- events ------------------------------------------------------------- */

static void on_peek(struct conn *c);

static void on_client_event(uv_poll_t *h, int status, int events)
{
    struct conn *c = h->data;
    (void)events;
    if (status < 0 && status != UV_EBADF) {
        conn_fail(c, "client_error", uv_strerror(status));
        return;
    }
    if (c->state == ST_PEEK)
        on_peek(c);
    else if (c->state == ST_HANDSHAKE)
        do_handshake(c);
    else if (c->state == ST_WAIT)
        on_first_bytes(c);
    else if (c->state == ST_RELAY)
        pump(c);
}

static void on_backend_event(uv_poll_t *h, int status, int events)
{
    struct conn *c = h->data;
    (void)events;
    if (c->state == ST_CONNECTING) {
        on_connected(c);
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
        conn_fail(c, "backend_error", why);
        return;
    }
    if (c->state == ST_RELAY)
        pump(c);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    uint64_t now = uv_now(c->srv->loop);
    char why[200];

    switch (c->state) {
    case ST_PEEK:
    case ST_HANDSHAKE:
        snprintf(why, sizeof(why), "no handshake within %llu ms",
                 (unsigned long long)c->srv->cfg.handshake_timeout_ms);
        count_failure(c, CB_METRIC_FAIL_TIMEOUT, CB_GMETRIC_TIMEOUT);
        conn_fail(c, "handshake_timeout", why);
        return;
    case ST_CONNECTING:
        snprintf(why, sizeof(why), "backend %s did not answer within %llu ms", c->binding->backend,
                 (unsigned long long)c->srv->cfg.connect_timeout_ms);
        conn_fail(c, "backend_timeout", why);
        return;
    case ST_WAIT:
    case ST_RELAY:
        if (now - c->last_active >= c->srv->cfg.idle_timeout_ms) {
            snprintf(why, sizeof(why), "idle for %llu ms",
                     (unsigned long long)c->srv->cfg.idle_timeout_ms);
            conn_log(c, "info", "idle_timeout", why);
            conn_close(c);
            return;
        }
        uv_timer_start(&c->timer, on_timer, c->srv->cfg.idle_timeout_ms - (now - c->last_active),
                       0);
        return;
    case ST_CLOSED:
        return;
    }
}

/* ---- accepting ---------------------------------------------------------- */

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

/* Certificate affinity is on: other workers to pass connections to, not draining, and
 * some certificate not yet parsed here (once all are, every connection stays: at small N
 * the peek stops as soon as each worker has parsed what it serves). */
static bool affinity_on(const struct cb_server *srv)
{
    return srv->cfg.workers > 1 && srv->cfg.handoff_tx != NULL && !srv->draining &&
           srv->rt != NULL && cb_tls_cache_untried(srv->rt->cache) > 0;
}

/* Milliseconds on a clock every worker shares (uv_now is each loop's own). */
static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* How a connection came to this worker. */
struct arrival {
    const struct sockaddr_storage *local; /* NULL: asked of the socket */
    bool adopted;                         /* passed by another worker: handshake at once */
    uint64_t accepted_ms;                 /* mono_ms() when it was accepted */
};

/*
 * A new connection on fd (taken): from this worker's listener, or passed by another
 * worker (its ClientHello is waiting: the handshake begins at once, with what is left
 * of the handshake timeout since it was accepted).
 */
static void accept_one(struct cb_server *srv, int fd, const struct sockaddr_storage *peer,
                       const struct arrival *how)
{
    struct conn *c = calloc(1, sizeof(*c));
    socklen_t len = sizeof(c->local);
    bool peek = !how->adopted && affinity_on(srv);

    if (c != NULL && how->local != NULL)
        c->local = *how->local;
    if (c == NULL ||
        (how->local == NULL && getsockname(fd, (struct sockaddr *)&c->local, &len) != 0) ||
        (!peek && (c->ssl = cb_tls_conn_new(srv->default_ctx, fd, c)) == NULL)) {
        if (c != NULL)
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
    c->rt = cb_runtime_ref(srv->rt);
    c->state = peek ? ST_PEEK : ST_HANDSHAKE;
    uv_poll_init(srv->loop, &c->cpoll, fd);
    c->cpoll.data = c;
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    uint64_t spent = mono_ms() - how->accepted_ms;
    uint64_t budget = srv->cfg.handshake_timeout_ms;
    uv_timer_start(&c->timer, on_timer, spent < budget ? budget - spent : 1, 0);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    if (how->adopted) {
        do_handshake(c);
        return;
    }
    c->want_cr = true;
    update_polls(c);
}

/* A connection closed at once for lack of room (fd, or -1 when the kernel dropped it):
 * counted under capacity; logged (event, what) at most once a second, a flood must not
 * flood the log. */
static void refuse(struct cb_server *srv, int fd, const char *level, const char *event,
                   const char *what)
{
    if (fd >= 0)
        close(fd);
    srv->refused_total++;
    gcount(srv, CB_GMETRIC_CAPACITY);
    if (uv_now(srv->loop) - srv->last_refusal_log >= 1000) {
        srv->last_refusal_log = uv_now(srv->loop);
        cb_log(level, event, "worker=%d %s refused_total=%llu", srv->cfg.worker, what,
               (unsigned long long)srv->refused_total);
    }
}

/* Over --max-connections: fd is closed at once (refuse). */
static bool refuse_over_cap(struct cb_server *srv, int fd)
{
    char what[40];
    if (srv->cfg.max_conns == 0 || srv->n_conns < srv->cfg.max_conns)
        return false;
    snprintf(what, sizeof(what), "cap=%u", srv->cfg.max_conns);
    refuse(srv, fd, "warn", "connection_cap", what);
    return true;
}

/* ---- certificate affinity: passing a connection to the worker that owns its certificate */

#define CB_HANDOFF_MAGIC 0x63626832u /* "cbh2" */

/* What travels with the descriptor. */
struct handoff_msg {
    uint32_t magic;
    int32_t from;         /* the worker that accepted it */
    uint32_t back;        /* 1: sent back to `from` by an owner over its cap: serve it there */
    uint64_t accepted_ms; /* mono_ms() at accept: the handshake timeout runs from there */
    struct sockaddr_storage local, peer;
};

union handoff_cmsg {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
};

/* Passes fd (borrowed: the caller still closes its copy) to worker `to`; 0 when on its
 * way. Never waits: a full queue (the owner busy, or dead and not yet restarted: the
 * queue is small, see serve.c) means the caller serves the connection itself. */
static int hand_off(struct cb_server *srv, int fd, int to, const struct handoff_msg *m)
{
    union handoff_cmsg u;
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};

    memset(&u, 0, sizeof(u));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    ssize_t n = sendmsg(srv->cfg.handoff_tx[to], &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n == (ssize_t)sizeof(*m) ? 0 : -1;
}

static void start_handshake(struct conn *c)
{
    if ((c->ssl = cb_tls_conn_new(c->srv->default_ctx, c->cfd, c)) == NULL) {
        conn_fail(c, "accept_failed", "out of memory");
        return;
    }
    c->state = ST_HANDSHAKE;
    do_handshake(c);
}

/* Whether the socket's wake-up threshold could be set to n bytes. */
static bool set_lowat(int fd, size_t n)
{
    int v = (int)n;
    return setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) == 0;
}

/*
 * ST_PEEK, the socket readable: looks at the ClientHello without taking it, and
 * either passes the connection to its certificate's owner or begins the handshake
 * here. Anything not plainly a whole ClientHello is handshaken here, where OpenSSL
 * judges it: the peek only ever chooses a worker, never a certificate.
 */
static void on_peek(struct conn *c)
{
    struct cb_server *srv = c->srv;
    unsigned char buf[CB_PEEK_MAX];
    const unsigned char *name = NULL;
    size_t name_len = 0;
    char sni[CB_NAME_MAX + 1];
    int to = srv->cfg.worker;

    ssize_t n = recv(c->cfd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return; /* nothing yet: the poll brings us back */
    enum cb_peek pk = n > 0 ? cb_peek_sni(buf, (size_t)n, &name, &name_len) : CB_PEEK_UNKNOWN;
    if (pk == CB_PEEK_MORE) {
        /* A ClientHello in several segments (a browser's, with post-quantum key shares,
         * is larger than one): the unread bytes would keep a level-triggered poll firing,
         * so the socket is told to wake us only once the record is whole. Woken short of
         * it again (the client ended, or sent less than it announced), it is handshaken
         * here and OpenSSL says what is wrong. The handshake timer covers a stall. */
        size_t want = cb_peek_wanted(buf, (size_t)n);
        if (want > c->lowat && set_lowat(c->cfd, want)) {
            c->lowat = want;
            return;
        }
    }
    if (c->lowat > 0) {
        set_lowat(c->cfd, 1); /* the socket goes on as any other, here or in the owner */
        c->lowat = 0;
    }
    if ((pk == CB_PEEK_SNI || pk == CB_PEEK_NO_SNI) && affinity_on(srv)) {
        bool ok = pk == CB_PEEK_NO_SNI ||
                  cb_name_normalize((const char *)name, name_len, 0, sni, NULL) == 0;
        struct cb_runtime *rt = srv->rt;
        const struct cb_tls_entry *e =
            ok ? cb_hello_entry_for(rt->snap, rt->bind_tls, rt->file_tls, &c->local,
                                    pk == CB_PEEK_SNI ? sni : NULL)
               : NULL;
        if (e != NULL)
            to = cb_tls_entry_worker(e, srv->cfg.worker, srv->cfg.workers, uv_now(srv->loop));
    }
    if (to != srv->cfg.worker) {
        struct handoff_msg m;
        memset(&m, 0, sizeof(m));
        m.magic = CB_HANDOFF_MAGIC;
        m.from = srv->cfg.worker;
        m.accepted_ms = c->accepted_ms;
        m.local = c->local;
        m.peer = c->peer;
        if (hand_off(srv, c->cfd, to, &m) == 0) {
            gcount(srv, CB_GMETRIC_HANDED_OFF);
            conn_close(c); /* the other worker has the socket now */
            return;
        }
    }
    start_handshake(c);
}

/* One message from the queue rx into *m, its descriptor into *fd (-1: none; any more
 * than one are closed) and the message flags into *flags. recvmsg's result. */
static ssize_t recv_handoff(int rx, struct handoff_msg *m, int *fd, int *flags)
{
    union handoff_cmsg u;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};

    *fd = -1;
    ssize_t n = recvmsg(rx, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return n;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < nfd; k++) {
            int x;
            memcpy(&x, CMSG_DATA(cm) + k * sizeof(int), sizeof(x));
            if (*fd < 0)
                *fd = x;
            else
                close(x); /* never more than one: not ours to keep */
        }
    }
    *flags = mh.msg_flags;
    return n;
}

/* Connections other workers passed here, each with its ClientHello still unread. */
static void on_handoff(uv_poll_t *h, int status, int events)
{
    struct cb_server *srv = h->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < CB_ACCEPT_BATCH; i++) {
        struct handoff_msg m;
        int fd, flags;

        ssize_t n = recv_handoff(srv->cfg.handoff_rx, &m, &fd, &flags);
        if (n < 0)
            return; /* EAGAIN: all taken */
        if (flags & MSG_CTRUNC) {
            /* The kernel dropped the descriptor: this worker has no room for one. */
            refuse(srv, fd, "error", "handoff_dropped",
                   "reason=\"out of descriptors; raise LimitNOFILE\"");
            continue;
        }
        if (n != (ssize_t)sizeof(m) || m.magic != CB_HANDOFF_MAGIC || fd < 0 || m.from < 0 ||
            m.from >= srv->cfg.workers || (flags & MSG_TRUNC)) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        if (srv->draining) {
            /* Passed as this worker began to stop (the sender had not yet heard): a new
             * connection during shutdown, closed as one still in a listen queue would be. */
            close(fd);
            continue;
        }
        if (mono_ms() - m.accepted_ms >= srv->cfg.handshake_timeout_ms) {
            /* It waited out its handshake time in the queue (this worker was restarting). */
            char client[INET6_ADDRSTRLEN + 8];
            addr_text(&m.peer, client, sizeof(client));
            cb_log("warn", "handshake_timeout",
                   "worker=%d client=%s reason=\"waited %llu ms to be passed to this worker\"",
                   srv->cfg.worker, client, (unsigned long long)(mono_ms() - m.accepted_ms));
            close(fd);
            gcount(srv, CB_GMETRIC_TIMEOUT);
            continue;
        }
        if (srv->cfg.max_conns != 0 && srv->n_conns >= srv->cfg.max_conns && !m.back &&
            m.from != srv->cfg.worker) {
            /* This worker is full, the one that accepted it had room: it serves it. */
            m.back = 1;
            if (hand_off(srv, fd, m.from, &m) == 0) {
                close(fd);
                continue;
            }
        }
        if (refuse_over_cap(srv, fd))
            continue;
        struct arrival how = {.local = &m.local, .adopted = true, .accepted_ms = m.accepted_ms};
        accept_one(srv, fd, &m.peer, &how);
    }
}

static void on_accept_resume(uv_timer_t *t);

static void on_listener(uv_poll_t *h, int status, int events)
{
    struct listener *l = h->data;
    struct cb_server *srv = (struct cb_server *)h->loop->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < CB_ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0 && refuse_over_cap(srv, fd))
            continue;
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            struct arrival how = {.accepted_ms = mono_ms()};
            accept_one(srv, fd, &peer, &how);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors: stop accepting for a moment instead of spinning. */
            if (!srv->accept_paused) {
                /* Counted, logged at most once a second: a flood must not flood the log. */
                srv->pauses++;
                if (uv_now(srv->loop) - srv->last_pause_log >= 1000) {
                    srv->last_pause_log = uv_now(srv->loop);
                    cb_log("error", "accept_paused",
                           "worker=%d reason=\"%s\" open_connections=%zu resume_in_ms=100 "
                           "pauses=%llu",
                           srv->cfg.worker, strerror(errno), srv->n_conns,
                           (unsigned long long)srv->pauses);
                }
                srv->accept_paused = true;
                for (struct listener *x = srv->listeners; x; x = x->next)
                    uv_poll_stop(&x->poll);
                uv_timer_start(&srv->accept_pause, on_accept_resume, 100, 0);
            }
            return;
        }
        return; /* EAGAIN, or a connection that went away before accept */
    }
}

static void on_accept_resume(uv_timer_t *t)
{
    struct cb_server *srv = t->data;
    srv->accept_paused = false;
    if (srv->draining)
        return;
    for (struct listener *x = srv->listeners; x; x = x->next)
        uv_poll_start(&x->poll, UV_READABLE, on_listener);
}

/* ---- listeners ---------------------------------------------------------- */

static int open_listener(const struct cb_listen_addr *a, int *out, struct cb_err *err)
{
    int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, zero = 0;

    if (fd < 0)
        return cb_err_set(err, CB_EIO, "cannot listen on %s: %s", a->text, strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, a->dual_stack ? &zero : &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->addr, a->len) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            return cb_err_set(err, CB_EIO,
                              "cannot listen on %s: the address is in use by another program; "
                              "stop it or move the binding to another port",
                              a->text);
        if (e == EACCES || e == EPERM)
            return cb_err_set(err, CB_EPERM,
                              "cannot listen on %s: permission denied; ports below 1024 need "
                              "root or CAP_NET_BIND_SERVICE",
                              a->text);
        if (e == EADDRNOTAVAIL)
            return cb_err_set(err, CB_EIO,
                              "cannot listen on %s: no such local address on this machine; fix "
                              "or delete the IP binding",
                              a->text);
        return cb_err_set(err, CB_EIO, "cannot listen on %s: %s", a->text, strerror(e));
    }
    *out = fd;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    close(l->fd);
    free(l);
}

int cb_listen_probe(const struct cb_listen_addr *addrs, size_t n, struct cb_err *err)
{
    for (size_t i = 0; i < n; i++) {
        int fd, ret = open_listener(&addrs[i], &fd, err);
        if (ret != 0)
            return ret;
        close(fd);
    }
    return 0;
}

int cb_server_listen(struct cb_server *srv, const struct cb_listen_addr *addrs, size_t n,
                     struct cb_err *err)
{
    struct listener *l, **pp;
    int ret = 0;

    for (l = srv->listeners; l; l = l->next)
        l->keep = false;
    for (size_t i = 0; i < n && ret == 0; i++) {
        for (l = srv->listeners; l; l = l->next)
            if (strcmp(l->addr.text, addrs[i].text) == 0)
                break;
        if (l != NULL) {
            l->keep = true;
            continue;
        }
        int fd;
        if ((ret = open_listener(&addrs[i], &fd, err)) != 0)
            break;
        l = calloc(1, sizeof(*l));
        if (l == NULL) {
            close(fd);
            ret = cb_err_set(err, CB_ENOMEM, "out of memory");
            break;
        }
        l->fd = fd;
        l->addr = addrs[i];
        l->keep = true;
        uv_poll_init(srv->loop, &l->poll, fd);
        l->poll.data = l;
        if (!srv->accept_paused && !srv->draining)
            uv_poll_start(&l->poll, UV_READABLE, on_listener);
        l->next = srv->listeners;
        srv->listeners = l;
        if (srv->cfg.worker == 0)
            cb_log("info", "listen", "addr=%s", l->addr.text);
    }
    if (ret != 0)
        return ret;
    for (pp = &srv->listeners; *pp;) {
        l = *pp;
        if (l->keep) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        if (srv->cfg.worker == 0)
            cb_log("info", "unlisten", "addr=%s", l->addr.text);
        uv_close((uv_handle_t *)&l->poll, on_listener_closed);
    }
    return 0;
}

static int plan_add(struct cb_listen_addr **arr, size_t *n, size_t *cap, int family,
                    const uint8_t *addr, uint16_t port, bool dual)
{
    struct cb_listen_addr a = {0};
    char text[INET6_ADDRSTRLEN];

    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&a.addr;
        s->sin_family = AF_INET;
        s->sin_port = htons(port);
        memcpy(&s->sin_addr, addr, 4);
        a.len = sizeof(*s);
        inet_ntop(AF_INET, addr, text, sizeof(text));
        snprintf(a.text, sizeof(a.text), "%s:%u", text, port);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a.addr;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(port);
        memcpy(&s->sin6_addr, addr, 16);
        a.len = sizeof(*s);
        inet_ntop(AF_INET6, addr, text, sizeof(text));
        snprintf(a.text, sizeof(a.text), "[%s]:%u", text, port);
    }
    a.dual_stack = dual;
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*arr)[i].text, a.text) == 0)
            return 0;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct cb_listen_addr *na = realloc(*arr, nc * sizeof(*na));
        if (na == NULL)
            return CB_ENOMEM;
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = a;
    return 0;
}

static bool ipv6_available(void)
{
    static int known = -1;
    if (known < 0) {
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        known = fd >= 0;
        if (fd >= 0)
            close(fd);
    }
    return known;
}

int cb_listen_plan(const struct cb_snapshot *snap, struct cb_listen_addr **out, size_t *n,
                   struct cb_err *err)
{
    static const uint8_t any[16];
    size_t count = cb_snapshot_count(snap), cap = 0;
    uint8_t *wild = calloc(65536, 1); /* ports where any local address must answer */
    struct cb_listen_addr *arr = NULL;

    *n = 0;
    if (wild == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < count; i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(snap, i);
        if (b->kind != CB_KEY_IP)
            wild[b->port] = 1;
    }
    for (uint32_t port = 1; port < 65536; port++) {
        if (!wild[port])
            continue;
        /* One dual-stack socket answers every local address, v4 and v6. */
        int ret = ipv6_available() ? plan_add(&arr, n, &cap, AF_INET6, any, (uint16_t)port, true)
                                   : plan_add(&arr, n, &cap, AF_INET, any, (uint16_t)port, false);
        if (ret != 0)
            goto out_nomem;
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(snap, i);
        if (b->kind == CB_KEY_IP && !wild[b->port] &&
            plan_add(&arr, n, &cap, b->family, b->addr, b->port, false) != 0)
            goto out_nomem;
    }
    free(wild);
    *out = arr;
    return 0;
out_nomem:
    free(wild);
    free(arr);
    *n = 0;
    return cb_err_set(err, CB_ENOMEM, "out of memory");
}

/* ---- server ------------------------------------------------------------- */

int cb_server_new(uv_loop_t *loop, const struct cb_server_config *cfg, struct cb_server **out,
                  struct cb_err *err)
{
    struct cb_server *srv = calloc(1, sizeof(*srv));

    if (srv == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->default_ctx = cb_tls_default_ctx(on_client_hello);
    if (srv->default_ctx == NULL) {
        free(srv);
        cb_err_set(err, CB_ETLS, "cannot create the TLS context");
        cb_tls_err_append(err);
        return CB_ETLS;
    }
    if (cb_tls_set_ticket_keys(srv->default_ctx, srv->cfg.ticket_keys) != 0) {
        cb_tls_ctx_free(srv->default_ctx);
        free(srv);
        return cb_err_set(err, CB_ETLS, "cannot set the session ticket keys");
    }
    loop->data = srv;
    if (srv->cfg.handoff_rx >= 0 && srv->cfg.workers > 1) {
        if (uv_poll_init(loop, &srv->handoff_poll, srv->cfg.handoff_rx) != 0) {
            cb_tls_ctx_free(srv->default_ctx);
            free(srv);
            return cb_err_set(err, CB_EIO, "cannot watch the connections other workers pass");
        }
        srv->handoff_poll.data = srv;
        uv_poll_start(&srv->handoff_poll, UV_READABLE, on_handoff);
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
    /* Open connections go on counting against their binding's cap in the new runtime. */
    for (struct conn *c = srv->conns; c != NULL; c = c->next) {
        struct cb_binding_key key;
        long i;
        if (!c->counted)
            continue;
        if (cb_key_parse_word(c->binding->key_text, &key, NULL) != 0 ||
            (i = cb_snapshot_find(rt->snap, &key)) < 0) {
            c->counted = false; /* the binding is gone: there is no cap left to hold */
            continue;
        }
        c->cap_idx = (uint32_t)i;
        rt->active[i]++;
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
        conn_close(srv->conns);
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
    for (struct conn *c = srv->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->state == ST_WAIT) {
            cb_tls_shutdown(c->ssl);
            conn_close(c);
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
        conn_close(srv->conns);
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
        struct handoff_msg m;
        int fd, flags;
        while (recv_handoff(srv->cfg.handoff_rx, &m, &fd, &flags) >= 0)
            if (fd >= 0)
                close(fd);
        srv->closing++;
        uv_close((uv_handle_t *)&srv->handoff_poll, on_server_handle_closed);
    }
    uv_close((uv_handle_t *)&srv->accept_pause, on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->grace, on_server_handle_closed);
}
