/*
 * When serve orders a certificate for a managed binding, and when it tries again
 * (design/bindings.md section 7). Pure functions of the binding's state and the time,
 * so that the policy is tested without a CA.
 */
#ifndef CB_DAEMON_ACME_POLICY_H
#define CB_DAEMON_ACME_POLICY_H

#include "store/acme.h"

#include <stdbool.h>
#include <stdint.h>

#define CB_ACME_BACKOFF_FIRST_S 60  /* the first retry after a failure */
#define CB_ACME_BACKOFF_MAX_S 86400 /* doubling up to one day */

enum cb_acme_due {
    CB_ACME_NOT_DUE = 0,
    CB_ACME_DUE,     /* order now (no certificate yet, renewal due, retry due, or asked) */
    CB_ACME_DECLINE, /* `acme renew` asked, not forced, and nothing is due: clear it */
};

/*
 * What to do with managed binding s at time now. *when gets the time it will next be due
 * (0: as soon as something changes), so the caller can sleep until then.
 */
enum cb_acme_due cb_acme_due(const struct cb_acme_state *s, int64_t now, int64_t *when);

/* The next attempt after `failures` failures in a row (1 or more) that ended at now: 60 s
 * doubling to one day, each spread by up to ±10% with rnd (any 32 random bits), and never
 * before retry_after (the CA's Retry-After, 0: none). */
int64_t cb_acme_next_attempt(unsigned failures, int64_t now, int64_t retry_after, uint32_t rnd);

/*
 * When to renew a certificate valid from not_before to not_after: inside the CA's ACME
 * Renewal Information window [ari_start, ari_end) when it gave one (ari_end > ari_start),
 * at a point chosen with rnd; else at two thirds of its lifetime.
 */
int64_t cb_acme_renew_at(int64_t not_before, int64_t not_after, int64_t ari_start, int64_t ari_end,
                         uint32_t rnd);

#endif
