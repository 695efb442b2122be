/*
 * Rotating the session ticket keys in the store (store/tickets.h): what `serve` runs once
 * before its workers start (so that they never run without a key) and then its manager on
 * every tick. Private to src/daemon.
 */
#ifndef CB_DAEMON_TICKET_ROTATE_H
#define CB_DAEMON_TICKET_ROTATE_H

#include "store/store.h"

#include <stdint.h>

#define CB_TICKET_PERIOD_DEFAULT_S (12 * 3600)

/*
 * When the newest key of st (borrowed) is period_s seconds old or more, or there is none:
 * makes a fresh key from the TLS library's random generator and rotates, in a write
 * transaction of its own (a process that raced it and rotated first leaves nothing to do),
 * logging `ticket_keys_rotated`. Not due: reads only. Errors: as cb_store_begin and
 * cb_store_ticket_keys_rotate, CB_ETLS (no random bytes).
 */
int cb_ticket_rotate(struct cb_store *st, int64_t period_s, struct cb_err *err) CB_MUST_CHECK;

#endif
