/*
 * fuzz_name.c: host name normalisation and RFC 6125 matching.
 *
 * The whole input goes through cb_name_normalize with each of the four flag
 * combinations (IDN, WILDCARD). Invariants, abort() on violation:
 *  - an accepted name is lower-case ASCII of LDH labels (underscore allowed) of
 *    1-63 bytes, at most 253 bytes, with no trailing dot, and a '*' only as a
 *    leading "*." label when CB_NAME_WILDCARD was given;
 *  - normalising the output again (same flags) gives the same output;
 *  - every refusal fills struct cb_err with a message.
 * Then the input is cut at its first NUL or newline into a certificate name and a
 * host, each normalised (IDN, the certificate name also WILDCARD), and
 * cb_name_covers must not crash on any pair; a plain name covers itself, and
 * "*.P" covers "x.P" but not "P".
 */
#include "binding/binding.h"
#include "fuzz_common.h"

static void check_normalized(const char *out, unsigned flags, const char *in)
{
    size_t n = strlen(out);
    size_t i = 0, label = 0;

    FUZZ_REQUIRE(n > 0 && n <= CB_NAME_MAX, in);
    FUZZ_REQUIRE(out[n - 1] != '.', in);
    if (out[0] == '*') {
        FUZZ_REQUIRE((flags & CB_NAME_WILDCARD) && out[1] == '.' && n > 2, in);
        i = 2;
    }
    for (; i <= n; i++) {
        unsigned char c = i < n ? (unsigned char)out[i] : '.';
        if (c == '.') {
            FUZZ_REQUIRE(label >= 1 && label <= 63, in);
            label = 0;
            continue;
        }
        FUZZ_REQUIRE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_', in);
        label++;
    }
}

static void check_name(const char *in, size_t len, unsigned flags)
{
    char out[CB_NAME_MAX + 1], again[CB_NAME_MAX + 1];
    struct cb_err err;
    int rc;

    err.msg[0] = '\0';
    rc = cb_name_normalize(in, len, flags, out, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc < 0 && err.msg[0] != '\0', "refusal without a message");
        return;
    }
    check_normalized(out, flags, out);
    rc = cb_name_normalize(out, strlen(out), flags, again, &err);
    FUZZ_REQUIRE(rc == 0, out);
    FUZZ_REQUIRE(strcmp(out, again) == 0, out);
    const char *parent = cb_name_parent(out);
    FUZZ_REQUIRE(parent == NULL || (parent > out && parent[-1] == '.' && parent[0] != '\0'), out);
}

static void check_covers(const char *cert, const char *host)
{
    char x[CB_NAME_MAX + 1];

    (void)cb_name_covers(cert, host);
    (void)cb_name_covers(host, cert);
    if (cert[0] != '*') {
        FUZZ_REQUIRE(cb_name_covers(cert, cert), cert);
        return;
    }
    /* "*.P": one extra label over P, never P itself. */
    FUZZ_REQUIRE(!cb_name_covers(cert, cert + 2), cert);
    if (strlen(cert + 2) + 2 <= CB_NAME_MAX) {
        snprintf(x, sizeof(x), "x.%s", cert + 2);
        FUZZ_REQUIRE(cb_name_covers(cert, x), cert);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char cert[CB_NAME_MAX + 1], host[CB_NAME_MAX + 1];
    /* An exact-size copy: ASan then reports any read past len. */
    char *in = malloc(size ? size : 1);

    if (in == NULL)
        return 0;
    if (size > 0)
        memcpy(in, data, size);
    for (unsigned flags = 0; flags <= (CB_NAME_IDN | CB_NAME_WILDCARD); flags++)
        check_name(in, size, flags);

    size_t cut = 0;
    while (cut < size && in[cut] != '\0' && in[cut] != '\n')
        cut++;
    if (cut < size && cb_name_normalize(in, cut, CB_NAME_IDN | CB_NAME_WILDCARD, cert, NULL) == 0 &&
        cb_name_normalize(in + cut + 1, size - cut - 1, CB_NAME_IDN, host, NULL) == 0) {
        check_covers(cert, host);
        check_covers(host, host);
    }
    free(in);
    return 0;
}
