/*
 * store_int.h: what the files of the store share, private to src/store (never included
 * outside it): the store itself and the few calls every table's code needs.
 */
#ifndef CB_STORE_STORE_INT_H
#define CB_STORE_STORE_INT_H

#include "store/store.h"

#include <sqlite3.h>

struct cb_store {
    sqlite3 *db;
    char dir[CB_PATH_MAX + 1];
    bool in_tx;
};

/*
 * Change-log keys that are not binding keys: a commit that changed the pending
 * TLS-ALPN-01 challenges records "challenge=NAME". cb_store_changes_since reports them
 * as `challenges` (a certbind that predates them reads every binding again instead).
 */
#define CB_STORE_CHANGE_CHALLENGE "challenge="

/* An SQLite result code as a struct cb_err a person can act on; returns the CB_E* code. */
int cb_store__db_error(struct cb_store *st, struct cb_err *err, int rc,
                       const char *what) CB_MUST_CHECK;
/* Prepares sql on st's database; *stmt is owned (sqlite3_finalize). */
int cb_store__prepare(struct cb_store *st, const char *sql, sqlite3_stmt **stmt,
                      struct cb_err *err) CB_MUST_CHECK;
/* Notes in the change log that the open transaction changed `key` (borrowed). */
int cb_store__record_change(struct cb_store *st, const char *key, struct cb_err *err) CB_MUST_CHECK;

#endif
