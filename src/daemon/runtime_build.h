/* Building a worker's runtime (snapshot + TLS contexts + backend addresses) from the store. */
#ifndef CB_DAEMON_RUNTIME_BUILD_H
#define CB_DAEMON_RUNTIME_BUILD_H

#include "net/runtime.h"
#include "store/store.h"

struct cb_runtime_stats {
    size_t bindings, broken;
    size_t certs_new; /* certificate entries made anew (parsed now if eager, else on first use) */
    size_t certs_reused; /* entries kept from the cache: not parsed again (derived: of the
                          * bindings the change touched; the others are shared as they are) */
    uint64_t generation;
    double ms;
    bool derived;      /* from the previous runtime and the store's change log */
    size_t challenges; /* pending TLS-ALPN-01 challenges in the runtime */
};

/* What a long build tells its caller now and then (every CB_RUNTIME_PROGRESS_EVERY
 * bindings): that it is still going. A worker's start-up passes it on to the master, so
 * that a build of 10^6 bindings on a cold disk is not taken for a hung one. */
#define CB_RUNTIME_PROGRESS_EVERY 4096
struct cb_runtime_progress {
    /* done of total bindings looked at; 0 and 0 while the store's rows are read */
    void (*fn)(void *arg, size_t done, size_t total);
    void *arg;
};

/*
 * Reads every binding, finds or loads each certificate's context through `cache`
 * (unchanged certificates are not parsed again), resolves backends, and returns an
 * owned runtime (refcount 1) in *out. When log_broken, each binding whose
 * certificate is unusable is logged once, with its reason. progress: NULL, or called as
 * above (borrowed).
 */
int cb_runtime_build(struct cb_store *st, struct cb_tls_cache *cache, bool log_broken,
                     const struct cb_runtime_progress *progress, struct cb_runtime **out,
                     struct cb_runtime_stats *stats, struct cb_err *err) CB_MUST_CHECK;

/*
 * The runtime after the store's latest changes, from old (borrowed) and the
 * store's change log: only the changed bindings are read, only their certificates
 * looked up, and the per-binding tables are old's, shared in parts (net/runtime.h):
 * only the parts of the bindings the change moved or set are copied, so a change
 * costs what it changes, not the number of bindings. Old is never written. The
 * result carries old's open-connection counts (rt->counts_of == old): swap it in in
 * place of old (cb_server_swap_runtime) before any connection opens or closes. Old's
 * broken bindings are looked at again (their certificate may have been imported). Returns
 * CB_SNAPSHOT_REBUILD when cb_runtime_build is needed instead, and CB_RUNTIME_BUILD_ASIDE when it
 * is needed and should not run on a serving loop (a changed binding's backend is a host name:
 * resolving it asks DNS); *out is then untouched. Names are resolved only by cb_runtime_build. Same
 * ownership as cb_runtime_build.
 */
#define CB_RUNTIME_BUILD_ASIDE 2
int cb_runtime_derive(struct cb_store *st, struct cb_tls_cache *cache, const struct cb_runtime *old,
                      bool log_broken, struct cb_runtime **out, struct cb_runtime_stats *stats,
                      struct cb_err *err) CB_MUST_CHECK;

#endif
