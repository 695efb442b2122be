/*
 * fuzz_ocsp.c: an OCSP response as the manager receives it from a responder (or reads it
 * back from the cache), through the path certbind owns: cb_ocsp_response_times (what a
 * worker reads of a cached response), cb_ocsp_response_verify against a fixed leaf and its
 * CA (what the manager and `check` accept), and cb_tls_staples_add (what a runtime keeps).
 *
 * The leaf (with an AIA OCSP URL and must-staple) and its CA are built in; the seed corpus
 * holds responses for it: good and revoked (valid until 2120), expired, and an
 * unsuccessful status. Invariants, abort() on violation: a verified response has
 * thisUpdate <= nextUpdate and nextUpdate not in the past; a refusal carries a message;
 * whatever verifies also has readable times; nothing leaks.
 */
#include "fuzz_common.h"
#include "tls/ocsp.h"
#include "tls/staple.h"

#include <time.h>
#include <unistd.h>

static const char chain_pem[] = "-----BEGIN CERTIFICATE-----\n"
                                "MIIBXTCCAQOgAwIBAgIBAjAKBggqhkjOPQQDAjASMRAwDgYDVQQDDAdmdXp6IENB\n"
                                "MCAXDTIwMDEwMTAwMDAwMFoYDzIxMjAwMTAxMDAwMDAwWjAUMRIwEAYDVQQDDAlm\n"
                                "dXp6LnRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASIMQzHenyLHiIo3VGA\n"
                                "L7HvlIp1YGpGfvnCPIxXCm/th3HsfRUzxLuD2uFmhJxdZXB6ui6SGfCwUbSdtRlq\n"
                                "uQrpo0YwRDAvBggrBgEFBQcBAQQjMCEwHwYIKwYBBQUHMAGGE2h0dHA6Ly8xMjcu\n"
                                "MC4wLjE6MS8wEQYIKwYBBQUHARgEBTADAgEFMAoGCCqGSM49BAMCA0gAMEUCIGHO\n"
                                "JXx65Coq3oOvCCu8tHnpv5eulYHLqBntFxgxpSeGAiEA7PMxvu46+gXlKR/qft3E\n"
                                "M2R4S5rMTMHM+sBPbX/oZ0E=\n"
                                "-----END CERTIFICATE-----\n"
                                "-----BEGIN CERTIFICATE-----\n"
                                "MIIBJzCBzqADAgECAgEBMAoGCCqGSM49BAMCMBIxEDAOBgNVBAMMB2Z1enogQ0Ew\n"
                                "IBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBaMBIxEDAOBgNVBAMMB2Z1\n"
                                "enogQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARPkBBrnYLl/Tz893Xis7uW\n"
                                "hjxQz0Sj6PEjb9nWsPt5/PRveMVPMY/rvExFMFXbW2tOYi8GtLfjtXxnglLnGzqq\n"
                                "oxMwETAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIESShPB7WoxJ\n"
                                "aGyVpKBiIKKgYsjgiBTnI5KRKOrwA3IOAiEA0ojAmk9kj2TnH2u17+QrPi6Kwu6g\n"
                                "xeXbLqpqWHO5kHY=\n"
                                "-----END CERTIFICATE-----\n";

static struct cb_ocsp_cert *cert;

static void on_exit_free(void)
{
    cb_ocsp_cert_free(cert);
}

static void load_cert(void)
{
    char path[] = "/tmp/certbind-fuzz-ocsp-XXXXXX";
    int fd = mkstemp(path);

    FUZZ_REQUIRE(fd >= 0, "mkstemp");
    FUZZ_REQUIRE(write(fd, chain_pem, sizeof(chain_pem) - 1) == (ssize_t)(sizeof(chain_pem) - 1),
                 "write");
    close(fd);
    int ret = cb_ocsp_cert_load(path, &cert, NULL);
    unlink(path);
    FUZZ_REQUIRE(ret == 0, "the built-in certificate loads");
    FUZZ_REQUIRE(cb_ocsp_cert_issuer_ok(cert), "its issuer is found");
    FUZZ_REQUIRE(cb_ocsp_cert_must_staple(cert), "must-staple is read");
    FUZZ_REQUIRE(strcmp(cb_ocsp_cert_url(cert), "http://127.0.0.1:1/") == 0, "the URL is read");
    atexit(on_exit_free);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cb_ocsp_result r;
    struct cb_err err = {0};
    int64_t now = (int64_t)time(NULL), t = 0, n = 0;

    if (cert == NULL)
        load_cert();
    bool timed = cb_ocsp_response_times(data, size, &t, &n);
    int ret = cb_ocsp_response_verify(cert, data, size, now, &r, &err);
    if (ret == 0) {
        FUZZ_REQUIRE(timed, "a verified response has readable times");
        FUZZ_REQUIRE(r.this_update <= r.next_update, "thisUpdate <= nextUpdate");
        FUZZ_REQUIRE(r.next_update >= now, "not expired");
    } else {
        FUZZ_REQUIRE(ret == CB_EBADFILE || ret == CB_EFAILED || ret == CB_ENOMEM, "a known code");
        FUZZ_REQUIRE(err.msg[0] != '\0', "a refusal says why");
    }
    struct cb_tls_staples *s = cb_tls_staples_new();
    if (s != NULL) {
        int added =
            cb_tls_staples_add(s, "0123456789ABCDEF0123456789ABCDEF01234567", data, size, now);
        cb_tls_staples_finish(s);
        FUZZ_REQUIRE(added != 0 || (timed && n > now), "only a current response is kept");
        FUZZ_REQUIRE((added == 0) == (cb_tls_staples_find(
                                          s, "0123456789ABCDEF0123456789ABCDEF01234567") != NULL),
                     "a kept response is found");
        cb_tls_staples_unref(s);
    }
    return 0;
}
