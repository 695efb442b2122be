/*
 * Internal to src/store: the store handle and the SQLite helpers that the store's files
 * (store.c, acme.c) share. Nothing outside src/store includes this.
 */
#ifndef CB_STORE_STORE_INT_H
#define CB_STORE_STORE_INT_H

#include "store/replica.h"
#include "store/store.h"

/* Debian builds SQLite with it; the dirty set (store/replica.h) is read through it. */
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>

/* Paths to remove when the current transaction ends: `on_rollback` if it is rolled back
 * (files written for rows that never were), `after_commit` once it is committed (files
 * of rows it deleted). Owned strings. */
struct cb_store_paths {
    char **v;
    size_t n;
};

/* The rows the open transaction changed (store/replica.h). Owned entries. */
struct cb_store_dirty_set {
    struct cb_store_dirty *v;
    size_t n, cap;
    bool failed; /* out of memory while tracking: the commit fails */
};

#define CB_STORE_STMT_CACHE 24

struct cb_store {
    sqlite3 *db;
    char dir[CB_PATH_MAX + 1];
    bool in_tx;
    bool reading; /* the transaction is cb_store_read_begin's: it ends rolled back */
    struct cb_store_paths on_rollback, after_commit;
    cb_store_commit_hook hook;
    void *hook_ctx;
    bool applying, in_hook;
    struct cb_store_dirty_set dirty;
    /* A batch (cb_store_batch_begin) is open: the commands' own begin, commit and rollback
     * do nothing, and the files to remove are kept in the temporary table batch_paths
     * instead of the lists above, so that memory does not grow with the batch. */
    bool batch;
    /* The batch's file writer (batch_files.c): started by its first file, ended before
     * the batch commits or rolls back; the line its files are tagged with; the line of
     * the first file that could not be written (0: none). */
    struct cb_filewriter *writer;
    unsigned long batch_line, batch_failed_line;
    size_t tx_changes; /* rows the open transaction wrote to the change log */
    /* Statements kept prepared for the calls a batch makes once per line (see
     * cb_store__prepare_cached); finalized by cb_store_close. */
    sqlite3_stmt *cache[CB_STORE_STMT_CACHE];
    unsigned spools;      /* spools opened on this connection, for their tables' names (spool.c) */
    unsigned spools_open; /* and open now: while any is, the temporary cache is larger */
};

/* Tracks the rows each statement changes (installed at open; replica.c). */
void cb_store__track(struct cb_store *st);
/* Runs the commit hook on the dirty set (0 when none or nothing changed). */
int cb_store__run_hook(struct cb_store *st, struct cb_err *err) CB_MUST_CHECK;
void cb_store__dirty_clear(struct cb_store *st);
/* Waits for the batch's file writer and ends it (batch_files.c): the first file that could
 * not be written fails with err filled (its line kept), else 0. */
int cb_store__batch_files_end(struct cb_store *st, struct cb_err *err);

/* Prepares sql; a failure fills err as cb_store__db_error does. */
int cb_store__prepare(struct cb_store *st, const char *sql, sqlite3_stmt **stmt,
                      struct cb_err *err) CB_MUST_CHECK;
/* As cb_store__prepare, but the statement is kept for the next call with the same sql:
 * give it back with cb_store__release (not sqlite3_finalize). */
int cb_store__prepare_cached(struct cb_store *st, const char *sql, sqlite3_stmt **stmt,
                             struct cb_err *err) CB_MUST_CHECK;
/* Resets a statement of cb_store__prepare_cached for its next use (finalizes one the cache
 * had no room for). NULL is a no-op. */
void cb_store__release(struct cb_store *st, sqlite3_stmt *stmt);
/* Turns an SQLite result code into a CB_E* code and a message saying what to do. */
int cb_store__db_error(struct cb_store *st, struct cb_err *err, int rc, const char *what);
/* Text column as a C string, "" for NULL. */
const char *cb_store__col_text(sqlite3_stmt *stmt, int i);
/* Forgets the ACME state of binding key (deleted, or made manual again): acme.c. */
int cb_store__acme_state_drop(struct cb_store *st, const char *key,
                              struct cb_err *err) CB_MUST_CHECK;

/*
 * Change-log keys that are not binding keys: a commit that changed the pending
 * TLS-ALPN-01 challenges records "challenge=NAME". cb_store_changes_since reports them
 * as `challenges` (a certbind that predates them reads every binding again instead).
 */
#define CB_STORE_CHANGE_CHALLENGE "challenge="
/* A commit that cached or dropped a certificate's OCSP response (store/ocsp.h) records
 * "ocsp=THUMBPRINT"; cb_store_changes_since lists those thumbprints in `ocsp`. */
#define CB_STORE_CHANGE_OCSP "ocsp="
/* A commit that rotated the session ticket keys (store/tickets.h) records "tickets=ID";
 * cb_store_changes_since reports it as `tickets`. */
#define CB_STORE_CHANGE_TICKETS "tickets="
/* A commit that changed more bindings than a reader would apply one by one (a batch) ends
 * its rows with this key, which is no binding key: readers read every binding instead. */
#define CB_STORE_CHANGE_MANY "many="

/* Notes in the change log that the open transaction changed `key` (borrowed). */
int cb_store__record_change(struct cb_store *st, const char *key, struct cb_err *err) CB_MUST_CHECK;

#endif
