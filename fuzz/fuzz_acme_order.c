/*
 * fuzz_acme_order.c: an order object (cb_acme_parse_order).
 *
 * Invariants, abort() on violation:
 *  - a refusal is CB_EBADFILE with a message;
 *  - an accepted order has a known status, an https finalize URL, a certificate URL
 *    that is empty or https, at most CB_ACME_MAX_NAMES authorizations, each https, and
 *    an error (when any) whose type and detail hold no control characters.
 */
#include "acme/parse.h"
#include "fuzz_common.h"

static void check_clean(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    FUZZ_REQUIRE(n < size, "field not terminated");
    for (size_t i = 0; i < n; i++)
        FUZZ_REQUIRE((unsigned char)s[i] >= 0x20 && s[i] != 0x7f, s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const states[] = {"pending", "ready", "processing", "valid", "invalid"};
    struct cb_acme_order *o = malloc(sizeof(*o));
    struct cb_err err = {0};
    char *in = malloc(size ? size : 1);
    int rc;

    if (in == NULL || o == NULL) {
        free(in);
        free(o);
        return 0;
    }
    if (size > 0)
        memcpy(in, data, size);
    rc = cb_acme_parse_order(in, size, o, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc == CB_EBADFILE && err.msg[0] != '\0', "refusal without a message");
    } else {
        bool known = false;
        for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
            known = known || strcmp(o->status, states[i]) == 0;
        FUZZ_REQUIRE(known, o->status);
        FUZZ_REQUIRE(cb_acme_https_url(o->finalize), o->finalize);
        FUZZ_REQUIRE(o->certificate[0] == '\0' || cb_acme_https_url(o->certificate),
                     o->certificate);
        FUZZ_REQUIRE(o->n_authz <= CB_ACME_MAX_NAMES, "too many authorizations");
        for (size_t i = 0; i < o->n_authz; i++)
            FUZZ_REQUIRE(cb_acme_https_url(o->authz[i]), o->authz[i]);
        FUZZ_REQUIRE(o->expires >= 0, "negative expiry");
        if (o->has_error) {
            check_clean(o->error.type, sizeof(o->error.type));
            check_clean(o->error.detail, sizeof(o->error.detail));
        }
    }
    free(in);
    free(o);
    return 0;
}
