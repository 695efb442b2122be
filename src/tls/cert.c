/*
 * cert.c: certificate import (PEM, PKCS#12), fingerprints and names, and writing
 * the pair into the state folder.
 */
#include "tls/cert.h"
#include "tls/ocsp.h"
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CB_MAX_INPUT_FILE (16 * 1024 * 1024)

struct cb_cert_bundle {
    X509 *leaf;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
};

void cb_tls_err_append(struct cb_err *err)
{
    unsigned long e;
    char buf[256];

    while ((e = ERR_get_error()) != 0) {
        if (err == NULL)
            continue;
        size_t n = strlen(err->msg);
        if (n + 4 >= sizeof(err->msg))
            continue;
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err->msg + n, sizeof(err->msg) - n, " (%s)", buf);
    }
}

void cb_cert_bundle_free(struct cb_cert_bundle *b)
{
    if (b == NULL)
        return;
    X509_free(b->leaf);
    sk_X509_pop_free(b->chain, X509_free);
    EVP_PKEY_free(b->key);
    free(b);
}

/* Reads a whole certificate or key file (at most 16 MiB). */
static int read_file(const char *path, unsigned char **out, size_t *len, struct cb_err *err)
{
    return cb_read_file(path, CB_MAX_INPUT_FILE, (char **)out, len, err);
}

static int on_pem_password(char *buf, int size, int rwflag, void *u)
{
    const char *pw = u;
    (void)rwflag;
    if (pw == NULL)
        return -1; /* no password: fail instead of prompting on the terminal */
    int n = (int)strlen(pw);
    if (n > size)
        n = size;
    memcpy(buf, pw, (size_t)n);
    return n;
}

static bool is_pem(const unsigned char *buf, size_t len)
{
    (void)len;
    return strstr((const char *)buf, "-----BEGIN ") != NULL;
}

/* Collects every certificate of a PEM buffer into *certs. */
static int pem_certs(const unsigned char *buf, size_t len, STACK_OF(X509) * certs)
{
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    X509 *x;

    if (bio == NULL)
        return CB_ENOMEM;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(certs, x)) {
            X509_free(x);
            BIO_free(bio);
            return CB_ENOMEM;
        }
    }
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(bio);
    return 0;
}

/*
 * An unencrypted PKCS#8 key (what the store writes) through one decoder context kept
 * per thread: OpenSSL 3.0 spends ~0.5 ms setting a decoder up, ten times what the
 * decoding then costs, and serve parses each certificate's key on its first handshake.
 * NULL when this is not such a key, or it does not decode: the caller takes the
 * general path.
 */
static _Thread_local OSSL_DECODER_CTX *dctx; /* this thread's, made on first use */
static _Thread_local EVP_PKEY *decoded;

void cb_cert_thread_done(void)
{
    OSSL_DECODER_CTX_free(dctx);
    dctx = NULL;
}

static EVP_PKEY *plain_pkcs8_key(const unsigned char *buf, size_t len)
{
    static const char begin[] = "-----BEGIN PRIVATE KEY-----";
    const unsigned char *p = buf, *end = buf + len;

    while (p < end && (size_t)(end - p) >= sizeof(begin) - 1 &&
           memcmp(p, begin, sizeof(begin) - 1) != 0)
        p++;
    if ((size_t)(end - p) < sizeof(begin) - 1)
        return NULL;
    if (dctx == NULL &&
        (dctx = OSSL_DECODER_CTX_new_for_pkey(&decoded, "PEM", NULL, NULL,
                                              OSSL_KEYMGMT_SELECT_KEYPAIR, NULL, NULL)) == NULL)
        return NULL;
    decoded = NULL;
    size_t left = (size_t)(end - p);
    int ok = OSSL_DECODER_from_data(dctx, &p, &left);
    EVP_PKEY *k = decoded;
    decoded = NULL;
    if (!ok) {
        EVP_PKEY_free(k);
        ERR_clear_error();
        return NULL;
    }
    return k;
}

static EVP_PKEY *pem_key(const unsigned char *buf, size_t len, const char *password, bool *enc)
{
    BIO *bio;
    EVP_PKEY *k;

    if (password == NULL && (k = plain_pkcs8_key(buf, len)) != NULL) {
        *enc = false;
        return k;
    }
    if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL)
        return NULL;
    k = PEM_read_bio_PrivateKey(bio, NULL, on_pem_password, (void *)password);
    BIO_free(bio);
    *enc = strstr((const char *)buf, "ENCRYPTED") != NULL;
    return k;
}

struct cb_cert_keycache {
    unsigned char *raw; /* the bytes of the key file last parsed, owned (cleansed) */
    size_t raw_len;
    /* The file they were last read from (path owned), as fstat saw it then, when that
     * identity vouches for the bytes (id_ok, keycache_vouch); and a stat since that found
     * the file the same (seen_ok: the next keycache_get of path takes the key unread). */
    char *path;
    struct stat id;
    bool id_ok, seen_ok;
    unsigned long reads; /* key files read (for tests) */
    long skew;           /* seconds added to the clock (for tests) */
    EVP_PKEY *key;       /* its key, owned (a reference each bundle takes) */
    char *pem;           /* the key as the store writes it (PKCS#8 PEM), owned */
    size_t pem_len;
    unsigned char *spki; /* its public key as a certificate holds it (DER), owned */
    int spki_len;
    /* A library context with no algorithms (OpenSSL's "null" provider), owned: certificates
     * decoded in it skip decoding their public key, which OpenSSL 3.0 does through a
     * decoder set up anew for each certificate (~0.5 ms, 16 times the rest of the parse). */
    OSSL_LIB_CTX *bare;
    OSSL_PROVIDER *bare_null;
};

int cb_cert_keycache_new(struct cb_cert_keycache **out, struct cb_err *err)
{
    if ((*out = calloc(1, sizeof(**out))) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    return 0;
}

static void keycache_drop(struct cb_cert_keycache *kc)
{
    free(kc->path);
    kc->path = NULL;
    kc->id_ok = kc->seen_ok = false;
    EVP_PKEY_free(kc->key);
    kc->key = NULL;
    if (kc->pem != NULL) {
        OPENSSL_cleanse(kc->pem, kc->pem_len);
        free(kc->pem);
        kc->pem = NULL;
    }
    OPENSSL_free(kc->spki);
    kc->spki = NULL;
    if (kc->raw != NULL) {
        OPENSSL_cleanse(kc->raw, kc->raw_len);
        free(kc->raw);
        kc->raw = NULL;
    }
}

void cb_cert_keycache_free(struct cb_cert_keycache *kc)
{
    if (kc == NULL)
        return;
    keycache_drop(kc);
    OSSL_PROVIDER_unload(kc->bare_null);
    OSSL_LIB_CTX_free(kc->bare);
    free(kc);
}

/* key (borrowed) as unencrypted PKCS#8 PEM in an owned buffer; NULL when it fails. */
static char *key_to_pem(EVP_PKEY *key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p, *out = NULL;
    long n;

    if (bio == NULL)
        return NULL;
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) &&
        (n = BIO_get_mem_data(bio, &p)) > 0 && (out = malloc((size_t)n)) != NULL) {
        memcpy(out, p, (size_t)n);
        *len = (size_t)n;
    }
    BIO_free(bio); /* a memory BIO is cleansed when freed */
    return out;
}

/* Whether two stats are of the same file unchanged: the same inode, size and times. */
static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * Remembers that kc's bytes were read from path, which fstat then saw as *st. The identity
 * vouches for the bytes only when the file's last change (ctime, which every write and
 * rename sets to the clock's time, and no one can set otherwise) is over a second older than
 * the read: a write after the read then gives another ctime, however soon it comes. A file
 * changed within the second before the read could still be changed again within the same
 * clock tick, unseen by its times (what git calls a racy entry): it is read every time.
 */
static void keycache_vouch(struct cb_cert_keycache *kc, const char *path, const struct stat *st)
{
    struct timespec now;

    kc->id_ok = false;
    if (kc->path == NULL || strcmp(kc->path, path) != 0) {
        free(kc->path);
        if ((kc->path = strdup(path)) == NULL)
            return;
    }
    kc->id = *st;
    kc->id_ok =
        clock_gettime(CLOCK_REALTIME, &now) == 0 && st->st_ctim.tv_sec + 1 < now.tv_sec + kc->skew;
}

unsigned long cb_cert__keycache_reads(const struct cb_cert_keycache *kc)
{
    return kc->reads;
}

void cb_cert__keycache_skew(struct cb_cert_keycache *kc, long seconds)
{
    kc->skew = seconds;
}

int cb_cert_keycache_stat(struct cb_cert_keycache *kc, const char *key_path, struct stat *st)
{
    kc->seen_ok = false;
    if (stat(key_path, st) != 0)
        return -1;
    kc->seen_ok =
        kc->key != NULL && kc->id_ok && strcmp(kc->path, key_path) == 0 && same_file(st, &kc->id);
    return 0;
}

/*
 * The unencrypted key in key_path through kc: the file is read for every call (a small read
 * from the page cache) unless a cb_cert_keycache_stat just before found it unchanged since
 * the read of the bytes kc holds (keycache_vouch), and parsed again only when its bytes
 * differ from the last ones, so a key file rewritten between two lines, however quickly, is
 * never taken for the old one. Returns a new reference, or NULL (*enc set when the key is
 * encrypted) with *ret set when the file cannot be read.
 */
static EVP_PKEY *keycache_get(struct cb_cert_keycache *kc, const char *key_path, bool *enc,
                              int *ret, struct cb_err *err)
{
    unsigned char *kbuf = NULL;
    size_t klen = 0;
    struct stat st;
    EVP_PKEY *k;
    bool seen = kc->seen_ok;

    kc->seen_ok = false; /* for one call: a second (the general path's) reads the file */
    *ret = 0;
    if (seen && kc->key != NULL && strcmp(kc->path, key_path) == 0) {
        EVP_PKEY_up_ref(kc->key);
        return kc->key;
    }
    kc->reads++;
    if ((*ret = cb_read_file_stat(key_path, CB_MAX_INPUT_FILE, (char **)&kbuf, &klen, &st, err)) !=
        0)
        return NULL;
    if (kc->key != NULL && klen == kc->raw_len && CRYPTO_memcmp(kbuf, kc->raw, klen) == 0) {
        OPENSSL_cleanse(kbuf, klen);
        free(kbuf);
        keycache_vouch(kc, key_path, &st);
        EVP_PKEY_up_ref(kc->key);
        return kc->key;
    }
    if ((k = pem_key(kbuf, klen, NULL, enc)) == NULL) {
        OPENSSL_cleanse(kbuf, klen);
        free(kbuf);
        return NULL;
    }
    keycache_drop(kc);
    kc->raw = kbuf;
    kc->raw_len = klen;
    if ((kc->pem = key_to_pem(k, &kc->pem_len)) == NULL) {
        ERR_clear_error();
        keycache_drop(kc);
        return k; /* not kept: encoded again when written */
    }
    kc->spki_len = i2d_PUBKEY(k, &kc->spki);
    if (kc->spki_len <= 0) {
        kc->spki = NULL; /* left unset by a failed i2d: certificates take the general path */
        ERR_clear_error();
    }
    EVP_PKEY_up_ref(k);
    kc->key = k;
    keycache_vouch(kc, key_path, &st);
    return k;
}

/* Whether x's public key is the one kc holds, byte for byte as DER (SubjectPublicKeyInfo). */
static bool spki_is(X509 *x, const struct cb_cert_keycache *kc)
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    bool same = n == kc->spki_len && memcmp(der, kc->spki, (size_t)n) == 0;

    OPENSSL_free(der);
    return same;
}

/* Decodes every certificate of a PEM buffer (as pem_certs) in kc's bare library context. */
static int pem_certs_bare(struct cb_cert_keycache *kc, const unsigned char *buf, size_t len,
                          STACK_OF(X509) * certs)
{
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    int ret = 0;

    if (bio == NULL)
        return -1;
    while (ret == 0 && PEM_read_bio(bio, &name, &header, &data, &dlen)) {
        if (strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0) {
            const unsigned char *p = data;
            X509 *x = X509_new_ex(kc->bare, NULL);
            if (x == NULL || d2i_X509(&x, &p, dlen) == NULL || p != data + dlen ||
                !sk_X509_push(certs, x)) {
                X509_free(x);
                ret = -1;
            }
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
    }
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(bio);
    return ret;
}

/*
 * The batch's quick path for a PEM certificate with its key in key_path (no password): the
 * key through kc, the certificates decoded without their public keys (kc->bare), the leaf
 * found as the one whose public key is the key's, byte for byte. 0 with b filled; anything
 * else (a certificate whose key is encoded otherwise, a file that is wrong in any way) has
 * the caller take the general path, which says what is wrong.
 */
static int load_pem_quick(const unsigned char *buf, size_t len, const char *key_path,
                          struct cb_cert_keycache *kc, struct cb_cert_bundle *b)
{
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *k;
    bool enc = false;
    int ret = -1;

    if (kc->bare == NULL && (kc->bare = OSSL_LIB_CTX_new()) != NULL &&
        (kc->bare_null = OSSL_PROVIDER_load(kc->bare, "null")) == NULL) {
        OSSL_LIB_CTX_free(kc->bare);
        kc->bare = NULL;
    }
    if (kc->bare == NULL) {
        ERR_clear_error();
        return -1;
    }
    if ((k = keycache_get(kc, key_path, &enc, &ret, NULL)) == NULL)
        return -1;
    if (k != kc->key || kc->spki == NULL || (certs = sk_X509_new_null()) == NULL ||
        pem_certs_bare(kc, buf, len, certs) != 0)
        goto out_free;
    ret = -1;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (spki_is(x, kc)) {
            b->leaf = x;
            (void)sk_X509_delete(certs, i);
            b->chain = certs;
            b->key = k;
            return 0;
        }
    }
out_free:
    ERR_clear_error();
    sk_X509_pop_free(certs, X509_free);
    EVP_PKEY_free(k);
    return -1;
}

/* The key comes from key_path when given (through kc when not NULL and there is no
 * password), else from key_mem (key_mem_len bytes) when given, else from buf itself. */
static int load_pem(const char *path, const unsigned char *buf, size_t len, const char *key_path,
                    const unsigned char *key_mem, size_t key_mem_len, const char *password,
                    struct cb_cert_keycache *kc, struct cb_cert_bundle *b, struct cb_err *err)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    unsigned char *kbuf = NULL;
    size_t klen = 0;
    bool enc = false;
    int ret;

    if (certs == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    if (kc != NULL && key_path != NULL && password == NULL &&
        load_pem_quick(buf, len, key_path, kc, b) == 0) {
        sk_X509_free(certs);
        return 0;
    }
    if ((ret = pem_certs(buf, len, certs)) != 0) {
        cb_err_set(err, ret, "out of memory reading %s", path);
        goto out_free_certs;
    }
    if (sk_X509_num(certs) == 0) {
        ret = cb_err_set(err, CB_EBADFILE,
                         "%s holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the "
                         "certificate file",
                         path);
        goto out_free_certs;
    }
    if (key_path != NULL && kc != NULL && password == NULL) {
        if ((b->key = keycache_get(kc, key_path, &enc, &ret, err)) == NULL && ret != 0)
            goto out_free_certs;
    } else if (key_path != NULL) {
        if ((ret = read_file(key_path, &kbuf, &klen, err)) != 0)
            goto out_free_certs;
        b->key = pem_key(kbuf, klen, password, &enc);
    } else if (key_mem != NULL) {
        b->key = pem_key(key_mem, key_mem_len, password, &enc);
    } else {
        b->key = pem_key(buf, len, password, &enc);
    }
    if (b->key == NULL) {
        const char *where = key_path ? key_path : path;
        if (enc && password == NULL)
            ret = cb_err_set(err, CB_EBADFILE,
                             "the private key in %s is encrypted; give its password with "
                             "password-file=FILE",
                             where);
        else if (enc)
            ret = cb_err_set(err, CB_EBADFILE,
                             "cannot decrypt the private key in %s: wrong password in "
                             "password-file?",
                             where);
        else if (key_path != NULL)
            ret = cb_err_set(err, CB_EBADFILE, "%s holds no PEM private key", key_path);
        else if (key_mem != NULL)
            ret = cb_err_set(err, CB_EBADFILE, "the key given with %s is no PEM private key", path);
        else
            ret = cb_err_set(err, CB_EBADFILE,
                             "%s holds no private key; give the key file with key=FILE", path);
        ERR_clear_error();
        goto out_free_key;
    }
    /* The leaf is the certificate whose public key is the private key's. */
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (X509_check_private_key(x, b->key) == 1) {
            b->leaf = x;
            (void)sk_X509_delete(certs, i);
            break;
        }
    }
    ERR_clear_error();
    if (b->leaf == NULL) {
        ret = cb_err_set(err, CB_EBADFILE,
                         "the private key%s%s does not match the certificate in %s; give the "
                         "key that was made with this certificate",
                         key_path ? " in " : "", key_path ? key_path : "", path);
        goto out_free_key;
    }
    b->chain = certs;
    certs = NULL;
    ret = 0;
out_free_key:
    if (kbuf != NULL) {
        OPENSSL_cleanse(kbuf, klen);
        free(kbuf);
    }
out_free_certs:
    sk_X509_pop_free(certs, X509_free);
    return ret;
}

/*
 * PKCS12_parse, retried once with OpenSSL's legacy provider loaded: PKCS#12 files from
 * older exporters (Windows before Server 2019 among them) encrypt with RC2-40, which
 * OpenSSL 3 keeps there. The provider stays loaded for the life of the process.
 */
static OSSL_PROVIDER *legacy_provider;
static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;

static void load_legacy(void)
{
    legacy_provider = OSSL_PROVIDER_try_load(NULL, "legacy", 1);
}

/* The provider is loaded once, whichever thread (a batch reads ahead on its own) asks
 * first; a retry is worth it only when that load succeeded. */
static int p12_parse(PKCS12 *p12, const char *password, struct cb_cert_bundle *b)
{
    if (PKCS12_parse(p12, password, &b->key, &b->leaf, &b->chain))
        return 1;
    pthread_once(&legacy_once, load_legacy);
    if (legacy_provider == NULL)
        return 0;
    ERR_clear_error();
    return PKCS12_parse(p12, password, &b->key, &b->leaf, &b->chain);
}

static int load_pkcs12(const char *path, const unsigned char *buf, size_t len, const char *password,
                       struct cb_cert_bundle *b, struct cb_err *err)
{
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    PKCS12 *p12;
    int ret = 0;

    if (bio == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    p12 = d2i_PKCS12_bio(bio, NULL);
    BIO_free(bio);
    if (p12 == NULL) {
        ERR_clear_error();
        return cb_err_set(err, CB_EBADFILE,
                          "%s is neither PEM nor PKCS#12; export the certificate as .pem or "
                          ".pfx",
                          path);
    }
    if (!p12_parse(p12, password ? password : "", b)) {
        ERR_clear_error();
        if (PKCS12_verify_mac(p12, password ? password : "", -1))
            ret = cb_err_set(err, CB_EBADFILE,
                             "cannot open PKCS#12 file %s: the password is right but the file "
                             "uses an encryption this system's OpenSSL cannot read; export it "
                             "again with AES-256 or as PEM",
                             path);
        else
            ret = cb_err_set(err, CB_EBADFILE,
                             password
                                 ? "cannot open PKCS#12 file %s: wrong password in password-file?"
                                 : "cannot open PKCS#12 file %s: it needs a password; give "
                                   "password-file=FILE",
                             path);
        ERR_clear_error();
        goto out_free_p12;
    }
    if (b->leaf == NULL || b->key == NULL) {
        ret = cb_err_set(err, CB_EBADFILE, "PKCS#12 file %s lacks a certificate or its key", path);
        goto out_free_p12;
    }
    if (X509_check_private_key(b->leaf, b->key) != 1) {
        ERR_clear_error();
        ret = cb_err_set(err, CB_EBADFILE, "the key in %s does not match its certificate", path);
        goto out_free_p12;
    }
    if (b->chain == NULL && (b->chain = sk_X509_new_null()) == NULL)
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
out_free_p12:
    PKCS12_free(p12);
    return ret;
}

int cb_cert_bundle_load(const char *path, const char *key_path, const char *password,
                        struct cb_cert_bundle **out, struct cb_err *err)
{
    return cb_cert_bundle_load_cached(path, key_path, password, NULL, out, err);
}

int cb_cert_bundle_load_cached(const char *path, const char *key_path, const char *password,
                               struct cb_cert_keycache *kc, struct cb_cert_bundle **out,
                               struct cb_err *err)
{
    struct cb_cert_bundle *b = calloc(1, sizeof(*b));
    unsigned char *buf = NULL;
    size_t len = 0;
    int ret;

    struct stat st;

    if (b == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    /* A batch's (kc) never waits on a FIFO: its reader loads files ahead without a stat. */
    ret = kc != NULL ? cb_read_file_stat(path, CB_MAX_INPUT_FILE, (char **)&buf, &len, &st, err)
                     : read_file(path, &buf, &len, err);
    if (ret != 0)
        goto out_free_bundle;
    if (is_pem(buf, len)) {
        ret = load_pem(path, buf, len, key_path, NULL, 0, password, kc, b, err);
    } else if (key_path != NULL) {
        ret = cb_err_set(err, CB_EBADFILE,
                         "%s is not PEM; key= is only for PEM certificates (a PKCS#12 file "
                         "carries its own key)",
                         path);
    } else {
        ret = load_pkcs12(path, buf, len, password, b, err);
    }
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (ret != 0)
        goto out_free_bundle;
    *out = b;
    return 0;
out_free_bundle:
    cb_cert_bundle_free(b);
    return ret;
}

int cb_cert_bundle_from_pem(const char *what, const char *chain_pem, size_t chain_len,
                            const char *key_pem, size_t key_len, struct cb_cert_bundle **out,
                            struct cb_err *err)
{
    struct cb_cert_bundle *b = NULL;
    unsigned char *chain = NULL, *key = NULL;
    int ret;

    if (chain_len > CB_MAX_INPUT_FILE || key_len > CB_MAX_INPUT_FILE)
        return cb_err_set(err, CB_EBADFILE, "%s is too large (over 16 MiB)", what);
    /* NUL-terminated copies: the PEM readers look for markers with strstr(). */
    b = calloc(1, sizeof(*b));
    chain = malloc(chain_len + 1);
    key = malloc(key_len + 1);
    if (b == NULL || chain == NULL || key == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    memcpy(chain, chain_pem, chain_len);
    chain[chain_len] = '\0';
    memcpy(key, key_pem, key_len);
    key[key_len] = '\0';
    if (!is_pem(chain, chain_len)) {
        ret = cb_err_set(err, CB_EBADFILE, "%s is not a PEM certificate chain", what);
        goto out_free;
    }
    if ((ret = load_pem(what, chain, chain_len, NULL, key, key_len, NULL, NULL, b, err)) != 0)
        goto out_free;
    *out = b;
    b = NULL;
out_free:
    if (key != NULL)
        OPENSSL_cleanse(key, key_len + 1);
    free(key);
    free(chain);
    cb_cert_bundle_free(b);
    return ret;
}

static void hex_upper(const unsigned char *md, unsigned n, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * n] = '\0';
}

static int64_t asn1_time_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

static int add_name(struct cb_cert_info *info, const char *name, size_t len)
{
    char norm[CB_NAME_MAX + 1];
    char **nn;

    /* Names OpenSSL decoded for us; keep the ones that are valid DNS names. */
    if (cb_name_normalize(name, len, CB_NAME_WILDCARD, norm, NULL) != 0)
        return 0;
    for (size_t i = 0; i < info->n_names; i++)
        if (strcmp(info->names[i], norm) == 0)
            return 0;
    nn = realloc(info->names, (info->n_names + 1) * sizeof(*nn));
    if (nn == NULL)
        return CB_ENOMEM;
    info->names = nn;
    if ((nn[info->n_names] = strdup(norm)) == NULL)
        return CB_ENOMEM;
    info->n_names++;
    return 0;
}

static int collect_names(X509 *x, struct cb_cert_info *info)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int ret = 0;
    bool had_dns = false;

    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_DNS)
            continue;
        had_dns = true;
        const ASN1_IA5STRING *s = gn->d.dNSName;
        if ((ret = add_name(info, (const char *)ASN1_STRING_get0_data(s),
                            (size_t)ASN1_STRING_length(s))) != 0)
            break;
    }
    GENERAL_NAMES_free(sans);
    if (ret != 0 || had_dns)
        return ret;
    /* No DNS SANs: fall back to the common name, as clients did before RFC 6125. */
    X509_NAME *subj = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0) {
        ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
        unsigned char *utf8 = NULL;
        int n = ASN1_STRING_to_UTF8(&utf8, cn);
        if (n > 0)
            ret = add_name(info, (const char *)utf8, (size_t)n);
        OPENSSL_free(utf8);
    }
    return ret;
}

static void key_type(EVP_PKEY *k, char *out, size_t size)
{
    /* OpenSSL's longest curve name has 23 characters; "EC-" and 28 fill key_type[32]. */
    char group[29] = "";
    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_RSA:
        snprintf(out, size, "RSA-%d", EVP_PKEY_get_bits(k));
        break;
    case EVP_PKEY_EC:
        EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL);
        if (strcmp(group, "prime256v1") == 0)
            snprintf(out, size, "EC-P256");
        else if (strcmp(group, "secp384r1") == 0)
            snprintf(out, size, "EC-P384");
        else if (strcmp(group, "secp521r1") == 0)
            snprintf(out, size, "EC-P521");
        else
            snprintf(out, size, "EC-%s", group);
        break;
    case EVP_PKEY_ED25519:
        snprintf(out, size, "ED25519");
        break;
    case EVP_PKEY_ED448:
        snprintf(out, size, "ED448");
        break;
    default:
        snprintf(out, size, "%s", EVP_PKEY_get0_type_name(k) ? EVP_PKEY_get0_type_name(k) : "?");
    }
}

/*
 * The digest of x's DER encoding, as X509_digest computes it but with the default library
 * context's digests: a certificate of the batch's quick path lives in one without any.
 */
static int der_digest(X509 *x, const EVP_MD *type, unsigned char *md, unsigned *n)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    int ok = len > 0 && EVP_Digest(der, (size_t)len, md, n, type, NULL);

    OPENSSL_free(der);
    return ok;
}

/* x's SHA-1 and SHA-256 thumbprints in hex, as der_digest computes them, from one encoding. */
static int der_digests(X509 *x, char sha1[CB_THUMB_LEN + 1], char sha256[65])
{
    unsigned char md[EVP_MAX_MD_SIZE], *der = NULL;
    unsigned n1 = 0, n2 = 0;
    int len = i2d_X509(x, &der);
    int ok = len > 0 && EVP_Digest(der, (size_t)len, md, &n1, EVP_sha1(), NULL) &&
             n1 == CB_THUMB_LEN / 2;

    if (ok)
        hex_upper(md, n1, sha1);
    ok = ok && EVP_Digest(der, (size_t)len, md, &n2, EVP_sha256(), NULL) && n2 == 32;
    if (ok)
        hex_upper(md, n2, sha256);
    OPENSSL_free(der);
    return ok;
}

int cb_cert_bundle_thumbprint(const struct cb_cert_bundle *b, char out[CB_THUMB_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;

    if (!der_digest(b->leaf, EVP_sha1(), md, &n) || n != CB_THUMB_LEN / 2) {
        ERR_clear_error();
        return CB_ETLS;
    }
    hex_upper(md, n, out);
    return 0;
}

int cb_cert_bundle_info(const struct cb_cert_bundle *b, struct cb_cert_info *info,
                        struct cb_err *err)
{
    BIO *bio;
    char *p;
    long len;

    memset(info, 0, sizeof(*info));
    if (!der_digests(b->leaf, info->thumbprint, info->sha256))
        goto out_tls;
    if ((bio = BIO_new(BIO_s_mem())) == NULL)
        goto out_tls;
    X509_NAME_print_ex(bio, X509_get_subject_name(b->leaf), 0, XN_FLAG_RFC2253);
    len = BIO_get_mem_data(bio, &p);
    info->subject = strndup(p, (size_t)len);
    BIO_free(bio);
    if (info->subject == NULL || collect_names(b->leaf, info) != 0) {
        cb_cert_info_clear(info);
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    }
    info->not_before = asn1_time_epoch(X509_get0_notBefore(b->leaf));
    info->not_after = asn1_time_epoch(X509_get0_notAfter(b->leaf));
    key_type(b->key, info->key_type, sizeof(info->key_type));
    info->chain_len = b->chain ? sk_X509_num(b->chain) : 0;
    info->ocsp_url = cb_ocsp_leaf_url(b->leaf, NULL, 0) ? CB_OCSP_URL_HTTP : CB_OCSP_URL_NONE;
    return 0;
out_tls:
    cb_err_set(err, CB_ETLS, "cannot compute the certificate's fingerprint");
    cb_tls_err_append(err);
    cb_cert_info_clear(info);
    return CB_ETLS;
}

/* Writes through path.tmp, fsync (when sync), rename: a crash leaves the old file or the new
 * one. */
static int write_pem(const char *path, mode_t mode, const struct cb_cert_bundle *b, bool key,
                     bool sync, struct cb_err *err)
{
    char tmp[CB_PATH_MAX + 16];
    int fd;
    FILE *f;
    int ok;

    snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return cb_err_set(err, CB_EIO, "cannot create %s: %s", tmp, strerror(errno));
    f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        unlink(tmp);
        return cb_err_set(err, CB_EIO, "cannot write %s: %s", tmp, strerror(errno));
    }
    if (key) {
        ok = PEM_write_PrivateKey(f, b->key, NULL, NULL, 0, NULL, NULL);
    } else {
        ok = PEM_write_X509(f, b->leaf);
        for (int i = 0; ok && b->chain && i < sk_X509_num(b->chain); i++)
            ok = PEM_write_X509(f, sk_X509_value(b->chain, i));
    }
    ok = ok && fflush(f) == 0 && (!sync || fsync(fileno(f)) == 0);
    if (fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        cb_err_set(err, CB_EIO, "cannot write %s: %s", path, strerror(errno));
        cb_tls_err_append(err);
        return CB_EIO;
    }
    return 0;
}

static int bundle_write(const struct cb_cert_bundle *b, const char *cert_path, const char *key_path,
                        bool sync, struct cb_err *err)
{
    int ret = write_pem(key_path, 0600, b, true, sync, err);
    if (ret != 0)
        return ret;
    ret = write_pem(cert_path, 0644, b, false, sync, err);
    if (ret != 0)
        unlink(key_path);
    return ret;
}

int cb_cert_bundle_write(const struct cb_cert_bundle *b, const char *cert_path,
                         const char *key_path, struct cb_err *err)
{
    return bundle_write(b, cert_path, key_path, true, err);
}

int cb_cert_bundle_write_unsynced(const struct cb_cert_bundle *b, const char *cert_path,
                                  const char *key_path, struct cb_err *err)
{
    return bundle_write(b, cert_path, key_path, false, err);
}

int cb_cert_bundle_pem(const struct cb_cert_bundle *b, const struct cb_cert_keycache *kc,
                       char **cert_pem, size_t *cert_len, char **key_pem, size_t *key_len,
                       struct cb_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p;
    long n;
    int ok;

    *cert_pem = *key_pem = NULL;
    if (bio == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    ok = PEM_write_bio_X509(bio, b->leaf);
    for (int i = 0; ok && b->chain && i < sk_X509_num(b->chain); i++)
        ok = PEM_write_bio_X509(bio, sk_X509_value(b->chain, i));
    if (ok && (n = BIO_get_mem_data(bio, &p)) > 0 && (*cert_pem = malloc((size_t)n)) != NULL) {
        memcpy(*cert_pem, p, (size_t)n);
        *cert_len = (size_t)n;
    }
    BIO_free(bio);
    if (kc != NULL && kc->key == b->key && kc->pem != NULL) {
        if ((*key_pem = malloc(kc->pem_len)) != NULL) {
            memcpy(*key_pem, kc->pem, kc->pem_len);
            *key_len = kc->pem_len;
        }
    } else {
        *key_pem = key_to_pem(b->key, key_len);
    }
    if (*cert_pem != NULL && *key_pem != NULL)
        return 0;
    free(*cert_pem);
    free(*key_pem); /* NULL: a failed key_to_pem leaves nothing to cleanse */
    *cert_pem = *key_pem = NULL;
    cb_err_set(err, CB_ENOMEM, "cannot encode the certificate or its key as PEM");
    cb_tls_err_append(err);
    return CB_ENOMEM;
}

int cb_key_mode_safe(const char *path, unsigned mode, struct cb_err *err)
{
    if (mode & S_IRWXO)
        return cb_err_set(err, CB_EPERM,
                          "the private key %s can be read by every user (mode %03o): run chmod "
                          "600 %s (or 640 with the service user's group)",
                          path, mode & 0777, path);
    if (mode & (S_IWGRP | S_IXGRP))
        return cb_err_set(err, CB_EPERM,
                          "the private key %s can be changed by its group (mode %03o): run chmod "
                          "g-wx %s",
                          path, mode & 0777, path);
    return 0;
}

int cb_key_file_safe(const char *path, struct cb_err *err)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return 0; /* reading it will say what is wrong */
    return cb_key_mode_safe(path, (unsigned)st.st_mode, err);
}

int cb_cert_check_pair(const char *cert_path, const char *key_path, struct cb_err *err)
{
    return cb_cert_check_pair_cached(cert_path, key_path, NULL, err);
}

int cb_cert_check_pair_cached(const char *cert_path, const char *key_path,
                              struct cb_cert_keycache *kc, struct cb_err *err)
{
    struct cb_cert_bundle *b = NULL;
    int ret = cb_key_file_safe(key_path ? key_path : cert_path, err);
    if (ret != 0)
        return CB_EKEY;
    ret = cb_cert_bundle_load_cached(cert_path, key_path, NULL, kc, &b, err);
    if (ret == CB_EBADFILE)
        ret = CB_EKEY;
    cb_cert_bundle_free(b);
    return ret;
}

int cb_cert_bundle_use(const struct cb_cert_bundle *b, SSL_CTX *ctx, struct cb_err *err)
{
    if (SSL_CTX_use_cert_and_key(ctx, b->leaf, b->key, b->chain, 1) != 1) {
        cb_err_set(err, CB_ETLS, "the TLS library refused the certificate and key");
        cb_tls_err_append(err);
        return CB_ETLS;
    }
    return 0;
}

enum cb_key_family cb_cert_bundle_key_family(const struct cb_cert_bundle *b)
{
    switch (EVP_PKEY_get_base_id(b->key)) {
    case EVP_PKEY_EC:
        return CB_KEYS_ECDSA;
    case EVP_PKEY_RSA:
        return CB_KEYS_RSA;
    default:
        return CB_KEYS_OTHER;
    }
}

int cb_cert_bundle_use_ssl(const struct cb_cert_bundle *b, SSL *ssl)
{
    return SSL_use_cert_and_key(ssl, b->leaf, b->key, b->chain, 1) == 1 ? 0 : CB_ETLS;
}

/* A parsed X509 holds its DER, the decoded fields, the cached extensions and the public
 * key (~4.5 KB besides the DER for both key types); a private key ~2.3 KB. */
#define CB_X509_HEAP 4608
#define CB_PKEY_HEAP 2304

static size_t x509_mem(X509 *x)
{
    int der = i2d_X509(x, NULL);
    return CB_X509_HEAP + (der > 0 ? (size_t)der : 0);
}

size_t cb_cert_bundle_mem(const struct cb_cert_bundle *b)
{
    size_t n = sizeof(*b) + x509_mem(b->leaf);
    int key = EVP_PKEY_get_size(b->key);

    for (int i = 0; b->chain != NULL && i < sk_X509_num(b->chain); i++)
        n += x509_mem(sk_X509_value(b->chain, i));
    return n + CB_PKEY_HEAP + (key > 0 ? (size_t)key : 0);
}

/* The system's trust anchors, loaded once per process. */
static X509_STORE *system_store(void)
{
    static X509_STORE *store;
    if (store == NULL && (store = X509_STORE_new()) != NULL) {
        X509_STORE_set_default_paths(store);
        ERR_clear_error();
    }
    return store;
}

static bool weak_sig(X509 *x)
{
    int md = NID_undef, pk = NID_undef;
    if (!OBJ_find_sigid_algs(X509_get_signature_nid(x), &md, &pk))
        return false;
    return md == NID_sha1 || md == NID_md5 || md == NID_md4;
}

static bool self_signed(X509 *x)
{
    return X509_check_issued(x, x) == X509_V_OK;
}

int cb_cert_audit_file(const char *cert_path, struct cb_cert_audit *out, struct cb_ocsp_cert **ocsp,
                       struct cb_err *err)
{
    STACK_OF(X509) *certs = sk_X509_new_null(), *anchors = sk_X509_new_null();
    X509_STORE_CTX *vctx = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    int ret;

    memset(out, 0, sizeof(*out));
    if (ocsp != NULL)
        *ocsp = NULL;
    if (certs == NULL || anchors == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    if ((ret = read_file(cert_path, &buf, &len, err)) != 0)
        goto out_free;
    if (is_pem(buf, len)) {
        if ((ret = pem_certs(buf, len, certs)) != 0) {
            cb_err_set(err, ret, "out of memory");
            goto out_free;
        }
    } else {
        struct cb_cert_bundle *b = NULL;
        if ((ret = cb_cert_bundle_load(cert_path, NULL, NULL, &b, err)) != 0)
            goto out_free;
        X509_up_ref(b->leaf);
        sk_X509_push(certs, b->leaf);
        for (int i = 0; i < sk_X509_num(b->chain); i++) {
            X509_up_ref(sk_X509_value(b->chain, i));
            sk_X509_push(certs, sk_X509_value(b->chain, i));
        }
        cb_cert_bundle_free(b);
    }
    if (sk_X509_num(certs) == 0) {
        ret = cb_err_set(err, CB_EBADFILE, "%s holds no certificate", cert_path);
        goto out_free;
    }
    /* The OCSP facts from the same parse, for a PEM file (what cb_ocsp_cert_load reads). */
    if (ocsp != NULL && is_pem(buf, len) && (ret = cb_ocsp_cert_from(certs, ocsp, err)) != 0)
        goto out_free;
    X509 *leaf = sk_X509_value(certs, 0);
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (self_signed(x)) {
            sk_X509_push(anchors, x);
            continue; /* a root's own signature is not what clients check */
        }
        if (!out->weak && weak_sig(x)) {
            out->weak = true;
            snprintf(out->weak_reason, sizeof(out->weak_reason), "%s is signed with SHA-1 or MD5",
                     i == 0 ? "the certificate" : "a chain certificate");
        }
    }
    EVP_PKEY *pub = X509_get0_pubkey(leaf);
    if (!out->weak && pub != NULL && EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA &&
        EVP_PKEY_get_bits(pub) < 2048) {
        out->weak = true;
        snprintf(out->weak_reason, sizeof(out->weak_reason), "RSA key of %d bits (under 2048)",
                 EVP_PKEY_get_bits(pub));
    }
    X509_STORE *store = system_store();
    if (store == NULL || (vctx = X509_STORE_CTX_new()) == NULL ||
        !X509_STORE_CTX_init(vctx, store, leaf, certs)) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    /* The chain's own self-signed root counts as an anchor; dates are judged elsewhere. */
    if (sk_X509_num(anchors) > 0)
        X509_STORE_CTX_set0_trusted_stack(vctx, anchors);
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(vctx), X509_V_FLAG_NO_CHECK_TIME);
    if (X509_verify_cert(vctx) == 1) {
        out->chain_ok = true;
    } else {
        snprintf(out->chain_error, sizeof(out->chain_error), "%s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
    }
    ERR_clear_error();
    ret = 0;
out_free:
    if (ret != 0 && ocsp != NULL) {
        cb_ocsp_cert_free(*ocsp);
        *ocsp = NULL;
    }
    X509_STORE_CTX_free(vctx);
    sk_X509_free(anchors); /* borrowed from certs */
    sk_X509_pop_free(certs, X509_free);
    if (buf != NULL) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
    return ret;
}
