/*
 * relay.c: a connection's backend and the bytes between it and the client: the
 * backend's connection (when the first request comes, for HTTP), the PROXY header
 * ahead of the first bytes, the two pumps, and the 503 of a binding without a backend.
 *
 * Data moves through one shared scratch buffer (srv->scratch); only bytes the other
 * side cannot take yet are copied into a per-connection buffer, and while such bytes
 * wait, their source is not read (back-pressure).
 */
#include "net/proxy.h"
#include "net/server_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CB_PUMP_ROUNDS 8

static int buf_keep(struct cb_relay_buf *b, const char *p, size_t n)
{
    if (b->data == NULL && (b->data = malloc(CB_BUF_SIZE)) == NULL)
        return -1;
    memcpy(b->data, p, n);
    b->off = 0;
    b->len = (uint32_t)n;
    return 0;
}

static void buf_consumed(struct cb_relay_buf *b, size_t n)
{
    b->off += (uint32_t)n;
    b->len -= (uint32_t)n;
    if (b->len == 0) {
        free(b->data); /* an idle connection holds no buffer */
        b->data = NULL;
        b->off = 0;
    }
}

/* The 503 of a binding without a backend, naming it twice: room for the longest key
 * (a 253-character name and a port), with the head, in the buffer that queues it. */
#define CB_503_BODY_MAX (2 * CB_KEY_TEXT_MAX + 128)
#define CB_503_HEAD_MAX 160
_Static_assert(CB_503_BODY_MAX + CB_503_HEAD_MAX <= CB_BUF_SIZE, "the 503 fits one buffer");

static const char response_503_head[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                        "Content-Type: text/plain; charset=utf-8\r\n"
                                        "Content-Length: %d\r\n"
                                        "Connection: close\r\n"
                                        "\r\n";

static void queue_503(struct cb_conn *c)
{
    char body[CB_503_BODY_MAX], msg[CB_503_HEAD_MAX + CB_503_BODY_MAX];
    int blen = snprintf(body, sizeof(body),
                        "certbind: binding %s has no backend.\n"
                        "Give it one: certbind update sslcert %s backend=HOST:PORT\n",
                        c->binding->key_text, c->binding->key_text);
    if (blen < 0)
        return;
    if ((size_t)blen >= sizeof(body))
        blen = (int)sizeof(body) - 1; /* never announce more than is sent */
    int hlen = snprintf(msg, CB_503_HEAD_MAX, response_503_head, blen);
    if (hlen < 0 || hlen >= CB_503_HEAD_MAX)
        return;
    memcpy(msg + hlen, body, (size_t)blen);
    if (buf_keep(&c->b2c, msg, (size_t)(hlen + blen)) == 0)
        c->backend_eof = true; /* nothing more will follow the response */
}

/*
 * An end of input is passed on as soon as it is seen (and the bytes before it are out),
 * not on a later pump round: when the last round sees it, no poll would bring us back.
 */
static void client_ended(struct cb_conn *c)
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

static void backend_ended(struct cb_conn *c)
{
    if (!c->client_shut) {
        cb_tls_shutdown(c->ssl); /* close_notify: the client knows the reply is whole */
        c->client_shut = true;
    }
}

/* Client -> backend. Returns 1 on progress, 0 when blocked, -1 when closed. */
static int pump_c2b(struct cb_conn *c)
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
            cb_conn_fail(c, "backend_error", why);
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
            cb_conn_fail(c, "backend_error", why);
            return -1;
        }
        if (w < 0)
            w = 0;
        if (w < n && buf_keep(&c->c2b, c->srv->scratch + w, (size_t)(n - w)) != 0) {
            cb_conn_fail(c, "conn_error", "out of memory");
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
        cb_conn_fail(c, "client_error", cb_tls_io_reason(why, sizeof(why)));
        return -1;
    }
}

/* Backend -> client. */
static int pump_b2c(struct cb_conn *c)
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
                cb_conn_fail(c, "client_error", cb_tls_io_reason(why, sizeof(why)));
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
            cb_conn_fail(c, "client_error", cb_tls_io_reason(why, sizeof(why)));
            return -1;
        }
        ssize_t w = (ssize_t)wrote; /* 0 after WANT_*: the same bytes are kept and offered again */
        if (w < n && buf_keep(&c->b2c, c->srv->scratch + w, (size_t)(n - w)) != 0) {
            cb_conn_fail(c, "conn_error", "out of memory");
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
    cb_conn_fail(c, "backend_error", why);
    return -1;
}

void cb_relay_pump(struct cb_conn *c)
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
            cb_conn_close(c);
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
        cb_conn_close(c); /* the response and close_notify are out */
        return;
    }
    cb_conn_update_polls(c);
}

/* ---- backend connection ------------------------------------------------- */

/* The binding's PROXY header for c into hdr; its length, or a negative CB_E* code. */
static int build_proxy_header(struct cb_conn *c, unsigned char *hdr, size_t size)
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

static void write_proxy_header(struct cb_conn *c)
{
    unsigned char hdr[CB_PROXY_HDR_MAX];
    int n = build_proxy_header(c, hdr, sizeof(hdr));
    if (n > 0 && buf_keep(&c->c2b, (const char *)hdr, (size_t)n) != 0)
        cb_conn_fail(c, "conn_error", "out of memory");
}

static void start_relay(struct cb_conn *c)
{
    if (!cb_conn_enter(c, CB_CONN_RELAY))
        return;
    c->last_active = uv_now(c->srv->loop);
    cb_conn_arm_timer(c, c->srv->cfg.idle_timeout_ms);
    /* The PROXY header is for the backend: none without one (the relay answers 503). */
    if (c->bfd >= 0 && c->binding->proxy != CB_PROXY_OFF && !c->proxy_sent)
        write_proxy_header(c);
    if (c->state != CB_CONN_CLOSED)
        cb_relay_pump(c);
}

void cb_relay_connect_backend(struct cb_conn *c)
{
    const struct cb_backend *be = cb_runtime_backend(c->rt, c->bidx);
    char why[300];

    if (c->binding->backend == NULL) {
        c->respond_503 = true;
        start_relay(c);
        return;
    }
    if (be->addr_len == 0) {
        snprintf(why, sizeof(why), "backend %s has no address: %s", c->binding->backend,
                 be->error ? be->error : "unresolved");
        cb_conn_fail(c, "backend_error", why);
        return;
    }
    c->bfd = socket(be->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->bfd < 0) {
        snprintf(why, sizeof(why), "cannot create a socket for backend %s: %s", c->binding->backend,
                 strerror(errno));
        cb_conn_fail(c, "backend_error", why);
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
        cb_conn_fail(c, "backend_error", why);
        return;
    }
    if (!cb_conn_enter(c, CB_CONN_CONNECTING))
        return;
    cb_conn_arm_timer(c, c->srv->cfg.connect_timeout_ms);
    c->want_cr = c->want_cw = c->want_br = false;
    c->want_bw = true; /* writable = connected (or failed) */
    cb_conn_update_polls(c);
}

void cb_relay_on_connected(struct cb_conn *c)
{
    char why[300];
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        snprintf(why, sizeof(why), "backend %s: %s", c->binding->backend, strerror(err));
        cb_conn_fail(c, "backend_error", why);
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
bool cb_relay_client_speaks_first(struct cb_conn *c)
{
    if (c->binding->backend == NULL || cb_runtime_backend(c->rt, c->bidx)->addr_len == 0)
        return false;
    return cb_tls_alpn_is_http(c->ssl);
}

void cb_relay_on_first_bytes(struct cb_conn *c)
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
            cb_conn_fail(c, "conn_error", "out of memory");
            return;
        }
        memcpy(c->c2b.data + hn, c->srv->scratch, n);
        c->c2b.len += (uint32_t)n;
        c->proxy_sent = true;
        cb_relay_connect_backend(c);
        return;
    }
    switch (io) {
    case CB_TLS_IO_WANT_READ:
        c->want_cr = true;
        c->want_cw = false;
        cb_conn_update_polls(c);
        return;
    case CB_TLS_IO_WANT_WRITE:
        c->want_cw = true;
        c->want_cr = false;
        cb_conn_update_polls(c);
        return;
    case CB_TLS_IO_CLOSED:
        cb_conn_close(c); /* closed before asking anything: nothing to forward */
        return;
    default:
        cb_conn_fail(c, "client_error", cb_tls_io_reason(why, sizeof(why)));
        return;
    }
}
