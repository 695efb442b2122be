/*
 * ocsp.c: a certificate's OCSP facts, its request, and the check of a response
 * (tls/ocsp.h). Everything is OpenSSL's; this file only decides what is accepted.
 */
#include "tls/ocsp.h"
#include "tls/cert.h"
#include "util/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CB_OCSP_CERT_FILE_MAX (1024 * 1024)
#define CB_OCSP_SKEW 300 /* seconds of clock difference allowed with the responder */
#define CB_TLSEXT_STATUS_REQUEST 5

struct cb_ocsp_cert {
    X509 *leaf;
    X509 *issuer;           /* NULL when the file does not hold it */
    STACK_OF(X509) * chain; /* every certificate after the leaf */
    char url[CB_OCSP_URL_MAX + 1];
    bool must_staple;
};

void cb_ocsp_cert_free(struct cb_ocsp_cert *c)
{
    if (c == NULL)
        return;
    X509_free(c->leaf);
    X509_free(c->issuer);
    sk_X509_pop_free(c->chain, X509_free);
    free(c);
}

/* The first http:// responder named in the leaf's AIA: the only scheme a responder is
 * reached by (RFC 6960 appendix A); an https URL could not be checked without OCSP. */
bool cb_ocsp_leaf_url(const X509 *leaf, char *url, size_t size)
{
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp((X509 *)leaf);
    bool found = false;

    for (int i = 0; !found && i < sk_OPENSSL_STRING_num(urls); i++) {
        const char *u = sk_OPENSSL_STRING_value(urls, i);
        if (strncasecmp(u, "http://", 7) == 0 && strlen(u) <= CB_OCSP_URL_MAX &&
            strpbrk(u, " \t\r\n") == NULL) {
            if (url != NULL)
                snprintf(url, size, "%s", u);
            found = true;
        }
    }
    X509_email_free(urls);
    ERR_clear_error();
    return found;
}

static void read_url(struct cb_ocsp_cert *c)
{
    if (!cb_ocsp_leaf_url(c->leaf, c->url, sizeof(c->url)))
        c->url[0] = '\0';
}

static void read_must_staple(struct cb_ocsp_cert *c)
{
    TLS_FEATURE *f = X509_get_ext_d2i(c->leaf, NID_tlsfeature, NULL, NULL);

    for (int i = 0; f != NULL && i < sk_ASN1_INTEGER_num(f); i++)
        if (ASN1_INTEGER_get(sk_ASN1_INTEGER_value(f, i)) == CB_TLSEXT_STATUS_REQUEST)
            c->must_staple = true;
    sk_ASN1_INTEGER_pop_free(f, ASN1_INTEGER_free);
    ERR_clear_error();
}

/* The issuer among c->chain, the URL and must-staple, once c->leaf is set. */
static void ocsp_cert_finish(struct cb_ocsp_cert *c)
{
    for (int i = 0; i < sk_X509_num(c->chain); i++) {
        X509 *cand = sk_X509_value(c->chain, i);
        if (X509_check_issued(cand, c->leaf) == X509_V_OK && X509_up_ref(cand)) {
            c->issuer = cand;
            break;
        }
    }
    read_url(c);
    read_must_staple(c);
}

int cb_ocsp_cert_from(const struct stack_st_X509 *certs, struct cb_ocsp_cert **out,
                      struct cb_err *err)
{
    struct cb_ocsp_cert *c;

    if (sk_X509_num(certs) <= 0)
        return cb_err_set(err, CB_EBADFILE, "no certificate");
    if ((c = calloc(1, sizeof(*c))) == NULL || (c->chain = sk_X509_new_null()) == NULL)
        goto out_nomem;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (!X509_up_ref(x))
            goto out_nomem;
        if (i == 0) {
            c->leaf = x;
        } else if (!sk_X509_push(c->chain, x)) {
            X509_free(x);
            goto out_nomem;
        }
    }
    ocsp_cert_finish(c);
    *out = c;
    return 0;
out_nomem:
    cb_ocsp_cert_free(c);
    return cb_err_set(err, CB_ENOMEM, "out of memory");
}

int cb_ocsp_cert_load(const char *cert_path, struct cb_ocsp_cert **out, struct cb_err *err)
{
    struct cb_ocsp_cert *c = NULL;
    char *buf = NULL;
    size_t len = 0;
    BIO *bio = NULL;
    X509 *x;
    int ret;

    if ((ret = cb_read_file(cert_path, CB_OCSP_CERT_FILE_MAX, &buf, &len, err)) != 0)
        return ret;
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->chain = sk_X509_new_null()) == NULL ||
        (bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (c->leaf == NULL) {
            c->leaf = x;
        } else if (!sk_X509_push(c->chain, x)) {
            X509_free(x);
            ret = cb_err_set(err, CB_ENOMEM, "out of memory");
            goto out_free;
        }
    }
    ERR_clear_error(); /* the end of the PEM text */
    if (c->leaf == NULL) {
        ret = cb_err_set(err, CB_EBADFILE, "%s holds no PEM certificate", cert_path);
        goto out_free;
    }
    ocsp_cert_finish(c);
    BIO_free(bio);
    free(buf);
    *out = c;
    return 0;
out_free:
    BIO_free(bio);
    free(buf);
    cb_ocsp_cert_free(c);
    return ret;
}

const char *cb_ocsp_cert_url(const struct cb_ocsp_cert *c)
{
    return c->url;
}

bool cb_ocsp_cert_must_staple(const struct cb_ocsp_cert *c)
{
    return c->must_staple;
}

bool cb_ocsp_cert_issuer_ok(const struct cb_ocsp_cert *c)
{
    return c->issuer != NULL;
}

int cb_ocsp_request_der(const struct cb_ocsp_cert *c, unsigned char **der, size_t *len,
                        struct cb_err *err)
{
    OCSP_REQUEST *req = NULL;
    OCSP_CERTID *id = NULL;
    unsigned char *p = NULL, *copy;
    int n, ret;

    if (c->issuer == NULL)
        return cb_err_set(err, CB_EINVAL,
                          "the certificate's file does not hold its issuer; import the full "
                          "chain so that its OCSP responder can be asked");
    if ((req = OCSP_REQUEST_new()) == NULL ||
        (id = OCSP_cert_to_id(EVP_sha1(), c->leaf, c->issuer)) == NULL ||
        OCSP_request_add0_id(req, id) == NULL) {
        OCSP_CERTID_free(id);
        ret = cb_err_set(err, CB_ETLS, "cannot make an OCSP request");
        goto out_free;
    }
    if ((n = i2d_OCSP_REQUEST(req, &p)) <= 0) {
        ret = cb_err_set(err, CB_ETLS, "cannot encode an OCSP request");
        goto out_free;
    }
    if ((copy = malloc((size_t)n)) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    memcpy(copy, p, (size_t)n);
    *der = copy;
    *len = (size_t)n;
    ret = 0;
out_free:
    if (ret != 0)
        cb_tls_err_append(err);
    OPENSSL_free(p);
    OCSP_REQUEST_free(req);
    return ret;
}

static bool time_epoch(const ASN1_GENERALIZEDTIME *t, int64_t *out)
{
    struct tm tm;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return false;
    *out = (int64_t)timegm(&tm);
    return true;
}

/* The parsed response's basic part; NULL when it is not a successful one, with *why and
 * *code: CB_EBADFILE (not a response) or CB_EFAILED (the responder's error status). */
static OCSP_BASICRESP *parse(const unsigned char *der, size_t len, const char **why, int *code)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp;
    OCSP_BASICRESP *basic = NULL;

    *why = "it is not an OCSP response";
    *code = CB_EBADFILE;
    if (der == NULL || len == 0 || len > CB_OCSP_RESPONSE_MAX)
        return NULL;
    resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    if (resp == NULL || p != der + len)
        goto out_free;
    int st = OCSP_response_status(resp);
    if (st != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        *why = OCSP_response_status_str(st);
        *code = CB_EFAILED;
        goto out_free;
    }
    if ((basic = OCSP_response_get1_basic(resp)) == NULL)
        *why = "it is not a basic OCSP response";
out_free:
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    return basic;
}

bool cb_ocsp_response_times(const unsigned char *der, size_t len, int64_t *this_update,
                            int64_t *next_update)
{
    const char *why;
    int code;
    OCSP_BASICRESP *basic = parse(der, len, &why, &code);
    ASN1_GENERALIZEDTIME *tu = NULL, *nu = NULL;
    int64_t t, n;
    bool ok = false;

    if (basic == NULL)
        return false;
    OCSP_SINGLERESP *s = OCSP_resp_get0(basic, 0);
    if (s != NULL && OCSP_single_get0_status(s, NULL, NULL, &tu, &nu) >= 0 && time_epoch(tu, &t)) {
        if (nu == NULL)
            n = t + CB_OCSP_DEFAULT_VALIDITY;
        ok = nu == NULL || time_epoch(nu, &n);
    }
    if (ok) {
        *this_update = t;
        *next_update = n;
    }
    OCSP_BASICRESP_free(basic);
    ERR_clear_error();
    return ok;
}

int cb_ocsp_response_verify(const struct cb_ocsp_cert *c, const unsigned char *der, size_t len,
                            int64_t now, struct cb_ocsp_result *out, struct cb_err *err)
{
    OCSP_BASICRESP *basic = NULL;
    OCSP_CERTID *id = NULL;
    X509_STORE *store = NULL;
    STACK_OF(X509) *untrusted = NULL;
    ASN1_GENERALIZEDTIME *tu = NULL, *nu = NULL;
    const char *why;
    int status, reason, code, ret;
    int64_t t, n;

    if (c->issuer == NULL)
        return cb_err_set(err, CB_EFAILED, "the certificate's file does not hold its issuer");
    if ((basic = parse(der, len, &why, &code)) == NULL)
        return code == CB_EBADFILE ? cb_err_set(err, code, "%s", why)
                                   : cb_err_set(err, code, "the responder answered %s", why);
    /* The issuer is the one trust anchor: the response is signed by it, or by a responder
     * certificate it issued for OCSP signing (OCSP_basic_verify checks which). */
    if ((store = X509_STORE_new()) == NULL || !X509_STORE_add_cert(store, c->issuer) ||
        !X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN) ||
        (untrusted = sk_X509_new_null()) == NULL || !sk_X509_push(untrusted, c->issuer) ||
        (id = OCSP_cert_to_id(EVP_sha1(), c->leaf, c->issuer)) == NULL) {
        ret = cb_err_set(err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    if (OCSP_basic_verify(basic, untrusted, store, 0) <= 0) {
        ret = cb_err_set(err, CB_EFAILED,
                         "the response is not signed by the certificate's issuer or a responder "
                         "it delegated to");
        cb_tls_err_append(err);
        goto out_free;
    }
    if (OCSP_resp_find_status(basic, id, &status, &reason, NULL, &tu, &nu) != 1) {
        ret = cb_err_set(err, CB_EBADFILE, "the response is not about this certificate");
        goto out_free;
    }
    if (tu == NULL || (nu != NULL && ASN1_TIME_compare(tu, nu) > 0)) {
        ret = cb_err_set(err, CB_EFAILED, "the response's nextUpdate is before its thisUpdate");
        goto out_free;
    }
    if (!time_epoch(tu, &t) || (nu != NULL && !time_epoch(nu, &n))) {
        ret = cb_err_set(err, CB_EBADFILE, "the response's times cannot be read");
        goto out_free;
    }
    if (nu == NULL)
        n = t + CB_OCSP_DEFAULT_VALIDITY;
    if (t > now + CB_OCSP_SKEW) {
        ret = cb_err_set(err, CB_EFAILED, "the response's thisUpdate is in the future");
        goto out_free;
    }
    if (n < now) {
        ret = cb_err_set(err, CB_EFAILED, "the response has expired (nextUpdate is past)");
        goto out_free;
    }
    out->status = status == V_OCSP_CERTSTATUS_GOOD      ? CB_OCSP_GOOD
                  : status == V_OCSP_CERTSTATUS_REVOKED ? CB_OCSP_REVOKED
                                                        : CB_OCSP_UNKNOWN;
    out->this_update = t;
    out->next_update = n;
    ret = 0;
out_free:
    ERR_clear_error();
    OCSP_CERTID_free(id);
    sk_X509_free(untrusted);
    X509_STORE_free(store);
    OCSP_BASICRESP_free(basic);
    return ret;
}

const char *cb_ocsp_status_name(enum cb_ocsp_status s)
{
    switch (s) {
    case CB_OCSP_GOOD:
        return "good";
    case CB_OCSP_REVOKED:
        return "revoked";
    case CB_OCSP_UNKNOWN:
        break;
    }
    return "unknown";
}
