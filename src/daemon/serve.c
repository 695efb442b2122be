/*
 * serve.c: `certbind serve`. The master reads the store once to check what it
 * must listen on, drops to the service user (keeping only CAP_NET_BIND_SERVICE),
 * forks one worker per core and supervises them: it forwards SIGTERM (drain) and
 * SIGHUP (re-read), and replaces a worker that dies. Each worker runs its own
 * libuv loop, opens its own SO_REUSEPORT listeners, loads keys as the service
 * user, and swaps in a new runtime within a second of a store change.
 */
#include "admin/admin.h"
#include "cli/cli.h"
#include "daemon/runtime_build.h"
#include "daemon/watch.h"
#include "net/handoff.h"
#include "net/server.h"
#include "tls/io.h"
#include "util/log.h"
#include "util/priv.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define CB_WORKER_FATAL 3 /* a worker's exit status for "cannot start: do not retry" */
#define CB_STORE_POLL_MS 250
#define CB_RELOAD_RETRY_MS 5000
#define CB_STATS_CAPACITY (1u << 17) /* bindings with counters, per worker (a reservation) */

struct serve_opts {
    char state_dir[CB_PATH_MAX + 1];
    struct cb_server_config cfg;
    int workers;
    struct cb_metrics *stats; /* shared counters when --admin is given, else NULL */
    /* Certificate affinity: worker i takes passed connections from handoff[i][0]; any
     * worker passes one to i through handoff[i][1]. Held by the master for restarts. */
    int (*handoff)[2];
    int *handoff_tx;
    int admin_fd; /* the admin port's listening socket, or -1 */
};

struct worker {
    const struct serve_opts *opts;
    uv_loop_t loop;
    struct cb_store *st;
    struct cb_tls_cache *cache;
    struct cb_server *srv;
    struct cb_watch *watch; /* worker 0 only: linked certificate files */
    uv_timer_t poll_timer;
    uv_fs_event_t db_watch; /* the state folder: a commit writes certbind.db-wal */
    uv_timer_t settle_timer;
    int settle_tries;
    bool watching;
    uv_signal_t sigterm, sigint, sighup;
    uint64_t data_version;
    uint64_t retry_at; /* loop time to try a failed reload again, 0: none */
    bool stopping;
};

/* ---- worker ------------------------------------------------------------- */

static int reload(struct worker *w, bool force, bool starting, struct cb_err *err)
{
    struct cb_runtime *rt = NULL;
    struct cb_runtime_stats stats;
    struct cb_listen_addr *addrs = NULL;
    size_t n = 0;
    int ret;

    if (force) {
        struct cb_tls_cache *fresh = cb_tls_cache_new();
        if (fresh == NULL)
            return cb_err_set(err, CB_ENOMEM, "out of memory");
        cb_tls_cache_free(w->cache);
        w->cache = fresh;
    }
    bool log_broken = w->opts->cfg.worker == 0;
    struct cb_runtime *old = force ? NULL : cb_server_runtime(w->srv);
    /* One change among many: apply it, rather than read every binding again. */
    ret = old != NULL ? cb_runtime_derive(w->st, w->cache, old, log_broken, &rt, &stats, err)
                      : CB_SNAPSHOT_REBUILD;
    if (ret == CB_SNAPSHOT_REBUILD)
        ret = cb_runtime_build(w->st, w->cache, log_broken, &rt, &stats, err);
    if (ret != 0)
        return ret;
    if ((ret = cb_listen_plan(rt->snap, &addrs, &n, err)) != 0)
        goto out_unref;
    ret = cb_server_listen(w->srv, addrs, n, err);
    free(addrs);
    if (ret != 0 && starting)
        goto out_unref;
    if (ret != 0) {
        char q[900];
        cb_log("error", "listen_failed", "worker=%d reason=%s", w->opts->cfg.worker,
               cb_log_quote(err->msg, q, sizeof(q)));
    }
    cb_server_swap_runtime(w->srv, rt);
    if (w->watch != NULL)
        cb_watch_refresh(w->watch);
    if (w->opts->cfg.worker == 0)
        cb_log("info", "snapshot",
               "generation=%llu bindings=%zu broken=%zu certs_new=%zu certs_reused=%zu "
               "build=%s build_ms=%.1f",
               (unsigned long long)stats.generation, stats.bindings, stats.broken, stats.certs_new,
               stats.certs_reused, stats.derived ? "changes" : "full", stats.ms);
    ret = 0;
out_unref:
    cb_runtime_unref(rt);
    return ret;
}

static void on_poll_store(uv_timer_t *t)
{
    struct worker *w = t->data;
    struct cb_err err = {0};
    uint64_t v;

    if (w->stopping || cb_store_data_version(w->st, &v) != 0)
        return;
    /* A failed reload is tried again every few seconds, change or not. */
    bool retry = w->retry_at != 0 && uv_now(&w->loop) >= w->retry_at;
    if (v == w->data_version && !retry)
        return;
    w->data_version = v;
    w->retry_at = 0;
    if (reload(w, false, false, &err) != 0) {
        char q[900];
        cb_log("error", "reload_failed", "worker=%d reason=%s retry_in_ms=%d", w->opts->cfg.worker,
               cb_log_quote(err.msg, q, sizeof(q)), CB_RELOAD_RETRY_MS);
        w->retry_at = uv_now(&w->loop) + CB_RELOAD_RETRY_MS;
    }
}

/*
 * A write to the database files: a commit is under way or done. The readers' view
 * moves when the writer has also updated the WAL index, just after its last write,
 * so data_version is looked at a few times over the next ~30 ms. The 250 ms poll
 * stays as the fallback (and for file systems without inotify).
 */
static void on_settle(uv_timer_t *t)
{
    struct worker *w = t->data;
    uint64_t v;

    if (w->stopping)
        return;
    if (cb_store_data_version(w->st, &v) == 0 && v != w->data_version) {
        on_poll_store(&w->poll_timer);
        return;
    }
    if (++w->settle_tries < 8)
        uv_timer_start(t, on_settle, 4, 0);
}

static void on_db_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    struct worker *w = h->data;
    (void)events;
    if (status < 0 || filename == NULL || strncmp(filename, "certbind.db", 11) != 0)
        return;
    w->settle_tries = 0;
    uv_timer_start(&w->settle_timer, on_settle, 1, 0);
}

/* The watcher changed the store itself: this connection sees no data_version change. */
static void on_watch_change(void *arg)
{
    struct worker *w = arg;
    struct cb_err err = {0};
    uint64_t v;

    if (cb_store_data_version(w->st, &v) == 0)
        w->data_version = v;
    if (reload(w, false, false, &err) != 0) {
        char q[900];
        cb_log("error", "reload_failed", "worker=%d reason=%s", w->opts->cfg.worker,
               cb_log_quote(err.msg, q, sizeof(q)));
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void stop_worker(struct worker *w)
{
    uv_timer_stop(&w->poll_timer);
    uv_timer_stop(&w->settle_timer);
    if (w->watching)
        uv_fs_event_stop(&w->db_watch);
    uv_signal_stop(&w->sigterm);
    uv_signal_stop(&w->sigint);
    uv_signal_stop(&w->sighup);
    cb_watch_close(w->watch);
    w->watch = NULL;
    cb_server_free(w->srv);
    w->srv = NULL;
    uv_walk(&w->loop, close_walk, NULL);
}

static struct worker *the_worker;

static void on_worker_drained(struct cb_server *srv)
{
    (void)srv;
    cb_log("info", "drained", "worker=%d", the_worker->opts->cfg.worker);
    stop_worker(the_worker);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct worker *w = h->data;
    struct cb_err err = {0};

    if (signum == SIGHUP) {
        if (reload(w, true, false, &err) != 0) {
            char q[900];
            cb_log("error", "reload_failed", "worker=%d reason=%s", w->opts->cfg.worker,
                   cb_log_quote(err.msg, q, sizeof(q)));
        }
        return;
    }
    if (w->stopping)
        return;
    w->stopping = true;
    if (w->opts->cfg.worker == 0)
        cb_log("info", "draining", "open_connections=%zu grace_ms=%llu",
               cb_server_connections(w->srv), (unsigned long long)w->opts->cfg.grace_ms);
    cb_server_drain(w->srv, on_worker_drained);
}

static int worker_main(const struct serve_opts *opts, int ready_fd)
{
    struct worker w = {.opts = opts};
    struct cb_err err = {0};
    char q[900];
    int ret;

    the_worker = &w;
    if (uv_loop_init(&w.loop) != 0)
        return CB_WORKER_FATAL;
    if ((ret = cb_store_open(opts->state_dir, CB_STORE_READ, &w.st, &err)) != 0)
        goto out_fatal;
    if ((w.cache = cb_tls_cache_new()) == NULL ||
        cb_server_new(&w.loop, &opts->cfg, &w.srv, &err) != 0) {
        cb_err_set(&err, CB_ENOMEM, "out of memory");
        goto out_fatal;
    }
    if (cb_store_data_version(w.st, &w.data_version) != 0 ||
        (ret = reload(&w, false, true, &err)) != 0)
        goto out_fatal;
    if (opts->cfg.worker == 0 &&
        cb_watch_new(&w.loop, w.st, on_watch_change, &w, &w.watch, &err) != 0)
        goto out_fatal;
    uv_timer_init(&w.loop, &w.poll_timer);
    w.poll_timer.data = &w;
    uv_timer_start(&w.poll_timer, on_poll_store, CB_STORE_POLL_MS, CB_STORE_POLL_MS);
    uv_timer_init(&w.loop, &w.settle_timer);
    w.settle_timer.data = &w;
    uv_fs_event_init(&w.loop, &w.db_watch);
    w.db_watch.data = &w;
    w.watching = uv_fs_event_start(&w.db_watch, on_db_event, opts->state_dir, 0) == 0;
    uv_signal_init(&w.loop, &w.sigterm);
    uv_signal_init(&w.loop, &w.sigint);
    uv_signal_init(&w.loop, &w.sighup);
    w.sigterm.data = w.sigint.data = w.sighup.data = &w;
    uv_signal_start(&w.sigterm, on_signal, SIGTERM);
    uv_signal_start(&w.sigint, on_signal, SIGINT);
    uv_signal_start(&w.sighup, on_signal, SIGHUP);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (write(ready_fd, "R", 1) != 1)
        goto out_fatal;
    close(ready_fd);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    uv_loop_close(&w.loop);
    cb_tls_cache_free(w.cache);
    cb_store_close(w.st);
    cb_metrics_writer_free(opts->cfg.stats);
    return 0;
out_fatal:
    cb_log("error", "worker_failed", "worker=%d reason=%s", opts->cfg.worker,
           cb_log_quote(err.msg[0] ? err.msg : "cannot start", q, sizeof(q)));
    if (write(ready_fd, "F", 1) != 1)
        _exit(CB_WORKER_FATAL);
    _exit(CB_WORKER_FATAL);
}

/* ---- master ------------------------------------------------------------- */

/* Closes the first n pairs of open_handoff and frees both arrays. */
static void close_handoff(struct serve_opts *opts, int n)
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

static pid_t spawn(struct serve_opts *opts, int index, int ready_w, int ready_r)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    close(ready_r);
    signal(SIGCHLD, SIG_DFL);
    if (index == opts->workers) {
        /* The admin process: no TLS, no listeners of the workers. */
        close_handoff(opts, opts->workers);
        exit(cb_admin_main(opts->state_dir, opts->admin_fd, opts->stats, ready_w));
    }
    if (opts->admin_fd >= 0)
        close(opts->admin_fd);
    opts->cfg.worker = index;
    if (opts->handoff != NULL) {
        for (int i = 0; i < opts->workers; i++)
            if (i != index)
                close(opts->handoff[i][0]); /* another worker's inbox */
        opts->cfg.handoff_rx = opts->handoff[index][0];
        opts->cfg.handoff_tx = opts->handoff_tx;
    }
    if (opts->stats != NULL &&
        (opts->cfg.stats = cb_metrics_writer_new(cb_metrics_area(opts->stats, index))) == NULL) {
        cb_log("error", "worker_failed", "worker=%d reason=\"out of memory\"", index);
        if (write(ready_w, "F", 1) != 1)
            _exit(CB_WORKER_FATAL);
        _exit(CB_WORKER_FATAL);
    }
    /* exit, not _exit: a clean stop runs the leak checker of sanitizer builds here too. */
    exit(worker_main(opts, ready_w));
}

/* One datagram socket pair per worker, through which the others pass it connections.
 * The arrays and sockets live as long as the master (restarted workers reuse them). */
static int open_handoff(struct serve_opts *opts, struct cb_err *err)
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
static int open_admin(struct cb_cli *cli, int *out)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int fd, one = 1, ret;

    if ((ret = cb_admin_parse_addr(cli->admin, cli->admin_public, &addr, &len, &cli->err)) != 0)
        return ret;
    fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cb_err_set(&cli->err, CB_EIO, "--admin %s: %s", cli->admin, strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        return cb_err_set(&cli->err, CB_EIO, "--admin %s: cannot listen: %s%s", cli->admin,
                          strerror(e),
                          e == EADDRINUSE ? "; another program uses this port, pick another" : "");
    }
    *out = fd;
    return 0;
}

/* Reads the store once, as the master, to check it and what it listens on. */
static int preflight(struct cb_cli *cli, struct serve_opts *opts, struct cb_user *user,
                     bool *have_user)
{
    struct cb_store *st = NULL;
    struct cb_snapshot *snap = NULL;
    struct cb_listen_addr *addrs = NULL;
    char name[64];
    size_t n = 0;
    int ret;

    if ((ret = cb_store_open(opts->state_dir, CB_STORE_READ, &st, &cli->err)) != 0)
        return ret;
    *have_user = cb_store_setting_get(st, "user", name, sizeof(name), NULL) == 0;
    if (*have_user && (ret = cb_user_lookup(name, user, &cli->err)) != 0)
        goto out_close;
    if (geteuid() == 0 && (!*have_user || user->uid == 0)) {
        ret = cb_err_set(&cli->err, CB_EPERM,
                         "serve does not run as root; set the service user first: certbind set "
                         "user=NAME (a system user such as certbind)");
        goto out_close;
    }
    if ((ret = cb_store_load_snapshot(st, &snap, &cli->err)) != 0 ||
        (ret = cb_listen_plan(snap, &addrs, &n, &cli->err)) != 0)
        goto out_close;
    if (n == 0)
        cb_log("warn", "no_bindings",
               "reason=\"nothing to listen on yet; add a binding with 'certbind add sslcert'\"");
    ret = cb_listen_probe(addrs, n, &cli->err);
out_close:
    free(addrs);
    cb_snapshot_unref(snap);
    cb_store_close(st);
    return ret;
}

int cb_cmd_serve(struct cb_cli *cli)
{
    static const char *const allowed[] = {NULL};
    static struct serve_opts opts;
    struct cb_user user;
    bool have_user = false;
    int ready[2];
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0)
        return ret;
    snprintf(opts.state_dir, sizeof(opts.state_dir), "%s", cli->state_dir);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    opts.workers = cli->workers > 0 ? cli->workers : (cores > 0 ? (int)cores : 1);
    opts.cfg.handshake_timeout_ms =
        (uint64_t)(cli->handshake_timeout ? cli->handshake_timeout : 10) * 1000;
    opts.cfg.connect_timeout_ms = 10000;
    opts.cfg.idle_timeout_ms = (uint64_t)(cli->idle_timeout ? cli->idle_timeout : 300) * 1000;
    opts.cfg.grace_ms = (uint64_t)(cli->grace ? cli->grace : 30) * 1000;
    /* Caps are for the whole server: each worker takes its share (rounded up). */
    opts.cfg.max_conns = (uint32_t)((cli->max_conns + opts.workers - 1) / opts.workers);
    opts.cfg.max_conns_binding =
        (uint32_t)((cli->max_conns_binding + opts.workers - 1) / opts.workers);
    opts.admin_fd = -1;
    if (getenv("INVOCATION_ID") != NULL && getenv("JOURNAL_STREAM") != NULL)
        cb_log_set_journal(1);
    if (cli->admin_public && cli->admin == NULL)
        return cb_err_set(&cli->err, CB_EINVAL, "--admin-public needs --admin ADDR:PORT");
    if (cli->admin != NULL) {
        struct sockaddr_storage a;
        socklen_t alen;
        if ((ret = cb_admin_parse_addr(cli->admin, cli->admin_public, &a, &alen, &cli->err)) != 0)
            return ret;
    }

    /* Everything after this runs as the service user, with at most one capability. */
    if (geteuid() == 0) {
        if ((ret = preflight(cli, &opts, &user, &have_user)) != 0)
            return ret;
        if ((ret = cb_priv_drop(&user, true, &cli->err)) != 0)
            return ret;
    }
    /* Checked again as the user: the store and listeners must work for it. */
    if ((ret = preflight(cli, &opts, &user, &have_user)) != 0)
        return ret;
    if (cb_tls_random(opts.cfg.ticket_keys, sizeof(opts.cfg.ticket_keys)) != 0)
        return cb_err_set(&cli->err, CB_ETLS, "cannot make session ticket keys");
    if (cli->admin != NULL) {
        if ((ret = open_admin(cli, &opts.admin_fd)) != 0)
            return ret;
        if ((ret = cb_metrics_new(opts.workers, CB_STATS_CAPACITY, &opts.stats, &cli->err)) != 0) {
            close(opts.admin_fd);
            return ret;
        }
    }
    opts.cfg.workers = opts.workers;
    opts.cfg.handoff_rx = -1;
    if (opts.workers > 1 && !cli->no_affinity && (ret = open_handoff(&opts, &cli->err)) != 0)
        return ret;
    int procs = opts.workers + (cli->admin != NULL ? 1 : 0); /* the admin process last */

    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &old);
    signal(SIGPIPE, SIG_IGN);
    if (pipe(ready) != 0)
        return cb_err_set(&cli->err, CB_EIO, "pipe: %s", strerror(errno));

    pid_t *pids = calloc((size_t)procs, sizeof(*pids));
    if (pids == NULL)
        return cb_err_set(&cli->err, CB_ENOMEM, "out of memory");
    cb_log("info", "start", "version=%s workers=%d state=%s user=%s", CB_VERSION, opts.workers,
           opts.state_dir, have_user ? user.name : "(current)");
    for (int i = 0; i < procs; i++)
        pids[i] = spawn(&opts, i, ready[1], ready[0]);

    /* Wait until every worker listens (or one cannot start). */
    int ready_count = 0;
    bool fatal = false;
    while (ready_count < procs && !fatal) {
        struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
        if (poll(&pfd, 1, 60000) <= 0) {
            fatal = true;
            break;
        }
        char c;
        if (read(ready[0], &c, 1) == 1) {
            if (c == 'R')
                ready_count++;
            else
                fatal = true;
        }
    }
    if (fatal) {
        for (int i = 0; i < procs; i++)
            kill(pids[i], SIGTERM);
        while (wait(NULL) > 0)
            ;
        free(pids);
        return cb_err_set(&cli->err, CB_EFAILED,
                          "a worker could not start (see the worker_failed line above)");
    }
    if (cli->admin != NULL)
        cb_log("info", "admin", "addr=%s paths=\"/ /metrics /status.json\"", cli->admin);
    cb_log("info", "ready", "workers=%d", opts.workers);
    sd_notifyf(0, "READY=1\nSTATUS=serving with %d workers\nMAINPID=%lu", opts.workers,
               (unsigned long)getpid());

    bool stopping = false;
    int alive = procs;
    while (alive > 0) {
        siginfo_t si;
        int sig = sigwaitinfo(&mask, &si);
        if (sig < 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping) {
                cb_log("info", "stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
                sd_notify(0, "STOPPING=1");
            }
            stopping = true;
            /* The workers drain first; the admin process stops after them, so the
             * metrics and status page show the drain to the end. */
            for (int i = 0; i < opts.workers; i++)
                if (pids[i] > 0)
                    kill(pids[i], SIGTERM);
        } else if (sig == SIGHUP) {
            cb_log("info", "reload", "reason=SIGHUP");
            sd_notify(0, "RELOADING=1");
            for (int i = 0; i < procs; i++)
                if (pids[i] > 0)
                    kill(pids[i], SIGHUP);
            sd_notify(0, "READY=1");
        } else if (sig == SIGCHLD) {
            int status;
            pid_t pid;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                for (int i = 0; i < procs; i++) {
                    if (pids[i] != pid)
                        continue;
                    pids[i] = 0;
                    alive--;
                    if (stopping || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
                        break;
                    cb_log("error", i == opts.workers ? "admin_died" : "worker_died",
                           "worker=%d status=%d signal=%d", i,
                           WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                           WIFSIGNALED(status) ? WTERMSIG(status) : 0);
                    if (opts.handoff != NULL && i < opts.workers) /* what it had queued */
                        cb_handoff_return_all(opts.handoff[i][0], opts.handoff_tx, opts.workers, i);
                    sleep(1); /* no tight respawn loop */
                    pids[i] = spawn(&opts, i, ready[1], ready[0]);
                    if (pids[i] > 0)
                        alive++;
                    break;
                }
            }
            if (stopping && procs > opts.workers && pids[opts.workers] > 0) {
                bool workers_left = false;
                for (int i = 0; i < opts.workers; i++)
                    workers_left |= pids[i] > 0;
                if (!workers_left)
                    kill(pids[opts.workers], SIGTERM);
            }
        }
    }
    free(pids);
    close(ready[0]);
    close(ready[1]);
    if (opts.admin_fd >= 0)
        close(opts.admin_fd);
    cb_metrics_free(opts.stats);
    sigprocmask(SIG_SETMASK, &old, NULL);
    cb_log("info", "stopped", "reason=\"all workers exited\"");
    return 0;
}
