/* err.c: the error table and failure reports. */
#include <certbind/certbind.h>
#include <stdio.h>
#include <string.h>

int cb_err_setv(struct cb_err *err, int code, const char *fmt, va_list ap)
{
    if (err != NULL) {
        err->code = code;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    }
    return code;
}

int cb_err_set(struct cb_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cb_err_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

const char *cb_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define CB_XX(name, num, status, text)                                                             \
    case CB_E##name:                                                                               \
        return text;
        CB_ERRNO_MAP(CB_XX)
#undef CB_XX
    }
    return "unknown error";
}

int cb_exit_status(int code)
{
    switch (code) {
    case 0:
        return 0;
#define CB_XX(name, num, status, text)                                                             \
    case CB_E##name:                                                                               \
        return status;
        CB_ERRNO_MAP(CB_XX)
#undef CB_XX
    }
    return 1;
}
