/*
 * fuzz_acme_directory.c: the CA's directory (cb_acme_parse_directory).
 *
 * The input is what an ACME server answers at its directory URL. Invariants, abort()
 * on violation:
 *  - a refusal is CB_EBADFILE with a message;
 *  - an accepted directory has https newNonce, newAccount and newOrder URLs, a
 *    renewalInfo that is empty or https, and a terms-of-service text without control
 *    characters; every field is NUL-terminated inside its array.
 */
#include "acme/parse.h"
#include "fuzz_common.h"

static void check_text(const char *s, size_t size, bool url, bool required)
{
    size_t n = strnlen(s, size);

    FUZZ_REQUIRE(n < size, "field not terminated");
    for (size_t i = 0; i < n; i++)
        FUZZ_REQUIRE((unsigned char)s[i] >= 0x20 && s[i] != 0x7f, s);
    if (required || (url && n > 0))
        FUZZ_REQUIRE(cb_acme_https_url(s), s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cb_acme_directory dir;
    struct cb_err err = {0};
    /* An exact-size copy: ASan then reports any read past size. */
    char *in = malloc(size ? size : 1);
    int rc;

    if (in == NULL)
        return 0;
    if (size > 0)
        memcpy(in, data, size);
    rc = cb_acme_parse_directory(in, size, &dir, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc == CB_EBADFILE && err.msg[0] != '\0', "refusal without a message");
    } else {
        check_text(dir.new_nonce, sizeof(dir.new_nonce), true, true);
        check_text(dir.new_account, sizeof(dir.new_account), true, true);
        check_text(dir.new_order, sizeof(dir.new_order), true, true);
        check_text(dir.renewal_info, sizeof(dir.renewal_info), true, false);
        check_text(dir.terms_of_service, sizeof(dir.terms_of_service), false, false);
    }
    free(in);
    return 0;
}
