/*
 * The service user (design/bindings.md section 3): the one place for its rules, one
 * function per rule. Every command and check that touches the service user goes
 * through here; util/priv.h only provides the means (look a user up, switch to it).
 *
 *  - Who it is: the store's "user" setting, a user of this system (cb_svcuser_get).
 *  - What is given to it: the state folder, its database and its certs/ and keys/
 *    folders, and the certificate and key files inside the state folder. Never a file
 *    outside it, such as a linked certificate that merely has a path starting with the
 *    folder's name: those stay their owner's (cb_svcuser_give_file, _give_state).
 *  - Whether it can use a key: tested by being it, in a child process, when running as
 *    root; else as this process's user (cb_svcuser_test, cb_svcuser_key_usable).
 */
#ifndef CB_SVCUSER_SVCUSER_H
#define CB_SVCUSER_SVCUSER_H

#include "store/store.h"
#include "util/priv.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * Who the service user is. 0 with *out filled; CB_ENOENT when no user is set, or when
 * the user set is not on this system (err says which); *out is then untouched.
 */
int cb_svcuser_get(struct cb_store *st, struct cb_user *out, struct cb_err *err) CB_MUST_CHECK;

/*
 * Gives path (borrowed) to user when, and only when, it lies inside the state folder
 * (cb_store_owns); anything else is left alone and 0 returned. A no-op unless running
 * as root. CB_EPERM or CB_EIO with a message when the change of owner fails.
 */
int cb_svcuser_give_file(const struct cb_store *st, const struct cb_user *user, const char *path,
                         struct cb_err *err) CB_MUST_CHECK;

/*
 * Gives the state folder, its database files, its certs/ and keys/ folders and every
 * stored certificate's files inside it (cb_svcuser_give_file) to user; keys stay 0600.
 * A file that cannot be given is reported to warn(msg, arg) (may be NULL) and the rest
 * are still given. A no-op unless running as root. Errors: reading the store.
 */
typedef void (*cb_svcuser_warn_fn)(const char *msg, void *arg);
int cb_svcuser_give_state(struct cb_store *st, const struct cb_user *user, cb_svcuser_warn_fn warn,
                          void *arg, struct cb_err *err) CB_MUST_CHECK;

/* One thing whose use by the service user is tested. Strings are borrowed. */
struct cb_svcuser_probe {
    const char *cert; /* a certificate file (with its key inside when key is NULL), or a folder */
    const char *key;  /* its key file, or NULL */
    bool folder;      /* cert is a folder that must be listable (a central store folder) */
    bool clientca;    /* cert is a client CA file (clientca=FILE) that must parse */
};

/*
 * Whether the service user (cb_svcuser_get; this process's user when none is set) can
 * read and use client CA file path. 0 when it can ("ok" in reason); CB_EBADFILE with the
 * reason in reason (size bytes) otherwise.
 */
int cb_svcuser_clientca_usable(struct cb_store *st, const char *path, char *reason,
                               size_t size) CB_MUST_CHECK;

/*
 * Tests each of the n probes as user: in a child process that switches to it when
 * running as root and user is not root; else in this process. ok[i] and reasons[i] (a
 * message, CB_PRIV_REASON bytes) tell each probe's result. *as_user (may be NULL) says
 * whether the test ran as user: false when user is NULL (tested as this process) and
 * when not running as root and user is someone else (tested as this process, the best
 * there is). Returns CB_EPERM when the child could not switch to user or did not
 * finish: every probe is then not ok, with that as the reason.
 */
int cb_svcuser_test(const struct cb_user *user, const struct cb_svcuser_probe *probes, size_t n,
                    bool *ok, char (*reasons)[CB_PRIV_REASON], bool *as_user,
                    struct cb_err *err) CB_MUST_CHECK;

/*
 * Whether the service user (cb_svcuser_get; this process's user when none is set) can
 * use the key of stored certificate thumb. 0 when it can ("ok" in reason); CB_ENOENT
 * when the certificate is not in the store; CB_EKEY with the reason in reason (size
 * bytes) otherwise.
 */
int cb_svcuser_key_usable(struct cb_store *st, const char *thumb, char *reason,
                          size_t size) CB_MUST_CHECK;

#endif
