/*
 * test_acme_store.c: ACME in the store (store/acme.h) and the certificate store's import
 * and rebind (certstore/certstore.h), in a mkdtemp folder: the account, the managed
 * bindings' state and its life with the binding, renewal requests, the serve lock, and
 * importing an issued certificate and moving a binding to it, with what a rollback and a
 * commit leave on disk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certstore/certstore.h"
#include "store/acme.h"
#include "store/store.h"
#include "util/file.h"

#define THUMB_A "0123456789ABCDEF0123456789ABCDEF01234567"
#define WWW "hostnameport=www.example.com:443"
#define SHOP "hostnameport=shop.example.com:443"
#define IP "ipport=0.0.0.0:443"

static char base[64];
static char state[128];
static int test_no;
/* Two certificates with their keys, as an ACME client hands them over. */
static char *pem_chain[2], *pem_key[2];
static size_t pem_chain_len[2], pem_key_len[2];

static int sh(const char *cmd)
{
    char full[1024];
    snprintf(full, sizeof(full), "cd '%s' && ( %s ) >/dev/null 2>&1", base, cmd);
    return system(full) == 0 ? 0 : -1;
}

static int slurp(const char *name, char **out, size_t *len)
{
    char path[256];
    struct cb_err err;
    snprintf(path, sizeof(path), "%s/%s", base, name);
    return cb_read_file(path, 1 << 20, out, len, &err);
}

static int setup_run(void **unused)
{
    (void)unused;
    snprintf(base, sizeof(base), "/tmp/cb-test-acme-XXXXXX");
    if (mkdtemp(base) == NULL)
        return -1;
    for (int i = 0; i < 2; i++) {
        char cmd[512], name[32];
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days %d "
                 "-subj /CN=www.example.com -addext subjectAltName=DNS:www.example.com "
                 "-keyout k%d.pem -out c%d.pem",
                 30 + i, i, i);
        if (sh(cmd) != 0)
            return -1;
        snprintf(name, sizeof(name), "c%d.pem", i);
        if (slurp(name, &pem_chain[i], &pem_chain_len[i]) != 0)
            return -1;
        snprintf(name, sizeof(name), "k%d.pem", i);
        if (slurp(name, &pem_key[i], &pem_key_len[i]) != 0)
            return -1;
    }
    return 0;
}

static int teardown_run(void **unused)
{
    char cmd[128];
    (void)unused;
    for (int i = 0; i < 2; i++) {
        free(pem_chain[i]);
        free(pem_key[i]);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup_test(void **unused)
{
    (void)unused;
    snprintf(state, sizeof(state), "%s/state%d", base, ++test_no);
    return 0;
}

static struct cb_store *open_store(void)
{
    struct cb_store *st = NULL;
    struct cb_err err = {0};
    if (cb_store_open(state, CB_STORE_WRITE, &st, &err) != 0)
        fail_msg("open %s: %s", state, err.msg);
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

/* Adds binding key with certhash (NULL: none) and acme on or off, in its own transaction. */
static void add_binding(struct cb_store *st, const char *key, const char *certhash, bool acme)
{
    struct cb_binding b;
    struct cb_err err = {0};
    unsigned fields = 0;

    cb_binding_init(&b);
    assert_int_equal(cb_key_parse_word(key, &b.key, &err), 0);
    if (certhash != NULL)
        assert_int_equal(cb_binding_set_option(&b, "certhash", certhash, &fields, &err), 0);
    if (acme)
        assert_int_equal(cb_binding_set_option(&b, "acme", "enable", &fields, &err), 0);
    if (cb_binding_validate(&b, &err) != 0)
        fail_msg("fixture %s: %s", key, err.msg);
    begin(st);
    if (cb_store_binding_insert(st, &b, &err) != 0)
        fail_msg("insert %s: %s", key, err.msg);
    commit(st);
}

static struct cb_binding get_binding(struct cb_store *st, const char *key)
{
    struct cb_binding b;
    struct cb_binding_key k;
    struct cb_err err = {0};
    assert_int_equal(cb_key_parse_word(key, &k, &err), 0);
    if (cb_store_binding_get(st, &k, &b, &err) != 0)
        fail_msg("get %s: %s", key, err.msg);
    return b;
}

static uint64_t generation(struct cb_store *st)
{
    uint64_t g = 0;
    assert_int_equal(cb_store_generation(st, &g), 0);
    return g;
}

/* ---- the account ---------------------------------------------------------------------- */

static void test_settings_absent_then_round_trip(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_acme_settings in, out;
    struct cb_err err = {0};
    (void)unused;

    memset(&out, 0x5a, sizeof(out));
    assert_int_equal(cb_store_acme_settings_get(st, &out, &err), CB_ENOENT);
    assert_non_null(strstr(err.msg, "certbind set acme directory=URL email=ADDRESS"));
    assert_int_equal(((unsigned char *)&out)[0], 0x5a); /* untouched on failure */

    memset(&in, 0, sizeof(in));
    snprintf(in.directory, sizeof(in.directory), "https://ca.example/dir");
    snprintf(in.email, sizeof(in.email), "admin@example.com");
    in.agreetos = true;
    snprintf(in.eab_kid, sizeof(in.eab_kid), "kid-1");
    snprintf(in.eab_hmac, sizeof(in.eab_hmac), "c2VjcmV0");
    snprintf(in.dnshook, sizeof(in.dnshook), "/usr/local/bin/hook");
    in.keytype = CB_ACME_KT_RSA;
    snprintf(in.account_url, sizeof(in.account_url), "https://ca.example/acct/1");
    snprintf(in.account_key_path, sizeof(in.account_key_path), "%s/keys/acme-account.key", state);
    uint64_t g0 = generation(st);
    begin(st);
    assert_int_equal(cb_store_acme_settings_put(st, &in, &err), 0);
    commit(st);
    assert_true(generation(st) > g0);
    assert_int_equal(cb_store_acme_settings_get(st, &out, &err), 0);
    assert_memory_equal(&in, &out, sizeof(in));

    /* Put replaces the whole row. */
    in.agreetos = false;
    in.eab_kid[0] = in.eab_hmac[0] = '\0';
    begin(st);
    assert_int_equal(cb_store_acme_settings_put(st, &in, &err), 0);
    commit(st);
    assert_int_equal(cb_store_acme_settings_get(st, &out, &err), 0);
    assert_false(out.agreetos);
    assert_string_equal(out.eab_kid, "");
    assert_string_equal(out.eab_hmac, "");
    assert_int_equal(out.keytype, CB_ACME_KT_RSA);
    cb_store_close(st);
}

/* ---- managed bindings ----------------------------------------------------------------- */

struct seen {
    struct cb_acme_state v[8];
    size_t n;
};

static int collect(const struct cb_acme_state *s, void *arg)
{
    struct seen *seen = arg;
    assert_true(seen->n < 8);
    seen->v[seen->n++] = *s;
    return 0;
}

static void test_foreach_lists_managed_bindings_only(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_err err = {0};
    struct seen seen = {0};
    (void)unused;

    add_binding(st, IP, THUMB_A, false);
    add_binding(st, WWW, NULL, true);
    add_binding(st, SHOP, THUMB_A, true); /* made managed, keeps its certificate */
    add_binding(st, "hostnameport=manual.example.com:443", THUMB_A, false);
    assert_int_equal(cb_store_acme_state_foreach(st, collect, &seen, &err), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.v[0].key, SHOP); /* key order */
    assert_string_equal(seen.v[0].certhash, THUMB_A);
    assert_string_equal(seen.v[1].key, WWW);
    assert_string_equal(seen.v[1].certhash, "");
    for (size_t i = 0; i < 2; i++) { /* no state row yet: pending, zeros */
        assert_int_equal(seen.v[i].status, CB_ACME_PENDING);
        assert_int_equal(seen.v[i].not_after, 0);
        assert_int_equal(seen.v[i].last_attempt, 0);
        assert_int_equal(seen.v[i].failures, 0);
        assert_string_equal(seen.v[i].last_error, "");
        assert_false(seen.v[i].renew_force);
    }
    cb_store_close(st);
}

static void test_get_refuses_what_is_not_managed(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_acme_state s;
    struct cb_err err = {0};
    (void)unused;

    add_binding(st, IP, THUMB_A, false);
    assert_int_equal(cb_store_acme_state_get(st, IP, &s, &err), CB_ENOENT);
    assert_non_null(strstr(err.msg, "not a managed binding"));
    assert_int_equal(cb_store_acme_state_get(st, WWW, &s, &err), CB_ENOENT);
    assert_non_null(strstr(err.msg, "no binding " WWW));
    s = (struct cb_acme_state){.status = CB_ACME_VALID};
    snprintf(s.key, sizeof(s.key), "%s", IP);
    begin(st);
    assert_int_equal(cb_store_acme_state_put(st, &s, &err), CB_ENOENT);
    assert_int_equal(cb_store_acme_renew_request(st, IP, false, 1, &err), CB_ENOENT);
    assert_int_equal(cb_store_acme_renew_request(st, NULL, false, 1, &err), CB_ENOENT);
    assert_non_null(strstr(err.msg, "no managed binding"));
    cb_store_rollback(st);
    cb_store_close(st);
}

static void test_state_round_trip_and_certhash_is_the_bindings(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_acme_state in = {0}, out;
    struct cb_err err = {0};
    (void)unused;

    add_binding(st, WWW, NULL, true);
    snprintf(in.key, sizeof(in.key), "%s", WWW);
    in.status = CB_ACME_FAILED;
    snprintf(in.certhash, sizeof(in.certhash), "%s", THUMB_A); /* ignored */
    in.not_after = 1800000000;
    in.renew_after = 1790000000;
    in.last_attempt = 1700000000;
    in.next_attempt = 1700000120;
    in.failures = 2;
    snprintf(in.last_error, sizeof(in.last_error),
             "urn:ietf:params:acme:error:rateLimited: too many certificates");
    in.renew_requested = 1700000001;
    in.renew_force = true;
    uint64_t g0 = generation(st);
    begin(st);
    assert_int_equal(cb_store_acme_state_put(st, &in, &err), 0);
    commit(st);
    assert_true(generation(st) > g0); /* serve and the admin page see it */
    assert_int_equal(cb_store_acme_state_get(st, WWW, &out, &err), 0);
    assert_string_equal(out.certhash, ""); /* the binding has none */
    memcpy(in.certhash, out.certhash, sizeof(in.certhash));
    assert_memory_equal(&in, &out, sizeof(in));
    cb_store_close(st);
}

static void test_state_goes_with_the_binding(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_acme_state s = {.status = CB_ACME_VALID, .failures = 1};
    struct cb_binding b;
    struct cb_err err = {0};
    struct seen seen = {0};
    (void)unused;

    add_binding(st, WWW, NULL, true);
    add_binding(st, SHOP, THUMB_A, true);
    begin(st);
    snprintf(s.key, sizeof(s.key), "%s", WWW);
    assert_int_equal(cb_store_acme_state_put(st, &s, &err), 0);
    snprintf(s.key, sizeof(s.key), "%s", SHOP);
    assert_int_equal(cb_store_acme_state_put(st, &s, &err), 0);
    commit(st);

    /* Still managed after another change: the state stays. */
    b = get_binding(st, SHOP);
    snprintf(b.backend, sizeof(b.backend), "127.0.0.1:8080");
    begin(st);
    assert_int_equal(cb_store_binding_update(st, &b, &err), 0);
    commit(st);
    assert_int_equal(cb_store_acme_state_get(st, SHOP, &s, &err), 0);
    assert_int_equal(s.status, CB_ACME_VALID);

    /* Made manual: the state goes. Made managed again: pending from scratch. */
    b.flags &= ~(uint32_t)CB_OPT_ACME;
    begin(st);
    assert_int_equal(cb_store_binding_update(st, &b, &err), 0);
    commit(st);
    b.flags |= CB_OPT_ACME;
    begin(st);
    assert_int_equal(cb_store_binding_update(st, &b, &err), 0);
    commit(st);
    assert_int_equal(cb_store_acme_state_get(st, SHOP, &s, &err), 0);
    assert_int_equal(s.status, CB_ACME_PENDING);
    assert_int_equal(s.failures, 0);

    /* Deleted: the state goes; a binding added again under that key starts pending. */
    b = get_binding(st, WWW);
    begin(st);
    assert_int_equal(cb_store_binding_delete(st, &b.key, &err), 0);
    commit(st);
    add_binding(st, WWW, NULL, true);
    assert_int_equal(cb_store_acme_state_foreach(st, collect, &seen, &err), 0);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.v[1].status, CB_ACME_PENDING);
    assert_int_equal(seen.v[1].failures, 0);
    cb_store_close(st);
}

static void test_renew_request_keeps_the_rest_of_the_state(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_acme_state s = {.status = CB_ACME_VALID, .failures = 3, .last_attempt = 50};
    struct cb_err err = {0};
    struct seen seen = {0};
    (void)unused;

    add_binding(st, WWW, NULL, true);
    add_binding(st, SHOP, NULL, true);
    add_binding(st, IP, THUMB_A, false);
    snprintf(s.key, sizeof(s.key), "%s", WWW);
    snprintf(s.last_error, sizeof(s.last_error), "earlier");
    begin(st);
    assert_int_equal(cb_store_acme_state_put(st, &s, &err), 0);
    assert_int_equal(cb_store_acme_renew_request(st, WWW, true, 1000, &err), 0);
    commit(st);
    assert_int_equal(cb_store_acme_state_get(st, WWW, &s, &err), 0);
    assert_int_equal(s.renew_requested, 1000);
    assert_true(s.renew_force);
    assert_int_equal(s.status, CB_ACME_VALID);
    assert_int_equal(s.failures, 3);
    assert_int_equal(s.last_attempt, 50);
    assert_string_equal(s.last_error, "earlier");
    assert_int_equal(cb_store_acme_state_get(st, SHOP, &s, &err), 0);
    assert_int_equal(s.renew_requested, 0); /* only the one asked for */

    /* Every managed binding, and only those; a later request replaces force. */
    begin(st);
    assert_int_equal(cb_store_acme_renew_request(st, NULL, false, 2000, &err), 0);
    commit(st);
    assert_int_equal(cb_store_acme_state_foreach(st, collect, &seen, &err), 0);
    assert_int_equal(seen.n, 2);
    for (size_t i = 0; i < seen.n; i++) {
        assert_int_equal(seen.v[i].renew_requested, 2000);
        assert_false(seen.v[i].renew_force);
    }
    assert_int_equal(seen.v[1].failures, 3);
    cb_store_close(st);
}

static void test_names(void **unused)
{
    (void)unused;
    assert_string_equal(cb_acme_status_name(CB_ACME_PENDING), "pending");
    assert_string_equal(cb_acme_status_name(CB_ACME_VALID), "valid");
    assert_string_equal(cb_acme_status_name(CB_ACME_RENEWING), "renewing");
    assert_string_equal(cb_acme_status_name(CB_ACME_FAILED), "failed");
    assert_string_equal(cb_acme_keytype_name(CB_ACME_KT_ECDSA), "ecdsa");
    assert_string_equal(cb_acme_keytype_name(CB_ACME_KT_RSA), "rsa");
}

/* ---- the serve lock ------------------------------------------------------------------- */

static void test_serve_lock(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_err err = {0};
    bool running = true;
    int fd = -1, fd2 = -1;
    (void)unused;

    assert_int_equal(cb_store_serve_running(st, &running), 0);
    assert_false(running); /* no lock file yet */
    assert_int_equal(cb_store_serve_lock(st, &fd, &err), 0);
    assert_true(fd >= 0);
    assert_int_equal(cb_store_serve_running(st, &running), 0);
    assert_true(running); /* seen even from this process: an open-file-description lock */
    assert_int_equal(cb_store_serve_lock(st, &fd2, &err), CB_EBUSY);
    assert_non_null(strstr(err.msg, "another certbind serve is running"));
    /* Another descriptor of the file opened and closed does not drop the lock. */
    char path[256];
    snprintf(path, sizeof(path), "%s/serve.lock", state);
    int other = open(path, O_RDONLY);
    assert_true(other >= 0);
    close(other);
    assert_int_equal(cb_store_serve_running(st, &running), 0);
    assert_true(running);
    close(fd);
    assert_int_equal(cb_store_serve_running(st, &running), 0);
    assert_false(running);
    cb_store_close(st);
}

/* ---- files that follow a transaction -------------------------------------------------- */

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    close(fd);
}

static void test_files_follow_the_transaction(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_err err = {0};
    char a[256], b[256], outside[256];
    (void)unused;

    snprintf(a, sizeof(a), "%s/certs/a.pem", state);
    snprintf(b, sizeof(b), "%s/certs/b.pem", state);
    snprintf(outside, sizeof(outside), "%s/outside.pem", base);
    touch(a);
    touch(b);
    touch(outside);
    begin(st);
    assert_int_equal(cb_store_unlink_on_rollback(st, a, &err), 0);
    assert_int_equal(cb_store_unlink_after_commit(st, b, &err), 0);
    assert_int_equal(cb_store_unlink_on_rollback(st, outside, &err), 0); /* not ours: kept */
    cb_store_rollback(st);
    assert_int_not_equal(access(a, F_OK), 0);
    assert_int_equal(access(b, F_OK), 0);
    assert_int_equal(access(outside, F_OK), 0);

    touch(a);
    begin(st);
    assert_int_equal(cb_store_unlink_on_rollback(st, a, &err), 0);
    assert_int_equal(cb_store_unlink_after_commit(st, b, &err), 0);
    commit(st);
    cb_store_rollback(st); /* after a commit, as commands do: changes nothing */
    assert_int_equal(access(a, F_OK), 0);
    assert_int_not_equal(access(b, F_OK), 0);
    cb_store_close(st);
}

/* ---- importing what serve obtained, and moving the binding to it ----------------------- */

static void test_import_pem_adds_an_acme_issued_certificate(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_cert_row row;
    struct cb_err err = {0};
    char thumb[CB_THUMB_LEN + 1] = "", again[CB_THUMB_LEN + 1] = "";
    struct stat sb;
    (void)unused;

    begin(st);
    if (cb_certstore_import_pem(st, pem_chain[0], pem_chain_len[0], pem_key[0], pem_key_len[0],
                                thumb, &err) != 0)
        fail_msg("import: %s", err.msg);
    commit(st);
    assert_int_equal(strlen(thumb), CB_THUMB_LEN);
    assert_int_equal(cb_store_cert_get(st, thumb, &row, &err), 0);
    assert_true(row.acme_issued);
    assert_int_equal(stat(row.key_path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(access(row.cert_path, R_OK), 0);
    cb_cert_row_clear(&row);

    /* The same certificate again: the same row, nothing new. */
    begin(st);
    assert_int_equal(cb_certstore_import_pem(st, pem_chain[0], pem_chain_len[0], pem_key[0],
                                             pem_key_len[0], again, &err),
                     0);
    commit(st);
    assert_string_equal(again, thumb);

    /* The wrong key: refused, nothing written, thumb untouched. */
    memset(again, 'x', CB_THUMB_LEN);
    begin(st);
    assert_int_equal(cb_certstore_import_pem(st, pem_chain[0], pem_chain_len[0], pem_key[1],
                                             pem_key_len[1], again, &err),
                     CB_EBADFILE);
    assert_int_equal(
        cb_certstore_import_pem(st, "junk", 4, pem_key[0], pem_key_len[0], again, &err),
        CB_EBADFILE);
    cb_store_rollback(st);
    assert_int_equal(again[0], 'x');
    cb_store_close(st);
}

static void test_import_pem_rolled_back_leaves_no_files(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_err err = {0};
    char thumb[CB_THUMB_LEN + 1], cert_path[CB_PATH_MAX + 1], key_path[CB_PATH_MAX + 1];
    struct cb_cert_row row;
    (void)unused;

    begin(st);
    assert_int_equal(cb_certstore_import_pem(st, pem_chain[1], pem_chain_len[1], pem_key[1],
                                             pem_key_len[1], thumb, &err),
                     0);
    cb_store_cert_paths(st, thumb, cert_path, key_path, sizeof(cert_path));
    assert_int_equal(access(key_path, F_OK), 0);
    cb_store_rollback(st);
    assert_int_not_equal(access(cert_path, F_OK), 0);
    assert_int_not_equal(access(key_path, F_OK), 0);
    assert_int_equal(cb_store_cert_get(st, thumb, &row, &err), CB_ENOENT);
    cb_store_close(st);
}

/* Imports certificate i as a person would (not ACME-issued); returns its thumbprint. */
static void import_by_hand(struct cb_store *st, int i, char thumb[CB_THUMB_LEN + 1])
{
    struct cb_cert_bundle *bundle = NULL;
    struct cb_cert_info info = {0};
    struct cb_err err = {0};
    bool existed;

    assert_int_equal(cb_cert_bundle_from_pem("test", pem_chain[i], pem_chain_len[i], pem_key[i],
                                             pem_key_len[i], &bundle, &err),
                     0);
    assert_int_equal(cb_cert_bundle_info(bundle, &info, &err), 0);
    begin(st);
    if (cb_certstore_import(st, bundle, &info, NULL, NULL, &existed, NULL, NULL, &err) != 0)
        fail_msg("import: %s", err.msg);
    commit(st);
    memcpy(thumb, info.thumbprint, CB_THUMB_LEN + 1);
    cb_cert_info_clear(&info);
    cb_cert_bundle_free(bundle);
}

static void test_rebind_deletes_the_previous_acme_certificate(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_err err = {0};
    struct cb_cert_row row;
    char first[CB_THUMB_LEN + 1], second[CB_THUMB_LEN + 1];
    char cert_path[CB_PATH_MAX + 1], key_path[CB_PATH_MAX + 1];
    (void)unused;

    add_binding(st, WWW, NULL, true);
    begin(st);
    assert_int_equal(cb_certstore_import_pem(st, pem_chain[0], pem_chain_len[0], pem_key[0],
                                             pem_key_len[0], first, &err),
                     0);
    assert_int_equal(cb_certstore_rebind(st, WWW, first, &err), 0);
    commit(st);
    struct cb_binding b = get_binding(st, WWW);
    assert_string_equal(b.certhash, first);
    assert_true(b.flags & CB_OPT_ACME); /* still managed */

    /* Renewed: the binding moves, the first certificate is used by nothing and goes (its
     * files only once the move is committed). */
    begin(st);
    assert_int_equal(cb_certstore_import_pem(st, pem_chain[1], pem_chain_len[1], pem_key[1],
                                             pem_key_len[1], second, &err),
                     0);
    assert_int_equal(cb_certstore_rebind(st, WWW, second, &err), 0);
    cb_store_cert_paths(st, first, cert_path, key_path, sizeof(cert_path));
    assert_int_equal(access(key_path, F_OK), 0);
    commit(st);
    assert_string_equal(get_binding(st, WWW).certhash, second);
    assert_int_equal(cb_store_cert_get(st, first, &row, &err), CB_ENOENT);
    assert_int_not_equal(access(cert_path, F_OK), 0);
    assert_int_not_equal(access(key_path, F_OK), 0);

    /* Moving to what it has already: nothing. To a certificate not in the store: ENOENT. */
    begin(st);
    assert_int_equal(cb_certstore_rebind(st, WWW, second, &err), 0);
    assert_int_equal(cb_certstore_rebind(st, WWW, THUMB_A, &err), CB_ENOENT);
    assert_int_equal(cb_certstore_rebind(st, SHOP, second, &err), CB_ENOENT);
    assert_int_equal(cb_certstore_rebind(st, "nonsense", second, &err), CB_EINVAL);
    cb_store_rollback(st);
    cb_store_close(st);
}

static void test_rebind_keeps_a_certificate_still_used_or_imported_by_hand(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_err err = {0};
    struct cb_cert_row row;
    char mine[CB_THUMB_LEN + 1], issued[CB_THUMB_LEN + 1];
    (void)unused;

    import_by_hand(st, 0, mine);
    add_binding(st, WWW, mine, true); /* made managed, keeps the user's certificate */
    add_binding(st, SHOP, NULL, true);
    begin(st);
    assert_int_equal(cb_certstore_import_pem(st, pem_chain[1], pem_chain_len[1], pem_key[1],
                                             pem_key_len[1], issued, &err),
                     0);
    assert_int_equal(cb_certstore_rebind(st, WWW, issued, &err), 0);
    assert_int_equal(cb_certstore_rebind(st, SHOP, issued, &err), 0);
    commit(st);
    assert_int_equal(cb_store_cert_get(st, mine, &row, &err), 0); /* the user's: kept */
    assert_false(row.acme_issued);
    cb_cert_row_clear(&row);

    /* One of two bindings moves away from the issued certificate: still used, kept. */
    begin(st);
    assert_int_equal(cb_certstore_rebind(st, SHOP, mine, &err), 0);
    commit(st);
    assert_int_equal(cb_store_cert_get(st, issued, &row, &err), 0);
    assert_true(row.acme_issued);
    assert_int_equal(access(row.key_path, F_OK), 0);
    cb_cert_row_clear(&row);
    cb_store_close(st);
}

/* A store of schema version 2 (before ACME) opens as version 3 with its data whole. */
static void test_migrates_a_version_2_store(void **unused)
{
    struct cb_store *st = open_store();
    struct cb_acme_settings a;
    struct cb_cert_row row;
    struct cb_err err = {0};
    char thumb[CB_THUMB_LEN + 1], cmd[768];
    (void)unused;

    import_by_hand(st, 0, thumb);
    add_binding(st, WWW, thumb, false);
    cb_store_close(st);
    snprintf(cmd, sizeof(cmd),
             "sqlite3 '%s/certbind.db' 'DROP TABLE challenges; DROP TABLE acme_account; DROP TABLE "
             "acme_state; "
             "ALTER TABLE certs DROP COLUMN acme; DROP INDEX bindings_certhash2; ALTER TABLE "
             "bindings DROP "
             "COLUMN certhash2; ALTER TABLE bindings DROP COLUMN clientca; DROP TABLE ticket_keys; "
             "DROP TABLE fleet_state; DROP TABLE fleet_keys; ALTER TABLE certs DROP COLUMN "
             "ocsp_url; PRAGMA user_version=2'",
             state);
    assert_int_equal(sh(cmd), 0);
    st = open_store();
    assert_int_equal(cb_store_cert_get(st, thumb, &row, &err), 0);
    assert_false(row.acme_issued);
    cb_cert_row_clear(&row);
    assert_string_equal(get_binding(st, WWW).certhash, thumb);
    assert_int_equal(cb_store_acme_settings_get(st, &a, &err), CB_ENOENT);
    cb_store_close(st);
    snprintf(cmd, sizeof(cmd), "test \"$(sqlite3 '%s/certbind.db' 'PRAGMA user_version')\" = %d",
             state, CB_STORE_SCHEMA_VERSION);
    assert_int_equal(sh(cmd), 0);
}

#define T(fn) cmocka_unit_test_setup(fn, setup_test)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_settings_absent_then_round_trip),
        T(test_foreach_lists_managed_bindings_only),
        T(test_get_refuses_what_is_not_managed),
        T(test_state_round_trip_and_certhash_is_the_bindings),
        T(test_state_goes_with_the_binding),
        T(test_renew_request_keeps_the_rest_of_the_state),
        T(test_names),
        T(test_serve_lock),
        T(test_files_follow_the_transaction),
        T(test_import_pem_adds_an_acme_issued_certificate),
        T(test_import_pem_rolled_back_leaves_no_files),
        T(test_rebind_deletes_the_previous_acme_certificate),
        T(test_rebind_keeps_a_certificate_still_used_or_imported_by_hand),
        T(test_migrates_a_version_2_store),
    };
    return cmocka_run_group_tests_name("acme_store", tests, setup_run, teardown_run);
}
