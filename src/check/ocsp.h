/*
 * `check`'s OCSP findings (ocsp-unavailable, ocsp-must-staple), from serve's cache of
 * responses. Internal to src/check.
 */
#ifndef CB_CHECK_OCSP_H
#define CB_CHECK_OCSP_H

#include "binding/snapshot.h"
#include "check/check.h"

/* Appends to f the findings of every certificate that snap's bindings staple, judged at
 * time now. CB_ENOMEM only: a certificate that cannot be read is other findings' work. */
int cb_check_ocsp(struct cb_store *st, const struct cb_snapshot *snap, int64_t now,
                  struct cb_findings *f) CB_MUST_CHECK;

#endif
