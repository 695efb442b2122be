/* acme_policy.c: when a managed binding is due, the retry backoff, the renewal time. */
#include "daemon/acme_policy.h"

enum cb_acme_due cb_acme_due(const struct cb_acme_state *s, int64_t now, int64_t *when)
{
    bool have_cert = s->certhash[0] != '\0';
    int64_t due_at;

    *when = 0;
    if (s->status == CB_ACME_RENEWING)
        return CB_ACME_NOT_DUE; /* an attempt is under way (or was cut short: see below) */
    if (s->status == CB_ACME_FAILED || !have_cert)
        due_at = s->next_attempt; /* 0: never tried */
    else
        due_at = s->renew_after != 0 ? s->renew_after : now;
    if (s->renew_requested != 0) {
        if (s->renew_force || due_at <= now || !have_cert || s->status == CB_ACME_FAILED)
            return CB_ACME_DUE;
        return CB_ACME_DECLINE;
    }
    if (due_at <= now)
        return CB_ACME_DUE;
    *when = due_at;
    return CB_ACME_NOT_DUE;
}

int64_t cb_acme_next_attempt(unsigned failures, int64_t now, int64_t retry_after, uint32_t rnd)
{
    int64_t delay = CB_ACME_BACKOFF_FIRST_S;
    for (unsigned i = 1; i < failures && delay < CB_ACME_BACKOFF_MAX_S; i++)
        delay *= 2;
    if (delay > CB_ACME_BACKOFF_MAX_S)
        delay = CB_ACME_BACKOFF_MAX_S;
    /* ±10%: nodes and bindings that failed together do not all come back together. */
    int64_t spread = delay / 5;
    int64_t at = now + delay - delay / 10 + (spread > 0 ? (int64_t)(rnd % (uint64_t)spread) : 0);
    return retry_after > at ? retry_after : at;
}

int64_t cb_acme_renew_at(int64_t not_before, int64_t not_after, int64_t ari_start, int64_t ari_end,
                         uint32_t rnd)
{
    if (ari_end > ari_start)
        return ari_start + (int64_t)(rnd % (uint64_t)(ari_end - ari_start));
    if (not_after <= not_before)
        return not_after;
    return not_before + (not_after - not_before) * 2 / 3;
}
