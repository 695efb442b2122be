/*
 * seal.c: AES-256-GCM under the fleet's store key (tls/seal.h). A sealed value is
 * "cbs1" | 12-byte random nonce | ciphertext | 16-byte tag, with the etcd key name as
 * additional data, so a value moved under another key fails to open.
 */
#include "tls/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define SEAL_MAGIC "cbs1"
#define SEAL_MAGIC_LEN 4
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_OVERHEAD (SEAL_MAGIC_LEN + SEAL_NONCE_LEN + SEAL_TAG_LEN)
#define SEAL_MAX_IN (64u * 1024 * 1024)

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool parse_hex(const unsigned char *buf, size_t n, unsigned char key[CB_SEAL_KEY_LEN])
{
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n != 2 * CB_SEAL_KEY_LEN)
        return false;
    for (size_t i = 0; i < CB_SEAL_KEY_LEN; i++) {
        int hi = hex_val(buf[2 * i]), lo = hex_val(buf[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

int cb_seal_key_load(const char *path, unsigned char key[CB_SEAL_KEY_LEN], struct cb_err *err)
{
    unsigned char buf[2 * CB_SEAL_KEY_LEN + 3];
    struct stat sb;
    size_t n = 0;
    int fd, ret = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return cb_err_set(err, errno == EACCES ? CB_EPERM : CB_EIO,
                          "cannot read the store key %s: %s; pass --store-key FILE", path,
                          strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        ret = cb_err_set(err, CB_EIO, "the store key %s is not a regular file", path);
        goto out_close;
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
        ret = cb_err_set(err, CB_EPERM,
                         "the store key %s is open to other users (mode %03o): run chmod 600 %s",
                         path, (unsigned)(sb.st_mode & 0777), path);
        goto out_close;
    }
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret =
                cb_err_set(err, CB_EIO, "cannot read the store key %s: %s", path, strerror(errno));
            goto out_wipe;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n == CB_SEAL_KEY_LEN) {
        memcpy(key, buf, CB_SEAL_KEY_LEN);
    } else if (!parse_hex(buf, n, key)) {
        ret = cb_err_set(err, CB_EBADFILE,
                         "the store key %s must hold 32 random bytes or 64 hex digits; make one "
                         "with: openssl rand -out FILE 32",
                         path);
    }
out_wipe:
    OPENSSL_cleanse(buf, sizeof(buf));
out_close:
    close(fd);
    return ret;
}

int cb_seal(const unsigned char key[CB_SEAL_KEY_LEN], const char *aad, const void *in, size_t len,
            unsigned char **out, size_t *out_len, struct cb_err *err)
{
    EVP_CIPHER_CTX *c = NULL;
    unsigned char *buf;
    int n, ret = 0;

    if (len > SEAL_MAX_IN)
        return cb_err_set(err, CB_EINVAL, "a value to seal is too large");
    if ((buf = malloc(len + SEAL_OVERHEAD)) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    memcpy(buf, SEAL_MAGIC, SEAL_MAGIC_LEN);
    unsigned char *nonce = buf + SEAL_MAGIC_LEN, *ct = nonce + SEAL_NONCE_LEN;
    if (RAND_bytes(nonce, SEAL_NONCE_LEN) != 1 || (c = EVP_CIPHER_CTX_new()) == NULL ||
        EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_EncryptUpdate(c, ct, &n, in, (int)len) != 1 ||
        EVP_EncryptFinal_ex(c, ct + n, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, ct + len) != 1) {
        ret = cb_err_set(err, CB_ETLS, "cannot encrypt with the store key (OpenSSL failed)");
        free(buf);
        goto out_free;
    }
    *out = buf;
    *out_len = len + SEAL_OVERHEAD;
out_free:
    EVP_CIPHER_CTX_free(c);
    return ret;
}

int cb_unseal(const unsigned char key[CB_SEAL_KEY_LEN], const char *aad, const void *in, size_t len,
              unsigned char **out, size_t *out_len, struct cb_err *err)
{
    const unsigned char *p = in;
    EVP_CIPHER_CTX *c = NULL;
    unsigned char *buf = NULL;
    int n, ret = 0;

    if (len < SEAL_OVERHEAD || len > SEAL_MAX_IN + SEAL_OVERHEAD ||
        memcmp(p, SEAL_MAGIC, SEAL_MAGIC_LEN) != 0)
        goto out_mismatch;
    size_t ct_len = len - SEAL_OVERHEAD;
    const unsigned char *nonce = p + SEAL_MAGIC_LEN, *ct = nonce + SEAL_NONCE_LEN;
    unsigned char tag[SEAL_TAG_LEN];
    memcpy(tag, ct + ct_len, SEAL_TAG_LEN);
    if ((buf = malloc(ct_len + 1)) == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    if ((c = EVP_CIPHER_CTX_new()) == NULL ||
        EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_DecryptUpdate(c, buf, &n, ct, (int)ct_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) != 1 ||
        EVP_DecryptFinal_ex(c, buf + n, &n) != 1)
        goto out_mismatch;
    buf[ct_len] = '\0';
    *out = buf;
    *out_len = ct_len;
    EVP_CIPHER_CTX_free(c);
    return 0;
out_mismatch:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, len - SEAL_OVERHEAD);
        free(buf);
    }
    EVP_CIPHER_CTX_free(c);
    ret = cb_err_set(err, CB_EKEY,
                     "a sealed value in the fleet store cannot be opened: it was sealed with "
                     "another store key, or damaged; pass the fleet's --store-key");
    return ret;
}
