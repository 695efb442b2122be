/*
 * What a worker serves from: a resolver snapshot plus, for each binding and each
 * central-store file, its TLS context (or why it is broken) and its backend's
 * address. Immutable once built and reference-counted: a connection keeps the
 * runtime it resolved against until it closes, so a swap never disturbs it.
 * A worker is single-threaded, so the count is a plain integer.
 */
#ifndef CB_NET_RUNTIME_H
#define CB_NET_RUNTIME_H

#include "binding/snapshot.h"
#include "tls/ctx.h"
#include "util/cow.h"

#include <netinet/in.h>
#include <sys/socket.h>

struct cb_backend {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } addr;             /* 28 bytes, not sockaddr_storage's 128: there is one per binding */
    socklen_t addr_len; /* 0: no backend configured, or it could not be resolved */
    char *error;        /* owned: why a configured backend has no address */
};

struct cb_tls_challenges;
struct cb_tls_staples;
struct cb_tls_tickets;

struct cb_runtime {
    int refs;
    /* The store generation it is of: its snapshot's, or newer when only the challenges
     * changed since (the snapshot is then shared with the runtime it was derived from). */
    uint64_t generation;
    struct cb_snapshot *snap; /* owned reference */
    /*
     * Per binding, indexed as snap (util/cow.h): shared in parts with the runtime this one
     * was derived from and those derived from it, copied part by part on write, so a
     * change costs what it changes, not N. Write only through cb_cow_mut (never into a
     * part another runtime holds): a connection may still be running on that runtime.
     */
    struct cb_cow bind_tls;        /* struct cb_tls_entry (unused for ccs bindings) */
    struct cb_cow backends;        /* struct cb_backend */
    struct cb_cow active;          /* uint32_t: open connections (for the per-binding cap) */
    struct cb_cow stat;            /* struct cb_metrics_entry *: its counters, found on first use */
    struct cb_tls_entry *file_tls; /* per central-store file */
    /* uint32_t per port (65536, util/cow.h): how many bindings other than IP ones it has,
     * i.e. whether a socket for any local address listens on it (net/listen.h). */
    struct cb_cow port_bindings;
    /* Set by cb_runtime_derive: what it listens on is what old listened on (no port
     * gained or lost its last binding, no IP binding changed): no plan needed. */
    bool listen_same;
    /* The bindings (not ccs) whose entry has an error: owned array of n_broken indexes,
     * in no order; a derivation looks at these again (a certificate may have come). */
    uint32_t *broken;
    size_t n_broken;
    /* Identity only, never dereferenced: the runtime whose connection counts `active`
     * carries (cb_runtime_derive's old), NULL when the counts start at zero. Swapped in
     * in place of that runtime, open connections are then not counted again. */
    const struct cb_runtime *counts_of;
    /* Owned reference, or NULL: the pending TLS-ALPN-01 challenges (tls/challenge.h), every
     * one in every worker, so any worker answers a validation it accepts. */
    struct cb_tls_challenges *challenges;
    /* Owned reference, or NULL: the cached OCSP responses of the bound certificates that
     * staple (tls/staple.h), by thumbprint. */
    struct cb_tls_staples *staples;
    /* Owned reference, or NULL: the session ticket keys (tls/ticket.h), the same in every
     * worker, installed when the runtime is swapped in. */
    struct cb_tls_tickets *tickets;
    /* Borrowed: the worker's certificate cache. Whoever builds the runtime keeps the cache
     * alive as long as any reference to the runtime is (never freed under a live one);
     * net/ reads it only through a runtime it holds a reference to (a connection's c->rt). */
    const struct cb_tls_cache *cache;
};

/* The element hooks of the per-binding tables (util/cow.h). */
extern const struct cb_cow_ops cb_runtime_tls_ops, cb_runtime_backend_ops, cb_runtime_active_ops,
    cb_runtime_stat_ops;

/* Binding i's entry and backend (borrowed from rt). */
static inline const struct cb_tls_entry *cb_runtime_tls(const struct cb_runtime *rt, uint32_t i)
{
    return cb_cow_at(&rt->bind_tls, i);
}
static inline const struct cb_backend *cb_runtime_backend(const struct cb_runtime *rt, uint32_t i)
{
    return cb_cow_at(&rt->backends, i);
}

struct cb_runtime *cb_runtime_ref(struct cb_runtime *rt);
/* Drops one reference; frees at zero. NULL is a no-op. */
void cb_runtime_unref(struct cb_runtime *rt);

#endif
