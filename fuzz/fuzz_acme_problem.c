/*
 * fuzz_acme_problem.c: problem documents (cb_acme_parse_problem), renewal information
 * (cb_acme_parse_renewal_info) and RFC 3339 times (cb_acme_parse_time), all on the
 * same input (the time parser gets it up to the first NUL or newline).
 *
 * Invariants, abort() on violation:
 *  - refusals are CB_EBADFILE with a message (CB_EINVAL for a time);
 *  - an accepted problem's type and detail are NUL-terminated in their arrays with no
 *    control characters, its status 0 or 100-599;
 *  - an accepted renewal window has 0 <= start <= end;
 *  - an accepted time is >= 0 and one written back as "%Y-%m-%dT%H:%M:%SZ" parses to
 *    the same value.
 */
#include "acme/parse.h"
#include "fuzz_common.h"

#include <time.h>

static void check_clean(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    FUZZ_REQUIRE(n < size, "field not terminated");
    for (size_t i = 0; i < n; i++)
        FUZZ_REQUIRE((unsigned char)s[i] >= 0x20 && s[i] != 0x7f, s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cb_acme_problem p;
    struct cb_acme_renewal w;
    struct cb_err err = {0};
    char *in = malloc(size + 1);
    int64_t t, again;
    int rc;

    if (in == NULL)
        return 0;
    if (size > 0)
        memcpy(in, data, size);
    in[size] = '\0';
    rc = cb_acme_parse_problem(in, size, &p, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc == CB_EBADFILE && err.msg[0] != '\0', "refusal without a message");
    } else {
        check_clean(p.type, sizeof(p.type));
        check_clean(p.detail, sizeof(p.detail));
        FUZZ_REQUIRE(p.status == 0 || (p.status >= 100 && p.status <= 599), "status");
    }
    err.msg[0] = '\0';
    rc = cb_acme_parse_renewal_info(in, size, &w, &err);
    if (rc != 0)
        FUZZ_REQUIRE(rc == CB_EBADFILE && err.msg[0] != '\0', "refusal without a message");
    else
        FUZZ_REQUIRE(w.start >= 0 && w.start <= w.end, "window");

    in[strcspn(in, "\n")] = '\0';
    if (cb_acme_parse_time(in, &t) == 0) {
        char buf[64];
        struct tm tm;
        time_t tt = (time_t)t;
        FUZZ_REQUIRE(t >= 0, in);
        FUZZ_REQUIRE(gmtime_r(&tt, &tm) != NULL, in);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
        FUZZ_REQUIRE(cb_acme_parse_time(buf, &again) == 0 && again == t, buf);
    }
    free(in);
    return 0;
}
