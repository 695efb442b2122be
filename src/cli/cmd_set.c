/* cmd_set.c: `set user=NAME`, the service user (design/bindings.md section 3). */
#include "cli/cli.h"
#include "util/priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct own_ctx {
    struct cb_store *st;
    struct cb_user *user;
    size_t n, bad;
    char (*paths)[2][CB_PATH_MAX + 1];
    char (*thumbs)[CB_THUMB_LEN + 1];
};

static int collect_cert(const struct cb_cert_row *row, void *arg)
{
    struct own_ctx *oc = arg;
    void *np = realloc(oc->paths, (oc->n + 1) * sizeof(*oc->paths));
    if (np == NULL)
        return CB_ENOMEM;
    oc->paths = np;
    np = realloc(oc->thumbs, (oc->n + 1) * sizeof(*oc->thumbs));
    if (np == NULL)
        return CB_ENOMEM;
    oc->thumbs = np;
    snprintf(oc->paths[oc->n][0], CB_PATH_MAX + 1, "%s", row->cert_path);
    snprintf(oc->paths[oc->n][1], CB_PATH_MAX + 1, "%s", row->key_path);
    snprintf(oc->thumbs[oc->n], CB_THUMB_LEN + 1, "%s", row->info.thumbprint);
    oc->n++;
    return 0;
}

static int check_stored_pair(size_t i, void *arg, struct cb_err *err)
{
    struct own_ctx *oc = arg;
    return cb_cert_check_pair(oc->paths[i][0], oc->paths[i][1], err);
}

/* Gives the state folder to the service user: it is the user's working state, as
 * systemd's StateDirectory= does. The keys stay 0600. */
static void give_state(struct cb_cli *cli, struct own_ctx *oc)
{
    static const char *const files[] = {
        "", "/certbind.db", "/certbind.db-wal", "/certbind.db-shm", "/certs", "/keys"};
    char path[CB_PATH_MAX + 64];

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", cli->state_dir, files[i]);
        if (chown(path, oc->user->uid, oc->user->gid) != 0 && errno != ENOENT)
            fprintf(stderr, "certbind: warning: cannot give %s to %s: %s\n", path, oc->user->name,
                    strerror(errno));
    }
    for (size_t i = 0; i < oc->n; i++)
        for (int j = 0; j < 2; j++)
            if (strncmp(oc->paths[i][j], cli->state_dir, strlen(cli->state_dir)) == 0 &&
                chown(oc->paths[i][j], oc->user->uid, oc->user->gid) != 0)
                fprintf(stderr, "certbind: warning: cannot give %s to %s: %s\n", oc->paths[i][j],
                        oc->user->name, strerror(errno));
}

int cb_cmd_set(struct cb_cli *cli)
{
    static const char *const allowed[] = {"user", NULL};
    const char *name = cb_cli_opt(cli, "user");
    struct cb_store *st = NULL;
    struct cb_user user;
    struct own_ctx oc = {.user = &user};
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0)
        return ret;
    if (name == NULL)
        return cb_err_set(&cli->err, CB_EINVAL, "give the service user: certbind set user=NAME");
    if ((ret = cb_user_lookup(name, &user, &cli->err)) != 0)
        return ret;
    if ((ret = cb_cli_open_store(cli, CB_STORE_WRITE, &st)) != 0)
        return ret;
    oc.st = st;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    if ((ret = cb_store_setting_set(st, "user", user.name, &cli->err)) != 0 ||
        (ret = cb_store_cert_foreach(st, collect_cert, &oc, &cli->err)) != 0 ||
        (ret = cb_store_commit(st, &cli->err)) != 0) {
        if (ret == CB_ENOMEM)
            cb_err_set(&cli->err, ret, "out of memory");
        cb_store_rollback(st);
        goto out_close;
    }
    printf("Service user is now %s (uid %u).\n", user.name, (unsigned)user.uid);
    if (geteuid() == 0)
        give_state(cli, &oc);
    if (oc.n > 0) {
        bool *ok = calloc(oc.n, sizeof(*ok));
        char(*reasons)[CB_PRIV_REASON] = calloc(oc.n, sizeof(*reasons));
        struct cb_err terr = {0};
        if (ok == NULL || reasons == NULL) {
            ret = cb_err_set(&cli->err, CB_ENOMEM, "out of memory");
        } else if (cb_priv_test_as(&user, oc.n, check_stored_pair, &oc, ok, reasons, &terr) != 0) {
            fprintf(stderr, "certbind: warning: key access not tested: %s\n", terr.msg);
        } else {
            for (size_t i = 0; i < oc.n; i++) {
                if (ok[i])
                    continue;
                oc.bad++;
                fprintf(stderr, "certbind: warning: %s cannot use the key of %s: %s\n", user.name,
                        oc.thumbs[i], reasons[i]);
            }
            printf("Key access tested as %s: %zu of %zu keys usable.\n", user.name, oc.n - oc.bad,
                   oc.n);
        }
        free(ok);
        free(reasons);
    }
out_close:
    free(oc.paths);
    free(oc.thumbs);
    cb_store_close(st);
    return ret;
}
