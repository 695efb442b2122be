/*
 * process.c: the admin process. libmicrohttpd serves the admin port from its own
 * thread; this process's main thread follows the store (every 250 ms, and on
 * SIGHUP) and swaps in a new model when it changed. Requests read the model
 * under a mutex and the workers' counters without one (net/metrics.h).
 *
 * Only GET and HEAD of four paths are served; anything else is 404 or 405. The
 * page's script and data are same-origin, under a Content-Security-Policy that
 * allows nothing else.
 */
#include "admin/admin.h"
#include "util/log.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CB_ADMIN_POLL_MS 250
#define CB_ADMIN_RECHECK_S 60  /* expiry findings age: check again at least this often */
#define CB_ADMIN_MAX_ROWS 1000 /* bindings listed per port on the page */

struct admin {
    pthread_mutex_t lock;
    struct cb_admin_model *model; /* guarded by lock */
    struct cb_metrics *stats;     /* borrowed */
};

static int workers_alive(struct cb_metrics *s)
{
    int n = 0;
    for (int i = 0; s != NULL && i < cb_metrics_workers(s); i++) {
        pid_t pid = (pid_t)atomic_load_explicit(&cb_metrics_area(s, i)->pid, memory_order_relaxed);
        if (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM))
            n++;
    }
    return n;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             void *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; connect-src 'self'; "
                            "style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result text(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    return reply(conn, status, "text/plain; charset=utf-8", (void *)msg, strlen(msg),
                 MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct admin *a = cls;
    struct cb_admin_body body = {0};
    int ret;
    (void)version;
    (void)upload_data;
    (void)con_cls;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        *upload_data_size = 0;
        return text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD are served here\n");
    }
    if (strcmp(url, "/") == 0)
        return reply(conn, MHD_HTTP_OK, "text/html; charset=utf-8", (void *)cb_admin_page_html,
                     cb_admin_page_html_len, MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/status.js") == 0)
        return reply(conn, MHD_HTTP_OK, "text/javascript; charset=utf-8", (void *)cb_admin_page_js,
                     cb_admin_page_js_len, MHD_RESPMEM_PERSISTENT);
    bool metrics = strcmp(url, "/metrics") == 0;
    if (!metrics && strcmp(url, "/status.json") != 0)
        return text(conn, MHD_HTTP_NOT_FOUND,
                    "not found: this port serves /, /metrics and /status.json\n");
    pthread_mutex_lock(&a->lock);
    if (a->model == NULL)
        ret = CB_ENOENT;
    else if (metrics)
        ret = cb_admin_render_metrics(a->model, a->stats, workers_alive(a->stats), &body);
    else
        ret = cb_admin_render_status(a->model, a->stats, (int64_t)time(NULL), CB_ADMIN_MAX_ROWS,
                                     &body);
    pthread_mutex_unlock(&a->lock);
    if (ret != 0)
        return text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                    ret == CB_ENOENT ? "the store could not be read yet; see the log\n"
                                     : "out of memory\n");
    return reply(conn, MHD_HTTP_OK,
                 metrics ? "text/plain; version=0.0.4; charset=utf-8" : "application/json",
                 body.data, body.len, MHD_RESPMEM_MUST_FREE);
}

/* Builds a model from the store and swaps it in. Logs why it could not. */
static void refresh(struct admin *a, struct cb_store *st)
{
    struct cb_admin_model *m = NULL, *old;
    struct cb_err err = {0};
    char q[900];

    if (cb_admin_model_build(st, (int64_t)time(NULL), &m, &err) != 0) {
        cb_log("error", "admin_refresh_failed", "reason=%s", cb_log_quote(err.msg, q, sizeof(q)));
        return;
    }
    pthread_mutex_lock(&a->lock);
    old = a->model;
    a->model = m;
    pthread_mutex_unlock(&a->lock);
    cb_admin_model_free(old);
}

int cb_admin_main(const char *state_dir, int listen_fd, struct cb_metrics *stats, int ready_fd)
{
    struct admin a = {.stats = stats};
    struct cb_store *st = NULL;
    struct MHD_Daemon *d = NULL;
    struct cb_err err = {0};
    uint64_t version = 0;
    char q[900];
    int status = 3;

    pthread_mutex_init(&a.lock, NULL);
    /* The signals stay blocked in every thread: this one takes them with sigtimedwait. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);

    if (cb_store_open(state_dir, CB_STORE_READ, &st, &err) != 0)
        goto out_fail;
    if (cb_store_data_version(st, &version) != 0) {
        cb_err_set(&err, CB_ESTORE, "cannot read the store's version");
        goto out_fail;
    }
    refresh(&a, st);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, on_request,
                         &a, MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)64, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)16,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_END);
    if (d == NULL) {
        cb_err_set(&err, CB_EIO, "cannot start the admin HTTP server");
        goto out_fail;
    }
    if (ready_fd >= 0) {
        if (write(ready_fd, "R", 1) != 1)
            goto out_fail;
        close(ready_fd);
        ready_fd = -1;
    }
    time_t last_check = time(NULL);
    struct timespec last_end = {0, 0};
    double last_cost = 0;
    bool pending = false;
    for (;;) {
        struct timespec ts = {0, CB_ADMIN_POLL_MS * 1000000L};
        int sig = sigtimedwait(&mask, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        uint64_t v;
        if (cb_store_data_version(st, &v) == 0 && v != version) {
            version = v;
            pending = true;
        }
        if (sig == SIGHUP || time(NULL) - last_check >= CB_ADMIN_RECHECK_S)
            pending = true;
        /* A model costs a full read and a check: with many bindings and changes coming
         * fast, rebuild at most once per ten times what the last one took. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double since =
            (double)(now.tv_sec - last_end.tv_sec) + (double)(now.tv_nsec - last_end.tv_nsec) / 1e9;
        if (pending && since >= 10 * last_cost) {
            last_check = time(NULL);
            refresh(&a, st);
            pending = false;
            clock_gettime(CLOCK_MONOTONIC, &last_end);
            last_cost = (double)(last_end.tv_sec - now.tv_sec) +
                        (double)(last_end.tv_nsec - now.tv_nsec) / 1e9;
        }
    }
    status = 0;
    goto out_stop;
out_fail:
    cb_log("error", "admin_failed", "reason=%s",
           cb_log_quote(err.msg[0] ? err.msg : "cannot start", q, sizeof(q)));
    if (ready_fd >= 0 && write(ready_fd, "F", 1) != 1)
        status = 3;
out_stop:
    if (d != NULL)
        MHD_stop_daemon(d);
    else
        close(listen_fd);
    cb_admin_model_free(a.model);
    cb_store_close(st);
    pthread_mutex_destroy(&a.lock);
    return status;
}
