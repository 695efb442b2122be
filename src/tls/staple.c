/*
 * staple.c: the responses a worker staples and the status callback (tls/staple.h).
 */
#include "tls/staple.h"
#include "tls/ocsp.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct cb_tls_staple {
    int refs;
    int8_t matches; /* for the certificate of its thumbprint: 0 not checked yet, 1 yes, -1 no */
    char thumb[CB_THUMB_LEN + 1];
    int64_t next_update; /* not stapled from then on */
    size_t len;
    unsigned char der[]; /* len bytes */
};

struct cb_tls_staples {
    int refs;
    struct cb_tls_staple **v; /* owned references, sorted by thumb once finished */
    size_t n, cap;
};

static int staple_index = -1;  /* SSL ex_data: the response for this connection's certificate */
static int staple2_index = -1; /* SSL ex_data: a pair's second certificate's (certhash=T1,T2) */
static int served_index = -1;  /* SSL ex_data: non-NULL once one was stapled */

static void staple_unref(struct cb_tls_staple *st)
{
    if (st != NULL && --st->refs == 0)
        free(st);
}

struct cb_tls_staples *cb_tls_staples_new(void)
{
    struct cb_tls_staples *s = calloc(1, sizeof(*s));
    if (s != NULL)
        s->refs = 1;
    return s;
}

struct cb_tls_staples *cb_tls_staples_ref(struct cb_tls_staples *s)
{
    if (s != NULL)
        s->refs++;
    return s;
}

void cb_tls_staples_unref(struct cb_tls_staples *s)
{
    if (s == NULL || --s->refs > 0)
        return;
    for (size_t i = 0; i < s->n; i++)
        staple_unref(s->v[i]);
    free(s->v);
    free(s);
}

/* Appends st (takes the reference). */
static int push(struct cb_tls_staples *s, struct cb_tls_staple *st)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        struct cb_tls_staple **nv = realloc(s->v, cap * sizeof(*nv));
        if (nv == NULL) {
            staple_unref(st);
            return CB_ENOMEM;
        }
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = st;
    return 0;
}

int cb_tls_staples_add(struct cb_tls_staples *s, const char *thumb, const unsigned char *der,
                       size_t len, int64_t now)
{
    int64_t this_update, next_update;
    struct cb_tls_staple *st;

    if (strlen(thumb) != CB_THUMB_LEN || len > CB_OCSP_RESPONSE_MAX ||
        !cb_ocsp_response_times(der, len, &this_update, &next_update) || next_update <= now)
        return CB_EBADFILE;
    if ((st = malloc(sizeof(*st) + len)) == NULL)
        return CB_ENOMEM;
    st->refs = 1;
    st->matches = 0;
    memcpy(st->thumb, thumb, CB_THUMB_LEN + 1);
    st->next_update = next_update;
    st->len = len;
    memcpy(st->der, der, len);
    return push(s, st);
}

int cb_tls_staples_add_from(struct cb_tls_staples *s, const struct cb_tls_staples *old,
                            const char *thumb)
{
    struct cb_tls_staple *st = (struct cb_tls_staple *)cb_tls_staples_find(old, thumb);
    if (st == NULL)
        return 0;
    st->refs++;
    return push(s, st);
}

static int cmp_skip(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int cb_tls_staples_add_all_from(struct cb_tls_staples *s, const struct cb_tls_staples *old,
                                const char (*skip)[CB_THUMB_LEN + 1], size_t n_skip)
{
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        struct cb_tls_staple *st = old->v[i];
        if (n_skip > 0 && bsearch(st->thumb, skip, n_skip, sizeof(*skip), cmp_skip) != NULL)
            continue;
        st->refs++;
        if (push(s, st) != 0)
            return CB_ENOMEM;
    }
    return 0;
}

static int cmp_staple(const void *a, const void *b)
{
    const struct cb_tls_staple *x = *(struct cb_tls_staple *const *)a;
    const struct cb_tls_staple *y = *(struct cb_tls_staple *const *)b;
    return strcmp(x->thumb, y->thumb);
}

void cb_tls_staples_finish(struct cb_tls_staples *s)
{
    size_t out = 0;

    if (s->n < 2)
        return;
    qsort(s->v, s->n, sizeof(*s->v), cmp_staple);
    for (size_t i = 0; i < s->n; i++) {
        if (out > 0 && strcmp(s->v[out - 1]->thumb, s->v[i]->thumb) == 0)
            staple_unref(s->v[i]);
        else
            s->v[out++] = s->v[i];
    }
    s->n = out;
}

size_t cb_tls_staples_count(const struct cb_tls_staples *s)
{
    return s != NULL ? s->n : 0;
}

const struct cb_tls_staple *cb_tls_staples_find(const struct cb_tls_staples *s, const char *thumb)
{
    size_t lo = 0, hi;

    if (s == NULL || thumb == NULL)
        return NULL;
    hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->v[mid]->thumb, thumb);
        if (c == 0)
            return s->v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/*
 * Whether st answers for the certificate ssl serves (its CertID: serial number and the
 * issuer's name and key hashes), found in the chain it is served with. The manager checked
 * that before caching it, and a staple is found by the thumbprint of the certificate being
 * served, so this holds for the staple's whole life: it is worked out once, at its first
 * use, and a file put in the cache by other means for another certificate is never sent.
 */
static bool matches(SSL *ssl, struct cb_tls_staple *st)
{
    X509 *leaf = SSL_get_certificate(ssl), *issuer = NULL;
    STACK_OF(X509) *chain = NULL;
    const unsigned char *p = st->der;
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *basic = NULL;
    OCSP_CERTID *id = NULL;

    if (st->matches != 0)
        return st->matches > 0;
    st->matches = -1;
    if (leaf == NULL || SSL_get0_chain_certs(ssl, &chain) != 1)
        goto out_free;
    for (int i = 0; i < sk_X509_num(chain) && issuer == NULL; i++)
        if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK)
            issuer = sk_X509_value(chain, i);
    if (issuer == NULL || (id = OCSP_cert_to_id(EVP_sha1(), leaf, issuer)) == NULL ||
        (resp = d2i_OCSP_RESPONSE(NULL, &p, (long)st->len)) == NULL ||
        (basic = OCSP_response_get1_basic(resp)) == NULL)
        goto out_free;
    if (OCSP_resp_find_status(basic, id, NULL, NULL, NULL, NULL, NULL) == 1)
        st->matches = 1;
out_free:
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(basic);
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    return st->matches > 0;
}

/* OpenSSL asks after the certificate is chosen, in TLS 1.2 and 1.3 alike, only when the
 * client sent status_request. Nothing here waits: the response is in memory already. */
/* Whether st is the response of the certificate ssl serves, by thumbprint (SHA-1 of the
 * leaf, which OpenSSL keeps computed): for a pair, which of the two OpenSSL chose. */
static bool is_served(SSL *ssl, const struct cb_tls_staple *st)
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char md[20];
    unsigned len = 0;
    char thumb[CB_THUMB_LEN + 1];
    X509 *leaf = SSL_get_certificate(ssl);

    if (st == NULL || leaf == NULL || X509_digest(leaf, EVP_sha1(), md, &len) != 1 || len != 20) {
        ERR_clear_error();
        return false;
    }
    for (unsigned i = 0; i < 20; i++) {
        thumb[2 * i] = hex[md[i] >> 4];
        thumb[2 * i + 1] = hex[md[i] & 15];
    }
    thumb[CB_THUMB_LEN] = '\0';
    return strcmp(thumb, st->thumb) == 0;
}

static int on_status(SSL *ssl, void *arg)
{
    struct cb_tls_staple *st = SSL_get_ex_data(ssl, staple_index);
    struct cb_tls_staple *st2 = SSL_get_ex_data(ssl, staple2_index);
    unsigned char *copy;
    (void)arg;

    if (st2 != NULL) /* a pair: the response of the certificate served, or none */
        st = is_served(ssl, st) ? st : is_served(ssl, st2) ? st2 : NULL;

    if (st == NULL || st->next_update <= (int64_t)time(NULL) || !matches(ssl, st))
        return SSL_TLSEXT_ERR_NOACK; /* none, expired, or not this certificate's: no staple */
    if ((copy = OPENSSL_malloc(st->len)) == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    memcpy(copy, st->der, st->len);
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)st->len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    SSL_set_ex_data(ssl, served_index, (void *)st);
    return SSL_TLSEXT_ERR_OK;
}

void cb_tls_staple_install(SSL_CTX *ctx)
{
    if (staple_index < 0)
        staple_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (staple2_index < 0)
        staple2_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (served_index < 0)
        served_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX_set_tlsext_status_cb(ctx, on_status);
}

/* Stands for a pair's second certificate that has no response: never served. */
static struct cb_tls_staple no_staple = {.matches = -1};

void cb_tls_staple_attach(SSL *ssl, const struct cb_tls_staple *st, bool pair,
                          const struct cb_tls_staple *st2)
{
    if (staple_index >= 0)
        SSL_set_ex_data(ssl, staple_index, (void *)st);
    if (staple2_index >= 0)
        SSL_set_ex_data(ssl, staple2_index, pair ? (void *)(st2 != NULL ? st2 : &no_staple) : NULL);
}

bool cb_tls_staple_served(SSL *ssl)
{
    return served_index >= 0 && SSL_get_ex_data(ssl, served_index) != NULL;
}
