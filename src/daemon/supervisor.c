/*
 * supervisor.c: the master process of `certbind serve`. It owns no socket a client
 * reaches; it starts the children (workers, the manager, the admin process), keeps
 * them running, and answers signals and systemd, from a libuv loop that never
 * blocks, so SIGTERM is honoured at once in every state.
 *
 * Signals come from a signalfd polled by the loop, not uv_signal: libuv's signal
 * handlers are process-wide and a forked child would inherit them.
 *
 * Restarts: a child that dies is started again after a delay of 100 ms, doubled for
 * each death in a row that came within 30 s of its start (a crash loop), up to 30 s.
 * A child that exits with CB_EXIT_FATAL ("do not retry") is not started again; when
 * no worker is left the service stops and exits with a failure, so that systemd sees
 * it. With WatchdogSec=, WATCHDOG=1 is sent only while every worker is serving.
 */
#include "admin/admin.h"
#include "daemon/serve_int.h"
#include "net/handoff.h"
#include "util/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define CB_BACKOFF_FIRST_MS 100
#define CB_BACKOFF_MAX_MS 30000
#define CB_STABLE_MS 30000          /* up this long: the next death is not part of a loop */
#define CB_KILL_AFTER_GRACE_MS 5000 /* SIGKILL what still runs this long after the grace */
/* Every child ready within this, or start-up fails; counted from the last sign of progress
 * of a worker's first build ('P', serve_int.h), so only a build that stalls this long fails. */
#define CB_START_TIMEOUT_MS 60000

enum slot_kind { SLOT_WORKER, SLOT_MANAGER, SLOT_ADMIN };

struct slot;

/* The read end of one child's ready pipe, with its poll handle: one per start, freed
 * when the handle has closed (a restart never waits for the previous one to close). */
struct ready_reader {
    uv_poll_t poll;
    int fd;
    struct slot *slot;
    pid_t pid; /* the child it belongs to */
};

struct slot {
    struct supervisor *sv;
    enum slot_kind kind;
    int index; /* workers: 0..n-1 */
    pid_t pid; /* 0: not running */
    struct ready_reader *reader;
    uv_timer_t restart;
    /* Workers with affinity, while down: connections other workers had already passed to
     * this one are sent back to the worker that accepted them, not left queued. */
    uv_poll_t inbox;
    bool inbox_init, inbox_on;
    bool ready;   /* said 'R' and has not died since */
    bool fatal;   /* exited with CB_EXIT_FATAL: never started again */
    bool stopped; /* SIGTERM sent while stopping */
    unsigned early_deaths;
    uint64_t started_at;
};

struct supervisor {
    uv_loop_t loop;
    struct cb_serve_opts *opts;
    const char *admin_addr;
    struct slot *slots;
    int n;
    pid_t master;
    int sfd;
    uv_poll_t sig_poll;
    uv_timer_t watchdog, hard_stop, start_timeout;
    bool announced, stopping;
    int result; /* 0, or CB_E* with err filled */
    struct cb_err *err;
};

static const char *kind_name(enum slot_kind k)
{
    return k == SLOT_WORKER ? "worker" : k == SLOT_MANAGER ? "manager" : "admin";
}

/* "worker=1" or "process=manager": who a log line is about. */
static void who(const struct slot *s, char *buf, size_t size)
{
    if (s->kind == SLOT_WORKER)
        snprintf(buf, size, "worker=%d", s->index);
    else
        snprintf(buf, size, "process=%s", kind_name(s->kind));
}

static int workers_ready(const struct supervisor *sv)
{
    int n = 0;
    for (int i = 0; i < sv->opts->workers; i++)
        n += sv->slots[i].ready;
    return n;
}

static void tell_systemd_status(const struct supervisor *sv)
{
    if (sv->announced && !sv->stopping)
        sd_notifyf(0, "STATUS=serving: %d of %d workers ready", workers_ready(sv),
                   sv->opts->workers);
}

/* ---- children ------------------------------------------------------------ */

static void on_reader_closed(uv_handle_t *h)
{
    struct ready_reader *r = h->data;
    close(r->fd);
    free(r);
}

static void drop_reader(struct slot *s)
{
    if (s->reader == NULL)
        return;
    s->reader->slot = NULL;
    uv_close((uv_handle_t *)&s->reader->poll, on_reader_closed);
    s->reader = NULL;
}

/* In the child, just after fork: nothing of the master's loop or other children's pipes. */
static void child_detach(struct supervisor *sv, struct slot *me)
{
    char name[16];

    close(sv->sfd);
    close(uv_backend_fd(&sv->loop));
    for (int i = 0; i < sv->n; i++)
        if (sv->slots[i].reader != NULL)
            close(sv->slots[i].reader->fd);
    if (me->kind == SLOT_WORKER)
        snprintf(name, sizeof(name), "cb-worker-%d", me->index);
    else
        snprintf(name, sizeof(name), "cb-%s", kind_name(me->kind));
    prctl(PR_SET_NAME, name, 0, 0, 0);
    /* A master killed outright still stops its children: they drain and exit. */
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    if (getppid() != sv->master)
        _exit(0);
}

/* The child's life after fork; never returns. */
static void child_run(struct supervisor *sv, struct slot *s, int ready_w)
{
    struct cb_serve_opts *opts = sv->opts;

    child_detach(sv, s);
    if (s->kind == SLOT_ADMIN) {
        for (int i = 0; opts->handoff != NULL && i < opts->workers; i++) {
            close(opts->handoff[i][0]);
            close(opts->handoff[i][1]);
        }
        exit(cb_admin_main(opts->state_dir, opts->admin_fd, opts->stats, ready_w));
    }
    if (opts->admin_fd >= 0)
        close(opts->admin_fd);
    if (s->kind == SLOT_MANAGER) {
        for (int i = 0; opts->handoff != NULL && i < opts->workers; i++) {
            close(opts->handoff[i][0]);
            close(opts->handoff[i][1]);
        }
        exit(cb_manager_main(opts, ready_w));
    }
    opts->cfg.worker = s->index;
    if (opts->handoff != NULL) {
        for (int i = 0; i < opts->workers; i++)
            if (i != s->index)
                close(opts->handoff[i][0]); /* another worker's inbox */
        opts->cfg.handoff_rx = opts->handoff[s->index][0];
        opts->cfg.handoff_tx = opts->handoff_tx;
    }
    if (opts->stats != NULL &&
        (opts->cfg.stats = cb_metrics_writer_new(cb_metrics_area(opts->stats, s->index))) == NULL) {
        cb_log("error", "worker_failed", "worker=%d reason=\"out of memory\"", s->index);
        if (write(ready_w, "F", 1) != 1)
            _exit(CB_EXIT_FATAL);
        _exit(CB_EXIT_FATAL);
    }
    /* exit, not _exit: a clean stop runs the leak checker of sanitizer builds here too. */
    exit(cb_worker_main(opts, s->index, ready_w));
}

static void on_ready_readable(uv_poll_t *h, int status, int events);
static void schedule_restart(struct slot *s);

static void on_inbox(uv_poll_t *h, int status, int events)
{
    struct slot *s = h->data;
    struct cb_serve_opts *opts = s->sv->opts;
    (void)status;
    (void)events;

    int n = cb_handoff_return_all(opts->handoff[s->index][0], opts->handoff_tx, opts->workers,
                                  s->index);
    if (n > 0)
        cb_log("info", "handoff_returned", "worker=%d connections=%d", s->index, n);
}

/* Starts (the worker is down) or stops (it is about to start) the master's watch of a
 * worker's inbox. */
static void watch_inbox(struct slot *s, bool on)
{
    struct cb_serve_opts *opts = s->sv->opts;

    if (s->kind != SLOT_WORKER || opts->handoff == NULL || on == s->inbox_on)
        return;
    if (!s->inbox_init) {
        if (uv_poll_init(&s->sv->loop, &s->inbox, opts->handoff[s->index][0]) != 0)
            return;
        s->inbox.data = s;
        s->inbox_init = true;
    }
    s->inbox_on = on;
    if (on) {
        uv_poll_start(&s->inbox, UV_READABLE, on_inbox);
        on_inbox(&s->inbox, 0, UV_READABLE);
    } else {
        uv_poll_stop(&s->inbox);
    }
}

static void spawn(struct slot *s)
{
    struct supervisor *sv = s->sv;
    char w[32];
    int p[2];

    if (pipe2(p, O_CLOEXEC) != 0) {
        who(s, w, sizeof(w));
        cb_log("error", "spawn_failed", "%s reason=\"pipe: %s\"", w, strerror(errno));
        schedule_restart(s);
        return;
    }
    watch_inbox(s, false); /* from now on the inbox is the new worker's */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        child_run(sv, s, p[1]);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        who(s, w, sizeof(w));
        cb_log("error", "spawn_failed", "%s reason=\"fork: %s\"", w, strerror(errno));
        schedule_restart(s);
        return;
    }
    s->pid = pid;
    s->ready = false;
    s->stopped = false;
    s->started_at = uv_now(&sv->loop);
    struct ready_reader *r = calloc(1, sizeof(*r));
    if (r == NULL || uv_poll_init(&sv->loop, &r->poll, p[0]) != 0) {
        /* Without its pipe the child is taken as ready once started. */
        free(r);
        close(p[0]);
        s->ready = true;
        return;
    }
    r->fd = p[0];
    r->slot = s;
    r->pid = pid;
    r->poll.data = r;
    s->reader = r;
    uv_poll_start(&r->poll, UV_READABLE, on_ready_readable);
}

static void on_restart(uv_timer_t *t)
{
    struct slot *s = t->data;
    if (!s->sv->stopping && s->pid == 0 && !s->fatal)
        spawn(s);
}

/* 100 ms, then doubled for each early death in a row after the first, up to 30 s. */
static uint64_t backoff_ms(unsigned early_deaths)
{
    uint64_t delay = CB_BACKOFF_FIRST_MS;
    for (unsigned i = 1; i < early_deaths && delay < CB_BACKOFF_MAX_MS; i++)
        delay *= 2;
    return delay < CB_BACKOFF_MAX_MS ? delay : CB_BACKOFF_MAX_MS;
}

/* A start that failed in the master itself (pipe, fork) counts as an early death. */
static void schedule_restart(struct slot *s)
{
    s->early_deaths++;
    uv_timer_start(&s->restart, on_restart, backoff_ms(s->early_deaths), 0);
}

static void announce(struct supervisor *sv)
{
    sv->announced = true;
    uv_timer_stop(&sv->start_timeout);
    if (sv->admin_addr != NULL)
        cb_log("info", "admin", "addr=%s paths=\"/ /metrics /status.json\"", sv->admin_addr);
    cb_log("info", "ready", "workers=%d", sv->opts->workers);
    sd_notifyf(0, "READY=1\nSTATUS=serving: %d of %d workers ready\nMAINPID=%lu", sv->opts->workers,
               sv->opts->workers, (unsigned long)getpid());
}

static void on_start_timeout(uv_timer_t *t);

/* A worker's first build goes on ('P'): the start-up deadline, and systemd's, move to
 * CB_START_TIMEOUT_MS from now. */
static void still_starting(struct slot *s)
{
    struct supervisor *sv = s->sv;
    if (sv->announced || sv->stopping)
        return;
    uv_timer_start(&sv->start_timeout, on_start_timeout, CB_START_TIMEOUT_MS, 0);
    sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu\nSTATUS=starting: reading the store",
               (unsigned long long)CB_START_TIMEOUT_MS * 1000ull);
}

static void on_ready_readable(uv_poll_t *h, int status, int events)
{
    struct ready_reader *r = h->data;
    struct slot *s = r->slot;
    char buf[8], w[32];
    (void)events;

    ssize_t n = status < 0 ? -1 : read(r->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    for (ssize_t i = 0; s != NULL && i < n; i++) {
        if (buf[i] == 'P' && !s->ready && s->pid == r->pid) {
            still_starting(s);
            continue;
        }
        if (buf[i] != 'R' || s->ready || s->pid != r->pid)
            continue;
        s->ready = true;
        struct supervisor *sv = s->sv;
        if (!sv->announced) {
            bool all = true;
            for (int k = 0; k < sv->n; k++)
                all &= sv->slots[k].ready;
            if (all && !sv->stopping)
                announce(sv);
        } else {
            who(s, w, sizeof(w));
            cb_log("info", s->kind == SLOT_WORKER ? "worker_ready" : "process_ready",
                   "%s child_pid=%ld", w, (long)s->pid);
            tell_systemd_status(sv);
        }
    }
    if (n <= 0 && s != NULL) /* the child closed its end (ready or gone): nothing more */
        drop_reader(s);
}

static bool any_alive(const struct supervisor *sv, bool workers_only)
{
    for (int i = 0; i < sv->n; i++)
        if (sv->slots[i].pid > 0 && (!workers_only || sv->slots[i].kind != SLOT_ADMIN))
            return true;
    return false;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* While stopping: the admin process goes last (it shows the drain to the end); the loop
 * ends once every child is gone. */
static void stop_progress(struct supervisor *sv)
{
    if (!any_alive(sv, true)) {
        for (int i = 0; i < sv->n; i++) {
            struct slot *s = &sv->slots[i];
            if (s->pid > 0 && !s->stopped) {
                kill(s->pid, SIGTERM);
                s->stopped = true;
            }
        }
    }
    if (any_alive(sv, false))
        return;
    for (int i = 0; i < sv->n; i++)
        drop_reader(&sv->slots[i]);
    uv_walk(&sv->loop, close_walk, NULL);
}

static void on_hard_stop(uv_timer_t *t)
{
    struct supervisor *sv = t->data;
    for (int i = 0; i < sv->n; i++) {
        if (sv->slots[i].pid > 0) {
            char w[32];
            who(&sv->slots[i], w, sizeof(w));
            cb_log("warn", "stop_timeout", "%s child_pid=%ld action=SIGKILL", w,
                   (long)sv->slots[i].pid);
            kill(sv->slots[i].pid, SIGKILL);
        }
    }
}

static void begin_stop(struct supervisor *sv, const char *why)
{
    if (sv->stopping)
        return;
    sv->stopping = true;
    cb_log("info", "stopping", "%s", why);
    sd_notify(0, "STOPPING=1");
    uv_timer_stop(&sv->watchdog);
    uv_timer_stop(&sv->start_timeout);
    for (int i = 0; i < sv->n; i++) {
        struct slot *s = &sv->slots[i];
        uv_timer_stop(&s->restart);
        /* The workers drain first; the admin process stops after them. */
        if (s->pid > 0 && s->kind != SLOT_ADMIN) {
            kill(s->pid, SIGTERM);
            s->stopped = true;
        }
    }
    uv_timer_start(&sv->hard_stop, on_hard_stop, sv->opts->cfg.grace_ms + CB_KILL_AFTER_GRACE_MS,
                   0);
    stop_progress(sv);
}

static void fail(struct supervisor *sv, const char *why)
{
    if (sv->result == 0)
        sv->result = cb_err_set(sv->err, CB_EFAILED, "%s", why);
    char q[900];
    begin_stop(sv, "reason=failure");
    cb_log("error", "service_failed", "reason=%s", cb_log_quote(sv->err->msg, q, sizeof(q)));
}

static void child_exited(struct slot *s, int status)
{
    struct supervisor *sv = s->sv;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    pid_t pid = s->pid;
    char w[32];

    s->pid = 0;
    s->ready = false;
    drop_reader(s);
    watch_inbox(s, true);
    who(s, w, sizeof(w));
    if (sv->stopping) {
        stop_progress(sv);
        return;
    }
    if (code == CB_EXIT_FATAL) {
        s->fatal = true;
        cb_log("error", s->kind == SLOT_WORKER ? "worker_fatal" : "process_fatal",
               "%s child_pid=%ld reason=\"cannot run; not started again (see its last log line)\"",
               w, (long)pid);
        if (!sv->announced && (s->kind == SLOT_WORKER || s->kind == SLOT_ADMIN)) {
            fail(sv, s->kind == SLOT_WORKER
                         ? "a worker could not start (see the worker_failed line above)"
                         : "the admin process could not start (see the admin_failed line above)");
            return;
        }
        bool worker_left = false;
        for (int i = 0; i < sv->opts->workers; i++)
            worker_left |= !sv->slots[i].fatal;
        if (!worker_left)
            fail(sv, "no worker can run (see the worker_failed lines above)");
        tell_systemd_status(sv);
        return;
    }
    uint64_t up = uv_now(&sv->loop) - s->started_at;
    s->early_deaths = up < CB_STABLE_MS ? s->early_deaths + 1 : 0;
    uint64_t delay = backoff_ms(s->early_deaths);
    const char *event = s->kind == SLOT_WORKER    ? "worker_died"
                        : s->kind == SLOT_MANAGER ? "manager_died"
                                                  : "admin_died";
    cb_log("error", event, "%s child_pid=%ld status=%d signal=%d restart_in_ms=%llu", w, (long)pid,
           code, sig, (unsigned long long)delay);
    uv_timer_start(&s->restart, on_restart, delay, 0);
    tell_systemd_status(sv);
}

static void reap(struct supervisor *sv)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < sv->n; i++)
            if (sv->slots[i].pid == pid) {
                child_exited(&sv->slots[i], status);
                break;
            }
}

/* ---- signals, systemd ------------------------------------------------------- */

static void on_signalfd(uv_poll_t *h, int status, int events)
{
    struct supervisor *sv = h->data;
    struct signalfd_siginfo si;
    (void)status;
    (void)events;

    while (read(sv->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            begin_stop(sv, si.ssi_signo == SIGTERM ? "signal=TERM" : "signal=INT");
            break;
        case SIGHUP:
            if (sv->stopping)
                break;
            cb_log("info", "reload", "reason=SIGHUP");
            sd_notify(0, "RELOADING=1");
            for (int i = 0; i < sv->n; i++)
                if (sv->slots[i].pid > 0)
                    kill(sv->slots[i].pid, SIGHUP);
            sd_notify(0, "READY=1");
            break;
        case SIGCHLD:
            reap(sv);
            break;
        }
    }
    reap(sv); /* SIGCHLDs coalesce: look every time */
}

static void on_watchdog(uv_timer_t *t)
{
    struct supervisor *sv = t->data;
    if (sv->announced && !sv->stopping && workers_ready(sv) == sv->opts->workers)
        sd_notify(0, "WATCHDOG=1");
}

static void on_start_timeout(uv_timer_t *t)
{
    struct supervisor *sv = t->data;
    if (!sv->announced)
        fail(sv, "the workers did not become ready: no progress for 60 s (see the log lines "
                 "above)");
}

int cb_supervise(struct cb_serve_opts *opts, const char *admin_addr, struct cb_err *err)
{
    struct supervisor sv = {.opts = opts, .admin_addr = admin_addr, .err = err};
    sigset_t mask, old;
    uint64_t wd_usec = 0;
    int ret;

    sv.n = opts->workers + 1 + (opts->admin_fd >= 0 ? 1 : 0);
    sv.slots = calloc((size_t)sv.n, sizeof(*sv.slots));
    if (sv.slots == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &old);
    signal(SIGPIPE, SIG_IGN);
    sv.master = getpid();
    sv.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sv.sfd < 0) {
        ret = cb_err_set(err, CB_EIO, "signalfd: %s", strerror(errno));
        goto out_mask;
    }
    if (uv_loop_init(&sv.loop) != 0) {
        ret = cb_err_set(err, CB_ENOMEM, "cannot make an event loop");
        goto out_sfd;
    }
    uv_poll_init(&sv.loop, &sv.sig_poll, sv.sfd);
    sv.sig_poll.data = &sv;
    uv_poll_start(&sv.sig_poll, UV_READABLE, on_signalfd);
    uv_timer_init(&sv.loop, &sv.watchdog);
    uv_timer_init(&sv.loop, &sv.hard_stop);
    uv_timer_init(&sv.loop, &sv.start_timeout);
    sv.watchdog.data = sv.hard_stop.data = sv.start_timeout.data = &sv;
    for (int i = 0; i < sv.n; i++) {
        struct slot *s = &sv.slots[i];
        s->sv = &sv;
        s->kind = i < opts->workers ? SLOT_WORKER : i == opts->workers ? SLOT_MANAGER : SLOT_ADMIN;
        s->index = i;
        uv_timer_init(&sv.loop, &s->restart);
        s->restart.data = s;
    }
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec >= 2000) {
        uint64_t every = wd_usec / 2000;
        uv_timer_start(&sv.watchdog, on_watchdog, every, every);
    }
    uv_timer_start(&sv.start_timeout, on_start_timeout, CB_START_TIMEOUT_MS, 0);
    for (int i = 0; i < sv.n; i++)
        spawn(&sv.slots[i]);
    uv_run(&sv.loop, UV_RUN_DEFAULT);
    uv_loop_close(&sv.loop);
    ret = sv.result;
    if (ret == 0)
        cb_log("info", "stopped", "reason=\"all workers exited\"");
out_sfd:
    close(sv.sfd);
out_mask:
    /* Signals still pending (a SIGHUP storm, a second SIGTERM) must not end the process
     * with a signal status once the service has stopped cleanly. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    sigprocmask(SIG_SETMASK, &old, NULL);
    free(sv.slots);
    return ret;
}
