/*
 * The OCSP response cache (design/bindings.md section 9): for a certificate, the last
 * response its responder gave and the manager checked, kept as DER in
 * STATE/ocsp/THUMBPRINT.der so that a restarted serve staples it before any fetch. Each
 * put or delete leaves "ocsp=THUMBPRINT" in the change log in a commit of its own, so
 * the workers load that response within a second without reading the bindings again.
 */
#ifndef CB_STORE_OCSP_H
#define CB_STORE_OCSP_H

#include "store/cert_info.h"
#include "store/store.h"

#include <stddef.h>

#define CB_STORE_OCSP_MAX 65536 /* bytes of one cached response; larger is not read */

/* STATE/ocsp/THUMB.der into out (size bytes). */
void cb_store_ocsp_path(const struct cb_store *st, const char *thumb, char *out, size_t size);
/* The thumbprints that have a cached response, sorted (strcmp), in an owned array *out
 * (free()) of *n; none when the cache folder does not exist. One read of the folder, for
 * a caller that would otherwise try to open a response for each of 10^6 certificates.
 * CB_EIO, CB_EPERM, CB_ENOMEM. */
int cb_store_ocsp_list(const struct cb_store *st, char (**out)[CB_THUMB_LEN + 1], size_t *n,
                       struct cb_err *err) CB_MUST_CHECK;

/*
 * Caches der (len bytes, borrowed; at most CB_STORE_OCSP_MAX) for certificate thumb: the
 * file is written beside its final name, synced and renamed over it (mode 0644: no
 * secret), then the change is committed. Not inside cb_store_begin. Errors: CB_EINVAL
 * (thumbprint, size), CB_EIO, CB_EPERM, CB_EBUSY, CB_ESTORE.
 */
int cb_store_ocsp_put(struct cb_store *st, const char *thumb, const unsigned char *der, size_t len,
                      struct cb_err *err) CB_MUST_CHECK;
/*
 * The same in two steps, for many responses at a time: cb_store_ocsp_write writes the file
 * only (as cb_store_ocsp_put does; it reads nothing of st but its folder, so it may run on
 * another thread than st's owner), and cb_store_ocsp_mark then tells the workers of
 * thumbs[0..n) in one commit: one new snapshot for a second's responses, where a commit
 * each would make every worker derive one per response (at 400 responses a second, most
 * of a core). Errors as cb_store_ocsp_put's.
 */
int cb_store_ocsp_write(const struct cb_store *st, const char *thumb, const unsigned char *der,
                        size_t len, struct cb_err *err) CB_MUST_CHECK;
int cb_store_ocsp_mark(struct cb_store *st, const char (*thumbs)[CB_THUMB_LEN + 1], size_t n,
                       struct cb_err *err) CB_MUST_CHECK;
/* Removes thumb's cached response, marking the change when there was one. Absent: 0. */
int cb_store_ocsp_delete(struct cb_store *st, const char *thumb, struct cb_err *err) CB_MUST_CHECK;

/*
 * Reads thumb's cached response into an owned buffer *der (free()) of *len bytes.
 * CB_ENOENT when none is cached; CB_EBADFILE when the file is larger than
 * CB_STORE_OCSP_MAX; CB_EIO, CB_EPERM. *der and *len are written only on success.
 */
int cb_store_ocsp_read(const struct cb_store *st, const char *thumb, unsigned char **der,
                       size_t *len, struct cb_err *err) CB_MUST_CHECK;

/* Calls fn(thumb, arg) for each stored certificate whose OCSP URL is `which` (as recorded
 * at import: cb_cert_info.ocsp_url), in the table's order; a non-zero return from fn stops
 * and is returned. CB_ESTORE. */
int cb_store_cert_foreach_ocsp_url(struct cb_store *st, enum cb_ocsp_url which,
                                   int (*fn)(const char *thumb, void *arg), void *arg,
                                   struct cb_err *err) CB_MUST_CHECK;

/* What serve learned of a certificate stored before schema 8 by reading its file. */
struct cb_ocsp_url_fact {
    char thumb[CB_THUMB_LEN + 1];
    enum cb_ocsp_url url; /* CB_OCSP_URL_NONE or CB_OCSP_URL_HTTP */
};

/*
 * Records facts[0..n) (borrowed) for the rows that do not say yet (ocsp_url 0), in one
 * transaction of its own. Derived from the certificate's bytes, so no generation and no
 * change-log entry: nothing that serves changes. Not inside cb_store_begin or a batch.
 * Errors: CB_EBUSY (another writer: try again later), CB_EINVAL, CB_ESTORE.
 */
int cb_store_cert_learn_ocsp_url(struct cb_store *st, const struct cb_ocsp_url_fact *facts,
                                 size_t n, struct cb_err *err) CB_MUST_CHECK;

#endif
