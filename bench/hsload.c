/*
 * hsload.c: a TLS handshake load generator for the certbind benchmarks.
 *
 * Keeps -c connections in flight against one host:port from a single thread
 * (non-blocking sockets, epoll). Every connection makes one FULL handshake - a new
 * SSL object, no session reuse, no tickets asked for - then closes and is replaced
 * at once. The SNI of each connection is drawn at random from -n FILE (one name a
 * line; "-" sends no SNI) or is the one -s NAME. After -d seconds (and -w seconds
 * of warm-up that are not counted) it prints handshakes/s, errors by kind and, with
 * -v, whether every served certificate covered the SNI sent.
 *
 * With -p PID,PID... it also reads the CPU time those processes (the server) spent
 * during the measured window, and reports handshakes per server CPU-second: on a
 * shared machine, and when the client side is the bottleneck (an ECDSA verify costs
 * the client more than the server's sign), that is the figure to compare.
 *
 * -L PORT turns it into a backend sink instead: accept, read until EOF, close.
 *
 * -M CERT,KEY makes handshakes in memory instead (client and server in this thread,
 * joined by a BIO pair, no sockets) and reports the server side's CPU time per
 * handshake: what libssl itself costs, the floor under any server built on it.
 *
 * -R makes RESUMED handshakes instead: each connection slot draws its SNI name once
 * and keeps it, makes one full handshake, keeps the session (a TLS 1.2 ticket, or a
 * TLS 1.3 NewSessionTicket, which arrives after the handshake: the slot reads until
 * it has one, at most 1 s) and offers it on every reconnect. The newest ticket the
 * server sent replaces the kept one, as browsers do. Resumed and full handshakes are
 * counted apart (SSL_session_reused); a handshake that offered a session and was not
 * resumed counts as full, and a slot that gets no ticket counts a "ticket" error.
 *
 * -1 is a sweep: each name of -n FILE is sent once, in the file's order (shuffle the file
 * for a random order), with -c connections in flight; the run ends when every name has
 * had its handshake (or its error: a failed name is counted, not retried), or after -d
 * seconds at most. Warm-up is off. bench/run-scale uses it to hand every name of a large
 * store one handshake (certbind parses a certificate on its first use).
 *
 * The last line is machine-readable: "result key=value ...".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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
#include <openssl/x509v3.h>

#define MAX_EVENTS 256
#define MAX_SAMPLES 3600
#define SHOW_ERRORS 5   /* first few errors of each kind are printed */
#define LAT_BUCKETS 100 /* up to 2^25 us */

enum err_kind { E_CONNECT, E_HANDSHAKE, E_TIMEOUT, E_MISMATCH, E_TICKET, E_KINDS };
static const char *const err_names[E_KINDS] = {"connect", "handshake", "timeout", "mismatch",
                                               "ticket"};
#define TICKET_WAIT 1.0 /* -R, TLS 1.3: seconds a slot waits for the server's ticket */

struct options {
    const char *host, *port;
    int conns;
    double duration, warmup, timeout;
    bool tls12, verify, close_notify, resume, once;
    const char *groups, *alpn, *expect_default;
    const char *sigalgs, *ciphers; /* or NULL: OpenSSL's defaults */
    pid_t pids[BENCH_MAX_PIDS];
    int n_pids;
    uint64_t seed;
};

struct conn {
    int fd;
    SSL *ssl;
    const char *sni; /* borrowed from the name table; NULL: no SNI */
    bool connecting;
    double started;
    unsigned events; /* what epoll watches now */
    /* -R only: */
    bool named;        /* sni drawn once for this slot */
    SSL_SESSION *sess; /* the session offered on the next connection (owned) */
    bool got_ticket;   /* a new session arrived on this connection */
    bool await_ticket; /* handshake done, reading the TLS 1.3 ticket */
    double hs_done;    /* when the handshake ended */
};

struct names {
    char **v;
    size_t n;
};

struct stats {
    uint64_t done, errors[E_KINDS];
    uint64_t resumed, offered_not_resumed; /* -R */
    uint64_t per_sec[MAX_SAMPLES];         /* handshakes completed in each second of the window */
    double lat_sum;
    uint64_t lat_hist[LAT_BUCKETS]; /* handshake latency, buckets of 2^(i/4) microseconds */
};

/* xorshift64*: cheap, and good enough to spread SNI names. */
static uint64_t rng_state = 88172645463325252ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: hsload [options] HOST:PORT\n"
            "       hsload -L PORT            (backend sink on 127.0.0.1:PORT)\n"
            "       hsload -M CERT,KEY [-s NAME] [-2] [-d S]  (in-memory handshakes)\n"
            "  -c N        connections in flight (64)\n"
            "  -d SECONDS  measured duration (10)\n"
            "  -w SECONDS  warm-up before measuring (1)\n"
            "  -s NAME     SNI for every connection\n"
            "  -n FILE     SNI drawn at random from FILE, one name a line (\"-\": no SNI)\n"
            "  -2          TLS 1.2 (default TLS 1.3)\n"
            "  -g GROUPS   key exchange groups offered (X25519:P-256)\n"
            "  -S SIGALGS  signature algorithms offered (OpenSSL's default list)\n"
            "  -C CIPHERS  TLS 1.2 cipher suites offered (OpenSSL's default list)\n"
            "  -a LIST     ALPN protocols offered, comma-separated (none)\n"
            "  -v          check that each served certificate covers the SNI sent\n"
            "  -e NAME     with -v: the name the default certificate covers (no-SNI)\n"
            "  -k          send close_notify before closing\n"
            "  -t SECONDS  handshake timeout (10)\n"
            "  -p PID,...  server processes whose CPU time is measured\n"
            "  -r SEED     random seed\n"
            "  -R          resumed handshakes: each slot keeps its name and session ticket\n"
            "  -1          sweep: each name of -n FILE once, in order; ends when all are done\n");
}

static int read_names(const char *path, struct names *out)
{
    FILE *f = fopen(path, "r");
    char line[512];
    size_t cap = 0;

    if (f == NULL) {
        fprintf(stderr, "hsload: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            char **nv = realloc(out->v, nc * sizeof(*nv));
            if (nv == NULL)
                goto out_nomem;
            out->v = nv;
            cap = nc;
        }
        if (strcmp(line, "-") == 0) {
            out->v[out->n++] = NULL;
            continue;
        }
        if ((out->v[out->n] = strdup(line)) == NULL)
            goto out_nomem;
        out->n++;
    }
    fclose(f);
    if (out->n == 0) {
        fprintf(stderr, "hsload: %s has no names\n", path);
        return -1;
    }
    return 0;
out_nomem:
    fclose(f);
    fprintf(stderr, "hsload: out of memory reading %s\n", path);
    return -1;
}

/* ---- the backend sink --------------------------------------------------- */

static int run_sink(const char *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    struct epoll_event ev, evs[MAX_EVENTS];
    int one = 1, lfd, ep;
    char buf[16384];

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        perror("hsload: socket");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4096) != 0) {
        fprintf(stderr, "hsload: cannot listen on 127.0.0.1:%s: %s\n", port, strerror(errno));
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "hsload: sink listening on 127.0.0.1:%s\n", port);
    while (!stop_flag) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, 500);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    ev.events = EPOLLIN;
                    ev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            ssize_t r;
            while ((r = read(fd, buf, sizeof(buf))) > 0)
                ;
            if (r == 0 || (errno != EAGAIN && errno != EINTR))
                close(fd); /* closing removes it from the epoll set */
        }
    }
    return 0;
}

/* ---- the load generator ------------------------------------------------- */

struct loader {
    struct options *o;
    struct names *names;
    SSL_CTX *ctx;
    struct addrinfo *ai;
    int ep;
    struct conn *conns;
    struct stats st;
    bool measuring, draining;
    size_t next_name; /* -1: the next name of the file to send */
    int active;       /* connections open */
    double t_start;   /* of the measured window */
    uint64_t shown[E_KINDS];
    char proto_seen[160];
};

static void count_error(struct loader *L, enum err_kind k, const struct conn *c, const char *what)
{
    if (L->measuring)
        L->st.errors[k]++;
    if (L->shown[k]++ < SHOW_ERRORS)
        fprintf(stderr, "hsload: %s error (sni=%s): %s\n", err_names[k], c->sni ? c->sni : "-",
                what);
}

static const char *ssl_error_text(char *buf, size_t size, int ssl_err)
{
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
        ERR_error_string_n(e, buf, size);
    else if (ssl_err == SSL_ERROR_SYSCALL)
        snprintf(buf, size, "syscall: %s", errno ? strerror(errno) : "unexpected EOF");
    else
        snprintf(buf, size, "SSL error %d", ssl_err);
    ERR_clear_error();
    return buf;
}

static void set_events(struct loader *L, struct conn *c, unsigned want)
{
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (c->events == want)
        return;
    epoll_ctl(L->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->events = want;
}

static void conn_drop(struct loader *L, struct conn *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
        L->active--;
    }
    c->fd = -1;
    c->events = 0;
    c->got_ticket = false;
    c->await_ticket = false;
}

static void conn_start(struct loader *L, struct conn *c);

static void conn_restart(struct loader *L, struct conn *c)
{
    conn_drop(L, c);
    if (!stop_flag && !L->draining)
        conn_start(L, c);
}

static void conn_start(struct loader *L, struct conn *c)
{
    char why[256];

    if (L->o->once) {
        if (L->next_name >= L->names->n)
            return; /* every name had its turn: the slot stays closed */
        c->sni = L->names->v[L->next_name++];
    } else if (!L->o->resume || !c->named) {
        c->sni = L->names->n == 1 ? L->names->v[0] : L->names->v[rng() % L->names->n];
        c->named = true;
    }
    c->started = now();
    c->fd = socket(L->ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(why, sizeof(why), "socket: %s", strerror(errno));
        count_error(L, E_CONNECT, c, why);
        return; /* retried by the timeout sweep */
    }
    L->active++;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ssl = SSL_new(L->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
        (c->sni != NULL && SSL_set_tlsext_host_name(c->ssl, c->sni) != 1)) {
        count_error(L, E_HANDSHAKE, c, ssl_error_text(why, sizeof(why), 0));
        conn_drop(L, c);
        return;
    }
    if (L->o->resume) {
        SSL_set_app_data(c->ssl, c);
        if (c->sess != NULL && SSL_set_session(c->ssl, c->sess) != 1) {
            count_error(L, E_HANDSHAKE, c, ssl_error_text(why, sizeof(why), 0));
            conn_drop(L, c);
            return;
        }
    }
    SSL_set_connect_state(c->ssl);
    if (connect(c->fd, L->ai->ai_addr, L->ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        count_error(L, E_CONNECT, c, why);
        conn_drop(L, c);
        return;
    }
    c->connecting = true;
    set_events(L, c, EPOLLOUT);
}

static void check_name(struct loader *L, struct conn *c)
{
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    const char *want = c->sni ? c->sni : L->o->expect_default;
    char why[600], subj[256] = "(none)";

    if (want == NULL)
        return;
    if (cert != NULL && X509_check_host(cert, want, 0, 0, NULL) == 1)
        return;
    if (cert != NULL)
        X509_NAME_oneline(X509_get_subject_name(cert), subj, sizeof(subj));
    snprintf(why, sizeof(why), "served certificate %s does not cover %s", subj, want);
    count_error(L, E_MISMATCH, c, why);
}

static void record_latency(struct loader *L, double secs)
{
    double us = secs * 1e6;
    int b = 0;
    while (b < LAT_BUCKETS - 1 && us >= exp2((double)(b + 1) / 4.0))
        b++;
    L->st.lat_hist[b]++;
    L->st.lat_sum += secs;
}

static void finish(struct loader *L, struct conn *c)
{
    if (L->o->close_notify)
        SSL_shutdown(c->ssl); /* one close_notify; we do not wait for the server's */
    else if (L->o->resume)
        /* SSL_free after no shutdown marks the session not resumable: say it ended well. */
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN);
    conn_restart(L, c);
}

/* -R: a new session (ticket) for the connection's slot; it replaces the kept one. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct conn *c = SSL_get_app_data(ssl);
    if (c == NULL)
        return 0;
    SSL_SESSION_free(c->sess);
    c->sess = sess;
    c->got_ticket = true;
    return 1; /* we keep the reference */
}

/* -R, TLS 1.3: read what follows the handshake until a ticket has arrived and
 * nothing more is waiting, then close. */
static void read_ticket(struct loader *L, struct conn *c)
{
    char buf[4096], why[300];
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(c->ssl, buf, sizeof(buf));
        if (n > 0)
            continue; /* application data: not expected, ignored */
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ && !c->got_ticket) {
            set_events(L, c, EPOLLIN);
            return;
        }
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (!c->got_ticket) {
                set_events(L, c, EPOLLOUT);
                return;
            }
            break; /* a ticket, and nothing more waiting */
        }
        if (!c->got_ticket)
            count_error(L, E_TICKET, c,
                        e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL
                            ? "connection closed before a session ticket arrived"
                            : ssl_error_text(why, sizeof(why), e));
        break;
    }
    finish(L, c);
}

static void on_handshake_done(struct loader *L, struct conn *c)
{
    double t = now();

    if (L->proto_seen[0] == '\0') {
        int nid = SSL_get_negotiated_group(c->ssl);
        const char *g = nid > 0 ? OBJ_nid2sn(nid & ~TLSEXT_nid_unknown) : "?";
        snprintf(L->proto_seen, sizeof(L->proto_seen), "%s %s %s", SSL_get_version(c->ssl),
                 SSL_get_cipher_name(c->ssl), g ? g : "?");
        fprintf(stderr, "hsload: negotiated %s\n", L->proto_seen);
    }
    if (L->o->verify)
        check_name(L, c);
    bool reused = SSL_session_reused(c->ssl);
    if (!L->o->resume && reused)
        count_error(L, E_HANDSHAKE, c, "session was resumed: not a full handshake");
    if (L->measuring) {
        size_t sec = (size_t)(t - L->t_start);
        L->st.done++;
        if (sec < MAX_SAMPLES)
            L->st.per_sec[sec]++;
        record_latency(L, t - c->started);
        if (L->o->resume && reused)
            L->st.resumed++;
        else if (L->o->resume && c->sess != NULL)
            L->st.offered_not_resumed++;
    }
    if (L->o->resume && SSL_version(c->ssl) >= TLS1_3_VERSION && !c->got_ticket) {
        /* TLS 1.3 tickets follow the handshake: read them before closing. */
        c->await_ticket = true;
        c->hs_done = t;
        read_ticket(L, c);
        return;
    }
    if (L->o->resume && !c->got_ticket && !reused)
        count_error(L, E_TICKET, c, "the server sent no TLS 1.2 session ticket");
    finish(L, c);
}

static void drive(struct loader *L, struct conn *c)
{
    char why[300];

    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            snprintf(why, sizeof(why), "connect: %s", strerror(err));
            count_error(L, E_CONNECT, c, why);
            conn_restart(L, c);
            return;
        }
        c->connecting = false;
    }
    if (c->await_ticket) {
        read_ticket(L, c);
        return;
    }
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        on_handshake_done(L, c);
        return;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        set_events(L, c, EPOLLIN);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        set_events(L, c, EPOLLOUT);
        return;
    }
    count_error(L, E_HANDSHAKE, c, ssl_error_text(why, sizeof(why), e));
    conn_restart(L, c);
}

/* The client context: one protocol version, no session reuse. Returns owned, or NULL. */
static SSL_CTX *client_ctx(const struct options *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
        return NULL;
    int v = o->tls12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(ctx, v);
    SSL_CTX_set_max_proto_version(ctx, v);
    if (o->resume) {
        /* Tickets asked for; each new session is handed to on_new_session, which keeps
         * it for its connection slot (no internal cache). */
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    } else {
        /* Full handshakes only: no tickets asked for, no session cached or offered. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (SSL_CTX_set1_groups_list(ctx, o->groups) != 1) {
        fprintf(stderr, "hsload: bad groups %s\n", o->groups);
        goto out_free;
    }
    /* A client limited to some key types (a server with ECDSA and RSA certificates
     * serves each the one it accepts). */
    if ((o->sigalgs != NULL && SSL_CTX_set1_sigalgs_list(ctx, o->sigalgs) != 1) ||
        (o->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1)) {
        fprintf(stderr, "hsload: bad -S or -C list\n");
        goto out_free;
    }
    if (o->alpn != NULL) {
        unsigned char wire[256];
        size_t n = 0;
        const char *p = o->alpn;
        while (*p) {
            size_t len = strcspn(p, ",");
            if (len == 0 || len > 255 || n + 1 + len > sizeof(wire))
                goto out_bad_alpn;
            wire[n++] = (unsigned char)len;
            memcpy(wire + n, p, len);
            n += len;
            p += len + (p[len] == ',');
        }
        if (SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)n) != 0)
            goto out_bad_alpn;
    }
    return ctx;
out_bad_alpn:
    fprintf(stderr, "hsload: bad ALPN list %s\n", o->alpn);
out_free:
    SSL_CTX_free(ctx);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double latency_pct(const struct stats *st, double pct)
{
    uint64_t need = (uint64_t)((double)st->done * pct), seen = 0;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        seen += st->lat_hist[b];
        if (seen > need)
            return exp2((double)(b + 1) / 4.0) / 1000.0; /* bucket top, ms */
    }
    return 0;
}

static void report(struct loader *L, double secs, double server_cpu, double client_cpu)
{
    struct stats *st = &L->st;
    uint64_t errors = 0;
    double rate = secs > 0 ? (double)st->done / secs : 0;
    size_t n_sec = (size_t)secs;
    uint64_t sorted[MAX_SAMPLES];

    if (n_sec > MAX_SAMPLES)
        n_sec = MAX_SAMPLES;
    memcpy(sorted, st->per_sec, n_sec * sizeof(*sorted));
    qsort(sorted, n_sec, sizeof(*sorted), cmp_u64);
    for (int k = 0; k < E_KINDS; k++)
        errors += st->errors[k];

    printf("handshakes %llu in %.2f s: %.0f/s (%s)\n", (unsigned long long)st->done, secs, rate,
           L->proto_seen[0] ? L->proto_seen : "none completed");
    if (n_sec > 0)
        printf("per second: min %llu, median %llu, max %llu\n", (unsigned long long)sorted[0],
               (unsigned long long)sorted[n_sec / 2], (unsigned long long)sorted[n_sec - 1]);
    if (st->done > 0)
        printf("latency: mean %.2f ms, p50 <%.2f ms, p99 <%.2f ms\n",
               st->lat_sum / (double)st->done * 1e3, latency_pct(st, 0.5), latency_pct(st, 0.99));
    printf("errors: %llu (connect %llu, handshake %llu, timeout %llu, mismatch %llu)%s\n",
           (unsigned long long)errors, (unsigned long long)st->errors[E_CONNECT],
           (unsigned long long)st->errors[E_HANDSHAKE], (unsigned long long)st->errors[E_TIMEOUT],
           (unsigned long long)st->errors[E_MISMATCH], L->o->verify ? "" : " [names not checked]");
    if (L->o->resume)
        printf("resumed: %llu (%.0f/s), full: %llu (%llu of them offered a session), "
               "ticket errors: %llu\n",
               (unsigned long long)st->resumed, secs > 0 ? (double)st->resumed / secs : 0,
               (unsigned long long)(st->done - st->resumed),
               (unsigned long long)st->offered_not_resumed,
               (unsigned long long)st->errors[E_TICKET]);
    printf("client cpu: %.0f%% of a core", secs > 0 ? 100.0 * client_cpu / secs : 0);
    if (L->o->n_pids > 0)
        printf(", server cpu: %.0f%% of a core, %.0f handshakes per server cpu-second",
               100.0 * server_cpu / secs, server_cpu > 0 ? (double)st->done / server_cpu : 0);
    printf("\n");
    printf("result hs=%llu secs=%.3f hs_per_s=%.1f errors=%llu connect_err=%llu "
           "handshake_err=%llu timeout_err=%llu mismatch=%llu median_per_s=%llu "
           "client_cpu=%.3f server_cpu=%.3f hs_per_server_cpu_s=%.1f",
           (unsigned long long)st->done, secs, rate, (unsigned long long)errors,
           (unsigned long long)st->errors[E_CONNECT], (unsigned long long)st->errors[E_HANDSHAKE],
           (unsigned long long)st->errors[E_TIMEOUT], (unsigned long long)st->errors[E_MISMATCH],
           n_sec ? (unsigned long long)sorted[n_sec / 2] : 0ULL, client_cpu, server_cpu,
           server_cpu > 0 ? (double)st->done / server_cpu : 0.0);
    if (L->o->resume)
        printf(
            " resumed=%llu full=%llu resumed_per_s=%.1f offered_not_resumed=%llu ticket_err=%llu",
            (unsigned long long)st->resumed, (unsigned long long)(st->done - st->resumed),
            secs > 0 ? (double)st->resumed / secs : 0.0,
            (unsigned long long)st->offered_not_resumed, (unsigned long long)st->errors[E_TICKET]);
    printf("\n");
}

static int run_load(struct options *o, struct names *names)
{
    struct loader L = {.o = o, .names = names, .ep = -1};
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct epoll_event evs[MAX_EVENTS];
    int ret = 1, gai;

    if ((gai = getaddrinfo(o->host, o->port, &hints, &L.ai)) != 0) {
        fprintf(stderr, "hsload: %s:%s: %s\n", o->host, o->port, gai_strerror(gai));
        return 1;
    }
    if ((L.ctx = client_ctx(o)) == NULL)
        goto out_ai;
    if ((L.ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (L.conns = calloc((size_t)o->conns, sizeof(*L.conns))) == NULL)
        goto out_ctx;

    double t0 = now(), t_end = t0 + o->warmup + o->duration, next_sweep = t0 + 0.1;
    double cpu_server0 = 0, cpu_client0 = 0;
    L.measuring = o->warmup <= 0;
    if (L.measuring) {
        L.t_start = t0;
        cpu_server0 = pids_cpu(o->pids, o->n_pids);
        cpu_client0 = self_cpu();
    }
    for (int i = 0; i < o->conns; i++) {
        L.conns[i].fd = -1;
        conn_start(&L, &L.conns[i]);
    }
    while (!stop_flag) {
        int n = epoll_wait(L.ep, evs, MAX_EVENTS, 50);
        for (int i = 0; i < n; i++)
            drive(&L, evs[i].data.ptr);
        double t = now();
        if (!L.measuring && t >= t0 + o->warmup) {
            L.measuring = true;
            L.t_start = t;
            cpu_server0 = pids_cpu(o->pids, o->n_pids);
            cpu_client0 = self_cpu();
        }
        if (t >= t_end)
            break;
        if (o->once && L.next_name >= names->n && L.active == 0)
            break; /* the sweep is over */
        if (t >= next_sweep) {
            /* Timeouts, and connections that could not even start: begin them again. */
            next_sweep = t + 0.1;
            for (int i = 0; i < o->conns; i++) {
                struct conn *c = &L.conns[i];
                if (c->fd < 0) {
                    conn_start(&L, c);
                } else if (c->await_ticket && t - c->hs_done > TICKET_WAIT) {
                    count_error(&L, E_TICKET, c, "no session ticket within 1 s of the handshake");
                    conn_restart(&L, c);
                } else if (t - c->started > o->timeout) {
                    count_error(&L, E_TIMEOUT, c, c->connecting ? "no connection" : "handshake");
                    conn_restart(&L, c);
                }
            }
        }
    }
    double secs = now() - L.t_start;
    double server_cpu = pids_cpu(o->pids, o->n_pids) - cpu_server0,
           client_cpu = self_cpu() - cpu_client0;
    report(&L, secs, server_cpu, client_cpu);
    ret = L.st.done > 0 ? 0 : 1;
    /* Let the handshakes in flight finish (uncounted), so that the server sees no
     * connection cut mid-handshake and its log holds only real failures. */
    L.measuring = false;
    L.draining = true;
    for (double t_drain = now() + 3; L.active > 0 && !stop_flag && now() < t_drain;) {
        int n = epoll_wait(L.ep, evs, MAX_EVENTS, 50);
        for (int i = 0; i < n; i++)
            drive(&L, evs[i].data.ptr);
    }
    if (L.active > 0)
        fprintf(stderr, "hsload: %d handshakes still unfinished 3 s after the end\n", L.active);
    for (int i = 0; i < o->conns; i++) {
        conn_drop(&L, &L.conns[i]);
        SSL_SESSION_free(L.conns[i].sess);
    }
    free(L.conns);
out_ctx:
    if (L.ep >= 0)
        close(L.ep);
    SSL_CTX_free(L.ctx);
out_ai:
    freeaddrinfo(L.ai);
    return ret;
}

/* ---- in memory: what libssl alone costs the server ------------------------ */

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* As nginx and certbind do: the listener context has no certificate, and the
 * ClientHello callback switches to the certificate's context. */
static int on_mem_client_hello(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    SSL_set_SSL_CTX(ssl, arg);
    return SSL_CLIENT_HELLO_SUCCESS;
}

static SSL_CTX *mem_server_ctx(const struct options *o, const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set1_groups_list(ctx, o->groups) != 1 ||
        (cert != NULL && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                          SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1))) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* One handshake through a BIO pair; *server_cpu grows by the server side's CPU time. */
static int mem_handshake(SSL_CTX *cctx, SSL_CTX *listener, const char *sni, double *server_cpu)
{
    SSL *c = SSL_new(cctx), *s;
    BIO *cb, *sb;
    bool c_done = false, s_done = false;
    int ret = -1;

    double t = thread_cpu();
    s = SSL_new(listener);
    *server_cpu += thread_cpu() - t;
    if (c == NULL || s == NULL || BIO_new_bio_pair(&cb, 0, &sb, 0) != 1)
        goto out_free;
    SSL_set_bio(c, cb, cb);
    SSL_set_bio(s, sb, sb);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (sni != NULL)
        SSL_set_tlsext_host_name(c, sni);
    for (int rounds = 0; (!c_done || !s_done) && rounds < 20; rounds++) {
        if (!c_done) {
            int r = SSL_do_handshake(c);
            if (r == 1)
                c_done = true;
            else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
                goto out_free;
        }
        if (!s_done) {
            t = thread_cpu();
            int r = SSL_do_handshake(s);
            *server_cpu += thread_cpu() - t;
            if (r == 1)
                s_done = true;
            else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
                goto out_free;
        }
    }
    ret = c_done && s_done ? 0 : -1;
out_free:
    t = thread_cpu();
    SSL_free(s);
    *server_cpu += thread_cpu() - t;
    SSL_free(c);
    return ret;
}

static int run_memory(const struct options *o, char *cert_key, const char *sni)
{
    char *key = strchr(cert_key, ',');
    SSL_CTX *cctx = NULL, *listener = NULL, *site = NULL;
    uint64_t done = 0, failed = 0;
    double server_cpu = 0, t_end;
    int ret = 1;

    if (key == NULL) {
        fprintf(stderr, "hsload: -M wants CERT,KEY\n");
        return 2;
    }
    *key++ = '\0';
    if ((cctx = client_ctx(o)) == NULL || (listener = mem_server_ctx(o, NULL, NULL)) == NULL ||
        (site = mem_server_ctx(o, cert_key, key)) == NULL) {
        fprintf(stderr, "hsload: cannot set up the in-memory server with %s and %s\n", cert_key,
                key);
        ERR_print_errors_fp(stderr);
        goto out_free;
    }
    SSL_CTX_set_client_hello_cb(listener, on_mem_client_hello, site);
    for (t_end = now() + o->warmup; now() < t_end;)
        mem_handshake(cctx, listener, sni, &server_cpu);
    server_cpu = 0;
    double t0 = now(), cpu0 = thread_cpu();
    for (t_end = t0 + o->duration; now() < t_end && !stop_flag;) {
        if (mem_handshake(cctx, listener, sni, &server_cpu) == 0)
            done++;
        else
            failed++;
    }
    double secs = now() - t0, cpu = thread_cpu() - cpu0;
    printf("in memory: %llu handshakes, %llu failed; server side %.1f us CPU each "
           "(%.0f handshakes per server CPU-second), both sides %.1f us\n",
           (unsigned long long)done, (unsigned long long)failed,
           done ? server_cpu / (double)done * 1e6 : 0,
           server_cpu > 0 ? (double)done / server_cpu : 0, done ? cpu / (double)done * 1e6 : 0);
    printf("result hs=%llu secs=%.3f errors=%llu server_cpu=%.3f hs_per_server_cpu_s=%.1f\n",
           (unsigned long long)done, secs, (unsigned long long)failed, server_cpu,
           server_cpu > 0 ? (double)done / server_cpu : 0.0);
    ret = done > 0 && failed == 0 ? 0 : 1;
out_free:
    SSL_CTX_free(site);
    SSL_CTX_free(listener);
    SSL_CTX_free(cctx);
    return ret;
}

static int split_target(char *arg, struct options *o)
{
    char *colon = strrchr(arg, ':');
    if (colon == NULL || colon[1] == '\0')
        return -1;
    *colon = '\0';
    o->port = colon + 1;
    o->host = arg;
    if (arg[0] == '[') { /* [::1]:443 */
        size_t len = strlen(arg);
        if (len < 2 || arg[len - 1] != ']')
            return -1;
        arg[len - 1] = '\0';
        o->host = arg + 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {.conns = 64,
                        .duration = 10,
                        .warmup = 1,
                        .timeout = 10,
                        .groups = "X25519:P-256",
                        .seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32)};
    struct names names = {0};
    const char *sink_port = NULL, *names_file = NULL;
    char *memory = NULL;
    char *one_name = NULL;
    int opt;

    while ((opt = getopt(argc, argv, "c:d:w:s:n:2g:S:C:a:ve:kt:p:r:RL:M:1h")) != -1) {
        switch (opt) {
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
            one_name = optarg;
            break;
        case 'n':
            names_file = optarg;
            break;
        case '2':
            o.tls12 = true;
            break;
        case 'S':
            o.sigalgs = optarg;
            break;
        case 'C':
            o.ciphers = optarg;
            break;
        case 'g':
            o.groups = optarg;
            break;
        case 'a':
            o.alpn = optarg;
            break;
        case 'v':
            o.verify = true;
            break;
        case 'e':
            o.expect_default = optarg;
            break;
        case 'k':
            o.close_notify = true;
            break;
        case 't':
            o.timeout = atof(optarg);
            break;
        case 'p':
            if (parse_pids(optarg, o.pids, &o.n_pids) != 0) {
                fprintf(stderr, "hsload: bad -p list\n");
                return 2;
            }
            break;
        case 'r':
            o.seed = strtoull(optarg, NULL, 10);
            break;
        case 'R':
            o.resume = true;
            break;
        case '1':
            o.once = true;
            break;
        case 'L':
            sink_port = optarg;
            break;
        case 'M':
            memory = optarg;
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
    if (sink_port != NULL)
        return run_sink(sink_port);
    if (memory != NULL)
        return run_memory(&o, memory, one_name);
    if (optind != argc - 1 || split_target(argv[optind], &o) != 0 || o.conns < 1 ||
        o.conns > 100000 || o.duration <= 0 || (o.duration > MAX_SAMPLES - 1 && !o.once) ||
        o.warmup < 0 || o.timeout <= 0) {
        usage(stderr);
        return 2;
    }
    if (o.once && (names_file == NULL || o.resume)) {
        fprintf(stderr, "hsload: -1 needs -n FILE (and no -R)\n");
        return 2;
    }
    if (o.once)
        o.warmup = 0; /* a sweep counts every name */
    if (names_file != NULL) {
        if (read_names(names_file, &names) != 0)
            return 2;
    } else {
        names.v = &one_name; /* NULL without -s: no SNI */
        names.n = 1;
    }
    rng_state = o.seed ? o.seed : 1;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.conns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int ret = run_load(&o, &names);
    if (names_file != NULL) {
        for (size_t i = 0; i < names.n; i++)
            free(names.v[i]);
        free(names.v);
    }
    return ret;
}
