/*
 * store.c: the SQLite store. One database, certbind.db, in the state folder, with
 * certs/ and keys/ beside it. WAL mode so `serve` reads while a command writes;
 * BEGIN IMMEDIATE so two writers serialise (or the second is told to try again).
 */
#include "store/store_int.h"
#include "util/sysmem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE certs("
    "  thumbprint TEXT PRIMARY KEY, sha256 TEXT NOT NULL, subject TEXT NOT NULL,"
    "  not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, key_type TEXT NOT NULL,"
    "  chain_len INTEGER NOT NULL, cert_path TEXT NOT NULL, key_path TEXT NOT NULL,"
    "  added_at INTEGER NOT NULL);"
    "CREATE TABLE cert_names(thumbprint TEXT NOT NULL REFERENCES certs(thumbprint)"
    "  ON DELETE CASCADE, pos INTEGER NOT NULL, name TEXT NOT NULL,"
    "  PRIMARY KEY(thumbprint, pos));"
    "CREATE INDEX cert_names_name ON cert_names(name);"
    "CREATE TABLE bindings("
    "  key TEXT PRIMARY KEY, certhash TEXT NOT NULL, appid TEXT NOT NULL,"
    "  backend TEXT NOT NULL, ccspath TEXT NOT NULL, flags INTEGER NOT NULL,"
    "  proxy INTEGER NOT NULL);"
    "CREATE INDEX bindings_certhash ON bindings(certhash);"
    "INSERT INTO meta VALUES('generation', '0');",
    /* 1 -> 2: which binding keys each commit changed, so that `serve` can apply one
     * change without reading every binding again. Every commit leaves a row with an
     * empty key, so a generation without one (a store edited by other means) is seen
     * as unknown. The last CB_CHANGES_KEPT generations are kept. */
    "CREATE TABLE changes(generation INTEGER NOT NULL, key TEXT NOT NULL);"
    "CREATE INDEX changes_generation ON changes(generation);",
    /* 2 -> 3: ACME (design section 7). The one account of the store (a single row), the
     * state of each managed binding (a row appears with its first attempt or renewal
     * request, and goes with the binding or when it is made manual again; the certificate
     * it serves is the binding's certhash, never copied here), and which certificates
     * certbind obtained itself (those may be deleted once no binding uses them). */
    "CREATE TABLE acme_account(id INTEGER PRIMARY KEY CHECK(id = 1),"
    "  directory TEXT NOT NULL, email TEXT NOT NULL, agreetos INTEGER NOT NULL,"
    "  cafile TEXT NOT NULL, eab_kid TEXT NOT NULL, eab_hmac TEXT NOT NULL,"
    "  dnshook TEXT NOT NULL, keytype INTEGER NOT NULL, account_url TEXT NOT NULL,"
    "  account_key_path TEXT NOT NULL);"
    "CREATE TABLE acme_state(key TEXT PRIMARY KEY, status INTEGER NOT NULL,"
    "  not_after INTEGER NOT NULL, renew_after INTEGER NOT NULL,"
    "  last_attempt INTEGER NOT NULL, next_attempt INTEGER NOT NULL,"
    "  failures INTEGER NOT NULL, last_error TEXT NOT NULL,"
    "  renew_requested INTEGER NOT NULL, renew_force INTEGER NOT NULL);"
    "ALTER TABLE certs ADD COLUMN acme INTEGER NOT NULL DEFAULT 0;",
    /* 3 -> 4: pending TLS-ALPN-01 challenges (store/challenge.h), one per server name: the
     * challenge certificate and its throwaway key, PEM, until `expires` (epoch seconds). */
    "CREATE TABLE challenges(name TEXT PRIMARY KEY, cert_pem TEXT NOT NULL,"
    "  key_pem TEXT NOT NULL, expires INTEGER NOT NULL);",
    /* 4 -> 5 (design section 9): a binding's second certificate (certhash=T1,T2: one ECDSA,
     * one RSA; "" when it has one) and its client-certificate CA file (clientca=FILE, "" when
     * none). */
    "ALTER TABLE bindings ADD COLUMN certhash2 TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE bindings ADD COLUMN clientca TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX bindings_certhash2 ON bindings(certhash2);",
    /* 5 -> 6 (sections 8 and 9): the session ticket keys every worker and every fleet node
     * shares, newest first by `created` (epoch seconds); `key` holds the 80 bytes OpenSSL
     * takes (name, HMAC and AES keys). */
    "CREATE TABLE ticket_keys(id INTEGER PRIMARY KEY, key BLOB NOT NULL,"
    "  created INTEGER NOT NULL);",
    /* 6 -> 7 (section 8): a fleet replica's bookkeeping (store/replica.h): the etcd
     * revision last applied, the last contact, the store URL followed, and the
     * mod_revision of each fleet key as last seen. Unused without --store. */
    "CREATE TABLE fleet_state(id INTEGER PRIMARY KEY CHECK(id = 1),"
    "  revision INTEGER NOT NULL, synced_at INTEGER NOT NULL, url TEXT NOT NULL);"
    "CREATE TABLE fleet_keys(key TEXT PRIMARY KEY, mod_rev INTEGER NOT NULL);",
    /* 7 -> 8: whether a certificate names an http OCSP responder (enum cb_ocsp_url: 0 not
     * known, for the rows stored before; 1 none; 2 one), read at import, so that serve
     * learns it for 10^6 certificates from one query rather than 10^6 file reads. */
    "ALTER TABLE certs ADD COLUMN ocsp_url INTEGER NOT NULL DEFAULT 0;",
};

#define CB_CHANGES_KEPT 1000
#define CB_CHANGES_MAX 4096 /* beyond this many changed keys, a full read is cheaper */
#define CB_STR_(x) #x
#define CB_STR(x) CB_STR_(x)

#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))
_Static_assert(N_MIGRATIONS == CB_STORE_SCHEMA_VERSION, "one migration per schema version");

static int db_error(struct cb_store *st, struct cb_err *err, int rc, const char *what);
static int prepare(struct cb_store *st, const char *sql, sqlite3_stmt **stmt, struct cb_err *err);
static const char *col_text(sqlite3_stmt *stmt, int i);

int cb_store__db_error(struct cb_store *st, struct cb_err *err, int rc, const char *what)
{
    return db_error(st, err, rc, what);
}

int cb_store__prepare(struct cb_store *st, const char *sql, sqlite3_stmt **stmt, struct cb_err *err)
{
    return prepare(st, sql, stmt, err);
}

const char *cb_store__col_text(sqlite3_stmt *stmt, int i)
{
    return col_text(stmt, i);
}

static int db_error(struct cb_store *st, struct cb_err *err, int rc, const char *what)
{
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return cb_err_set(err, CB_EBUSY,
                          "the store in %s is busy (another certbind command is changing it); "
                          "try again",
                          st->dir);
    if (rc == SQLITE_READONLY || rc == SQLITE_CANTOPEN || rc == SQLITE_PERM)
        return cb_err_set(err, CB_EPERM,
                          "cannot write the store in %s (%s); run as root or as the owner of "
                          "the state folder",
                          st->dir, sqlite3_errmsg(st->db));
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
        return cb_err_set(err, CB_ESTORE,
                          "the store %s/certbind.db is damaged (%s); restore it from a backup",
                          st->dir, sqlite3_errmsg(st->db));
    if (rc == SQLITE_FULL || rc == SQLITE_IOERR)
        return cb_err_set(err, CB_EIO, "cannot write the store in %s (%s); check free disk space",
                          st->dir, sqlite3_errmsg(st->db));
    return cb_err_set(err, CB_ESTORE, "store error while %s: %s", what, sqlite3_errmsg(st->db));
}

static int exec(struct cb_store *st, const char *sql, struct cb_err *err)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_error(st, err, rc, "updating the schema");
}

static int prepare(struct cb_store *st, const char *sql, sqlite3_stmt **stmt, struct cb_err *err)
{
    int rc = sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL);
    return rc == SQLITE_OK ? 0 : db_error(st, err, rc, "preparing a query");
}

int cb_store__prepare_cached(struct cb_store *st, const char *sql, sqlite3_stmt **stmt,
                             struct cb_err *err)
{
    size_t free_slot = CB_STORE_STMT_CACHE;
    int rc;

    for (size_t i = 0; i < CB_STORE_STMT_CACHE; i++) {
        if (st->cache[i] == NULL) {
            if (free_slot == CB_STORE_STMT_CACHE)
                free_slot = i;
        } else if (strcmp(sqlite3_sql(st->cache[i]), sql) == 0) {
            *stmt = st->cache[i];
            return 0;
        }
    }
    rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL);
    if (rc != SQLITE_OK)
        return db_error(st, err, rc, "preparing a query");
    if (free_slot < CB_STORE_STMT_CACHE)
        st->cache[free_slot] = *stmt;
    return 0;
}

void cb_store__release(struct cb_store *st, sqlite3_stmt *stmt)
{
    if (stmt == NULL)
        return;
    for (size_t i = 0; i < CB_STORE_STMT_CACHE; i++) {
        if (st->cache[i] == stmt) {
            sqlite3_reset(stmt);
            sqlite3_clear_bindings(stmt);
            return;
        }
    }
    sqlite3_finalize(stmt);
}

static int migrate(struct cb_store *st, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int version, ret;

    if ((ret = prepare(st, "PRAGMA user_version", &stmt, err)) != 0)
        return ret;
    version = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    if (version < 0)
        return db_error(st, err, sqlite3_errcode(st->db), "reading the schema version");
    if (version > (int)N_MIGRATIONS)
        return cb_err_set(err, CB_ESTORE,
                          "the store in %s has schema version %d, newer than this certbind "
                          "knows (%d); upgrade certbind",
                          st->dir, version, (int)N_MIGRATIONS);
    if (version == (int)N_MIGRATIONS)
        return 0;
    if ((ret = cb_store_begin(st, err)) != 0)
        return ret;
    /* Re-read inside the write lock: another process may have migrated meanwhile. */
    if ((ret = prepare(st, "PRAGMA user_version", &stmt, err)) != 0)
        goto out_rollback;
    version = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
    sqlite3_finalize(stmt);
    for (; version < (int)N_MIGRATIONS; version++) {
        char pragma[64];
        if ((ret = exec(st, migrations[version], err)) != 0)
            goto out_rollback;
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d", version + 1);
        if ((ret = exec(st, pragma, err)) != 0)
            goto out_rollback;
    }
    return cb_store_commit(st, err);
out_rollback:
    cb_store_rollback(st);
    return ret;
}

/* SQLite's memory statistics off, once for the process before its first connection: with
 * them every allocation SQLite makes takes a global mutex (4% of a batch's thread at 10^6
 * pairs). certbind reads none of them. Refused (and harmless) once SQLite is in use. */
static pthread_once_t sqlite_config_once = PTHREAD_ONCE_INIT;

static void sqlite_config(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int cb_store_open(const char *dir, enum cb_store_mode mode, struct cb_store **out,
                  struct cb_err *err)
{
    struct cb_store *st;
    char path[CB_PATH_MAX + 32];
    struct stat sb;
    int ret, rc;

    if (strlen(dir) > CB_PATH_MAX - 64)
        return cb_err_set(err, CB_EINVAL, "state folder path too long: %s", dir);
    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT)
            return cb_err_set(err, errno == EACCES ? CB_EPERM : CB_EIO,
                              "cannot open the state folder %s: %s", dir, strerror(errno));
        if (mode == CB_STORE_READ)
            return cb_err_set(err, CB_ENOENT,
                              "no store in %s yet; add a certificate first ('certbind add cert "
                              "FILE') or pass --state DIR",
                              dir);
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return cb_err_set(err, errno == EACCES ? CB_EPERM : CB_EIO,
                              "cannot create the state folder %s: %s; create it or pass --state "
                              "DIR",
                              dir, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        return cb_err_set(err, CB_EIO, "state folder %s is not a folder; pass --state DIR", dir);
    } else if (sb.st_mode & (S_IWGRP | S_IRWXO)) {
        /* It holds private keys: only its owner (and root) may look in. */
        return cb_err_set(err, CB_EPERM,
                          "the state folder %s is open to other users (mode %03o); it holds "
                          "private keys: run chmod 700 %s",
                          dir, (unsigned)(sb.st_mode & 0777), dir);
    }
    if (mode == CB_STORE_WRITE) {
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof(path), "%s/%s", dir, i == 0 ? "certs" : "keys");
            if (mkdir(path, i == 0 ? 0755 : 0700) != 0 && errno != EEXIST)
                return cb_err_set(err, errno == EACCES ? CB_EPERM : CB_EIO, "cannot create %s: %s",
                                  path, strerror(errno));
        }
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    snprintf(st->dir, sizeof(st->dir), "%s", dir);
    snprintf(path, sizeof(path), "%s/certbind.db", dir);
    if (mode == CB_STORE_READ && access(path, F_OK) != 0) {
        ret = cb_err_set(err, CB_ENOENT,
                         "no store in %s yet; add a certificate first ('certbind add cert FILE') "
                         "or pass --state DIR",
                         dir);
        goto out_free;
    }
    pthread_once(&sqlite_config_once, sqlite_config);
    rc = sqlite3_open_v2(path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_EXRESCODE,
                         NULL);
    if (rc != SQLITE_OK) {
        ret = db_error(st, err, rc & 0xff, "opening the store");
        goto out_close;
    }
    sqlite3_busy_timeout(st->db, 5000);
    sqlite3_extended_result_codes(st->db, 0);
    if ((ret = exec(st,
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                    "PRAGMA foreign_keys=ON;",
                    err)) != 0)
        goto out_close;
    if ((ret = migrate(st, err)) != 0)
        goto out_close;
    cb_store__track(st);
    *out = st;
    return 0;
out_close:
    sqlite3_close(st->db);
out_free:
    free(st);
    return ret;
}

static void paths_clear(struct cb_store_paths *p, bool unlink_them)
{
    for (size_t i = 0; i < p->n; i++) {
        if (unlink_them)
            unlink(p->v[i]);
        free(p->v[i]);
    }
    free(p->v);
    p->v = NULL;
    p->n = 0;
}

/*
 * A batch keeps the files to remove in the temporary table batch_paths (temp_store: a file,
 * so memory stays flat however many certificates it adds), one row per path (relative to
 * the state folder) with bits:
 * WRITTEN (written for a row the batch adds: removed if it rolls back) and DELETED (of a row
 * the batch deletes: removed once it commits).
 */
#define BATCH_WRITTEN 1
#define BATCH_DELETED 2

/* path relative to the state folder (a pointer into path), or NULL for a path outside it.
 * batch_paths keys files so: a smaller table than full paths (a row a file, 2 a pair). */
static const char *owned_rel(const struct cb_store *st, const char *path)
{
    size_t n = strlen(st->dir);
    while (n > 1 && st->dir[n - 1] == '/')
        n--;
    if (strncmp(path, st->dir, n) != 0 || path[n] != '/')
        return NULL;
    while (path[n] == '/')
        n++;
    return path + n;
}

/* path: inside the state folder (paths_add). */
static int batch_path_add(struct cb_store *st, const char *path, int bit, struct cb_err *err)
{
    const char *rel = owned_rel(st, path);
    sqlite3_stmt *stmt;
    int ret, rc, have = 0;

    if (rel == NULL)
        return cb_err_set(err, CB_EINVAL, "internal: %s is outside the state folder", path);
    if ((ret = cb_store__prepare_cached(st,
                                        "INSERT INTO temp.batch_paths VALUES(?1, ?2) "
                                        "ON CONFLICT(path) DO NOTHING",
                                        &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, rel, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, bit);
    rc = sqlite3_step(stmt);
    cb_store__release(st, stmt);
    if (rc != SQLITE_DONE)
        return db_error(st, err, rc, "noting a file of the batch");
    if (sqlite3_changes(st->db) == 1)
        return 0;
    /* Met before in this batch. */
    if ((ret = prepare(st, "SELECT bits FROM temp.batch_paths WHERE path = ?1", &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, rel, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        have = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW)
        return db_error(st, err, rc, "noting a file of the batch");
    if (bit == BATCH_WRITTEN && !(have & BATCH_WRITTEN))
        return cb_err_set(err, CB_EINVAL,
                          "%s belongs to a certificate this batch deletes; a batch cannot delete "
                          "a certificate and add it back: add it again in a batch of its own",
                          path);
    /* Written again after it was deleted in this batch: it is wanted once more. */
    int bits = bit == BATCH_WRITTEN ? BATCH_WRITTEN : have | bit;
    if ((ret = prepare(st, "UPDATE temp.batch_paths SET bits = ?2 WHERE path = ?1", &stmt, err)) !=
        0)
        return ret;
    sqlite3_bind_text(stmt, 1, rel, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, bits);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : db_error(st, err, rc, "noting a file of the batch");
}

bool cb_store_batch_wrote(struct cb_store *st, const char *path)
{
    const char *rel = owned_rel(st, path);
    sqlite3_stmt *stmt;
    bool wrote = false;

    if (!st->batch || rel == NULL ||
        cb_store__prepare_cached(st, "SELECT bits FROM temp.batch_paths WHERE path = ?1", &stmt,
                                 NULL) != 0)
        return false;
    sqlite3_bind_text(stmt, 1, rel, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        wrote = (sqlite3_column_int(stmt, 0) & BATCH_WRITTEN) != 0;
    cb_store__release(st, stmt);
    return wrote;
}

/* Removes the batch's files that have `bit`. */
static void batch_paths_unlink(struct cb_store *st, int bit)
{
    sqlite3_stmt *stmt;

    if (sqlite3_prepare_v2(st->db, "SELECT path FROM temp.batch_paths WHERE bits & ?1", -1, &stmt,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int(stmt, 1, bit);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s/%s", st->dir, col_text(stmt, 0));
        if (n > 0 && (size_t)n < sizeof(path))
            unlink(path);
    }
    sqlite3_finalize(stmt);
}

static int paths_add(struct cb_store *st, struct cb_store_paths *p, const char *path,
                     struct cb_err *err)
{
    if (!cb_store_owns(st, path))
        return 0; /* files outside the state folder are their owner's */
    if (st->batch)
        return batch_path_add(st, path, p == &st->on_rollback ? BATCH_WRITTEN : BATCH_DELETED, err);
    char **nv = realloc(p->v, (p->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    p->v = nv;
    if ((p->v[p->n] = strdup(path)) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    p->n++;
    return 0;
}

int cb_store_unlink_on_rollback(struct cb_store *st, const char *path, struct cb_err *err)
{
    return paths_add(st, &st->on_rollback, path, err);
}

int cb_store_unlink_after_commit(struct cb_store *st, const char *path, struct cb_err *err)
{
    return paths_add(st, &st->after_commit, path, err);
}

void cb_store_close(struct cb_store *st)
{
    if (st == NULL)
        return;
    if (st->batch)
        cb_store_batch_rollback(st);
    if (st->in_tx)
        cb_store_rollback(st);
    paths_clear(&st->on_rollback, true);
    paths_clear(&st->after_commit, false);
    cb_store__dirty_clear(st);
    for (size_t i = 0; i < CB_STORE_STMT_CACHE; i++)
        sqlite3_finalize(st->cache[i]);
    sqlite3_close(st->db);
    free(st);
}

const char *cb_store_dir(const struct cb_store *st)
{
    return st->dir;
}

int cb_store_begin(struct cb_store *st, struct cb_err *err)
{
    if (st->batch)
        return 0; /* inside the batch's transaction */
    int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_error(st, err, rc, "starting a transaction");
    st->in_tx = true;
    st->tx_changes = 0;
    return 0;
}

/* Ends the open transaction with its change-log marker and the next generation; on failure
 * the transaction may still be open (the caller rolls it back). */
static int commit_tx(struct cb_store *st, struct cb_err *err)
{
    int ret = cb_store__run_hook(st, err);
    if (ret != 0)
        return ret;
    int rc = sqlite3_exec(st->db,
                          "INSERT INTO changes SELECT CAST(value AS INTEGER) + 1, '' FROM meta "
                          "WHERE name = 'generation';"
                          "DELETE FROM changes WHERE generation <= (SELECT CAST(value AS INTEGER) "
                          "FROM meta WHERE name = 'generation') + 1 - " CB_STR(
                              CB_CHANGES_KEPT) ";"
                                               "UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                                               "WHERE name = 'generation';"
                                               "INSERT OR REPLACE INTO meta VALUES('changed_at', "
                                               "CAST(strftime('%s', 'now') AS TEXT))",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_error(st, err, rc, "committing");
}

int cb_store_commit(struct cb_store *st, struct cb_err *err)
{
    if (st->batch)
        return 0; /* the batch commits everything at its end */
    int ret = commit_tx(st, err);
    if (ret != 0) {
        cb_store_rollback(st);
        return ret;
    }
    st->in_tx = false;
    cb_store__dirty_clear(st);
    paths_clear(&st->on_rollback, false);
    paths_clear(&st->after_commit, true);
    return 0;
}

void cb_store_rollback(struct cb_store *st)
{
    if (st->batch)
        return; /* a failed command fails the batch, which rolls everything back */
    if (sqlite3_get_autocommit(st->db) == 0)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->in_tx = false;
    cb_store__dirty_clear(st);
    paths_clear(&st->on_rollback, true);
    paths_clear(&st->after_commit, false);
}

/*
 * A batch's page caches: SQLite's default (2 000 KiB a database) makes a batch that outgrows
 * it spill the transaction's pages to the WAL and the temporary file and read them back over
 * and over: at 10^5 pairs, most of the batch's system time; at 10^6, a cache of 64 MiB
 * took 262 s, 256 MiB 181 s (BENCHMARKS.md). So a batch's cache is 1/16 of the memory this
 * process may use (the machine's, or its control group's limit), at most 256 MiB, and the
 * temporary table's a quarter of that: 5/64 in all, bounded however long the batch. Both
 * are back to SQLite's default once the batch ends.
 */
#define BATCH_CACHE_MAX_KB (256ull * 1024)
#define DEFAULT_CACHE_KB 2000ull

static int batch_caches(struct cb_store *st, bool batch, struct cb_err *err)
{
    uint64_t kb = DEFAULT_CACHE_KB;
    char sql[128];

    if (batch) {
        kb = cb_sysmem_limit() / 16 / 1024;
        kb = kb > BATCH_CACHE_MAX_KB ? BATCH_CACHE_MAX_KB
             : kb < DEFAULT_CACHE_KB ? DEFAULT_CACHE_KB
                                     : kb;
    }
    snprintf(sql, sizeof(sql), "PRAGMA main.cache_size=-%llu; PRAGMA temp.cache_size=-%llu",
             (unsigned long long)kb,
             (unsigned long long)(kb / 4 > DEFAULT_CACHE_KB ? kb / 4 : DEFAULT_CACHE_KB));
    return exec(st, sql, err);
}

int cb_store_batch_begin(struct cb_store *st, struct cb_err *err)
{
    int ret;

    if (st->batch || st->in_tx)
        return cb_err_set(err, CB_EINVAL, "internal: a batch begun inside a transaction");
    if ((ret = exec(st,
                    "CREATE TEMP TABLE IF NOT EXISTS batch_paths(path TEXT PRIMARY KEY, "
                    "bits INTEGER NOT NULL) WITHOUT ROWID; DELETE FROM temp.batch_paths",
                    err)) != 0 ||
        (ret = cb_store_begin(st, err)) != 0)
        return ret;
    if ((ret = batch_caches(st, true, err)) != 0) {
        (void)batch_caches(st, false, NULL); /* one of the two may be set */
        cb_store_rollback(st);
        return ret;
    }
    st->batch = true;
    st->batch_line = st->batch_failed_line = 0;
    return 0;
}

bool cb_store_in_batch(const struct cb_store *st)
{
    return st->batch;
}

int cb_store_batch_commit(struct cb_store *st, struct cb_err *err)
{
    int fd, ret;

    if (!st->batch)
        return cb_err_set(err, CB_EINVAL, "internal: no batch to commit");
    if ((ret = cb_store__batch_files_end(st, err)) != 0) {
        cb_store_batch_rollback(st);
        return ret;
    }
    /* The files were written without a sync each: one for the whole file system, before
     * the rows that name them are committed. */
    fd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || syncfs(fd) != 0) {
        ret = cb_err_set(err, CB_EIO, "cannot flush the certificate files in %s to disk: %s",
                         st->dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        cb_store_batch_rollback(st);
        return ret;
    }
    close(fd);
    if ((ret = commit_tx(st, err)) != 0) {
        cb_store_batch_rollback(st); /* its files go, while the rows still name them */
        return ret;
    }
    st->batch = false;
    st->in_tx = false;
    cb_store__dirty_clear(st);
    batch_paths_unlink(st, BATCH_DELETED);
    exec(st, "DELETE FROM temp.batch_paths", NULL); /* scratch: a failure leaves only it */
    (void)batch_caches(st, false, NULL);
    return 0;
}

void cb_store_batch_rollback(struct cb_store *st)
{
    if (!st->batch)
        return;
    /* The writer ends first: no file of the batch is created after its removal. */
    (void)cb_store__batch_files_end(st, NULL);
    batch_paths_unlink(st, BATCH_WRITTEN); /* read before the rollback forgets them */
    st->batch = false;
    cb_store_rollback(st);
    (void)batch_caches(st, false, NULL);
}

/* Text column as a C string, "" for NULL. */
static const char *col_text(sqlite3_stmt *stmt, int i)
{
    const unsigned char *t = sqlite3_column_text(stmt, i);
    return t ? (const char *)t : "";
}

static void abs_path(const struct cb_store *st, const char *stored, char *out, size_t size)
{
    int n = stored[0] == '/' ? snprintf(out, size, "%s", stored)
                             : snprintf(out, size, "%s/%s", st->dir, stored);
    if (n < 0 || (size_t)n >= size)
        out[0] = '\0'; /* too long: an empty path fails loudly where it is used */
}

/* Stores paths inside the state folder relative to it, so the folder can move. */
static const char *rel_path(const struct cb_store *st, const char *path)
{
    size_t n = strlen(st->dir);
    if (strncmp(path, st->dir, n) == 0 && path[n] == '/')
        return path + n + 1;
    return path;
}

bool cb_store_owns(const struct cb_store *st, const char *path)
{
    size_t n = strlen(st->dir);
    while (n > 1 && st->dir[n - 1] == '/')
        n--;
    return strncmp(path, st->dir, n) == 0 && path[n] == '/';
}

void cb_store_cert_paths(const struct cb_store *st, const char *thumbprint, char *cert_path,
                         char *key_path, size_t size)
{
    snprintf(cert_path, size, "%s/certs/%s.pem", st->dir, thumbprint);
    snprintf(key_path, size, "%s/keys/%s.key", st->dir, thumbprint);
}

int cb_store_cert_put(struct cb_store *st, const struct cb_cert_info *info, const char *cert_path,
                      const char *key_path, struct cb_err *err)
{
    sqlite3_stmt *stmt = NULL;
    int ret, rc;

    /* An upsert, not a replace: a certificate certbind obtained stays marked as such. */
    if ((ret = cb_store__prepare_cached(
             st,
             "INSERT INTO certs(thumbprint, sha256, subject, not_before, not_after, "
             "key_type, chain_len, cert_path, key_path, added_at, ocsp_url) "
             "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
             "ON CONFLICT(thumbprint) DO UPDATE SET sha256 = ?2, subject = ?3, "
             "not_before = ?4, not_after = ?5, key_type = ?6, chain_len = ?7, "
             "cert_path = ?8, key_path = ?9, added_at = ?10, ocsp_url = ?11",
             &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, info->thumbprint, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, info->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, info->subject ? info->subject : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, info->not_before);
    sqlite3_bind_int64(stmt, 5, info->not_after);
    sqlite3_bind_text(stmt, 6, info->key_type, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 7, info->chain_len);
    sqlite3_bind_text(stmt, 8, rel_path(st, cert_path), -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 9, rel_path(st, key_path), -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 10, (sqlite3_int64)time(NULL));
    sqlite3_bind_int(stmt, 11, (int)info->ocsp_url);
    rc = sqlite3_step(stmt);
    cb_store__release(st, stmt);
    if (rc != SQLITE_DONE)
        return db_error(st, err, rc, "adding a certificate");
    if ((ret = cb_store__prepare_cached(st, "DELETE FROM cert_names WHERE thumbprint = ?1", &stmt,
                                        err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, info->thumbprint, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    cb_store__release(st, stmt);
    if (rc != SQLITE_DONE)
        return db_error(st, err, rc, "adding a certificate");
    if ((ret = cb_store__prepare_cached(st, "INSERT INTO cert_names VALUES(?1, ?2, ?3)", &stmt,
                                        err)) != 0)
        return ret;
    for (size_t i = 0; i < info->n_names; i++) {
        sqlite3_reset(stmt);
        sqlite3_bind_text(stmt, 1, info->thumbprint, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, (sqlite3_int64)i);
        sqlite3_bind_text(stmt, 3, info->names[i], -1, SQLITE_STATIC);
        if ((rc = sqlite3_step(stmt)) != SQLITE_DONE) {
            cb_store__release(st, stmt);
            return db_error(st, err, rc, "adding a certificate's names");
        }
    }
    cb_store__release(st, stmt);
    return 0;
}

static const char cert_columns[] =
    "SELECT thumbprint, sha256, subject, not_before, not_after, key_type, chain_len, "
    "cert_path, key_path, added_at, acme, ocsp_url FROM certs";

static int names_of(struct cb_store *st, sqlite3_stmt *names, struct cb_cert_row *row)
{
    int rc;

    sqlite3_reset(names);
    sqlite3_bind_text(names, 1, row->info.thumbprint, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(names)) == SQLITE_ROW) {
        char **nn = realloc(row->info.names, (row->info.n_names + 1) * sizeof(*nn));
        if (nn == NULL)
            return CB_ENOMEM;
        row->info.names = nn;
        if ((nn[row->info.n_names] = strdup(col_text(names, 0))) == NULL)
            return CB_ENOMEM;
        row->info.n_names++;
    }
    (void)st;
    return rc == SQLITE_DONE ? 0 : CB_ESTORE;
}

static int row_from_stmt(struct cb_store *st, sqlite3_stmt *stmt, sqlite3_stmt *names,
                         struct cb_cert_row *row, struct cb_err *err)
{
    memset(row, 0, sizeof(*row));
    snprintf(row->info.thumbprint, sizeof(row->info.thumbprint), "%s", col_text(stmt, 0));
    snprintf(row->info.sha256, sizeof(row->info.sha256), "%s", col_text(stmt, 1));
    row->info.subject = strdup(col_text(stmt, 2));
    row->info.not_before = sqlite3_column_int64(stmt, 3);
    row->info.not_after = sqlite3_column_int64(stmt, 4);
    snprintf(row->info.key_type, sizeof(row->info.key_type), "%s", col_text(stmt, 5));
    row->info.chain_len = sqlite3_column_int(stmt, 6);
    abs_path(st, col_text(stmt, 7), row->cert_path, sizeof(row->cert_path));
    abs_path(st, col_text(stmt, 8), row->key_path, sizeof(row->key_path));
    row->added_at = sqlite3_column_int64(stmt, 9);
    row->acme_issued = sqlite3_column_int(stmt, 10) != 0;
    int url = sqlite3_column_int(stmt, 11);
    row->info.ocsp_url = url == CB_OCSP_URL_NONE || url == CB_OCSP_URL_HTTP ? (enum cb_ocsp_url)url
                                                                            : CB_OCSP_URL_UNKNOWN;
    int ret = row->info.subject == NULL ? CB_ENOMEM : names_of(st, names, row);
    if (ret != 0) {
        cb_cert_row_clear(row);
        return ret == CB_ENOMEM ? cb_err_set(err, ret, "out of memory")
                                : db_error(st, err, sqlite3_errcode(st->db), "reading names");
    }
    return 0;
}

void cb_cert_row_clear(struct cb_cert_row *row)
{
    cb_cert_info_clear(&row->info);
}

int cb_store_cert_get(struct cb_store *st, const char *thumbprint, struct cb_cert_row *row,
                      struct cb_err *err)
{
    sqlite3_stmt *stmt = NULL, *names = NULL;
    char sql[sizeof(cert_columns) + 32];
    int ret, rc;

    snprintf(sql, sizeof(sql), "%s WHERE thumbprint = ?1", cert_columns);
    if ((ret = cb_store__prepare_cached(st, sql, &stmt, err)) != 0)
        return ret;
    if ((ret = cb_store__prepare_cached(
             st, "SELECT name FROM cert_names WHERE thumbprint = ?1 ORDER BY pos", &names, err)) !=
        0)
        goto out_finalize;
    sqlite3_bind_text(stmt, 1, thumbprint, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        ret = row_from_stmt(st, stmt, names, row, err);
    else if (rc == SQLITE_DONE)
        ret = cb_err_set(err, CB_ENOENT,
                         "no certificate %s in the store; list them with 'certbind show cert'",
                         thumbprint);
    else
        ret = db_error(st, err, rc, "reading a certificate");
out_finalize:
    cb_store__release(st, names);
    cb_store__release(st, stmt);
    return ret;
}

/* Runs sql (one statement, ?1 the thumbprint) on certificate `thumbprint`: CB_ENOENT when
 * it changed no row. `what` names the work for an error message. */
static int cert_exec(struct cb_store *st, const char *sql, const char *thumbprint, const char *what,
                     struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = prepare(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, thumbprint, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return db_error(st, err, rc, what);
    if (sqlite3_changes(st->db) == 0)
        return cb_err_set(err, CB_ENOENT,
                          "no certificate %s in the store; list them with 'certbind show cert'",
                          thumbprint);
    return 0;
}

int cb_store_cert_mark_acme(struct cb_store *st, const char *thumbprint, struct cb_err *err)
{
    return cert_exec(st, "UPDATE certs SET acme = 1 WHERE thumbprint = ?1", thumbprint,
                     "marking a certificate", err);
}

int cb_store_cert_delete(struct cb_store *st, const char *thumbprint, struct cb_err *err)
{
    return cert_exec(st, "DELETE FROM certs WHERE thumbprint = ?1", thumbprint,
                     "deleting a certificate", err);
}

int cb_store_cert_foreach(struct cb_store *st, cb_cert_fn fn, void *ctx, struct cb_err *err)
{
    sqlite3_stmt *stmt = NULL, *names = NULL;
    char sql[sizeof(cert_columns) + 32];
    struct cb_cert_row row;
    int ret, rc;

    snprintf(sql, sizeof(sql), "%s ORDER BY thumbprint", cert_columns);
    if ((ret = prepare(st, sql, &stmt, err)) != 0)
        return ret;
    if ((ret = prepare(st, "SELECT name FROM cert_names WHERE thumbprint = ?1 ORDER BY pos", &names,
                       err)) != 0)
        goto out_finalize;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if ((ret = row_from_stmt(st, stmt, names, &row, err)) != 0)
            goto out_finalize;
        ret = fn(&row, ctx);
        cb_cert_row_clear(&row);
        if (ret != 0)
            goto out_finalize;
    }
    if (rc != SQLITE_DONE)
        ret = db_error(st, err, rc, "listing certificates");
out_finalize:
    sqlite3_finalize(names);
    sqlite3_finalize(stmt);
    return ret;
}

int cb_store_cert_paths_foreach(struct cb_store *st, cb_cert_paths_fn fn, void *ctx,
                                struct cb_err *err)
{
    char cert_path[CB_PATH_MAX + 1], key_path[CB_PATH_MAX + 1];
    sqlite3_stmt *stmt = NULL;
    int ret, rc;

    /* In the table's own order: one sequential read, where thumbprint order would visit
     * the rows at random through the primary key's index. */
    if ((ret = prepare(st, "SELECT thumbprint, cert_path, key_path FROM certs", &stmt, err)) != 0)
        return ret;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        abs_path(st, col_text(stmt, 1), cert_path, sizeof(cert_path));
        abs_path(st, col_text(stmt, 2), key_path, sizeof(key_path));
        if ((ret = fn(col_text(stmt, 0), cert_path, key_path, ctx)) != 0)
            goto out_finalize;
    }
    if (rc != SQLITE_DONE)
        ret = db_error(st, err, rc, "listing certificates");
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

int cb_store_decode_binding(const char *key, const char *certhash, const char *certhash2,
                            const char *appid, const char *backend, const char *ccspath,
                            const char *clientca, int64_t flags, int64_t proxy,
                            struct cb_binding *out, struct cb_err *err)
{
    char both[2 * CB_THUMB_LEN + 2];
    struct cb_err e;
    unsigned fields = 0;

    cb_binding_init(out);
    if (cb_key_parse_word(key, &out->key, &e) != 0)
        goto bad;
    if (certhash2[0] &&
        (!certhash[0] || strlen(certhash) != CB_THUMB_LEN || strlen(certhash2) != CB_THUMB_LEN)) {
        snprintf(e.msg, sizeof(e.msg), "a second certificate without a valid first one");
        goto bad;
    }
    /* The pair is read as the command line gives it: the same rules (two, not the same). */
    snprintf(both, sizeof(both), "%s%s%s", certhash, certhash2[0] ? "," : "", certhash2);
    if (certhash[0] && cb_binding_set_option(out, "certhash", both, &fields, &e) != 0)
        goto bad;
    if (appid[0] && cb_binding_set_option(out, "appid", appid, &fields, &e) != 0)
        goto bad;
    if (backend[0] && cb_binding_set_option(out, "backend", backend, &fields, &e) != 0)
        goto bad;
    if (ccspath[0] && cb_binding_set_option(out, "ccspath", ccspath, &fields, &e) != 0)
        goto bad;
    if (clientca[0] && cb_binding_set_option(out, "clientca", clientca, &fields, &e) != 0)
        goto bad;
    if (flags < 0 || (flags & ~(int64_t)CB_OPT_ALL) != 0 || proxy < CB_PROXY_OFF ||
        proxy > CB_PROXY_V2) {
        snprintf(e.msg, sizeof(e.msg), "option values out of range");
        goto bad;
    }
    out->flags = (uint32_t)flags;
    out->proxy = (enum cb_proxy_proto)proxy;
    if (cb_binding_validate(out, &e) != 0)
        goto bad;
    return 0;
bad:
    return cb_err_set(err, CB_ESTORE,
                      "the store holds a damaged binding '%.200s' (%.300s); delete it with "
                      "'certbind delete sslcert' or restore the store from a backup",
                      key, e.msg);
}

static const char binding_columns[] = "SELECT key, certhash, appid, backend, ccspath, flags, "
                                      "proxy, clientca, certhash2 FROM bindings";

static int binding_from_stmt(sqlite3_stmt *stmt, struct cb_binding *b, struct cb_err *err)
{
    return cb_store_decode_binding(col_text(stmt, 0), col_text(stmt, 1), col_text(stmt, 8),
                                   col_text(stmt, 2), col_text(stmt, 3), col_text(stmt, 4),
                                   col_text(stmt, 7), sqlite3_column_int64(stmt, 5),
                                   sqlite3_column_int64(stmt, 6), b, err);
}

/*
 * For what serves (snapshots, change logs): one damaged row breaks only its own binding.
 * A row whose key is readable but whose other fields are not becomes a binding with
 * CB_OPT_DAMAGED and nothing else (it fails its handshakes); a row whose key is not
 * readable cannot be matched by any client and is left out: returns CB_ENOENT.
 */
static int binding_from_stmt_serving(sqlite3_stmt *stmt, struct cb_binding *b)
{
    if (binding_from_stmt(stmt, b, NULL) == 0)
        return 0;
    cb_binding_init(b);
    if (cb_key_parse_word(col_text(stmt, 0), &b->key, NULL) != 0)
        return CB_ENOENT;
    b->flags = CB_OPT_DAMAGED;
    return 0;
}

int cb_store_binding_get(struct cb_store *st, const struct cb_binding_key *key,
                         struct cb_binding *out, struct cb_err *err)
{
    char text[CB_KEY_TEXT_MAX];
    char sql[sizeof(binding_columns) + 32];
    sqlite3_stmt *stmt;
    int ret, rc;

    cb_key_format(key, text, sizeof(text));
    snprintf(sql, sizeof(sql), "%s WHERE key = ?1", binding_columns);
    if ((ret = cb_store__prepare_cached(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        ret = binding_from_stmt(stmt, out, err);
    else if (rc == SQLITE_DONE)
        ret = cb_err_set(err, CB_ENOENT,
                         "no binding %s; list bindings with 'certbind show sslcert' or create "
                         "it with 'certbind add sslcert'",
                         text);
    else
        ret = db_error(st, err, rc, "reading a binding");
    cb_store__release(st, stmt);
    return ret;
}

/* Notes that this transaction changed binding `key` (see the changes table). Past
 * CB_CHANGES_MAX rows in one transaction (a batch), one CB_STORE_CHANGE_MANY row says so
 * and nothing more is written: a reader reads every binding then. */
static int record_change(struct cb_store *st, const char *key, struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if (st->tx_changes > CB_CHANGES_MAX)
        return 0;
    if (st->tx_changes++ == CB_CHANGES_MAX)
        key = CB_STORE_CHANGE_MANY;
    if ((ret = cb_store__prepare_cached(st,
                                        "INSERT INTO changes SELECT CAST(value AS INTEGER) + 1, ?1 "
                                        "FROM meta WHERE name = 'generation'",
                                        &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    cb_store__release(st, stmt);
    return rc == SQLITE_DONE ? 0 : db_error(st, err, rc, "recording a change");
}

int cb_store__record_change(struct cb_store *st, const char *key, struct cb_err *err)
{
    return record_change(st, key, err);
}

static int binding_write(struct cb_store *st, const struct cb_binding *b, bool insert,
                         struct cb_err *err)
{
    char text[CB_KEY_TEXT_MAX];
    sqlite3_stmt *stmt;
    int ret, rc;

    cb_key_format(&b->key, text, sizeof(text));
    /* Kept prepared: a batch writes a binding on most of its lines. */
    if ((ret = cb_store__prepare_cached(
             st,
             insert ? "INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy, "
                      "clientca, certhash2) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                    : "UPDATE bindings SET certhash = ?2, appid = ?3, backend = ?4, "
                      "ccspath = ?5, flags = ?6, proxy = ?7, clientca = ?8, certhash2 = ?9 "
                      "WHERE key = ?1",
             &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, b->certhash, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, b->appid, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, b->backend, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, b->ccspath, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, b->flags);
    sqlite3_bind_int64(stmt, 7, b->proxy);
    sqlite3_bind_text(stmt, 8, b->clientca, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 9, b->certhash2, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    cb_store__release(st, stmt);
    if (insert && rc == SQLITE_CONSTRAINT)
        return cb_err_set(err, CB_EEXIST,
                          "binding %s already exists; change it with 'certbind update sslcert "
                          "%s …'",
                          text, text);
    if (rc != SQLITE_DONE)
        return db_error(st, err, rc, "writing a binding");
    if (!insert && sqlite3_changes(st->db) == 0)
        return cb_err_set(err, CB_ENOENT,
                          "no binding %s; create it with 'certbind add sslcert %s certhash=…'",
                          text, text);
    /* A binding made manual again forgets its ACME state. */
    if (!(b->flags & CB_OPT_ACME) && (ret = cb_store__acme_state_drop(st, text, err)) != 0)
        return ret;
    return record_change(st, text, err);
}

int cb_store_binding_insert(struct cb_store *st, const struct cb_binding *b, struct cb_err *err)
{
    return binding_write(st, b, true, err);
}

int cb_store_binding_update(struct cb_store *st, const struct cb_binding *b, struct cb_err *err)
{
    return binding_write(st, b, false, err);
}

int cb_store_binding_delete(struct cb_store *st, const struct cb_binding_key *key,
                            struct cb_err *err)
{
    char text[CB_KEY_TEXT_MAX];
    sqlite3_stmt *stmt;
    int ret, rc;

    cb_key_format(key, text, sizeof(text));
    if ((ret = prepare(st, "DELETE FROM bindings WHERE key = ?1", &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return db_error(st, err, rc, "deleting a binding");
    if (sqlite3_changes(st->db) == 0)
        return cb_err_set(err, CB_ENOENT,
                          "no binding %s; list bindings with 'certbind show sslcert'", text);
    if ((ret = cb_store__acme_state_drop(st, text, err)) != 0)
        return ret;
    return record_change(st, text, err);
}

static int binding_walk(struct cb_store *st, const char *thumbprint, bool key_order,
                        cb_binding_fn fn, void *ctx, struct cb_err *err)
{
    char sql[sizeof(binding_columns) + 64];
    struct cb_binding b;
    sqlite3_stmt *stmt;
    int ret, rc;

    /* A certificate is in use as a binding's first or second (certhash=T1,T2): both count. */
    snprintf(sql, sizeof(sql), "%s%s%s", binding_columns,
             thumbprint ? " WHERE certhash = ?1 OR certhash2 = ?1" : "",
             key_order ? " ORDER BY key" : "");
    if ((ret = prepare(st, sql, &stmt, err)) != 0)
        return ret;
    if (thumbprint)
        sqlite3_bind_text(stmt, 1, thumbprint, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if ((ret = binding_from_stmt(stmt, &b, err)) != 0 || (ret = fn(&b, ctx)) != 0)
            goto out_finalize;
    }
    ret = rc == SQLITE_DONE ? 0 : db_error(st, err, rc, "listing bindings");
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

int cb_store_binding_foreach(struct cb_store *st, const char *thumbprint, cb_binding_fn fn,
                             void *ctx, struct cb_err *err)
{
    return binding_walk(st, thumbprint, true, fn, ctx, err);
}

int cb_store_binding_foreach_stored(struct cb_store *st, cb_binding_fn fn, void *ctx,
                                    struct cb_err *err)
{
    return binding_walk(st, NULL, false, fn, ctx, err);
}

int cb_store_binding_foreach_port(struct cb_store *st, uint16_t port, cb_binding_fn fn, void *ctx,
                                  struct cb_err *err)
{
    char sql[sizeof(binding_columns) + 160];
    char p[8];
    struct cb_binding b;
    sqlite3_stmt *stmt;
    int ret, rc;

    snprintf(p, sizeof(p), "%u", port);
    snprintf(sql, sizeof(sql),
             "%s WHERE key LIKE 'ipport=%%:' || ?1 OR key LIKE 'hostnameport=%%:' || ?1 "
             "OR key = 'ccs=' || ?1 ORDER BY key",
             binding_columns);
    if ((ret = prepare(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, p, -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if ((ret = binding_from_stmt(stmt, &b, err)) != 0)
            goto out_finalize;
        if (b.key.port == port && (ret = fn(&b, ctx)) != 0)
            goto out_finalize;
    }
    ret = rc == SQLITE_DONE ? 0 : db_error(st, err, rc, "listing bindings");
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

int cb_store_setting_get(struct cb_store *st, const char *name, char *out, size_t size,
                         struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = cb_store__prepare_cached(st, "SELECT value FROM meta WHERE name = ?1", &stmt,
                                        err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        snprintf(out, size, "%s", col_text(stmt, 0));
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = cb_err_set(err, CB_ENOENT, "setting '%s' is not set", name);
    } else {
        ret = db_error(st, err, rc, "reading a setting");
    }
    cb_store__release(st, stmt);
    return ret;
}

int cb_store_setting_set(struct cb_store *st, const char *name, const char *value,
                         struct cb_err *err)
{
    sqlite3_stmt *stmt;
    int ret, rc;

    if ((ret = prepare(st, "INSERT OR REPLACE INTO meta VALUES(?1, ?2)", &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, value, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : db_error(st, err, rc, "writing a setting");
}

int cb_store_data_version(struct cb_store *st, uint64_t *out)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(st->db, "PRAGMA data_version", -1, &stmt, NULL) != SQLITE_OK)
        return CB_ESTORE;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *out = (uint64_t)sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW ? 0 : CB_ESTORE;
}

int cb_store_generation(struct cb_store *st, uint64_t *out)
{
    char buf[32];
    int ret = cb_store_setting_get(st, "generation", buf, sizeof(buf), NULL);
    if (ret == 0)
        *out = strtoull(buf, NULL, 10);
    return ret;
}

int cb_store_binding_foreach_port_prefix(struct cb_store *st, uint16_t port, const char *prefix,
                                         size_t limit, cb_binding_fn fn, void *ctx,
                                         struct cb_err *err)
{
    char sql[sizeof(binding_columns) + 160], suffix[16], hi[64];
    struct cb_binding b;
    sqlite3_stmt *stmt;
    size_t n = 0, plen = strlen(prefix);
    int ret, rc;

    if (plen == 0 || plen >= sizeof(hi))
        return cb_err_set(err, CB_EINVAL, "internal: bad key prefix");
    /* [prefix, prefix with its last byte + 1): a range of the primary key. */
    memcpy(hi, prefix, plen + 1);
    hi[plen - 1]++;
    snprintf(suffix, sizeof(suffix), ":%u", port);
    /* The port by the key's last characters: a LIKE with a bound pattern would have SQLite
     * compile the statement again at each call (its plan may depend on the pattern), which
     * was a tenth of a bulk import's time. */
    snprintf(sql, sizeof(sql),
             "%s WHERE key >= ?1 AND key < ?2 AND substr(key, -length(?3)) = ?3 ORDER BY key",
             binding_columns);
    if ((ret = cb_store__prepare_cached(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, prefix, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 2, hi, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 3, suffix, -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if ((ret = binding_from_stmt(stmt, &b, err)) != 0)
            goto out_finalize;
        if (b.key.port != port)
            continue;
        if ((ret = fn(&b, ctx)) != 0)
            goto out_finalize;
        if (limit != 0 && ++n >= limit)
            break;
    }
    ret = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_error(st, err, rc, "listing bindings");
out_finalize:
    cb_store__release(st, stmt);
    return ret;
}

/* Central store folder: NAME.pem / NAME.pfx, and _.PARENT.pem for *.PARENT. */
static int scan_ccs(struct cb_snapshot_builder *sb, uint32_t index, const char *dir,
                    struct cb_err *err)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int ret = 0;

    if (d == NULL)
        return 0; /* reported by `check` as ccs-missing; resolution skips step 4 */
    /* Two passes so NAME.pem wins over NAME.pfx whatever the directory order. */
    for (int pass = 0; pass < 2 && ret == 0; pass++) {
        const char *ext = pass == 0 ? ".pem" : ".pfx";
        rewinddir(d);
        while ((de = readdir(d)) != NULL) {
            char name[CB_NAME_MAX + 3], norm[CB_NAME_MAX + 1], path[CB_PATH_MAX + 300];
            size_t n = strlen(de->d_name);
            if (n <= 4 || strcmp(de->d_name + n - 4, ext) != 0 || n - 4 > CB_NAME_MAX)
                continue;
            memcpy(name, de->d_name, n - 4);
            name[n - 4] = '\0';
            if (name[0] == '_' && name[1] == '.')
                name[0] = '*';
            if (cb_name_normalize(name, strlen(name), CB_NAME_WILDCARD, norm, NULL) != 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            if ((ret = cb_snapshot_builder_add_ccs_file(sb, index, norm, path, err)) != 0)
                break;
        }
    }
    closedir(d);
    return ret;
}

/*
 * One walk of every binding as it is served (a damaged row breaks only itself, see
 * binding_from_stmt_serving): fn gets each binding, a damaged row whose key is readable
 * included (CB_OPT_DAMAGED); on_damaged (may be NULL) gets each damaged row, readable key
 * or not, with why it cannot be read. Both share ctx.
 */
/* want: NULL, or whether the row of key text key_text is wanted at all (cheaper than
 * decoding it); a row not wanted is neither decoded nor passed to fn. */
typedef bool (*want_fn)(const char *key_text, void *ctx);

/* sfn: when not NULL, called instead of fn, with the key as stored too. */
static int walk_serving(struct cb_store *st, cb_binding_fn fn, cb_binding_stored_fn sfn,
                        cb_damaged_fn on_damaged, void *ctx, bool key_order, want_fn want,
                        const char *where, struct cb_err *err)
{
    char sql[sizeof(binding_columns) + 128];
    struct cb_binding b;
    struct cb_binding_key key;
    sqlite3_stmt *stmt;
    int ret, rc;

    /* In key order, SQLite walks the key's index and looks each row up in the table: at 10^6
     * bindings added over time, 10^6 random page reads (3.6 s, against 0.1 s in the table's
     * own order). Serve's snapshots look bindings up by key, never by position. */
    snprintf(sql, sizeof(sql), "%s%s%s%s", binding_columns, where != NULL ? " WHERE " : "",
             where != NULL ? where : "", key_order ? " ORDER BY key" : "");
    if ((ret = prepare(st, sql, &stmt, err)) != 0)
        return ret;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct cb_err why = {0};
        /* Its type before any read converts it: a key stored as a BLOB, or with a NUL in it,
         * is not the text it reads as (sfn gets NULL for it). */
        bool plain = sqlite3_column_type(stmt, 0) == SQLITE_TEXT;
        if (want != NULL && !want(col_text(stmt, 0), ctx))
            continue;
        if (binding_from_stmt(stmt, &b, &why) != 0) {
            const char *text = col_text(stmt, 0);
            bool readable = cb_key_parse_word(text, &key, NULL) == 0;
            if (on_damaged != NULL && (ret = on_damaged(text, why.msg, readable, ctx)) != 0)
                goto out_finalize;
            if (!readable)
                continue; /* no client can match it */
            cb_binding_init(&b);
            b.key = key;
            b.flags = CB_OPT_DAMAGED;
        }
        const char *stored = col_text(stmt, 0);
        plain = plain && (size_t)sqlite3_column_bytes(stmt, 0) == strlen(stored);
        if ((ret = sfn != NULL ? sfn(&b, plain ? stored : NULL, ctx) : fn(&b, ctx)) != 0)
            goto out_finalize;
    }
    ret = rc == SQLITE_DONE ? 0 : db_error(st, err, rc, "listing bindings");
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

struct load_ctx {
    struct cb_snapshot_builder *sb;
    struct cb_err *err;
    cb_damaged_fn on_damaged; /* the caller's, or NULL */
    void *damaged_ctx;
};

static int load_damaged(const char *key_text, const char *reason, bool key_readable, void *arg)
{
    struct load_ctx *lc = arg;
    return lc->on_damaged(key_text, reason, key_readable, lc->damaged_ctx);
}

static int load_one(const struct cb_binding *b, void *arg)
{
    struct load_ctx *lc = arg;
    uint32_t index;
    int ret = cb_snapshot_builder_add(lc->sb, b, &index, lc->err);

    if (ret == 0 && b->key.kind == CB_KEY_CCS)
        ret = scan_ccs(lc->sb, index, b->ccspath, lc->err);
    return ret;
}

int cb_store_binding_foreach_serving(struct cb_store *st, cb_binding_stored_fn fn,
                                     cb_damaged_fn on_damaged, void *ctx, struct cb_err *err)
{
    return walk_serving(st, NULL, fn, on_damaged, ctx, true, NULL, NULL, err);
}

int cb_store_load_ccs_snapshot(struct cb_store *st, struct cb_snapshot **out, struct cb_err *err)
{
    struct load_ctx lc = {.sb = cb_snapshot_builder_new(), .err = err};
    int ret;

    if (lc.sb == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    /* The keys from "ccs=" up to the next prefix ('>' follows '='): the key's index finds
     * them without reading the other bindings. */
    if ((ret = walk_serving(st, load_one, NULL, NULL, &lc, true, NULL,
                            "key >= 'ccs=' AND key < 'ccs>'", err)) != 0) {
        cb_snapshot_builder_free(lc.sb);
        return ret;
    }
    return cb_snapshot_builder_finish(lc.sb, 0, out, err);
}

int cb_store_read_begin(struct cb_store *st, struct cb_err *err)
{
    int rc;

    if (st->in_tx || st->batch)
        return cb_err_set(err, CB_EINVAL, "internal: a read begun inside a transaction");
    if ((rc = sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL)) != SQLITE_OK)
        return db_error(st, err, rc, "starting to read");
    st->in_tx = true;
    st->reading = true;
    st->tx_changes = 0;
    return 0;
}

void cb_store_read_end(struct cb_store *st)
{
    /* Nothing of the store was written: what was is temporary (spool.c). */
    if (sqlite3_get_autocommit(st->db) == 0)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->in_tx = false;
    st->reading = false;
}

struct endpoints_ctx {
    struct cb_snapshot_builder *sb;
    struct cb_err *err;
    uint8_t port_seen[65536]; /* a binding other than an IP one was added for this port */
};

/* Every IP binding, and a port's first other binding: the rest of a port's names need not
 * be decoded (at 10^6 names, ~1 s of serve's start-up). The port is read from the key text's
 * end; a key it cannot be read from is decoded, and endpoint_one decides. */
static bool endpoint_wanted(const char *key_text, void *arg)
{
    const struct endpoints_ctx *ec = arg;
    size_t n = strlen(key_text);
    unsigned long port = 0, scale = 1;

    if (strncmp(key_text, "ipport=", 7) == 0)
        return true;
    size_t i = n;
    while (i > 0 && key_text[i - 1] >= '0' && key_text[i - 1] <= '9' && n - i < 5) {
        port += scale * (unsigned long)(key_text[i - 1] - '0');
        scale *= 10;
        i--;
    }
    if (i == n || i == 0 || (key_text[i - 1] != ':' && key_text[i - 1] != '=') || port == 0 ||
        port > 65535 || key_text[i] == '0')
        return true;
    return !ec->port_seen[port];
}

static int endpoint_one(const struct cb_binding *b, void *arg)
{
    struct endpoints_ctx *ec = arg;

    if (b->key.kind != CB_KEY_IP) {
        if (ec->port_seen[b->key.port])
            return 0;
        ec->port_seen[b->key.port] = 1;
    }
    return cb_snapshot_builder_add(ec->sb, b, NULL, ec->err);
}

int cb_store_load_endpoints(struct cb_store *st, struct cb_snapshot **out, struct cb_err *err)
{
    struct endpoints_ctx *ec = calloc(1, sizeof(*ec));
    uint64_t generation = 0;
    int ret;

    if (ec == NULL || (ec->sb = cb_snapshot_builder_new()) == NULL) {
        free(ec);
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    }
    ec->err = err;
    if (sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        ret = db_error(st, err, sqlite3_errcode(st->db), "reading the bindings");
        goto out_free;
    }
    ret = cb_store_generation(st, &generation);
    if (ret == 0)
        ret = walk_serving(st, endpoint_one, NULL, NULL, ec, false, endpoint_wanted, NULL, err);
    sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (ret != 0)
        goto out_free;
    ret = cb_snapshot_builder_finish(ec->sb, generation, out, err);
    free(ec);
    return ret;
out_free:
    cb_snapshot_builder_free(ec->sb);
    free(ec);
    return ret;
}

int cb_store_load_snapshot(struct cb_store *st, struct cb_snapshot **out, struct cb_err *err)
{
    return cb_store_load_snapshot_reporting(st, out, NULL, NULL, true, err);
}

int cb_store_load_snapshot_reporting(struct cb_store *st, struct cb_snapshot **out,
                                     cb_damaged_fn on_damaged, void *ctx, bool key_order,
                                     struct cb_err *err)
{
    struct load_ctx lc = {
        .sb = cb_snapshot_builder_new(), .err = err, .on_damaged = on_damaged, .damaged_ctx = ctx};
    uint64_t generation = 0;
    int ret;

    if (lc.sb == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    /* One read transaction: the bindings and the generation are of the same commit. */
    if (sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        cb_snapshot_builder_free(lc.sb);
        return db_error(st, err, sqlite3_errcode(st->db), "reading the bindings");
    }
    ret = cb_store_generation(st, &generation);
    if (ret == 0)
        ret = walk_serving(st, load_one, NULL, on_damaged != NULL ? load_damaged : NULL, &lc,
                           key_order, NULL, NULL, err);
    sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (ret != 0) {
        cb_snapshot_builder_free(lc.sb);
        return ret;
    }
    return cb_snapshot_builder_finish(lc.sb, generation, out, err);
}

void cb_store_changes_clear(struct cb_store_changes *c)
{
    free(c->set);
    free(c->removed);
    free(c->ocsp);
    memset(c, 0, sizeof(*c));
}

/* One binding by its key text, as it is served; CB_ENOENT when there is none. */
static int binding_get_serving(struct cb_store *st, const char *text, struct cb_binding *out,
                               struct cb_err *err)
{
    char sql[sizeof(binding_columns) + 32];
    sqlite3_stmt *stmt;
    int ret, rc;

    snprintf(sql, sizeof(sql), "%s WHERE key = ?1", binding_columns);
    if ((ret = prepare(st, sql, &stmt, err)) != 0)
        return ret;
    sqlite3_bind_text(stmt, 1, text, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        ret = binding_from_stmt_serving(stmt, out);
    else if (rc == SQLITE_DONE)
        ret = CB_ENOENT;
    else
        ret = db_error(st, err, rc, "reading a binding");
    sqlite3_finalize(stmt);
    return ret;
}

/* Notes that thumb's cached OCSP response changed (a thumbprint this version reads). */
static int ocsp_change(struct cb_store_changes *out, const char *thumb, struct cb_err *err)
{
    if (strlen(thumb) != CB_THUMB_LEN)
        return CB_ENOENT; /* not a key this version wrote: read everything */
    if ((out->n_ocsp & (out->n_ocsp + 1)) == 0) { /* 0, 1, 3, 7...: full, grow */
        char(*nv)[CB_THUMB_LEN + 1] = realloc(out->ocsp, (out->n_ocsp + 1) * 2 * sizeof(*nv));
        if (nv == NULL)
            return cb_err_set(err, CB_ENOMEM, "out of memory");
        out->ocsp = nv;
    }
    memcpy(out->ocsp[out->n_ocsp++], thumb, CB_THUMB_LEN + 1);
    return 0;
}

static int changes_read(struct cb_store *st, uint64_t from, struct cb_store_changes *out,
                        struct cb_err *err)
{
    sqlite3_stmt *stmt = NULL;
    uint64_t gen;
    int ret, rc;

    if ((ret = cb_store_generation(st, &gen)) != 0)
        return ret;
    out->generation = gen;
    if (gen == from)
        return 0;
    if (gen < from)
        return CB_ENOENT;
    /* Every generation in (from, gen] must have left its marker. */
    if ((ret = prepare(st,
                       "SELECT count(DISTINCT generation) FROM changes "
                       "WHERE generation > ?1 AND generation <= ?2 AND key = ''",
                       &stmt, err)) != 0)
        return ret;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)from);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)gen);
    rc = sqlite3_step(stmt);
    uint64_t marked = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(stmt, 0) : 0;
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW)
        return db_error(st, err, rc, "reading the changes");
    if (marked != gen - from)
        return CB_ENOENT;
    if ((ret = prepare(st,
                       "SELECT DISTINCT key FROM changes WHERE generation > ?1 AND key <> '' "
                       "LIMIT " CB_STR(CB_CHANGES_MAX) " + 1",
                       &stmt, err)) != 0)
        return ret;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)from);
    size_t cap = 0, rows = 0;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct cb_binding_key key;
        struct cb_binding b;
        const char *text = (const char *)sqlite3_column_text(stmt, 0);
        /* Every row counts against the LIMIT, challenge rows included: past it, keys
         * may have been left unread. */
        if (++rows > CB_CHANGES_MAX) {
            ret = CB_ENOENT;
            goto out_finalize;
        }
        if (text != NULL &&
            strncmp(text, CB_STORE_CHANGE_CHALLENGE, sizeof(CB_STORE_CHANGE_CHALLENGE) - 1) == 0) {
            out->challenges = true; /* a small set, read whole by whoever applies this */
            continue;
        }
        if (text != NULL &&
            strncmp(text, CB_STORE_CHANGE_OCSP, sizeof(CB_STORE_CHANGE_OCSP) - 1) == 0) {
            if ((ret = ocsp_change(out, text + sizeof(CB_STORE_CHANGE_OCSP) - 1, err)) != 0)
                goto out_finalize;
            continue;
        }
        if (text != NULL &&
            strncmp(text, CB_STORE_CHANGE_TICKETS, sizeof(CB_STORE_CHANGE_TICKETS) - 1) == 0) {
            out->tickets = true; /* three keys at most, read whole */
            continue;
        }
        if (text == NULL || cb_key_parse_word(text, &key, NULL) != 0) {
            ret = CB_ENOENT; /* not a key this version understands: read everything */
            goto out_finalize;
        }
        if (out->n_set + out->n_removed == cap) {
            cap = cap ? cap * 2 : 8;
            struct cb_binding *ns = realloc(out->set, cap * sizeof(*ns));
            if (ns != NULL)
                out->set = ns;
            struct cb_binding_key *nr = realloc(out->removed, cap * sizeof(*nr));
            if (nr != NULL)
                out->removed = nr;
            if (ns == NULL || nr == NULL) {
                ret = cb_err_set(err, CB_ENOMEM, "out of memory");
                goto out_finalize;
            }
        }
        ret = binding_get_serving(st, text, &b, err);
        if (ret == 0)
            out->set[out->n_set++] = b;
        else if (ret == CB_ENOENT)
            out->removed[out->n_removed++] = key;
        else
            goto out_finalize;
    }
    if (rc != SQLITE_DONE) {
        ret = db_error(st, err, rc, "reading the changes");
        goto out_finalize;
    }
    sqlite3_finalize(stmt);
    stmt = NULL;
    ret = 0;
    if ((out->challenges || out->tickets || out->n_ocsp > 0) && out->n_set == 0 &&
        out->n_removed == 0) {
        /* Challenge puts and deletes, ticket key rotations and OCSP responses cached are
         * commits of their own: when every generation since `from` is one, nothing else (no
         * certificate, no setting) changed. */
        if ((ret = prepare(st,
                           "SELECT count(DISTINCT generation) FROM changes WHERE generation > ?1 "
                           "AND generation <= ?2 AND (substr(key, 1, length(?3)) = ?3 OR "
                           "substr(key, 1, length(?4)) = ?4 OR substr(key, 1, length(?5)) = ?5)",
                           &stmt, err)) != 0)
            return ret;
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)from);
        sqlite3_bind_int64(stmt, 2, (sqlite3_int64)gen);
        sqlite3_bind_text(stmt, 3, CB_STORE_CHANGE_CHALLENGE, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, CB_STORE_CHANGE_OCSP, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 5, CB_STORE_CHANGE_TICKETS, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
            ret = db_error(st, err, rc, "reading the changes");
        else
            out->only_challenges = (uint64_t)sqlite3_column_int64(stmt, 0) == gen - from;
    }
out_finalize:
    sqlite3_finalize(stmt);
    return ret;
}

int cb_store_changes_since(struct cb_store *st, uint64_t from, struct cb_store_changes *out,
                           struct cb_err *err)
{
    memset(out, 0, sizeof(*out));
    if (sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return db_error(st, err, sqlite3_errcode(st->db), "reading the changes");
    int ret = changes_read(st, from, out, err);
    sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (ret != 0)
        cb_store_changes_clear(out);
    return ret;
}

/* STATE/serve.lock: held with an open-file-description lock (F_OFD_SETLK) by the running
 * serve, so that neither a close() elsewhere in that process nor a fork releases it. */
static void serve_lock_path(const struct cb_store *st, char *out, size_t size)
{
    snprintf(out, size, "%s/serve.lock", st->dir);
}

int cb_store_serve_lock(struct cb_store *st, int *fd, struct cb_err *err)
{
    char path[CB_PATH_MAX + 32];
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int lfd;

    serve_lock_path(st, path, sizeof(path));
    lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0)
        return cb_err_set(err, errno == EACCES ? CB_EPERM : CB_EIO, "cannot open %s: %s", path,
                          strerror(errno));
    if (fcntl(lfd, F_OFD_SETLK, &fl) != 0) {
        int e = errno;
        close(lfd);
        if (e == EAGAIN || e == EACCES)
            return cb_err_set(err, CB_EBUSY,
                              "another certbind serve is running on the state folder %s; stop it "
                              "first (systemctl stop certbind) or give this one another --state",
                              st->dir);
        return cb_err_set(err, CB_EIO, "cannot lock %s: %s", path, strerror(e));
    }
    *fd = lfd;
    return 0;
}

int cb_store_serve_running(struct cb_store *st, bool *running)
{
    char path[CB_PATH_MAX + 32];
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int fd;

    serve_lock_path(st, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            return errno == EACCES ? CB_EPERM : CB_EIO;
        *running = false; /* no serve ever ran here */
        return 0;
    }
    int rc = fcntl(fd, F_OFD_GETLK, &fl);
    close(fd);
    if (rc != 0)
        return CB_EIO;
    *running = fl.l_type != F_UNLCK;
    return 0;
}
