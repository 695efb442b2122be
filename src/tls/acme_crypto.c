/*
 * acme_crypto.c: keys, JWK/JWS, EAB, challenge certificates, CSRs and chain checks
 * for the ACME client, with OpenSSL 3's EVP interfaces only.
 */
#include "tls/acme_crypto.h"
#include "binding/binding.h"
#include "tls/cert.h"
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CB_ACME_MAX_PEM (1024 * 1024)
#define CB_ACME_MAX_CSR_NAMES 100
#define CB_ACME_KEY_FILE_MAX (64 * 1024)

struct cb_acme_key {
    EVP_PKEY *pkey;
    enum cb_acme_keytype type;
};

/* ---- base64url ---- */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int cb_acme_b64url(const unsigned char *in, size_t len, char *out, size_t size)
{
    size_t need = len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
    size_t o = 0;

    if (out == NULL || need >= size || need > INT_MAX)
        return CB_EINVAL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        size_t rest = len - i;
        if (rest > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (rest > 2)
            v |= in[i + 2];
        out[o++] = b64url_alphabet[(v >> 18) & 63];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        if (rest > 1)
            out[o++] = b64url_alphabet[(v >> 6) & 63];
        if (rest > 2)
            out[o++] = b64url_alphabet[v & 63];
    }
    out[o] = '\0';
    return (int)o;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int cb_acme_b64url_decode(const char *in, size_t len, unsigned char *out, size_t size,
                          size_t *out_len)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    while (len > 0 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return CB_EINVAL;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return CB_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= size)
                return CB_EINVAL;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-canonical trailing bits */
        return CB_EINVAL;
    if (out_len != NULL)
        *out_len = o;
    return 0;
}

/* Owned base64url text of in[0..len), or NULL when out of memory. */
static char *b64url_dup(const unsigned char *in, size_t len)
{
    size_t size = len / 3 * 4 + 4;
    char *out = malloc(size);

    if (out != NULL && cb_acme_b64url(in, len, out, size) < 0) {
        free(out);
        out = NULL;
    }
    return out;
}

/* ---- small text builder for the JSON this file writes ---- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

/* s as a JSON string (quotes included); control bytes escaped. */
static void sb_json_str(struct sbuf *b, const char *s)
{
    char esc[8];

    sb_putn(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_putn(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            sb_putn(b, esc, 6);
        } else {
            sb_putn(b, (const char *)&c, 1);
        }
    }
    sb_putn(b, "\"", 1);
}

/* Takes b's text: returns it owned, or NULL (and frees it) when building failed. */
static char *sb_take(struct sbuf *b)
{
    if (b->failed || b->p == NULL) {
        free(b->p);
        b->p = NULL;
        return NULL;
    }
    return b->p;
}

/* ---- keys ---- */

static int tls_fail(struct cb_err *err, int code, const char *what)
{
    cb_err_set(err, code, "%s failed", what);
    cb_tls_err_append(err);
    return code;
}

void cb_acme_secret_free(char *p, size_t len)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, len + 1);
    free(p);
}

void cb_acme_key_free(struct cb_acme_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pkey); /* OpenSSL clears private key material when freeing */
    free(k);
}

enum cb_acme_keytype cb_acme_key_type(const struct cb_acme_key *k)
{
    return k->type;
}

/* Wraps pkey (taken) after checking it is EC P-256 or RSA 2048-8192. */
static int wrap_key(EVP_PKEY *pkey, struct cb_acme_key **out, struct cb_err *err)
{
    enum cb_acme_keytype type;
    char group[32] = "";
    size_t glen = 0;

    if (EVP_PKEY_is_a(pkey, "EC")) {
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            &glen) ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
            EVP_PKEY_free(pkey);
            ERR_clear_error();
            return cb_err_set(err, CB_EKEY,
                              "the EC key is not on curve P-256 (%s); ACME keys here are "
                              "ECDSA P-256 or RSA 2048",
                              group[0] ? group : "unknown curve");
        }
        type = CB_ACME_KEY_EC256;
    } else if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < 2048 || bits > 8192) {
            EVP_PKEY_free(pkey);
            return cb_err_set(err, CB_EKEY,
                              "the RSA key has %d bits; use 2048 to 8192 bits or ECDSA P-256",
                              bits);
        }
        type = CB_ACME_KEY_RSA2048;
    } else {
        EVP_PKEY_free(pkey);
        return cb_err_set(err, CB_EKEY,
                          "unsupported key type; ACME keys here are ECDSA P-256 or RSA 2048");
    }
    struct cb_acme_key *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        EVP_PKEY_free(pkey);
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    }
    k->pkey = pkey;
    k->type = type;
    *out = k;
    return 0;
}

int cb_acme_key_generate(enum cb_acme_keytype type, struct cb_acme_key **out, struct cb_err *err)
{
    EVP_PKEY *pkey;

    if (type == CB_ACME_KEY_EC256)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else if (type == CB_ACME_KEY_RSA2048)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else
        return cb_err_set(err, CB_EINVAL, "unknown key type %d", (int)type);
    if (pkey == NULL)
        return tls_fail(err, CB_ETLS, "generating a key");
    return wrap_key(pkey, out, err);
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1; /* never prompt */
}

int cb_acme_key_from_pem(const char *pem, size_t len, struct cb_acme_key **out, struct cb_err *err)
{
    if (pem == NULL || len == 0 || len > CB_ACME_KEY_FILE_MAX)
        return cb_err_set(err, CB_EBADFILE, "not a PEM private key (empty or too large)");
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    BIO_free(bio);
    if (pkey == NULL) {
        ERR_clear_error();
        return cb_err_set(err, CB_EBADFILE,
                          "not an unencrypted PEM private key; give a key in PEM form "
                          "(-----BEGIN PRIVATE KEY-----) without a password");
    }
    return wrap_key(pkey, out, err);
}

int cb_acme_key_load(const char *path, struct cb_acme_key **out, struct cb_err *err)
{
    char *buf;
    size_t len;
    int rc;

    rc = cb_read_file(path, CB_ACME_KEY_FILE_MAX, &buf, &len, err);
    if (rc != 0)
        return rc;
    rc = cb_acme_key_from_pem(buf, len, out, err);
    if (rc != 0 && err != NULL) {
        char msg[sizeof(err->msg)];
        snprintf(msg, sizeof(msg), "%s", err->msg);
        cb_err_set(err, rc, "%s: %s", path, msg);
    }
    cb_acme_secret_free(buf, len);
    return rc;
}

int cb_acme_key_pem(const struct cb_acme_key *k, char **pem, size_t *len, struct cb_err *err)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    BUF_MEM *mem = NULL;
    char *out;

    if (bio == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    if (!PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL)) {
        BIO_free(bio);
        return tls_fail(err, CB_ETLS, "encoding the private key");
    }
    BIO_get_mem_ptr(bio, &mem);
    out = malloc(mem->length + 1);
    if (out == NULL) {
        BIO_free(bio);
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    }
    memcpy(out, mem->data, mem->length);
    out[mem->length] = '\0';
    *len = mem->length;
    *pem = out;
    BIO_free(bio); /* a BUF_MEM is cleansed when freed */
    return 0;
}

int cb_acme_key_save(const struct cb_acme_key *k, const char *path, struct cb_err *err)
{
    char tmp[4096];
    char *pem = NULL;
    size_t len = 0, off = 0;
    int fd, rc;

    if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= (int)sizeof(tmp))
        return cb_err_set(err, CB_EINVAL, "key path too long: %s", path);
    rc = cb_acme_key_pem(k, &pem, &len, err);
    if (rc != 0)
        return rc;
    fd = mkstemp(tmp); /* 0600, O_EXCL, same folder: rename stays atomic */
    if (fd < 0) {
        rc = cb_err_set(err, CB_EIO, "cannot create a file next to %s: %s", path, strerror(errno));
        goto out_free_pem;
    }
    if (fchmod(fd, 0600) != 0)
        goto out_io;
    while (off < len) {
        ssize_t w = write(fd, pem + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto out_io;
        off += (size_t)w;
    }
    if (fsync(fd) != 0)
        goto out_io;
    if (close(fd) != 0) {
        fd = -1;
        goto out_io;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto out_io;
    rc = 0;
    goto out_free_pem;

out_io:
    rc = cb_err_set(err, CB_EIO, "cannot write the key to %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out_free_pem:
    cb_acme_secret_free(pem, len);
    return rc;
}

/* ---- JWK ---- */

/* base64url of a BIGNUM parameter, big-endian, padded to `pad` bytes (0: minimal). */
static char *bn_param_b64(const EVP_PKEY *pkey, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    char *out = NULL;
    int n;

    if (!EVP_PKEY_get_bn_param(pkey, name, &bn))
        return NULL;
    if (pad > 0)
        n = BN_num_bytes(bn) <= pad ? BN_bn2binpad(bn, buf, pad) : -1;
    else
        n = BN_num_bytes(bn) <= (int)sizeof(buf) ? BN_bn2bin(bn, buf) : -1;
    if (n >= 0)
        out = b64url_dup(buf, (size_t)n);
    BN_free(bn);
    return out;
}

int cb_acme_jwk_json(const struct cb_acme_key *k, char **out, struct cb_err *err)
{
    struct sbuf b = {0};
    char *a, *c;

    if (k->type == CB_ACME_KEY_EC256) {
        a = bn_param_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        c = bn_param_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        if (a == NULL || c == NULL)
            goto out_tls;
        sb_puts(&b, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"");
        sb_puts(&b, a);
        sb_puts(&b, "\",\"y\":\"");
        sb_puts(&b, c);
        sb_puts(&b, "\"}");
    } else {
        a = bn_param_b64(k->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
        c = bn_param_b64(k->pkey, OSSL_PKEY_PARAM_RSA_N, 0);
        if (a == NULL || c == NULL)
            goto out_tls;
        sb_puts(&b, "{\"e\":\"");
        sb_puts(&b, a);
        sb_puts(&b, "\",\"kty\":\"RSA\",\"n\":\"");
        sb_puts(&b, c);
        sb_puts(&b, "\"}");
    }
    free(a);
    free(c);
    *out = sb_take(&b);
    return *out != NULL ? 0 : cb_err_set(err, CB_ENOMEM, "out of memory");

out_tls:
    free(a);
    free(c);
    return tls_fail(err, CB_ETLS, "reading the public key");
}

static int sha256(const void *in, size_t len, unsigned char md[32])
{
    unsigned int mdlen = 0;
    return EVP_Digest(in, len, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32 ? 0 : CB_ETLS;
}

int cb_acme_jwk_thumbprint(const struct cb_acme_key *k, char out[44], struct cb_err *err)
{
    unsigned char md[32];
    char *jwk;
    int rc = cb_acme_jwk_json(k, &jwk, err);

    if (rc != 0)
        return rc;
    rc = sha256(jwk, strlen(jwk), md);
    free(jwk);
    if (rc != 0)
        return tls_fail(err, rc, "SHA-256");
    return cb_acme_b64url(md, sizeof(md), out, 44) == 43 ? 0 : CB_ETLS;
}

int cb_acme_dns01_value(const char *key_auth, char out[44])
{
    unsigned char md[32];

    if (key_auth == NULL || key_auth[0] == '\0')
        return CB_EINVAL;
    if (sha256(key_auth, strlen(key_auth), md) != 0)
        return CB_ETLS;
    return cb_acme_b64url(md, sizeof(md), out, 44) == 43 ? 0 : CB_ETLS;
}

/* ---- JWS ---- */

/* Signs data with k: ES256 as raw r||s (RFC 7518 §3.4), RS256 as PKCS#1 v1.5. Returns
 * the signature length in sig (size >= 512), or a negative code. */
static int sign(const struct cb_acme_key *k, const char *data, size_t len, unsigned char *sig,
                size_t size)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[256];
    size_t dlen = sizeof(der);
    int rc = CB_ETLS;

    if (md == NULL)
        return CB_ENOMEM;
    if (EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, k->pkey, NULL) != 1)
        goto out_free_md;
    if (k->type == CB_ACME_KEY_RSA2048) {
        dlen = size;
        if (EVP_DigestSign(md, sig, &dlen, (const unsigned char *)data, len) == 1)
            rc = (int)dlen;
        goto out_free_md;
    }
    if (EVP_DigestSign(md, der, &dlen, (const unsigned char *)data, len) != 1)
        goto out_free_md;
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    if (es == NULL)
        goto out_free_md;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    if (size >= 64 && BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32)
        rc = 64;
    ECDSA_SIG_free(es);
out_free_md:
    EVP_MD_CTX_free(md);
    return rc;
}

/* {"protected":P,"payload":L,"signature":S} where P and L are base64url already and the
 * signing input is P "." L. */
static int jws_finish(const struct cb_acme_key *k, const unsigned char *hmac_key, size_t hmac_len,
                      const char *prot_json, const char *payload_b64, char **out,
                      struct cb_err *err)
{
    struct sbuf input = {0}, res = {0};
    unsigned char sig[1024];
    char sig_b64[1400];
    char *prot_b64 = b64url_dup((const unsigned char *)prot_json, strlen(prot_json));
    int n, rc;

    if (prot_b64 == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    sb_puts(&input, prot_b64);
    sb_puts(&input, ".");
    sb_puts(&input, payload_b64);
    if (input.failed) {
        rc = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    if (hmac_key != NULL) {
        size_t mlen = 0;
        n = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, hmac_key, hmac_len,
                      (const unsigned char *)input.p, input.len, sig, sizeof(sig), &mlen) != NULL
                ? (int)mlen
                : CB_ETLS;
    } else {
        n = sign(k, input.p, input.len, sig, sizeof(sig));
    }
    if (n < 0) {
        rc = tls_fail(err, n, "signing the ACME request");
        goto out_free;
    }
    if (cb_acme_b64url(sig, (size_t)n, sig_b64, sizeof(sig_b64)) < 0) {
        rc = cb_err_set(err, CB_ETLS, "signature too long");
        goto out_free;
    }
    sb_puts(&res, "{\"protected\":\"");
    sb_puts(&res, prot_b64);
    sb_puts(&res, "\",\"payload\":\"");
    sb_puts(&res, payload_b64);
    sb_puts(&res, "\",\"signature\":\"");
    sb_puts(&res, sig_b64);
    sb_puts(&res, "\"}");
    *out = sb_take(&res);
    rc = *out != NULL ? 0 : cb_err_set(err, CB_ENOMEM, "out of memory");
out_free:
    free(input.p);
    free(prot_b64);
    return rc;
}

int cb_acme_jws(const struct cb_acme_key *k, const char *kid, const char *nonce, const char *url,
                const char *payload, char **out, struct cb_err *err)
{
    struct sbuf prot = {0};
    char *jwk = NULL, *payload_b64 = NULL;
    int rc;

    if (k == NULL || nonce == NULL || nonce[0] == '\0' || url == NULL || url[0] == '\0')
        return cb_err_set(err, CB_EINVAL, "an ACME request needs a key, a nonce and a URL");
    sb_puts(&prot, k->type == CB_ACME_KEY_EC256 ? "{\"alg\":\"ES256\"," : "{\"alg\":\"RS256\",");
    if (kid != NULL) {
        sb_puts(&prot, "\"kid\":");
        sb_json_str(&prot, kid);
    } else {
        rc = cb_acme_jwk_json(k, &jwk, err);
        if (rc != 0)
            goto out_free;
        sb_puts(&prot, "\"jwk\":");
        sb_puts(&prot, jwk);
    }
    sb_puts(&prot, ",\"nonce\":");
    sb_json_str(&prot, nonce);
    sb_puts(&prot, ",\"url\":");
    sb_json_str(&prot, url);
    sb_puts(&prot, "}");
    if (payload == NULL)
        payload = "";
    payload_b64 = b64url_dup((const unsigned char *)payload, strlen(payload));
    if (prot.failed || payload_b64 == NULL) {
        rc = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    rc = jws_finish(k, NULL, 0, prot.p, payload_b64, out, err);
out_free:
    free(prot.p);
    free(jwk);
    free(payload_b64);
    return rc;
}

int cb_acme_eab(const struct cb_acme_key *account, const char *eab_kid, const char *hmac_b64url,
                const char *url, char **out, struct cb_err *err)
{
    struct sbuf prot = {0};
    unsigned char key[512];
    size_t klen = 0;
    char *jwk = NULL, *jwk_b64 = NULL;
    int rc;

    if (eab_kid == NULL || eab_kid[0] == '\0' || url == NULL || url[0] == '\0')
        return cb_err_set(err, CB_EINVAL,
                          "External Account Binding needs the CA's key id "
                          "(eabkid=) and the request URL");
    if (hmac_b64url == NULL ||
        cb_acme_b64url_decode(hmac_b64url, strlen(hmac_b64url), key, sizeof(key), &klen) != 0 ||
        klen == 0) {
        rc = cb_err_set(err, CB_EINVAL,
                        "the External Account Binding HMAC key is not base64url text; copy "
                        "eabhmackey= exactly as the CA shows it");
        goto out_cleanse;
    }
    rc = cb_acme_jwk_json(account, &jwk, err);
    if (rc != 0)
        goto out_cleanse;
    jwk_b64 = b64url_dup((const unsigned char *)jwk, strlen(jwk));
    sb_puts(&prot, "{\"alg\":\"HS256\",\"kid\":");
    sb_json_str(&prot, eab_kid);
    sb_puts(&prot, ",\"url\":");
    sb_json_str(&prot, url);
    sb_puts(&prot, "}");
    if (prot.failed || jwk_b64 == NULL) {
        rc = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    rc = jws_finish(NULL, key, klen, prot.p, jwk_b64, out, err);
out_free:
    free(prot.p);
    free(jwk);
    free(jwk_b64);
out_cleanse:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* ---- certificates ---- */

/* Adds a subjectAltName of DNS names (each borrowed) to exts. */
static int add_san(STACK_OF(X509_EXTENSION) * exts, const char *const *names, size_t n)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    X509_EXTENSION *ext = NULL;
    int rc = CB_ETLS;

    if (gens == NULL)
        return CB_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (g == NULL || s == NULL || !ASN1_STRING_set(s, names[i], (int)strlen(names[i]))) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            goto out_free;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            goto out_free;
        }
    }
    ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
    if (ext != NULL && sk_X509_EXTENSION_push(exts, ext))
        rc = 0;
    else
        X509_EXTENSION_free(ext);
out_free:
    GENERAL_NAMES_free(gens);
    return rc;
}

static char *x509_pem(const X509 *x)
{
    BIO *bio = BIO_new(BIO_s_mem());
    BUF_MEM *mem = NULL;
    char *out = NULL;

    if (bio != NULL && PEM_write_bio_X509(bio, x)) {
        BIO_get_mem_ptr(bio, &mem);
        out = malloc(mem->length + 1);
        if (out != NULL) {
            memcpy(out, mem->data, mem->length);
            out[mem->length] = '\0';
        }
    }
    BIO_free(bio);
    return out;
}

int cb_acme_alpn_cert(const char *name, const char *key_auth, char **cert_pem, char **key_pem,
                      struct cb_err *err)
{
    char host[CB_NAME_MAX + 1];
    unsigned char md[32], ext_der[34], serial[16];
    STACK_OF(X509_EXTENSION) *exts = NULL;
    struct cb_acme_key *key = NULL;
    ASN1_OCTET_STRING *oct = NULL;
    ASN1_OBJECT *oid = NULL;
    X509_EXTENSION *ext = NULL;
    BIGNUM *bn = NULL;
    X509 *x = NULL;
    char *kpem = NULL;
    size_t klen = 0;
    int rc;

    if (name == NULL || cb_name_normalize(name, strlen(name), 0, host, NULL) != 0)
        return cb_err_set(err, CB_EINVAL,
                          "cannot make a TLS-ALPN-01 certificate for '%s': not "
                          "a DNS name",
                          name != NULL ? name : "");
    if (key_auth == NULL || key_auth[0] == '\0')
        return cb_err_set(err, CB_EINVAL, "TLS-ALPN-01 needs a key authorization");
    if (sha256(key_auth, strlen(key_auth), md) != 0)
        return tls_fail(err, CB_ETLS, "SHA-256");
    rc = cb_acme_key_generate(CB_ACME_KEY_EC256, &key, err);
    if (rc != 0)
        return rc;
    rc = CB_ETLS;
    x = X509_new();
    exts = sk_X509_EXTENSION_new_null();
    oct = ASN1_OCTET_STRING_new();
    oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    if (x == NULL || exts == NULL || oct == NULL || oid == NULL)
        goto out_free;
    if (!X509_set_version(x, X509_VERSION_3) || RAND_bytes(serial, sizeof(serial)) != 1)
        goto out_free;
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
        goto out_free;
    X509_NAME *subj = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)host, -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, subj))
        goto out_free;
    if (X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 7L * 24 * 3600) == NULL)
        goto out_free;
    if (!X509_set_pubkey(x, key->pkey))
        goto out_free;
    const char *names[1] = {host};
    if (add_san(exts, names, 1) != 0)
        goto out_free;
    /* extnValue = DER OCTET STRING (04 20 || digest), RFC 8737 §3 */
    ext_der[0] = 0x04;
    ext_der[1] = 0x20;
    memcpy(ext_der + 2, md, sizeof(md));
    if (!ASN1_OCTET_STRING_set(oct, ext_der, sizeof(ext_der)))
        goto out_free;
    ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, oct);
    if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
        X509_EXTENSION_free(ext);
        goto out_free;
    }
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++)
        if (!X509_add_ext(x, sk_X509_EXTENSION_value(exts, i), -1))
            goto out_free;
    if (X509_sign(x, key->pkey, EVP_sha256()) <= 0)
        goto out_free;
    rc = cb_acme_key_pem(key, &kpem, &klen, err);
    if (rc != 0)
        goto out_free;
    *cert_pem = x509_pem(x);
    if (*cert_pem == NULL) {
        cb_acme_secret_free(kpem, klen);
        rc = CB_ENOMEM;
        goto out_free;
    }
    *key_pem = kpem;
    rc = 0;
out_free:
    if (rc == CB_ETLS || rc == CB_ENOMEM)
        tls_fail(err, rc, "making the TLS-ALPN-01 certificate");
    BN_free(bn);
    ASN1_OBJECT_free(oid);
    ASN1_OCTET_STRING_free(oct);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_free(x);
    cb_acme_key_free(key);
    OPENSSL_cleanse(serial, sizeof(serial));
    return rc;
}

int cb_acme_csr(const struct cb_acme_key *k, const char *const *names, size_t n, char **b64url,
                struct cb_err *err)
{
    char(*norm)[CB_NAME_MAX + 1] = NULL;
    const char **ptrs = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    unsigned char *der = NULL;
    X509_REQ *req = NULL;
    int rc, dlen;

    if (k == NULL || names == NULL || n == 0 || n > CB_ACME_MAX_CSR_NAMES)
        return cb_err_set(err, CB_EINVAL, "a certificate request needs 1 to %d names",
                          CB_ACME_MAX_CSR_NAMES);
    norm = calloc(n, sizeof(*norm));
    ptrs = calloc(n, sizeof(*ptrs));
    if (norm == NULL || ptrs == NULL) {
        rc = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL ||
            cb_name_normalize(names[i], strlen(names[i]), CB_NAME_WILDCARD, norm[i], NULL) != 0) {
            rc = cb_err_set(err, CB_EINVAL,
                            "cannot request a certificate for '%s': not a DNS "
                            "name",
                            names[i] != NULL ? names[i] : "");
            goto out_free;
        }
        ptrs[i] = norm[i];
    }
    rc = CB_ETLS;
    req = X509_REQ_new();
    exts = sk_X509_EXTENSION_new_null();
    if (req == NULL || exts == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1))
        goto out_tls;
    if (strlen(norm[0]) <= 64 &&
        !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                    (const unsigned char *)norm[0], -1, -1, 0))
        goto out_tls;
    if (!X509_REQ_set_pubkey(req, k->pkey) || add_san(exts, ptrs, n) != 0 ||
        !X509_REQ_add_extensions(req, exts) || X509_REQ_sign(req, k->pkey, EVP_sha256()) <= 0)
        goto out_tls;
    dlen = i2d_X509_REQ(req, &der);
    if (dlen <= 0)
        goto out_tls;
    *b64url = b64url_dup(der, (size_t)dlen);
    rc = *b64url != NULL ? 0 : cb_err_set(err, CB_ENOMEM, "out of memory");
    goto out_free;

out_tls:
    rc = tls_fail(err, CB_ETLS, "making the certificate request");
out_free:
    OPENSSL_free(der);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    free(ptrs);
    free(norm);
    return rc;
}

static X509 *first_cert(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = NULL;

    if (bio != NULL)
        x = PEM_read_bio_X509(bio, NULL, no_password, NULL);
    BIO_free(bio);
    ERR_clear_error();
    return x;
}

int cb_acme_ari_cert_id(const char *pem, char *out, size_t size, struct cb_err *err)
{
    size_t len = pem != NULL ? strnlen(pem, CB_ACME_MAX_PEM + 1) : 0;
    X509 *x = len > 0 && len <= CB_ACME_MAX_PEM ? first_cert(pem, len) : NULL;
    const ASN1_OCTET_STRING *aki;
    unsigned char *der = NULL;
    const unsigned char *p;
    long clen;
    int tag, cls, dlen, n1, n2, rc;

    if (x == NULL)
        return cb_err_set(err, CB_EBADFILE, "no PEM certificate to ask renewal information for");
    aki = X509_get0_authority_key_id(x);
    if (aki == NULL || ASN1_STRING_length(aki) <= 0) {
        rc = cb_err_set(err, CB_EBADFILE,
                        "the certificate has no authority key identifier, "
                        "so the CA cannot give renewal information for it");
        goto out_free;
    }
    dlen = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &der);
    p = der;
    if (dlen <= 0 || (ASN1_get_object(&p, &clen, &tag, &cls, dlen) & 0x80) != 0 || clen <= 0 ||
        p + clen != der + dlen) {
        rc = tls_fail(err, CB_EBADFILE, "reading the certificate serial number");
        goto out_free;
    }
    n1 = cb_acme_b64url(ASN1_STRING_get0_data(aki), (size_t)ASN1_STRING_length(aki), out, size);
    if (n1 < 0 || (size_t)n1 + 2 > size) {
        rc = cb_err_set(err, CB_EINVAL, "no room for the renewal information CertID");
        goto out_free;
    }
    out[n1] = '.';
    n2 = cb_acme_b64url(p, (size_t)clen, out + n1 + 1, size - (size_t)n1 - 1);
    if (n2 < 0) {
        out[0] = '\0';
        rc = cb_err_set(err, CB_EINVAL, "no room for the renewal information CertID");
        goto out_free;
    }
    rc = 0;
out_free:
    OPENSSL_free(der);
    X509_free(x);
    return rc;
}

static int asn1_time_epoch(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;

    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return CB_EBADFILE;
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* One PEM block of pem[0..len) as an owned certificate, or NULL when it is not exactly
 * an unencrypted CERTIFICATE block. */
static X509 *pem_block_cert(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    X509 *x = NULL;

    if (bio == NULL)
        return NULL;
    if (PEM_read_bio(bio, &name, &header, &data, &dlen) && strcmp(name, "CERTIFICATE") == 0 &&
        header[0] == '\0' && dlen > 0) {
        const unsigned char *p = data;
        x = d2i_X509(NULL, &p, dlen);
        if (x != NULL && p != data + dlen) {
            X509_free(x);
            x = NULL;
        }
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    ERR_clear_error();
    return x;
}

int cb_acme_chain_check(const char *pem, size_t len, const struct cb_acme_key *k,
                        int64_t *not_before, int64_t *not_after, size_t *n_certs,
                        struct cb_err *err)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    static const char end[] = "-----END CERTIFICATE-----";
    X509 *leaf = NULL;
    size_t count = 0, pos = 0;
    int64_t nb = 0, na = 0;
    int rc = CB_EBADFILE;

    if (pem == NULL || len == 0 || len > CB_ACME_MAX_PEM)
        return cb_err_set(err, CB_EBADFILE,
                          "the CA sent no certificate chain (or one over "
                          "1 MiB)");
    for (;;) {
        while (pos < len &&
               (pem[pos] == ' ' || pem[pos] == '\t' || pem[pos] == '\r' || pem[pos] == '\n'))
            pos++;
        if (pos == len)
            break;
        if (len - pos < sizeof(begin) - 1 || memcmp(pem + pos, begin, sizeof(begin) - 1) != 0) {
            cb_err_set(err, CB_EBADFILE,
                       "the certificate chain holds something other than "
                       "PEM certificates (at byte %zu)",
                       pos);
            goto out_free;
        }
        const char *e = memmem(pem + pos, len - pos, end, sizeof(end) - 1);
        if (e == NULL) {
            cb_err_set(err, CB_EBADFILE, "certificate %zu of the chain has no END line", count + 1);
            goto out_free;
        }
        /* One block: its END line starts a line, and no other BEGIN comes before it. */
        size_t body = pos + sizeof(begin) - 1;
        if (e[-1] != '\n' ||
            memmem(pem + body, (size_t)(e - pem) - body, "-----BEGIN", 10) != NULL) {
            cb_err_set(err, CB_EBADFILE, "certificate %zu of the chain is malformed", count + 1);
            goto out_free;
        }
        size_t stop = (size_t)(e - pem) + sizeof(end) - 1;
        if (stop < len && pem[stop] == '\r')
            stop++;
        if (stop < len && pem[stop] == '\n')
            stop++;
        X509 *x = pem_block_cert(pem + pos, stop - pos);
        if (x == NULL) {
            cb_err_set(err, CB_EBADFILE, "certificate %zu of the chain is malformed", count + 1);
            goto out_free;
        }
        if (leaf == NULL)
            leaf = x;
        else
            X509_free(x);
        count++;
        pos = stop;
    }
    if (leaf == NULL) {
        cb_err_set(err, CB_EBADFILE, "the CA's answer holds no certificate");
        goto out_free;
    }
    if (asn1_time_epoch(X509_get0_notBefore(leaf), &nb) != 0 ||
        asn1_time_epoch(X509_get0_notAfter(leaf), &na) != 0) {
        ERR_clear_error();
        cb_err_set(err, CB_EBADFILE, "the certificate's validity dates are unreadable");
        goto out_free;
    }
    if (k != NULL) {
        EVP_PKEY *pub = X509_get0_pubkey(leaf);
        if (pub == NULL || EVP_PKEY_eq(pub, k->pkey) != 1) {
            ERR_clear_error();
            cb_err_set(err, CB_EBADFILE,
                       "the issued certificate does not match the key it "
                       "was requested for");
            goto out_free;
        }
    }
    if (not_before != NULL)
        *not_before = nb;
    if (not_after != NULL)
        *not_after = na;
    if (n_certs != NULL)
        *n_certs = count;
    rc = 0;
out_free:
    X509_free(leaf);
    return rc;
}
