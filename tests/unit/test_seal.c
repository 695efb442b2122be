/*
 * test_seal.c: AES-256-GCM sealing under the fleet's store key (tls/seal.h): a round trip,
 * and each way opening must fail (another key, a changed byte, another etcd key name as
 * additional data, a truncated value, a foreign format); the key file's forms (32 raw bytes,
 * 64 hex digits with or without a newline) and its refusals (another size, bad hex, a mode
 * open to others, a missing file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls/seal.h"

static const unsigned char key_a[CB_SEAL_KEY_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                                     12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                                     23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const unsigned char key_b[CB_SEAL_KEY_LEN] = {32, 31, 30};
static const char secret[] = "-----BEGIN PRIVATE KEY-----\nMIIEv...\n-----END PRIVATE KEY-----\n";

static void seal_secret(const char *aad, unsigned char **out, size_t *len)
{
    struct cb_err err = {0};
    assert_int_equal(cb_seal(key_a, aad, secret, sizeof(secret) - 1, out, len, &err), 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    unsigned char *s1, *s2, *plain;
    size_t l1, l2, pl;
    struct cb_err err = {0};

    seal_secret("pfx/cert/AB", &s1, &l1);
    seal_secret("pfx/cert/AB", &s2, &l2);
    assert_int_equal(l1, sizeof(secret) - 1 + 32);
    assert_memory_equal(s1, "cbs1", 4);
    /* A fresh nonce each time, and no clear text in the output. */
    assert_true(l1 == l2 && memcmp(s1, s2, l1) != 0);
    assert_null(memmem(s1, l1, "PRIVATE KEY", 11));
    assert_int_equal(cb_unseal(key_a, "pfx/cert/AB", s1, l1, &plain, &pl, &err), 0);
    assert_int_equal(pl, sizeof(secret) - 1);
    assert_memory_equal(plain, secret, pl);
    assert_int_equal(plain[pl], '\0');
    free(plain);
    /* An empty value seals too. */
    free(s2);
    assert_int_equal(cb_seal(key_a, "k", "", 0, &s2, &l2, &err), 0);
    assert_int_equal(cb_unseal(key_a, "k", s2, l2, &plain, &pl, &err), 0);
    assert_int_equal(pl, 0);
    free(plain);
    free(s1);
    free(s2);
}

static void expect_mismatch(const unsigned char *key, const char *aad, const unsigned char *in,
                            size_t len)
{
    unsigned char *plain = NULL;
    size_t pl = 0;
    struct cb_err err = {0};
    assert_int_equal(cb_unseal(key, aad, in, len, &plain, &pl, &err), CB_EKEY);
    assert_null(plain);
    assert_non_null(strstr(err.msg, "another store key"));
}

static void test_refusals(void **state)
{
    (void)state;
    unsigned char *s;
    size_t l;

    seal_secret("pfx/cert/AB", &s, &l);
    expect_mismatch(key_b, "pfx/cert/AB", s, l);     /* another key */
    expect_mismatch(key_a, "pfx/cert/CD", s, l);     /* moved under another etcd key */
    expect_mismatch(key_a, "pfx/cert/AB", s, l - 1); /* truncated tag */
    expect_mismatch(key_a, "pfx/cert/AB", s, 31);    /* shorter than the framing */
    expect_mismatch(key_a, "pfx/cert/AB", s, 0);
    for (size_t i = 0; i < l; i += 7) { /* any changed byte: magic, nonce, data, tag */
        s[i] ^= 0x40;
        expect_mismatch(key_a, "pfx/cert/AB", s, l);
        s[i] ^= 0x40;
    }
    free(s);
}

static char dir[64];

static const char *write_key(const char *name, const void *data, size_t len, mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void test_key_file(void **state)
{
    (void)state;
    unsigned char key[CB_SEAL_KEY_LEN];
    struct cb_err err = {0};
    char hex[2 * CB_SEAL_KEY_LEN + 2];

    snprintf(dir, sizeof(dir), "/tmp/cb-seal-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(cb_seal_key_load(write_key("raw", key_a, 32, 0600), key, &err), 0);
    assert_memory_equal(key, key_a, 32);
    for (int i = 0; i < CB_SEAL_KEY_LEN; i++)
        sprintf(hex + 2 * i, "%02X", key_a[i]);
    memset(key, 0, sizeof(key));
    assert_int_equal(cb_seal_key_load(write_key("hex", hex, 64, 0400), key, &err), 0);
    assert_memory_equal(key, key_a, 32);
    strcat(hex, "\n");
    memset(key, 0, sizeof(key));
    assert_int_equal(cb_seal_key_load(write_key("hexnl", hex, 65, 0600), key, &err), 0);
    assert_memory_equal(key, key_a, 32);

    assert_int_equal(cb_seal_key_load(write_key("short", key_a, 31, 0600), key, &err), CB_EBADFILE);
    assert_non_null(strstr(err.msg, "openssl rand"));
    assert_int_equal(cb_seal_key_load(write_key("long", hex, 33, 0600), key, &err), CB_EBADFILE);
    hex[5] = 'x';
    assert_int_equal(cb_seal_key_load(write_key("badhex", hex, 65, 0600), key, &err), CB_EBADFILE);
    assert_int_equal(cb_seal_key_load(write_key("open", key_a, 32, 0644), key, &err), CB_EPERM);
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_int_equal(cb_seal_key_load(write_key("group", key_a, 32, 0640), key, &err), CB_EPERM);
    /* The key never appears in a message: 32 raw bytes that happen to be text. */
    assert_int_equal(
        cb_seal_key_load(write_key("text", "abcdefghijklmnopqrstuvwxyz012345", 32, 0644), key,
                         &err),
        CB_EPERM);
    assert_null(strstr(err.msg, "abcdefghijklmnop"));
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/missing", dir);
    assert_int_equal(cb_seal_key_load(missing, key, &err), CB_EIO);
    assert_non_null(strstr(err.msg, "--store-key"));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_key_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
