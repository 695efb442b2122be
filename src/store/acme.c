/*
 * acme.c: the ACME account and the managed bindings' state in the store (acme.h). A
 * binding is managed when its flags hold CB_OPT_ACME; its state row is optional (a
 * managed binding without one is pending) and its served certificate is its certhash.
 */
#include "store/acme.h"
#include "store/store_int.h"

#include <stdio.h>
#include <string.h>

const char *cb_acme_keytype_name(int keytype)
{
    return keytype == CB_ACME_KT_RSA ? "rsa" : "ecdsa";
}

const char *cb_acme_status_name(enum cb_acme_status s)
{
    switch (s) {
    case CB_ACME_PENDING:
        return "pending";
    case CB_ACME_VALID:
        return "valid";
    case CB_ACME_RENEWING:
        return "renewing";
    case CB_ACME_FAILED:
        return "failed";
    }
    return "?";
}

static void copy_text(char *out, size_t size, const char *in)
{
    snprintf(out, size, "%s", in);
}

int cb_store_acme_settings_get(struct cb_store *st, struct cb_acme_settings *out,
                               struct cb_err *err)
{
    struct cb_acme_settings s;
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st,
                                 "SELECT directory, email, agreetos, cafile, eab_kid, eab_hmac, "
                                 "dnshook, keytype, account_url, account_key_path "
                                 "FROM acme_account WHERE id = 1",
                                 &stmt, err)) != 0)
        return ret;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        memset(&s, 0, sizeof(s));
        copy_text(s.directory, sizeof(s.directory), cb_store__col_text(stmt, 0));
        copy_text(s.email, sizeof(s.email), cb_store__col_text(stmt, 1));
        s.agreetos = sqlite3_column_int(stmt, 2) != 0;
        copy_text(s.cafile, sizeof(s.cafile), cb_store__col_text(stmt, 3));
        copy_text(s.eab_kid, sizeof(s.eab_kid), cb_store__col_text(stmt, 4));
        copy_text(s.eab_hmac, sizeof(s.eab_hmac), cb_store__col_text(stmt, 5));
        copy_text(s.dnshook, sizeof(s.dnshook), cb_store__col_text(stmt, 6));
        s.keytype =
            sqlite3_column_int(stmt, 7) == CB_ACME_KT_RSA ? CB_ACME_KT_RSA : CB_ACME_KT_ECDSA;
        copy_text(s.account_url, sizeof(s.account_url), cb_store__col_text(stmt, 8));
        copy_text(s.account_key_path, sizeof(s.account_key_path), cb_store__col_text(stmt, 9));
        *out = s;
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = cb_err_set(err, CB_ENOENT,
                         "no ACME account is set; set the account first: certbind set acme "
                         "directory=URL email=ADDRESS");
    } else {
        ret = cb_store__db_error(st, err, rc, "reading the ACME account");
    }
    sqlite3_finalize(stmt);
    return ret;
}

int cb_store_acme_settings_put(struct cb_store *st, const struct cb_acme_settings *in,
                               struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st,
                                 "INSERT OR REPLACE INTO acme_account VALUES(1, ?1, ?2, ?3, ?4, "
                                 "?5, ?6, ?7, ?8, ?9, ?10)",
                                 &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, in->directory, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, in->email, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 3, in->agreetos ? 1 : 0);
    sqlite3_bind_text(stmt, 4, in->cafile, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, in->eab_kid, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 6, in->eab_hmac, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 7, in->dnshook, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 8, in->keytype == CB_ACME_KT_RSA ? CB_ACME_KT_RSA : CB_ACME_KT_ECDSA);
    sqlite3_bind_text(stmt, 9, in->account_url, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 10, in->account_key_path, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : cb_store__db_error(st, err, rc, "writing the ACME account");
}

/* A managed binding, its state (NULLs without a row) and its certificate's not_after. */
static const char state_columns[] =
    "SELECT b.key, b.certhash, s.status, s.not_after, s.renew_after, s.last_attempt, "
    "s.next_attempt, s.failures, s.last_error, s.renew_requested, s.renew_force, c.not_after "
    "FROM bindings b LEFT JOIN acme_state s ON s.key = b.key "
    "LEFT JOIN certs c ON c.thumbprint = b.certhash AND b.certhash <> '' "
    "WHERE (b.flags & ?1) <> 0";

static void state_from_stmt(sqlite3_stmt *stmt, struct cb_acme_state *s)
{
    memset(s, 0, sizeof(*s));
    copy_text(s->key, sizeof(s->key), cb_store__col_text(stmt, 0));
    copy_text(s->certhash, sizeof(s->certhash), cb_store__col_text(stmt, 1));
    int status = sqlite3_column_int(stmt, 2);
    s->status = status >= CB_ACME_PENDING && status <= CB_ACME_FAILED ? (enum cb_acme_status)status
                                                                      : CB_ACME_PENDING;
    s->not_after = sqlite3_column_int64(stmt, 3);
    if (s->not_after == 0)
        s->not_after = sqlite3_column_int64(stmt, 11);
    s->renew_after = sqlite3_column_int64(stmt, 4);
    s->last_attempt = sqlite3_column_int64(stmt, 5);
    s->next_attempt = sqlite3_column_int64(stmt, 6);
    int64_t failures = sqlite3_column_int64(stmt, 7);
    s->failures = failures > 0 && failures < (int64_t)UINT32_MAX ? (unsigned)failures : 0;
    copy_text(s->last_error, sizeof(s->last_error), cb_store__col_text(stmt, 8));
    s->renew_requested = sqlite3_column_int64(stmt, 9);
    s->renew_force = sqlite3_column_int(stmt, 10) != 0;
}

int cb_store_acme_state_foreach(struct cb_store *st, cb_acme_state_fn fn, void *ctx,
                                struct cb_err *err)
{
    char sql[sizeof(state_columns) + 32];
    struct cb_acme_state s;
    sqlite3_stmt *stmt;
    int ret, rc;

    snprintf(sql, sizeof(sql), "%s ORDER BY b.key", state_columns);
    if ((ret = cb_store__prepare(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_int64(stmt, 1, CB_OPT_ACME);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        state_from_stmt(stmt, &s);
        if ((ret = fn(&s, ctx)) != 0)
            goto out_finalize;
    }
    ret = rc == SQLITE_DONE ? 0 : cb_store__db_error(st, err, rc, "listing managed bindings");
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

/* CB_ENOENT with a message when key is not a binding, or not a managed one. */
static int not_managed(struct cb_store *st, const char *key, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st, "SELECT 1 FROM bindings WHERE key = ?1", &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return cb_err_set(err, CB_ENOENT,
                          "%s is not a managed binding (its certificate is set by hand); make it "
                          "one with 'certbind update sslcert %s acme=enable'",
                          key, key);
    if (rc == SQLITE_DONE)
        return cb_err_set(err, CB_ENOENT,
                          "no binding %s; list the managed bindings with 'certbind show acme'",
                          key);
    return cb_store__db_error(st, err, rc, "reading a binding");
}

int cb_store_acme_state_get(struct cb_store *st, const char *key, struct cb_acme_state *out,
                            struct cb_err *err)
{
    char sql[sizeof(state_columns) + 32];
    sqlite3_stmt *stmt;
    int ret, rc;

    snprintf(sql, sizeof(sql), "%s AND b.key = ?2", state_columns);
    if ((ret = cb_store__prepare(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_int64(stmt, 1, CB_OPT_ACME);
    sqlite3_bind_text(stmt, 2, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        state_from_stmt(stmt, out);
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = CB_ENOENT;
    } else {
        ret = cb_store__db_error(st, err, rc, "reading a managed binding");
    }
    sqlite3_finalize(stmt);
    return ret == CB_ENOENT ? not_managed(st, key, err) : ret;
}

static bool is_managed(struct cb_store *st, const char *key, int *ret, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if ((*ret = cb_store__prepare(st, "SELECT 1 FROM bindings WHERE key = ?1 AND (flags & ?2) <> 0",
                                  &stmt, err)) != 0)
        return false;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, CB_OPT_ACME);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return true;
    *ret = rc == SQLITE_DONE ? not_managed(st, key, err)
                             : cb_store__db_error(st, err, rc, "reading a binding");
    return false;
}

int cb_store_acme_state_put(struct cb_store *st, const struct cb_acme_state *s, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if (!is_managed(st, s->key, &ret, err))
        return ret;
    if ((ret = cb_store__prepare(st,
                                 "INSERT OR REPLACE INTO acme_state VALUES(?1, ?2, ?3, ?4, ?5, "
                                 "?6, ?7, ?8, ?9, ?10)",
                                 &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, s->key, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, (int)s->status);
    sqlite3_bind_int64(stmt, 3, s->not_after);
    sqlite3_bind_int64(stmt, 4, s->renew_after);
    sqlite3_bind_int64(stmt, 5, s->last_attempt);
    sqlite3_bind_int64(stmt, 6, s->next_attempt);
    sqlite3_bind_int64(stmt, 7, (sqlite3_int64)s->failures);
    sqlite3_bind_text(stmt, 8, s->last_error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 9, s->renew_requested);
    sqlite3_bind_int(stmt, 10, s->renew_force ? 1 : 0);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : cb_store__db_error(st, err, rc, "writing an ACME state");
}

int cb_store_acme_renew_request(struct cb_store *st, const char *key, bool force, int64_t now,
                                struct cb_err *err)
{
    /* A new row starts pending with zeros; an existing one keeps all but the request. */
    static const char sql[] =
        "INSERT INTO acme_state SELECT key, 0, 0, 0, 0, 0, 0, '', ?1, ?2 FROM bindings "
        "WHERE (flags & ?3) <> 0 AND (?4 IS NULL OR key = ?4) "
        "ON CONFLICT(key) DO UPDATE SET renew_requested = excluded.renew_requested, "
        "renew_force = excluded.renew_force";
    sqlite3_stmt *stmt;
    int ret, rc;

    if (key != NULL && !is_managed(st, key, &ret, err))
        return ret;
    if ((ret = cb_store__prepare(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_int(stmt, 2, force ? 1 : 0);
    sqlite3_bind_int64(stmt, 3, CB_OPT_ACME);
    if (key != NULL)
        sqlite3_bind_text(stmt, 4, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return cb_store__db_error(st, err, rc, "recording a renewal request");
    if (sqlite3_changes(st->db) == 0)
        return cb_err_set(err, CB_ENOENT,
                          "no managed binding to renew; add one with 'certbind add sslcert "
                          "hostnameport=NAME:PORT acme=enable'");
    return 0;
}

int cb_store__acme_state_drop(struct cb_store *st, const char *key, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare_cached(st, "DELETE FROM acme_state WHERE key = ?1", &stmt, err)) !=
        0)
        return ret;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    cb_store__release(st, stmt);
    return rc == SQLITE_DONE ? 0 : cb_store__db_error(st, err, rc, "forgetting an ACME state");
}
