/*
 * AES-256-GCM under the fleet's store key: what a fleet node seals (private keys, the ACME
 * account key, challenge keys, session ticket keys) before it reaches etcd.
 */
#ifndef CB_TLS_SEAL_H
#define CB_TLS_SEAL_H

#include <certbind/certbind.h>

#include <stddef.h>

#define CB_SEAL_KEY_LEN 32

/* Reads the store key file: exactly 32 raw bytes (as `openssl rand -out FILE 32` makes) or
 * 64 hex digits and an optional newline; refuses a file readable by group or others
 * (CB_EPERM, "chmod 600 FILE"). The key never appears in a message. */
int cb_seal_key_load(const char *path, unsigned char key[CB_SEAL_KEY_LEN],
                     struct cb_err *err) CB_MUST_CHECK;
/* out = "cbs1" | 12-byte random nonce | ciphertext | 16-byte tag; aad binds it to its etcd
 * key name. Owned *out (free). cb_unseal fails CB_EKEY ("sealed with another store key, or
 * damaged") on any mismatch. */
int cb_seal(const unsigned char key[CB_SEAL_KEY_LEN], const char *aad, const void *in, size_t len,
            unsigned char **out, size_t *out_len, struct cb_err *err) CB_MUST_CHECK;
int cb_unseal(const unsigned char key[CB_SEAL_KEY_LEN], const char *aad, const void *in, size_t len,
              unsigned char **out, size_t *out_len, struct cb_err *err) CB_MUST_CHECK;

#endif
