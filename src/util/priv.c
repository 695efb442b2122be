/* priv.c: the service user, privilege drop, and key-access tests as that user. */
#include "util/priv.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cap-ng.h>
#include <sys/prctl.h>

#if defined(__SANITIZE_ADDRESS__)
#define CB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CB_SANITIZED 1
#endif
#endif

int cb_user_lookup(const char *name, struct cb_user *out, struct cb_err *err)
{
    struct passwd pw, *res = NULL;
    char buf[4096];

    if (strlen(name) == 0 || strlen(name) >= sizeof(out->name))
        return cb_err_set(err, CB_EINVAL, "user name '%s' is empty or too long", name);
    int rc = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
    if (rc != 0 || res == NULL)
        return cb_err_set(err, CB_ENOENT,
                          "no user '%s' on this system; create it (useradd --system %s) or name "
                          "another",
                          name, name);
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->uid = pw.pw_uid;
    out->gid = pw.pw_gid;
    return 0;
}

int cb_priv_drop(const struct cb_user *user, bool keep_bind, struct cb_err *err)
{
    if (geteuid() != 0)
        return 0;
    capng_clear(CAPNG_SELECT_BOTH);
    if (keep_bind)
        capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_NET_BIND_SERVICE);
    if (capng_change_id((int)user->uid, (int)user->gid,
                        CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING) != 0)
        return cb_err_set(err, CB_EPERM, "cannot switch to user %s (uid %u): %s", user->name,
                          (unsigned)user->uid, strerror(errno));
#ifdef CB_SANITIZED
    /* LeakSanitizer inspects the process at exit, which a changed uid forbids; only the
     * sanitizer builds of the test suite re-allow it. */
    prctl(PR_SET_DUMPABLE, 1);
#endif
    /* Proof: root cannot be regained. */
    if (user->uid != 0 && (setuid(0) == 0 || geteuid() == 0))
        return cb_err_set(err, CB_EPERM, "privilege drop to %s did not stick", user->name);
    return 0;
}

int cb_priv_test_as(const struct cb_user *user, size_t n, cb_priv_check_fn check, void *arg,
                    bool *ok, char (*reasons)[CB_PRIV_REASON], struct cb_err *err)
{
    int fds[2];
    pid_t pid;
    int status;

    if (geteuid() != 0 && geteuid() != user->uid)
        return cb_err_set(err, CB_EPERM,
                          "cannot test key access as %s without root; run as root to test",
                          user->name);
    if (pipe(fds) != 0)
        return cb_err_set(err, CB_EIO, "pipe: %s", strerror(errno));
    fflush(stdout); /* or the child's exit would print it twice */
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return cb_err_set(err, CB_EIO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        struct cb_err e;
        close(fds[0]);
        if (geteuid() == 0 &&
            (setgroups(0, NULL) != 0 || setgid(user->gid) != 0 || setuid(user->uid) != 0))
            _exit(3);
        for (size_t i = 0; i < n; i++) {
            char rec[CB_PRIV_REASON + 1];
            memset(rec, 0, sizeof(rec));
            e.msg[0] = '\0';
            rec[0] = check(i, arg, &e) == 0 ? '1' : '0';
            snprintf(rec + 1, CB_PRIV_REASON, "%s", e.msg);
            if (write(fds[1], rec, sizeof(rec)) != (ssize_t)sizeof(rec))
                _exit(4);
        }
        _exit(0);
    }
    close(fds[1]);
    for (size_t i = 0; i < n; i++) {
        char rec[CB_PRIV_REASON + 1];
        size_t got = 0;
        while (got < sizeof(rec)) {
            ssize_t r = read(fds[0], rec + got, sizeof(rec) - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got < sizeof(rec)) {
            ok[i] = false;
            snprintf(reasons[i], CB_PRIV_REASON, "key-access test as %s did not finish",
                     user->name);
            continue;
        }
        ok[i] = rec[0] == '1';
        memcpy(reasons[i], rec + 1, CB_PRIV_REASON - 1);
        reasons[i][CB_PRIV_REASON - 1] = '\0';
    }
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cb_err_set(err, CB_EPERM, "cannot switch to user %s to test key access", user->name);
    return 0;
}
