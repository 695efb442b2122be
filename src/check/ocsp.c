/*
 * ocsp.c: what `check` says about OCSP stapling (design/bindings.md section 9), from the
 * cache that serve's manager keeps (store/ocsp.h); check never asks a responder itself.
 *  - ocsp-unavailable (warning): a certificate that staples names a responder, but no
 *    valid "good" response for it is cached: clients get no staple;
 *  - ocsp-must-staple (error): the same for a certificate with the TLS Feature
 *    status_request (RFC 7633): browsers that enforce it refuse the site.
 * One finding per certificate, naming every binding that staples it.
 */
#include "check/ocsp.h"
#include "check/finding.h"
#include "store/ocsp.h"
#include "tls/ocsp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Why thumb's cached response is not one a client would accept, or NULL when it is. */
static const char *cached_problem(struct cb_store *st, const char *thumb,
                                  const struct cb_ocsp_cert *c, int64_t now, char *buf, size_t size)
{
    unsigned char *der = NULL;
    size_t len = 0;
    struct cb_ocsp_result r;
    struct cb_err err = {0};

    int ret = cb_store_ocsp_read(st, thumb, &der, &len, &err);
    if (ret == CB_ENOENT)
        return "no response has been fetched yet";
    if (ret != 0) {
        snprintf(buf, size, "%.500s", err.msg);
        return buf;
    }
    ret = cb_ocsp_response_verify(c, der, len, now, &r, &err);
    free(der);
    if (ret != 0) {
        snprintf(buf, size, "the cached response is refused: %.500s", err.msg);
        return buf;
    }
    if (r.status != CB_OCSP_GOOD) {
        snprintf(buf, size, "the responder says the certificate is %s",
                 cb_ocsp_status_name(r.status));
        return buf;
    }
    return NULL;
}

int cb_check_ocsp_cert(struct cb_findings *f, struct cb_store *st, const struct cb_ocsp_cert *c,
                       const char *thumb, int64_t now, bool *added)
{
    struct cb_finding *x;
    char why[600];
    const char *problem;
    bool must = cb_ocsp_cert_must_staple(c);

    *added = false;
    if (cb_ocsp_cert_url(c)[0] == '\0') {
        if (!must)
            return 0;
        x = cb_check_add(f, "ocsp-must-staple", CB_SEV_ERROR, 0,
                         "certificate %s requires a stapled OCSP response (TLS Feature "
                         "must-staple) but names no http OCSP responder, so none can be "
                         "stapled and browsers that enforce it refuse the site; replace it "
                         "with a certificate whose CA runs an OCSP responder, or one "
                         "without must-staple",
                         thumb);
        goto out;
    }
    if (!cb_ocsp_cert_issuer_ok(c))
        problem = "its file does not hold its issuer, so no request can be made (import the "
                  "full chain)";
    else
        problem = cached_problem(st, thumb, c, now, why, sizeof(why));
    if (problem == NULL)
        return 0;
    if (must)
        x = cb_check_add(f, "ocsp-must-staple", CB_SEV_ERROR, 0,
                         "certificate %s requires a stapled OCSP response (TLS Feature "
                         "must-staple) and none is valid: %s; browsers that enforce it refuse "
                         "the site until one is: start certbind serve (it fetches from %s) and "
                         "make sure it can reach that responder",
                         thumb, problem, cb_ocsp_cert_url(c));
    else
        x = cb_check_add(f, "ocsp-unavailable", CB_SEV_WARNING, 0,
                         "certificate %s has an OCSP responder (%s) but no valid response is "
                         "cached: %s; clients get no staple: start certbind serve and make sure "
                         "it can reach the responder, or set disableocspstapling=enable",
                         thumb, cb_ocsp_cert_url(c), problem);
out:
    if (x == NULL)
        return CB_ENOMEM;
    *added = true;
    return 0;
}
