/*
 * The OCSP responses a worker's runtime staples (tls/staple.h), read from the cache in
 * the state folder (store/ocsp.h): every bound certificate's when a runtime is built
 * from scratch; when one is derived, only those of new bindings and of the certificates
 * whose response changed, the rest shared with the old runtime (nothing per binding). A response is
 * a small local file (at most CB_STORE_OCSP_MAX bytes, read in one open and one read), and a change
 * reads only the changed ones, which is why this runs where the runtime is built (on the loop for a
 * change, on the thread pool for a full read) as the certificates' own stat() calls do, rather than
 * on a thread of its own.
 */
#ifndef CB_DAEMON_STAPLES_BUILD_H
#define CB_DAEMON_STAPLES_BUILD_H

#include "net/runtime.h"
#include "store/store.h"

/*
 * Fills rt->staples for rt's snapshot: every bound certificate's response is read. A
 * response that cannot be read or has expired is left out (no staple; the manager
 * fetches another). CB_ENOMEM only.
 */
int cb_staples_build(struct cb_store *st, struct cb_runtime *rt) CB_MUST_CHECK;

/*
 * Fills rt->staples for rt, derived from old by moves (cb_snapshot_derive_moves), reading
 * only the responses of the new and changed bindings' certificates that old has none for,
 * and of `changed` (n_changed thumbprints, borrowed: their cached response changed); old's
 * set is shared as it is when none of these gives a response. Responses of certificates no
 * longer bound may stay until the next full build (a staple is found by the thumbprint of
 * the certificate served, so they are never sent). CB_ENOMEM only.
 */
int cb_staples_derive(struct cb_store *st, struct cb_runtime *rt, const struct cb_runtime *old,
                      const struct cb_snapshot_move *moves, size_t n_moves,
                      const char (*changed)[CB_THUMB_LEN + 1], size_t n_changed) CB_MUST_CHECK;

#endif
