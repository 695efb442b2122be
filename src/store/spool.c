/* spool.c: a sorted spool in a temporary table (spool.h). */
#include "store/spool.h"
#include "store/store_int.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SQLite's temporary page cache while a spool is open, and otherwise (its default): a spool
 * of 10^5 findings spills to its file at the default, and reads it back page by page. */
#define SPOOL_CACHE "PRAGMA temp.cache_size=-16384"
#define DEFAULT_CACHE "PRAGMA temp.cache_size=-2000"

/* A spool's tables live in SQLite's temporary file: a failure there is not the store's. */
static int spool_error(struct cb_store *st, struct cb_err *err, int rc, const char *what)
{
    if (rc == SQLITE_NOMEM)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    if (rc != SQLITE_CANTOPEN && rc != SQLITE_IOERR && rc != SQLITE_FULL)
        return cb_store__db_error(st, err, rc, "using a temporary table");
    return cb_err_set(err, CB_EIO,
                      "cannot %s a temporary file (%s): SQLite keeps it in the first folder of "
                      "$SQLITE_TMPDIR, $TMPDIR, /var/tmp, /usr/tmp and /tmp that exists; make "
                      "it writable, with free space, or point TMPDIR at such a folder",
                      what, sqlite3_errmsg(st->db));
}

struct cb_spool {
    struct cb_store *st; /* borrowed */
    char table[32];      /* temp.cb_spool_N */
    sqlite3_stmt *put;   /* owned */
    /* The walks, kept prepared (owned; NULL until first used): every record, those from a
     * prefix on, those from a prefix up to the key after it. */
    sqlite3_stmt *walk[3];
};

int cb_spool_open(struct cb_store *st, struct cb_spool **out, struct cb_err *err)
{
    struct cb_spool *sp = calloc(1, sizeof(*sp));
    char sql[160];
    int rc, ret;

    *out = NULL;
    if (sp == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    sp->st = st;
    if (st->spools_open++ == 0 && !st->batch)
        sqlite3_exec(st->db, SPOOL_CACHE, NULL, NULL, NULL); /* faster if it takes */
    snprintf(sp->table, sizeof(sp->table), "temp.cb_spool_%u", st->spools++);
    /* Ordered by the key itself: one B-tree to write, not a table and an index. */
    snprintf(sql, sizeof(sql),
             "CREATE TABLE %s(k BLOB PRIMARY KEY NOT NULL, v BLOB NOT NULL) WITHOUT ROWID",
             sp->table);
    if ((rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL)) != SQLITE_OK) {
        ret = spool_error(st, err, rc, "create");
        goto out_free;
    }
    snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO %s(k, v) VALUES(?1, ?2)", sp->table);
    if ((ret = cb_store__prepare(st, sql, &sp->put, err)) != 0) {
        cb_spool_close(sp);
        return ret;
    }
    *out = sp;
    return 0;
out_free:
    if (--st->spools_open == 0 && !st->batch)
        sqlite3_exec(st->db, DEFAULT_CACHE, NULL, NULL, NULL);
    free(sp);
    return ret;
}

void cb_spool_close(struct cb_spool *sp)
{
    char sql[64];

    if (sp == NULL)
        return;
    sqlite3_finalize(sp->put);
    for (int i = 0; i < 3; i++)
        sqlite3_finalize(sp->walk[i]);
    /* Inside a read (cb_store_read_begin), its end rolls the table back: a rollback puts back
     * the few pages the temporary file had, where a drop writes every page of the table to
     * its free list (at 10^6 records, a tenth of check's time). */
    if (!sp->st->reading) {
        snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", sp->table);
        sqlite3_exec(sp->st->db, sql, NULL, NULL, NULL);
    }
    if (--sp->st->spools_open == 0 && !sp->st->batch)
        sqlite3_exec(sp->st->db, DEFAULT_CACHE, NULL, NULL, NULL);
    free(sp);
}

int cb_spool_put(struct cb_spool *sp, const void *key, size_t klen, const void *val, size_t vlen,
                 struct cb_err *err)
{
    int rc;

    /* A zero-length blob from a NULL pointer would be SQL NULL: "" stands in. */
    sqlite3_bind_blob64(sp->put, 1, klen ? key : "", klen, SQLITE_STATIC);
    sqlite3_bind_blob64(sp->put, 2, vlen ? val : "", vlen, SQLITE_STATIC);
    rc = sqlite3_step(sp->put);
    sqlite3_reset(sp->put);
    sqlite3_clear_bindings(sp->put);
    return rc == SQLITE_DONE ? 0 : spool_error(sp->st, err, rc, "write");
}

/* The first key after every key that starts with p[0..n): p with its last byte that is not
 * 0xff increased and what follows dropped; its length, or 0 when there is none (all 0xff). */
static size_t prefix_end(const unsigned char *p, size_t n, unsigned char *out)
{
    while (n > 0 && p[n - 1] == 0xff)
        n--;
    if (n == 0)
        return 0;
    memcpy(out, p, n);
    out[n - 1]++;
    return n;
}

int cb_spool_foreach(struct cb_spool *sp, const void *prefix, size_t plen, size_t limit,
                     cb_spool_fn fn, void *ctx, struct cb_err *err)
{
    unsigned char *end = NULL;
    size_t elen = 0;
    int kind = 0;
    sqlite3_stmt *stmt = NULL;
    char sql[160];
    int ret = 0, rc;

    if (plen > 0) {
        if ((end = malloc(plen)) == NULL)
            return cb_err_set(err, CB_ENOMEM, "out of memory");
        elen = prefix_end(prefix, plen, end);
    }
    /* A walk inside a walk of the same kind (its statement busy) gets one of its own. */
    kind = plen == 0 ? 0 : elen == 0 ? 1 : 2;
    bool own = sp->walk[kind] != NULL && sqlite3_stmt_busy(sp->walk[kind]);
    if (own || sp->walk[kind] == NULL) {
        snprintf(sql, sizeof(sql), "SELECT k, v FROM %s%s%s ORDER BY k LIMIT ?3", sp->table,
                 kind > 0 ? " WHERE k >= ?1" : "", kind == 2 ? " AND k < ?2" : "");
        if ((ret = cb_store__prepare(sp->st, sql, &stmt, err)) != 0)
            goto out_free;
        if (!own)
            sp->walk[kind] = stmt;
    } else {
        stmt = sp->walk[kind];
    }
    if (plen > 0)
        sqlite3_bind_blob64(stmt, 1, prefix, plen, SQLITE_STATIC);
    if (elen > 0)
        sqlite3_bind_blob64(stmt, 2, end, elen, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, limit > 0 ? (sqlite3_int64)limit : -1);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if ((ret = fn(sqlite3_column_blob(stmt, 0), (size_t)sqlite3_column_bytes(stmt, 0),
                      sqlite3_column_blob(stmt, 1), (size_t)sqlite3_column_bytes(stmt, 1), ctx)) !=
            0)
            goto out_free;
    }
    if (rc != SQLITE_DONE)
        ret = spool_error(sp->st, err, rc, "read");
out_free:
    if (stmt != NULL && stmt == sp->walk[kind]) {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
    } else {
        sqlite3_finalize(stmt);
    }
    free(end);
    return ret;
}
