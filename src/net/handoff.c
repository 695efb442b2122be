/*
 * handoff.c: certificate affinity between workers (net/handoff.h). A worker that
 * accepts a connection peeks at its ClientHello and, when another worker owns the
 * certificate, passes the connection whole to that worker's inbox; each worker adopts
 * what others passed it. The peek only ever chooses a worker, never a certificate:
 * that stays with the ClientHello callback (conn.c) of the worker that handshakes.
 */
#include "net/handoff.h"
#include "binding/sni.h"
#include "net/peek.h"
#include "net/server_int.h"
#include "tls/hello.h"
#include "util/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

union handoff_cmsg {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
};

int cb_handoff_send(int tx, int fd, const struct cb_handoff_msg *m)
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
    ssize_t n = sendmsg(tx, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n == (ssize_t)sizeof(*m) ? 0 : -1;
}

ssize_t cb_handoff_recv(int rx, struct cb_handoff_msg *m, int *fd, int *flags)
{
    union handoff_cmsg u;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};

    *fd = -1;
    *flags = 0;
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

bool cb_handoff_valid(const struct cb_handoff_msg *m, ssize_t n, int fd, int flags, int workers)
{
    return n == (ssize_t)sizeof(*m) && m->magic == CB_HANDOFF_MAGIC && fd >= 0 && m->from >= 0 &&
           m->from < workers && !(flags & (MSG_TRUNC | MSG_CTRUNC));
}

int cb_handoff_return_all(int rx, const int *tx, int workers, int dead)
{
    int moved = 0;

    for (;;) {
        struct cb_handoff_msg m;
        int fd, flags;
        ssize_t n = cb_handoff_recv(rx, &m, &fd, &flags);
        if (n < 0)
            break; /* EAGAIN: the inbox is empty */
        if (cb_handoff_valid(&m, n, fd, flags, workers) && m.from != dead) {
            m.back = 1; /* the worker that accepted it serves it, passes it nowhere */
            if (cb_handoff_send(tx[m.from], fd, &m) == 0)
                moved++;
        }
        if (fd >= 0)
            close(fd); /* sent (the receiver has its own copy), or not to be had */
    }
    return moved;
}

/* ---- the worker side ----------------------------------------------------- */

/* Affinity is on: other workers to pass connections to, not draining, and some
 * certificate not yet parsed here (once all are, every connection stays: at small N the
 * peek stops as soon as each worker has parsed what it serves). */
bool cb_handoff_affinity_on(const struct cb_server *srv, const struct cb_runtime *rt)
{
    return srv->cfg.workers > 1 && srv->cfg.handoff_tx != NULL && !srv->draining && rt != NULL &&
           cb_tls_cache_untried(rt->cache) > 0;
}

/* Whether the socket's wake-up threshold could be set to n bytes. */
static bool set_lowat(int fd, size_t n)
{
    int v = (int)n;
    return setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) == 0;
}

/* The worker that owns the certificate for the ClientHello peeked (pk, name), resolved
 * against c->rt; this worker when none does or the name is not one. */
static int owner_of(struct cb_conn *c, enum cb_peek pk, const unsigned char *name, size_t len)
{
    struct cb_server *srv = c->srv;
    struct cb_runtime *rt = c->rt;
    char sni[CB_NAME_MAX + 1];

    if (pk == CB_PEEK_SNI && cb_sni_normalize(name, len, sni) != 0)
        return srv->cfg.worker;
    /* A name with a pending TLS-ALPN-01 challenge is handshaken where it lands: every
     * worker has every challenge, and the peek does not read ALPN to tell a validation
     * from an ordinary client (these are few, and only while a validation is under way). */
    if (pk == CB_PEEK_SNI &&
        cb_tls_challenges_find(rt->challenges, sni, (int64_t)time(NULL)) != NULL)
        return srv->cfg.worker;
    const struct cb_tls_entry *e = cb_hello_entry_for(rt->snap, &rt->bind_tls, rt->file_tls,
                                                      &c->local, pk == CB_PEEK_SNI ? sni : NULL);
    if (e == NULL)
        return srv->cfg.worker;
    return cb_tls_entry_worker(e, srv->cfg.worker, srv->cfg.workers, uv_now(srv->loop));
}

/*
 * Looks at the ClientHello without taking it, and either passes the connection to its
 * certificate's owner or begins the handshake here. Anything not plainly a whole
 * ClientHello is handshaken here, where OpenSSL judges it.
 */
void cb_handoff_on_peek(struct cb_conn *c)
{
    struct cb_server *srv = c->srv;
    unsigned char buf[CB_PEEK_MAX];
    const unsigned char *name = NULL;
    size_t name_len = 0;
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
    /* The owner is found in the newest bindings, through a runtime c holds a reference
     * to (never a bare srv->rt kept from earlier: its certificate cache may be gone). */
    if (c->rt != srv->rt) {
        cb_runtime_unref(c->rt);
        c->rt = cb_runtime_ref(srv->rt);
    }
    if ((pk == CB_PEEK_SNI || pk == CB_PEEK_NO_SNI) && cb_handoff_affinity_on(srv, c->rt))
        to = owner_of(c, pk, name, name_len);
    if (to != srv->cfg.worker) {
        struct cb_handoff_msg m;
        memset(&m, 0, sizeof(m));
        m.magic = CB_HANDOFF_MAGIC;
        m.from = srv->cfg.worker;
        m.accepted_ms = c->accepted_ms;
        m.local = c->local;
        m.peer = c->peer;
        if (cb_handoff_send(srv->cfg.handoff_tx[to], c->cfd, &m) == 0) {
            cb_server_count(srv, CB_GMETRIC_HANDED_OFF);
            cb_conn_close(c); /* the other worker has the socket now */
            return;
        }
    }
    cb_conn_start_handshake(c);
}

/* A passed connection that waited out its handshake time in the queue (this worker
 * was restarting): closed, logged, counted. */
static void expire(struct cb_server *srv, int fd, const struct cb_handoff_msg *m)
{
    char client[INET6_ADDRSTRLEN + 8];
    cb_conn_addr_text(&m->peer, client, sizeof(client));
    cb_log("warn", "handshake_timeout",
           "worker=%d client=%s reason=\"waited %llu ms to be passed to this worker\"",
           srv->cfg.worker, client, (unsigned long long)(cb_accept_clock_ms() - m->accepted_ms));
    close(fd);
    cb_server_count(srv, CB_GMETRIC_TIMEOUT);
}

void cb_handoff_on_inbox(uv_poll_t *h, int status, int events)
{
    struct cb_server *srv = h->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < CB_ACCEPT_BATCH; i++) {
        struct cb_handoff_msg m;
        int fd, flags;

        ssize_t n = cb_handoff_recv(srv->cfg.handoff_rx, &m, &fd, &flags);
        if (n < 0)
            return; /* EAGAIN: all taken */
        if (flags & MSG_CTRUNC) {
            /* The kernel dropped the descriptor: this worker has no room for one. */
            cb_accept_refuse(srv, fd, "error", "handoff_dropped",
                             "reason=\"out of descriptors; raise LimitNOFILE\"");
            continue;
        }
        if (!cb_handoff_valid(&m, n, fd, flags, srv->cfg.workers)) {
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
        if (cb_accept_clock_ms() - m.accepted_ms >= srv->cfg.handshake_timeout_ms) {
            expire(srv, fd, &m);
            continue;
        }
        if (srv->cfg.max_conns != 0 && srv->n_conns >= srv->cfg.max_conns && !m.back &&
            m.from != srv->cfg.worker) {
            /* This worker is full, the one that accepted it had room: it serves it. */
            m.back = 1;
            if (cb_handoff_send(srv->cfg.handoff_tx[m.from], fd, &m) == 0) {
                close(fd);
                continue;
            }
        }
        if (cb_accept_over_cap(srv, fd))
            continue;
        struct cb_arrival how = {.local = &m.local, .adopted = true, .accepted_ms = m.accepted_ms};
        cb_conn_start(srv, fd, &m.peer, &how);
    }
}
