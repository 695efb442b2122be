/*
 * fuzz_cert_import.c: importing a certificate file (PEM or PKCS#12), as
 * `certbind add cert FILE [key=FILE] [password-file=FILE]` does.
 *
 * cb_cert_bundle_load reads a path, so the input is written to one temporary file
 * (made once per process with mkstemp, rewritten every run) and loaded without a
 * password, with the password the seed corpus uses ("certbind-fuzz"), and as its
 * own key file. A loaded bundle is described with cb_cert_bundle_info. Everything
 * is freed, so LeakSanitizer checks the error paths. Invariants, abort() on
 * violation: a refusal is one of the documented codes with a message; an accepted
 * bundle has a 40-digit thumbprint and names that are normalised host names.
 */
#include "fuzz_common.h"
#include "tls/cert.h"

#include <unistd.h>

#define FUZZ_PASSWORD "certbind-fuzz"

static char tmp_path[] = "/tmp/certbind-fuzz-cert-XXXXXX";
static int tmp_fd = -1;

static void on_exit_unlink(void)
{
    unlink(tmp_path);
}

static bool write_input(const uint8_t *data, size_t size)
{
    size_t done = 0;

    if (tmp_fd < 0) {
        tmp_fd = mkstemp(tmp_path);
        if (tmp_fd < 0) {
            perror("fuzz_cert_import: mkstemp");
            abort();
        }
        atexit(on_exit_unlink);
    }
    if (ftruncate(tmp_fd, 0) != 0)
        return false;
    while (done < size) {
        ssize_t n = pwrite(tmp_fd, data + done, size - done, (off_t)done);
        if (n <= 0)
            return false;
        done += (size_t)n;
    }
    return true;
}

static void check_info(const struct cb_cert_bundle *b)
{
    struct cb_cert_info info;
    struct cb_err err;
    char norm[CB_NAME_MAX + 1];

    err.msg[0] = '\0';
    int rc = cb_cert_bundle_info(b, &info, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc < 0 && err.msg[0] != '\0', "info refusal without a message");
        return;
    }
    FUZZ_REQUIRE(strlen(info.thumbprint) == CB_THUMB_LEN && strlen(info.sha256) == 64,
                 info.thumbprint);
    FUZZ_REQUIRE(info.subject != NULL && info.chain_len >= 0, info.thumbprint);
    for (size_t i = 0; i < info.n_names; i++) {
        const char *name = info.names[i];
        FUZZ_REQUIRE(cb_name_normalize(name, strlen(name), CB_NAME_WILDCARD, norm, NULL) == 0,
                     name);
        FUZZ_REQUIRE(strcmp(norm, name) == 0, name);
    }
    cb_cert_info_clear(&info);
}

static void load(const char *key_path, const char *password)
{
    struct cb_cert_bundle *b = NULL;
    struct cb_err err;

    err.msg[0] = '\0';
    int rc = cb_cert_bundle_load(tmp_path, key_path, password, &b, &err);
    if (rc != 0) {
        FUZZ_REQUIRE(rc == CB_EBADFILE || rc == CB_ENOMEM, err.msg);
        FUZZ_REQUIRE(err.msg[0] != '\0' && err.code == rc, "refusal without a message");
        FUZZ_REQUIRE(b == NULL, "output written on failure");
        return;
    }
    FUZZ_REQUIRE(b != NULL, "no bundle");
    check_info(b);
    cb_cert_bundle_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!write_input(data, size))
        return 0;
    load(NULL, NULL);
    load(NULL, FUZZ_PASSWORD);
    load(tmp_path, NULL);
    return 0;
}
