/*
 * What a store needs to be the replica of a fleet store (fleet/fleet.h), kept generic so
 * that the store never knows of etcd:
 * - the dirty set: every row a transaction inserts, updates or deletes, as (table, key),
 *   handed to a commit hook just before SQLite's COMMIT; the hook failing rolls back;
 * - an "applying" mode in which rows written (coming from the fleet) are not marked dirty;
 * - generic rows: a table's row as named, typed columns, read and written by its key, so
 *   rows travel between nodes whole, a damaged one included;
 * - the replica's own bookkeeping (schema 7): the revision last applied, the time of the
 *   last contact, the store URL it follows, and each fleet key's mod_revision.
 */
#ifndef CB_STORE_REPLICA_H
#define CB_STORE_REPLICA_H

#include "store/store.h"

/* One changed row: table (one of the replicated ones below; a certificate's names count as
 * its "certs" row) and the text of its key column. Owned by the store. */
struct cb_store_dirty {
    char *table;
    char *key;
};
/* Called by cb_store_commit before COMMIT when the transaction changed rows (the set may
 * hold one row more than once). The hook may read and write the store (its writes are not
 * marked dirty); a non-zero return rolls the transaction back and is returned by
 * cb_store_commit, err filled by the hook. */
typedef int (*cb_store_commit_hook)(struct cb_store *st, const struct cb_store_dirty *d, size_t n,
                                    void *ctx, struct cb_err *err);
/* fn NULL removes the hook. Rows are tracked only while a hook is set. */
void cb_store_set_commit_hook(struct cb_store *st, cb_store_commit_hook fn, void *ctx);
/* While on, rows written are not marked dirty (they come from the fleet). */
void cb_store_set_applying(struct cb_store *st, bool on);

/* The tables rows are tracked and read in, with their key column:
 * bindings(key), certs(thumbprint), meta(name), acme_account(id), acme_state(key),
 * challenges(name), ticket_keys(id). */
bool cb_store_row_table(const char *table);

enum cb_store_col_type {
    CB_STORE_COL_NULL,
    CB_STORE_COL_INT,
    CB_STORE_COL_TEXT,
    CB_STORE_COL_BLOB
};
struct cb_store_col {
    char *name; /* owned */
    enum cb_store_col_type type;
    int64_t i;        /* INT */
    unsigned char *p; /* TEXT, BLOB: owned, len bytes and a NUL */
    size_t len;
};
struct cb_store_row {
    struct cb_store_col *c; /* owned */
    size_t n;
};
void cb_store_row_clear(struct cb_store_row *row);
/* Adds a column (name and value copied). CB_ENOMEM. */
int cb_store_row_add(struct cb_store_row *row, const char *name, enum cb_store_col_type type,
                     int64_t i, const void *p, size_t len) CB_MUST_CHECK;
/* The column `name` of row, NULL when absent. */
const struct cb_store_col *cb_store_row_col(const struct cb_store_row *row, const char *name);

/* Row `key` of table (every column). CB_ENOENT when absent; fills *out (cb_store_row_clear). */
int cb_store_row_get(struct cb_store *st, const char *table, const char *key,
                     struct cb_store_row *out, struct cb_err *err) CB_MUST_CHECK;
/* Inserts or updates (by the key column, which the row must hold) inside the caller's
 * transaction; columns the table lacks are ignored (a newer node's), the ones the row lacks
 * keep their defaults. A binding or challenge change is recorded in the change log as a
 * command's is. CB_EINVAL (no key column, a value the table refuses), store errors. */
int cb_store_row_put(struct cb_store *st, const char *table, const struct cb_store_row *row,
                     struct cb_err *err) CB_MUST_CHECK;
/* Deletes row `key` (absent: nothing happens), recorded as cb_store_row_put does. */
int cb_store_row_delete(struct cb_store *st, const char *table, const char *key,
                        struct cb_err *err) CB_MUST_CHECK;
/* Calls fn with each key of table; fn borrows it; non-zero stops and is returned. */
typedef int (*cb_store_key_fn)(const char *key, void *ctx);
int cb_store_row_keys(struct cb_store *st, const char *table, cb_store_key_fn fn, void *ctx,
                      struct cb_err *err) CB_MUST_CHECK;

/* The replica's bookkeeping (fleet_state, fleet_keys). */
struct cb_store_replica {
    int64_t revision;  /* last etcd revision applied, 0: never */
    int64_t synced_at; /* epoch seconds of the last contact with etcd, 0: never */
    char url[512];     /* the store URL it follows ("" never) */
};
int cb_store_replica_get(struct cb_store *st, struct cb_store_replica *out,
                         struct cb_err *err) CB_MUST_CHECK;
int cb_store_replica_set(struct cb_store *st, const struct cb_store_replica *in,
                         struct cb_err *err) CB_MUST_CHECK;
/* A fleet key's mod_revision as last seen (0: not seen; negative: seen, and applied
 * without its secret for want of a store key). */
int cb_store_replica_key_rev(struct cb_store *st, const char *key, int64_t *mod_rev,
                             struct cb_err *err) CB_MUST_CHECK;
/* mod_rev 0 forgets the key. */
int cb_store_replica_key_set(struct cb_store *st, const char *key, int64_t mod_rev,
                             struct cb_err *err) CB_MUST_CHECK;
/* Every key seen, with its mod_revision; fn borrows key. Forgets every key when clear. */
typedef int (*cb_store_replica_key_fn)(const char *key, int64_t mod_rev, void *ctx);
int cb_store_replica_keys(struct cb_store *st, cb_store_replica_key_fn fn, void *ctx,
                          struct cb_err *err) CB_MUST_CHECK;
int cb_store_replica_keys_clear(struct cb_store *st, struct cb_err *err) CB_MUST_CHECK;

#endif
