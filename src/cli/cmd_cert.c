/* cmd_cert.c: `add cert`, `show cert`, `delete cert`. */
#include "certstore/certstore.h"
#include "cli/cli.h"
#include "util/priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

/* Collects the canonical keys of the bindings that use one certificate. */
struct key_list {
    char **keys;
    size_t n;
};

static int collect_key(const struct cb_binding *b, void *arg)
{
    struct key_list *l = arg;
    char text[CB_KEY_TEXT_MAX];
    char **nk = realloc(l->keys, (l->n + 1) * sizeof(*nk));

    if (nk == NULL)
        return CB_ENOMEM;
    l->keys = nk;
    cb_key_format(&b->key, text, sizeof(text));
    if ((nk[l->n] = strdup(text)) == NULL)
        return CB_ENOMEM;
    l->n++;
    return 0;
}

static void key_list_free(struct key_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    l->keys = NULL;
    l->n = 0;
}

static int bindings_of(struct cb_cli *cli, struct cb_store *st, const char *thumb,
                       struct key_list *l)
{
    int ret = cb_store_binding_foreach(st, thumb, collect_key, l, &cli->err);
    if (ret == CB_ENOMEM)
        cb_err_set(&cli->err, ret, "out of memory");
    return ret;
}

int cb_cmd_add_cert(struct cb_cli *cli)
{
    static const char *const allowed[] = {"key", "password-file", "link", NULL};
    struct cb_cert_bundle *bundle = NULL;
    struct cb_cert_info info;
    struct cb_store *st = NULL;
    const char *pwfile = cb_cli_opt(cli, "password-file"), *key = cb_cli_opt(cli, "key");
    bool link, existed = false;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 1)) != 0 ||
        (ret = cb_cli_yesno(cli, "link", &link)) != 0)
        return ret;
    if (cli->n_pos != 1)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "give the certificate file: certbind add cert FILE [key=FILE] "
                          "[password-file=FILE] [link=yes]");
    if (link && (key == NULL || pwfile != NULL))
        return cb_err_set(&cli->err, CB_EINVAL,
                          "link=yes keeps a PEM certificate and its unencrypted key where they "
                          "are: give both files, certbind add cert FILE key=FILE link=yes");
    if ((ret = cb_cli_load_cert(cli, cli->pos[0], &bundle, &info)) != 0)
        return ret;
    if ((ret = cb_cli_open_store(cli, CB_STORE_WRITE, &st)) != 0)
        goto out_clear_info;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    if ((ret = cb_certstore_import(st, bundle, &info, link ? cli->pos[0] : NULL, link ? key : NULL,
                                   &existed, cb_cli_warn, NULL, &cli->err)) != 0)
        goto out_rollback;
    if (existed) {
        /* Importing the same certificate again is harmless: say so and succeed. */
        fprintf(stderr, "certbind: certificate %s is already in the store\n", info.thumbprint);
        printf("%s\n", info.thumbprint);
        goto out_rollback;
    }
    if ((ret = cb_store_commit(st, &cli->err)) != 0) /* the files go with the rollback */
        goto out_rollback;
    printf("%s\n", info.thumbprint);
out_rollback:
    cb_store_rollback(st);
out_close:
    cb_cli_close_store(cli, st);
out_clear_info:
    cb_cert_info_clear(&info);
    cb_cert_bundle_free(bundle);
    return ret;
}

struct show_ctx {
    struct cb_cli *cli;
    struct cb_store *st;
    json_t *array;
    size_t count;
};

static int show_one(const struct cb_cert_row *row, void *arg)
{
    struct show_ctx *sc = arg;
    struct key_list keys = {0};
    char nb[32], na[32];
    int ret;

    if ((ret = bindings_of(sc->cli, sc->st, row->info.thumbprint, &keys)) != 0)
        return ret;
    sc->count++;
    if (sc->array != NULL) {
        json_t *names = json_array(), *binds = json_array();
        for (size_t i = 0; i < row->info.n_names; i++)
            json_array_append_new(names, json_string(row->info.names[i]));
        for (size_t i = 0; i < keys.n; i++)
            json_array_append_new(binds, json_string(keys.keys[i]));
        cb_cli_time(row->info.not_before, nb, sizeof(nb));
        cb_cli_time(row->info.not_after, na, sizeof(na));
        json_array_append_new(sc->array, json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:o}",
                                                   "thumbprint", row->info.thumbprint, "sha256",
                                                   row->info.sha256, "subject", row->info.subject,
                                                   "names", names, "not_before", nb, "not_after",
                                                   na, "key_type", row->info.key_type, "key_path",
                                                   row->key_path, "bindings", binds));
    } else {
        long days = (long)((row->info.not_after - (int64_t)time(NULL)) / 86400);
        cb_cli_time(row->info.not_before, nb, sizeof(nb));
        cb_cli_time(row->info.not_after, na, sizeof(na));
        if (sc->count > 1)
            printf("\n");
        printf("Thumbprint (SHA-1)  : %s\n", row->info.thumbprint);
        printf("SHA-256             : %s\n", row->info.sha256);
        printf("Subject             : %s\n", row->info.subject);
        printf("Names               :");
        for (size_t i = 0; i < row->info.n_names; i++)
            printf("%s %s", i ? "," : "", row->info.names[i]);
        printf("%s\n", row->info.n_names ? "" : " (none)");
        printf("Valid from          : %s\n", nb);
        printf("Valid until         : %s (%s%ld days)\n", na, days < 0 ? "expired " : "",
               days < 0 ? -days : days);
        printf("Key type            : %s\n", row->info.key_type);
        printf("Key file            : %s\n", row->key_path);
        printf("Chain certificates  : %d\n", row->info.chain_len);
        printf("Bindings            :");
        for (size_t i = 0; i < keys.n; i++)
            printf("%s %s", i ? "," : "", keys.keys[i]);
        printf("%s\n", keys.n ? "" : " (none)");
    }
    key_list_free(&keys);
    return 0;
}

int cb_cmd_show_cert(struct cb_cli *cli)
{
    static const char *const allowed[] = {NULL};
    struct show_ctx sc = {.cli = cli};
    struct cb_cert_row row;
    char thumb[CB_THUMB_LEN + 1];
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 1)) != 0)
        return ret;
    if (cli->n_pos == 1 && cb_thumbprint_normalize(cli->pos[0], thumb, &cli->err) != 0)
        return CB_EINVAL;
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &sc.st)) != 0) {
        if (ret != CB_ENOENT || cli->n_pos == 1)
            return ret;
        /* No store yet: an empty list, not an error. */
        if (cli->json)
            cb_cli_print_json(json_pack("{s:[]}", "certs"));
        else
            printf("No certificates. Import one with 'certbind add cert FILE'.\n");
        return 0;
    }
    if (cli->json)
        sc.array = json_array();
    if (cli->n_pos == 1) {
        if ((ret = cb_store_cert_get(sc.st, thumb, &row, &cli->err)) == 0) {
            ret = show_one(&row, &sc);
            cb_cert_row_clear(&row);
        }
    } else {
        ret = cb_store_cert_foreach(sc.st, show_one, &sc, &cli->err);
        if (ret == 0 && sc.count == 0 && !cli->json)
            printf("No certificates. Import one with 'certbind add cert FILE'.\n");
    }
    if (ret == CB_ENOMEM)
        cb_err_set(&cli->err, ret, "out of memory");
    if (ret == 0 && cli->json)
        cb_cli_print_json(json_pack("{s:O}", "certs", sc.array));
    json_decref(sc.array);
    cb_cli_close_store(cli, sc.st);
    return ret;
}

int cb_cmd_delete_cert(struct cb_cli *cli)
{
    static const char *const allowed[] = {"force", NULL};
    struct key_list keys = {0};
    struct cb_store *st = NULL;
    struct cb_cert_row row;
    char thumb[CB_THUMB_LEN + 1];
    bool force;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 1)) != 0 ||
        (ret = cb_cli_yesno(cli, "force", &force)) != 0)
        return ret;
    if (cli->n_pos != 1)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "give the thumbprint: certbind delete cert THUMBPRINT [force=yes]");
    if (cb_thumbprint_normalize(cli->pos[0], thumb, &cli->err) != 0)
        return CB_EINVAL;
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &st)) != 0)
        return ret == CB_ENOENT
                   ? cb_err_set(&cli->err, CB_ENOENT,
                                "no certificate %s in the store (the store is empty)", thumb)
                   : ret;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    if ((ret = cb_store_cert_get(st, thumb, &row, &cli->err)) != 0)
        goto out_rollback;
    if ((ret = bindings_of(cli, st, thumb, &keys)) != 0)
        goto out_clear_row;
    if (keys.n > 0 && !force) {
        char list[512] = "";
        size_t shown = 0;
        /* Whole keys only: a long list ends with "and N more", never with half a key. */
        for (; shown < keys.n; shown++) {
            size_t room = shown + 1 < keys.n ? 100 : 2; /* for "and N more" */
            if (strlen(list) + strlen(keys.keys[shown]) + room >= sizeof(list))
                break;
            strcat(list, shown ? ", " : "");
            strcat(list, keys.keys[shown]);
        }
        if (shown < keys.n)
            snprintf(list + strlen(list), sizeof(list) - strlen(list),
                     " and %zu more: 'certbind show cert %s' lists them", keys.n - shown, thumb);
        ret = cb_err_set(&cli->err, CB_EINUSE,
                         "certificate %s is used by %zu binding%s (%s); move them to another "
                         "certificate with 'certbind update sslcert KEY certhash=…', or add "
                         "force=yes to delete it and break them",
                         thumb, keys.n, keys.n == 1 ? "" : "s", list);
        goto out_free_keys;
    }
    if ((ret = cb_store_cert_delete(st, thumb, &cli->err)) != 0 ||
        (ret = cb_store_commit(st, &cli->err)) != 0)
        goto out_free_keys;
    /* Files go only after the commit: a crash before it leaves the certificate whole. */
    if (cb_store_owns(st, row.cert_path)) /* a linked certificate's files are the user's */
        unlink(row.cert_path);
    if (cb_store_owns(st, row.key_path))
        unlink(row.key_path);
    for (size_t i = 0; i < keys.n; i++)
        fprintf(stderr,
                "certbind: warning: binding %s now has no certificate; give it one with "
                "'certbind update sslcert %s certhash=…'\n",
                keys.keys[i], keys.keys[i]);
    printf("Deleted certificate %s.\n", thumb);
out_free_keys:
    key_list_free(&keys);
out_clear_row:
    cb_cert_row_clear(&row);
out_rollback:
    cb_store_rollback(st);
out_close:
    cb_cli_close_store(cli, st);
    return ret;
}
