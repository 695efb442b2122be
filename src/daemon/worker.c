/*
 * worker.c: one worker of `certbind serve`. It runs its own libuv loop and its own
 * SO_REUSEPORT listeners, and swaps in a new runtime within a second of a store
 * change. It only serves: nothing here writes the store or waits on the outside
 * world (that is the manager's work).
 *
 * One rule for broken input, the same at start, on reload and after a restart: a
 * binding whose certificate, key or address cannot be used breaks only itself (its
 * handshakes fail with a log line); a runtime that cannot be built at all leaves
 * the worker serving what it had (nothing, at start) and is tried again every few
 * seconds. A worker never exits because of what the store holds.
 */
#include "daemon/runtime_build.h"
#include "daemon/serve_int.h"
#include "tls/ticket.h"
#include "util/log.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CB_STORE_POLL_MS 250
#define CB_RELOAD_RETRY_MS 5000

struct worker {
    const struct cb_serve_opts *opts;
    int index;
    uv_loop_t loop;
    struct cb_store *st;
    /* The cache the current runtime was built with (a runtime borrows its cache): replaced
     * only together with the runtime, after a new one was built aside with a fresh cache. */
    struct cb_tls_cache *cache;
    struct cb_server *srv;
    uv_timer_t poll_timer;
    uv_fs_event_t db_watch; /* the state folder: a commit writes certbind.db-wal */
    uv_timer_t settle_timer;
    int settle_tries;
    bool watching;
    uv_signal_t sigterm, sigint, sighup;
    uint64_t data_version;
    uint64_t retry_at; /* loop time to try a failed reload again, 0: none */
    bool stopping;
    /* A full re-read (SIGHUP) runs on the thread pool, built aside with its own store
     * connection and a fresh cache: the loop keeps serving meanwhile. */
    struct full_build *building; /* the one under way, or NULL */
    bool build_again;            /* another SIGHUP came meanwhile: read again after it */
    int64_t tickets_generation;  /* the session ticket keys in service (the newest key's id) */
    bool listen_failed;          /* the last listen_for could not listen on everything */
    int ready_fd;                /* to the master until ready, then -1 */
    uint64_t progress_ms;        /* when the master was last told the build goes on */
};

struct full_build {
    uv_work_t req;
    struct worker *w;
    struct cb_tls_cache *cache; /* fresh: nothing else touches it until the swap */
    struct cb_runtime *rt;      /* the result, owned */
    struct cb_runtime_stats stats;
    struct cb_err err;
    int ret;
};

static void log_snapshot(const struct worker *w, const struct cb_runtime_stats *stats)
{
    if (w->index != 0)
        return;
    cb_log("info", "snapshot",
           "generation=%llu bindings=%zu broken=%zu certs_new=%zu certs_reused=%zu "
           "challenges=%zu build=%s build_ms=%.1f",
           (unsigned long long)stats->generation, stats->bindings, stats->broken, stats->certs_new,
           stats->certs_reused, stats->challenges, stats->derived ? "changes" : "full", stats->ms);
}

/* Each worker says when it starts using new session ticket keys (so that an operator, and
 * a test, can see that every worker follows a rotation); never the keys themselves. */
static void log_tickets(struct worker *w, const struct cb_runtime *rt)
{
    int64_t gen = cb_tls_tickets_generation(rt->tickets);

    if (gen == w->tickets_generation)
        return;
    w->tickets_generation = gen;
    cb_log("info", "ticket_keys_loaded", "worker=%d keys=%zu generation=%lld", w->index,
           cb_tls_tickets_count(rt->tickets), (long long)gen);
}

/* A certificate cache with this worker's share of --cert-cache-mb; owned, NULL when out of
 * memory. */
static struct cb_tls_cache *new_cache(const struct worker *w)
{
    struct cb_tls_cache *c = cb_tls_cache_new();
    if (c != NULL)
        cb_tls_cache_set_budget(c, w->opts->cert_cache_bytes);
    return c;
}

/* Listens on what rt needs. An address that cannot be listened on is logged and breaks
 * only the bindings on it: the others are served all the same. */
static void listen_for(struct worker *w, const struct cb_runtime *rt)
{
    struct cb_listen_addr *addrs = NULL;
    struct cb_err err = {0};
    char q[900];
    size_t n = 0;

    w->listen_failed = cb_listen_plan(rt->snap, &w->opts->iplisten, &addrs, &n, &err) != 0 ||
                       cb_server_listen(w->srv, addrs, n, &err) != 0;
    if (w->listen_failed)
        cb_log("error", "listen_failed", "worker=%d reason=%s", w->index,
               cb_log_quote(err.msg, q, sizeof(q)));
    free(addrs);
}

/*
 * Builds the runtime of the store's newest state and swaps it in. `full`: read every
 * binding and parse every certificate again with a fresh cache (SIGHUP: files may have
 * changed on disk); else apply the store's change log to the current runtime. The new
 * runtime (and cache) is built aside and swapped in only once complete: on failure the
 * worker keeps serving the old one, untouched.
 */
static bool full_build_async(struct worker *w);

/* A start-up build still going: 'P' to the master at most once a second, so that its
 * start-up deadline counts from the last sign of progress (serve_int.h). */
static void on_build_progress(void *arg, size_t done, size_t total)
{
    struct worker *w = arg;
    (void)done;
    (void)total;
    uv_update_time(&w->loop);
    uint64_t now = uv_now(&w->loop);
    if (w->ready_fd < 0 || now - w->progress_ms < CB_PROGRESS_EVERY_MS)
        return;
    w->progress_ms = now;
    if (write(w->ready_fd, "P", 1) != 1)
        return; /* the master is gone: it will say so, or its death ends this one */
}

static int reload(struct worker *w, bool full, struct cb_err *err)
{
    struct cb_tls_cache *cache = w->cache, *fresh = NULL;
    struct cb_runtime *old = cb_server_runtime(w->srv);
    struct cb_runtime *rt = NULL;
    struct cb_runtime_stats stats;
    bool log_broken = w->index == 0;
    int ret;

    if (full || old == NULL) {
        if ((fresh = new_cache(w)) == NULL)
            return cb_err_set(err, CB_ENOMEM, "out of memory");
        cache = fresh;
        old = NULL;
    }
    /* One change among many: apply it, rather than read every binding again. */
    ret = old != NULL ? cb_runtime_derive(w->st, cache, old, log_broken, &rt, &stats, err)
                      : CB_SNAPSHOT_REBUILD;
    /* A changed backend named by a host name: DNS may take seconds, so the whole runtime is
     * built aside on the thread pool and swapped in when done. */
    if (ret == CB_RUNTIME_BUILD_ASIDE && full_build_async(w))
        return 0;
    /* A full read with central-store folders lists them (a disk scan): also built aside. */
    if (ret == CB_SNAPSHOT_REBUILD && old != NULL && cb_snapshot_ccs_count(old->snap) > 0 &&
        full_build_async(w))
        return 0;
    struct cb_runtime_progress progress = {.fn = on_build_progress, .arg = w};
    if (ret == CB_SNAPSHOT_REBUILD || ret == CB_RUNTIME_BUILD_ASIDE)
        ret = cb_runtime_build(w->st, cache, log_broken, w->ready_fd >= 0 ? &progress : NULL, &rt,
                               &stats, err);
    if (ret != 0) {
        cb_tls_cache_free(fresh); /* nothing built with it is kept */
        return ret;
    }
    if (rt == old) { /* nothing changed since the runtime in service */
        cb_runtime_unref(rt);
        return 0;
    }
    /* A derived runtime that listens where old did needs no plan (a pass over every
     * binding): the sockets stay as they are, unless one failed (tried again now). */
    if (!(stats.derived && rt->listen_same && !w->listen_failed))
        listen_for(w, rt);
    cb_server_swap_runtime(w->srv, rt);
    log_tickets(w, rt);
    cb_runtime_unref(rt);
    if (fresh != NULL) {
        /* The server's runtime now borrows the fresh cache; runtimes still held by open
         * connections keep their certificate references, not the old cache. */
        cb_tls_cache_free(w->cache);
        w->cache = fresh;
    }
    log_snapshot(w, &stats);
    return 0;
}

static void reload_or_retry(struct worker *w, bool full);

static void on_full_build(uv_work_t *req)
{
    struct full_build *b = req->data;
    struct cb_store *st = NULL;

    b->ret = cb_store_open(b->w->opts->state_dir, CB_STORE_READ, &st, &b->err);
    if (b->ret == 0)
        b->ret = cb_runtime_build(st, b->cache, b->w->index == 0, NULL, &b->rt, &b->stats, &b->err);
    cb_store_close(st);
}

static void on_full_built(uv_work_t *req, int status)
{
    struct full_build *b = req->data;
    struct worker *w = b->w;
    char q[900];
    (void)status;

    w->building = NULL;
    if (b->ret != 0 || w->stopping || w->srv == NULL) {
        if (b->ret != 0 && !w->stopping) {
            cb_log("error", "reload_failed", "worker=%d reason=%s retry_in_ms=%d serving=%s",
                   w->index, cb_log_quote(b->err.msg, q, sizeof(q)), CB_RELOAD_RETRY_MS,
                   cb_server_runtime(w->srv) != NULL ? "previous" : "nothing");
            w->retry_at = uv_now(&w->loop) + CB_RELOAD_RETRY_MS;
        }
        cb_runtime_unref(b->rt);
        cb_tls_cache_free(b->cache);
        free(b);
        return;
    }
    listen_for(w, b->rt);
    cb_server_swap_runtime(w->srv, b->rt);
    log_tickets(w, b->rt);
    cb_runtime_unref(b->rt);
    cb_tls_cache_free(w->cache); /* see reload(): nothing reads it through a live runtime */
    w->cache = b->cache;
    log_snapshot(w, &b->stats);
    free(b);
    /* Changes committed while it was being built are applied now, from the change log. */
    if (w->build_again) {
        w->build_again = false;
        reload_or_retry(w, true);
    } else {
        reload_or_retry(w, false);
    }
}

/* Starts a full re-read on the thread pool; false when it cannot (then read here). */
static bool full_build_async(struct worker *w)
{
    if (w->building != NULL) {
        w->build_again = true;
        return true;
    }
    struct full_build *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->cache = new_cache(w)) == NULL) {
        free(b);
        return false;
    }
    b->w = w;
    b->req.data = b;
    if (uv_queue_work(&w->loop, &b->req, on_full_build, on_full_built) != 0) {
        cb_tls_cache_free(b->cache);
        free(b);
        return false;
    }
    w->building = b;
    return true;
}

static void reload_or_retry(struct worker *w, bool full)
{
    struct cb_err err = {0};
    char q[900];

    w->retry_at = 0;
    /* While serving, a full re-read is built off the loop (at start, before anything is
     * served, it is built here). */
    if (full && cb_server_runtime(w->srv) != NULL && full_build_async(w))
        return;
    if (reload(w, full, &err) == 0)
        return;
    cb_log("error", "reload_failed", "worker=%d reason=%s retry_in_ms=%d serving=%s", w->index,
           cb_log_quote(err.msg, q, sizeof(q)), CB_RELOAD_RETRY_MS,
           cb_server_runtime(w->srv) != NULL ? "previous" : "nothing");
    w->retry_at = uv_now(&w->loop) + CB_RELOAD_RETRY_MS;
}

static void on_poll_store(uv_timer_t *t)
{
    struct worker *w = t->data;
    uint64_t v;

    if (w->stopping || cb_store_data_version(w->st, &v) != 0)
        return;
    /* A failed reload is tried again every few seconds, change or not. */
    bool retry = w->retry_at != 0 && uv_now(&w->loop) >= w->retry_at;
    if (v == w->data_version && !retry)
        return;
    w->data_version = v;
    reload_or_retry(w, cb_server_runtime(w->srv) == NULL);
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
    cb_server_free(w->srv);
    w->srv = NULL;
    uv_walk(&w->loop, close_walk, NULL);
}

static struct worker *the_worker; /* one per process: the drain callback has no argument */

static void on_worker_drained(struct cb_server *srv)
{
    (void)srv;
    cb_log("info", "drained", "worker=%d", the_worker->index);
    stop_worker(the_worker);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct worker *w = h->data;

    if (signum == SIGHUP) {
        if (!w->stopping)
            reload_or_retry(w, true);
        return;
    }
    if (w->stopping)
        return;
    w->stopping = true;
    if (w->index == 0)
        cb_log("info", "draining", "open_connections=%zu grace_ms=%llu",
               cb_server_connections(w->srv), (unsigned long long)w->opts->cfg.grace_ms);
    cb_server_drain(w->srv, on_worker_drained);
}

static int start_watching(struct worker *w)
{
    uv_timer_init(&w->loop, &w->poll_timer);
    w->poll_timer.data = w;
    uv_timer_start(&w->poll_timer, on_poll_store, CB_STORE_POLL_MS, CB_STORE_POLL_MS);
    uv_timer_init(&w->loop, &w->settle_timer);
    w->settle_timer.data = w;
    uv_fs_event_init(&w->loop, &w->db_watch);
    w->db_watch.data = w;
    w->watching = uv_fs_event_start(&w->db_watch, on_db_event, w->opts->state_dir, 0) == 0;
    uv_signal_init(&w->loop, &w->sigterm);
    uv_signal_init(&w->loop, &w->sigint);
    uv_signal_init(&w->loop, &w->sighup);
    w->sigterm.data = w->sigint.data = w->sighup.data = w;
    if (uv_signal_start(&w->sigterm, on_signal, SIGTERM) != 0 ||
        uv_signal_start(&w->sigint, on_signal, SIGINT) != 0 ||
        uv_signal_start(&w->sighup, on_signal, SIGHUP) != 0)
        return CB_EIO;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    return 0;
}

int cb_worker_main(struct cb_serve_opts *opts, int index, int ready_fd)
{
    struct worker w = {.opts = opts, .index = index, .ready_fd = ready_fd};
    struct cb_err err = {0};
    char q[900];

    the_worker = &w;
    if (uv_loop_init(&w.loop) != 0) {
        cb_err_set(&err, CB_ENOMEM, "cannot make an event loop");
        goto out_fatal;
    }
    /* A store that cannot be opened now may be fixed: not fatal, the master retries. */
    if (cb_store_open(opts->state_dir, CB_STORE_READ, &w.st, &err) != 0) {
        cb_log("error", "worker_failed", "worker=%d reason=%s", index,
               cb_log_quote(err.msg, q, sizeof(q)));
        uv_loop_close(&w.loop);
        cb_metrics_writer_free(opts->cfg.stats);
        return 1;
    }
    if ((w.cache = new_cache(&w)) == NULL ||
        cb_server_new(&w.loop, &opts->cfg, &w.srv, &err) != 0) {
        cb_err_set(&err, CB_ENOMEM, "out of memory");
        goto out_fatal;
    }
    if (cb_store_data_version(w.st, &w.data_version) != 0)
        w.data_version = 0;
    reload_or_retry(&w, true);
    if (start_watching(&w) != 0) {
        cb_err_set(&err, CB_EIO, "cannot watch signals");
        goto out_fatal;
    }
    if (write(ready_fd, "R", 1) != 1)
        return 1; /* the master is gone */
    close(ready_fd);
    w.ready_fd = -1;
    uv_run(&w.loop, UV_RUN_DEFAULT);
    uv_loop_close(&w.loop);
    cb_tls_cache_free(w.cache);
    cb_store_close(w.st);
    cb_metrics_writer_free(opts->cfg.stats);
    return 0;
out_fatal:
    cb_log("error", "worker_failed", "worker=%d reason=%s", index,
           cb_log_quote(err.msg[0] ? err.msg : "cannot start", q, sizeof(q)));
    /* _exit: a worker that could not start holds half-built state; its exit status is the
     * message (a sanitizer build's leak report would replace it with an abort). */
    if (write(ready_fd, "F", 1) != 1)
        _exit(CB_EXIT_FATAL);
    _exit(CB_EXIT_FATAL);
}
