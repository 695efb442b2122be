/*
 * certstore.c: putting a certificate into the store (files and row together) and moving a
 * binding to another certificate. Shared by `add cert`, `deploy` and serve's ACME manager.
 */
#include "certstore/certstore.h"
#include "util/log.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Gives files written into the state folder to the service user, so `serve` can read them
 * after dropping to it. */
static void give_to_service_user(struct cb_store *st, const char *cert, const char *key,
                                 cb_svcuser_warn_fn warn, void *warn_arg)
{
    const char *paths[2] = {key, cert};
    struct cb_user u;
    struct cb_err err;

    if (cb_svcuser_get(st, &u, NULL) != 0)
        return;
    for (int i = 0; i < 2; i++)
        if (cb_svcuser_give_file(st, &u, paths[i], &err) != 0 && warn != NULL)
            warn(err.msg, warn_arg);
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

int cb_certstore_import(struct cb_store *st, const struct cb_cert_bundle *bundle,
                        const struct cb_cert_info *info, const char *link_cert,
                        const char *link_key, bool *existed, cb_svcuser_warn_fn warn,
                        void *warn_arg, struct cb_err *err)
{
    char cert_path[CB_PATH_MAX + 1], key_path[CB_PATH_MAX + 1];
    struct cb_cert_row row;
    int ret;

    *existed = cb_store_cert_get(st, info->thumbprint, &row, NULL) == 0;
    if (*existed) {
        /* Already known: put back our copies if someone removed them. */
        bool missing = cb_store_owns(st, row.cert_path) && cb_store_owns(st, row.key_path) &&
                       (access(row.cert_path, F_OK) != 0 || access(row.key_path, F_OK) != 0);
        ret = missing ? cb_cert_bundle_write(bundle, row.cert_path, row.key_path, err) : 0;
        if (ret == 0 && missing)
            give_to_service_user(st, row.cert_path, row.key_path, warn, warn_arg);
        cb_cert_row_clear(&row);
        return ret;
    }
    if (link_cert != NULL) {
        /* In place: the files stay where they are and are watched by serve. */
        if (absolute_path(link_cert, cert_path, sizeof(cert_path)) != 0 ||
            absolute_path(link_key, key_path, sizeof(key_path)) != 0) {
            if (errno == ENAMETOOLONG)
                return cb_err_set(err, CB_EINVAL,
                                  "the absolute path of a linked file is too long (at most %d "
                                  "characters): keep the certificate and key in a shorter path",
                                  CB_PATH_MAX);
            return cb_err_set(err, CB_EINVAL, "cannot resolve %s or %s: %s", link_cert, link_key,
                              strerror(errno));
        }
        return cb_store_cert_put(st, info, cert_path, key_path, err);
    }
    cb_store_cert_paths(st, info->thumbprint, cert_path, key_path, sizeof(cert_path));
    /* Registered before writing: a rollback removes what a failed write left, too. */
    if ((ret = cb_store_unlink_on_rollback(st, cert_path, err)) != 0 ||
        (ret = cb_store_unlink_on_rollback(st, key_path, err)) != 0 ||
        (ret = (cb_store_in_batch(st) ? cb_cert_bundle_write_unsynced : cb_cert_bundle_write)(
             bundle, cert_path, key_path, err)) != 0)
        return ret;
    give_to_service_user(st, cert_path, key_path, warn, warn_arg);
    return cb_store_cert_put(st, info, cert_path, key_path, err);
}

void cb_certstore_pems_clear(struct cb_certstore_pems *p)
{
    if (p->key != NULL)
        explicit_bzero(p->key, p->key_len);
    free(p->key);
    free(p->cert);
    memset(p, 0, sizeof(*p));
}

bool cb_certstore_batch_owner(struct cb_store *st, struct cb_user *owner)
{
    return geteuid() == 0 && cb_svcuser_get(st, owner, NULL) == 0;
}

int cb_certstore_import_batch(struct cb_store *st, const struct cb_cert_bundle *bundle,
                              const struct cb_cert_info *info, const struct cb_cert_keycache *kc,
                              const struct cb_user *owner, struct cb_certstore_pems *pems,
                              bool *existed, cb_svcuser_warn_fn warn, void *warn_arg,
                              struct cb_err *err)
{
    char cert_path[CB_PATH_MAX + 1], key_path[CB_PATH_MAX + 1];
    char *cert_pem, *key_pem;
    size_t cert_len, key_len;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    struct cb_cert_row row;
    int ret;

    if (!cb_store_in_batch(st))
        return cb_err_set(err, CB_EINVAL, "internal: a batch import outside a batch");
    if (cb_store_cert_get(st, info->thumbprint, &row, NULL) == 0) {
        cb_cert_row_clear(&row);
        /* Its files may still be on their way to the disk: the copies are checked after. */
        if ((ret = cb_store_batch_wait_files(st, err)) != 0)
            return ret;
        return cb_certstore_import(st, bundle, info, NULL, NULL, existed, warn, warn_arg, err);
    }
    *existed = false;
    if (owner != NULL) {
        uid = owner->uid;
        gid = owner->gid;
    }
    cb_store_cert_paths(st, info->thumbprint, cert_path, key_path, sizeof(cert_path));
    if (pems != NULL && pems->cert != NULL && pems->key != NULL) {
        cert_pem = pems->cert;
        cert_len = pems->cert_len;
        key_pem = pems->key;
        key_len = pems->key_len;
        memset(pems, 0, sizeof(*pems)); /* taken */
    } else if ((ret = cb_cert_bundle_pem(bundle, kc, &cert_pem, &cert_len, &key_pem, &key_len,
                                         err)) != 0) {
        return ret;
    }
    /* Both queued (each is freed by the writer, even on failure), then the row. */
    ret = cb_store_batch_write(st, key_path, 0600, uid, gid, key_pem, key_len, err);
    if (ret != 0) {
        free(cert_pem);
        return ret;
    }
    if ((ret = cb_store_batch_write(st, cert_path, 0644, uid, gid, cert_pem, cert_len, err)) != 0)
        return ret;
    return cb_store_cert_put(st, info, cert_path, key_path, err);
}

static void log_warning(const char *msg, void *arg)
{
    char q[1024];
    (void)arg;
    cb_log("warn", "cert_import", "reason=%s", cb_log_quote(msg, q, sizeof(q)));
}

int cb_certstore_import_pem(struct cb_store *st, const char *chain_pem, size_t chain_len,
                            const char *key_pem, size_t key_len, char thumb[CB_THUMB_LEN + 1],
                            struct cb_err *err)
{
    struct cb_cert_bundle *bundle = NULL;
    struct cb_cert_info info = {0};
    char reason[512];
    bool existed;
    int ret;

    if ((ret = cb_cert_bundle_from_pem("the issued certificate", chain_pem, chain_len, key_pem,
                                       key_len, &bundle, err)) != 0)
        return ret;
    if ((ret = cb_cert_bundle_info(bundle, &info, err)) != 0)
        goto out_free_bundle;
    if ((ret = cb_certstore_import(st, bundle, &info, NULL, NULL, &existed, log_warning, NULL,
                                   err)) != 0)
        goto out_clear_info;
    if (!existed && (ret = cb_store_cert_mark_acme(st, info.thumbprint, err)) != 0)
        goto out_clear_info;
    if (cb_svcuser_key_usable(st, info.thumbprint, reason, sizeof(reason)) != 0) {
        ret = cb_err_set(err, CB_EKEY,
                         "the key of the issued certificate %s is unusable (%s); check the "
                         "state folder's keys/ and the service user",
                         info.thumbprint, reason);
        goto out_clear_info;
    }
    memcpy(thumb, info.thumbprint, CB_THUMB_LEN + 1);
out_clear_info:
    cb_cert_info_clear(&info);
out_free_bundle:
    cb_cert_bundle_free(bundle);
    return ret;
}

static int count_binding(const struct cb_binding *b, void *arg)
{
    (void)b;
    (*(size_t *)arg)++;
    return 0;
}

/* Deletes certificate thumb when it is ACME-issued and no binding uses it. */
static int prune_acme_cert(struct cb_store *st, const char *thumb, struct cb_err *err)
{
    struct cb_cert_row row;
    size_t users = 0;
    int ret = 0;

    if (cb_store_cert_get(st, thumb, &row, NULL) != 0)
        return 0; /* not in the store: nothing to delete */
    if (!row.acme_issued)
        goto out_clear_row;
    if ((ret = cb_store_binding_foreach(st, thumb, count_binding, &users, err)) != 0 || users > 0)
        goto out_clear_row;
    if ((ret = cb_store_cert_delete(st, thumb, err)) == 0 &&
        (ret = cb_store_unlink_after_commit(st, row.cert_path, err)) == 0)
        ret = cb_store_unlink_after_commit(st, row.key_path, err);
out_clear_row:
    cb_cert_row_clear(&row);
    return ret;
}

int cb_certstore_rebind(struct cb_store *st, const char *key, const char *thumb, struct cb_err *err)
{
    struct cb_binding_key k;
    struct cb_binding b;
    struct cb_cert_row row;
    char old[CB_THUMB_LEN + 1];
    int ret;

    if ((ret = cb_key_parse_word(key, &k, err)) != 0)
        return ret;
    if (k.kind == CB_KEY_CCS)
        return cb_err_set(err, CB_EINVAL,
                          "%s takes its certificates from its central store folder; it cannot "
                          "be moved to one certificate",
                          key);
    if ((ret = cb_store_binding_get(st, &k, &b, err)) != 0)
        return ret;
    if (strcmp(b.certhash, thumb) == 0)
        return 0;
    if ((ret = cb_store_cert_get(st, thumb, &row, err)) != 0)
        return ret;
    cb_cert_row_clear(&row);
    memcpy(old, b.certhash, sizeof(old));
    snprintf(b.certhash, sizeof(b.certhash), "%s", thumb);
    if ((ret = cb_store_binding_update(st, &b, err)) != 0)
        return ret;
    return old[0] != '\0' ? prune_acme_cert(st, old, err) : 0;
}
