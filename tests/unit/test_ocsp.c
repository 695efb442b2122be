/*
 * test_ocsp.c: OCSP stapling's parts below the processes. What a certificate says (AIA
 * URL, must-staple, issuer), the request, the check of a response (good, revoked, for
 * another certificate, signed by another CA, expired, junk, unsuccessful), the set a
 * worker staples from, and the store's cache (atomic file, change-log marker, refusals).
 * Responses come from `openssl ocsp` answering the request cb_ocsp_request_der made.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/ocsp.h"
#include "store/store.h"
#include "tls/cert.h"
#include "tls/ocsp.h"
#include "tls/staple.h"

static char base[64];
static int test_no;

static void sh(const char *cmd)
{
    char full[4096];
    snprintf(full, sizeof(full), "cd '%s' && ( %s ) >/dev/null 2>&1", base, cmd);
    if (system(full) != 0)
        fail_msg("command failed: %s", cmd);
}

static unsigned char *slurp(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", base, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    unsigned char *buf = calloc(1, 65536);
    assert_non_null(buf);
    *len = fread(buf, 1, 65536, f);
    fclose(f);
    return buf;
}

static void path_of(const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", base, name);
}

#define KEY "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
#define CA_EXT                                                                                     \
    "-addext basicConstraints=critical,CA:TRUE -addext "                                           \
    "keyUsage=keyCertSign,cRLSign,digitalSignature "

/* A leaf STEM for CN signed by CA (with extensions EXT), in STEM.crt and STEM.chain. */
static void leaf(const char *ca, const char *stem, const char *ext)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "openssl req " KEY "-subj /CN=%s.test -keyout %s.key -out %s.csr && "
             "printf '%%s\\n' '%s' > %s.ext && "
             "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -days 30 "
             "-extfile %s.ext -out %s.crt && cat %s.crt %s.crt > %s.chain",
             stem, stem, stem, ext, stem, stem, ca, ca, stem, stem, stem, ca, stem);
    sh(cmd);
}

/* openssl ocsp answers STEM's request (STEM.req) from CA's index with CA's key. */
static void answer(const char *ca, const char *stem, const char *out)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl ocsp -index %s.idx -rsigner %s.crt -rkey %s.key -CA %s.crt -reqin %s.req "
             "-respout %s -ndays 1",
             ca, ca, ca, ca, stem, out);
    sh(cmd);
}

static void write_file(const char *name, const unsigned char *p, size_t n)
{
    char path[256];
    path_of(name, path, sizeof(path));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static struct cb_ocsp_cert *load(const char *name)
{
    char path[256];
    struct cb_ocsp_cert *c = NULL;
    struct cb_err err = {0};
    path_of(name, path, sizeof(path));
    if (cb_ocsp_cert_load(path, &c, &err) != 0)
        fail_msg("load %s: %s", name, err.msg);
    return c;
}

/* STEM's request as certbind makes it, written to STEM.req. */
static void request(const char *stem)
{
    char name[64];
    unsigned char *der = NULL;
    size_t len = 0;
    snprintf(name, sizeof(name), "%s.chain", stem);
    struct cb_ocsp_cert *c = load(name);
    assert_int_equal(cb_ocsp_request_der(c, &der, &len, NULL), 0);
    assert_true(len > 0);
    snprintf(name, sizeof(name), "%s.req", stem);
    write_file(name, der, len);
    free(der);
    cb_ocsp_cert_free(c);
}

static int setup_run(void **unused)
{
    (void)unused;
    snprintf(base, sizeof(base), "/tmp/cb-test-ocsp-XXXXXX");
    if (mkdtemp(base) == NULL)
        return -1;
    sh("openssl req -x509 " KEY "-days 30 -subj /CN=ca " CA_EXT "-keyout ca.key -out ca.crt");
    sh("openssl req -x509 " KEY "-days 30 -subj /CN=other " CA_EXT
       "-keyout other.key -out other.crt");
    leaf("ca", "good",
         "authorityInfoAccess=OCSP;URI:http://127.0.0.1:9/ocsp\ntlsfeature=status_request");
    leaf("ca", "revoked", "authorityInfoAccess=OCSP;URI:http://127.0.0.1:9/ocsp");
    leaf("ca", "noaia", "subjectAltName=DNS:noaia.test");
    leaf("other", "stranger", "authorityInfoAccess=OCSP;URI:http://127.0.0.1:9/ocsp");
    /* The index: good valid, revoked revoked; "stranger" is other's. */
    sh("printf 'V\\t300101000000Z\\t\\t%s\\tunknown\\t/CN=good.test\\n' "
       "$(openssl x509 -in good.crt -noout -serial | cut -d= -f2) > ca.idx && "
       "printf 'R\\t300101000000Z\\t240101000000Z\\t%s\\tunknown\\t/CN=revoked.test\\n' "
       "$(openssl x509 -in revoked.crt -noout -serial | cut -d= -f2) >> ca.idx && "
       "printf 'V\\t300101000000Z\\t\\t%s\\tunknown\\t/CN=stranger.test\\n' "
       "$(openssl x509 -in stranger.crt -noout -serial | cut -d= -f2) > other.idx");
    request("good");
    request("revoked");
    request("stranger");
    answer("ca", "good", "good.resp");
    answer("ca", "revoked", "revoked.resp");
    answer("other", "stranger", "stranger.resp");
    return 0;
}

static int teardown_run(void **unused)
{
    char cmd[128];
    (void)unused;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- the certificate and the request ------------------------------------------- */

static void test_cert_facts(void **unused)
{
    (void)unused;
    struct cb_ocsp_cert *c = load("good.chain");
    assert_string_equal(cb_ocsp_cert_url(c), "http://127.0.0.1:9/ocsp");
    assert_true(cb_ocsp_cert_must_staple(c));
    assert_true(cb_ocsp_cert_issuer_ok(c));
    cb_ocsp_cert_free(c);

    c = load("revoked.chain");
    assert_false(cb_ocsp_cert_must_staple(c));
    cb_ocsp_cert_free(c);

    c = load("noaia.chain");
    assert_string_equal(cb_ocsp_cert_url(c), "");
    cb_ocsp_cert_free(c);

    /* The leaf alone: no issuer, so no request. */
    c = load("good.crt");
    assert_false(cb_ocsp_cert_issuer_ok(c));
    unsigned char *der = NULL;
    size_t len = 0;
    struct cb_err err = {0};
    assert_int_equal(cb_ocsp_request_der(c, &der, &len, &err), CB_EINVAL);
    assert_non_null(strstr(err.msg, "full chain"));
    assert_null(der);
    cb_ocsp_cert_free(c);
    cb_ocsp_cert_free(NULL);
}

/* check's one parse of a file (cb_cert_audit_file with its OCSP facts) says what
 * cb_ocsp_cert_load says, request bytes included. */
static void test_cert_facts_from_audit(void **unused)
{
    static const char *const files[] = {"good.chain", "revoked.chain", "noaia.chain", "good.crt"};
    char path[256];
    (void)unused;

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct cb_ocsp_cert *a = load(files[i]), *b = NULL;
        struct cb_cert_audit audit;
        struct cb_err err = {0};
        path_of(files[i], path, sizeof(path));
        if (cb_cert_audit_file(path, &audit, &b, &err) != 0)
            fail_msg("audit %s: %s", files[i], err.msg);
        assert_non_null(b);
        assert_string_equal(cb_ocsp_cert_url(a), cb_ocsp_cert_url(b));
        assert_int_equal(cb_ocsp_cert_must_staple(a), cb_ocsp_cert_must_staple(b));
        assert_int_equal(cb_ocsp_cert_issuer_ok(a), cb_ocsp_cert_issuer_ok(b));
        if (cb_ocsp_cert_issuer_ok(a)) {
            unsigned char *da = NULL, *db = NULL;
            size_t la = 0, lb = 0;
            assert_int_equal(cb_ocsp_request_der(a, &da, &la, &err), 0);
            assert_int_equal(cb_ocsp_request_der(b, &db, &lb, &err), 0);
            assert_int_equal(la, lb);
            assert_memory_equal(da, db, la);
            free(da);
            free(db);
        }
        cb_ocsp_cert_free(a);
        cb_ocsp_cert_free(b);
    }
    /* Not a certificate: no audit, and no OCSP object left behind. */
    struct cb_ocsp_cert *c = (struct cb_ocsp_cert *)&c; /* must be reset */
    struct cb_cert_audit audit;
    struct cb_err err = {0};
    write_file("notpem2", (const unsigned char *)"hello", 5);
    path_of("notpem2", path, sizeof(path));
    assert_int_not_equal(cb_cert_audit_file(path, &audit, &c, &err), 0);
    assert_null(c);
}

static void test_cert_load_refusals(void **unused)
{
    char path[256];
    struct cb_ocsp_cert *c = NULL;
    struct cb_err err = {0};
    (void)unused;

    write_file("notpem", (const unsigned char *)"hello", 5);
    path_of("notpem", path, sizeof(path));
    assert_int_equal(cb_ocsp_cert_load(path, &c, &err), CB_EBADFILE);
    assert_null(c);
    path_of("absent", path, sizeof(path));
    assert_int_not_equal(cb_ocsp_cert_load(path, &c, &err), 0);
    assert_null(c);
}

/* ---- the response ---------------------------------------------------------------- */

static void test_verify_good_and_revoked(void **unused)
{
    struct cb_ocsp_result r;
    struct cb_err err = {0};
    size_t len;
    int64_t now = (int64_t)time(NULL), t, n;
    (void)unused;

    struct cb_ocsp_cert *c = load("good.chain");
    unsigned char *der = slurp("good.resp", &len);
    assert_int_equal(cb_ocsp_response_verify(c, der, len, now, &r, &err), 0);
    assert_int_equal(r.status, CB_OCSP_GOOD);
    assert_true(r.this_update <= now + 5 && r.next_update > now + 86000);
    assert_true(cb_ocsp_response_times(der, len, &t, &n));
    assert_int_equal(t, r.this_update);
    assert_int_equal(n, r.next_update);
    /* Past nextUpdate: refused, and said so. */
    assert_int_equal(cb_ocsp_response_verify(c, der, len, r.next_update + 1, &r, &err), CB_EFAILED);
    assert_non_null(strstr(err.msg, "expired"));
    /* Before thisUpdate by more than the skew allowed. */
    assert_int_equal(cb_ocsp_response_verify(c, der, len, now - 3600, &r, &err), CB_EFAILED);
    assert_non_null(strstr(err.msg, "future"));
    /* Another certificate's response, from the same CA: not about this one. */
    struct cb_ocsp_cert *rc = load("revoked.chain");
    assert_int_equal(cb_ocsp_response_verify(rc, der, len, now, &r, &err), CB_EBADFILE);
    assert_non_null(strstr(err.msg, "not about this certificate"));
    free(der);
    der = slurp("revoked.resp", &len);
    assert_int_equal(cb_ocsp_response_verify(rc, der, len, now, &r, &err), 0);
    assert_int_equal(r.status, CB_OCSP_REVOKED);
    assert_string_equal(cb_ocsp_status_name(r.status), "revoked");
    free(der);
    cb_ocsp_cert_free(rc);
    cb_ocsp_cert_free(c);
}

static void test_verify_refusals(void **unused)
{
    struct cb_ocsp_result r;
    struct cb_err err = {0};
    size_t len;
    int64_t now = (int64_t)time(NULL), t, n;
    (void)unused;

    struct cb_ocsp_cert *c = load("good.chain");
    /* Signed by another CA (for its own certificate). */
    unsigned char *der = slurp("stranger.resp", &len);
    assert_int_not_equal(cb_ocsp_response_verify(c, der, len, now, &r, &err), 0);
    free(der);
    /* The stranger's own CA signed it, but not the issuer in its file: refused too. */
    struct cb_ocsp_cert *s = load("stranger.chain");
    der = slurp("stranger.resp", &len);
    assert_int_equal(cb_ocsp_response_verify(s, der, len, now, &r, &err), 0);
    assert_int_equal(cb_ocsp_response_verify(c, der, len, now, &r, &err), CB_EFAILED);
    assert_non_null(strstr(err.msg, "not signed"));
    /* Cut short, and with a byte after the end. */
    assert_int_equal(cb_ocsp_response_verify(s, der, len - 1, now, &r, &err), CB_EBADFILE);
    der[len] = 0;
    assert_int_equal(cb_ocsp_response_verify(s, der, len + 1, now, &r, &err), CB_EBADFILE);
    free(der);
    cb_ocsp_cert_free(s);
    /* Junk, empty, and an unsuccessful status ("unauthorized": 30 03 0a 01 06). */
    static const unsigned char junk[] = "this is not an OCSP response";
    static const unsigned char unauth[] = {0x30, 0x03, 0x0a, 0x01, 0x06};
    assert_int_equal(cb_ocsp_response_verify(c, junk, sizeof(junk), now, &r, &err), CB_EBADFILE);
    assert_non_null(strstr(err.msg, "not an OCSP response"));
    assert_int_equal(cb_ocsp_response_verify(c, junk, 0, now, &r, &err), CB_EBADFILE);
    assert_int_equal(cb_ocsp_response_verify(c, unauth, sizeof(unauth), now, &r, &err), CB_EFAILED);
    assert_non_null(strstr(err.msg, "unauthorized"));
    assert_false(cb_ocsp_response_times(junk, sizeof(junk), &t, &n));
    assert_false(cb_ocsp_response_times(unauth, sizeof(unauth), &t, &n));
    cb_ocsp_cert_free(c);
}

/* ---- the staple set -------------------------------------------------------------- */

#define T1 "1111111111111111111111111111111111111111"
#define T2 "2222222222222222222222222222222222222222"
#define T3 "3333333333333333333333333333333333333333"

static void test_staples(void **unused)
{
    size_t len;
    int64_t now = (int64_t)time(NULL);
    (void)unused;

    unsigned char *der = slurp("good.resp", &len);
    struct cb_tls_staples *s = cb_tls_staples_new();
    assert_non_null(s);
    assert_int_equal(cb_tls_staples_add(s, T2, der, len, now), 0);
    /* Expired by then: not kept. Junk: not kept. A bad thumbprint: not kept. */
    assert_int_equal(cb_tls_staples_add(s, T1, der, len, now + 2 * 86400), CB_EBADFILE);
    assert_int_equal(cb_tls_staples_add(s, T3, (const unsigned char *)"junk", 4, now), CB_EBADFILE);
    assert_int_equal(cb_tls_staples_add(s, "12", der, len, now), CB_EBADFILE);
    cb_tls_staples_finish(s);
    assert_int_equal(cb_tls_staples_count(s), 1);
    assert_non_null(cb_tls_staples_find(s, T2));
    assert_null(cb_tls_staples_find(s, T1));
    assert_null(cb_tls_staples_find(NULL, T2));

    /* A derived set shares what it copies; the old one can go first. */
    struct cb_tls_staples *d = cb_tls_staples_new();
    assert_int_equal(cb_tls_staples_add_from(d, s, T2), 0);
    assert_int_equal(cb_tls_staples_add_from(d, s, T1), 0); /* none: nothing added */
    assert_int_equal(cb_tls_staples_add(d, T3, der, len, now), 0);
    cb_tls_staples_finish(d);
    const struct cb_tls_staple *shared = cb_tls_staples_find(d, T2);
    assert_ptr_equal(shared, cb_tls_staples_find(s, T2));
    cb_tls_staples_unref(s);
    assert_ptr_equal(cb_tls_staples_find(d, T2), shared);
    assert_int_equal(cb_tls_staples_count(d), 2);
    cb_tls_staples_unref(cb_tls_staples_ref(d));
    cb_tls_staples_unref(d);
    cb_tls_staples_unref(NULL);
    free(der);
}

/* ---- the cache in the store -------------------------------------------------------- */

static void test_store_cache(void **unused)
{
    char state[160], path[400];
    struct cb_store *st = NULL;
    struct cb_err err = {0};
    struct cb_store_changes ch;
    unsigned char *back = NULL;
    size_t len, blen = 0;
    uint64_t g0 = 0, g1 = 0;
    struct stat sb;
    (void)unused;

    snprintf(state, sizeof(state), "%s/state%d", base, ++test_no);
    if (cb_store_open(state, CB_STORE_WRITE, &st, &err) != 0)
        fail_msg("open: %s", err.msg);
    unsigned char *der = slurp("good.resp", &len);
    assert_int_equal(cb_store_ocsp_read(st, T1, &back, &blen, &err), CB_ENOENT);
    assert_int_equal(cb_store_generation(st, &g0), 0);
    assert_int_equal(cb_store_ocsp_put(st, T1, der, len, &err), 0);
    assert_int_equal(cb_store_generation(st, &g1), 0);
    assert_int_equal(g1, g0 + 1);
    cb_store_ocsp_path(st, T1, path, sizeof(path));
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    { /* renamed into place, nothing left over: the folder holds the response alone */
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "test \"$(ls -A %s/ocsp)\" = %s.der", state, T1);
        assert_int_equal(system(cmd), 0);
    }
    assert_int_equal(cb_store_ocsp_read(st, T1, &back, &blen, &err), 0);
    assert_int_equal(blen, len);
    assert_memory_equal(back, der, len);
    free(back);
    /* The change log: this thumbprint, and nothing in the bindings. */
    assert_int_equal(cb_store_changes_since(st, g0, &ch, &err), 0);
    assert_int_equal(ch.n_ocsp, 1);
    assert_string_equal(ch.ocsp[0], T1);
    assert_true(ch.only_challenges);
    assert_int_equal(ch.n_set + ch.n_removed, 0);
    cb_store_changes_clear(&ch);
    /* Replaced, then deleted; a second delete changes nothing. */
    assert_int_equal(cb_store_ocsp_put(st, T1, der, len, &err), 0);
    assert_int_equal(cb_store_ocsp_delete(st, T1, &err), 0);
    assert_int_equal(cb_store_ocsp_read(st, T1, &back, &blen, &err), CB_ENOENT);
    assert_int_equal(cb_store_generation(st, &g1), 0);
    assert_int_equal(cb_store_ocsp_delete(st, T1, &err), 0);
    assert_int_equal(cb_store_generation(st, &g0), 0);
    assert_int_equal(g0, g1);
    /* Refusals leave nothing behind. */
    assert_int_equal(cb_store_ocsp_put(st, "../../etc/passwd", der, len, &err), CB_EINVAL);
    assert_int_equal(
        cb_store_ocsp_put(st, "abcdef0123456789abcdef0123456789abcdef01", der, len, &err),
        CB_EINVAL); /* thumbprints are upper case */
    assert_int_equal(cb_store_ocsp_put(st, T2, der, 0, &err), CB_EINVAL);
    assert_int_equal(cb_store_ocsp_put(st, T2, der, CB_STORE_OCSP_MAX + 1, &err), CB_EINVAL);
    assert_int_equal(cb_store_ocsp_read(st, T2, &back, &blen, &err), CB_ENOENT);
    assert_int_equal(cb_store_generation(st, &g1), 0);
    assert_int_equal(g0, g1);
    /* A damaged cache file (too large) is refused, not read. */
    cb_store_ocsp_path(st, T3, path, sizeof(path));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < CB_STORE_OCSP_MAX + 1; i++)
        fputc(0, f);
    fclose(f);
    assert_int_equal(cb_store_ocsp_read(st, T3, &back, &blen, &err), CB_EBADFILE);
    free(der);
    cb_store_close(st);
}

/* The listing of the cache: responses only (THUMB.der, upper-case thumbprints), sorted;
 * nothing and no error when the folder does not exist yet. */
static void test_store_cache_list(void **unused)
{
    char state[160], path[400];
    struct cb_store *st = NULL;
    struct cb_err err = {0};
    char(*v)[CB_THUMB_LEN + 1] = NULL;
    size_t n = 99, len;
    (void)unused;

    snprintf(state, sizeof(state), "%s/state%d", base, ++test_no);
    if (cb_store_open(state, CB_STORE_WRITE, &st, &err) != 0)
        fail_msg("open: %s", err.msg);
    assert_int_equal(cb_store_ocsp_list(st, &v, &n, &err), 0);
    assert_int_equal(n, 0);
    free(v);
    unsigned char *der = slurp("good.resp", &len);
    assert_int_equal(cb_store_ocsp_put(st, T3, der, len, &err), 0);
    assert_int_equal(cb_store_ocsp_put(st, T1, der, len, &err), 0);
    static const char *const junk[] = {
        "/ocsp/abcdef0123456789abcdef0123456789abcdef01.der", /* lower case */
        "/ocsp/" T2 ".der.tmp",
        "/ocsp/" T2 ".txt",
        "/ocsp/" T2 "0.der",
        "/ocsp/short.der",
        "/ocsp/GGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGG.der"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", state, junk[i]);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fclose(f);
    }
    assert_int_equal(cb_store_ocsp_list(st, &v, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0], T1);
    assert_string_equal(v[1], T3);
    free(v);
    free(der);
    cb_store_close(st);
}

/* The store records at import whether a certificate names an http responder, so that
 * serve learns it from one query; a row from before schema 8 says "not known" until serve
 * records what the file said, once, without a new generation; known rows are not
 * overwritten. */
static int collect_thumb(const char *thumb, void *arg)
{
    char(*out)[CB_THUMB_LEN + 1] = arg;
    for (int i = 0; i < 4; i++)
        if (out[i][0] == '\0') {
            snprintf(out[i], sizeof(out[i]), "%s", thumb);
            break;
        }
    return 0;
}

static void test_store_records_the_ocsp_url(void **unused)
{
    static const char *const stems[] = {"good", "noaia"};
    static const enum cb_ocsp_url want[] = {CB_OCSP_URL_HTTP, CB_OCSP_URL_NONE};
    char state[160], crt[256], key[256], cert_path[400], key_path[400], cmd[600];
    struct cb_cert_info info[2];
    struct cb_cert_row row;
    struct cb_store *st = NULL;
    struct cb_err err = {0};
    uint64_t g0 = 0, g1 = 0;
    (void)unused;

    snprintf(state, sizeof(state), "%s/state%d", base, ++test_no);
    if (cb_store_open(state, CB_STORE_WRITE, &st, &err) != 0)
        fail_msg("open: %s", err.msg);
    for (int i = 0; i < 2; i++) {
        struct cb_cert_bundle *b = NULL;
        path_of(stems[i], crt, sizeof(crt));
        strcat(crt, ".chain");
        path_of(stems[i], key, sizeof(key));
        strcat(key, ".key");
        if (cb_cert_bundle_load(crt, key, NULL, &b, &err) != 0)
            fail_msg("load %s: %s", crt, err.msg);
        assert_int_equal(cb_cert_bundle_info(b, &info[i], &err), 0);
        assert_int_equal(info[i].ocsp_url, want[i]);
        cb_store_cert_paths(st, info[i].thumbprint, cert_path, key_path, sizeof(cert_path));
        assert_int_equal(cb_cert_bundle_write(b, cert_path, key_path, &err), 0);
        cb_cert_bundle_free(b);
        assert_int_equal(cb_store_begin(st, &err), 0);
        assert_int_equal(cb_store_cert_put(st, &info[i], cert_path, key_path, &err), 0);
        assert_int_equal(cb_store_commit(st, &err), 0);
        assert_int_equal(cb_store_cert_get(st, info[i].thumbprint, &row, &err), 0);
        assert_int_equal(row.info.ocsp_url, want[i]);
        cb_cert_row_clear(&row);
    }
    char none[4][CB_THUMB_LEN + 1] = {{0}};
    assert_int_equal(
        cb_store_cert_foreach_ocsp_url(st, CB_OCSP_URL_NONE, collect_thumb, none, &err), 0);
    assert_string_equal(none[0], info[1].thumbprint);
    assert_string_equal(none[1], "");
    cb_store_close(st);

    /* Rows as a store before schema 8 holds them: not known. */
    snprintf(cmd, sizeof(cmd), "sqlite3 %s/certbind.db 'UPDATE certs SET ocsp_url = 0'", state);
    sh(cmd);
    if (cb_store_open(state, CB_STORE_WRITE, &st, &err) != 0)
        fail_msg("open: %s", err.msg);
    assert_int_equal(cb_store_cert_get(st, info[0].thumbprint, &row, &err), 0);
    assert_int_equal(row.info.ocsp_url, CB_OCSP_URL_UNKNOWN);
    cb_cert_row_clear(&row);
    memset(none, 0, sizeof(none));
    assert_int_equal(
        cb_store_cert_foreach_ocsp_url(st, CB_OCSP_URL_NONE, collect_thumb, none, &err), 0);
    assert_string_equal(none[0], "");

    /* Learned: recorded without a new generation; a fact for a known row, an unknown
     * thumbprint or a value that is not a fact changes nothing. */
    struct cb_ocsp_url_fact facts[4] = {{.url = 7},
                                        {.url = CB_OCSP_URL_HTTP},
                                        {.url = CB_OCSP_URL_NONE},
                                        {.url = CB_OCSP_URL_NONE}};
    snprintf(facts[0].thumb, sizeof(facts[0].thumb), "%s", info[0].thumbprint);
    snprintf(facts[1].thumb, sizeof(facts[1].thumb), "%s", info[0].thumbprint);
    snprintf(facts[2].thumb, sizeof(facts[2].thumb), "%s", info[1].thumbprint);
    snprintf(facts[3].thumb, sizeof(facts[3].thumb), "%s", T1);
    assert_int_equal(cb_store_generation(st, &g0), 0);
    assert_int_equal(cb_store_cert_learn_ocsp_url(st, facts, 1, &err), 0); /* 7: no fact */
    assert_int_equal(cb_store_cert_get(st, info[0].thumbprint, &row, &err), 0);
    assert_int_equal(row.info.ocsp_url, CB_OCSP_URL_UNKNOWN);
    cb_cert_row_clear(&row);
    assert_int_equal(cb_store_cert_learn_ocsp_url(st, facts + 1, 3, &err), 0);
    assert_int_equal(cb_store_generation(st, &g1), 0);
    assert_int_equal(g0, g1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cb_store_cert_get(st, info[i].thumbprint, &row, &err), 0);
        assert_int_equal(row.info.ocsp_url, want[i]);
        cb_cert_row_clear(&row);
    }
    facts[1].url = CB_OCSP_URL_NONE; /* known now: not overwritten */
    assert_int_equal(cb_store_cert_learn_ocsp_url(st, facts + 1, 1, &err), 0);
    assert_int_equal(cb_store_cert_get(st, info[0].thumbprint, &row, &err), 0);
    assert_int_equal(row.info.ocsp_url, CB_OCSP_URL_HTTP);
    cb_cert_row_clear(&row);
    /* Never inside another transaction. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_cert_learn_ocsp_url(st, facts, 1, &err), CB_EINVAL);
    cb_store_rollback(st);
    for (int i = 0; i < 2; i++)
        cb_cert_info_clear(&info[i]);
    cb_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert_facts),
        cmocka_unit_test(test_cert_load_refusals),
        cmocka_unit_test(test_cert_facts_from_audit),
        cmocka_unit_test(test_verify_good_and_revoked),
        cmocka_unit_test(test_verify_refusals),
        cmocka_unit_test(test_staples),
        cmocka_unit_test(test_store_cache),
        cmocka_unit_test(test_store_cache_list),
        cmocka_unit_test(test_store_records_the_ocsp_url),
    };
    return cmocka_run_group_tests(tests, setup_run, teardown_run);
}
