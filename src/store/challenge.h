/*
 * Pending TLS-ALPN-01 challenges (RFC 8737, design/bindings.md section 7): for a server
 * name, the challenge certificate and its key, kept in the store so that every worker of
 * `serve` answers them. The manager puts one when it starts a validation and deletes it
 * when the validation is over; workers read them through the change log, within a second,
 * without reading the bindings again. The key is a throwaway made for one validation, but
 * it is a private key all the same: the table lives in the 0700 state folder and copies in
 * memory are cleansed when freed.
 */
#ifndef CB_STORE_CHALLENGE_H
#define CB_STORE_CHALLENGE_H

#include "store/store.h"

#include <stdint.h>

#define CB_CHALLENGE_PEM_MAX 65536 /* per PEM text: a certificate or key is a few KB */

/* One pending TLS-ALPN-01 challenge: for server name `name`, the challenge certificate and
 * key (PEM). */
struct cb_challenge {
    char name[CB_NAME_MAX + 1]; /* normalised: lower case, no trailing dot */
    char *cert_pem, *key_pem;   /* owned (see cb_challenges_free) */
    int64_t expires;            /* seconds since the epoch: not served from then on */
};

/*
 * Puts the challenge for `name` (a host name, normalised here; no wildcard), replacing
 * the one for the same name, in a transaction of its own (not inside cb_store_begin), and
 * marks the change so that every worker serves it within a second, without a full rebuild
 * of the bindings. cert_pem and key_pem are borrowed and not parsed here (that is tls/'s
 * work): they must be non-empty PEM text of at most CB_CHALLENGE_PEM_MAX bytes. Expired
 * challenges are dropped in the same transaction. Errors: CB_EINVAL (name, PEM, expiry in
 * the past), CB_EBUSY, CB_ESTORE, CB_EIO, CB_EPERM.
 */
int cb_store_challenge_put(struct cb_store *st, const char *name, const char *cert_pem,
                           const char *key_pem, int64_t expires, struct cb_err *err) CB_MUST_CHECK;

/* Deletes the challenge for `name`, in a transaction of its own, marking the change when
 * there was one. Absent: 0, nothing written. */
int cb_store_challenge_delete(struct cb_store *st, const char *name,
                              struct cb_err *err) CB_MUST_CHECK;

/*
 * Every challenge not yet expired, in name order, in one read: returns an owned array in
 * *out (NULL when n is 0) of *n entries, freed with cb_challenges_free(). *out and *n are
 * written only on success.
 */
int cb_store_challenges_load(struct cb_store *st, struct cb_challenge **out, size_t *n,
                             struct cb_err *err) CB_MUST_CHECK;
/* Frees v and its n entries, cleansing the keys. NULL is a no-op. */
void cb_challenges_free(struct cb_challenge *v, size_t n);

#endif
