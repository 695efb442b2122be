/*
 * manager.c: the background process of `certbind serve`. Work that writes the store
 * or waits on the outside world runs here, never on a worker's loop: today the
 * linked certificate files (`add cert … link=yes`), whose renewal on disk this
 * process turns into a store change that the workers then pick up like any other.
 */
#include "daemon/serve_int.h"
#include "daemon/watch.h"
#include "util/log.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#define CB_MANAGER_POLL_MS 500

struct manager {
    uv_loop_t loop;
    struct cb_store *st;
    struct cb_watch *watch;
    uv_timer_t poll;
    uv_signal_t sigterm, sigint, sighup;
    uint64_t data_version;
};

/* The store changed (by a command, or by the watcher itself): linked files may differ. */
static void on_poll(uv_timer_t *t)
{
    struct manager *m = t->data;
    uint64_t v;

    if (cb_store_data_version(m->st, &v) != 0 || v == m->data_version)
        return;
    m->data_version = v;
    cb_watch_refresh(m->watch);
}

static void on_watch_change(void *arg)
{
    struct manager *m = arg;
    cb_watch_refresh(m->watch);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct manager *m = h->data;

    if (signum == SIGHUP) {
        cb_watch_refresh(m->watch);
        return;
    }
    cb_watch_close(m->watch);
    m->watch = NULL;
    uv_walk(&m->loop, close_walk, NULL);
}

int cb_manager_main(const struct cb_serve_opts *opts, int ready_fd)
{
    struct manager m = {0};
    struct cb_err err = {0};
    char q[900];
    int status = 1;

    if (uv_loop_init(&m.loop) != 0) {
        cb_err_set(&err, CB_ENOMEM, "cannot make an event loop");
        goto out_log;
    }
    if (cb_store_open(opts->state_dir, CB_STORE_READ, &m.st, &err) != 0)
        goto out_loop;
    if (cb_store_data_version(m.st, &m.data_version) != 0)
        m.data_version = 0;
    if (cb_watch_new(&m.loop, m.st, on_watch_change, &m, &m.watch, &err) != 0)
        goto out_store;
    cb_watch_refresh(m.watch);
    uv_timer_init(&m.loop, &m.poll);
    m.poll.data = &m;
    uv_timer_start(&m.poll, on_poll, CB_MANAGER_POLL_MS, CB_MANAGER_POLL_MS);
    uv_signal_init(&m.loop, &m.sigterm);
    uv_signal_init(&m.loop, &m.sigint);
    uv_signal_init(&m.loop, &m.sighup);
    m.sigterm.data = m.sigint.data = m.sighup.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sighup, on_signal, SIGHUP);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (write(ready_fd, "R", 1) != 1)
        goto out_run; /* the master is gone: stop as on SIGTERM */
    close(ready_fd);
    ready_fd = -1;
    uv_run(&m.loop, UV_RUN_DEFAULT);
    status = 0;
out_run:
    if (m.watch != NULL) {
        cb_watch_close(m.watch);
        uv_walk(&m.loop, close_walk, NULL);
        uv_run(&m.loop, UV_RUN_DEFAULT);
    }
out_store:
    cb_store_close(m.st);
out_loop:
    uv_loop_close(&m.loop);
out_log:
    if (status != 0)
        cb_log("error", "manager_failed", "reason=%s",
               cb_log_quote(err.msg[0] ? err.msg : "cannot start", q, sizeof(q)));
    return status;
}
