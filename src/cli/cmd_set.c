/* cmd_set.c: `set user=NAME`, the service user (design/bindings.md section 3). */
#include "cli/cli.h"
#include "svcuser/svcuser.h"

#include <stdlib.h>
#include <string.h>

/* Every stored certificate's files, to test as the user. Owned arrays; see pairs_free. */
struct pairs {
    struct cb_svcuser_probe *probes; /* cert and key point into paths */
    char (*paths)[2][CB_PATH_MAX + 1];
    char (*thumbs)[CB_THUMB_LEN + 1];
    size_t n;
};

static int collect_cert(const struct cb_cert_row *row, void *arg)
{
    struct pairs *p = arg;
    void *np = realloc(p->paths, (p->n + 1) * sizeof(*p->paths));
    if (np == NULL)
        return CB_ENOMEM;
    p->paths = np;
    np = realloc(p->thumbs, (p->n + 1) * sizeof(*p->thumbs));
    if (np == NULL)
        return CB_ENOMEM;
    p->thumbs = np;
    snprintf(p->paths[p->n][0], CB_PATH_MAX + 1, "%s", row->cert_path);
    snprintf(p->paths[p->n][1], CB_PATH_MAX + 1, "%s", row->key_path);
    snprintf(p->thumbs[p->n], CB_THUMB_LEN + 1, "%s", row->info.thumbprint);
    p->n++;
    return 0;
}

static void pairs_free(struct pairs *p)
{
    free(p->probes);
    free(p->paths);
    free(p->thumbs);
}

static void warn(const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "certbind: warning: %s\n", msg);
}

/* Tests every stored key as user and says how many it can use. */
static int test_keys(struct cb_cli *cli, const struct cb_user *user, struct pairs *p)
{
    bool *ok = calloc(p->n, sizeof(*ok)), as_user;
    char(*reasons)[CB_PRIV_REASON] = calloc(p->n, sizeof(*reasons));
    struct cb_err terr = {0};
    size_t bad = 0;
    int ret = 0;

    p->probes = calloc(p->n, sizeof(*p->probes));
    if (ok == NULL || reasons == NULL || p->probes == NULL) {
        ret = cb_err_set(&cli->err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < p->n; i++)
        p->probes[i] = (struct cb_svcuser_probe){.cert = p->paths[i][0], .key = p->paths[i][1]};
    if (cb_svcuser_test(user, p->probes, p->n, ok, reasons, &as_user, &terr) != 0) {
        fprintf(stderr, "certbind: warning: key access not tested: %s\n", terr.msg);
        goto out_free;
    }
    if (!as_user) {
        fprintf(stderr,
                "certbind: warning: key access not tested: cannot test key access as %s "
                "without root; run as root to test\n",
                user->name);
        goto out_free;
    }
    for (size_t i = 0; i < p->n; i++) {
        if (ok[i])
            continue;
        bad++;
        fprintf(stderr, "certbind: warning: %s cannot use the key of %s: %s\n", user->name,
                p->thumbs[i], reasons[i]);
    }
    printf("Key access tested as %s: %zu of %zu keys usable.\n", user->name, p->n - bad, p->n);
out_free:
    free(ok);
    free(reasons);
    return ret;
}

int cb_cmd_set(struct cb_cli *cli)
{
    static const char *const allowed[] = {"user", NULL};
    const char *name = cb_cli_opt(cli, "user");
    struct cb_store *st = NULL;
    struct cb_user user;
    struct pairs p = {0};
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0)
        return ret;
    if (name == NULL)
        return cb_err_set(&cli->err, CB_EINVAL, "give the service user: certbind set user=NAME");
    if ((ret = cb_user_lookup(name, &user, &cli->err)) != 0)
        return ret;
    if ((ret = cb_cli_open_store(cli, CB_STORE_WRITE, &st)) != 0)
        return ret;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    if ((ret = cb_store_setting_set(st, "user", user.name, &cli->err)) != 0 ||
        (ret = cb_store_cert_foreach(st, collect_cert, &p, &cli->err)) != 0 ||
        (ret = cb_store_commit(st, &cli->err)) != 0) {
        if (ret == CB_ENOMEM)
            cb_err_set(&cli->err, ret, "out of memory");
        cb_store_rollback(st);
        goto out_close;
    }
    printf("Service user is now %s (uid %u).\n", user.name, (unsigned)user.uid);
    /* The state folder is the user's working state, as systemd's StateDirectory= makes it. */
    if ((ret = cb_svcuser_give_state(st, &user, warn, NULL, &cli->err)) != 0)
        goto out_close;
    if (p.n > 0)
        ret = test_keys(cli, &user, &p);
out_close:
    pairs_free(&p);
    cb_cli_close_store(cli, st);
    return ret;
}
