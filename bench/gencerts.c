/*
 * bench-gencerts: bench/gen-certs in C, for 10^6 certificates (the Python one makes a few
 * hundred a second on a loaded machine). The same layout and certificates (self-signed,
 * one shared key, CN and SAN siteNNNNN.bench.test, serials from a random base), plus
 * meta.tsv: one line per certificate with what `add cert` stores of it, so that
 * bench/run-scale fills a store without parsing a million PEM files in Python.
 *
 *   bench-gencerts [-s STATE -f FIRST -o UID:GID] [-j JOBS] DIR N
 *                             (DIR/key.pem must exist: bench/gen-certs DIR 0 makes it)
 *
 * meta.tsv: NAME  SHA1  SHA256  SUBJECT  NOT_BEFORE  NOT_AFTER   (hex upper case, epoch s)
 * Certificates already in DIR are kept (read back for their line); only missing ones are made.
 *
 * -s STATE writes certificates FIRST..N straight into a certbind state folder, as `add cert`
 * lays them out: STATE/certs/SHA1.pem (the certificate) and STATE/keys/SHA1.key (DIR/key.pem
 * as given), mode 0600, owned by UID:GID (the service user), created O_EXCL. Those are not
 * written into DIR (a certificate already in DIR is read and used, so peers and certbind can
 * share them); the default and sites 1..FIRST-1 are, for the CLI to import. The rows go in
 * meta.tsv as usual: bench/run-scale inserts them with sqlite3 after checking the CLI's.
 * At 10^6 that is what makes a store of distinct certificates affordable: one file pair per
 * certificate instead of three files and a rename, no PEM parsed back in Python.
 *
 * -j JOBS splits the range over JOBS processes (contiguous slices; their lines are joined
 * in order, so the output does not depend on JOBS).
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
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

struct job {
    const char *dir, *state;
    long first, lo, hi; /* certificates lo..hi (0: the default) */
    uid_t uid;
    gid_t gid;
    EVP_PKEY *key;
    const char *key_pem; /* DIR/key.pem as read: what `add cert` copies into keys/ */
    size_t key_len;
    uint64_t base;
    time_t now;
    int part; /* -1: write DIR/meta.tsv itself; else DIR/meta.tsv.PART (joined later) */
};

/* Writes len bytes to path, created exclusively with mode 0600 and the given owner. */
static int write_owned(const char *path, const void *data, size_t len, uid_t uid, gid_t gid)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = write(fd, data, len) == (ssize_t)len && fchown(fd, uid, gid) == 0;
    if (close(fd) != 0 || !ok)
        return -1;
    return 0;
}

/* The certificate's PEM, into STATE/certs/SHA1.pem, and the key into STATE/keys/SHA1.key. */
static int write_store(const struct job *j, X509 *x, const char *sha1)
{
    char path[4096];
    BIO *mem = BIO_new(BIO_s_mem());
    char *pem;
    long len;
    int ret = -1;

    if (mem == NULL || PEM_write_bio_X509(mem, x) != 1)
        goto out;
    len = BIO_get_mem_data(mem, &pem);
    snprintf(path, sizeof(path), "%s/certs/%s.pem", j->state, sha1);
    if (write_owned(path, pem, (size_t)len, j->uid, j->gid) != 0) {
        perror(path);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/keys/%s.key", j->state, sha1);
    if (write_owned(path, j->key_pem, j->key_len, j->uid, j->gid) != 0) {
        perror(path);
        goto out;
    }
    ret = 0;
out:
    BIO_free(mem);
    return ret;
}

static FILE *open_part(const struct job *j, const char *name)
{
    char path[4096];
    if (j->part < 0)
        snprintf(path, sizeof(path), "%s/%s", j->dir, name);
    else
        snprintf(path, sizeof(path), "%s/%s.%d", j->dir, name, j->part);
    return fopen(path, "w");
}

/* Makes (or reads back) certificates lo..hi; returns how many were made, or -1. */
static long run_job(const struct job *j)
{
    char path[4096], host[256];
    FILE *f, *meta = open_part(j, "meta.tsv"), *thumbs = open_part(j, "thumbprints.txt"),
             *names = open_part(j, "names.txt");
    long made = 0;

    if (meta == NULL || thumbs == NULL || names == NULL)
        return -1;
    for (long i = j->lo; i <= j->hi; i++) {
        X509 *x = NULL;
        bool to_store = j->state != NULL && i >= j->first;
        if (i == 0) {
            snprintf(host, sizeof(host), "default.bench.test");
            snprintf(path, sizeof(path), "%s/default.pem", j->dir);
        } else {
            snprintf(host, sizeof(host), "site%05ld.bench.test", i);
            snprintf(path, sizeof(path), "%s/certs/site%05ld.pem", j->dir, i);
            fprintf(names, "%s\n", host);
        }
        if ((f = fopen(path, "r")) != NULL) {
            x = PEM_read_X509(f, NULL, NULL, NULL);
            fclose(f);
        }
        if (x == NULL) {
            char tmp[4200];
            if ((x = make(j->key, host, j->base + (uint64_t)i, j->now)) == NULL)
                return -1;
            snprintf(tmp, sizeof(tmp), "%s.tmp", path);
            if (!to_store && ((f = fopen(tmp, "w")) == NULL || PEM_write_X509(f, x) != 1 ||
                              fclose(f) != 0 || rename(tmp, path) != 0)) {
                perror(path);
                return -1;
            }
            made++;
        }
        if (meta_line(meta, host, x) != 0)
            return -1;
        unsigned char d[20];
        unsigned dn;
        char sha1[41];
        X509_digest(x, EVP_sha1(), d, &dn);
        hex(d, dn, sha1);
        fprintf(thumbs, "%s %s\n", host, sha1);
        if (to_store && write_store(j, x, sha1) != 0)
            return -1;
        X509_free(x);
    }
    if (fclose(meta) != 0 || fclose(thumbs) != 0 || fclose(names) != 0)
        return -1;
    return made;
}

/* Appends DIR/NAME.0 .. DIR/NAME.(parts-1) to DIR/NAME and removes them. */
static int join_parts(const char *dir, const char *name, int parts)
{
    char path[4096], buf[1 << 16];
    size_t n;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *out = fopen(path, "w");
    if (out == NULL)
        return -1;
    for (int k = 0; k < parts; k++) {
        snprintf(path, sizeof(path), "%s/%s.%d", dir, name, k);
        FILE *in = fopen(path, "r");
        if (in == NULL) {
            fclose(out);
            return -1;
        }
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            fwrite(buf, 1, n, out);
        fclose(in);
        unlink(path);
    }
    return fclose(out) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    char path[4096];
    FILE *f;
    struct job j = {.now = time(NULL), .part = -1};
    int jobs = 1, opt;
    char *key_pem = NULL;

    while ((opt = getopt(argc, argv, "s:f:o:j:")) != -1) {
        switch (opt) {
        case 's':
            j.state = optarg;
            break;
        case 'f':
            j.first = strtol(optarg, NULL, 10);
            break;
        case 'o':
            if (sscanf(optarg, "%u:%u", &j.uid, &j.gid) != 2)
                goto usage;
            break;
        case 'j':
            jobs = atoi(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (argc - optind != 2 || jobs < 1 || jobs > 64 || j.first < 0)
        goto usage;
    j.dir = argv[optind];
    long n = strtol(argv[optind + 1], NULL, 10);
    snprintf(path, sizeof(path), "%s/key.pem", j.dir);
    if ((f = fopen(path, "r")) == NULL ||
        (j.key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) {
        fprintf(stderr, "bench-gencerts: no key in %s: run bench/gen-certs %s 0 first\n", path,
                j.dir);
        return 1;
    }
    /* The key's bytes as they are in the file: what the CLI copies. */
    key_pem = malloc(1 << 16);
    rewind(f);
    j.key_len = key_pem == NULL ? 0 : fread(key_pem, 1, 1 << 16, f);
    fclose(f);
    if (j.key_len == 0 || j.key_len == 1 << 16)
        return 1;
    j.key_pem = key_pem;
    snprintf(path, sizeof(path), "%s/certs", j.dir);
    mkdir(path, 0755);
    RAND_bytes((unsigned char *)&j.base, sizeof(j.base));
    j.base = (j.base & 0xffffffffffffull) << 8;

    long made = 0;
    if (jobs == 1) {
        j.lo = 0;
        j.hi = n;
        if ((made = run_job(&j)) < 0)
            return 1;
    } else {
        pid_t pids[64];
        for (int k = 0; k < jobs; k++) {
            struct job part = j;
            part.part = k;
            part.lo = (n + 1) * k / jobs;
            part.hi = (n + 1) * (k + 1) / jobs - 1;
            if ((pids[k] = fork()) < 0)
                return 1;
            if (pids[k] == 0)
                _exit(run_job(&part) < 0 ? 1 : 0);
        }
        int failed = 0, status;
        for (int k = 0; k < jobs; k++)
            if (waitpid(pids[k], &status, 0) != pids[k] || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0)
                failed = 1;
        if (failed || join_parts(j.dir, "meta.tsv", jobs) != 0 ||
            join_parts(j.dir, "thumbprints.txt", jobs) != 0 ||
            join_parts(j.dir, "names.txt", jobs) != 0) {
            fprintf(stderr, "bench-gencerts: a job failed\n");
            return 1;
        }
        made = -1; /* counted by the children */
    }
    EVP_PKEY_free(j.key);
    free(key_pem);
    if (made >= 0)
        printf("bench-gencerts: %s: %ld certificates (+ default), %ld made now%s%s\n", j.dir, n,
               made, j.state ? ", into " : "", j.state ? j.state : "");
    else
        printf("bench-gencerts: %s: %ld certificates (+ default), %d jobs%s%s\n", j.dir, n, jobs,
               j.state ? ", into " : "", j.state ? j.state : "");
    return 0;
usage:
    fprintf(stderr, "usage: bench-gencerts [-s STATE -f FIRST -o UID:GID] [-j JOBS] DIR N\n");
    return 2;
}
