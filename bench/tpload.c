/*
 * tpload.c: TLS forwarded-throughput load for the certbind benchmarks (bench/run-throughput).
 *
 * Client: keeps -c TLS connections open against one host:port (a TLS-terminating proxy)
 * from a single thread (non-blocking sockets, epoll). Each connection makes one
 * handshake (TLS 1.3 only, one cipher suite: -C, TLS_AES_128_GCM_SHA256 by default, so
 * that every server does the same AEAD), sends one mode byte, then streams:
 *   -u  upload:   the client writes 16 KB records as fast as the path takes them; the
 *                 backend reads and discards;
 *   -D  download: the backend writes as fast as the path takes it; the client reads.
 * Application bytes are counted on the client side over -d seconds after -w seconds of
 * warm-up (in steady state the buffers on the path hold a constant amount, so bytes
 * written by the client are bytes delivered). With -p PID,... it also reads the CPU
 * time those processes (the proxy) used in the window and reports CPU-seconds per GB.
 *
 * Backend (-B PORT): listens on 127.0.0.1:PORT; each connection's first byte chooses:
 * 'U' read and discard until EOF, 'D' write a 256 KB buffer again and again until the
 * peer goes away.
 *
 * MB = 10^6 bytes, GB = 10^9 bytes. The last line is machine-readable:
 * "result key=value ...".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_EVENTS 256
#define REC 16384          /* one TLS record of plaintext */
#define BACKEND_BUF 262144 /* backend read/write size */
#define BATCH 64           /* records per connection per wake-up (fairness) */
#define SHOW_ERRORS 5

struct options {
    const char *host, *port, *sni, *suite;
    int conns;
    double duration, warmup;
    char mode; /* 'U' or 'D' */
    pid_t pids[BENCH_MAX_PIDS];
    int n_pids;
};

/* ---- the backend ---------------------------------------------------------- */

struct bconn {
    int fd;
    char mode; /* 0 until the first byte */
    bool out;  /* EPOLLOUT watched */
};

static int run_backend(const char *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    struct epoll_event ev, evs[MAX_EVENTS];
    int one = 1, lfd, ep;
    static char buf[BACKEND_BUF];

    memset(buf, 'x', sizeof(buf));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        perror("tpload: socket");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4096) != 0) {
        fprintf(stderr, "tpload: cannot listen on 127.0.0.1:%s: %s\n", port, strerror(errno));
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "tpload: backend listening on 127.0.0.1:%s\n", port);
    while (!stop_flag) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, 500);
        for (int i = 0; i < n; i++) {
            struct bconn *b = evs[i].data.ptr;
            if (b == NULL) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct bconn *nb = calloc(1, sizeof(*nb));
                    if (nb == NULL) {
                        close(c);
                        continue;
                    }
                    nb->fd = c;
                    ev.events = EPOLLIN;
                    ev.data.ptr = nb;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            bool closed = false;
            if (b->mode != 'D') { /* read: the mode byte, then everything (upload) */
                ssize_t r;
                while ((r = read(b->fd, buf, sizeof(buf))) > 0) {
                    if (b->mode == 0) {
                        b->mode = buf[0] == 'D' ? 'D' : 'U';
                        if (b->mode == 'D') {
                            ev.events = EPOLLOUT; /* a download sends nothing more */
                            ev.data.ptr = b;
                            epoll_ctl(ep, EPOLL_CTL_MOD, b->fd, &ev);
                            break;
                        }
                    }
                }
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                    closed = true;
            } else {
                ssize_t w;
                while ((w = send(b->fd, buf, sizeof(buf), MSG_NOSIGNAL)) > 0)
                    ;
                if (w < 0 && errno != EAGAIN && errno != EINTR)
                    closed = true;
                if (evs[i].events & (EPOLLHUP | EPOLLERR))
                    closed = true;
            }
            if (closed) {
                close(b->fd);
                free(b);
            }
        }
    }
    return 0;
}

/* ---- the client ----------------------------------------------------------- */

enum cstate { C_CONNECTING, C_HANDSHAKE, C_MODE, C_STREAM };

struct conn {
    int fd;
    SSL *ssl;
    enum cstate st;
    unsigned events;
};

struct loader {
    const struct options *o;
    SSL_CTX *ctx;
    struct addrinfo *ai;
    int ep;
    struct conn *conns;
    bool measuring;
    uint64_t bytes, errors, shown;
    char proto[160];
};

static char record[REC];

static void count_error(struct loader *L, const char *what)
{
    if (L->measuring)
        L->errors++;
    if (L->shown++ < SHOW_ERRORS)
        fprintf(stderr, "tpload: error: %s\n", what);
}

static void set_events(struct loader *L, struct conn *c, unsigned want)
{
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (c->events == want)
        return;
    epoll_ctl(L->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->events = want;
}

static void conn_drop(struct conn *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->events = 0;
}

static void conn_start(struct loader *L, struct conn *c)
{
    c->fd = socket(L->ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        count_error(L, "socket failed");
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ssl = SSL_new(L->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
        (L->o->sni != NULL && SSL_set_tlsext_host_name(c->ssl, L->o->sni) != 1)) {
        count_error(L, "SSL_new failed");
        conn_drop(c);
        return;
    }
    SSL_set_connect_state(c->ssl);
    if (connect(c->fd, L->ai->ai_addr, L->ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        count_error(L, strerror(errno));
        conn_drop(c);
        return;
    }
    c->st = C_CONNECTING;
    set_events(L, c, EPOLLOUT);
}

/* An SSL call did not succeed: wait for what it wants, or drop the connection. */
static void on_ssl_block(struct loader *L, struct conn *c, int rc, const char *where)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        set_events(L, c, EPOLLIN);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        set_events(L, c, EPOLLOUT);
        return;
    }
    char why[300], ebuf[256] = "";
    unsigned long code = ERR_peek_last_error();
    if (code != 0)
        ERR_error_string_n(code, ebuf, sizeof(ebuf));
    else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
        snprintf(ebuf, sizeof(ebuf), "closed by the server");
    else
        snprintf(ebuf, sizeof(ebuf), "%s", errno ? strerror(errno) : "SSL error");
    snprintf(why, sizeof(why), "%s: %s", where, ebuf);
    ERR_clear_error();
    count_error(L, why);
    conn_drop(c); /* started again by the sweep */
}

static void drive(struct loader *L, struct conn *c)
{
    if (c->st == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            count_error(L, strerror(err));
            conn_drop(c);
            return;
        }
        c->st = C_HANDSHAKE;
    }
    ERR_clear_error();
    errno = 0;
    if (c->st == C_HANDSHAKE) {
        int rc = SSL_do_handshake(c->ssl);
        if (rc != 1) {
            on_ssl_block(L, c, rc, "handshake");
            return;
        }
        if (L->proto[0] == '\0') {
            snprintf(L->proto, sizeof(L->proto), "%s %s", SSL_get_version(c->ssl),
                     SSL_get_cipher_name(c->ssl));
            fprintf(stderr, "tpload: negotiated %s\n", L->proto);
        }
        c->st = C_MODE;
    }
    if (c->st == C_MODE) {
        char m = L->o->mode;
        int rc = SSL_write(c->ssl, &m, 1);
        if (rc != 1) {
            on_ssl_block(L, c, rc, "mode byte");
            return;
        }
        c->st = C_STREAM;
    }
    if (L->o->mode == 'U') {
        for (int i = 0; i < BATCH; i++) {
            int rc = SSL_write(c->ssl, record, REC);
            if (rc <= 0) {
                on_ssl_block(L, c, rc, "upload");
                return;
            }
            if (L->measuring)
                L->bytes += (uint64_t)rc;
        }
        set_events(L, c, EPOLLOUT);
    } else {
        static char buf[REC];
        for (int i = 0; i < BATCH || SSL_has_pending(c->ssl); i++) {
            int rc = SSL_read(c->ssl, buf, sizeof(buf));
            if (rc <= 0) {
                on_ssl_block(L, c, rc, "download");
                return;
            }
            if (L->measuring)
                L->bytes += (uint64_t)rc;
        }
        set_events(L, c, EPOLLIN);
    }
}

static SSL_CTX *client_ctx(const struct options *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_ciphersuites(ctx, o->suite) != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519") != 1) {
        fprintf(stderr, "tpload: bad cipher suite %s\n", o->suite);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int run_client(const struct options *o)
{
    struct loader L = {.o = o, .ep = -1};
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct epoll_event evs[MAX_EVENTS];
    int gai, ret = 1;

    memset(record, 'y', sizeof(record));
    if ((gai = getaddrinfo(o->host, o->port, &hints, &L.ai)) != 0) {
        fprintf(stderr, "tpload: %s:%s: %s\n", o->host, o->port, gai_strerror(gai));
        return 1;
    }
    if ((L.ctx = client_ctx(o)) == NULL || (L.ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (L.conns = calloc((size_t)o->conns, sizeof(*L.conns))) == NULL)
        goto out;
    for (int i = 0; i < o->conns; i++) {
        L.conns[i].fd = -1;
        conn_start(&L, &L.conns[i]);
    }
    double t0 = now(), t_start = t0, t_end = t0 + o->warmup + o->duration, next_sweep = t0 + 0.2;
    double scpu0 = 0, ccpu0 = 0;
    while (!stop_flag) {
        int n = epoll_wait(L.ep, evs, MAX_EVENTS, 50);
        for (int i = 0; i < n; i++)
            drive(&L, evs[i].data.ptr);
        double t = now();
        if (!L.measuring && t >= t0 + o->warmup) {
            L.measuring = true;
            t_start = t;
            scpu0 = pids_cpu(o->pids, o->n_pids);
            ccpu0 = self_cpu();
        }
        if (t >= t_end)
            break;
        if (t >= next_sweep) { /* connections lost: open them again */
            next_sweep = t + 0.2;
            for (int i = 0; i < o->conns; i++)
                if (L.conns[i].fd < 0)
                    conn_start(&L, &L.conns[i]);
        }
    }
    double secs = now() - t_start;
    double scpu = L.measuring ? pids_cpu(o->pids, o->n_pids) - scpu0 : 0,
           ccpu = L.measuring ? self_cpu() - ccpu0 : 0;
    if (!L.measuring)
        secs = 0;
    double mbs = secs > 0 ? (double)L.bytes / secs / 1e6 : 0;
    double per_gb = L.bytes > 0 ? scpu / ((double)L.bytes / 1e9) : 0;
    printf("%s %.1f MB in %.2f s over %d connections: %.1f MB/s (%s)\n",
           o->mode == 'U' ? "upload" : "download", (double)L.bytes / 1e6, secs, o->conns, mbs,
           L.proto[0] ? L.proto : "no handshake completed");
    printf("errors: %llu; client cpu: %.0f%% of a core", (unsigned long long)L.errors,
           secs > 0 ? 100 * ccpu / secs : 0);
    if (o->n_pids > 0)
        printf(", server cpu: %.0f%% of a core, %.2f server CPU-seconds per GB",
               secs > 0 ? 100 * scpu / secs : 0, per_gb);
    printf("\n");
    printf("result bytes=%llu secs=%.3f mb_per_s=%.2f errors=%llu client_cpu=%.3f "
           "server_cpu=%.3f server_cpu_s_per_gb=%.3f\n",
           (unsigned long long)L.bytes, secs, mbs, (unsigned long long)L.errors, ccpu, scpu,
           per_gb);
    ret = L.bytes > 0 ? 0 : 1;
out:
    for (int i = 0; L.conns != NULL && i < o->conns; i++)
        conn_drop(&L.conns[i]);
    free(L.conns);
    if (L.ep >= 0)
        close(L.ep);
    SSL_CTX_free(L.ctx);
    freeaddrinfo(L.ai);
    return ret;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tpload -u|-D [options] HOST:PORT\n"
               "       tpload -B PORT               (backend on 127.0.0.1:PORT)\n"
               "  -u          upload: the client writes, the backend discards\n"
               "  -D          download: the backend writes, the client reads\n"
               "  -c N        connections (1)\n"
               "  -d SECONDS  measured duration (10)\n"
               "  -w SECONDS  warm-up before measuring (1)\n"
               "  -s NAME     SNI\n"
               "  -C SUITE    the one TLS 1.3 cipher suite offered (TLS_AES_128_GCM_SHA256)\n"
               "  -p PID,...  server processes whose CPU time is measured\n");
}

int main(int argc, char **argv)
{
    struct options o = {.conns = 1, .duration = 10, .warmup = 1, .suite = "TLS_AES_128_GCM_SHA256"};
    const char *backend = NULL;
    int opt;

    while ((opt = getopt(argc, argv, "uDc:d:w:s:C:p:B:h")) != -1) {
        switch (opt) {
        case 'u':
            o.mode = 'U';
            break;
        case 'D':
            o.mode = 'D';
            break;
        case 'c':
            o.conns = atoi(optarg);
            break;
        case 'd':
            o.duration = atof(optarg);
            break;
        case 'w':
            o.warmup = atof(optarg);
            break;
        case 's':
            o.sni = optarg;
            break;
        case 'C':
            o.suite = optarg;
            break;
        case 'p':
            if (parse_pids(optarg, o.pids, &o.n_pids) != 0) {
                fprintf(stderr, "tpload: bad -p list\n");
                return 2;
            }
            break;
        case 'B':
            backend = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (backend != NULL)
        return run_backend(backend);
    char *colon = optind == argc - 1 ? strrchr(argv[optind], ':') : NULL;
    if (o.mode == 0 || colon == NULL || o.conns < 1 || o.conns > 10000 || o.duration <= 0 ||
        o.warmup < 0) {
        usage(stderr);
        return 2;
    }
    *colon = '\0';
    o.host = argv[optind];
    o.port = colon + 1;
    return run_client(&o);
}
