/*
 * The cryptography of ACME (RFC 8555) and its challenges: account and certificate
 * keys, JWK thumbprints (RFC 7638), flattened JWS requests, External Account Binding,
 * DNS-01 values, TLS-ALPN-01 challenge certificates (RFC 8737), CSRs, ARI CertIDs,
 * and checking an issued chain. OpenSSL stays behind this header: callers see only
 * struct cb_acme_key and text (PEM, JSON, base64url).
 */
#ifndef CB_TLS_ACME_CRYPTO_H
#define CB_TLS_ACME_CRYPTO_H

#include <certbind/certbind.h>
#include <stddef.h>
#include <stdint.h>

enum cb_acme_keytype { CB_ACME_KEY_EC256 = 0, CB_ACME_KEY_RSA2048 = 1 };

/* A private key: the account key (always EC P-256) or a certificate's key (EC P-256
 * or RSA of 2048 to 8192 bits). Immutable once made; freed with cb_acme_key_free(),
 * which cleanses it. */
struct cb_acme_key;

/* A fresh key of `type`. Returns owned *out. CB_ETLS when OpenSSL fails. */
int cb_acme_key_generate(enum cb_acme_keytype type, struct cb_acme_key **out,
                         struct cb_err *err) CB_MUST_CHECK;
/* Loads an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1) from `path` (borrowed).
 * Returns owned *out. CB_EINVAL/CB_EIO/CB_EPERM when unreadable, CB_EBADFILE when it
 * is not such a key, CB_EKEY for another key type or size. */
int cb_acme_key_load(const char *path, struct cb_acme_key **out, struct cb_err *err) CB_MUST_CHECK;
/* The same from `len` bytes of PEM in memory (borrowed; need not be NUL-terminated). */
int cb_acme_key_from_pem(const char *pem, size_t len, struct cb_acme_key **out,
                         struct cb_err *err) CB_MUST_CHECK;
/* Writes k (borrowed) as unencrypted PKCS#8 PEM to `path`: through a 0600 temporary
 * file in the same folder, fsync, rename; never readable by others. CB_EIO. */
int cb_acme_key_save(const struct cb_acme_key *k, const char *path,
                     struct cb_err *err) CB_MUST_CHECK;
/* k as PKCS#8 PEM: returns owned *pem (NUL-terminated, *len bytes without the NUL),
 * freed with cb_acme_secret_free(*pem, *len). */
int cb_acme_key_pem(const struct cb_acme_key *k, char **pem, size_t *len,
                    struct cb_err *err) CB_MUST_CHECK;
/* Cleanses len bytes at p (and its NUL) and frees it; NULL is a no-op. */
void cb_acme_secret_free(char *p, size_t len);
void cb_acme_key_free(struct cb_acme_key *k);
/* The key's type (an RSA key of any allowed size is CB_ACME_KEY_RSA2048). */
enum cb_acme_keytype cb_acme_key_type(const struct cb_acme_key *k);

/* RFC 7638 thumbprint of k's public JWK: base64url(SHA-256), 43 characters and a NUL. */
int cb_acme_jwk_thumbprint(const struct cb_acme_key *k, char out[44],
                           struct cb_err *err) CB_MUST_CHECK;
/* k's public JWK as compact JSON with members in lexicographic order (the RFC 7638
 * thumbprint input). Returns owned *out, freed with free(). */
int cb_acme_jwk_json(const struct cb_acme_key *k, char **out, struct cb_err *err) CB_MUST_CHECK;

/*
 * A flattened JWS JSON request (RFC 8555 §6.2) signed with k (ES256 for EC P-256, the
 * signature raw r||s; RS256 for RSA): protected {"alg", "nonce", "url", and "kid" when
 * kid != NULL, else "jwk"}; payload is JSON text, or NULL or "" for POST-as-GET (an
 * empty payload). All strings borrowed. Returns owned JSON text in *out (free()).
 * CB_EINVAL for a missing nonce or url.
 */
int cb_acme_jws(const struct cb_acme_key *k, const char *kid, const char *nonce, const char *url,
                const char *payload, char **out, struct cb_err *err) CB_MUST_CHECK;
/*
 * External Account Binding (RFC 8555 §7.3.4): an HS256 JWS whose payload is the
 * account's public JWK, protected {"alg":"HS256","kid":eab_kid,"url":url}, keyed with
 * the base64url-decoded hmac_b64url (padding allowed). Returns owned JSON object text
 * in *out (free()). CB_EINVAL for an empty kid or a key that is not base64url. The
 * HMAC key is cleansed after use and never appears in a message.
 */
int cb_acme_eab(const struct cb_acme_key *account, const char *eab_kid, const char *hmac_b64url,
                const char *url, char **out, struct cb_err *err) CB_MUST_CHECK;
/* The DNS-01 TXT value: base64url(SHA-256(key_auth)), 43 characters and a NUL. */
int cb_acme_dns01_value(const char *key_auth, char out[44]) CB_MUST_CHECK;
/*
 * The RFC 8737 challenge certificate for `name` (a plain DNS name, normalised to lower
 * case): self-signed with a fresh P-256 key, SAN dNSName=name, the critical
 * acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding an OCTET STRING of
 * SHA-256(key_auth), valid from an hour ago for 7 days. Returns owned *cert_pem
 * (free()) and *key_pem (cb_acme_secret_free(*key_pem, strlen(*key_pem))). CB_EINVAL
 * for a bad name or empty key_auth.
 */
int cb_acme_alpn_cert(const char *name, const char *key_auth, char **cert_pem, char **key_pem,
                      struct cb_err *err) CB_MUST_CHECK;
/* A CSR for names[0..n) (borrowed; wildcards allowed; names[0] is also the CN when it
 * fits in 64 bytes) signed with k, as base64url DER. Returns owned *b64url (free()).
 * CB_EINVAL for no name, too many (more than 100) or a malformed one. */
int cb_acme_csr(const struct cb_acme_key *k, const char *const *names, size_t n, char **b64url,
                struct cb_err *err) CB_MUST_CHECK;
/* ACME Renewal Information CertID: base64url(AKI keyIdentifier) "." base64url(serial
 * number DER content octets) of the first certificate in pem (NUL-terminated,
 * borrowed). CB_EBADFILE without a certificate or an AKI keyIdentifier; CB_EINVAL when
 * size is too small. */
int cb_acme_ari_cert_id(const char *pem, char *out, size_t size, struct cb_err *err) CB_MUST_CHECK;
/*
 * Checks that pem[0..len) (borrowed, at most 1 MiB) is a chain of PEM certificates
 * and nothing else but whitespace, whose first matches key k (borrowed; NULL: no key
 * check). Fills the leaf's notBefore/notAfter (seconds since the epoch) and the number
 * of certificates; any output pointer may be NULL. CB_EBADFILE otherwise.
 */
int cb_acme_chain_check(const char *pem, size_t len, const struct cb_acme_key *k,
                        int64_t *not_before, int64_t *not_after, size_t *n_certs,
                        struct cb_err *err) CB_MUST_CHECK;
/* base64url without padding of in[0..len) into out (size bytes with the NUL). Returns
 * the length written (without the NUL), or CB_EINVAL when out is too small. */
int cb_acme_b64url(const unsigned char *in, size_t len, char *out, size_t size) CB_MUST_CHECK;
/* Decodes base64url (trailing '=' padding allowed, nothing else) of in[0..len) into
 * out (size bytes); *out_len is the decoded length. CB_EINVAL on a bad character or
 * length, or when out is too small. */
int cb_acme_b64url_decode(const char *in, size_t len, unsigned char *out, size_t size,
                          size_t *out_len) CB_MUST_CHECK;

#endif
