/*
 * challenge.c: TLS-ALPN-01 challenges as a worker serves them (tls/challenge.h): the
 * ALPN rules, and the set of parsed challenge certificates, sorted by name.
 */
#include "tls/challenge.h"
#include "tls/cert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define ACME_LEN (sizeof(CB_ACME_TLS_ALPN) - 1)
#define ACME_IDENTIFIER_OID "1.3.6.1.5.5.7.1.31" /* RFC 8737 section 6.1 */

struct cb_tls_challenge {
    char name[CB_NAME_MAX + 1];
    int64_t expires;
    X509 *cert;    /* owned; NULL when error is set */
    EVP_PKEY *key; /* owned; NULL when error is set */
    char *error;   /* owned, or NULL */
};

struct cb_tls_challenges {
    int refs;
    size_t n;
    struct cb_tls_challenge v[]; /* sorted by name */
};

/* ---- ALPN ----------------------------------------------------------------- */

/* Walks a list of length-prefixed names: counts them and whether acme-tls/1 is one.
 * false when the list is malformed (an empty name, or one running past the end). */
static bool walk_list(const unsigned char *p, size_t len, size_t *count, bool *acme)
{
    *count = 0;
    *acme = false;
    while (len > 0) {
        size_t n = p[0];
        if (n == 0 || n + 1 > len)
            return false;
        if (n == ACME_LEN && memcmp(p + 1, CB_ACME_TLS_ALPN, ACME_LEN) == 0)
            *acme = true;
        (*count)++;
        p += n + 1;
        len -= n + 1;
    }
    return true;
}

enum cb_acme_offer cb_tls_acme_offer(const unsigned char *ext, size_t len)
{
    size_t count;
    bool acme;

    if (ext == NULL || len < 2 || ((size_t)ext[0] << 8 | ext[1]) != len - 2 ||
        !walk_list(ext + 2, len - 2, &count, &acme) || !acme)
        return CB_ACME_OFFER_NONE;
    return count == 1 ? CB_ACME_OFFER_ONLY : CB_ACME_OFFER_MIXED;
}

/* The client's entry for protocol `want` (its length byte), or NULL. */
static const unsigned char *find_proto(const unsigned char *in, size_t len, const char *want)
{
    size_t wlen = strlen(want);
    while (len > 0) {
        size_t n = in[0];
        if (n == 0 || n + 1 > len)
            return NULL;
        if (n == wlen && memcmp(in + 1, want, n) == 0)
            return in;
        in += n + 1;
        len -= n + 1;
    }
    return NULL;
}

enum cb_alpn_result cb_tls_alpn_choose(bool challenge, bool h2, const unsigned char *in,
                                       size_t in_len, const unsigned char **out,
                                       unsigned char *out_len)
{
    static const char *const prefs[] = {"h2", "http/1.1"};
    size_t count;
    bool acme;

    if (challenge) {
        /* Only ever for a validation: acme-tls/1 and nothing else offered. */
        if (in == NULL || !walk_list(in, in_len, &count, &acme) || !acme || count != 1)
            return CB_ALPN_FATAL;
        *out = in + 1;
        *out_len = (unsigned char)ACME_LEN;
        return CB_ALPN_SELECTED;
    }
    if (in == NULL)
        return CB_ALPN_NONE;
    for (size_t i = h2 ? 0 : 1; i < sizeof(prefs) / sizeof(prefs[0]); i++) {
        const unsigned char *p = find_proto(in, in_len, prefs[i]);
        if (p != NULL) {
            *out = p + 1;
            *out_len = p[0];
            return CB_ALPN_SELECTED;
        }
    }
    return CB_ALPN_NONE;
}

/* ---- the set -------------------------------------------------------------- */

static int challenge_index = -1; /* SSL ex_data slot: non-NULL while serving a challenge */

/* Marks c unusable for `why` (with OpenSSL's reason, when it gave one); false when out of
 * memory. */
static bool set_error(struct cb_tls_challenge *c, const char *why)
{
    struct cb_err e = {0};
    snprintf(e.msg, sizeof(e.msg), "%s", why);
    cb_tls_err_append(&e);
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
    c->cert = NULL;
    c->key = NULL;
    c->error = strdup(e.msg);
    return c->error != NULL;
}

/* A key is never asked a password for: an encrypted one is refused, not prompted for. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* Parses one challenge into c (name and expiry already set). false: out of memory. */
static bool parse_one(struct cb_tls_challenge *c, const struct cb_challenge *in)
{
    ASN1_OBJECT *oid = NULL;
    bool ok = true;
    BIO *b;
    int idx;

    ERR_clear_error();
    if ((b = BIO_new_mem_buf(in->cert_pem, -1)) == NULL)
        return false;
    c->cert = PEM_read_bio_X509(b, NULL, no_password, NULL);
    BIO_free(b);
    if ((b = BIO_new_mem_buf(in->key_pem, -1)) == NULL)
        return false;
    c->key = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
    BIO_free(b);
    if (c->cert == NULL)
        ok = set_error(c, "the challenge certificate is not a PEM certificate");
    else if (c->key == NULL)
        ok = set_error(c, "the challenge key is not an unencrypted PEM private key");
    else if (X509_check_private_key(c->cert, c->key) != 1)
        ok = set_error(c, "the challenge key does not match its certificate");
    else if ((oid = OBJ_txt2obj(ACME_IDENTIFIER_OID, 1)) == NULL)
        ok = false;
    else if ((idx = X509_get_ext_by_OBJ(c->cert, oid, -1)) < 0 ||
             !X509_EXTENSION_get_critical(X509_get_ext(c->cert, idx)))
        ok = set_error(c, "the challenge certificate has no critical acmeIdentifier extension "
                          "(RFC 8737)");
    else if (X509_check_host(c->cert, c->name, 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1)
        ok = set_error(c, "the challenge certificate does not name its server name");
    ASN1_OBJECT_free(oid);
    ERR_clear_error();
    return ok;
}

static void challenge_clear(struct cb_tls_challenge *c)
{
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
    free(c->error);
}

static int cmp_challenge(const void *a, const void *b)
{
    return strcmp(((const struct cb_tls_challenge *)a)->name,
                  ((const struct cb_tls_challenge *)b)->name);
}

int cb_tls_challenges_new(const struct cb_challenge *v, size_t n, struct cb_tls_challenges **out,
                          struct cb_err *err)
{
    struct cb_tls_challenges *s = calloc(1, sizeof(*s) + n * sizeof(s->v[0]));

    /* The slot is taken here, not on the handshake path. */
    if (challenge_index < 0)
        challenge_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (s == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    s->refs = 1;
    for (size_t i = 0; i < n; i++) {
        struct cb_tls_challenge *c = &s->v[s->n++];
        memcpy(c->name, v[i].name, sizeof(c->name));
        c->name[CB_NAME_MAX] = '\0';
        c->expires = v[i].expires;
        if (!parse_one(c, &v[i])) {
            ERR_clear_error();
            cb_tls_challenges_unref(s);
            return cb_err_set(err, CB_ENOMEM, "out of memory");
        }
    }
    if (s->n > 1)
        qsort(s->v, s->n, sizeof(s->v[0]), cmp_challenge);
    *out = s;
    return 0;
}

struct cb_tls_challenges *cb_tls_challenges_ref(struct cb_tls_challenges *s)
{
    if (s != NULL)
        s->refs++;
    return s;
}

void cb_tls_challenges_unref(struct cb_tls_challenges *s)
{
    if (s == NULL || --s->refs > 0)
        return;
    for (size_t i = 0; i < s->n; i++)
        challenge_clear(&s->v[i]);
    free(s);
}

size_t cb_tls_challenges_count(const struct cb_tls_challenges *s)
{
    return s != NULL ? s->n : 0;
}

const struct cb_tls_challenge *cb_tls_challenges_at(const struct cb_tls_challenges *s, size_t i)
{
    return &s->v[i];
}

const struct cb_tls_challenge *cb_tls_challenges_find(const struct cb_tls_challenges *s,
                                                      const char *name, int64_t now)
{
    size_t lo = 0, hi = s != NULL ? s->n : 0;

    if (name == NULL)
        return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->v[mid].name);
        if (c == 0)
            return s->v[mid].expires > now ? &s->v[mid] : NULL;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *cb_tls_challenge_name(const struct cb_tls_challenge *c)
{
    return c->name;
}

const char *cb_tls_challenge_error(const struct cb_tls_challenge *c)
{
    if (c->error != NULL)
        return c->error;
    return c->cert == NULL || c->key == NULL ? "out of memory" : NULL;
}

/* ---- one connection ----------------------------------------------------- */

int cb_tls_apply_challenge(SSL *ssl, const struct cb_tls_challenge *c)
{
    if (challenge_index < 0 &&
        (challenge_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL)) < 0)
        return CB_ETLS;
    if (cb_tls_challenge_error(c) != NULL ||
        SSL_use_cert_and_key(ssl, c->cert, c->key, NULL, 1) != 1 ||
        SSL_set_ex_data(ssl, challenge_index, (void *)c) != 1) {
        ERR_clear_error();
        return CB_ETLS;
    }
    /* No session is kept or resumed for a validation: each one proves the key anew. */
    SSL_set_options(ssl, SSL_OP_NO_TICKET);
    SSL_set_num_tickets(ssl, 0);
    return 0;
}

bool cb_tls_is_challenge(SSL *ssl)
{
    return challenge_index >= 0 && SSL_get_ex_data(ssl, challenge_index) != NULL;
}

int cb_tls_alert_no_application_protocol(void)
{
    return SSL_AD_NO_APPLICATION_PROTOCOL;
}
