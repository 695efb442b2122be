/*
 * test_acme_crypto.c: the ACME cryptography (tls/acme_crypto.h) checked against
 * OpenSSL's own verification and published vectors: RFC 7638 thumbprints, JWS that
 * OpenSSL verifies (ES256 as raw r||s), an EAB known answer, the RFC 8737 challenge
 * certificate, CSRs, the ARI CertID example, chain checks, key files and refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/acme_crypto.h"

/* RFC 7517 Appendix A.2's RSA key (n, e as in RFC 7638 §3.1), as PKCS#8. */
static const char rfc_rsa_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDS/HtqCh5sZxBK\n"
    "64+Isldmm032ed2tCZtcSmzZqIAVtaEzvwuFbHhxtt8AC1VPzrPC7VErto8UXG6E\n"
    "NHUvq1Khz8EkQI95tYpFeMFkKIVXifeiSeOEyy2fri1n/Zb7kmwZjgdzmf3IFcCv\n"
    "CX3eWq3v9E3nDoJ/SHhDJDm/7rlgaNBHT8UNbZC/OpjfrxBAyJwC1pKrOzwolmCd\n"
    "hv1zt3TOB0BkfO7qoxC9EvmFqOufWf3UJs6lshIPTyo0vKt2S35sVNaEAji8xAWH\n"
    "pZ5m7R8ziUV3Y1xHCvdc+Swg0dpD4b/EGeIipvDQuzWMXjj5ywUK6v6QSBTxrBqk\n"
    "nMqeoMqDAgMBAAECggEAX4cTteJY/gn4FYPsXB8rdXix5vwsg1FLN5E3EaG6RJoV\n"
    "H+HLLKD9M7dx5oo7GURknchnrRweUkC7hT5fJLM0WbFAKNLWY2vv7B6NqXSzUvxT\n"
    "0/YSfqijwp3RTzlBaCxWp4doFk5N2o8Gy/nHNKroADIkJ46pRUohsXywbReAdYaM\n"
    "wFs9tv8d/cPVY3i07a3t8MN6TNwm0dSawm9v47UiCl3Sk5ZiG7xojPLu4sbg1U2j\n"
    "x4IBTNBznbJSzFHK66jT8bgkuqsk0GjskDJk19Z4qwjwbsnn4j2WBii3RL+Us2lG\n"
    "VkY8fkFzme1z0HbIkfz0Y6mqnOYtqc0X4jfcKoAC8QKBgQDzeL7si8wZegxcKyS/\n"
    "vdMqvzrfsWI7tnbvO/yiPqltZRDIs9AFDG09WfAPbRH7rR5MOYPa6Ocy3k+ioyub\n"
    "xF+Y2FVYO2OMyYIyM6lJeJwUePtc65UhhDKpVaVYSHp03foZVliT3c3wFz29jjXH\n"
    "LwH1HPM4ZVDNe80S+fs7SdVt+wKBgQDd185H1y5ir7RL6aQUvOAi2AwR8XMHareF\n"
    "Z6Ey4bSgK6qdve+hsvK6aqNVlA7V0it3CBOcJ2ljMFw59bmvfvQAVeOJZ+380YSK\n"
    "i+ieLOEqmj1VVLvxPMWDGQh2t5xF7Oxn7WRh3+zWoNvG2QMSB8AhMAb0tScAO6fi\n"
    "8hxvrJ6XGQKBgBuLD15HOmGvcvKCVvfyC4+MbqabtJc4vx+1U5EvMY+UnV93KBNK\n"
    "IpmMMSItnpkwLntFDmuXaYBRsgSeHPLUNlReNNl0boCg0z/GpGIRaObQAO+0HvzZ\n"
    "rbmGXNwt5tyNuBthr0ebEg8VMgDds6vC35/RFJrOq2Nzm/GHoipE4gY9AoGBALPZ\n"
    "QB/X4IAbKBUfDmnNkfxNoMNvNq09pBjgIbyJZRExNXn6wOoblFLzHwXDKZ/Janlu\n"
    "r8852GOUkkBe6THQv2oCN5xvCG6dQVG9CVIq2kTalHy4XEG/3fRheA4e3u+Fm0bK\n"
    "G0aJ7o02DdcQmj+kzutY71q1/i9fLcV8OPeEP3IJAoGAGyM/p6JrXySiz1toFgKb\n"
    "WV+JdI3jQ4ypu9rbMWx3rQJBfmt0FoYzgUIZEVFEcOqwemRN81zoDAaa+Bk0KWNG\n"
    "DjJHZDdDmFhW3AN7lI+puxk/mHZGJ11rxyR8O55XLSe3SPmRfKwZI6yU24ZxvQKF\n"
    "YItdldUKGzO6Ia6zTKhAVRU=\n"
    "-----END PRIVATE KEY-----\n";

/* RFC 7517 Appendix A.2's EC P-256 key. */
static const char rfc_ec_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg870MB6gfuTJ4HtUn\n"
    "UvYMyJpr5eUZNP4Bk43bVdj3eAGhRANCAAQwoEJM0hwpRIOKLXXJKzfnbqINnwCJ\n"
    "OjtO7oo8Cq/sPuBLZekkVtmIi1Kzeb371R7oae8fD8ZbZllpW2zOCBcj\n"
    "-----END PRIVATE KEY-----\n";

static struct cb_acme_key *pem_key(const char *pem)
{
    struct cb_acme_key *k = NULL;
    struct cb_err err = {0};
    assert_int_equal(cb_acme_key_from_pem(pem, strlen(pem), &k, &err), 0);
    return k;
}

/* OpenSSL's view of k (through its PEM). */
static EVP_PKEY *ossl_key(const struct cb_acme_key *k)
{
    char *pem = NULL;
    size_t len = 0;
    assert_int_equal(cb_acme_key_pem(k, &pem, &len, NULL), 0);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    cb_acme_secret_free(pem, len);
    assert_non_null(pkey);
    return pkey;
}

/* Decodes base64url text into an owned NUL-terminated buffer. */
static unsigned char *b64d(const char *s, size_t *len)
{
    unsigned char *out = malloc(strlen(s) + 1);
    assert_non_null(out);
    assert_int_equal(cb_acme_b64url_decode(s, strlen(s), out, strlen(s), len), 0);
    out[*len] = '\0';
    return out;
}

static void test_b64url_encodes_and_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } vec[] = {{"", ""},        {"f", "Zg"},        {"fo", "Zm8"},
               {"foo", "Zm9v"}, {"foob", "Zm9vYg"}, {"\xfb\xff", "-_8"}};
    char buf[16];
    unsigned char raw[16];
    size_t n;

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        size_t len = strlen(vec[i].in);
        assert_int_equal(cb_acme_b64url((const unsigned char *)vec[i].in, len, buf, sizeof(buf)),
                         (int)strlen(vec[i].out));
        assert_string_equal(buf, vec[i].out);
        assert_int_equal(
            cb_acme_b64url_decode(vec[i].out, strlen(vec[i].out), raw, sizeof(raw), &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(raw, vec[i].in, len);
    }
    assert_int_equal(cb_acme_b64url_decode("Zm9v=", 5, raw, sizeof(raw), &n), 0); /* padding */
    assert_int_equal(cb_acme_b64url_decode("Zm+v", 4, raw, sizeof(raw), &n), CB_EINVAL);
    assert_int_equal(cb_acme_b64url_decode("Zm/v", 4, raw, sizeof(raw), &n), CB_EINVAL);
    assert_int_equal(cb_acme_b64url_decode("Zm9vY", 5, raw, sizeof(raw), &n), CB_EINVAL);
    assert_int_equal(cb_acme_b64url_decode("Zh", 2, raw, sizeof(raw), &n), CB_EINVAL);
    assert_int_equal(cb_acme_b64url_decode("Zm9v", 4, raw, 2, &n), CB_EINVAL);
    assert_int_equal(cb_acme_b64url((const unsigned char *)"foo", 3, buf, 4), CB_EINVAL);
}

static void test_thumbprint_rfc7638_rsa_vector(void **state)
{
    (void)state;
    struct cb_acme_key *k = pem_key(rfc_rsa_pem);
    char tp[44];

    assert_int_equal(cb_acme_key_type(k), CB_ACME_KEY_RSA2048);
    assert_int_equal(cb_acme_jwk_thumbprint(k, tp, NULL), 0);
    assert_string_equal(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"); /* RFC 7638 §3.1 */
    cb_acme_key_free(k);
}

static void test_thumbprint_ec_known_answer(void **state)
{
    (void)state;
    struct cb_acme_key *k = pem_key(rfc_ec_pem);
    char tp[44], *jwk = NULL;

    assert_int_equal(cb_acme_jwk_json(k, &jwk, NULL), 0);
    assert_string_equal(jwk, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"MKBCTNIcKUSDii11ySs3526iDZ8"
                             "AiTo7Tu6KPAqv7D4\",\"y\":\"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IF"
                             "yM\"}");
    assert_int_equal(cb_acme_jwk_thumbprint(k, tp, NULL), 0);
    /* SHA-256 of the JWK above, computed independently (Python hashlib). */
    assert_string_equal(tp, "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s");
    free(jwk);
    cb_acme_key_free(k);
}

/* Parses a flattened JWS, checks its protected header and verifies it with OpenSSL. */
static void verify_jws(const struct cb_acme_key *k, const char *jws, const char *alg,
                       const char *kid, const char *payload)
{
    json_error_t jerr;
    json_t *root = json_loads(jws, 0, &jerr), *prot;
    size_t plen, len, slen;

    assert_non_null(root);
    const char *p64 = json_string_value(json_object_get(root, "protected"));
    const char *l64 = json_string_value(json_object_get(root, "payload"));
    const char *s64 = json_string_value(json_object_get(root, "signature"));
    assert_non_null(p64);
    assert_non_null(l64);
    assert_non_null(s64);
    unsigned char *ptext = b64d(p64, &plen);
    unsigned char *ltext = b64d(l64, &len);
    unsigned char *sig = b64d(s64, &slen);
    prot = json_loads((const char *)ptext, 0, &jerr);
    assert_non_null(prot);
    assert_string_equal(json_string_value(json_object_get(prot, "alg")), alg);
    assert_string_equal(json_string_value(json_object_get(prot, "nonce")), "n0nce_-1");
    assert_string_equal(json_string_value(json_object_get(prot, "url")),
                        "https://ca.example/acme/new-order");
    if (kid != NULL) {
        assert_string_equal(json_string_value(json_object_get(prot, "kid")), kid);
        assert_null(json_object_get(prot, "jwk"));
    } else {
        char *jwk = NULL, *got;
        assert_null(json_object_get(prot, "kid"));
        assert_int_equal(cb_acme_jwk_json(k, &jwk, NULL), 0);
        got = json_dumps(json_object_get(prot, "jwk"), JSON_COMPACT | JSON_SORT_KEYS);
        assert_string_equal(got, jwk);
        free(got);
        free(jwk);
    }
    assert_string_equal((const char *)ltext, payload != NULL ? payload : "");

    /* OpenSSL verifies over "protected.payload"; ES256 is raw r||s, so re-encode DER. */
    EVP_PKEY *pkey = ossl_key(k);
    unsigned char *der = NULL;
    int dlen;
    if (strcmp(alg, "ES256") == 0) {
        assert_int_equal(slen, 64);
        ECDSA_SIG *es = ECDSA_SIG_new();
        assert_true(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)));
        dlen = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
    } else {
        assert_int_equal(slen, 256);
        der = OPENSSL_memdup(sig, slen);
        dlen = (int)slen;
    }
    char *input = malloc(strlen(p64) + strlen(l64) + 2);
    sprintf(input, "%s.%s", p64, l64);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL), 1);
    assert_int_equal(EVP_DigestVerify(md, der, (size_t)dlen, (unsigned char *)input, strlen(input)),
                     1);
    /* A changed payload does not verify. */
    input[strlen(input) - 1] ^= 1;
    EVP_MD_CTX_reset(md);
    assert_int_equal(EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL), 1);
    assert_int_not_equal(
        EVP_DigestVerify(md, der, (size_t)dlen, (unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(md);
    free(input);
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    free(ptext);
    free(ltext);
    free(sig);
    json_decref(prot);
    json_decref(root);
}

static void test_jws_es256_verifies_with_openssl(void **state)
{
    (void)state;
    struct cb_acme_key *k = NULL;
    char *jws = NULL;
    static const char url[] = "https://ca.example/acme/new-order";

    assert_int_equal(cb_acme_key_generate(CB_ACME_KEY_EC256, &k, NULL), 0);
    assert_int_equal(cb_acme_jws(k, NULL, "n0nce_-1", url, "{\"a\":1}", &jws, NULL), 0);
    verify_jws(k, jws, "ES256", NULL, "{\"a\":1}");
    free(jws);
    /* with a kid, and POST-as-GET (NULL and "" payloads) */
    assert_int_equal(cb_acme_jws(k, "https://ca.example/acct/1", "n0nce_-1", url, NULL, &jws, NULL),
                     0);
    verify_jws(k, jws, "ES256", "https://ca.example/acct/1", NULL);
    assert_non_null(strstr(jws, "\"payload\":\"\""));
    free(jws);
    assert_int_equal(cb_acme_jws(k, "k\"id", "n0nce_-1", url, "", &jws, NULL), 0);
    verify_jws(k, jws, "ES256", "k\"id", "");
    free(jws);
    cb_acme_key_free(k);
}

static void test_jws_rs256_verifies_with_openssl(void **state)
{
    (void)state;
    struct cb_acme_key *k = pem_key(rfc_rsa_pem);
    char *jws = NULL;

    assert_int_equal(cb_acme_jws(k, NULL, "n0nce_-1", "https://ca.example/acme/new-order",
                                 "{\"csr\":\"x\"}", &jws, NULL),
                     0);
    verify_jws(k, jws, "RS256", NULL, "{\"csr\":\"x\"}");
    free(jws);
    cb_acme_key_free(k);
}

static void test_jws_refuses_missing_nonce_or_url(void **state)
{
    (void)state;
    struct cb_acme_key *k = pem_key(rfc_ec_pem);
    struct cb_err err = {0};
    char *jws = NULL;

    assert_int_equal(cb_acme_jws(k, NULL, "", "https://x/", NULL, &jws, &err), CB_EINVAL);
    assert_int_equal(cb_acme_jws(k, NULL, NULL, "https://x/", NULL, &jws, &err), CB_EINVAL);
    assert_int_equal(cb_acme_jws(k, NULL, "n", NULL, NULL, &jws, &err), CB_EINVAL);
    assert_true(err.msg[0] != '\0');
    assert_null(jws);
    cb_acme_key_free(k);
}

static void test_eab_hmac_known_answer(void **state)
{
    (void)state;
    struct cb_acme_key *k = pem_key(rfc_ec_pem);
    char *eab = NULL;

    /* Pebble's example kid-1 key; the answer computed with Python's hmac module. */
    assert_int_equal(cb_acme_eab(k, "kid-1",
                                 "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
                                 "https://127.0.0.1:14000/sign-me-up", &eab, NULL),
                     0);
    assert_string_equal(
        eab,
        "{\"protected\":\"eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC0xIiwidXJsIjoiaHR0cHM6Ly8xMjcuMC4w"
        "LjE6MTQwMDAvc2lnbi1tZS11cCJ9\",\"payload\":\"eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6"
        "Ik1LQkNUTkljS1VTRGlpMTF5U3MzNTI2aURaOEFpVG83VHU2S1BBcXY3RDQiLCJ5IjoiNEV0bDZTUlcyWWlM"
        "VXJONXZmdlZIdWhwN3g4UHhsdG1XV2xiYk00SUZ5TSJ9\",\"signature\":\"nlL5zX5gRy3vNZQBft-3Jfw"
        "Ycjg6W1k37eLmw2Raxi8\"}");
    free(eab);
    cb_acme_key_free(k);
}

static void test_eab_refuses_bad_key_without_echoing_it(void **state)
{
    (void)state;
    struct cb_acme_key *k = pem_key(rfc_ec_pem);
    struct cb_err err = {0};
    char *eab = NULL;

    assert_int_equal(cb_acme_eab(k, "kid-1", "s3cret+key/with=bad", "https://x/", &eab, &err),
                     CB_EINVAL);
    assert_null(strstr(err.msg, "s3cret"));
    assert_int_equal(cb_acme_eab(k, "", "Zm9v", "https://x/", &eab, &err), CB_EINVAL);
    assert_int_equal(cb_acme_eab(k, "kid", "", "https://x/", &eab, &err), CB_EINVAL);
    assert_int_equal(cb_acme_eab(k, "kid", "Zm9v", NULL, &eab, &err), CB_EINVAL);
    assert_null(eab);
    cb_acme_key_free(k);
}

static void test_dns01_value_known_answer(void **state)
{
    (void)state;
    char v[44];
    assert_int_equal(cb_acme_dns01_value("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA."
                                         "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI",
                                         v),
                     0);
    assert_string_equal(v, "lCM7cZyQXcVHK2nnW3jjAhNT3Fvm18UN-kWZZknKoYM");
    assert_int_equal(cb_acme_dns01_value("", v), CB_EINVAL);
}

static X509 *pem_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(x);
    return x;
}

static void test_alpn_cert_has_critical_acme_identifier(void **state)
{
    (void)state;
    static const char ka[] = "tok3n_tok3n_tok3n_tok3n.thumbprint";
    char *cert = NULL, *key = NULL;
    unsigned char md[32];
    unsigned int mdlen;

    assert_int_equal(cb_acme_alpn_cert("WWW.Example.com", ka, &cert, &key, NULL), 0);
    X509 *x = pem_cert(cert);
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int idx = X509_get_ext_by_OBJ(x, oid, -1);
    assert_true(idx >= 0);
    X509_EXTENSION *ext = X509_get_ext(x, idx);
    assert_int_equal(X509_EXTENSION_get_critical(ext), 1);
    const ASN1_OCTET_STRING *val = X509_EXTENSION_get_data(ext);
    EVP_Digest(ka, strlen(ka), md, &mdlen, EVP_sha256(), NULL);
    assert_int_equal(ASN1_STRING_length(val), 34);
    const unsigned char *d = ASN1_STRING_get0_data(val);
    assert_int_equal(d[0], 0x04); /* an OCTET STRING */
    assert_int_equal(d[1], 32);
    assert_memory_equal(d + 2, md, 32);

    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(sans);
    assert_int_equal(sk_GENERAL_NAME_num(sans), 1);
    GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, 0);
    assert_int_equal(g->type, GEN_DNS);
    assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.dNSName), "www.example.com");
    GENERAL_NAMES_free(sans);

    /* self-signed, valid now, for days not years, with the key given back */
    assert_int_equal(X509_verify(x, X509_get0_pubkey(x)), 1);
    assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
    assert_true(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);
    time_t later = time(NULL) + 10 * 86400;
    assert_true(X509_cmp_time(X509_get0_notAfter(x), &later) < 0);
    struct cb_acme_key *k = pem_key(key);
    assert_int_equal(cb_acme_chain_check(cert, strlen(cert), k, NULL, NULL, NULL, NULL), 0);
    cb_acme_key_free(k);
    ASN1_OBJECT_free(oid);
    X509_free(x);
    free(cert);
    cb_acme_secret_free(key, strlen(key));
}

static void test_alpn_cert_refuses_bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {"*.example.com", "bad..name", "", "a b.example", "-"};
    struct cb_err err = {0};
    char *cert = NULL, *key = NULL;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.msg[0] = '\0';
        assert_int_equal(cb_acme_alpn_cert(bad[i], "ka", &cert, &key, &err), CB_EINVAL);
        assert_true(err.msg[0] != '\0');
    }
    assert_int_equal(cb_acme_alpn_cert("example.com", "", &cert, &key, &err), CB_EINVAL);
    assert_int_equal(cb_acme_alpn_cert(NULL, "ka", &cert, &key, &err), CB_EINVAL);
    assert_null(cert);
    assert_null(key);
}

static void test_csr_parses_and_lists_the_names(void **state)
{
    (void)state;
    static const char *const names[] = {"Example.COM", "*.example.com", "www.example.com"};
    static const char *const want[] = {"example.com", "*.example.com", "www.example.com"};
    struct cb_acme_key *k = NULL;
    char *b64 = NULL, cn[256];
    size_t len;

    assert_int_equal(cb_acme_key_generate(CB_ACME_KEY_EC256, &k, NULL), 0);
    assert_int_equal(cb_acme_csr(k, names, 3, &b64, NULL), 0);
    assert_null(strpbrk(b64, "+/="));
    unsigned char *der = b64d(b64, &len);
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    assert_non_null(req);
    assert_ptr_equal(p, der + len);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    assert_int_equal(X509_REQ_verify(req, pub), 1);
    EVP_PKEY *mine = ossl_key(k);
    assert_int_equal(EVP_PKEY_eq(pub, mine), 1);
    assert_true(X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn,
                                          sizeof(cn)) > 0);
    assert_string_equal(cn, "example.com");
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    int idx = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
    assert_true(idx >= 0);
    GENERAL_NAMES *sans = X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, idx));
    assert_int_equal(sk_GENERAL_NAME_num(sans), 3);
    for (int i = 0; i < 3; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        assert_int_equal(g->type, GEN_DNS);
        assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.dNSName), want[i]);
    }
    GENERAL_NAMES_free(sans);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    EVP_PKEY_free(mine);
    X509_REQ_free(req);
    free(der);
    free(b64);
    cb_acme_key_free(k);
}

static void test_csr_refuses_bad_names(void **state)
{
    (void)state;
    static const char *const bad[] = {"bad name.example"};
    const char *many[101];
    struct cb_acme_key *k = pem_key(rfc_ec_pem);
    struct cb_err err = {0};
    char *b64 = NULL;

    for (int i = 0; i < 101; i++)
        many[i] = "example.com";
    assert_int_equal(cb_acme_csr(k, bad, 1, &b64, &err), CB_EINVAL);
    assert_non_null(strstr(err.msg, "bad name.example"));
    assert_int_equal(cb_acme_csr(k, bad, 0, &b64, &err), CB_EINVAL);
    assert_int_equal(cb_acme_csr(k, many, 101, &b64, &err), CB_EINVAL);
    assert_null(b64);
    cb_acme_key_free(k);
}

/* A certificate with the draft's example AKI keyIdentifier and serial number. */
static char *ari_example_cert(void)
{
    static const unsigned char keyid[] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40,
                                          0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
                                          0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    static const unsigned char serial[] = {0x87, 0x65, 0x43, 0x21};
    struct cb_acme_key *k = pem_key(rfc_ec_pem);
    EVP_PKEY *pkey = ossl_key(k);
    X509 *x = X509_new();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);

    X509_set_version(x, X509_VERSION_3);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                               (const unsigned char *)"ari.example", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pkey);
    akid->keyid = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(akid->keyid, keyid, sizeof(keyid));
    assert_int_equal(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0), 1);
    assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, x);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *pem = strndup(data, (size_t)n);
    BIO_free(bio);
    BN_free(bn);
    AUTHORITY_KEYID_free(akid);
    X509_free(x);
    EVP_PKEY_free(pkey);
    cb_acme_key_free(k);
    return pem;
}

static void test_ari_cert_id_matches_the_draft_example(void **state)
{
    (void)state;
    char *pem = ari_example_cert(), id[128], *alpn = NULL, *key = NULL;
    struct cb_err err = {0};

    assert_int_equal(cb_acme_ari_cert_id(pem, id, sizeof(id), NULL), 0);
    assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    assert_int_equal(cb_acme_ari_cert_id(pem, id, 20, &err), CB_EINVAL);
    assert_int_equal(cb_acme_ari_cert_id("not a certificate", id, sizeof(id), &err), CB_EBADFILE);
    /* a certificate without an AKI (self-signed challenge certificate) */
    assert_int_equal(cb_acme_alpn_cert("a.example", "ka", &alpn, &key, NULL), 0);
    assert_int_equal(cb_acme_ari_cert_id(alpn, id, sizeof(id), &err), CB_EBADFILE);
    assert_non_null(strstr(err.msg, "authority key identifier"));
    free(alpn);
    cb_acme_secret_free(key, strlen(key));
    free(pem);
}

static void test_chain_check_counts_dates_and_refuses(void **state)
{
    (void)state;
    char *c1 = NULL, *k1 = NULL, *c2 = NULL, *k2 = NULL, buf[8192];
    struct cb_acme_key *key1, *key2;
    struct cb_err err = {0};
    int64_t nb = 0, na = 0;
    size_t n = 0;

    assert_int_equal(cb_acme_alpn_cert("one.example", "ka", &c1, &k1, NULL), 0);
    assert_int_equal(cb_acme_alpn_cert("two.example", "ka", &c2, &k2, NULL), 0);
    key1 = pem_key(k1);
    key2 = pem_key(k2);
    snprintf(buf, sizeof(buf), "%s\n%s", c1, c2);
    assert_int_equal(cb_acme_chain_check(buf, strlen(buf), key1, &nb, &na, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_true(nb < (int64_t)time(NULL) && na > (int64_t)time(NULL));
    assert_true(na - nb > 6 * 86400 && na - nb < 9 * 86400);
    /* the leaf must match the key */
    assert_int_equal(cb_acme_chain_check(buf, strlen(buf), key2, NULL, NULL, NULL, &err),
                     CB_EBADFILE);
    assert_non_null(strstr(err.msg, "does not match"));
    /* trailing text, a key block, truncation, nothing */
    snprintf(buf, sizeof(buf), "%sjunk\n", c1);
    assert_int_equal(cb_acme_chain_check(buf, strlen(buf), NULL, NULL, NULL, NULL, &err),
                     CB_EBADFILE);
    snprintf(buf, sizeof(buf), "%s%s", c1, k1);
    assert_int_equal(cb_acme_chain_check(buf, strlen(buf), NULL, NULL, NULL, NULL, &err),
                     CB_EBADFILE);
    assert_int_equal(cb_acme_chain_check(c1, strlen(c1) - 40, NULL, NULL, NULL, NULL, &err),
                     CB_EBADFILE);
    /* a damaged END line must not let two blocks read as one (found by fuzz_acme_chain) */
    snprintf(buf, sizeof(buf), "%s%s", c1, c2);
    *strstr(buf, "-----END") = 'X';
    assert_int_equal(cb_acme_chain_check(buf, strlen(buf), NULL, NULL, NULL, NULL, &err),
                     CB_EBADFILE);
    assert_int_equal(cb_acme_chain_check("", 0, NULL, NULL, NULL, NULL, &err), CB_EBADFILE);
    assert_int_equal(cb_acme_chain_check("  \n", 3, NULL, NULL, NULL, NULL, &err), CB_EBADFILE);
    assert_int_equal(cb_acme_chain_check("{\"type\":\"x\"}", 12, NULL, NULL, NULL, NULL, &err),
                     CB_EBADFILE);
    cb_acme_key_free(key1);
    cb_acme_key_free(key2);
    free(c1);
    free(c2);
    cb_acme_secret_free(k1, strlen(k1));
    cb_acme_secret_free(k2, strlen(k2));
}

static void test_key_file_is_0600_and_loads_back(void **state)
{
    (void)state;
    char dir[] = "/tmp/cb-test-acme-XXXXXX", path[128], tp1[44], tp2[44];
    struct cb_acme_key *k = NULL, *back = NULL;
    struct cb_err err = {0};
    struct stat st;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/account.key", dir);
    mode_t old = umask(0); /* the mode must not depend on the umask */
    assert_int_equal(cb_acme_key_generate(CB_ACME_KEY_EC256, &k, NULL), 0);
    assert_int_equal(cb_acme_key_save(k, path, &err), 0);
    assert_int_equal(cb_acme_key_save(k, path, &err), 0); /* replaces */
    umask(old);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(cb_acme_key_load(path, &back, &err), 0);
    assert_int_equal(cb_acme_jwk_thumbprint(k, tp1, NULL), 0);
    assert_int_equal(cb_acme_jwk_thumbprint(back, tp2, NULL), 0);
    assert_string_equal(tp1, tp2);
    /* no temporary file left behind */
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL)
        files += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(files, 1);
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/no/such/dir/key.pem", dir);
    assert_int_equal(cb_acme_key_save(k, missing, &err), CB_EIO);
    unlink(path);
    rmdir(dir);
    cb_acme_key_free(back);
    cb_acme_key_free(k);
}

static void test_key_load_refuses_other_keys_and_garbage(void **state)
{
    (void)state;
    struct cb_acme_key *k = NULL;
    struct cb_err err = {0};
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *rsa1k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *which[] = {p384, rsa1k, ed};

    for (size_t i = 0; i < 3; i++) {
        BIO *bio = BIO_new(BIO_s_mem());
        char *data;
        assert_non_null(which[i]);
        PEM_write_bio_PrivateKey(bio, which[i], NULL, NULL, 0, NULL, NULL);
        long n = BIO_get_mem_data(bio, &data);
        err.msg[0] = '\0';
        assert_int_equal(cb_acme_key_from_pem(data, (size_t)n, &k, &err), CB_EKEY);
        assert_true(err.msg[0] != '\0');
        BIO_free(bio);
        EVP_PKEY_free(which[i]);
    }
    assert_int_equal(cb_acme_key_from_pem("garbage", 7, &k, &err), CB_EBADFILE);
    assert_int_equal(cb_acme_key_from_pem("", 0, &k, &err), CB_EBADFILE);
    assert_int_not_equal(cb_acme_key_load("/nonexistent/acme.key", &k, &err), 0);
    assert_null(k);
    assert_int_equal(cb_acme_key_generate((enum cb_acme_keytype)7, &k, &err), CB_EINVAL);
    cb_acme_key_free(NULL);
    cb_acme_secret_free(NULL, 0);
}

static void test_rsa_key_generates_and_pems(void **state)
{
    (void)state;
    struct cb_acme_key *k = NULL, *back = NULL;
    char *pem = NULL;
    size_t len = 0;

    assert_int_equal(cb_acme_key_generate(CB_ACME_KEY_RSA2048, &k, NULL), 0);
    assert_int_equal(cb_acme_key_type(k), CB_ACME_KEY_RSA2048);
    assert_int_equal(cb_acme_key_pem(k, &pem, &len, NULL), 0);
    assert_int_equal(strlen(pem), len);
    assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
    assert_int_equal(cb_acme_key_from_pem(pem, len, &back, NULL), 0);
    cb_acme_secret_free(pem, len);
    cb_acme_key_free(back);
    cb_acme_key_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_encodes_and_refuses),
        cmocka_unit_test(test_thumbprint_rfc7638_rsa_vector),
        cmocka_unit_test(test_thumbprint_ec_known_answer),
        cmocka_unit_test(test_jws_es256_verifies_with_openssl),
        cmocka_unit_test(test_jws_rs256_verifies_with_openssl),
        cmocka_unit_test(test_jws_refuses_missing_nonce_or_url),
        cmocka_unit_test(test_eab_hmac_known_answer),
        cmocka_unit_test(test_eab_refuses_bad_key_without_echoing_it),
        cmocka_unit_test(test_dns01_value_known_answer),
        cmocka_unit_test(test_alpn_cert_has_critical_acme_identifier),
        cmocka_unit_test(test_alpn_cert_refuses_bad_input),
        cmocka_unit_test(test_csr_parses_and_lists_the_names),
        cmocka_unit_test(test_csr_refuses_bad_names),
        cmocka_unit_test(test_ari_cert_id_matches_the_draft_example),
        cmocka_unit_test(test_chain_check_counts_dates_and_refuses),
        cmocka_unit_test(test_key_file_is_0600_and_loads_back),
        cmocka_unit_test(test_key_load_refuses_other_keys_and_garbage),
        cmocka_unit_test(test_rsa_key_generates_and_pems),
    };
    return cmocka_run_group_tests_name("acme_crypto", tests, NULL, NULL);
}
