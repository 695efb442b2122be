/*
 * fuzz_acme_chain.c: the certificate chain a CA sends (cb_acme_chain_check), then the
 * ARI CertID of its first certificate (cb_acme_ari_cert_id).
 *
 * Invariants, abort() on violation:
 *  - a refusal is CB_EBADFILE with a message;
 *  - an accepted chain holds at least one certificate, exactly as many as its
 *    "-----BEGIN CERTIFICATE-----" lines, and notBefore/notAfter were filled;
 *  - with a key that cannot match (made once per run), every chain is refused;
 *  - the CertID of an accepted chain is two non-empty base64url parts joined by one
 *    dot, or a refusal with a message.
 */
#include "fuzz_common.h"
#include "tls/acme_crypto.h"

static size_t count_begin(const char *s, size_t n)
{
    static const char b[] = "-----BEGIN CERTIFICATE-----";
    size_t count = 0;
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), b, sizeof(b) - 1)) != NULL;
         p += sizeof(b) - 1)
        count++;
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cb_acme_key *other;
    struct cb_err err = {0};
    int64_t nb = -1, na = -1;
    size_t n = 0;
    char *in = malloc(size ? size : 1);
    int rc;

    if (in == NULL)
        return 0;
    if (other == NULL && cb_acme_key_generate(CB_ACME_KEY_EC256, &other, NULL) != 0)
        abort();
    if (size > 0)
        memcpy(in, data, size);
    rc = cb_acme_chain_check(in, size, NULL, &nb, &na, &n, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc == CB_EBADFILE && err.msg[0] != '\0', "refusal without a message");
    } else {
        FUZZ_REQUIRE(n >= 1 && n == count_begin(in, size), "certificate count");
        FUZZ_REQUIRE(nb != -1 && na != -1, "dates not filled");
        FUZZ_REQUIRE(cb_acme_chain_check(in, size, other, NULL, NULL, NULL, NULL) == CB_EBADFILE,
                     "a chain matched an unrelated key");
        char *z = malloc(size + 1), id[512];
        if (z != NULL) {
            memcpy(z, in, size);
            z[size] = '\0';
            err.msg[0] = '\0';
            rc = cb_acme_ari_cert_id(z, id, sizeof(id), &err);
            if (rc != 0) {
                FUZZ_REQUIRE(err.msg[0] != '\0', "refusal without a message");
            } else {
                char *dot = strchr(id, '.');
                FUZZ_REQUIRE(
                    dot != NULL && dot != id && dot[1] != '\0' && strchr(dot + 1, '.') == NULL, id);
                for (char *q = id; *q; q++)
                    FUZZ_REQUIRE(*q == '.' || (*q >= 'A' && *q <= 'Z') ||
                                     (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') ||
                                     *q == '-' || *q == '_',
                                 id);
            }
            free(z);
        }
    }
    free(in);
    return 0;
}
