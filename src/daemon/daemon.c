/*
 * daemon.c: `certbind serve` up to the point where the master supervises: the
 * store and the addresses are checked (as root, then again as the service user),
 * privileges dropped to the service user (keeping only CAP_NET_BIND_SERVICE), the
 * admin port and the workers' hand-off sockets opened; then supervisor.c runs.
 */
#include "daemon/daemon.h"
#include "admin/admin.h"
#include "daemon/fleet_node.h"
#include "daemon/serve_int.h"
#include "daemon/ticket_rotate.h"
#include "util/log.h"
#include "svcuser/svcuser.h"
#include "util/priv.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CB_STATS_CAPACITY (1u << 17) /* bindings with counters, per worker (a reservation) */

/* Closes the first n pairs of open_handoff and frees both arrays. */
static void close_handoff(struct cb_serve_opts *opts, int n)
{
    for (int i = 0; opts->handoff != NULL && i < n; i++) {
        close(opts->handoff[i][0]);
        close(opts->handoff[i][1]);
    }
    free(opts->handoff);
    free(opts->handoff_tx);
    opts->handoff = NULL;
    opts->handoff_tx = NULL;
}

/* One datagram socket pair per worker, through which the others pass it connections.
 * The arrays and sockets live as long as the master (restarted workers reuse them). */
static int open_handoff(struct cb_serve_opts *opts, struct cb_err *err)
{
    int i, ret;

    opts->handoff = calloc((size_t)opts->workers, sizeof(*opts->handoff));
    opts->handoff_tx = calloc((size_t)opts->workers, sizeof(*opts->handoff_tx));
    if (opts->handoff == NULL || opts->handoff_tx == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        i = 0;
        goto out_close;
    }
    for (i = 0; i < opts->workers; i++) {
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, opts->handoff[i]) != 0) {
            ret = cb_err_set(err, CB_EIO,
                             "cannot connect the workers: socketpair: %s (serve "
                             "--no-affinity does without)",
                             strerror(errno));
            goto out_close;
        }
        /* A small queue: a connection never waits long for a busy, dead or restarting
         * worker; when the queue is full the accepting worker serves it itself. */
        int sndbuf = 32768;
        setsockopt(opts->handoff[i][1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        opts->handoff_tx[i] = opts->handoff[i][1];
    }
    return 0;
out_close:
    close_handoff(opts, i);
    return ret;
}

/* Opens the admin port (before the workers start, so that a busy port fails start-up). */
static int open_admin(const struct cb_daemon_config *dc, int *out, struct cb_err *err)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int fd, one = 1, ret;

    if ((ret = cb_admin_parse_addr(dc->admin, dc->admin_public, &addr, &len, err)) != 0)
        return ret;
    fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cb_err_set(err, CB_EIO, "--admin %s: %s", dc->admin, strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        return cb_err_set(err, CB_EIO, "--admin %s: cannot listen: %s%s", dc->admin, strerror(e),
                          e == EADDRINUSE ? "; another program uses this port, pick another" : "");
    }
    *out = fd;
    return 0;
}

/* Reads the store once, as the master, to check it and what it listens on. */
static int preflight(struct cb_serve_opts *opts, struct cb_user *user, bool *have_user,
                     struct cb_err *err)
{
    struct cb_store *st = NULL;
    struct cb_snapshot *snap = NULL;
    struct cb_listen_addr *addrs = NULL;
    char name[64];
    size_t n = 0;
    int ret;

    if ((ret = cb_store_open(opts->state_dir, CB_STORE_READ, &st, err)) != 0)
        return ret;
    /* No user set: serve runs as whoever starts it (not root, below). One set: it must exist. */
    *have_user = cb_store_setting_get(st, "user", name, sizeof(name), NULL) == 0;
    if (*have_user && (ret = cb_svcuser_get(st, user, err)) != 0)
        goto out_close;
    if (geteuid() == 0 && (!*have_user || user->uid == 0)) {
        ret = cb_err_set(err, CB_EPERM,
                         "serve does not run as root; set the service user first: certbind set "
                         "user=NAME (a system user such as certbind)");
        goto out_close;
    }
    /* What is listened on only: serve starts in seconds with 10^6 bindings (each worker reads
     * them all once, for its own snapshot). */
    if ((ret = cb_store_load_endpoints(st, &snap, err)) != 0 ||
        (ret = cb_listen_plan(snap, &opts->iplisten, &addrs, &n, err)) != 0)
        goto out_close;
    if (n == 0)
        cb_log("warn", "no_bindings",
               "reason=\"nothing to listen on yet; add a binding with 'certbind add sslcert'\"");
    ret = cb_listen_probe(addrs, n, err);
out_close:
    free(addrs);
    cb_snapshot_unref(snap);
    cb_store_close(st);
    return ret;
}

/* The session ticket keys are in the store before any worker starts: a worker never serves
 * without one (the manager rotates them from then on). */
static int first_ticket_keys(const struct cb_serve_opts *opts, struct cb_err *err)
{
    struct cb_store *st = NULL;
    int ret;

    if ((ret = cb_store_open(opts->state_dir, CB_STORE_READ, &st, err)) != 0)
        return ret;
    ret = cb_ticket_rotate(st, opts->ticket_period_s, err);
    cb_store_close(st);
    return ret;
}

int cb_daemon_run(const struct cb_daemon_config *dc, struct cb_err *err)
{
    static struct cb_serve_opts opts; /* children inherit it through fork */
    struct cb_user user;
    bool have_user = false;
    int ret;

    memset(&opts, 0, sizeof(opts));
    snprintf(opts.state_dir, sizeof(opts.state_dir), "%s", dc->state_dir);
    opts.iplisten = dc->iplisten;
    if (dc->store_url != NULL) {
        if (strlen(dc->store_url) >= sizeof(opts.store_url))
            return cb_err_set(err, CB_EINVAL, "--store: the URL is longer than %zu bytes",
                              sizeof(opts.store_url) - 1);
        snprintf(opts.store_url, sizeof(opts.store_url), "%s", dc->store_url);
    }
    if (dc->store_key != NULL)
        snprintf(opts.store_key, sizeof(opts.store_key), "%s", dc->store_key);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    opts.workers = dc->workers > 0 ? dc->workers : (cores > 0 ? (int)cores : 1);
    opts.cfg.handshake_timeout_ms =
        (uint64_t)(dc->handshake_timeout_s ? dc->handshake_timeout_s : 10) * 1000;
    opts.cfg.connect_timeout_ms = 10000;
    opts.cfg.idle_timeout_ms = (uint64_t)(dc->idle_timeout_s ? dc->idle_timeout_s : 300) * 1000;
    opts.cfg.grace_ms = (uint64_t)(dc->grace_s ? dc->grace_s : 30) * 1000;
    /* Caps are for the whole server: each worker takes its share (rounded up). */
    opts.cfg.max_conns = (uint32_t)((dc->max_conns + opts.workers - 1) / opts.workers);
    opts.cfg.max_conns_binding =
        (uint32_t)((dc->max_conns_binding + opts.workers - 1) / opts.workers);
    opts.admin_fd = -1;
    /* The budget is for the whole server: with affinity each certificate is parsed by one
     * worker, so each worker holds its share. */
    opts.cert_cache_bytes =
        (size_t)(dc->cert_cache_mb > 0 ? dc->cert_cache_mb : CB_CERT_CACHE_MB_DEFAULT) * 1024 *
        1024 / (size_t)opts.workers;
    if (getenv("INVOCATION_ID") != NULL && getenv("JOURNAL_STREAM") != NULL)
        cb_log_set_journal(1);
    if (dc->admin != NULL) {
        struct sockaddr_storage a;
        socklen_t alen;
        if ((ret = cb_admin_parse_addr(dc->admin, dc->admin_public, &a, &alen, err)) != 0)
            return ret;
    }

    /* Everything after this runs as the service user, with at most one capability. */
    if (geteuid() == 0) {
        if ((ret = preflight(&opts, &user, &have_user, err)) != 0)
            return ret;
        if ((ret = cb_priv_drop(&user, true, err)) != 0)
            return ret;
    }
    /* The admin port first: a binding on the same port then fails the check below, naming
     * it, rather than a worker finding it taken. */
    if (dc->admin != NULL && (ret = open_admin(dc, &opts.admin_fd, err)) != 0)
        return ret;
    /* A fleet node brings its replica up to date first (or serves it as it is when etcd
     * does not answer). */
    if (opts.store_url[0] != '\0' &&
        (ret = cb_fleet_node_startup(opts.state_dir, opts.store_url,
                                     opts.store_key[0] ? opts.store_key : NULL,
                                     &opts.fleet_unreachable, err)) != 0)
        goto out_admin;
    /* Checked again as the user: the store and listeners must work for it. */
    if ((ret = preflight(&opts, &user, &have_user, err)) != 0)
        goto out_admin;
    opts.ticket_period_s =
        dc->ticket_rotate_s > 0 ? dc->ticket_rotate_s : CB_TICKET_PERIOD_DEFAULT_S;
    if ((ret = first_ticket_keys(&opts, err)) != 0)
        goto out_admin;
    if (dc->admin != NULL &&
        (ret = cb_metrics_new(opts.workers, CB_STATS_CAPACITY, &opts.stats, err)) != 0)
        goto out_admin;
    opts.cfg.workers = opts.workers;
    opts.cfg.handoff_rx = -1;
    if (opts.workers > 1 && !dc->no_affinity && (ret = open_handoff(&opts, err)) != 0)
        goto out_stats;
    int lock_fd = -1;
    struct cb_store *st = NULL;
    struct cb_err lerr = {0};
    if (cb_store_open(opts.state_dir, CB_STORE_READ, &st, &lerr) == 0 &&
        cb_store_serve_lock(st, &lock_fd, &lerr) == 0) {
        opts.acme_owner = true;
    } else {
        char q[900];
        cb_log("warn", "serve_lock",
               "reason=%s consequence=\"this serve does not obtain ACME "
               "certificates\"",
               cb_log_quote(lerr.msg, q, sizeof(q)));
    }
    cb_store_close(st);
    char ipl[CB_IPLISTEN_MAX * (INET6_ADDRSTRLEN + 1)];
    cb_iplisten_format(&opts.iplisten, ipl, sizeof(ipl));
    cb_log("info", "start", "version=%s workers=%d state=%s user=%s iplisten=%s", CB_VERSION,
           opts.workers, opts.state_dir, have_user ? user.name : "(current)", ipl);
    ret = cb_supervise(&opts, dc->admin, err);
    if (lock_fd >= 0)
        close(lock_fd);
    close_handoff(&opts, opts.workers);
out_stats:
    cb_metrics_free(opts.stats);
    opts.stats = NULL;
out_admin:
    if (opts.admin_fd >= 0)
        close(opts.admin_fd);
    opts.admin_fd = -1;
    return ret;
}
