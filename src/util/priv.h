/*
 * Users and privileges, the means: looking a user up, dropping to it, and running tests
 * as it (by really switching to it in a child process, not by reading mode bits). The
 * rules for the service user (who it is, what it owns, which keys it can use) are in
 * svcuser/svcuser.h, the one place that applies them.
 */
#ifndef CB_UTIL_PRIV_H
#define CB_UTIL_PRIV_H

#include <certbind/certbind.h>
#include <stdbool.h>
#include <sys/types.h>

#define CB_PRIV_REASON 800 /* bytes of one key-access test's reason */

struct cb_user {
    char name[64];
    uid_t uid;
    gid_t gid;
};

/* Looks up a user by name: CB_ENOENT with a message when there is none. */
int cb_user_lookup(const char *name, struct cb_user *out, struct cb_err *err) CB_MUST_CHECK;

/*
 * Drops to `user` for good: supplementary groups, gid, uid. keep_bind keeps
 * CAP_NET_BIND_SERVICE so ports below 1024 can still be opened on a reload.
 * A no-op when not root. Fails (and the caller must exit) if the drop fails.
 */
int cb_priv_drop(const struct cb_user *user, bool keep_bind, struct cb_err *err) CB_MUST_CHECK;

/*
 * Runs check(i, arg) for i in [0, n) in a child process running as `user` and
 * fills ok[i] (true: 0 returned) and reasons[i] (a message, size bytes each).
 * Returns CB_EPERM when not root and user is not the current user (nothing tested).
 */
typedef int (*cb_priv_check_fn)(size_t i, void *arg, struct cb_err *err);
int cb_priv_test_as(const struct cb_user *user, size_t n, cb_priv_check_fn check, void *arg,
                    bool *ok, char (*reasons)[CB_PRIV_REASON], struct cb_err *err) CB_MUST_CHECK;

#endif
