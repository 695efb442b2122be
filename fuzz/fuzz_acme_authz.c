/*
 * fuzz_acme_authz.c: an authorization object (cb_acme_parse_authz).
 *
 * Invariants, abort() on violation:
 *  - a refusal is CB_EBADFILE with a message;
 *  - an accepted authorization has a known status, a non-empty DNS identifier without
 *    control characters, at most CB_ACME_MAX_CHALLENGES challenges, each with a type,
 *    an https URL and a token that is empty or 22-127 base64url characters (never
 *    empty for tls-alpn-01, dns-01 and http-01), and an error (when any) whose text
 *    holds no control characters.
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
    static const char *const states[] = {"pending",     "valid",   "invalid",
                                         "deactivated", "expired", "revoked"};
    struct cb_acme_authz a;
    struct cb_err err = {0};
    char *in = malloc(size ? size : 1);
    int rc;

    if (in == NULL)
        return 0;
    if (size > 0)
        memcpy(in, data, size);
    rc = cb_acme_parse_authz(in, size, &a, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc == CB_EBADFILE && err.msg[0] != '\0', "refusal without a message");
    } else {
        bool known = false;
        for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
            known = known || strcmp(a.status, states[i]) == 0;
        FUZZ_REQUIRE(known, a.status);
        FUZZ_REQUIRE(a.identifier[0] != '\0', "empty identifier");
        check_clean(a.identifier, sizeof(a.identifier));
        FUZZ_REQUIRE(a.n_challenges <= CB_ACME_MAX_CHALLENGES, "too many challenges");
        for (size_t i = 0; i < a.n_challenges; i++) {
            const struct cb_acme_challenge *c = &a.challenges[i];
            check_clean(c->type, sizeof(c->type));
            check_clean(c->status, sizeof(c->status));
            FUZZ_REQUIRE(c->type[0] != '\0', "challenge without a type");
            FUZZ_REQUIRE(cb_acme_https_url(c->url), c->url);
            FUZZ_REQUIRE(c->token[0] == '\0' || cb_acme_token_ok(c->token), c->token);
            if (strcmp(c->type, "tls-alpn-01") == 0 || strcmp(c->type, "dns-01") == 0 ||
                strcmp(c->type, "http-01") == 0)
                FUZZ_REQUIRE(c->token[0] != '\0', c->type);
        }
        if (a.has_error) {
            check_clean(a.error.type, sizeof(a.error.type));
            check_clean(a.error.detail, sizeof(a.error.detail));
        }
    }
    free(in);
    return 0;
}
