/*
 * The certificate store's operations that span a certificate's files and its row: putting
 * a certificate into the state folder (for `add cert`, `deploy` and the ACME manager in
 * serve) and moving a binding to another certificate. Built on store/, tls/ and svcuser/
 * (files are given to the service user); used by cli/ and daemon/. Every function works
 * inside the caller's transaction (cb_store_begin ... cb_store_commit): files it writes go
 * again when that transaction is rolled back, files of rows it deletes go once it commits.
 */
#ifndef CB_CERTSTORE_CERTSTORE_H
#define CB_CERTSTORE_CERTSTORE_H

#include "store/store.h"
#include "svcuser/svcuser.h"
#include "tls/cert.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * Imports a loaded certificate (bundle and info borrowed) inside the caller's
 * transaction: writes its files into the state folder (key 0600), gives them to the
 * service user, and adds the store row; or, with link_cert and link_key (borrowed; both
 * or neither), records those files where they are. *existed is set when the thumbprint
 * was already there: nothing is added then (missing copies of its own files are written
 * again). A file that cannot be given to the service user is told to warn (may be NULL)
 * and is not an error. Errors: CB_EIO/CB_EPERM (files), CB_EINVAL (a linked path too
 * long or unresolvable), store errors.
 */
int cb_certstore_import(struct cb_store *st, const struct cb_cert_bundle *bundle,
                        const struct cb_cert_info *info, const char *link_cert,
                        const char *link_key, bool *existed, cb_svcuser_warn_fn warn,
                        void *warn_arg, struct cb_err *err) CB_MUST_CHECK;

/* A certificate's two files as the store writes them (cb_cert_bundle_pem), encoded ahead of
 * the import, e.g. on another thread. Both owned; the key is cleansed when freed. */
struct cb_certstore_pems {
    char *cert, *key;
    size_t cert_len, key_len;
};
void cb_certstore_pems_clear(struct cb_certstore_pems *p);

/*
 * The owner a batch's new files are given: the service user when running as root and one is
 * set (true, *owner filled), else none (false). Looked up once a batch: a user lookup reads
 * the system's user database, and `set user=` cannot run inside a batch.
 */
bool cb_certstore_batch_owner(struct cb_store *st, struct cb_user *owner);

/*
 * cb_certstore_import for a batch (cb_store_batch_begin; CB_EINVAL outside one), without
 * link: a new certificate's files are queued to the batch's writer (cb_store_batch_write,
 * created as owner's: the service user when running as root, looked up once a batch by
 * cb_certstore_batch_owner; NULL leaves them the process's) and its row added at once. The files'
 * bytes: those of pems when not NULL (they are taken: its fields are left NULL, or left as
 * they were when the certificate was already there), else encoded here, the key file's
 * bytes coming from kc (may be NULL) when the bundle's key was read through it. A
 * certificate already in the store is handled as cb_certstore_import does, once the
 * batch's files are written. Errors as cb_certstore_import, and a failed write of an
 * earlier file of the batch (cb_store_batch_failed_line).
 */
int cb_certstore_import_batch(struct cb_store *st, const struct cb_cert_bundle *bundle,
                              const struct cb_cert_info *info, const struct cb_cert_keycache *kc,
                              const struct cb_user *owner, struct cb_certstore_pems *pems,
                              bool *existed, cb_svcuser_warn_fn warn, void *warn_arg,
                              struct cb_err *err) CB_MUST_CHECK;

/*
 * Imports PEM chain+key (borrowed, key material cleansed by the caller) into the store
 * inside the caller's transaction: files 0600 owned by the service user, row added (an
 * existing thumbprint is reused, and keeps its origin), a new one marked ACME-issued
 * (cb_cert_row.acme_issued). Refuses a key the service user cannot use (CB_EKEY). Returns
 * the thumbprint (41 bytes) in thumb, written only on success. Warnings go to the log.
 * Errors: CB_EBADFILE (not a certificate chain with its key), CB_EKEY, as
 * cb_certstore_import.
 */
int cb_certstore_import_pem(struct cb_store *st, const char *chain_pem, size_t chain_len,
                            const char *key_pem, size_t key_len, char thumb[CB_THUMB_LEN + 1],
                            struct cb_err *err) CB_MUST_CHECK;

/*
 * Moves binding `key` (canonical key text, borrowed) to certificate `thumb` (inside the
 * caller's transaction), keeping its other options (a managed binding stays managed); the
 * previous certificate is deleted (row now, files after the commit) when no binding uses
 * it any more and it was ACME-issued (not a certificate the user imported). Nothing
 * happens when the binding uses thumb already. Errors: CB_EINVAL (key malformed),
 * CB_ENOENT (no such binding, or thumb not in the store), store errors.
 */
int cb_certstore_rebind(struct cb_store *st, const char *key, const char *thumb,
                        struct cb_err *err) CB_MUST_CHECK;

#endif
