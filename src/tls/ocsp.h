/*
 * OCSP (RFC 6960) for stapling, design/bindings.md section 9: what a certificate says
 * about its responder (the AIA OCSP URL, the TLS Feature "must-staple"), the request for
 * it, and the check of a response: signed by the issuer or a responder it delegated to,
 * for this certificate's CertID, current. The fetching itself is the manager's
 * (daemon/ocsp_fetch.c); serving a response is tls/staple.h.
 */
#ifndef CB_TLS_OCSP_H
#define CB_TLS_OCSP_H

#include <certbind/certbind.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CB_OCSP_URL_MAX 1024
#define CB_OCSP_RESPONSE_MAX 65536 /* a response is a few KB; larger is refused */
/* A response without nextUpdate is taken as good for this long after thisUpdate. */
#define CB_OCSP_DEFAULT_VALIDITY 3600

struct cb_ocsp_cert; /* a leaf certificate and its issuer */

/*
 * Loads the leaf (the first certificate) of the PEM file cert_path and, from the
 * certificates after it, its issuer. Returns an owned object in *out (free with
 * cb_ocsp_cert_free). Errors: CB_EIO, CB_EBADFILE (not PEM certificates), CB_ENOMEM.
 * A missing issuer is not an error here: cb_ocsp_cert_issuer_ok says so.
 */
int cb_ocsp_cert_load(const char *cert_path, struct cb_ocsp_cert **out,
                      struct cb_err *err) CB_MUST_CHECK;
/* The same from certificates already parsed: certs (STACK_OF(X509) *) holds a file's
 * certificates in order, the leaf first; borrowed (the object takes its own references).
 * CB_EBADFILE when it is empty, CB_ENOMEM. */
struct stack_st_X509;
int cb_ocsp_cert_from(const struct stack_st_X509 *certs, struct cb_ocsp_cert **out,
                      struct cb_err *err) CB_MUST_CHECK;
void cb_ocsp_cert_free(struct cb_ocsp_cert *c);
/* The first http:// OCSP URL of the leaf's Authority Information Access, "" when none
 * (borrowed from c). */
const char *cb_ocsp_cert_url(const struct cb_ocsp_cert *c);
/* The same rule on a bare leaf (X509 *, borrowed): whether it names an http responder
 * (written to url, size bytes, when url is not NULL). What the store records at import
 * (cb_cert_info.ocsp_url), so that serve never opens a certificate file to learn it has none. */
struct x509_st;
bool cb_ocsp_leaf_url(const struct x509_st *leaf, char *url, size_t size);
/* Whether the leaf carries the TLS Feature extension with status_request (RFC 7633). */
bool cb_ocsp_cert_must_staple(const struct cb_ocsp_cert *c);
/* Whether the issuer of the leaf is in its file (without it no request can be made). */
bool cb_ocsp_cert_issuer_ok(const struct cb_ocsp_cert *c);

/* The DER of an OCSP request for the leaf (no nonce, so responders may cache), in an
 * owned buffer *der (free()) of *len bytes. CB_EINVAL without an issuer, CB_ETLS. */
int cb_ocsp_request_der(const struct cb_ocsp_cert *c, unsigned char **der, size_t *len,
                        struct cb_err *err) CB_MUST_CHECK;

enum cb_ocsp_status { CB_OCSP_GOOD, CB_OCSP_REVOKED, CB_OCSP_UNKNOWN };

struct cb_ocsp_result {
    enum cb_ocsp_status status;
    int64_t this_update, next_update; /* seconds since the epoch */
};

/*
 * Checks the DER response (len bytes, borrowed) for c at time now: a successful response
 * whose signature verifies against c's issuer (directly, or through a responder
 * certificate the issuer signed for OCSP signing), with a single response for c's CertID
 * whose thisUpdate/nextUpdate hold now (5 minutes of clock skew allowed). Fills *out on
 * success, whatever the certificate's status (revoked is a valid answer). Errors:
 * CB_EBADFILE (not an OCSP response, or not for c), CB_EFAILED (responder error status,
 * bad signature, out of date), each with a message that says which.
 */
int cb_ocsp_response_verify(const struct cb_ocsp_cert *c, const unsigned char *der, size_t len,
                            int64_t now, struct cb_ocsp_result *out,
                            struct cb_err *err) CB_MUST_CHECK;

/*
 * The first single response's thisUpdate and nextUpdate (thisUpdate +
 * CB_OCSP_DEFAULT_VALIDITY when absent) of a successful response, without any check of
 * who signed it or for what: for a response that was checked when it was cached. Returns
 * false when der is not a successful basic response.
 */
bool cb_ocsp_response_times(const unsigned char *der, size_t len, int64_t *this_update,
                            int64_t *next_update);

const char *cb_ocsp_status_name(enum cb_ocsp_status s);

#endif
