/*
 * The admin endpoint of `serve --admin ADDR:PORT`: Prometheus metrics at
 * /metrics, a status page at / (with /status.json behind it).
 *
 * A model is what the admin process knows of the configuration: the bindings
 * of one store generation in resolution order, their certificates and what
 * `check` says of each. It is built from the store whenever the store changes,
 * and is immutable once built; the live counters come from the workers' shared
 * areas (net/metrics.h) at the moment a page is rendered.
 */
#ifndef CB_ADMIN_ADMIN_H
#define CB_ADMIN_ADMIN_H

#include "net/metrics.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct cb_admin_model;

/* Reads the store (snapshot, certificates, check findings at time `now`) into an owned model. */
int cb_admin_model_build(struct cb_store *st, int64_t now, struct cb_admin_model **out,
                         struct cb_err *err) CB_MUST_CHECK;
void cb_admin_model_free(struct cb_admin_model *m);
uint64_t cb_admin_model_generation(const struct cb_admin_model *m);

/* A rendered response body: owned, NUL-terminated, freed with free(). */
struct cb_admin_body {
    char *data;
    size_t len;
};

/*
 * Renders the Prometheus text exposition (version 0.0.4) of model m and the
 * counters in stats (may be NULL: zero). workers_alive: workers running now.
 */
int cb_admin_render_metrics(const struct cb_admin_model *m, struct cb_metrics *stats,
                            int workers_alive, struct cb_admin_body *out) CB_MUST_CHECK;
/* The JSON behind the status page; at most max_per_port bindings listed per port. */
int cb_admin_render_status(const struct cb_admin_model *m, struct cb_metrics *stats, int64_t now,
                           size_t max_per_port, struct cb_admin_body *out) CB_MUST_CHECK;

/* The page itself and its script (static, in the binary). */
extern const char cb_admin_page_html[];
extern const size_t cb_admin_page_html_len;
extern const char cb_admin_page_js[];
extern const size_t cb_admin_page_js_len;

/*
 * --admin ADDR:PORT: parses "127.0.0.1:9110" or "[::1]:9110". Refuses an address
 * that is not loopback unless allow_public.
 */
int cb_admin_parse_addr(const char *text, bool allow_public, struct sockaddr_storage *addr,
                        socklen_t *len, struct cb_err *err) CB_MUST_CHECK;

/* The admin process: serves on listen_fd (owned) until SIGTERM/SIGINT. Returns an exit status. */
int cb_admin_main(const char *state_dir, int listen_fd, struct cb_metrics *stats, int ready_fd);

#endif
