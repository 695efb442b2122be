/*
 * OCSP stapling's outbound half (design/bindings.md section 9), in the manager: for each
 * bound certificate that staples (a binding without disableocspstapling=enable) and
 * names an http OCSP responder, the response is fetched on libuv's thread pool: three at a
 * time, the next as soon as one ends, at most 500 started a second, each
 * bounded by daemon/ocsp_http.h's timeouts. The next due is a heap's top, so 10^6
 * certificates cost no pass per fetch; a certificate the store records as naming no
 * responder is never read. A response is checked against the certificate's issuer
 * (tls/ocsp.h), written to the cache (store/ocsp.h) and told to the workers with the
 * others of that second, in one commit. A cached response is refreshed at half its
 * validity (thisUpdate..nextUpdate); a failure is tried again after 1 minute, doubling to
 * 1 hour, with jitter, and logged when the reason changes rather than at every try. Only a
 * "good" answer is cached and stapled, as nginx does: "revoked" drops the cached response
 * (stapling an older "good" one would hide the revocation), "unknown" counts as a failure.
 */
#ifndef CB_DAEMON_OCSP_FETCH_H
#define CB_DAEMON_OCSP_FETCH_H

#include "store/store.h"

#include <uv.h>

struct cb_ocsp_fetcher;

/* An owned fetcher on loop (borrowed, as st; both outlive it). CB_ENOMEM. */
int cb_ocsp_fetcher_new(uv_loop_t *loop, struct cb_store *st, struct cb_ocsp_fetcher **out,
                        struct cb_err *err) CB_MUST_CHECK;
/* Looks at the bindings when the store changed (a change costs what it changed, a full
 * read only when the change log cannot tell), and starts what is due. Called every second
 * from the manager's loop. */
void cb_ocsp_fetcher_tick(struct cb_ocsp_fetcher *f);
/* Stops: a fetch under way gives up at once; none is started any more. */
void cb_ocsp_fetcher_stop(struct cb_ocsp_fetcher *f);
/* Frees f once its loop has run to the end (no fetch under way). NULL is a no-op. */
void cb_ocsp_fetcher_free(struct cb_ocsp_fetcher *f);

#endif
