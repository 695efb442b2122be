/*
 * bench-gencerts: bench/gen-certs in C, for 10^6 certificates (the Python one makes a few
 * hundred a second on a loaded machine). The same layout and certificates (self-signed,
 * one shared key, CN and SAN siteNNNNN.bench.test, serials from a random base), plus
 * meta.tsv: one line per certificate with what `add cert` stores of it, so that
 * bench/run-scale fills a store without parsing a million PEM files in Python.
 *
 *   bench-gencerts DIR N      (DIR/key.pem must exist: bench/gen-certs DIR 0 makes it)
 *
 * meta.tsv: NAME  SHA1  SHA256  SUBJECT  NOT_BEFORE  NOT_AFTER   (hex upper case, epoch s)
 * Certificates already in DIR are kept (read back for their line); only missing ones are made.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static void hex(const unsigned char *d, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02X", d[i]);
}

static X509 *make(EVP_PKEY *key, const char *host, uint64_t serial, time_t now)
{
    X509 *x = X509_new();
    X509_NAME *nm = X509_NAME_new();
    char san[300];
    X509_EXTENSION *ext;
    X509V3_CTX v3;

    X509_set_version(x, 2);
    ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0);
    X509_set_subject_name(x, nm);
    X509_set_issuer_name(x, nm);
    X509_NAME_free(nm);
    X509_time_adj_ex(X509_getm_notBefore(x), -1, 0, &now);
    X509_time_adj_ex(X509_getm_notAfter(x), 365, 0, &now);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    snprintf(san, sizeof(san), "DNS:%s", host);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:FALSE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (X509_sign(x, key, EVP_sha256()) == 0) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int meta_line(FILE *out, const char *host, X509 *x)
{
    unsigned char d[32];
    unsigned n;
    char sha1[41], sha256[65];
    int day, sec;
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);

    X509_digest(x, EVP_sha1(), d, &n);
    hex(d, n, sha1);
    X509_digest(x, EVP_sha256(), d, &n);
    hex(d, n, sha256);
    long long t[2];
    const ASN1_TIME *tm[2] = {X509_get0_notBefore(x), X509_get0_notAfter(x)};
    for (int i = 0; i < 2; i++) {
        ASN1_TIME_diff(&day, &sec, epoch, tm[i]);
        t[i] = (long long)day * 86400 + sec;
    }
    ASN1_TIME_free(epoch);
    return fprintf(out, "%s\t%s\t%s\tCN=%s\t%lld\t%lld\n", host, sha1, sha256, host, t[0], t[1]) < 0
               ? -1
               : 0;
}

int main(int argc, char **argv)
{
    char path[4096], host[256];
    FILE *f, *meta, *thumbs, *names;
    EVP_PKEY *key;
    uint64_t base;
    time_t now = time(NULL);

    if (argc != 3) {
        fprintf(stderr, "usage: bench-gencerts DIR N\n");
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    snprintf(path, sizeof(path), "%s/key.pem", argv[1]);
    if ((f = fopen(path, "r")) == NULL ||
        (key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) {
        fprintf(stderr, "bench-gencerts: no key in %s: run bench/gen-certs %s 0 first\n", path,
                argv[1]);
        return 1;
    }
    fclose(f);
    snprintf(path, sizeof(path), "%s/certs", argv[1]);
    mkdir(path, 0755);
    RAND_bytes((unsigned char *)&base, sizeof(base));
    base = (base & 0xffffffffffffull) << 8;
    snprintf(path, sizeof(path), "%s/meta.tsv", argv[1]);
    meta = fopen(path, "w");
    snprintf(path, sizeof(path), "%s/thumbprints.txt", argv[1]);
    thumbs = fopen(path, "w");
    snprintf(path, sizeof(path), "%s/names.txt", argv[1]);
    names = fopen(path, "w");
    if (meta == NULL || thumbs == NULL || names == NULL)
        return 1;
    long made = 0;
    for (long i = 0; i <= n; i++) {
        X509 *x = NULL;
        if (i == 0) {
            snprintf(host, sizeof(host), "default.bench.test");
            snprintf(path, sizeof(path), "%s/default.pem", argv[1]);
        } else {
            snprintf(host, sizeof(host), "site%05ld.bench.test", i);
            snprintf(path, sizeof(path), "%s/certs/site%05ld.pem", argv[1], i);
            fprintf(names, "%s\n", host);
        }
        if ((f = fopen(path, "r")) != NULL) {
            x = PEM_read_X509(f, NULL, NULL, NULL);
            fclose(f);
        }
        if (x == NULL) {
            char tmp[4200];
            if ((x = make(key, host, base + (uint64_t)i, now)) == NULL)
                return 1;
            snprintf(tmp, sizeof(tmp), "%s.tmp", path);
            if ((f = fopen(tmp, "w")) == NULL || PEM_write_X509(f, x) != 1 || fclose(f) != 0 ||
                rename(tmp, path) != 0) {
                perror(path);
                return 1;
            }
            made++;
        }
        if (meta_line(meta, host, x) != 0)
            return 1;
        unsigned char d[20];
        unsigned dn;
        char sha1[41];
        X509_digest(x, EVP_sha1(), d, &dn);
        hex(d, dn, sha1);
        fprintf(thumbs, "%s %s\n", host, sha1);
        X509_free(x);
    }
    if (fclose(meta) != 0 || fclose(thumbs) != 0 || fclose(names) != 0)
        return 1;
    EVP_PKEY_free(key);
    printf("bench-gencerts: %s: %ld certificates (+ default), %ld made now\n", argv[1], n, made);
    return 0;
}
