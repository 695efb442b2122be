/*
 * accept.c: taking connections from the listeners: in batches, refused at once over
 * --max-connections, and with a pause instead of a spin when the process is out of
 * descriptors. What becomes of an accepted connection is conn.c's.
 */
#include "net/server_int.h"
#include "util/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CB_ACCEPT_PAUSE_MS 100

uint64_t cb_accept_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void cb_accept_refuse(struct cb_server *srv, int fd, const char *level, const char *event,
                      const char *what)
{
    if (fd >= 0)
        close(fd);
    srv->refused_total++;
    cb_server_count(srv, CB_GMETRIC_CAPACITY);
    if (uv_now(srv->loop) - srv->last_refusal_log >= 1000) {
        srv->last_refusal_log = uv_now(srv->loop);
        cb_log(level, event, "worker=%d %s refused_total=%llu", srv->cfg.worker, what,
               (unsigned long long)srv->refused_total);
    }
}

bool cb_accept_over_cap(struct cb_server *srv, int fd)
{
    char what[40];
    if (srv->cfg.max_conns == 0 || srv->n_conns < srv->cfg.max_conns)
        return false;
    snprintf(what, sizeof(what), "cap=%u", srv->cfg.max_conns);
    cb_accept_refuse(srv, fd, "warn", "connection_cap", what);
    return true;
}

static void on_accept_resume(uv_timer_t *t)
{
    struct cb_server *srv = t->data;
    srv->accept_paused = false;
    if (srv->draining)
        return;
    cb_listen_start_all(srv);
}

/* Out of descriptors: stop accepting for a moment instead of spinning. Counted, and
 * logged at most once a second: a flood must not flood the log. */
static void pause_accepting(struct cb_server *srv, int err)
{
    if (srv->accept_paused)
        return;
    srv->pauses++;
    if (uv_now(srv->loop) - srv->last_pause_log >= 1000) {
        srv->last_pause_log = uv_now(srv->loop);
        cb_log("error", "accept_paused",
               "worker=%d reason=\"%s\" open_connections=%zu resume_in_ms=%d pauses=%llu",
               srv->cfg.worker, strerror(err), srv->n_conns, CB_ACCEPT_PAUSE_MS,
               (unsigned long long)srv->pauses);
    }
    srv->accept_paused = true;
    cb_listen_stop_all(srv);
    uv_timer_start(&srv->accept_pause, on_accept_resume, CB_ACCEPT_PAUSE_MS, 0);
}

void cb_accept_on_listener(uv_poll_t *h, int status, int events)
{
    struct cb_listener *l = h->data;
    struct cb_server *srv = (struct cb_server *)h->loop->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < CB_ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0 && cb_accept_over_cap(srv, fd))
            continue;
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            struct cb_arrival how = {.accepted_ms = cb_accept_clock_ms()};
            cb_conn_start(srv, fd, &peer, &how);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            pause_accepting(srv, errno);
        return; /* EAGAIN, or a connection that went away before accept */
    }
}
