/*
 * What the store records about a certificate: plain data, filled by tls/cert.c from
 * the certificate itself and kept by the store, so that the store needs no TLS library.
 */
#ifndef CB_STORE_CERT_INFO_H
#define CB_STORE_CERT_INFO_H

#include "binding/binding.h"

#include <stddef.h>
#include <stdint.h>

/* What a certificate's Authority Information Access says of OCSP, as stored: zero (a row
 * from before schema 8, or an info not filled from a certificate) is "not known", and
 * serve then reads the file to tell. */
enum cb_ocsp_url {
    CB_OCSP_URL_UNKNOWN = 0,
    CB_OCSP_URL_NONE = 1, /* no http:// OCSP URL: nothing to fetch or staple */
    CB_OCSP_URL_HTTP = 2, /* an http:// OCSP URL */
};

/* Owned strings; see cb_cert_info_clear(). */
struct cb_cert_info {
    char thumbprint[CB_THUMB_LEN + 1]; /* SHA-1 of the DER certificate, upper-case hex */
    char sha256[65];                   /* SHA-256, upper-case hex */
    char *subject;                     /* RFC 2253 form */
    char **names;                      /* DNS SANs (lower case), or the CN without SANs */
    size_t n_names;
    int64_t not_before, not_after; /* seconds since the epoch, UTC */
    char key_type[32];             /* "RSA-2048", "EC-P256", "ED25519" */
    int chain_len;                 /* certificates after the leaf */
    enum cb_ocsp_url ocsp_url;     /* whether the leaf names an OCSP responder serve can ask */
};

/* The kind of a certificate's key, from key_type: what certhash=T1,T2 pairs (one of each). */
enum cb_key_family { CB_KEYS_OTHER = 0, CB_KEYS_ECDSA, CB_KEYS_RSA };
enum cb_key_family cb_cert_key_family(const struct cb_cert_info *info);
/* "ECDSA", "RSA" or "other". */
const char *cb_key_family_name(enum cb_key_family f);

/* Frees info's strings and empties it (the fixed fields stay). */
void cb_cert_info_clear(struct cb_cert_info *info);

#endif
