/*
 * test_store.c: the SQLite store in a mkdtemp folder: opening and migrating,
 * bindings, transactions, settings, damaged rows, certificates, snapshots, and a
 * second handle seeing commits. sqlite3.h is used only to inspect or damage the
 * database from outside, as another program would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "tls/cert.h"

#define THUMB_A "0123456789ABCDEF0123456789ABCDEF01234567"
#define THUMB_B "89ABCDEF0123456789ABCDEF0123456789ABCDEF"
#define THUMB_C "FEDCBA9876543210FEDCBA9876543210FEDCBA98"

static char base[64];   /* the mkdtemp folder of the whole run */
static char state[128]; /* this test's state folder, not created yet */
static int test_no;

static int sh_failures;

static void sh(const char *fmt, ...) CB_PRINTF(1, 2);
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    int n;

    n = snprintf(cmd, sizeof(cmd), "cd '%s' && ( ", base);
    va_start(ap, fmt);
    n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof(cmd) - (size_t)n, " ) >/dev/null 2>&1");
    if (system(cmd) != 0) {
        print_error("command failed: %s\n", cmd);
        sh_failures++;
    }
}

static int setup_run(void **state_)
{
    (void)state_;
    snprintf(base, sizeof(base), "/tmp/cb-test-store-XXXXXX");
    if (mkdtemp(base) == NULL)
        return -1;
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30"
       " -subj '/CN=www.example.com' -addext 'subjectAltName=DNS:www.example.com,DNS:*.example.com'"
       " -keyout ec.key -out ec.crt");
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 10 -subj '/CN=legacy.example.net'"
       " -keyout rsa.key -out rsa.crt");
    /* A central store folder: NAME.pem, _.PARENT.pem, a .pfx shadowed by a .pem, junk. */
    sh("mkdir ccs && cd ccs && touch www.example.com.pem _.example.com.pem www.example.com.pfx"
       " shop.example.org.pfx UPPER.Example.NET.pem README.txt 'bad name.pem' .pem x.pem.bak");
    return sh_failures == 0 ? 0 : -1;
}

static int teardown_run(void **state_)
{
    char cmd[128];
    (void)state_;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup_test(void **state_)
{
    (void)state_;
    snprintf(state, sizeof(state), "%s/state%d", base, ++test_no);
    return 0;
}

static struct cb_store *open_store(enum cb_store_mode mode)
{
    struct cb_store *st = NULL;
    struct cb_err err = {0};

    if (cb_store_open(state, mode, &st, &err) != 0)
        fail_msg("open %s: %s", state, err.msg);
    assert_non_null(st);
    return st;
}

static void begin(struct cb_store *st)
{
    struct cb_err err = {0};
    if (cb_store_begin(st, &err) != 0)
        fail_msg("begin: %s", err.msg);
}

static void commit(struct cb_store *st)
{
    struct cb_err err = {0};
    if (cb_store_commit(st, &err) != 0)
        fail_msg("commit: %s", err.msg);
}

/* A binding from a key word and option words ("name=value"), NULL-terminated. */
static void make_binding(struct cb_binding *b, const char *key, ...)
{
    struct cb_err err = {0};
    unsigned fields = 0;
    va_list ap;
    const char *opt;

    cb_binding_init(b);
    if (cb_key_parse_word(key, &b->key, &err) != 0)
        fail_msg("fixture key %s: %s", key, err.msg);
    va_start(ap, key);
    while ((opt = va_arg(ap, const char *)) != NULL) {
        char name[64];
        const char *eq = strchr(opt, '=');
        assert_non_null(eq);
        snprintf(name, sizeof(name), "%.*s", (int)(eq - opt), opt);
        if (cb_binding_set_option(b, name, eq + 1, &fields, &err) != 0)
            fail_msg("fixture option %s: %s", opt, err.msg);
    }
    va_end(ap);
    b->flags_set = 0; /* the store does not keep it */
    if (cb_binding_validate(b, &err) != 0)
        fail_msg("fixture %s: %s", key, err.msg);
}

static void assert_binding_equal(const struct cb_binding *a, const struct cb_binding *b)
{
    assert_memory_equal(&a->key, &b->key, sizeof(a->key));
    assert_string_equal(a->certhash, b->certhash);
    assert_string_equal(a->certhash2, b->certhash2);
    assert_string_equal(a->appid, b->appid);
    assert_string_equal(a->backend, b->backend);
    assert_string_equal(a->ccspath, b->ccspath);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->proxy, b->proxy);
}

static void db_path(char *out, size_t size)
{
    snprintf(out, size, "%s/certbind.db", state);
}

/* Runs SQL on the database from outside the store. */
static void raw_exec(const char *sql)
{
    char path[256];
    sqlite3 *db;

    db_path(path, sizeof(path));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_close(db);
}

/* One integer from a query run outside the store. */
static int64_t raw_int(const char *sql)
{
    char path[256];
    sqlite3 *db;
    sqlite3_stmt *stmt;
    int64_t v = -1;

    db_path(path, sizeof(path));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static void raw_text(const char *sql, char *out, size_t size)
{
    char path[256];
    sqlite3 *db;
    sqlite3_stmt *stmt;

    db_path(path, sizeof(path));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    snprintf(out, size, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

static uint64_t generation(struct cb_store *st)
{
    uint64_t g = 0;
    assert_int_equal(cb_store_generation(st, &g), 0);
    return g;
}

/* --- opening --- */

static void assert_mode(const char *path, mode_t type, mode_t perm)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        fail_msg("%s does not exist", path);
    if ((sb.st_mode & S_IFMT) != type || (sb.st_mode & 0777) != perm)
        fail_msg("%s: mode %o, want %o", path, (unsigned)sb.st_mode, (unsigned)(type | perm));
}

static void test_open_for_writing_creates_folder_and_database(void **state_)
{
    (void)state_;
    char path[256];
    mode_t old = umask(022);
    struct cb_store *st = open_store(CB_STORE_WRITE);
    umask(old);

    assert_string_equal(cb_store_dir(st), state);
    assert_mode(state, S_IFDIR, 0700);
    snprintf(path, sizeof(path), "%s/certs", state);
    assert_mode(path, S_IFDIR, 0755);
    snprintf(path, sizeof(path), "%s/keys", state);
    assert_mode(path, S_IFDIR, 0700);
    snprintf(path, sizeof(path), "%s/certbind.db", state);
    assert_int_equal(access(path, F_OK), 0);
    cb_store_close(st);
    cb_store_close(NULL);
}

static void test_open_for_reading_without_store_is_enoent(void **state_)
{
    (void)state_;
    struct cb_store *st = NULL;
    struct cb_err err = {0};
    char path[256];

    assert_int_equal(cb_store_open(state, CB_STORE_READ, &st, &err), CB_ENOENT);
    assert_null(st);
    assert_non_null(strstr(err.msg, "no store"));
    assert_int_not_equal(access(state, F_OK), 0); /* nothing created */

    /* An existing folder without a database is no store either, and stays empty. */
    assert_int_equal(mkdir(state, 0700), 0);
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_open(state, CB_STORE_READ, &st, &err), CB_ENOENT);
    assert_true(err.msg[0] != '\0');
    snprintf(path, sizeof(path), "%s/certbind.db", state);
    assert_int_not_equal(access(path, F_OK), 0);
}

static void test_open_refuses_a_file_or_a_missing_parent(void **state_)
{
    (void)state_;
    struct cb_store *st = NULL;
    struct cb_err err = {0};
    char path[256];

    sh("touch '%s'", state);
    assert_int_equal(cb_store_open(state, CB_STORE_WRITE, &st, &err), CB_EIO);
    assert_non_null(strstr(err.msg, "not a folder"));
    assert_null(st);

    snprintf(path, sizeof(path), "%s/no/such/parent", base);
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_open(path, CB_STORE_WRITE, &st, &err), CB_EIO);
    assert_true(err.msg[0] != '\0');

    char longpath[CB_PATH_MAX + 8];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_open(longpath, CB_STORE_WRITE, &st, &err), CB_EINVAL);
    assert_true(err.msg[0] != '\0');
}

static void test_reopen_keeps_schema_and_data(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_binding b, got;
    struct cb_err err = {0};

    make_binding(&b, "ccs=443", "ccspath=/srv/ccs", NULL);
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    commit(st);
    uint64_t g = generation(st);
    cb_store_close(st);
    assert_int_equal(raw_int("PRAGMA user_version"), CB_STORE_SCHEMA_VERSION);

    /* Reopening (either mode) migrates nothing and loses nothing. */
    st = open_store(CB_STORE_READ);
    assert_int_equal(generation(st), g);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), 0);
    assert_binding_equal(&b, &got);
    cb_store_close(st);
    st = open_store(CB_STORE_WRITE);
    assert_int_equal(generation(st), g);
    cb_store_close(st);
    assert_int_equal(raw_int("PRAGMA user_version"), CB_STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int("SELECT count(*) FROM bindings"), 1);
}

static void test_newer_schema_version_is_refused(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};
    char sql[64];

    cb_store_close(st);
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", CB_STORE_SCHEMA_VERSION + 1);
    raw_exec(sql);
    st = NULL;
    assert_int_equal(cb_store_open(state, CB_STORE_WRITE, &st, &err), CB_ESTORE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "upgrade certbind"));
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_open(state, CB_STORE_READ, &st, &err), CB_ESTORE);
    assert_non_null(strstr(err.msg, "newer"));
    /* The newer store is left as it was. */
    assert_int_equal(raw_int("PRAGMA user_version"), CB_STORE_SCHEMA_VERSION + 1);
}

static void test_damaged_database_file_is_reported(void **state_)
{
    (void)state_;
    struct cb_store *st = NULL;
    struct cb_err err = {0};

    assert_int_equal(mkdir(state, 0700), 0);
    sh("printf 'this is not a database, just some text that is long enough to look like a "
       "header of a file..........................................................' > '%s/"
       "certbind.db'",
       state);
    int rc = cb_store_open(state, CB_STORE_WRITE, &st, &err);
    assert_int_equal(rc, CB_ESTORE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "damaged"));
}

/* --- bindings --- */

static void test_binding_insert_get_update_delete(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_binding b, got, changed;
    struct cb_err err = {0};

    make_binding(&b, "hostnameport=www.example.com:443", "certhash=" THUMB_A,
                 "appid={00112233-4455-6677-8899-aabbccddeeff}", "backend=[::1]:8080",
                 "proxyprotocol=v2", "disablehttp2=enable", "reject=enable", NULL);
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    commit(st);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), 0);
    assert_binding_equal(&b, &got);

    /* A second insert of the same key, in any spelling, is refused. */
    struct cb_binding dup;
    make_binding(&dup, "hostnameport=WWW.Example.com.:443", "certhash=" THUMB_B, NULL);
    begin(st);
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_binding_insert(st, &dup, &err), CB_EEXIST);
    assert_non_null(strstr(err.msg, "already exists"));
    assert_non_null(strstr(err.msg, "update sslcert"));
    cb_store_rollback(st);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), 0);
    assert_string_equal(got.certhash, THUMB_A);

    /* Update replaces every option. */
    make_binding(&changed, "hostnameport=www.example.com:443", "certhash=" THUMB_B,
                 "proxyprotocol=v1", "enablesessionticket=enable", NULL);
    begin(st);
    assert_int_equal(cb_store_binding_update(st, &changed, &err), 0);
    commit(st);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), 0);
    assert_binding_equal(&changed, &got);

    /* Update and delete of a missing key are CB_ENOENT; get too. */
    struct cb_binding missing;
    make_binding(&missing, "hostnameport=other.example.com:443", "certhash=" THUMB_A, NULL);
    begin(st);
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_binding_update(st, &missing, &err), CB_ENOENT);
    assert_non_null(strstr(err.msg, "add sslcert"));
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_binding_delete(st, &missing.key, &err), CB_ENOENT);
    assert_true(err.msg[0] != '\0');
    cb_store_rollback(st);
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_binding_get(st, &missing.key, &got, &err), CB_ENOENT);
    assert_non_null(strstr(err.msg, "hostnameport=other.example.com:443"));

    begin(st);
    assert_int_equal(cb_store_binding_delete(st, &b.key, &err), 0);
    commit(st);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), CB_ENOENT);
    begin(st);
    assert_int_equal(cb_store_binding_delete(st, &b.key, &err), CB_ENOENT);
    cb_store_rollback(st);
    cb_store_close(st);
}

static void test_every_key_kind_round_trips(void **state_)
{
    (void)state_;
    static const char *const keys[] = {
        "ipport=203.0.113.5:443",
        "ipport=[2001:db8::5]:443",
        "ipport=0.0.0.0:443",
        "ipport=[::]:443",
        "hostnameport=*.example.com:8443",
        "hostnameport=xn--bcher-kva.example:443",
    };
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};
    struct cb_binding b, got;

    begin(st);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        make_binding(&b, keys[i], "certhash=" THUMB_A, "backend=backend.example:80",
                     "disabletls13=enable", NULL);
        if (cb_store_binding_insert(st, &b, &err) != 0)
            fail_msg("insert %s: %s", keys[i], err.msg);
    }
    make_binding(&b, "ccs=443", "ccspath=/srv/ccs/", "disablelegacytls=enable", NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    commit(st);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        make_binding(&b, keys[i], "certhash=" THUMB_A, "backend=backend.example:80",
                     "disabletls13=enable", NULL);
        assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), 0);
        assert_binding_equal(&b, &got);
    }
    make_binding(&b, "ccs=443", "ccspath=/srv/ccs", "disablelegacytls=enable", NULL);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), 0);
    assert_binding_equal(&b, &got);
    cb_store_close(st);
}

struct walk {
    char keys[8][CB_KEY_TEXT_MAX];
    int n;
    int stop_after; /* return 42 after this many; 0: never */
};

static int on_binding(const struct cb_binding *b, void *ctx)
{
    struct walk *w = ctx;
    if (w->n < 8)
        cb_key_format(&b->key, w->keys[w->n], sizeof(w->keys[0]));
    w->n++;
    return w->stop_after != 0 && w->n == w->stop_after ? 42 : 0;
}

static void test_binding_foreach_orders_filters_and_stops(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};
    struct cb_binding b;

    begin(st);
    make_binding(&b, "ipport=203.0.113.5:443", "certhash=" THUMB_B, NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    make_binding(&b, "hostnameport=www.example.com:443", "certhash=" THUMB_A, NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    make_binding(&b, "ccs=443", "ccspath=/srv/ccs", NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    make_binding(&b, "hostnameport=api.example.com:443", "certhash=" THUMB_A, NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    commit(st);

    struct walk all = {0};
    assert_int_equal(cb_store_binding_foreach(st, NULL, on_binding, &all, &err), 0);
    assert_int_equal(all.n, 4);
    assert_string_equal(all.keys[0], "ccs=443");
    assert_string_equal(all.keys[1], "hostnameport=api.example.com:443");
    assert_string_equal(all.keys[2], "hostnameport=www.example.com:443");
    assert_string_equal(all.keys[3], "ipport=203.0.113.5:443");

    struct walk a = {0};
    assert_int_equal(cb_store_binding_foreach(st, THUMB_A, on_binding, &a, &err), 0);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.keys[0], "hostnameport=api.example.com:443");
    assert_string_equal(a.keys[1], "hostnameport=www.example.com:443");

    struct walk none = {0};
    assert_int_equal(cb_store_binding_foreach(st, "FFFF", on_binding, &none, &err), 0);
    assert_int_equal(none.n, 0);

    struct walk stop = {.stop_after = 2};
    assert_int_equal(cb_store_binding_foreach(st, NULL, on_binding, &stop, &err), 42);
    assert_int_equal(stop.n, 2);
    cb_store_close(st);
}

static void test_two_certificates_round_trip_and_count_as_in_use(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};
    struct cb_binding b, got;
    char text[256];

    begin(st);
    make_binding(&b, "hostnameport=www.example.com:443", "certhash=" THUMB_A "," THUMB_B, NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    make_binding(&got, "ipport=0.0.0.0:443", "certhash=" THUMB_C, NULL);
    assert_int_equal(cb_store_binding_insert(st, &got, &err), 0);
    commit(st);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), 0);
    assert_binding_equal(&b, &got);
    raw_text("SELECT certhash2 FROM bindings WHERE key = 'hostnameport=www.example.com:443'", text,
             sizeof(text));
    assert_string_equal(text, THUMB_B);

    /* the second certificate finds its binding, as the first does */
    struct walk first = {0}, second = {0}, other = {0};
    assert_int_equal(cb_store_binding_foreach(st, THUMB_A, on_binding, &first, &err), 0);
    assert_int_equal(cb_store_binding_foreach(st, THUMB_B, on_binding, &second, &err), 0);
    assert_int_equal(cb_store_binding_foreach(st, THUMB_C, on_binding, &other, &err), 0);
    assert_int_equal(first.n, 1);
    assert_int_equal(second.n, 1);
    assert_string_equal(second.keys[0], "hostnameport=www.example.com:443");
    assert_int_equal(other.n, 1);
    assert_string_equal(other.keys[0], "ipport=0.0.0.0:443");

    /* one certificate again: the column is emptied, the old second is free */
    make_binding(&b, "hostnameport=www.example.com:443", "certhash=" THUMB_B, NULL);
    begin(st);
    assert_int_equal(cb_store_binding_update(st, &b, &err), 0);
    commit(st);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), 0);
    assert_binding_equal(&b, &got);
    raw_text("SELECT certhash2 FROM bindings WHERE key = 'hostnameport=www.example.com:443'", text,
             sizeof(text));
    assert_string_equal(text, "");
    struct walk again = {0};
    assert_int_equal(cb_store_binding_foreach(st, THUMB_A, on_binding, &again, &err), 0);
    assert_int_equal(again.n, 0);

    /* the snapshot serves both */
    make_binding(&b, "hostnameport=www.example.com:443", "certhash=" THUMB_A "," THUMB_B, NULL);
    begin(st);
    assert_int_equal(cb_store_binding_update(st, &b, &err), 0);
    commit(st);
    struct cb_snapshot *s = NULL;
    assert_int_equal(cb_store_load_snapshot(st, &s, &err), 0);
    long i = cb_snapshot_find(s, &b.key);
    assert_true(i >= 0);
    assert_string_equal(cb_snapshot_binding(s, (uint32_t)i)->certhash, THUMB_A);
    assert_string_equal(cb_snapshot_binding(s, (uint32_t)i)->certhash2, THUMB_B);
    cb_snapshot_unref(s);
    cb_store_close(st);
}

/* --- transactions --- */

static void test_rollback_leaves_nothing(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};
    struct cb_binding b, b2, got;
    char value[64];

    uint64_t g = generation(st);
    make_binding(&b, "ipport=0.0.0.0:443", "certhash=" THUMB_A, NULL);
    make_binding(&b2, "ipport=[::]:443", "certhash=" THUMB_A, NULL);
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    assert_int_equal(cb_store_binding_insert(st, &b2, &err), 0);
    assert_int_equal(cb_store_setting_set(st, "user", "certbind", &err), 0);
    /* Inside the transaction the changes are visible to this handle. */
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), 0);
    cb_store_rollback(st);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), CB_ENOENT);
    assert_int_equal(cb_store_binding_get(st, &b2.key, &got, &err), CB_ENOENT);
    assert_int_equal(cb_store_setting_get(st, "user", value, sizeof(value), &err), CB_ENOENT);
    assert_int_equal(generation(st), g);
    /* A second rollback is harmless. */
    cb_store_rollback(st);

    /* Closing with a transaction open rolls it back too. */
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    cb_store_close(st);
    st = open_store(CB_STORE_READ);
    assert_int_equal(cb_store_binding_get(st, &b.key, &got, &err), CB_ENOENT);
    assert_int_equal(raw_int("SELECT count(*) FROM bindings"), 0);
    cb_store_close(st);
}

static void test_commit_bumps_generation(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};
    struct cb_binding b;

    uint64_t g0 = generation(st);
    make_binding(&b, "ipport=0.0.0.0:443", "certhash=" THUMB_A, NULL);
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    commit(st);
    uint64_t g1 = generation(st);
    assert_int_equal(g1, g0 + 1);
    begin(st);
    assert_int_equal(cb_store_setting_set(st, "user", "www-data", &err), 0);
    commit(st);
    assert_int_equal(generation(st), g1 + 1);
    cb_store_close(st);
}

static void test_second_writer_is_told_to_try_again(void **state_)
{
    (void)state_;
    struct cb_store *st1 = open_store(CB_STORE_WRITE);
    struct cb_store *st2 = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};

    begin(st1);
    /* st2 waits for the busy timeout, then gives up. */
    assert_int_equal(cb_store_begin(st2, &err), CB_EBUSY);
    assert_non_null(strstr(err.msg, "try again"));
    cb_store_rollback(st1);
    begin(st2);
    commit(st2);
    cb_store_close(st2);
    cb_store_close(st1);
}

static void test_second_handle_sees_commits(void **state_)
{
    (void)state_;
    struct cb_store *writer = open_store(CB_STORE_WRITE);
    struct cb_store *reader = open_store(CB_STORE_READ);
    struct cb_err err = {0};
    struct cb_binding b, got;
    uint64_t v1, v2, v3;

    make_binding(&b, "hostnameport=www.example.com:443", "certhash=" THUMB_A, NULL);
    assert_int_equal(cb_store_data_version(reader, &v1), 0);
    assert_int_equal(cb_store_binding_get(reader, &b.key, &got, &err), CB_ENOENT);

    begin(writer);
    assert_int_equal(cb_store_binding_insert(writer, &b, &err), 0);
    /* Not committed yet: the reader sees neither the row nor a new version. */
    assert_int_equal(cb_store_data_version(reader, &v2), 0);
    assert_int_equal(v2, v1);
    assert_int_equal(cb_store_binding_get(reader, &b.key, &got, &err), CB_ENOENT);
    commit(writer);

    assert_int_equal(cb_store_data_version(reader, &v3), 0);
    assert_int_not_equal(v3, v1);
    assert_int_equal(cb_store_binding_get(reader, &b.key, &got, &err), 0);
    assert_binding_equal(&b, &got);
    assert_int_equal(generation(reader), generation(writer));
    cb_store_close(reader);
    cb_store_close(writer);
}

/* --- settings --- */

static void test_settings_set_get_and_overwrite(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};
    char value[64], small[4];

    assert_int_equal(cb_store_setting_get(st, "user", value, sizeof(value), &err), CB_ENOENT);
    assert_non_null(strstr(err.msg, "user"));
    begin(st);
    assert_int_equal(cb_store_setting_set(st, "user", "certbind", &err), 0);
    commit(st);
    assert_int_equal(cb_store_setting_get(st, "user", value, sizeof(value), &err), 0);
    assert_string_equal(value, "certbind");
    begin(st);
    assert_int_equal(cb_store_setting_set(st, "user", "www-data", &err), 0);
    commit(st);
    assert_int_equal(cb_store_setting_get(st, "user", value, sizeof(value), &err), 0);
    assert_string_equal(value, "www-data");
    /* A short buffer gets a truncated, terminated value. */
    assert_int_equal(cb_store_setting_get(st, "user", small, sizeof(small), &err), 0);
    assert_string_equal(small, "www");
    cb_store_close(st);
    /* Settings survive a reopen. */
    st = open_store(CB_STORE_READ);
    assert_int_equal(cb_store_setting_get(st, "user", value, sizeof(value), &err), 0);
    assert_string_equal(value, "www-data");
    cb_store_close(st);
}

/* --- damaged rows --- */

struct row {
    const char *what;
    const char *key, *certhash, *appid, *backend, *ccspath;
    int64_t flags, proxy;
    const char *clientca;  /* NULL: "" */
    const char *certhash2; /* NULL: "" */
};

static const char *ca_of(const struct row *r)
{
    return r->clientca != NULL ? r->clientca : "";
}

#define C2(r) ((r)->certhash2 ? (r)->certhash2 : "")

static void test_decode_accepts_good_rows(void **state_)
{
    (void)state_;
    static const struct row good[] = {
        {"ip", "ipport=203.0.113.5:443", THUMB_A, "", "", "", 0, 0, NULL, NULL},
        {"all options", "hostnameport=www.example.com:443", THUMB_A,
         "{00112233-4455-6677-8899-aabbccddeeff}", "127.0.0.1:8080", "", 0xf9, 2, NULL, NULL},
        {"ccs", "ccs=443", "", "", "", "/srv/ccs", 0x01, 1, NULL, NULL},
        {"client CA", "ipport=203.0.113.5:443", THUMB_A, "", "", "", 0, 2, "/etc/ca/clients.pem",
         NULL},
        {"ccs with a client CA", "ccs=443", "", "", "", "/srv/ccs", 0, 0, "/etc/ca.pem", NULL},
        {"two certificates", "ipport=0.0.0.0:443", THUMB_A, "", "", "", 0, 0, NULL, THUMB_B},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const struct row *r = &good[i];
        struct cb_binding b;
        struct cb_err err = {0};
        if (cb_store_decode_binding(r->key, r->certhash, C2(r), r->appid, r->backend, r->ccspath,
                                    ca_of(r), r->flags, r->proxy, &b, &err) != 0)
            fail_msg("%s: refused: %s", r->what, err.msg);
        assert_string_equal(b.clientca, ca_of(r));
        assert_int_equal(b.flags, (uint32_t)r->flags);
        assert_int_equal(b.proxy, r->proxy);
        assert_string_equal(b.certhash, r->certhash);
        assert_string_equal(b.certhash2, C2(r));
    }
}

static void test_decode_rejects_damaged_rows(void **state_)
{
    (void)state_;
    static const struct row bad[] = {
        {"bad key text", "ipport=nonsense", THUMB_A, "", "", "", 0, 0, NULL, NULL},
        {"empty key", "", THUMB_A, "", "", "", 0, 0, NULL, NULL},
        {"unknown key kind", "foo=1", THUMB_A, "", "", "", 0, 0, NULL, NULL},
        {"bad certhash", "ipport=203.0.113.5:443", "XYZ", "", "", "", 0, 0, NULL, NULL},
        {"short certhash", "ipport=203.0.113.5:443", "0123", "", "", "", 0, 0, NULL, NULL},
        {"missing certhash", "ipport=203.0.113.5:443", "", "", "", "", 0, 0, NULL, NULL},
        {"bad appid", "ipport=203.0.113.5:443", THUMB_A, "{nope}", "", "", 0, 0, NULL, NULL},
        {"bad backend", "ipport=203.0.113.5:443", THUMB_A, "", "0.0.0.0:80", "", 0, 0, NULL, NULL},
        {"relative ccspath", "ccs=443", "", "", "", "srv/ccs", 0, 0, NULL, NULL},
        {"ccs without ccspath", "ccs=443", "", "", "", "", 0, 0, NULL, NULL},
        {"ccs with certhash", "ccs=443", THUMB_A, "", "", "/srv/ccs", 0, 0, NULL, NULL},
        {"ccspath on ip", "ipport=203.0.113.5:443", THUMB_A, "", "", "/srv/ccs", 0, 0, NULL, NULL},
        {"negative flags", "ipport=203.0.113.5:443", THUMB_A, "", "", "", -1, 0, NULL, NULL},
        {"flags above the toggles", "ipport=203.0.113.5:443", THUMB_A, "", "", "", 0x200, 0, NULL,
         NULL},
        {"huge flags", "ipport=203.0.113.5:443", THUMB_A, "", "", "", INT64_C(1) << 40, 0, NULL,
         NULL},
        {"both tls versions off", "ipport=203.0.113.5:443", THUMB_A, "", "", "", 0x06, 0, NULL,
         NULL},
        {"negative proxy", "ipport=203.0.113.5:443", THUMB_A, "", "", "", 0, -1, NULL, NULL},
        {"proxy 3", "ipport=203.0.113.5:443", THUMB_A, "", "", "", 0, 3, NULL, NULL},
        {"relative clientca", "ipport=203.0.113.5:443", THUMB_A, "", "", "", 0, 0, "ca.pem", NULL},
        {"clientca a folder path", "ipport=203.0.113.5:443", THUMB_A, "", "", "", 0, 0, "/etc/",
         NULL},
        {"second certificate alone", "ipport=0.0.0.0:443", "", "", "", "", 0, 0, NULL, THUMB_B},
        {"second certificate twice", "ipport=0.0.0.0:443", THUMB_A, "", "", "", 0, 0, NULL,
         THUMB_A},
        {"short second certificate", "ipport=0.0.0.0:443", THUMB_A, "", "", "", 0, 0, NULL, "0123"},
        {"three certificates", "ipport=0.0.0.0:443", THUMB_A, "", "", "", 0, 0, NULL,
         THUMB_B "," THUMB_C},
        {"second certificate on ccs", "ccs=443", "", "", "", "/srv/ccs", 0, 0, NULL, THUMB_B},
        {"second certificate with acme", "hostnameport=www.example.com:443", THUMB_A, "", "", "",
         0x100, 0, NULL, THUMB_B},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const struct row *r = &bad[i];
        struct cb_binding b;
        struct cb_err err = {0};
        int rc = cb_store_decode_binding(r->key, r->certhash, C2(r), r->appid, r->backend,
                                         r->ccspath, ca_of(r), r->flags, r->proxy, &b, &err);
        if (rc != CB_ESTORE)
            fail_msg("%s: returned %d, want CB_ESTORE", r->what, rc);
        if (err.code != CB_ESTORE || strstr(err.msg, "damaged") == NULL ||
            strstr(err.msg, r->key) == NULL)
            fail_msg("%s: message '%s' should say the binding %s is damaged", r->what, err.msg,
                     r->key);
        if (cb_store_decode_binding(r->key, r->certhash, C2(r), r->appid, r->backend, r->ccspath,
                                    ca_of(r), r->flags, r->proxy, &b, NULL) != CB_ESTORE)
            fail_msg("%s: accepted with a NULL err", r->what);
    }
}

static void test_damaged_row_in_the_database_is_reported(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};
    struct cb_binding good, got;
    struct cb_snapshot *s = NULL;

    make_binding(&good, "ipport=0.0.0.0:443", "certhash=" THUMB_A, NULL);
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &good, &err), 0);
    commit(st);
    raw_exec("INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy) "
             "VALUES('ipport=203.0.113.5:443', '" THUMB_A "', '', '', '', 4096, 0)");

    struct cb_binding_key k;
    assert_int_equal(cb_key_parse_word("ipport=203.0.113.5:443", &k, NULL), 0);
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_binding_get(st, &k, &got, &err), CB_ESTORE);
    assert_non_null(strstr(err.msg, "damaged"));
    struct walk w = {0};
    assert_int_equal(cb_store_binding_foreach(st, NULL, on_binding, &w, &err), CB_ESTORE);
    /* What serves reads it as a binding that fails its handshakes: it breaks only itself. */
    assert_int_equal(cb_store_load_snapshot(st, &s, &err), 0);
    assert_int_equal(cb_snapshot_count(s), 2);
    long i = cb_snapshot_find(s, &k);
    assert_true(i >= 0);
    assert_true(cb_snapshot_binding(s, (uint32_t)i)->flags & CB_OPT_DAMAGED);
    i = cb_snapshot_find(s, &good.key);
    assert_true(i >= 0);
    assert_false(cb_snapshot_binding(s, (uint32_t)i)->flags & CB_OPT_DAMAGED);
    cb_snapshot_unref(s);
    /* A row whose key cannot be read is left out (no client can match it). */
    raw_exec("INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy) "
             "VALUES('hostnameport=bad..name:443', '" THUMB_A "', '', '', '', 0, 0)");
    assert_int_equal(cb_store_load_snapshot(st, &s, &err), 0);
    assert_int_equal(cb_snapshot_count(s), 2);
    cb_snapshot_unref(s);
    /* The good binding is still readable by its key. */
    assert_int_equal(cb_store_binding_get(st, &good.key, &got, &err), 0);
    cb_store_close(st);
}

/* --- certificates --- */

/* Imports base/NAME.crt + NAME.key as the commands do; returns the info (clear it). */
static void import_cert(struct cb_store *st, const char *name, struct cb_cert_info *info,
                        char *cert_path, char *key_path, size_t size)
{
    struct cb_cert_bundle *bundle = NULL;
    struct cb_err err = {0};
    char crt[256], key[256];

    snprintf(crt, sizeof(crt), "%s/%s.crt", base, name);
    snprintf(key, sizeof(key), "%s/%s.key", base, name);
    if (cb_cert_bundle_load(crt, key, NULL, &bundle, &err) != 0)
        fail_msg("load %s: %s", crt, err.msg);
    assert_int_equal(cb_cert_bundle_info(bundle, info, &err), 0);
    cb_store_cert_paths(st, info->thumbprint, cert_path, key_path, size);
    if (cb_cert_bundle_write(bundle, cert_path, key_path, &err) != 0)
        fail_msg("write %s: %s", cert_path, err.msg);
    cb_cert_bundle_free(bundle);
    begin(st);
    if (cb_store_cert_put(st, info, cert_path, key_path, &err) != 0)
        fail_msg("put %s: %s", name, err.msg);
    commit(st);
}

struct cert_walk {
    char thumbs[4][CB_THUMB_LEN + 1];
    int n;
    int stop_after;
};

static int on_cert(const struct cb_cert_row *row, void *ctx)
{
    struct cert_walk *w = ctx;
    if (w->n < 4)
        snprintf(w->thumbs[w->n], sizeof(w->thumbs[0]), "%s", row->info.thumbprint);
    w->n++;
    return w->stop_after != 0 && w->n == w->stop_after ? 7 : 0;
}

static void test_cert_put_get_foreach_delete(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_cert_info ec, rsa;
    struct cb_cert_row row;
    struct cb_err err = {0};
    char ec_cert[CB_PATH_MAX + 1], ec_key[CB_PATH_MAX + 1];
    char rsa_cert[CB_PATH_MAX + 1], rsa_key[CB_PATH_MAX + 1];

    import_cert(st, "ec", &ec, ec_cert, ec_key, sizeof(ec_cert));
    import_cert(st, "rsa", &rsa, rsa_cert, rsa_key, sizeof(rsa_cert));

    assert_int_equal(cb_store_cert_get(st, ec.thumbprint, &row, &err), 0);
    assert_string_equal(row.info.thumbprint, ec.thumbprint);
    assert_string_equal(row.info.sha256, ec.sha256);
    assert_string_equal(row.info.subject, "CN=www.example.com");
    assert_int_equal(row.info.n_names, 2);
    assert_string_equal(row.info.names[0], "www.example.com");
    assert_string_equal(row.info.names[1], "*.example.com");
    assert_int_equal(row.info.not_before, ec.not_before);
    assert_int_equal(row.info.not_after, ec.not_after);
    assert_string_equal(row.info.key_type, "EC-P256");
    assert_int_equal(row.info.chain_len, 0);
    assert_string_equal(row.cert_path, ec_cert);
    assert_string_equal(row.key_path, ec_key);
    int64_t now = (int64_t)time(NULL);
    assert_true(row.added_at > now - 86400 && row.added_at <= now + 86400);
    assert_int_equal(cb_cert_check_pair(row.cert_path, row.key_path, &err), 0);
    cb_cert_row_clear(&row);

    assert_int_equal(cb_store_cert_get(st, rsa.thumbprint, &row, &err), 0);
    assert_string_equal(row.info.key_type, "RSA-2048");
    assert_int_equal(row.info.n_names, 1);
    assert_string_equal(row.info.names[0], "legacy.example.net");
    cb_cert_row_clear(&row);

    /* Paths inside the state folder are kept relative to it. */
    char sql[256], stored[CB_PATH_MAX + 1], want[CB_PATH_MAX + 1];
    snprintf(sql, sizeof(sql), "SELECT cert_path FROM certs WHERE thumbprint = '%s'",
             ec.thumbprint);
    raw_text(sql, stored, sizeof(stored));
    snprintf(want, sizeof(want), "certs/%s.pem", ec.thumbprint);
    assert_string_equal(stored, want);
    snprintf(sql, sizeof(sql), "SELECT key_path FROM certs WHERE thumbprint = '%s'", ec.thumbprint);
    raw_text(sql, stored, sizeof(stored));
    snprintf(want, sizeof(want), "keys/%s.key", ec.thumbprint);
    assert_string_equal(stored, want);

    /* foreach walks in thumbprint order and stops on a non-zero return. */
    struct cert_walk all = {0};
    assert_int_equal(cb_store_cert_foreach(st, on_cert, &all, &err), 0);
    assert_int_equal(all.n, 2);
    assert_true(strcmp(all.thumbs[0], all.thumbs[1]) < 0);
    struct cert_walk stop = {.stop_after = 1};
    assert_int_equal(cb_store_cert_foreach(st, on_cert, &stop, &err), 7);
    assert_int_equal(stop.n, 1);

    /* Putting the same certificate again replaces it without doubling its names. */
    begin(st);
    assert_int_equal(cb_store_cert_put(st, &ec, ec_cert, ec_key, &err), 0);
    commit(st);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM cert_names WHERE thumbprint = '%s'",
             ec.thumbprint);
    assert_int_equal(raw_int(sql), 2);
    assert_int_equal(raw_int("SELECT count(*) FROM certs"), 2);

    /* Delete removes the row and its names; a second delete is CB_ENOENT. */
    begin(st);
    assert_int_equal(cb_store_cert_delete(st, ec.thumbprint, &err), 0);
    commit(st);
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_cert_get(st, ec.thumbprint, &row, &err), CB_ENOENT);
    assert_non_null(strstr(err.msg, ec.thumbprint));
    assert_int_equal(raw_int(sql), 0);
    begin(st);
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_store_cert_delete(st, ec.thumbprint, &err), CB_ENOENT);
    assert_true(err.msg[0] != '\0');
    cb_store_rollback(st);
    assert_int_equal(cb_store_cert_get(st, rsa.thumbprint, &row, &err), 0);
    cb_cert_row_clear(&row);

    cb_cert_info_clear(&ec);
    cb_cert_info_clear(&rsa);
    cb_store_close(st);
}

static void test_cert_paths_outside_the_state_folder_stay_absolute(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_cert_bundle *bundle = NULL;
    struct cb_cert_info info;
    struct cb_cert_row row;
    struct cb_err err = {0};
    char crt[256], key[256];

    /* base/ec.crt is outside; so is a sibling folder whose name extends the state folder's. */
    snprintf(crt, sizeof(crt), "%s/ec.crt", base);
    snprintf(key, sizeof(key), "%s/ec.key", base);
    assert_int_equal(cb_cert_bundle_load(crt, key, NULL, &bundle, &err), 0);
    assert_int_equal(cb_cert_bundle_info(bundle, &info, &err), 0);
    cb_cert_bundle_free(bundle);
    snprintf(key, sizeof(key), "%s-sibling/keys/x.key", state);
    begin(st);
    assert_int_equal(cb_store_cert_put(st, &info, crt, key, &err), 0);
    commit(st);
    assert_int_equal(cb_store_cert_get(st, info.thumbprint, &row, &err), 0);
    assert_string_equal(row.cert_path, crt);
    assert_string_equal(row.key_path, key);
    cb_cert_row_clear(&row);
    char stored[CB_PATH_MAX + 1];
    raw_text("SELECT key_path FROM certs", stored, sizeof(stored));
    assert_string_equal(stored, key);
    cb_cert_info_clear(&info);
    cb_store_close(st);
}

/* --- snapshots --- */

static void test_load_snapshot_round_trip(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_err err = {0};
    struct cb_binding b;
    struct cb_snapshot *s = NULL;
    char ccspath[256], opt[300];

    snprintf(ccspath, sizeof(ccspath), "%s/ccs", base);
    snprintf(opt, sizeof(opt), "ccspath=%s", ccspath);
    begin(st);
    make_binding(&b, "ipport=203.0.113.5:443", "certhash=" THUMB_B, NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    make_binding(&b, "hostnameport=www.example.com:443", "certhash=" THUMB_A,
                 "backend=127.0.0.1:8080", "proxyprotocol=v1", "reject=enable", NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    make_binding(&b, "hostnameport=*.example.com:443", "certhash=" THUMB_A, NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    make_binding(&b, "ccs=8443", opt, NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    make_binding(&b, "ccs=9443", "ccspath=/nonexistent/ccs", NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    make_binding(&b, "ipport=0.0.0.0:443", "certhash=" THUMB_B, NULL);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    commit(st);

    if (cb_store_load_snapshot(st, &s, &err) != 0)
        fail_msg("load: %s", err.msg);
    assert_int_equal(cb_snapshot_count(s), 6);
    assert_int_equal(cb_snapshot_generation(s), generation(st));

    /* Every stored binding is in the snapshot under its key, with its options. */
    struct cb_binding_key k;
    assert_int_equal(cb_key_parse_word("hostnameport=www.example.com:443", &k, NULL), 0);
    long i = cb_snapshot_find(s, &k);
    assert_true(i >= 0);
    const struct cb_snap_binding *e = cb_snapshot_binding(s, (uint32_t)i);
    assert_string_equal(e->certhash, THUMB_A);
    assert_string_equal(e->backend, "127.0.0.1:8080");
    assert_int_equal(e->proxy, CB_PROXY_V1);
    assert_int_equal(e->flags, CB_OPT_REJECT);

    /* ccs folder: .pem before .pfx, _.PARENT as *.PARENT, names normalised, junk skipped. */
    static const struct {
        const char *sni;
        const char *file; /* NULL: no ccs match */
    } ccs[] = {
        {"www.example.com", "www.example.com.pem"},
        {"a.example.com", "_.example.com.pem"},
        {"shop.example.org", "shop.example.org.pfx"},
        {"upper.example.net", "UPPER.Example.NET.pem"},
        {"example.com", NULL},
        {"bad name", NULL},
        {"x", NULL},
    };
    for (size_t j = 0; j < sizeof(ccs) / sizeof(ccs[0]); j++) {
        struct cb_resolve_query q = {.family = AF_INET, .addr = {198, 51, 100, 1}, .port = 8443};
        struct cb_resolution res;
        q.sni = ccs[j].sni;
        cb_resolve(s, &q, &res);
        if (ccs[j].file == NULL) {
            if (res.rule != CB_RULE_NONE)
                fail_msg("%s: resolved to %s", ccs[j].sni, cb_rule_name(res.rule));
            continue;
        }
        char want[512];
        snprintf(want, sizeof(want), "%s/%s", ccspath, ccs[j].file);
        if (res.rule != CB_RULE_CCS || strcmp(res.ccs->path, want) != 0)
            fail_msg("%s: rule %s file %s, want %s", ccs[j].sni, cb_rule_name(res.rule),
                     res.rule == CB_RULE_CCS ? res.ccs->path : "-", want);
    }
    for (size_t j = 0; j < cb_snapshot_ccs_count(s); j++) {
        const struct cb_ccs_file *f = cb_snapshot_ccs_file(s, j);
        if (strstr(f->path, "README") || strstr(f->path, "bad name") || strstr(f->path, ".bak") ||
            strcmp(f->name, "") == 0)
            fail_msg("junk file %s in the snapshot", f->path);
    }

    /* The missing ccs folder just gives no files; the rest of the port still resolves. */
    struct cb_resolve_query q = {.family = AF_INET, .addr = {198, 51, 100, 1}, .port = 9443};
    struct cb_resolution res;
    q.sni = "www.example.com";
    cb_resolve(s, &q, &res);
    assert_int_equal(res.rule, CB_RULE_NONE);

    /* The section 2 order holds on what was loaded. */
    q.port = 443;
    q.sni = "a.example.com";
    cb_resolve(s, &q, &res);
    assert_int_equal(res.rule, CB_RULE_SNI_WILDCARD);
    q.addr[0] = 203, q.addr[1] = 0, q.addr[2] = 113, q.addr[3] = 5;
    cb_resolve(s, &q, &res);
    assert_int_equal(res.rule, CB_RULE_IP);
    cb_snapshot_unref(s);

    /* A change shows in the next snapshot with a new generation. */
    begin(st);
    assert_int_equal(cb_store_binding_delete(st, &k, &err), 0);
    commit(st);
    assert_int_equal(cb_store_load_snapshot(st, &s, &err), 0);
    assert_int_equal(cb_snapshot_count(s), 5);
    assert_int_equal(cb_snapshot_find(s, &k), -1);
    assert_int_equal(cb_snapshot_generation(s), generation(st));
    cb_snapshot_unref(s);
    cb_store_close(st);
}

static void test_load_snapshot_of_empty_store(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_snapshot *s = NULL;
    struct cb_err err = {0};

    assert_int_equal(cb_store_load_snapshot(st, &s, &err), 0);
    assert_int_equal(cb_snapshot_count(s), 0);
    cb_snapshot_unref(s);
    cb_store_close(st);
}

/* ---- the change log behind one-change reloads ---- */

static bool has_key(const struct cb_binding_key *v, size_t n, const struct cb_binding_key *k)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&v[i], k, sizeof(*k)) == 0)
            return true;
    return false;
}

static void test_changes_since_names_what_changed(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_store_changes ch;
    struct cb_binding a, b, c, a2;
    struct cb_err err = {0};

    make_binding(&a, "hostnameport=a.example.com:443", "certhash=" THUMB_A, NULL);
    make_binding(&b, "ipport=127.0.0.1:443", "certhash=" THUMB_A, NULL);
    make_binding(&c, "hostnameport=*.example.org:8443", "certhash=" THUMB_B, NULL);
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &a, &err), 0);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    commit(st);
    uint64_t g1 = generation(st);

    /* Nothing since now. */
    assert_int_equal(cb_store_changes_since(st, g1, &ch, &err), 0);
    assert_int_equal(ch.generation, g1);
    assert_int_equal(ch.n_set + ch.n_removed, 0);
    cb_store_changes_clear(&ch);

    /* Two commits: c added, a changed, b removed; then a setting (no binding change). */
    make_binding(&a2, "hostnameport=a.example.com:443", "certhash=" THUMB_B, "backend=127.0.0.1:81",
                 NULL);
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &c, &err), 0);
    assert_int_equal(cb_store_binding_update(st, &a2, &err), 0);
    commit(st);
    begin(st);
    assert_int_equal(cb_store_binding_delete(st, &b.key, &err), 0);
    commit(st);
    begin(st);
    assert_int_equal(cb_store_setting_set(st, "user", "nobody", &err), 0);
    commit(st);
    assert_int_equal(cb_store_changes_since(st, g1, &ch, &err), 0);
    assert_int_equal(ch.generation, g1 + 3);
    assert_int_equal(ch.n_set, 2);
    assert_int_equal(ch.n_removed, 1);
    assert_true(has_key(ch.removed, ch.n_removed, &b.key));
    for (size_t i = 0; i < ch.n_set; i++) {
        if (memcmp(&ch.set[i].key, &a.key, sizeof(a.key)) == 0)
            assert_binding_equal(&a2, &ch.set[i]); /* as stored now */
        else
            assert_binding_equal(&c, &ch.set[i]);
    }
    cb_store_changes_clear(&ch);

    /* Added and removed again in between: reported as removed (absent now). */
    uint64_t g2 = generation(st);
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    commit(st);
    begin(st);
    assert_int_equal(cb_store_binding_delete(st, &b.key, &err), 0);
    commit(st);
    assert_int_equal(cb_store_changes_since(st, g2, &ch, &err), 0);
    assert_int_equal(ch.n_set, 0);
    assert_int_equal(ch.n_removed, 1);
    cb_store_changes_clear(&ch);

    /* A rolled-back change leaves nothing. */
    uint64_t g3 = generation(st);
    begin(st);
    assert_int_equal(cb_store_binding_delete(st, &a.key, &err), 0);
    cb_store_rollback(st);
    assert_int_equal(cb_store_changes_since(st, g3, &ch, &err), 0);
    assert_int_equal(ch.n_set + ch.n_removed, 0);
    cb_store_changes_clear(&ch);

    /* Asking from the future, or from before the kept history: read everything. */
    assert_int_equal(cb_store_changes_since(st, g3 + 5, &ch, &err), CB_ENOENT);
    cb_store_close(st);
}

static void test_changes_since_refuses_a_store_changed_by_other_means(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_store_changes ch;
    struct cb_binding a;
    struct cb_err err = {0};

    make_binding(&a, "hostnameport=a.example.com:443", "certhash=" THUMB_A, NULL);
    begin(st);
    assert_int_equal(cb_store_binding_insert(st, &a, &err), 0);
    commit(st);
    uint64_t g = generation(st);
    cb_store_close(st);
    /* As bench/check does: rows inserted and the generation bumped, with no change record. */
    raw_exec("INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy) "
             "VALUES('hostnameport=b.example.com:443', '" THUMB_A
             "', '', '', '', 0, 0); UPDATE meta SET value = value + 1 WHERE name = 'generation'");
    st = open_store(CB_STORE_READ);
    assert_int_equal(cb_store_changes_since(st, g, &ch, &err), CB_ENOENT);
    assert_int_equal(ch.n_set + ch.n_removed, 0);
    cb_store_close(st);
}

static void test_changes_history_is_pruned(void **state_)
{
    (void)state_;
    struct cb_store *st = open_store(CB_STORE_WRITE);
    struct cb_store_changes ch;
    struct cb_err err = {0};
    uint64_t g0 = generation(st);

    for (int i = 0; i < 1100; i++) {
        begin(st);
        assert_int_equal(cb_store_setting_set(st, "user", i % 2 ? "a" : "b", &err), 0);
        commit(st);
    }
    assert_true(raw_int("SELECT count(*) FROM changes") <= 1000);
    assert_int_equal(cb_store_changes_since(st, g0, &ch, &err), CB_ENOENT);
    assert_int_equal(cb_store_changes_since(st, generation(st) - 10, &ch, &err), 0);
    cb_store_changes_clear(&ch);
    cb_store_close(st);
}

#define T(fn) cmocka_unit_test_setup(fn, setup_test)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_open_for_writing_creates_folder_and_database),
        T(test_open_for_reading_without_store_is_enoent),
        T(test_open_refuses_a_file_or_a_missing_parent),
        T(test_reopen_keeps_schema_and_data),
        T(test_newer_schema_version_is_refused),
        T(test_damaged_database_file_is_reported),
        T(test_binding_insert_get_update_delete),
        T(test_every_key_kind_round_trips),
        T(test_binding_foreach_orders_filters_and_stops),
        T(test_two_certificates_round_trip_and_count_as_in_use),
        T(test_rollback_leaves_nothing),
        T(test_commit_bumps_generation),
        T(test_second_writer_is_told_to_try_again),
        T(test_second_handle_sees_commits),
        T(test_settings_set_get_and_overwrite),
        T(test_decode_accepts_good_rows),
        T(test_decode_rejects_damaged_rows),
        T(test_damaged_row_in_the_database_is_reported),
        T(test_cert_put_get_foreach_delete),
        T(test_cert_paths_outside_the_state_folder_stay_absolute),
        T(test_load_snapshot_round_trip),
        T(test_load_snapshot_of_empty_store),
        T(test_changes_since_names_what_changed),
        T(test_changes_since_refuses_a_store_changed_by_other_means),
        T(test_changes_history_is_pruned),
    };
    return cmocka_run_group_tests_name("store", tests, setup_run, teardown_run);
}
