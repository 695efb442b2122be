/* ticket_rotate.c: the session ticket keys rotated in the store (daemon/ticket_rotate.h). */
#include "daemon/ticket_rotate.h"
#include "store/tickets.h"
#include "tls/io.h"
#include "util/log.h"

#include <string.h>
#include <time.h>

int cb_ticket_rotate(struct cb_store *st, int64_t period_s, struct cb_err *err)
{
    unsigned char fresh[CB_TICKET_KEY_LEN];
    struct cb_ticket_keys k;
    int64_t now = (int64_t)time(NULL), generation = 0;
    bool due = false, rotated = false;
    size_t n_keys;
    int ret;

    /* Read first: this runs every second, and a write transaction would take the lock. */
    if ((ret = cb_store_ticket_keys_due(st, now, period_s, &due, err)) != 0 || !due)
        return ret;
    if (cb_tls_random(fresh, sizeof(fresh)) != 0)
        return cb_err_set(err, CB_ETLS,
                          "cannot make a session ticket key: the TLS library's random "
                          "generator failed");
    if ((ret = cb_store_begin(st, err)) != 0)
        goto out_cleanse;
    if ((ret = cb_store_ticket_keys_rotate(st, now, period_s, fresh, &rotated, &generation, err)) !=
            0 ||
        (ret = cb_store_ticket_keys_load(st, &k, err)) != 0)
        goto out_rollback;
    n_keys = k.n;
    cb_ticket_keys_clear(&k); /* only the count is logged, never a key */
    if (!rotated) {
        cb_store_rollback(st); /* another process rotated first: nothing to commit */
        goto out_cleanse;
    }
    if ((ret = cb_store_commit(st, err)) != 0)
        goto out_cleanse;
    cb_log("info", "ticket_keys_rotated", "keys=%zu generation=%lld period_s=%lld", n_keys,
           (long long)generation, (long long)period_s);
    goto out_cleanse;
out_rollback:
    cb_store_rollback(st);
out_cleanse:
    explicit_bzero(fresh, sizeof(fresh));
    return ret;
}
