/*
 * certbind public API: error codes and the resolver contract.
 *
 * Every function that can fail returns 0 or a negative CB_E* code and is marked
 * CB_MUST_CHECK. Functions that report to a person also fill a struct cb_err whose
 * message says what is wrong and what to do; a NULL struct cb_err is allowed.
 */
#ifndef CERTBIND_CERTBIND_H
#define CERTBIND_CERTBIND_H

#include <stdarg.h>
#include <stddef.h>

#define CB_MUST_CHECK __attribute__((warn_unused_result))
#define CB_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* XX(name, number, exit status, short text): the one table of error codes. */
#define CB_ERRNO_MAP(XX)                                                                           \
    XX(INVAL, 1, 2, "malformed command line or value")                                             \
    XX(BADFILE, 2, 2, "malformed input file")                                                      \
    XX(NOENT, 3, 1, "not found")                                                                   \
    XX(EXIST, 4, 1, "already exists")                                                              \
    XX(INUSE, 5, 1, "in use")                                                                      \
    XX(BUSY, 6, 1, "store busy")                                                                   \
    XX(NOMEM, 7, 1, "out of memory")                                                               \
    XX(IO, 8, 1, "input/output error")                                                             \
    XX(TLS, 9, 1, "TLS library error")                                                             \
    XX(STORE, 10, 1, "store error")                                                                \
    XX(PERM, 11, 1, "permission denied")                                                           \
    XX(KEY, 12, 1, "private key unusable")                                                         \
    XX(FAILED, 13, 1, "operation failed")

enum cb_errno {
#define CB_XX(name, num, status, text) CB_E##name = -(num),
    CB_ERRNO_MAP(CB_XX)
#undef CB_XX
};

/* A failure report for a person: one sentence saying what is wrong and what to do. */
struct cb_err {
    int code;
    char msg[768];
};

/* Sets err (when not NULL) and returns code, so callers can `return cb_err_set(...)`. */
int cb_err_set(struct cb_err *err, int code, const char *fmt, ...) CB_PRINTF(3, 4);
int cb_err_setv(struct cb_err *err, int code, const char *fmt, va_list ap) CB_PRINTF(3, 0);
/* Short text for a code ("not found"). */
const char *cb_strerror(int code);
/* Process exit status for a code: 0 for 0, 2 for malformed input, 1 otherwise. */
int cb_exit_status(int code);

#endif
