/*
 * fuzz_cert_import.c: importing a certificate file (PEM or PKCS#12), as
 * `certbind add cert FILE [key=FILE] [password-file=FILE]` does.
 *
 * cb_cert_bundle_load reads a path, so the input is written to one temporary file
 * (made once per process with mkstemp, rewritten every run) and loaded without a
 * password, with the password the seed corpus uses ("certbind-fuzz"), and as its
 * own key file; and as its own key file through a batch's key cache
 * (cb_cert_bundle_load_cached, its quick path), which must agree with the plain load: the
 * same refusal, or the same leaf (thumbprint). A loaded bundle is described with
 * cb_cert_bundle_info. Everything
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

static struct cb_cert_keycache *cache; /* one for the process, as a batch keeps one */

static void on_exit_unlink(void)
{
    unlink(tmp_path);
    cb_cert_keycache_free(cache);
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

/* The input as its own key file, loaded plainly and through the cache: they must agree. */
static void load_both_ways(void)
{
    struct cb_cert_bundle *plain = NULL, *cached = NULL;
    char t1[CB_THUMB_LEN + 1], t2[CB_THUMB_LEN + 1];
    struct cb_err err;

    if (cache == NULL && cb_cert_keycache_new(&cache, &err) != 0)
        abort();
    int rc1 = cb_cert_bundle_load(tmp_path, tmp_path, NULL, &plain, &err);
    err.msg[0] = '\0';
    int rc2 = cb_cert_bundle_load_cached(tmp_path, tmp_path, NULL, cache, &cached, &err);
    FUZZ_REQUIRE(rc1 == rc2, "the key cache and the plain load disagree");
    if (rc2 != 0) {
        FUZZ_REQUIRE(err.msg[0] != '\0' && cached == NULL, "cached refusal without a message");
    } else {
        FUZZ_REQUIRE(cb_cert_bundle_thumbprint(plain, t1) == 0, "no thumbprint");
        FUZZ_REQUIRE(cb_cert_bundle_thumbprint(cached, t2) == 0, "no thumbprint (cached)");
        FUZZ_REQUIRE(strcmp(t1, t2) == 0, "the key cache chose another leaf");
        check_info(cached);
    }
    cb_cert_bundle_free(plain);
    cb_cert_bundle_free(cached);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!write_input(data, size))
        return 0;
    load(NULL, NULL);
    load(NULL, FUZZ_PASSWORD);
    load(tmp_path, NULL);
    load_both_ways();
    return 0;
}
