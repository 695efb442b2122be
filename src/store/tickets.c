/*
 * tickets.c: the ticket_keys table (store/tickets.h). A rotation is one INSERT and one
 * DELETE inside the caller's write transaction (BEGIN IMMEDIATE: one writer at a time), with
 * the newest key's age read again inside it, so that two processes rotating at once add one
 * key between them. It leaves "tickets=ID" in the change log: workers applying the log learn
 * that only the keys changed.
 */
#include "store/tickets.h"
#include "store/store_int.h"

#include <stdio.h>
#include <string.h>

void cb_ticket_keys_clear(struct cb_ticket_keys *k)
{
    explicit_bzero(k, sizeof(*k));
}

int cb_store_ticket_keys_load(struct cb_store *st, struct cb_ticket_keys *out, struct cb_err *err)
{
    struct cb_ticket_keys k = {.n = 0};
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st,
                                 "SELECT id, created, key FROM ticket_keys "
                                 "ORDER BY id DESC LIMIT ?1",
                                 &stmt, err)) != 0)
        return ret;
    sqlite3_bind_int(stmt, 1, CB_TICKET_KEYS_KEPT);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(stmt, 2);
        if (blob == NULL || sqlite3_column_bytes(stmt, 2) != CB_TICKET_KEY_LEN)
            continue; /* not a key this version wrote */
        struct cb_ticket_key *t = &k.v[k.n++];
        t->id = sqlite3_column_int64(stmt, 0);
        t->created = sqlite3_column_int64(stmt, 1);
        memcpy(t->key, blob, CB_TICKET_KEY_LEN);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        cb_ticket_keys_clear(&k);
        return cb_store__db_error(st, err, rc, "reading the session ticket keys");
    }
    *out = k;
    cb_ticket_keys_clear(&k);
    return 0;
}

/* The newest key's id and creation time; *id 0 when there is none. */
static int newest(struct cb_store *st, int64_t *id, int64_t *created, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st,
                                 "SELECT id, created FROM ticket_keys "
                                 "ORDER BY id DESC LIMIT 1",
                                 &stmt, err)) != 0)
        return ret;
    rc = sqlite3_step(stmt);
    *id = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
    *created = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 1) : 0;
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return cb_store__db_error(st, err, rc, "reading the session ticket keys");
    return 0;
}

/* Due: no key yet, the newest is a period old, or it is dated a period ahead of this clock
 * (the clock was set back: the key would otherwise serve until the clock caught up). */
static bool is_due(int64_t id, int64_t created, int64_t now, int64_t period_s)
{
    return id == 0 || now - created >= period_s || created - now >= period_s;
}

int cb_store_ticket_keys_due(struct cb_store *st, int64_t now, int64_t period_s, bool *due,
                             struct cb_err *err)
{
    int64_t id, created;
    int ret;

    if (period_s <= 0)
        return cb_err_set(err, CB_EINVAL, "the ticket key period must be positive");
    if ((ret = newest(st, &id, &created, err)) != 0)
        return ret;
    *due = is_due(id, created, now, period_s);
    return 0;
}

/* Runs one statement of the open transaction and finalizes it. */
static int step_done(struct cb_store *st, sqlite3_stmt *stmt, const char *what, struct cb_err *err)
{
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : cb_store__db_error(st, err, rc, what);
}

int cb_store_ticket_keys_rotate(struct cb_store *st, int64_t now, int64_t period_s,
                                const unsigned char fresh[CB_TICKET_KEY_LEN], bool *rotated,
                                int64_t *generation, struct cb_err *err)
{
    char mark[sizeof(CB_STORE_CHANGE_TICKETS) + 24];
    sqlite3_stmt *stmt;
    int64_t id, created;
    int ret;

    if (!st->in_tx)
        return cb_err_set(err, CB_EINVAL,
                          "internal: the ticket keys rotate inside the caller's transaction");
    if (period_s <= 0)
        return cb_err_set(err, CB_EINVAL, "the ticket key period must be positive");
    if ((ret = newest(st, &id, &created, err)) != 0)
        return ret;
    if (!is_due(id, created, now, period_s)) {
        *rotated = false;
        if (generation != NULL)
            *generation = id;
        return 0;
    }
    if ((ret =
             cb_store__prepare(st,
                               "INSERT INTO ticket_keys(id, key, created) "
                               "VALUES((SELECT coalesce(max(id), 0) + 1 FROM ticket_keys), ?1, ?2)",
                               &stmt, err)) != 0)
        return ret;
    sqlite3_bind_blob(stmt, 1, fresh, CB_TICKET_KEY_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, now);
    if ((ret = step_done(st, stmt, "adding a session ticket key", err)) != 0)
        return ret;
    id = sqlite3_last_insert_rowid(st->db);
    if ((ret = cb_store__prepare(st,
                                 "DELETE FROM ticket_keys WHERE id NOT IN (SELECT id FROM "
                                 "ticket_keys ORDER BY id DESC LIMIT ?1)",
                                 &stmt, err)) != 0)
        return ret;
    sqlite3_bind_int(stmt, 1, CB_TICKET_KEYS_KEPT);
    if ((ret = step_done(st, stmt, "dropping old session ticket keys", err)) != 0)
        return ret;
    snprintf(mark, sizeof(mark), "%s%lld", CB_STORE_CHANGE_TICKETS, (long long)id);
    if ((ret = cb_store__record_change(st, mark, err)) != 0)
        return ret;
    *rotated = true;
    if (generation != NULL)
        *generation = id;
    return 0;
}
