/*
 * challenge_put: a test-only program (never installed) that puts or deletes a pending
 * TLS-ALPN-01 challenge through the store's own calls, as the manager does, so that the
 * end-to-end tests drive the real code path from the store to the workers.
 *
 *   challenge_put STATE put NAME CERT.pem KEY.pem [EXPIRES]   (default: now + 1 hour)
 *   challenge_put STATE delete NAME
 *
 * Exit 0 on success; 1 with the store's message on stderr otherwise; 2 on usage.
 */
#include "store/challenge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (nb == NULL)
                break;
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            buf[n] = '\0';
            fclose(f);
            return buf;
        }
    }
    free(buf);
    fclose(f);
    return NULL;
}

int main(int argc, char **argv)
{
    struct cb_store *st = NULL;
    struct cb_err err = {0};
    char *cert = NULL, *key = NULL;
    int ret;

    if (argc < 4 || (strcmp(argv[2], "put") == 0 && argc != 6 && argc != 7) ||
        (strcmp(argv[2], "delete") == 0 && argc != 4) ||
        (strcmp(argv[2], "put") != 0 && strcmp(argv[2], "delete") != 0)) {
        fprintf(stderr,
                "usage: %s STATE put NAME CERT.pem KEY.pem [EXPIRES]\n"
                "       %s STATE delete NAME\n",
                argv[0], argv[0]);
        return 2;
    }
    if ((ret = cb_store_open(argv[1], CB_STORE_WRITE, &st, &err)) != 0)
        goto out;
    if (strcmp(argv[2], "delete") == 0) {
        ret = cb_store_challenge_delete(st, argv[3], &err);
        goto out;
    }
    if ((cert = slurp(argv[4])) == NULL || (key = slurp(argv[5])) == NULL) {
        ret = cb_err_set(&err, CB_EIO, "cannot read %s", cert == NULL ? argv[4] : argv[5]);
        goto out;
    }
    int64_t expires = argc == 7 ? strtoll(argv[6], NULL, 10) : (int64_t)time(NULL) + 3600;
    ret = cb_store_challenge_put(st, argv[3], cert, key, expires, &err);
out:
    if (key != NULL)
        explicit_bzero(key, strlen(key));
    free(key);
    free(cert);
    cb_store_close(st);
    if (ret != 0) {
        fprintf(stderr, "challenge_put: %s\n", err.msg);
        return 1;
    }
    return 0;
}
