/*
 * listen.c: a worker's listening sockets (SO_REUSEPORT: every worker opens its own),
 * the start-up probe that they can be bound, and the plan of which addresses a
 * snapshot needs (design section 2).
 */
#include "net/server_int.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Opens a listening socket on a. An address this machine does not have (yet) is bound
 * all the same (IP_FREEBIND): its binding breaks alone, serves once the address is
 * added, and *not_local says so. Only that binding's clients could ever reach it.
 */
static int open_listener(const struct cb_listen_addr *a, int *out, bool *not_local,
                         struct cb_err *err)
{
    int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, zero = 0;

    *not_local = false;
    if (fd < 0)
        return cb_err_set(err, CB_EIO, "cannot listen on %s: %s", a->text, strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, a->dual_stack ? &zero : &one, sizeof(one));
    int b = bind(fd, (const struct sockaddr *)&a->addr, a->len);
    if (b != 0 && errno == EADDRNOTAVAIL &&
        setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof(one)) == 0) {
        b = bind(fd, (const struct sockaddr *)&a->addr, a->len);
        *not_local = b == 0;
    }
    if (b != 0 || listen(fd, 4096) != 0) {
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
    struct cb_listener *l = h->data;
    close(l->fd);
    free(l);
}

int cb_listen_probe(const struct cb_listen_addr *addrs, size_t n, struct cb_err *err)
{
    for (size_t i = 0; i < n; i++) {
        bool not_local;
        int fd, ret = open_listener(&addrs[i], &fd, &not_local, err);
        if (ret != 0)
            return ret;
        close(fd);
    }
    return 0;
}

int cb_server_listen(struct cb_server *srv, const struct cb_listen_addr *addrs, size_t n,
                     struct cb_err *err)
{
    struct cb_listener *l, **pp;
    struct cb_err first = {0};
    int ret = 0, failed = 0;

    for (l = srv->listeners; l; l = l->next)
        l->keep = false;
    /* Every address is tried: one that fails breaks only the bindings on it. */
    for (size_t i = 0; i < n; i++) {
        for (l = srv->listeners; l; l = l->next)
            if (strcmp(l->addr.text, addrs[i].text) == 0)
                break;
        if (l != NULL) {
            l->keep = true;
            continue;
        }
        int fd, r;
        bool not_local;
        if ((r = open_listener(&addrs[i], &fd, &not_local, failed ? NULL : &first)) != 0) {
            ret = failed++ ? ret : r;
            continue;
        }
        l = calloc(1, sizeof(*l));
        if (l == NULL) {
            close(fd);
            ret = failed++ ? ret : cb_err_set(&first, CB_ENOMEM, "out of memory");
            continue;
        }
        l->fd = fd;
        l->addr = addrs[i];
        l->keep = true;
        uv_poll_init(srv->loop, &l->poll, fd);
        l->poll.data = l;
        if (!srv->accept_paused && !srv->draining)
            uv_poll_start(&l->poll, UV_READABLE, cb_accept_on_listener);
        l->next = srv->listeners;
        srv->listeners = l;
        if (srv->cfg.worker == 0)
            cb_log(not_local ? "warn" : "info", "listen", "addr=%s%s", l->addr.text,
                   not_local ? " local=no reason=\"no such address on this machine (yet); its "
                               "bindings are served once it is added\""
                             : "");
    }
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
    if (failed > 1)
        return cb_err_set(err, ret, "%.600s (and %d more addresses)", first.msg, failed - 1);
    if (failed == 1)
        return cb_err_set(err, ret, "%s", first.msg);
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

/* Whether the listen list's entry i already listens for an IP binding on family/addr: the
 * same address, or 0.0.0.0 for an IPv4 one ("::" is IPv6 only, as a [::] binding). */
static bool iplisten_covers(const struct cb_iplisten *ipl, uint8_t family, const uint8_t *addr)
{
    static const uint8_t any[16];

    for (size_t i = 0; i < ipl->n; i++) {
        size_t len = ipl->a[i].family == AF_INET ? 4 : 16;
        if (ipl->a[i].family != family)
            continue;
        if (memcmp(ipl->a[i].addr, addr, len) == 0 ||
            (family == AF_INET && memcmp(ipl->a[i].addr, any, len) == 0))
            return true;
    }
    return false;
}

int cb_listen_plan(const struct cb_snapshot *snap, const struct cb_iplisten *ipl,
                   struct cb_listen_addr **out, size_t *n, struct cb_err *err)
{
    static const uint8_t any[16];
    size_t count = cb_snapshot_count(snap), cap = 0;
    uint8_t *wild = calloc(65536, 1); /* ports where any local address must answer */
    struct cb_listen_addr *arr = NULL;
    bool listed = ipl != NULL && ipl->n > 0;

    *n = 0;
    if (wild == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < count; i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(snap, i);
        if (b->kind != CB_KEY_IP)
            wild[b->port] = 1;
    }
    for (uint32_t port = 1; port < 65536; port++) {
        int ret = 0;
        if (!wild[port])
            continue;
        if (listed) {
            /* Each listed address, in its own family only. */
            for (size_t k = 0; k < ipl->n && ret == 0; k++)
                ret = plan_add(&arr, n, &cap, ipl->a[k].family, ipl->a[k].addr, (uint16_t)port,
                               false);
        } else {
            /* One dual-stack socket answers every local address, v4 and v6. */
            ret = ipv6_available() ? plan_add(&arr, n, &cap, AF_INET6, any, (uint16_t)port, true)
                                   : plan_add(&arr, n, &cap, AF_INET, any, (uint16_t)port, false);
        }
        if (ret != 0)
            goto out_nomem;
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(snap, i);
        /* An IP binding listens on its own address, unless a wildcard socket on its port
         * already takes its connections. */
        bool covered = wild[b->port] && (!listed || iplisten_covers(ipl, b->family, b->addr));
        if (b->kind == CB_KEY_IP && !covered &&
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

void cb_listen_stop_all(struct cb_server *srv)
{
    for (struct cb_listener *x = srv->listeners; x; x = x->next)
        uv_poll_stop(&x->poll);
}

void cb_listen_start_all(struct cb_server *srv)
{
    for (struct cb_listener *x = srv->listeners; x; x = x->next)
        uv_poll_start(&x->poll, UV_READABLE, cb_accept_on_listener);
}
