/*
 * fuzz_clientca.c: a client CA file (clientca=FILE), the bytes as its content, to
 * cb_tls_ca_parse: the one parser `add|update sslcert`, `check` and `serve` share.
 *
 * Invariants, abort() on violation:
 *  - a refusal is CB_EBADFILE (or CB_ENOMEM) with a message, and nothing is returned;
 *  - an accepted file trusts at least one CA and no more than it has BEGIN CERTIFICATE
 *    lines, its digest is the SHA-256 of the bytes (the same bytes give the same digest),
 *    and the certificates counted as ignored are within that count too;
 *  - the result can be applied to a server SSL (CA store, CA names, verify mode);
 *  - nothing leaks (LeakSanitizer).
 */
#include "fuzz_common.h"
#include "tls/clientca.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>

static size_t count_begin(const uint8_t *data, size_t size)
{
    static const char begin[] = "-----BEGIN ";
    size_t n = 0;
    for (size_t i = 0; i + sizeof(begin) - 1 <= size; i++)
        if (memcmp(data + i, begin, sizeof(begin) - 1) == 0)
            n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static SSL_CTX *ctx;
    struct cb_tls_ca *ca = NULL;
    struct cb_err err = {0};
    size_t ignored = 0;
    unsigned char digest[32];

    if (ctx == NULL && (ctx = SSL_CTX_new(TLS_server_method())) == NULL)
        return 0;
    int rc = cb_tls_ca_parse("clientca=fuzz", data, size, &ca, &ignored, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc == CB_EBADFILE || rc == CB_ENOMEM, err.msg);
        FUZZ_REQUIRE(err.msg[0] != '\0' && err.code == rc, "refusal without a message");
        return 0;
    }
    size_t blocks = count_begin(data, size);
    FUZZ_REQUIRE(cb_tls_ca_count(ca) >= 1, "accepted without a CA");
    FUZZ_REQUIRE(cb_tls_ca_count(ca) + ignored <= blocks, "more certificates than blocks");
    FUZZ_REQUIRE(EVP_Digest(data, size, digest, NULL, EVP_sha256(), NULL) == 1, "sha256");
    FUZZ_REQUIRE(memcmp(digest, cb_tls_ca_digest(ca), 32) == 0, "digest of other bytes");

    SSL *ssl = SSL_new(ctx);
    if (ssl != NULL) {
        FUZZ_REQUIRE(cb_tls_ca_apply(ssl, ca) == 0, "apply");
        FUZZ_REQUIRE(
            (SSL_get_verify_mode(ssl) & (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT)) ==
                (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT),
            "verify mode");
        FUZZ_REQUIRE(sk_X509_NAME_num(SSL_get_client_CA_list(ssl)) == (int)cb_tls_ca_count(ca),
                     "CA names");
        SSL_free(ssl);
    }
    cb_tls_ca_free(ca);
    return 0;
}
