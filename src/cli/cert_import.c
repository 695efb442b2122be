/* cert_import.c: putting a certificate into the store, shared by `add cert` and `deploy`. */
#include "cli/cli.h"
#include "svcuser/svcuser.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Gives files written into the state folder to the service user, so `serve` can read them
 * after dropping to it. */
static void give_to_service_user(struct cb_store *st, const char *cert, const char *key)
{
    const char *paths[2] = {key, cert};
    struct cb_user u;
    struct cb_err err;

    if (cb_svcuser_get(st, &u, NULL) != 0)
        return;
    for (int i = 0; i < 2; i++)
        if (cb_svcuser_give_file(st, &u, paths[i], &err) != 0)
            fprintf(stderr, "certbind: warning: %s\n", err.msg);
}

/*
 * The absolute name of a linked file: its folder resolved, the file itself not, so a
 * symlink (certbot's live/) stays one and re-pointing it is a change serve sees. The
 * result must fit CB_PATH_MAX: ENAMETOOLONG otherwise.
 */
static int absolute_path(const char *path, char *out, size_t size)
{
    char dir[CB_PATH_MAX + 1], base[CB_PATH_MAX + 1], real[PATH_MAX];

    if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(base, sizeof(base), "%s", path);
    if (realpath(dirname(dir), real) == NULL)
        return -1;
    const char *name = basename(base);
    int n = snprintf(out, size, "%s/%s", strcmp(real, "/") == 0 ? "" : real, name);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int cb_cli_import(struct cb_cli *cli, struct cb_store *st, const struct cb_cert_bundle *bundle,
                  const struct cb_cert_info *info, const char *link_cert, const char *link_key,
                  bool *existed)
{
    char cert_path[CB_PATH_MAX + 1], key_path[CB_PATH_MAX + 1];
    struct cb_cert_row row;
    int ret;

    *existed = cb_store_cert_get(st, info->thumbprint, &row, NULL) == 0;
    if (*existed) {
        /* Already known: put back our copies if someone removed them. */
        bool missing = cb_store_owns(st, row.cert_path) && cb_store_owns(st, row.key_path) &&
                       (access(row.cert_path, F_OK) != 0 || access(row.key_path, F_OK) != 0);
        ret = missing ? cb_cert_bundle_write(bundle, row.cert_path, row.key_path, &cli->err) : 0;
        if (ret == 0 && missing)
            give_to_service_user(st, row.cert_path, row.key_path);
        cb_cert_row_clear(&row);
        return ret;
    }
    if (link_cert != NULL) {
        /* In place: the files stay where they are and are watched by serve. */
        if (absolute_path(link_cert, cert_path, sizeof(cert_path)) != 0 ||
            absolute_path(link_key, key_path, sizeof(key_path)) != 0) {
            if (errno == ENAMETOOLONG)
                return cb_err_set(&cli->err, CB_EINVAL,
                                  "the absolute path of a linked file is too long (at most %d "
                                  "characters): keep the certificate and key in a shorter path",
                                  CB_PATH_MAX);
            return cb_err_set(&cli->err, CB_EINVAL, "cannot resolve %s or %s: %s", link_cert,
                              link_key, strerror(errno));
        }
        return cb_store_cert_put(st, info, cert_path, key_path, &cli->err);
    }
    cb_store_cert_paths(st, info->thumbprint, cert_path, key_path, sizeof(cert_path));
    if ((ret = cb_cert_bundle_write(bundle, cert_path, key_path, &cli->err)) != 0)
        return ret;
    give_to_service_user(st, cert_path, key_path);
    if ((ret = cb_store_cert_put(st, info, cert_path, key_path, &cli->err)) != 0) {
        unlink(cert_path);
        unlink(key_path);
    }
    return ret;
}

int cb_cli_load_cert(struct cb_cli *cli, const char *file, struct cb_cert_bundle **bundle,
                     struct cb_cert_info *info)
{
    const char *pwfile = cb_cli_opt(cli, "password-file");
    char password[1024];
    int ret;

    if (pwfile && (ret = cb_cli_read_password(cli, pwfile, password, sizeof(password))) != 0)
        return ret;
    ret = cb_cert_bundle_load(file, cb_cli_opt(cli, "key"), pwfile ? password : NULL, bundle,
                              &cli->err);
    explicit_bzero(password, sizeof(password));
    if (ret != 0)
        return ret;
    if ((ret = cb_cert_bundle_info(*bundle, info, &cli->err)) != 0) {
        cb_cert_bundle_free(*bundle);
        *bundle = NULL;
    }
    return ret;
}
