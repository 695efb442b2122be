/*
 * Certificates and keys: import from PEM or PKCS#12, thumbprints, names, and the
 * files kept in the state folder. The only module besides tls/ctx.c that includes
 * OpenSSL headers; everything X.509 is OpenSSL's.
 */
#ifndef CB_TLS_CERT_H
#define CB_TLS_CERT_H

#include "binding/binding.h"
#include "store/cert_info.h"

#include <stdint.h>
#include <sys/stat.h>

struct cb_cert_bundle; /* a leaf, its chain and its private key */

/*
 * Loads `path` (PEM with certificate, chain and maybe key; or PKCS#12) and the key
 * from `key_path` when given (NULL: the key is in `path`). `password` decrypts an
 * encrypted PEM key or PKCS#12 (NULL: none). Checks that the key matches the leaf.
 * Returns an owned bundle in *out, freed with cb_cert_bundle_free(). Errors:
 * CB_EIO (unreadable), CB_EBADFILE (not a certificate, no key, wrong password,
 * key does not match).
 */
int cb_cert_bundle_load(const char *path, const char *key_path, const char *password,
                        struct cb_cert_bundle **out, struct cb_err *err) CB_MUST_CHECK;
/*
 * A cache of one key for a batch that names the same key= file on many lines: the file is
 * read for every certificate (unless cb_cert_keycache_stat vouched for it), but parsed (and
 * encoded as the store writes it) only when its bytes differ from the last ones; an
 * encrypted key is never kept. Certificates loaded with
 * it skip OpenSSL 3.0's public-key decoding (their leaf is the one whose public key is the
 * key's, byte for byte; anything else takes the general path). Owned by its caller:
 * cb_cert_keycache_free() cleanses and frees it.
 */
struct cb_cert_keycache;
int cb_cert_keycache_new(struct cb_cert_keycache **out, struct cb_err *err) CB_MUST_CHECK;
void cb_cert_keycache_free(struct cb_cert_keycache *kc);
/*
 * stat(key_path, st), and when the file is the one kc's key was read from, unchanged since
 * (the same inode, size and times, and its last change over a second before that read: a
 * change after it would show), the next load with kc takes the cached key without reading
 * the file again: a batch's key= file costs one stat a line instead of four calls. -1
 * (errno set) when stat fails.
 */
int cb_cert_keycache_stat(struct cb_cert_keycache *kc, const char *key_path, struct stat *st);
/* For tests: how many times kc read a key file; and seconds kc adds to the clock when it
 * judges whether a file changed long enough before its read (a test's own files are new). */
unsigned long cb_cert__keycache_reads(const struct cb_cert_keycache *kc);
void cb_cert__keycache_skew(struct cb_cert_keycache *kc, long seconds);
/* cb_cert_bundle_load with kc (may be NULL) for a key_path given without a password; with
 * kc (a batch's) a file that is no regular file (a FIFO) is refused without waiting. */
int cb_cert_bundle_load_cached(const char *path, const char *key_path, const char *password,
                               struct cb_cert_keycache *kc, struct cb_cert_bundle **out,
                               struct cb_err *err) CB_MUST_CHECK;
/* Frees what parsing keeps per thread (a decoder made on a thread's first key): a thread
 * that parsed keys calls it before it ends. The thread may parse again afterwards. */
void cb_cert_thread_done(void);

/*
 * The same from memory: chain_pem (leaf and chain, PEM) and key_pem (an unencrypted PEM
 * key), both borrowed (the caller cleanses the key). what names the source in messages
 * ("the certificate issued for www.example.com"). CB_EBADFILE as above.
 */
int cb_cert_bundle_from_pem(const char *what, const char *chain_pem, size_t chain_len,
                            const char *key_pem, size_t key_len, struct cb_cert_bundle **out,
                            struct cb_err *err) CB_MUST_CHECK;
void cb_cert_bundle_free(struct cb_cert_bundle *b);
/* The kind of the bundle's key (ECDSA, RSA or other). */
enum cb_key_family cb_cert_bundle_key_family(const struct cb_cert_bundle *b);
/* The leaf's SHA-1 thumbprint, upper-case hex. */
int cb_cert_bundle_thumbprint(const struct cb_cert_bundle *b,
                              char out[CB_THUMB_LEN + 1]) CB_MUST_CHECK;
/* Fills *info (owned by the caller, cleared with cb_cert_info_clear()). */
int cb_cert_bundle_info(const struct cb_cert_bundle *b, struct cb_cert_info *info,
                        struct cb_err *err) CB_MUST_CHECK;
/* Writes the leaf and chain to cert_path (0644) and the key to key_path (0600,
 * unencrypted PKCS#8), each through a temporary file, fsync and rename. */
int cb_cert_bundle_write(const struct cb_cert_bundle *b, const char *cert_path,
                         const char *key_path, struct cb_err *err) CB_MUST_CHECK;
/* As cb_cert_bundle_write without the fsync of each file: for a batch, whose caller makes
 * them durable at once (syncfs) before anything names them. */
int cb_cert_bundle_write_unsynced(const struct cb_cert_bundle *b, const char *cert_path,
                                  const char *key_path, struct cb_err *err) CB_MUST_CHECK;

/*
 * The files cb_cert_bundle_write would write, in memory: the leaf and chain as PEM in
 * *cert_pem, the key as unencrypted PKCS#8 PEM in *key_pem (copied from kc, which may be
 * NULL, when the bundle's key came from it). Both owned by the caller, who cleanses and
 * frees the key. CB_ENOMEM.
 */
int cb_cert_bundle_pem(const struct cb_cert_bundle *b, const struct cb_cert_keycache *kc,
                       char **cert_pem, size_t *cert_len, char **key_pem, size_t *key_len,
                       struct cb_err *err) CB_MUST_CHECK;

/* Refuses a private key file that others may read or anyone but its owner may write:
 * CB_EPERM with the chmod that fixes it. */
int cb_key_file_safe(const char *path, struct cb_err *err) CB_MUST_CHECK;
/* The same for a key file (path, for the message) whose st_mode is mode. */
int cb_key_mode_safe(const char *path, unsigned mode, struct cb_err *err) CB_MUST_CHECK;

/* Loads a stored pair and checks the key matches: the test `serve` will pass or fail. */
int cb_cert_check_pair(const char *cert_path, const char *key_path,
                       struct cb_err *err) CB_MUST_CHECK;
/* The same through kc (may be NULL): for many pairs in a row, each certificate is decoded
 * without its public key (see struct cb_cert_keycache); the verdicts are the same. */
int cb_cert_check_pair_cached(const char *cert_path, const char *key_path,
                              struct cb_cert_keycache *kc, struct cb_err *err) CB_MUST_CHECK;

/* Appends OpenSSL's queued errors to err->msg (and clears the queue). */
void cb_tls_err_append(struct cb_err *err);

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
/* Installs the bundle's leaf, chain and key in ctx (which takes its own references). */
int cb_cert_bundle_use(const struct cb_cert_bundle *b, SSL_CTX *ctx,
                       struct cb_err *err) CB_MUST_CHECK;
/* Serves the bundle on one connection (in the ClientHello callback). CB_ETLS when refused. */
int cb_cert_bundle_use_ssl(const struct cb_cert_bundle *b, SSL *ssl) CB_MUST_CHECK;
/* The heap a parsed bundle holds, estimated from its certificates' DER sizes and its key:
 * calibrated against malloc's count on OpenSSL 3.0 (a self-signed ECDSA P-256 leaf and key:
 * 7.4 KB measured, 7.4 KB estimated; RSA-2048: 6.5 KB measured, 8.0 KB estimated). */
size_t cb_cert_bundle_mem(const struct cb_cert_bundle *b);

/* What `check` needs to know about a stored certificate beyond its dates. */
struct cb_cert_audit {
    bool chain_ok; /* the chain reaches a self-signed or system-trusted root */
    char chain_error[160];
    bool weak; /* RSA key under 2048 bits, or a SHA-1/MD5 signature below the root */
    char weak_reason[160];
};

/* Audits the certificate chain in `cert_path` (PEM leaf first, or a PKCS#12 without
 * password). Validity dates are not judged here. With ocsp not NULL, a PEM file's OCSP
 * facts come from the same parse: *ocsp is then an owned object (cb_ocsp_cert_free), as
 * cb_ocsp_cert_load would make it; NULL for a PKCS#12 file and on error. */
struct cb_ocsp_cert;
int cb_cert_audit_file(const char *cert_path, struct cb_cert_audit *out, struct cb_ocsp_cert **ocsp,
                       struct cb_err *err) CB_MUST_CHECK;

#endif
