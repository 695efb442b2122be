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
    struct cb_snapshot *snap;       /* owned reference */
    struct cb_tls_entry *bind_tls;  /* per binding (unused for ccs bindings) */
    struct cb_tls_entry *file_tls;  /* per central-store file */
    struct cb_backend *backends;    /* per binding */
    uint32_t *active;               /* per binding: open connections (for the per-binding cap) */
    struct cb_metrics_entry **stat; /* per binding: its counters, found on first use (or NULL) */
    size_t n_broken;
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

struct cb_runtime *cb_runtime_ref(struct cb_runtime *rt);
/* Drops one reference; frees at zero. NULL is a no-op. */
void cb_runtime_unref(struct cb_runtime *rt);

#endif
