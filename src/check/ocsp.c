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

struct use {
    const char *thumb;
    uint32_t binding;
};

static int cmp_use(const void *a, const void *b)
{
    const struct use *x = a, *y = b;
    int c = strcmp(x->thumb, y->thumb);
    return c != 0 ? c : (x->binding > y->binding) - (x->binding < y->binding);
}

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

/* The finding for one certificate, used by bindings u[0..n-1]. */
static int one_cert(struct cb_findings *f, struct cb_store *st, const struct cb_snapshot *snap,
                    const struct use *u, size_t n, int64_t now)
{
    struct cb_cert_row row;
    struct cb_ocsp_cert *c = NULL;
    struct cb_finding *x = NULL;
    char why[600];
    const char *problem;
    bool tried = false; /* a finding was added (x NULL then: out of memory) */

    if (cb_store_cert_get(st, u[0].thumb, &row, NULL) != 0)
        return 0; /* unknown-cert says it */
    int ret = cb_ocsp_cert_load(row.cert_path, &c, NULL);
    cb_cert_row_clear(&row);
    if (ret != 0)
        return ret == CB_ENOMEM ? ret : 0; /* key-unusable and the chain checks say it */
    bool must = cb_ocsp_cert_must_staple(c);
    if (cb_ocsp_cert_url(c)[0] == '\0') {
        tried = must;
        if (must)
            x = cb_check_add(f, "ocsp-must-staple", CB_SEV_ERROR, 0,
                             "certificate %s requires a stapled OCSP response (TLS Feature "
                             "must-staple) but names no http OCSP responder, so none can be "
                             "stapled and browsers that enforce it refuse the site; replace it "
                             "with a certificate whose CA runs an OCSP responder, or one "
                             "without must-staple",
                             u[0].thumb);
        goto out_bindings;
    }
    if (!cb_ocsp_cert_issuer_ok(c))
        problem = "its file does not hold its issuer, so no request can be made (import the "
                  "full chain)";
    else
        problem = cached_problem(st, u[0].thumb, c, now, why, sizeof(why));
    if (problem == NULL)
        goto out_bindings;
    tried = true;
    if (must)
        x = cb_check_add(f, "ocsp-must-staple", CB_SEV_ERROR, 0,
                         "certificate %s requires a stapled OCSP response (TLS Feature "
                         "must-staple) and none is valid: %s; browsers that enforce it refuse "
                         "the site until one is: start certbind serve (it fetches from %s) and "
                         "make sure it can reach that responder",
                         u[0].thumb, problem, cb_ocsp_cert_url(c));
    else
        x = cb_check_add(f, "ocsp-unavailable", CB_SEV_WARNING, 0,
                         "certificate %s has an OCSP responder (%s) but no valid response is "
                         "cached: %s; clients get no staple: start certbind serve and make sure "
                         "it can reach the responder, or set disableocspstapling=enable",
                         u[0].thumb, cb_ocsp_cert_url(c), problem);
out_bindings:
    cb_ocsp_cert_free(c);
    if (x == NULL)
        return tried ? CB_ENOMEM : 0;
    for (size_t i = 0; i < n && i < CB_CHECK_LIST_MAX; i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(snap, u[i].binding);
        if (x->n_bindings == 0)
            x->port = b->port;
        if (cb_check_add_binding(x, b->key_text) != 0)
            return CB_ENOMEM;
    }
    return 0;
}

int cb_check_ocsp(struct cb_store *st, const struct cb_snapshot *snap, int64_t now,
                  struct cb_findings *f)
{
    size_t n = cb_snapshot_count(snap), nu = 0;
    struct use *u = calloc(n ? 2 * n : 1, sizeof(*u)); /* a pair: two certificates */
    int ret = 0;

    if (u == NULL)
        return CB_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        const struct cb_snap_binding *b = cb_snapshot_binding(snap, i);
        if (b->kind == CB_KEY_CCS || b->certhash[0] == '\0' ||
            (b->flags & (CB_OPT_DISABLEOCSPSTAPLING | CB_OPT_DAMAGED)))
            continue;
        u[nu].thumb = b->certhash;
        u[nu++].binding = i;
        if (b->certhash2[0] != '\0') { /* certhash=T1,T2: each certificate staples its own */
            u[nu].thumb = b->certhash2;
            u[nu++].binding = i;
        }
    }
    if (nu > 1)
        qsort(u, nu, sizeof(*u), cmp_use);
    for (size_t i = 0; i < nu && ret == 0;) {
        size_t j = i + 1;
        while (j < nu && strcmp(u[j].thumb, u[i].thumb) == 0)
            j++;
        ret = one_cert(f, st, snap, &u[i], j - i, now);
        i = j;
    }
    free(u);
    return ret;
}
