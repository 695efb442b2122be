/*
 * spool.h: records sorted by a byte key, kept in a temporary table of the store's
 * connection. Temporary tables are files (SQLite's temp_store default), so memory stays
 * within SQLite's page cache however many records there are: for work over every binding
 * or certificate of a store that must come out in an order of its own (check's findings).
 */
#ifndef CB_STORE_SPOOL_H
#define CB_STORE_SPOOL_H

#include "store/store.h"

struct cb_spool;

/* A new, empty spool on st's connection, which must outlive it. *out is owned: give it
 * back with cb_spool_close. Works on a store opened for reading too (the table is
 * temporary). */
int cb_spool_open(struct cb_store *st, struct cb_spool **out, struct cb_err *err) CB_MUST_CHECK;
/* Drops the spool's table and frees it. NULL is ignored. */
void cb_spool_close(struct cb_spool *sp);

/* Puts a record; one with the same key (memcmp) is replaced. Both are copied. */
int cb_spool_put(struct cb_spool *sp, const void *key, size_t klen, const void *val, size_t vlen,
                 struct cb_err *err) CB_MUST_CHECK;

/* Calls fn for each record whose key starts with prefix (plen 0: every record), in key
 * order (memcmp, a shorter key first), at most limit of them (0: all). fn borrows key and
 * val until it returns, and must not put into the same spool. A non-zero return from fn
 * stops the walk and is returned. */
typedef int (*cb_spool_fn)(const void *key, size_t klen, const void *val, size_t vlen, void *ctx);
int cb_spool_foreach(struct cb_spool *sp, const void *prefix, size_t plen, size_t limit,
                     cb_spool_fn fn, void *ctx, struct cb_err *err) CB_MUST_CHECK;

#endif
