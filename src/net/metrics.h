/*
 * Live counters that the workers share with the admin process (`serve --admin`).
 *
 * The master maps one shared, anonymous region before it forks: one area per
 * worker, each written by that worker alone and read by the admin process. An
 * area holds the worker's global counters and an append-only list of per-binding
 * entries, created the first time a binding sees a connection. A single writer
 * per area means no locks and no atomic read-modify-write: a counter is bumped
 * with a relaxed load and store, an entry is published by a release store of the
 * entry count, and the reader sums the areas with acquire/relaxed loads.
 *
 * Pages are touched only as entries are created, so the mapping's size is a
 * reservation: resident memory follows the number of bindings that saw traffic.
 */
#ifndef CB_NET_METRICS_H
#define CB_NET_METRICS_H

#include "binding/binding.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Per binding. Failures by reason, as the metrics name them. */
#define CB_METRIC_MAP(XX)                                                                          \
    XX(HANDSHAKES, "handshakes")                                                                   \
    XX(FAIL_KEY, "key_unusable")                                                                   \
    XX(FAIL_REJECTED, "rejected")                                                                  \
    XX(FAIL_PROTOCOL, "protocol")                                                                  \
    XX(FAIL_CAPACITY, "capacity")                                                                  \
    XX(FAIL_TIMEOUT, "timeout")                                                                    \
    XX(OPEN, "open")                                                                               \
    XX(BYTES_IN, "bytes_in")                                                                       \
    XX(BYTES_OUT, "bytes_out")

enum cb_metric {
#define XX(id, name) CB_METRIC_##id,
    CB_METRIC_MAP(XX)
#undef XX
        CB_METRIC_COUNT
};

/* Per worker, for what belongs to no binding. */
#define CB_GMETRIC_MAP(XX)                                                                         \
    XX(ACCEPTED, "accepted")                                                                       \
    XX(OPEN, "open")                                                                               \
    XX(NO_BINDING, "no_binding")                                                                   \
    XX(PROTOCOL, "protocol")                                                                       \
    XX(TIMEOUT, "timeout")                                                                         \
    XX(CAPACITY, "capacity")                                                                       \
    XX(STATS_FULL, "stats_full")                                                                   \
    XX(HANDED_OFF, "handed_off")                                                                   \
    XX(CERTS_LOADED, "certs_loaded")                                                               \
    XX(CERT_CACHE_HITS, "cert_cache_hits")                                                         \
    XX(CERT_CACHE_EVICTIONS, "cert_cache_evictions")                                               \
    XX(CERT_CACHE_CERTS, "cert_cache_certs")       /* gauge */                                     \
    XX(CERT_CACHE_BYTES, "cert_cache_bytes")       /* gauge */                                     \
    XX(CERT_CACHE_LIMIT, "cert_cache_limit_bytes") /* gauge */                                     \
    XX(ACME_ANSWERED, "acme_challenges_answered")                                                  \
    XX(OCSP_STAPLED, "ocsp_staples_served")                                                        \
    XX(RESUMED, "resumed")

enum cb_gmetric {
#define XX(id, name) CB_GMETRIC_##id,
    CB_GMETRIC_MAP(XX)
#undef XX
        CB_GMETRIC_COUNT
};

struct cb_metrics_entry {
    _Atomic uint64_t v[CB_METRIC_COUNT];
    char key[CB_KEY_TEXT_MAX + 4]; /* canonical binding key, NUL-terminated */
};

struct cb_metrics_area {
    _Atomic uint64_t g[CB_GMETRIC_COUNT];
    _Atomic uint32_t n_entries; /* published with release */
    _Atomic int32_t pid;        /* the worker writing it, 0 when none */
    uint32_t capacity;
    struct cb_metrics_entry *entries; /* in the same mapping */
};

struct cb_metrics; /* the shared region: one area per worker */

/* Maps the region for `workers` areas of `capacity` entries each. Owned: cb_metrics_free(). */
int cb_metrics_new(int workers, uint32_t capacity, struct cb_metrics **out,
                   struct cb_err *err) CB_MUST_CHECK;
void cb_metrics_free(struct cb_metrics *s);
int cb_metrics_workers(const struct cb_metrics *s);
struct cb_metrics_area *cb_metrics_area(struct cb_metrics *s, int worker);

/* ---- the writer: one per worker process -------------------------------- */

struct cb_metrics_writer;

/*
 * Takes over area (borrowed; a restarted worker continues its predecessor's
 * counters) and sets its open gauges to zero. Returns an owned writer, or NULL
 * when out of memory.
 */
struct cb_metrics_writer *cb_metrics_writer_new(struct cb_metrics_area *area);
void cb_metrics_writer_free(struct cb_metrics_writer *w);
/* The entry for a binding key, created when first asked for; NULL when the area is full. */
struct cb_metrics_entry *cb_metrics_entry_get(struct cb_metrics_writer *w, const char *key);
struct cb_metrics_area *cb_metrics_writer_area(struct cb_metrics_writer *w);

static inline void cb_metric_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void cb_metric_set(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline void cb_metric_sub(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

/* ---- the reader --------------------------------------------------------- */

struct cb_metrics_sum {
    uint64_t v[CB_METRIC_COUNT];
};

/* Sums every worker's entry for each key. */
struct cb_metrics_totals;
/* Owned result (cb_metrics_totals_free), NULL when out of memory. */
struct cb_metrics_totals *cb_metrics_collect(struct cb_metrics *s);
void cb_metrics_totals_free(struct cb_metrics_totals *t);
/* The sums for key, or NULL when no worker has seen it. */
const struct cb_metrics_sum *cb_metrics_totals_find(const struct cb_metrics_totals *t,
                                                    const char *key);
/* Global counters summed over the workers. */
void cb_metrics_totals_global(const struct cb_metrics_totals *t, uint64_t out[CB_GMETRIC_COUNT]);

extern const char *const cb_metric_names[CB_METRIC_COUNT];
extern const char *const cb_gmetric_names[CB_GMETRIC_COUNT];

#endif
