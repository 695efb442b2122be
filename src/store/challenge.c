/*
 * challenge.c: the challenges table (store/challenge.h). Each put or delete is its own
 * transaction and leaves "challenge=NAME" in the change log beside the commit's marker,
 * so a worker applying the log learns that only the challenges changed.
 */
#include "store/challenge.h"
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The name as the table keys it; CB_EINVAL when it is not a host name. */
static int challenge_name(const char *name, char out[CB_NAME_MAX + 1], struct cb_err *err)
{
    struct cb_err why;

    if (name == NULL || cb_name_normalize(name, strlen(name), 0, out, &why) != 0)
        return cb_err_set(err, CB_EINVAL,
                          "a TLS-ALPN-01 challenge needs a host name (not a wildcard): %.300s",
                          name ? name : "(none)");
    return 0;
}

static int pem_ok(const char *pem, const char *what, struct cb_err *err)
{
    size_t n = pem != NULL ? strnlen(pem, CB_CHALLENGE_PEM_MAX + 1) : 0;

    if (n == 0 || n > CB_CHALLENGE_PEM_MAX || strstr(pem, "-----BEGIN ") == NULL)
        return cb_err_set(err, CB_EINVAL, "the challenge %s is not PEM text of at most %d bytes",
                          what, CB_CHALLENGE_PEM_MAX);
    return 0;
}

/* Runs one statement of the open transaction with name (and the rest) bound. */
static int step_done(struct cb_store *st, sqlite3_stmt *stmt, const char *what, struct cb_err *err)
{
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : cb_store__db_error(st, err, rc, what);
}

/* Leaves "challenge=NAME" in the change log of the open transaction. */
static int mark(struct cb_store *st, const char *name, struct cb_err *err)
{
    char key[sizeof(CB_STORE_CHANGE_CHALLENGE) + CB_NAME_MAX];
    snprintf(key, sizeof(key), "%s%s", CB_STORE_CHANGE_CHALLENGE, name);
    return cb_store__record_change(st, key, err);
}

static int not_in_tx(struct cb_store *st, struct cb_err *err)
{
    if (st->in_tx)
        return cb_err_set(err, CB_EINVAL,
                          "internal: a challenge is written in a transaction of its own");
    return 0;
}

int cb_store_challenge_put(struct cb_store *st, const char *name, const char *cert_pem,
                           const char *key_pem, int64_t expires, struct cb_err *err)
{
    char norm[CB_NAME_MAX + 1];
    sqlite3_stmt *stmt;
    int64_t now = (int64_t)time(NULL);
    int ret;

    if ((ret = not_in_tx(st, err)) != 0 || (ret = challenge_name(name, norm, err)) != 0 ||
        (ret = pem_ok(cert_pem, "certificate", err)) != 0 ||
        (ret = pem_ok(key_pem, "key", err)) != 0)
        return ret;
    if (expires <= now)
        return cb_err_set(err, CB_EINVAL, "the challenge for %s has expired already", norm);
    if ((ret = cb_store_begin(st, err)) != 0)
        return ret;
    if ((ret = cb_store__prepare(st, "DELETE FROM challenges WHERE expires <= ?1", &stmt, err)) !=
        0)
        goto out_rollback;
    sqlite3_bind_int64(stmt, 1, now);
    if ((ret = step_done(st, stmt, "dropping expired challenges", err)) != 0)
        goto out_rollback;
    if ((ret = cb_store__prepare(st, "INSERT OR REPLACE INTO challenges VALUES(?1, ?2, ?3, ?4)",
                                 &stmt, err)) != 0)
        goto out_rollback;
    sqlite3_bind_text(stmt, 1, norm, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, cert_pem, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, key_pem, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, expires);
    if ((ret = step_done(st, stmt, "writing a challenge", err)) != 0 ||
        (ret = mark(st, norm, err)) != 0)
        goto out_rollback;
    return cb_store_commit(st, err);
out_rollback:
    cb_store_rollback(st);
    return ret;
}

int cb_store_challenge_delete(struct cb_store *st, const char *name, struct cb_err *err)
{
    char norm[CB_NAME_MAX + 1];
    sqlite3_stmt *stmt;
    int ret;

    if ((ret = not_in_tx(st, err)) != 0 || (ret = challenge_name(name, norm, err)) != 0)
        return ret;
    if ((ret = cb_store_begin(st, err)) != 0)
        return ret;
    if ((ret = cb_store__prepare(st, "DELETE FROM challenges WHERE name = ?1", &stmt, err)) != 0)
        goto out_rollback;
    sqlite3_bind_text(stmt, 1, norm, -1, SQLITE_STATIC);
    if ((ret = step_done(st, stmt, "deleting a challenge", err)) != 0)
        goto out_rollback;
    if (sqlite3_changes(st->db) == 0) {
        cb_store_rollback(st); /* nothing to tell the workers: no commit, no new generation */
        return 0;
    }
    if ((ret = mark(st, norm, err)) != 0)
        goto out_rollback;
    return cb_store_commit(st, err);
out_rollback:
    cb_store_rollback(st);
    return ret;
}

static void challenge_clear(struct cb_challenge *c)
{
    if (c->key_pem != NULL)
        explicit_bzero(c->key_pem, strlen(c->key_pem));
    free(c->key_pem);
    free(c->cert_pem);
    c->key_pem = c->cert_pem = NULL;
}

void cb_challenges_free(struct cb_challenge *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        challenge_clear(&v[i]);
    free(v);
}

/* A copy of a text column (sqlite3_column_bytes long); NULL when out of memory. */
static char *col_dup(sqlite3_stmt *stmt, int i)
{
    const unsigned char *t = sqlite3_column_text(stmt, i);
    int n = sqlite3_column_bytes(stmt, i);
    char *s = t != NULL ? malloc((size_t)n + 1) : NULL;

    if (s != NULL) {
        memcpy(s, t, (size_t)n);
        s[n] = '\0';
    }
    return s;
}

int cb_store_challenges_load(struct cb_store *st, struct cb_challenge **out, size_t *n,
                             struct cb_err *err)
{
    struct cb_challenge *v = NULL;
    size_t count = 0, cap = 0;
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare(st,
                                 "SELECT name, cert_pem, key_pem, expires FROM challenges "
                                 "WHERE expires > ?1 ORDER BY name",
                                 &stmt, err)) != 0)
        return ret;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)time(NULL));
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(stmt, 0);
        if (name == NULL || strlen((const char *)name) > CB_NAME_MAX)
            continue; /* not a row this version wrote: no client can name it */
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            struct cb_challenge *nv = realloc(v, ncap * sizeof(*nv));
            if (nv == NULL)
                goto out_nomem;
            v = nv;
            cap = ncap;
        }
        struct cb_challenge *c = &v[count];
        memset(c, 0, sizeof(*c));
        memcpy(c->name, name, strlen((const char *)name) + 1);
        c->expires = sqlite3_column_int64(stmt, 3);
        c->cert_pem = col_dup(stmt, 1);
        c->key_pem = col_dup(stmt, 2);
        count++;
        if (c->cert_pem == NULL || c->key_pem == NULL)
            goto out_nomem;
    }
    if (rc != SQLITE_DONE) {
        ret = cb_store__db_error(st, err, rc, "reading the challenges");
        goto out_free;
    }
    sqlite3_finalize(stmt);
    *out = v;
    *n = count;
    return 0;
out_nomem:
    ret = cb_err_set(err, CB_ENOMEM, "out of memory");
out_free:
    sqlite3_finalize(stmt);
    cb_challenges_free(v, count);
    return ret;
}
