/*
 * The rule of a binding with two certificates (certhash=T1,T2, design section 9): one
 * ECDSA and one RSA certificate for the same names, the ECDSA one first. One place for
 * it: `add|update sslcert` (which puts the pair in order), `check` and `deploy` use it.
 */
#ifndef CB_CHECK_DUAL_H
#define CB_CHECK_DUAL_H

#include "store/store.h"

/*
 * Why certificates a and b (both borrowed) cannot be one binding's pair, written into
 * why (a sentence without the binding's name); false when they can: one ECDSA and one
 * RSA key. Names are not judged here (see cb_dual_same_names).
 */
bool cb_dual_pair_refused(const struct cb_cert_info *a, const struct cb_cert_info *b, char *why,
                          size_t size);
/* Whether a and b list the same names, in any order. */
bool cb_dual_same_names(const struct cb_cert_info *a, const struct cb_cert_info *b);

/*
 * For a binding b with two certificates: puts the ECDSA one first (certhash) and the RSA
 * one second (certhash2), the order it is stored and shown in. Returns 0 (b in order), or
 * also 0 and b as given when either certificate is not in the store (check's unknown-cert
 * says so); CB_EFAILED with err naming b and both certificates when they are not one
 * ECDSA and one RSA. A binding with one certificate is left as it is.
 */
int cb_dual_order(struct cb_store *st, struct cb_binding *b, struct cb_err *err) CB_MUST_CHECK;

#endif
