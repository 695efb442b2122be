/*
 * `check`'s OCSP findings (ocsp-unavailable, ocsp-must-staple), from serve's cache of
 * responses. Internal to src/check: check.c loads each certificate once and asks here.
 */
#ifndef CB_CHECK_OCSP_H
#define CB_CHECK_OCSP_H

#include "check/check.h"

#include <stdbool.h>

struct cb_ocsp_cert;

/*
 * The finding (at most one) for certificate thumb, loaded as c (borrowed), that bindings
 * staple, judged at time now against the response cached in st. When one is added it is
 * f's last, with no binding yet (the caller names the bindings that staple it), and *added
 * is set. CB_ENOMEM only: a response that cannot be read is a finding, not an error.
 */
int cb_check_ocsp_cert(struct cb_findings *f, struct cb_store *st, const struct cb_ocsp_cert *c,
                       const char *thumb, int64_t now, bool *added) CB_MUST_CHECK;

#endif
