/*
 * test_cert.c: certificate import (cb_cert_bundle_load) from PEM and PKCS#12, and
 * what is recorded about a certificate (cb_cert_bundle_info), and a batch's key cache
 * (cb_cert_bundle_load_cached) against the plain load. The test files are
 * made once per run with the openssl command in a mkdtemp folder.
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
#include <unistd.h>

#include "tls/cert.h"

static char dir[64];

static int sh_failures;

/* Runs a shell command built from fmt in the test folder; counts and prints failures. */
static void sh(const char *fmt, ...) CB_PRINTF(1, 2);
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    int n;

    n = snprintf(cmd, sizeof(cmd), "cd '%s' && ( ", dir);
    va_start(ap, fmt);
    n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof(cmd) - (size_t)n, " ) >/dev/null 2>&1");
    if (system(cmd) != 0) {
        print_error("command failed: %s\n", cmd);
        sh_failures++;
    }
}

/* Path of a file in the test folder (a static buffer per call slot). */
static const char *p(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

#define EC_REQ "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

static int setup_files(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cb-test-cert-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    /* EC P-256 with SANs (mixed case, a duplicate, a wildcard, an IP) */
    sh(EC_REQ " -days 30 -subj '/O=Example/CN=www.example.com'"
              " -addext 'subjectAltName=DNS:www.example.com,DNS:Example.COM,DNS:WWW.example.com,"
              "DNS:*.example.org,IP:203.0.113.5' -keyout ec.key -out ec.crt");
    sh("cat ec.crt ec.key > ec-combined.pem && cat ec.key ec.crt > ec-key-first.pem");
    sh("openssl pkey -in ec.key -aes256 -passout pass:pw -out ec-enc.key");
    sh("cat ec.crt ec-enc.key > ec-enc-combined.pem");
    sh("openssl pkcs12 -export -in ec.crt -inkey ec.key -passout pass: -out ec-nopw.p12");
    sh("openssl pkcs12 -export -in ec.crt -inkey ec.key -passout pass:s3cret -out ec-pw.p12");
    sh("openssl x509 -in ec.crt -outform DER -out ec.der");
    /* RSA 2048 with a CN and no SANs */
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 10 -subj '/CN=Legacy.Example.NET'"
       " -keyout rsa.key -out rsa.crt");
    /* SANs of other types only: the CN is the name */
    sh(EC_REQ " -days 10 -subj '/CN=ip-only.example.com' -addext 'subjectAltName=IP:192.0.2.1'"
              " -keyout iponly.key -out iponly.crt");
    /* CN that is not a DNS name, no SANs: no names */
    sh(EC_REQ " -days 10 -subj '/CN=Example Corp' -keyout corp.key -out corp.crt");
    /* SANs and a different CN: only the SANs */
    sh(EC_REQ " -days 10 -subj '/CN=cn-only.example.com'"
              " -addext 'subjectAltName=DNS:san.example.com' -keyout sancn.key -out sancn.crt");
    /* Ed25519 and P-384 */
    sh("openssl req -x509 -newkey ed25519 -nodes -days 10 -subj '/CN=ed.example.com'"
       " -keyout ed.key -out ed.crt");
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -days 10"
       " -subj '/CN=p384.example.com' -keyout p384.key -out p384.crt");
    /* A CA and a leaf it signed; the bundle lists the CA first */
    sh(EC_REQ " -days 10 -subj '/CN=Test CA' -keyout ca.key -out ca.crt");
    sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
       " -subj '/CN=leaf.example.com' -keyout leaf.key -out leaf.csr");
    sh("printf 'subjectAltName=DNS:leaf.example.com\\n' > leaf.ext");
    sh("openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 5"
       " -extfile leaf.ext -out leaf.crt");
    sh("cat ca.crt leaf.crt leaf.key > chain-ca-first.pem");
    sh("openssl pkcs12 -export -in leaf.crt -inkey leaf.key -certfile ca.crt -passout pass:"
       " -out chain.p12");
    /* Formats met in the field: older PKCS#12 (RC2-40, as Windows exported before Server
     * 2019), traditional "EC PRIVATE KEY" with "EC PARAMETERS", traditional RSA keys
     * (plain and with Proc-Type encryption), CRLF line ends and a UTF-8 byte order mark. */
    sh("openssl pkcs12 -export -legacy -in ec.crt -inkey ec.key -passout pass:s3cret"
       " -out ec-legacy.p12");
    sh("openssl ecparam -name prime256v1 -genkey -out ecparam.key"
       " && openssl req -x509 -key ecparam.key -subj '/CN=ecparam.example.com' -days 3"
       " -out ecparam.crt && cat ecparam.crt ecparam.key > ecparam-combined.pem");
    sh("openssl genrsa -traditional -out rsa-trad.key 2048"
       " && openssl req -x509 -key rsa-trad.key -subj '/CN=trad.example.com' -days 3"
       " -out rsa-trad.crt"
       " && openssl rsa -in rsa-trad.key -traditional -aes256 -passout pass:pw"
       " -out rsa-trad-enc.key");
    sh("sed 's/$/\r/' ec.crt > ec-crlf.crt && sed 's/$/\r/' ec.key > ec-crlf.key");
    sh("printf '\357\273\277' > ec-bom.pem && cat ec.crt ec.key >> ec-bom.pem");
    /* A key that belongs to no certificate here, and files that are not certificates */
    sh("openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out other.key");
    sh("cat ec.crt other.key > mismatch.pem");
    sh("printf 'hello, world\\n' > hello.txt && : > empty.pem && mkdir folder");
    sh("printf -- '-----BEGIN CERTIFICATE-----\\nnot base64\\n-----END CERTIFICATE-----\\n'"
       " > broken.pem");
    return sh_failures == 0 ? 0 : -1;
}

static int teardown_files(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The fingerprint `openssl x509 -fingerprint -<md>` prints, normalised to hex. */
static void openssl_fingerprint(const char *cert, const char *md, char *out, size_t size)
{
    char cmd[1024], line[512];
    FILE *f;

    snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -fingerprint -%s", cert, md);
    f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    assert_int_equal(pclose(f), 0);
    const char *eq = strchr(line, '=');
    assert_non_null(eq);
    size_t n = 0;
    for (const char *c = eq + 1; *c != '\0' && *c != '\n' && n + 1 < size; c++)
        if (*c != ':')
            out[n++] = *c;
    out[n] = '\0';
}

/* Loads a bundle that must load, and returns its info. */
static void load_info(const char *cert, const char *key, const char *password,
                      struct cb_cert_info *info)
{
    struct cb_cert_bundle *b = NULL;
    struct cb_err err = {0};

    if (cb_cert_bundle_load(cert, key, password, &b, &err) != 0)
        fail_msg("%s: %s", cert, err.msg);
    assert_non_null(b);
    if (cb_cert_bundle_info(b, info, &err) != 0)
        fail_msg("%s info: %s", cert, err.msg);
    cb_cert_bundle_free(b);
}

static void assert_names(const struct cb_cert_info *info, const char *const *want, size_t n)
{
    if (info->n_names != n)
        fail_msg("%zu names, want %zu", info->n_names, n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(info->names[i], want[i]) != 0)
            fail_msg("name %zu is '%s', want '%s'", i, info->names[i], want[i]);
}

static void test_loads_pem_with_key_inside_either_order(void **state)
{
    (void)state;
    static const char *const files[] = {"ec-combined.pem", "ec-key-first.pem"};
    char want[64];

    openssl_fingerprint(p("ec.crt"), "sha1", want, sizeof(want));
    for (size_t i = 0; i < 2; i++) {
        struct cb_cert_info info;
        load_info(p(files[i]), NULL, NULL, &info);
        assert_string_equal(info.thumbprint, want);
        assert_int_equal(info.chain_len, 0);
        cb_cert_info_clear(&info);
    }
}

static void test_loads_pem_with_separate_key_file(void **state)
{
    (void)state;
    struct cb_cert_info info;
    char want[64];

    openssl_fingerprint(p("ec.crt"), "sha1", want, sizeof(want));
    load_info(p("ec.crt"), p("ec.key"), NULL, &info);
    assert_string_equal(info.thumbprint, want);
    cb_cert_info_clear(&info);
    /* key= wins over a key in the certificate file */
    load_info(p("mismatch.pem"), p("ec.key"), NULL, &info);
    assert_string_equal(info.thumbprint, want);
    cb_cert_info_clear(&info);
}

static void test_loads_pkcs12_with_and_without_password(void **state)
{
    (void)state;
    struct cb_cert_info info;
    char want[64];

    openssl_fingerprint(p("ec.crt"), "sha1", want, sizeof(want));
    load_info(p("ec-nopw.p12"), NULL, NULL, &info);
    assert_string_equal(info.thumbprint, want);
    assert_string_equal(info.key_type, "EC-P256");
    cb_cert_info_clear(&info);
    load_info(p("ec-nopw.p12"), NULL, "", &info);
    assert_string_equal(info.thumbprint, want);
    cb_cert_info_clear(&info);
    load_info(p("ec-pw.p12"), NULL, "s3cret", &info);
    assert_string_equal(info.thumbprint, want);
    cb_cert_info_clear(&info);
}

static void test_loads_formats_met_in_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *cert, *key, *password, *type;
        const char *same_as; /* certificate whose thumbprint it must have */
    } cases[] = {
        {"ec-legacy.p12", NULL, "s3cret", "EC-P256", "ec.crt"},
        {"ecparam.crt", "ecparam.key", NULL, "EC-P256", "ecparam.crt"},
        {"ecparam-combined.pem", NULL, NULL, "EC-P256", "ecparam.crt"},
        {"rsa-trad.crt", "rsa-trad.key", NULL, "RSA-2048", "rsa-trad.crt"},
        {"rsa-trad.crt", "rsa-trad-enc.key", "pw", "RSA-2048", "rsa-trad.crt"},
        {"ec-crlf.crt", "ec-crlf.key", NULL, "EC-P256", "ec.crt"},
        {"ec-bom.pem", NULL, NULL, "EC-P256", "ec.crt"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cb_cert_info info;
        char want[64];
        openssl_fingerprint(p(cases[i].same_as), "sha1", want, sizeof(want));
        load_info(p(cases[i].cert), cases[i].key ? p(cases[i].key) : NULL, cases[i].password,
                  &info);
        if (strcmp(info.thumbprint, want) != 0 || strcmp(info.key_type, cases[i].type) != 0)
            fail_msg("%s: thumbprint %s key %s, want %s %s", cases[i].cert, info.thumbprint,
                     info.key_type, want, cases[i].type);
        cb_cert_info_clear(&info);
    }
}

static void test_loads_encrypted_pem_key_with_password(void **state)
{
    (void)state;
    struct cb_cert_info info;
    char want[64];

    openssl_fingerprint(p("ec.crt"), "sha1", want, sizeof(want));
    load_info(p("ec.crt"), p("ec-enc.key"), "pw", &info);
    assert_string_equal(info.thumbprint, want);
    cb_cert_info_clear(&info);
    load_info(p("ec-enc-combined.pem"), NULL, "pw", &info);
    assert_string_equal(info.thumbprint, want);
    cb_cert_info_clear(&info);
}

static void test_chain_is_kept_and_leaf_found_by_its_key(void **state)
{
    (void)state;
    struct cb_cert_info info;
    char want[64];
    static const char *const names[] = {"leaf.example.com"};

    openssl_fingerprint(p("leaf.crt"), "sha1", want, sizeof(want));
    load_info(p("chain-ca-first.pem"), NULL, NULL, &info);
    assert_string_equal(info.thumbprint, want);
    assert_int_equal(info.chain_len, 1);
    assert_names(&info, names, 1);
    cb_cert_info_clear(&info);
    load_info(p("chain.p12"), NULL, NULL, &info);
    assert_string_equal(info.thumbprint, want);
    assert_int_equal(info.chain_len, 1);
    cb_cert_info_clear(&info);
}

struct bad_load {
    const char *what;
    const char *cert;
    const char *key; /* NULL: none */
    const char *password;
    int want;
    const char *hint; /* the message must contain it */
};

static void test_bad_inputs_are_refused_with_a_message(void **state)
{
    (void)state;
    static const struct bad_load cases[] = {
        {"encrypted key file without password", "ec.crt", "ec-enc.key", NULL, CB_EBADFILE,
         "password-file"},
        {"encrypted key inside without password", "ec-enc-combined.pem", NULL, NULL, CB_EBADFILE,
         "password-file"},
        {"encrypted key with wrong password", "ec.crt", "ec-enc.key", "nope", CB_EBADFILE,
         "password"},
        {"pkcs12 with password, none given", "ec-pw.p12", NULL, NULL, CB_EBADFILE, "password-file"},
        {"pkcs12 with wrong password", "ec-pw.p12", NULL, "nope", CB_EBADFILE, "password"},
        {"legacy pkcs12 with wrong password", "ec-legacy.p12", NULL, "nope", CB_EBADFILE,
         "wrong password"},
        {"legacy pkcs12 without password", "ec-legacy.p12", NULL, NULL, CB_EBADFILE,
         "password-file"},
        {"traditional encrypted key without password", "rsa-trad.crt", "rsa-trad-enc.key", NULL,
         CB_EBADFILE, "password-file"},
        {"mismatched key file", "ec.crt", "other.key", NULL, CB_EBADFILE, "does not match"},
        {"mismatched key inside", "mismatch.pem", NULL, NULL, CB_EBADFILE, "does not match"},
        {"rsa cert with ec key", "rsa.crt", "ec.key", NULL, CB_EBADFILE, "does not match"},
        {"certificate without key", "ec.crt", NULL, NULL, CB_EBADFILE, "key=FILE"},
        {"key file without key", "ec.crt", "ca.crt", NULL, CB_EBADFILE, "no PEM private key"},
        {"key only", "ec.key", NULL, NULL, CB_EBADFILE, "no PEM certificate"},
        {"text file", "hello.txt", NULL, NULL, CB_EBADFILE, "neither PEM nor PKCS#12"},
        {"empty file", "empty.pem", NULL, NULL, CB_EBADFILE, "neither PEM nor PKCS#12"},
        {"broken PEM", "broken.pem", "ec.key", NULL, CB_EBADFILE, "no PEM certificate"},
        {"DER certificate", "ec.der", NULL, NULL, CB_EBADFILE, "neither PEM nor PKCS#12"},
        {"key= with PKCS#12", "ec-nopw.p12", "ec.key", NULL, CB_EBADFILE, "key="},
        {"a folder", "folder", NULL, NULL, CB_EBADFILE, "regular file"},
        {"missing file", "no-such.pem", NULL, NULL, CB_EINVAL, "no such file"},
        {"missing key file", "ec.crt", "no-such.key", NULL, CB_EINVAL, "no such file"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_load *c = &cases[i];
        static char sentinel;
        struct cb_cert_bundle *b = (struct cb_cert_bundle *)&sentinel; /* must stay untouched */
        struct cb_err err;

        memset(&err, 0, sizeof(err));
        int rc = cb_cert_bundle_load(p(c->cert), c->key ? p(c->key) : NULL, c->password, &b, &err);
        if (rc != c->want)
            fail_msg("%s: returned %d, want %d (%s)", c->what, rc, c->want, err.msg);
        if (b != (struct cb_cert_bundle *)&sentinel)
            fail_msg("%s: *out written on failure", c->what);
        if (err.code != c->want || err.msg[0] == '\0')
            fail_msg("%s: err not filled", c->what);
        if (strstr(err.msg, c->hint) == NULL)
            fail_msg("%s: message '%s' does not mention '%s'", c->what, err.msg, c->hint);
    }
}

static void test_info_matches_openssl_fingerprints(void **state)
{
    (void)state;
    static const char *const certs[][2] = {
        {"ec.crt", "ec.key"},     {"rsa.crt", "rsa.key"},   {"ed.crt", "ed.key"},
        {"p384.crt", "p384.key"}, {"leaf.crt", "leaf.key"},
    };
    for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++) {
        struct cb_cert_info info;
        char sha1[64], sha256[128];

        openssl_fingerprint(p(certs[i][0]), "sha1", sha1, sizeof(sha1));
        openssl_fingerprint(p(certs[i][0]), "sha256", sha256, sizeof(sha256));
        load_info(p(certs[i][0]), p(certs[i][1]), NULL, &info);
        if (strcmp(info.thumbprint, sha1) != 0)
            fail_msg("%s: thumbprint %s, openssl says %s", certs[i][0], info.thumbprint, sha1);
        if (strcmp(info.sha256, sha256) != 0)
            fail_msg("%s: sha256 %s, openssl says %s", certs[i][0], info.sha256, sha256);
        assert_int_equal(strlen(info.thumbprint), CB_THUMB_LEN);
        cb_cert_info_clear(&info);
    }
}

static void test_info_names_come_from_dns_sans(void **state)
{
    (void)state;
    struct cb_cert_info info;
    /* lower case, duplicates dropped, wildcard kept, IP SAN ignored, CN ignored */
    static const char *const ec_names[] = {"www.example.com", "example.com", "*.example.org"};
    static const char *const sancn_names[] = {"san.example.com"};

    load_info(p("ec.crt"), p("ec.key"), NULL, &info);
    assert_names(&info, ec_names, 3);
    assert_string_equal(info.subject, "CN=www.example.com,O=Example");
    cb_cert_info_clear(&info);

    load_info(p("sancn.crt"), p("sancn.key"), NULL, &info);
    assert_names(&info, sancn_names, 1);
    cb_cert_info_clear(&info);
}

static void test_info_uses_cn_only_without_dns_sans(void **state)
{
    (void)state;
    struct cb_cert_info info;
    static const char *const rsa_names[] = {"legacy.example.net"};
    static const char *const ip_names[] = {"ip-only.example.com"};

    load_info(p("rsa.crt"), p("rsa.key"), NULL, &info);
    assert_names(&info, rsa_names, 1);
    assert_string_equal(info.subject, "CN=Legacy.Example.NET");
    cb_cert_info_clear(&info);

    load_info(p("iponly.crt"), p("iponly.key"), NULL, &info);
    assert_names(&info, ip_names, 1);
    cb_cert_info_clear(&info);

    /* A CN that is not a DNS name gives no names at all. */
    load_info(p("corp.crt"), p("corp.key"), NULL, &info);
    assert_int_equal(info.n_names, 0);
    assert_null(info.names);
    cb_cert_info_clear(&info);
}

static void test_info_key_types_and_validity(void **state)
{
    (void)state;
    static const struct {
        const char *cert, *key, *type;
        int days;
    } cases[] = {
        {"ec.crt", "ec.key", "EC-P256", 30},    {"rsa.crt", "rsa.key", "RSA-2048", 10},
        {"ed.crt", "ed.key", "ED25519", 10},    {"p384.crt", "p384.key", "EC-P384", 10},
        {"leaf.crt", "leaf.key", "EC-P256", 5},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cb_cert_info info;
        load_info(p(cases[i].cert), p(cases[i].key), NULL, &info);
        if (strcmp(info.key_type, cases[i].type) != 0)
            fail_msg("%s: key type %s, want %s", cases[i].cert, info.key_type, cases[i].type);
        if (info.not_after - info.not_before != (int64_t)cases[i].days * 86400)
            fail_msg("%s: validity %lld s, want %d days", cases[i].cert,
                     (long long)(info.not_after - info.not_before), cases[i].days);
        /* made just now: valid from about now (within a day either way) */
        int64_t now = (int64_t)time(NULL);
        assert_true(info.not_before <= now + 86400 && info.not_before >= now - 86400);
        cb_cert_info_clear(&info);
    }
}

static void test_write_stores_pair_that_loads_again(void **state)
{
    (void)state;
    struct cb_cert_bundle *b = NULL;
    struct cb_cert_info before, after;
    struct cb_err err = {0};
    struct stat st;

    assert_int_equal(cb_cert_bundle_load(p("chain-ca-first.pem"), NULL, NULL, &b, &err), 0);
    assert_int_equal(cb_cert_bundle_info(b, &before, &err), 0);
    assert_int_equal(cb_cert_bundle_write(b, p("out.crt"), p("out.key"), &err), 0);
    cb_cert_bundle_free(b);
    assert_int_equal(stat(p("out.key"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(p("out.crt"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(cb_cert_check_pair(p("out.crt"), p("out.key"), &err), 0);
    load_info(p("out.crt"), p("out.key"), NULL, &after);
    assert_string_equal(after.thumbprint, before.thumbprint);
    assert_int_equal(after.chain_len, 1);
    cb_cert_info_clear(&before);
    cb_cert_info_clear(&after);
    /* A pair that does not match is reported as an unusable key. */
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_cert_check_pair(p("out.crt"), p("other.key"), &err), CB_EKEY);
    assert_true(err.msg[0] != '\0');
}

/* The whole of a file in an owned buffer (NUL after it), its length in *len. */
static char *file_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 65536);
    assert_non_null(f);
    assert_non_null(buf);
    *len = fread(buf, 1, 65535, f);
    fclose(f);
    return buf;
}

/*
 * A batch's key cache (cb_cert_bundle_load_cached), one cache for many pairs as a batch keeps
 * it: the same result as the plain load for every pair (the same leaf, or the same refusal),
 * and the files it encodes (cb_cert_bundle_pem) byte for byte those cb_cert_bundle_write
 * writes.
 */
static void test_key_cache_agrees_with_the_plain_load(void **state)
{
    (void)state;
    static const char *const pairs[][2] = {
        {"ec.crt", "ec.key"},
        {"ec.crt", "ec.key"},
        {"rsa.crt", "rsa.key"},
        {"ed.crt", "ed.key"},
        {"p384.crt", "p384.key"},
        {"ecparam.crt", "ecparam.key"},
        {"chain-ca-first.pem", "leaf.key"},
        {"ec-crlf.crt", "ec-crlf.key"},
        {"ec.crt", "other.key"},
        {"ec.crt", "rsa-trad-enc.key"},
        {"broken.pem", "ec.key"},
        {"hello.txt", "ec.key"},
        {"ec.crt", "ec.key"},
    };
    struct cb_cert_keycache *kc = NULL;
    struct cb_err err = {0};

    assert_int_equal(cb_cert_keycache_new(&kc, &err), 0);
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        struct cb_cert_bundle *plain = NULL, *cached = NULL;
        char t1[CB_THUMB_LEN + 1], t2[CB_THUMB_LEN + 1], *cert_pem, *key_pem, *want;
        size_t cert_len, key_len, want_len;
        struct cb_err e1 = {0}, e2 = {0};
        int rc1 = cb_cert_bundle_load(p(pairs[i][0]), p(pairs[i][1]), NULL, &plain, &e1);
        int rc2 =
            cb_cert_bundle_load_cached(p(pairs[i][0]), p(pairs[i][1]), NULL, kc, &cached, &e2);
        assert_int_equal(rc1, rc2);
        assert_string_equal(e1.msg, e2.msg);
        if (rc1 != 0)
            continue;
        assert_int_equal(cb_cert_bundle_thumbprint(plain, t1), 0);
        assert_int_equal(cb_cert_bundle_thumbprint(cached, t2), 0);
        assert_string_equal(t1, t2);
        assert_int_equal(cb_cert_bundle_write(plain, p("w.crt"), p("w.key"), &err), 0);
        assert_int_equal(
            cb_cert_bundle_pem(cached, kc, &cert_pem, &cert_len, &key_pem, &key_len, &err), 0);
        want = file_bytes(p("w.crt"), &want_len);
        assert_int_equal(cert_len, want_len);
        assert_memory_equal(cert_pem, want, want_len);
        free(want);
        want = file_bytes(p("w.key"), &want_len);
        assert_int_equal(key_len, want_len);
        assert_memory_equal(key_pem, want, want_len);
        free(want);
        free(cert_pem);
        free(key_pem);
        cb_cert_bundle_free(plain);
        cb_cert_bundle_free(cached);
    }
    cb_cert_keycache_free(kc);
}

/* Loads ec.crt with key file kc.key through kc, stat first when asked (as a batch's reader
 * does); the result as cb_cert_bundle_load's for the same files. */
static int load_through(struct cb_cert_keycache *kc, bool stat_first)
{
    struct cb_cert_bundle *plain = NULL, *cached = NULL;
    struct cb_err e1 = {0}, e2 = {0};
    struct stat sb;

    if (stat_first)
        assert_int_equal(cb_cert_keycache_stat(kc, p("kc.key"), &sb), 0);
    int rc1 = cb_cert_bundle_load(p("ec.crt"), p("kc.key"), NULL, &plain, &e1);
    int rc2 = cb_cert_bundle_load_cached(p("ec.crt"), p("kc.key"), NULL, kc, &cached, &e2);
    assert_int_equal(rc1, rc2);
    assert_string_equal(e1.msg, e2.msg);
    cb_cert_bundle_free(plain);
    cb_cert_bundle_free(cached);
    return rc2;
}

/*
 * A key file is read again for every certificate unless a stat just before found it the
 * file last read, unchanged (inode, size, times) and changed over a second before that read;
 * a file replaced by a rename or rewritten is read again. A file changed within the second
 * before its read is read every time: rewritten within the same clock tick, its times would
 * not show it (the test's own files are that new; the skew makes them older).
 */
static void test_key_cache_reads_a_key_file_again_unless_a_stat_vouches(void **state)
{
    (void)state;
    struct cb_cert_keycache *kc = NULL;
    struct cb_err err = {0};

    assert_int_equal(cb_cert_keycache_new(&kc, &err), 0);
    sh("cp ec.key kc.key");
    assert_int_equal(load_through(kc, true), 0);
    assert_int_equal(load_through(kc, true), 0);
    assert_int_equal(cb_cert__keycache_reads(kc), 2); /* new: read each time */
    /* Rewritten in place with another key of the same size, maybe within the same clock
     * tick: read, and refused as the plain load refuses it. */
    sh("cat other.key > kc.key");
    assert_int_not_equal(load_through(kc, true), 0);

    sh("cp ec.key kc.key");
    cb_cert__keycache_skew(kc, 10);
    assert_int_equal(load_through(kc, true), 0); /* read: the last bytes were other.key's */
    unsigned long reads = cb_cert__keycache_reads(kc);
    assert_int_equal(load_through(kc, true), 0);
    assert_int_equal(load_through(kc, true), 0);
    assert_int_equal(cb_cert__keycache_reads(kc), reads); /* vouched for: not read */
    assert_int_equal(load_through(kc, false), 0);
    assert_int_equal(cb_cert__keycache_reads(kc), reads + 1); /* no stat: read */
    sh("cp ec.key kc2.key && mv kc2.key kc.key");
    assert_int_equal(load_through(kc, true), 0);
    assert_int_equal(cb_cert__keycache_reads(kc), reads + 2); /* another inode: read */
    sh("cat rsa.key > kc.key");
    assert_int_not_equal(load_through(kc, true), 0); /* another size: read, and refused */
    assert_int_equal(sh_failures, 0);
    cb_cert_keycache_free(kc);
}

static void test_free_and_clear_accept_empty(void **state)
{
    (void)state;
    struct cb_cert_info info;
    memset(&info, 0, sizeof(info));
    cb_cert_bundle_free(NULL);
    cb_cert_info_clear(&info);
    cb_cert_info_clear(&info);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_pem_with_key_inside_either_order),
        cmocka_unit_test(test_key_cache_reads_a_key_file_again_unless_a_stat_vouches),
        cmocka_unit_test(test_loads_pem_with_separate_key_file),
        cmocka_unit_test(test_loads_pkcs12_with_and_without_password),
        cmocka_unit_test(test_loads_encrypted_pem_key_with_password),
        cmocka_unit_test(test_loads_formats_met_in_the_field),
        cmocka_unit_test(test_chain_is_kept_and_leaf_found_by_its_key),
        cmocka_unit_test(test_bad_inputs_are_refused_with_a_message),
        cmocka_unit_test(test_info_matches_openssl_fingerprints),
        cmocka_unit_test(test_info_names_come_from_dns_sans),
        cmocka_unit_test(test_info_uses_cn_only_without_dns_sans),
        cmocka_unit_test(test_info_key_types_and_validity),
        cmocka_unit_test(test_write_stores_pair_that_loads_again),
        cmocka_unit_test(test_key_cache_agrees_with_the_plain_load),
        cmocka_unit_test(test_free_and_clear_accept_empty),
    };
    return cmocka_run_group_tests_name("cert", tests, setup_files, teardown_files);
}
