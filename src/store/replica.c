/*
 * replica.c: what a fleet replica needs from the store (store/replica.h): the dirty set
 * (through SQLite's pre-update hook), the commit hook, generic rows of the replicated
 * tables, and the replica's bookkeeping tables.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct row_table {
    const char *name, *key;
};
static const struct row_table row_tables[] = {
    {"bindings", "key"},   {"certs", "thumbprint"}, {"meta", "name"},      {"acme_account", "id"},
    {"acme_state", "key"}, {"challenges", "name"},  {"ticket_keys", "id"},
};

static const struct row_table *find_table(const char *name)
{
    for (size_t i = 0; i < sizeof(row_tables) / sizeof(row_tables[0]); i++)
        if (strcmp(row_tables[i].name, name) == 0)
            return &row_tables[i];
    return NULL;
}

bool cb_store_row_table(const char *table)
{
    return find_table(table) != NULL;
}

/* ---- the dirty set ---- */

void cb_store__dirty_clear(struct cb_store *st)
{
    for (size_t i = 0; i < st->dirty.n; i++) {
        free(st->dirty.v[i].table);
        free(st->dirty.v[i].key);
    }
    free(st->dirty.v);
    memset(&st->dirty, 0, sizeof(st->dirty));
}

static void dirty_add(struct cb_store *st, const char *table, sqlite3_value *key)
{
    struct cb_store_dirty_set *d = &st->dirty;
    const unsigned char *text = sqlite3_value_text(key);

    if (text == NULL)
        return;
    /* A statement touching the same row twice in a row is common (UPDATE: old and new). */
    if (d->n > 0 && strcmp(d->v[d->n - 1].table, table) == 0 &&
        strcmp(d->v[d->n - 1].key, (const char *)text) == 0)
        return;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 16;
        struct cb_store_dirty *nv = realloc(d->v, cap * sizeof(*nv));
        if (nv == NULL) {
            d->failed = true;
            return;
        }
        d->v = nv;
        d->cap = cap;
    }
    d->v[d->n].table = strdup(table);
    d->v[d->n].key = strdup((const char *)text);
    if (d->v[d->n].table == NULL || d->v[d->n].key == NULL) {
        free(d->v[d->n].table);
        free(d->v[d->n].key);
        d->failed = true;
        return;
    }
    d->n++;
}

static void on_preupdate(void *ctx, sqlite3 *db, int op, const char *db_name, const char *table,
                         sqlite3_int64 key1, sqlite3_int64 key2)
{
    struct cb_store *st = ctx;
    sqlite3_value *v;

    (void)key1;
    (void)key2;
    if (st->hook == NULL || st->applying || st->in_hook || strcmp(db_name, "main") != 0)
        return;
    /* A certificate's names change with its row: they count as that row. */
    const char *as = strcmp(table, "cert_names") == 0 ? "certs" : table;
    if (find_table(as) == NULL)
        return;
    if ((op == SQLITE_DELETE || op == SQLITE_UPDATE) &&
        sqlite3_preupdate_old(db, 0, &v) == SQLITE_OK)
        dirty_add(st, as, v);
    if ((op == SQLITE_INSERT || op == SQLITE_UPDATE) &&
        sqlite3_preupdate_new(db, 0, &v) == SQLITE_OK)
        dirty_add(st, as, v);
}

void cb_store__track(struct cb_store *st)
{
    sqlite3_preupdate_hook(st->db, on_preupdate, st);
}

void cb_store_set_commit_hook(struct cb_store *st, cb_store_commit_hook fn, void *ctx)
{
    st->hook = fn;
    st->hook_ctx = ctx;
}

void cb_store_set_applying(struct cb_store *st, bool on)
{
    st->applying = on;
}

int cb_store__run_hook(struct cb_store *st, struct cb_err *err)
{
    int ret;

    if (st->hook == NULL || st->applying)
        return 0;
    if (st->dirty.failed)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    if (st->dirty.n == 0)
        return 0;
    st->in_hook = true;
    ret = st->hook(st, st->dirty.v, st->dirty.n, st->hook_ctx, err);
    st->in_hook = false;
    return ret;
}

/* ---- generic rows ---- */

void cb_store_row_clear(struct cb_store_row *row)
{
    if (row == NULL)
        return;
    for (size_t i = 0; i < row->n; i++) {
        free(row->c[i].name);
        free(row->c[i].p);
    }
    free(row->c);
    memset(row, 0, sizeof(*row));
}

int cb_store_row_add(struct cb_store_row *row, const char *name, enum cb_store_col_type type,
                     int64_t i, const void *p, size_t len)
{
    struct cb_store_col *nc = realloc(row->c, (row->n + 1) * sizeof(*nc));
    if (nc == NULL)
        return CB_ENOMEM;
    row->c = nc;
    struct cb_store_col *c = &row->c[row->n];
    memset(c, 0, sizeof(*c));
    c->type = type;
    c->i = i;
    if ((c->name = strdup(name)) == NULL)
        return CB_ENOMEM;
    if (type == CB_STORE_COL_TEXT || type == CB_STORE_COL_BLOB) {
        if ((c->p = malloc(len + 1)) == NULL) {
            free(c->name);
            return CB_ENOMEM;
        }
        if (len > 0)
            memcpy(c->p, p, len);
        c->p[len] = '\0';
        c->len = len;
    }
    row->n++;
    return 0;
}

const struct cb_store_col *cb_store_row_col(const struct cb_store_row *row, const char *name)
{
    for (size_t i = 0; i < row->n; i++)
        if (strcmp(row->c[i].name, name) == 0)
            return &row->c[i];
    return NULL;
}

static int no_table(const char *table, struct cb_err *err)
{
    return cb_err_set(err, CB_EINVAL, "'%s' is not a replicated table", table);
}

int cb_store_row_get(struct cb_store *st, const char *table, const char *key,
                     struct cb_store_row *out, struct cb_err *err)
{
    const struct row_table *t = find_table(table);
    char sql[128];
    sqlite3_stmt *stmt;
    int ret = 0, rc;

    memset(out, 0, sizeof(*out));
    if (t == NULL)
        return no_table(table, err);
    snprintf(sql, sizeof(sql), "SELECT * FROM %s WHERE %s = ?1", t->name, t->key);
    if ((ret = cb_store__prepare(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        ret = cb_err_set(err, CB_ENOENT, "no row %s in %s", key, table);
        goto out_finalize;
    }
    if (rc != SQLITE_ROW) {
        ret = cb_store__db_error(st, err, rc, "reading a row");
        goto out_finalize;
    }
    for (int i = 0; i < sqlite3_column_count(stmt) && ret == 0; i++) {
        const char *name = sqlite3_column_name(stmt, i);
        switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_INTEGER:
            ret = cb_store_row_add(out, name, CB_STORE_COL_INT, sqlite3_column_int64(stmt, i), NULL,
                                   0);
            break;
        case SQLITE_BLOB:
            ret = cb_store_row_add(out, name, CB_STORE_COL_BLOB, 0, sqlite3_column_blob(stmt, i),
                                   (size_t)sqlite3_column_bytes(stmt, i));
            break;
        case SQLITE_NULL:
            ret = cb_store_row_add(out, name, CB_STORE_COL_NULL, 0, NULL, 0);
            break;
        default: /* TEXT, and REAL as its text */
            ret = cb_store_row_add(out, name, CB_STORE_COL_TEXT, 0, sqlite3_column_text(stmt, i),
                                   (size_t)sqlite3_column_bytes(stmt, i));
            break;
        }
    }
    if (ret != 0) {
        cb_store_row_clear(out);
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
    }
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

/* Whether table has a column `name` (a newer node's rows may carry more). */
static int has_column(struct cb_store *st, const char *table, const char *name, bool *yes,
                      struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    *yes = false;
    if ((ret = cb_store__prepare(st, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", &stmt,
                                 err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    *yes = rc == SQLITE_ROW;
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE
               ? 0
               : cb_store__db_error(st, err, rc, "reading the schema");
}

/* The change log's record of a row that workers follow. */
static int record(struct cb_store *st, const char *table, const char *key, struct cb_err *err)
{
    char mark[CB_NAME_MAX + sizeof(CB_STORE_CHANGE_CHALLENGE) + 1];

    if (strcmp(table, "bindings") == 0)
        return cb_store__record_change(st, key, err);
    if (strcmp(table, "challenges") == 0) {
        snprintf(mark, sizeof(mark), "%s%s", CB_STORE_CHANGE_CHALLENGE, key);
        return cb_store__record_change(st, mark, err);
    }
    /* Ticket keys another node rotated: workers load them as they load their own node's. */
    if (strcmp(table, "ticket_keys") == 0) {
        snprintf(mark, sizeof(mark), "%s%s", CB_STORE_CHANGE_TICKETS, key);
        return cb_store__record_change(st, mark, err);
    }
    return 0;
}

int cb_store_row_put(struct cb_store *st, const char *table, const struct cb_store_row *row,
                     struct cb_err *err)
{
    const struct row_table *t = find_table(table);
    const struct cb_store_col *key;
    char *cols = NULL, *vals = NULL, *sets = NULL, *sql = NULL;
    size_t cl = 0, vl = 0, sl = 0;
    FILE *fc = NULL, *fv = NULL, *fs = NULL;
    sqlite3_stmt *stmt = NULL;
    int ret = 0, rc, n = 0;
    int *bound = NULL;

    if (t == NULL)
        return no_table(table, err);
    if ((key = cb_store_row_col(row, t->key)) == NULL || key->type == CB_STORE_COL_NULL)
        return cb_err_set(err, CB_EINVAL, "a %s row without its %s", table, t->key);
    if ((bound = calloc(row->n + 1, sizeof(*bound))) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    fc = open_memstream(&cols, &cl);
    fv = open_memstream(&vals, &vl);
    fs = open_memstream(&sets, &sl);
    if (fc == NULL || fv == NULL || fs == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < row->n; i++) {
        bool yes;
        const char *name = row->c[i].name;
        /* Names come from the schema itself (checked), quoted all the same. */
        if (strchr(name, '"') != NULL)
            continue;
        if ((ret = has_column(st, table, name, &yes, err)) != 0)
            goto out_free;
        if (!yes)
            continue;
        fprintf(fc, "%s\"%s\"", n ? ", " : "", name);
        fprintf(fv, "%s?%d", n ? ", " : "", n + 1);
        if (strcmp(name, t->key) != 0)
            fprintf(fs, "%s\"%s\" = excluded.\"%s\"", ftell(fs) > 0 ? ", " : "", name, name);
        bound[n++] = (int)i;
    }
    fclose(fc);
    fclose(fv);
    fclose(fs);
    fc = fv = fs = NULL;
    size_t len = strlen(table) + strlen(cols) + strlen(vals) + strlen(sets) + strlen(t->key) + 96;
    if ((sql = malloc(len)) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    if (sets[0] != '\0')
        snprintf(sql, len, "INSERT INTO %s(%s) VALUES(%s) ON CONFLICT(%s) DO UPDATE SET %s", table,
                 cols, vals, t->key, sets);
    else
        snprintf(sql, len, "INSERT INTO %s(%s) VALUES(%s) ON CONFLICT(%s) DO NOTHING", table, cols,
                 vals, t->key);
    if ((ret = cb_store__prepare(st, sql, &stmt, err)) != 0)
        goto out_free;
    for (int j = 0; j < n; j++) {
        const struct cb_store_col *c = &row->c[bound[j]];
        switch (c->type) {
        case CB_STORE_COL_INT:
            sqlite3_bind_int64(stmt, j + 1, c->i);
            break;
        case CB_STORE_COL_TEXT:
            sqlite3_bind_text(stmt, j + 1, (const char *)c->p, (int)c->len, SQLITE_STATIC);
            break;
        case CB_STORE_COL_BLOB:
            sqlite3_bind_blob(stmt, j + 1, c->p, (int)c->len, SQLITE_STATIC);
            break;
        case CB_STORE_COL_NULL:
            sqlite3_bind_null(stmt, j + 1);
            break;
        }
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_CONSTRAINT || rc == SQLITE_MISMATCH)
        ret = cb_err_set(err, CB_EINVAL, "the %s row %s does not fit the table: %s", table,
                         key->p ? (const char *)key->p : "", sqlite3_errmsg(st->db));
    else if (rc != SQLITE_DONE)
        ret = cb_store__db_error(st, err, rc, "writing a row");
    else if (key->type == CB_STORE_COL_TEXT)
        ret = record(st, table, (const char *)key->p, err);
    else if (key->type == CB_STORE_COL_INT) { /* ticket_keys: workers must load them too */
        char id[24];
        snprintf(id, sizeof(id), "%lld", (long long)key->i);
        ret = record(st, table, id, err);
    }
out_free:
    if (fc != NULL)
        fclose(fc);
    if (fv != NULL)
        fclose(fv);
    if (fs != NULL)
        fclose(fs);
    sqlite3_finalize(stmt);
    free(cols);
    free(vals);
    free(sets);
    free(sql);
    free(bound);
    return ret;
}

int cb_store_row_delete(struct cb_store *st, const char *table, const char *key, struct cb_err *err)
{
    const struct row_table *t = find_table(table);
    char sql[128];
    sqlite3_stmt *stmt;
    int ret, rc;

    if (t == NULL)
        return no_table(table, err);
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE %s = ?1", t->name, t->key);
    if ((ret = cb_store__prepare(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return cb_store__db_error(st, err, rc, "deleting a row");
    return sqlite3_changes(st->db) > 0 ? record(st, table, key, err) : 0;
}

int cb_store_row_keys(struct cb_store *st, const char *table, cb_store_key_fn fn, void *ctx,
                      struct cb_err *err)
{
    const struct row_table *t = find_table(table);
    char sql[128];
    sqlite3_stmt *stmt;
    int ret, rc;

    if (t == NULL)
        return no_table(table, err);
    snprintf(sql, sizeof(sql), "SELECT %s FROM %s ORDER BY %s", t->key, t->name, t->key);
    if ((ret = cb_store__prepare(st, sql, &stmt, err)) != 0)
        return ret;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        if ((ret = fn(cb_store__col_text(stmt, 0), ctx)) != 0)
            goto out_finalize;
    if (rc != SQLITE_DONE)
        ret = cb_store__db_error(st, err, rc, "listing rows");
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

/* ---- the replica's bookkeeping ---- */

int cb_store_replica_get(struct cb_store *st, struct cb_store_replica *out, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    memset(out, 0, sizeof(*out));
    if ((ret = cb_store__prepare(st, "SELECT revision, synced_at, url FROM fleet_state", &stmt,
                                 err)) != 0)
        return ret;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        out->revision = sqlite3_column_int64(stmt, 0);
        out->synced_at = sqlite3_column_int64(stmt, 1);
        snprintf(out->url, sizeof(out->url), "%s", cb_store__col_text(stmt, 2));
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE
               ? 0
               : cb_store__db_error(st, err, rc, "reading the replica's state");
}

int cb_store_replica_set(struct cb_store *st, const struct cb_store_replica *in, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st, "INSERT OR REPLACE INTO fleet_state VALUES(1, ?1, ?2, ?3)",
                                 &stmt, err)) != 0)
        return ret;
    sqlite3_bind_int64(stmt, 1, in->revision);
    sqlite3_bind_int64(stmt, 2, in->synced_at);
    sqlite3_bind_text(stmt, 3, in->url, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : cb_store__db_error(st, err, rc, "writing the replica's state");
}

int cb_store_replica_key_rev(struct cb_store *st, const char *key, int64_t *mod_rev,
                             struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    *mod_rev = 0;
    if ((ret = cb_store__prepare(st, "SELECT mod_rev FROM fleet_keys WHERE key = ?1", &stmt,
                                 err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *mod_rev = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE
               ? 0
               : cb_store__db_error(st, err, rc, "reading the replica's keys");
}

int cb_store_replica_key_set(struct cb_store *st, const char *key, int64_t mod_rev,
                             struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st,
                                 mod_rev != 0 ? "INSERT OR REPLACE INTO fleet_keys VALUES(?1, ?2)"
                                              : "DELETE FROM fleet_keys WHERE key = ?1",
                                 &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    if (mod_rev != 0)
        sqlite3_bind_int64(stmt, 2, mod_rev);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : cb_store__db_error(st, err, rc, "writing the replica's keys");
}

int cb_store_replica_keys(struct cb_store *st, cb_store_replica_key_fn fn, void *ctx,
                          struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st, "SELECT key, mod_rev FROM fleet_keys ORDER BY key", &stmt,
                                 err)) != 0)
        return ret;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        if ((ret = fn(cb_store__col_text(stmt, 0), sqlite3_column_int64(stmt, 1), ctx)) != 0)
            goto out_finalize;
    if (rc != SQLITE_DONE)
        ret = cb_store__db_error(st, err, rc, "listing the replica's keys");
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

int cb_store_replica_keys_clear(struct cb_store *st, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st, "DELETE FROM fleet_keys", &stmt, err)) != 0)
        return ret;
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : cb_store__db_error(st, err, rc, "clearing the replica's keys");
}
