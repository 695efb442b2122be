/* svcuser.c: the service user's rules: who it is, what it owns, which keys it can use. */
#include "svcuser/svcuser.h"
#include "tls/cert.h"
#include "tls/clientca.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int cb_svcuser_get(struct cb_store *st, struct cb_user *out, struct cb_err *err)
{
    char name[sizeof(out->name)];

    if (cb_store_setting_get(st, "user", name, sizeof(name), NULL) != 0)
        return cb_err_set(err, CB_ENOENT,
                          "no service user is set; set one with 'certbind set user=NAME'");
    return cb_user_lookup(name, out, err);
}

/* Changes the owner of path, whatever it is: the callers decide that it may be given. */
static int give(const struct cb_user *user, const char *path, bool missing_ok, struct cb_err *err)
{
    if (chown(path, user->uid, user->gid) == 0 || (missing_ok && errno == ENOENT))
        return 0;
    return cb_err_set(err, errno == EPERM || errno == EACCES ? CB_EPERM : CB_EIO,
                      "cannot give %s to %s: %s", path, user->name, strerror(errno));
}

int cb_svcuser_give_file(const struct cb_store *st, const struct cb_user *user, const char *path,
                         struct cb_err *err)
{
    if (geteuid() != 0 || !cb_store_owns(st, path))
        return 0;
    return give(user, path, false, err);
}

struct give_ctx {
    const struct cb_store *st;
    const struct cb_user *user;
    cb_svcuser_warn_fn warn;
    void *arg;
};

static int give_row(const struct cb_cert_row *row, void *arg)
{
    struct give_ctx *gc = arg;
    const char *paths[2] = {row->cert_path, row->key_path};
    struct cb_err err;

    for (int i = 0; i < 2; i++)
        if (cb_svcuser_give_file(gc->st, gc->user, paths[i], &err) != 0 && gc->warn != NULL)
            gc->warn(err.msg, gc->arg);
    return 0;
}

int cb_svcuser_give_state(struct cb_store *st, const struct cb_user *user, cb_svcuser_warn_fn warn,
                          void *arg, struct cb_err *err)
{
    /* The folder itself and what the store keeps in it, as systemd's StateDirectory=. */
    static const char *const own[] = {
        "", "/certbind.db", "/certbind.db-wal", "/certbind.db-shm", "/certs", "/keys", "/ocsp"};
    struct give_ctx gc = {.st = st, .user = user, .warn = warn, .arg = arg};
    char path[CB_PATH_MAX + 64];
    struct cb_err gerr;

    if (geteuid() != 0)
        return 0;
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", cb_store_dir(st), own[i]);
        if (give(user, path, true, &gerr) != 0 && warn != NULL)
            warn(gerr.msg, arg);
    }
    return cb_store_cert_foreach(st, give_row, &gc, err);
}

/* What the probes of one test share: kc decodes certificates without their public keys
 * (may be NULL: out of memory). */
struct probe_ctx {
    const struct cb_svcuser_probe *probes;
    struct cb_cert_keycache *kc;
};

static int probe_one(size_t i, void *arg, struct cb_err *err)
{
    struct probe_ctx *pc = arg;
    const struct cb_svcuser_probe *p = &pc->probes[i];

    if (p->folder) {
        DIR *d = opendir(p->cert);
        if (d == NULL)
            return cb_err_set(err, CB_EPERM, "cannot open folder %s", p->cert);
        closedir(d);
        return 0;
    }
    if (p->clientca) {
        struct cb_tls_ca *ca = NULL;
        int ret = cb_tls_ca_load(p->cert, &ca, NULL, err);
        cb_tls_ca_free(ca);
        return ret;
    }
    return cb_cert_check_pair_cached(p->cert, p->key, pc->kc, err);
}

int cb_svcuser_test(const struct cb_user *user, const struct cb_svcuser_probe *probes, size_t n,
                    bool *ok, char (*reasons)[CB_PRIV_REASON], bool *as_user, struct cb_err *err)
{
    bool root = geteuid() == 0;
    struct probe_ctx pc = {.probes = probes};
    struct cb_err perr;
    int ret = 0;

    if (as_user != NULL)
        *as_user = user != NULL && (root || user->uid == geteuid());
    if (n == 0)
        return 0;
    if (cb_cert_keycache_new(&pc.kc, NULL) != 0)
        pc.kc = NULL; /* each pair decoded in full: slower, the same verdicts */
    if (user != NULL && root && user->uid != 0) {
        /* The child uses (and drops) its copy of pc.kc; this one stays empty. */
        if ((ret = cb_priv_test_as(user, n, probe_one, &pc, ok, reasons, &perr)) != 0) {
            for (size_t i = 0; i < n; i++) {
                ok[i] = false;
                snprintf(reasons[i], CB_PRIV_REASON, "%s", perr.msg);
            }
            ret = cb_err_set(err, ret, "%s", perr.msg);
        }
        goto out_free;
    }
    for (size_t i = 0; i < n; i++) {
        perr.msg[0] = '\0';
        ok[i] = probe_one(i, &pc, &perr) == 0;
        snprintf(reasons[i], CB_PRIV_REASON, "%s", perr.msg);
    }
out_free:
    cb_cert_keycache_free(pc.kc);
    return ret;
}

int cb_svcuser_key_usable(struct cb_store *st, const char *thumb, char *reason, size_t size)
{
    struct cb_cert_row row;
    struct cb_user user;
    struct cb_err err = {0};
    char reasons[1][CB_PRIV_REASON];
    bool ok[1], as_user;

    if (cb_store_cert_get(st, thumb, &row, NULL) != 0) {
        snprintf(reason, size, "certificate %s is not in the store", thumb);
        return CB_ENOENT;
    }
    bool have_user = cb_svcuser_get(st, &user, NULL) == 0;
    struct cb_svcuser_probe probe = {.cert = row.cert_path, .key = row.key_path};
    int ret = cb_svcuser_test(have_user ? &user : NULL, &probe, 1, ok, reasons, &as_user, &err);
    cb_cert_row_clear(&row);
    if (ok[0]) {
        snprintf(reason, size, "ok");
        return 0;
    }
    if (ret == 0 && as_user)
        snprintf(reason, size, "as service user %s: %s", user.name, reasons[0]);
    else
        snprintf(reason, size, "%s", reasons[0]);
    return CB_EKEY;
}

int cb_svcuser_clientca_usable(struct cb_store *st, const char *path, char *reason, size_t size)
{
    struct cb_user user;
    char reasons[1][CB_PRIV_REASON];
    bool ok[1], as_user;
    struct cb_svcuser_probe probe = {.cert = path, .clientca = true};
    bool have_user = cb_svcuser_get(st, &user, NULL) == 0;
    int ret = cb_svcuser_test(have_user ? &user : NULL, &probe, 1, ok, reasons, &as_user, NULL);

    if (ok[0]) {
        snprintf(reason, size, "ok");
        return 0;
    }
    if (ret == 0 && as_user)
        snprintf(reason, size, "as service user %s: %s", user.name, reasons[0]);
    else
        snprintf(reason, size, "%s", reasons[0]);
    return CB_EBADFILE;
}
