/*
 * The OCSP responses a worker's runtime staples (tls/staple.h), read from the cache in
 * the state folder (store/ocsp.h): every bound certificate's when a runtime is built
 * from scratch; when one is derived, only those of new bindings and of the certificates
 * whose response changed, the rest shared with the old runtime. A response is a small
 * local file (at most CB_STORE_OCSP_MAX bytes, read in one open and one read), and a
 * change reads only the changed ones, which is why this runs where the runtime is built
 * (on the loop for a change, on the thread pool for a full read) as the certificates'
 * own stat() calls do, rather than on a thread of its own.
 */
#ifndef CB_DAEMON_STAPLES_BUILD_H
#define CB_DAEMON_STAPLES_BUILD_H

#include "net/runtime.h"
#include "store/store.h"

/*
 * Fills rt->staples for rt's snapshot. old: the runtime rt is derived from (NULL: read
 * every response); src maps rt's bindings to old's (NULL: the same bindings, see
 * cb_snapshot_derive); changed (n_changed thumbprints, borrowed) are read again. A
 * response that cannot be read or has expired is left out (no staple; the manager
 * fetches another). CB_ENOMEM only.
 */
int cb_staples_build(struct cb_store *st, struct cb_runtime *rt, const struct cb_runtime *old,
                     const uint32_t *src, const char (*changed)[CB_THUMB_LEN + 1],
                     size_t n_changed) CB_MUST_CHECK;

#endif
