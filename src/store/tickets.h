/*
 * Session ticket keys (design/bindings.md sections 8 and 9): the keys every worker (and,
 * with a fleet store, every node) encrypts and decrypts TLS session tickets with, kept in
 * the store so that a client resumes on any worker, on any node and after a restart.
 * `serve`'s manager rotates them: a fresh key becomes current once the newest is older than
 * the period, and the two before it still decrypt. All access to the table is here.
 *
 * The store never makes key material itself (it does not link the TLS library): the caller
 * passes the fresh key's bytes in. A key is CB_TICKET_KEY_LEN bytes laid out as OpenSSL's
 * own ticket keys are: a 16-byte name (sent in every ticket, not secret), a 32-byte HMAC
 * key and a 32-byte AES key. Copies in memory are cleansed with cb_ticket_keys_clear.
 */
#ifndef CB_STORE_TICKETS_H
#define CB_STORE_TICKETS_H

#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>

#define CB_TICKET_KEY_LEN 80
#define CB_TICKET_KEY_NAME_LEN 16
#define CB_TICKET_KEYS_KEPT 3 /* the current key and the two previous ones */

struct cb_ticket_key {
    int64_t id;      /* grows by one with each key made: the key's generation */
    int64_t created; /* seconds since the epoch */
    unsigned char key[CB_TICKET_KEY_LEN];
};

/* The keys the store holds, newest first. */
struct cb_ticket_keys {
    struct cb_ticket_key v[CB_TICKET_KEYS_KEPT];
    size_t n;
};

/*
 * Reads the keys, newest first (at most CB_TICKET_KEYS_KEPT; a row of another length is
 * skipped: no client could have a ticket from it). *out is written only on success; n is 0
 * when there is none yet. Errors: CB_EBUSY, CB_ESTORE, CB_EIO.
 */
int cb_store_ticket_keys_load(struct cb_store *st, struct cb_ticket_keys *out,
                              struct cb_err *err) CB_MUST_CHECK;

/* Whether a rotation is due at `now` (epoch seconds) for a period of period_s seconds: there
 * is no key, the newest was made period_s or more ago, or it is dated period_s or more ahead
 * of now (the clock was set back). Reads only. */
int cb_store_ticket_keys_due(struct cb_store *st, int64_t now, int64_t period_s, bool *due,
                             struct cb_err *err) CB_MUST_CHECK;

/*
 * Rotates inside the caller's transaction (cb_store_begin ... cb_store_commit): when a
 * rotation is due (as cb_store_ticket_keys_due, looked at again inside the transaction, so
 * that of two processes racing only the first adds a key), adds `fresh` (borrowed,
 * CB_TICKET_KEY_LEN bytes) made at `now`, deletes all but the newest CB_TICKET_KEYS_KEPT,
 * and records the change so that workers load the keys again without a rebuild of the
 * bindings. *rotated says whether it did; *generation (may be NULL) gets the newest key's id
 * either way. Not due: nothing is written. Errors: CB_EINVAL (not in a transaction, period
 * not positive), CB_EBUSY, CB_ESTORE, CB_EIO, CB_EPERM.
 */
int cb_store_ticket_keys_rotate(struct cb_store *st, int64_t now, int64_t period_s,
                                const unsigned char fresh[CB_TICKET_KEY_LEN], bool *rotated,
                                int64_t *generation, struct cb_err *err) CB_MUST_CHECK;

/* Cleanses the key bytes of k. */
void cb_ticket_keys_clear(struct cb_ticket_keys *k);

#endif
