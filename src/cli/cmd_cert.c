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

/* The running batch line's file i, loaded ahead by the batch's reader; NULL: none. */
static struct cb_cli_prepared *prepared(struct cb_cli *cli, int i, const char *file)
{
    struct cb_cli_batch *b = cli->batch;
    if (b == NULL || b->prepared == NULL || i >= b->n_prepared ||
        strcmp(b->prepared[i].file, file) != 0)
        return NULL;
    return &b->prepared[i];
}

/* Imports the command's file i (with its key=, password-file= and link=; taken from what
 * the batch's reader loaded when it did) in the open transaction of *st, opening it first if
 * *st is NULL; its thumbprint into thumb. */
static int add_one(struct cb_cli *cli, int i, bool link, struct cb_store **st,
                   char thumb[CB_THUMB_LEN + 1], bool *existed)
{
    const char *file = cli->pos[i], *key = cb_cli_opt(cli, "key");
    struct cb_cli_prepared *pre = link ? NULL : prepared(cli, i, file);
    struct cb_cert_bundle *bundle = NULL;
    struct cb_cert_info info;
    int ret;

    /* Read before the store is opened: a bad file leaves no trace. */
    if (pre != NULL && pre->ret != 0) {
        cli->err = pre->err;
        return pre->ret;
    }
    if (pre != NULL) {
        bundle = pre->bundle;
        info = pre->info;
        pre->bundle = NULL;
        memset(&pre->info, 0, sizeof(pre->info));
    } else if ((ret = cb_cli_load_cert(cli, file, &bundle, &info)) != 0) {
        return ret;
    }
    if (*st == NULL && ((ret = cb_cli_open_store(cli, CB_STORE_WRITE, st)) != 0 ||
                        (ret = cb_store_begin(*st, &cli->err)) != 0))
        goto out_clear_info;
    if (cli->batch != NULL && !link) {
        struct cb_cli_batch *b = cli->batch;
        if (b->owner_known == 0)
            b->owner_known = cb_certstore_batch_owner(*st, &b->owner) ? 2 : 1;
        ret = cb_certstore_import_batch(
            *st, bundle, &info, b->keys, b->owner_known == 2 ? &b->owner : NULL,
            pre != NULL ? &pre->pems : NULL, existed, cb_cli_warn, NULL, &cli->err);
    } else {
        ret = cb_certstore_import(*st, bundle, &info, link ? file : NULL, link ? key : NULL,
                                  existed, cb_cli_warn, NULL, &cli->err);
    }
    if (ret != 0)
        goto out_clear_info;
    memcpy(thumb, info.thumbprint, CB_THUMB_LEN + 1);
    /* Importing the same certificate again is harmless: say so and succeed. */
    if (*existed && cb_cli_verbose(cli))
        fprintf(stderr, "certbind: certificate %s is already in the store\n", thumb);
out_clear_info:
    cb_cert_info_clear(&info);
    cb_cert_bundle_free(bundle);
    return ret;
}

int cb_cmd_add_cert(struct cb_cli *cli)
{
    static const char *const allowed[] = {"key", "password-file", "link", NULL};
    char thumbs[CB_CLI_MAX_POS][CB_THUMB_LEN + 1];
    struct cb_store *st = NULL;
    const char *pwfile = cb_cli_opt(cli, "password-file"), *key = cb_cli_opt(cli, "key");
    size_t added = 0;
    bool link, existed;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, CB_CLI_MAX_POS)) != 0 ||
        (ret = cb_cli_yesno(cli, "link", &link)) != 0)
        return ret;
    if (cli->n_pos == 0)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "give the certificate file: certbind add cert FILE [key=FILE] "
                          "[password-file=FILE] [link=yes]");
    if (cli->n_pos > 1 && key != NULL)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "key= is the key of one certificate; to add several at once give "
                          "files that each hold a certificate and its key (PEM or PKCS#12)");
    if (link && (key == NULL || pwfile != NULL))
        return cb_err_set(&cli->err, CB_EINVAL,
                          "link=yes keeps a PEM certificate and its unencrypted key where they "
                          "are: give both files, certbind add cert FILE key=FILE link=yes");
    for (int i = 0; i < cli->n_pos; i++) {
        if ((ret = add_one(cli, i, link, &st, thumbs[i], &existed)) != 0)
            goto out_rollback;
        added += !existed;
        if (cli->batch != NULL && existed)
            cli->batch->certs_present++;
        else if (cli->batch != NULL) {
            struct cb_cli_batch *b = cli->batch;
            b->certs_added++;
            memcpy(b->written[b->n_written++ % CB_CLI_MAX_POS], thumbs[i], CB_THUMB_LEN + 1);
        }
    }
    /* Nothing new: no commit, so no new generation for serve to read. */
    if (added > 0 && (ret = cb_store_commit(st, &cli->err)) != 0) /* the files go too */
        goto out_rollback;
    for (int i = 0; cb_cli_verbose(cli) && i < cli->n_pos; i++)
        printf("%s\n", thumbs[i]);
out_rollback:
    if (st != NULL)
        cb_store_rollback(st);
    cb_cli_close_store(cli, st);
    return ret;
}

struct show_ctx {
    struct cb_cli *cli;
    struct cb_store *st;
    struct cb_cli_json_list list; /* --json: begun with the first certificate */
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
    if (sc->cli->json) {
        json_t *names = json_array(), *binds = json_array();
        for (size_t i = 0; i < row->info.n_names; i++)
            json_array_append_new(names, json_string(row->info.names[i]));
        for (size_t i = 0; i < keys.n; i++)
            json_array_append_new(binds, json_string(keys.keys[i]));
        cb_cli_time(row->info.not_before, nb, sizeof(nb));
        cb_cli_time(row->info.not_after, na, sizeof(na));
        if (sc->count == 1)
            cb_cli_json_list_begin(&sc->list, "certs");
        cb_cli_json_list_add(&sc->list, json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:o}",
                                                  "thumbprint", row->info.thumbprint, "sha256",
                                                  row->info.sha256, "subject", row->info.subject,
                                                  "names", names, "not_before", nb, "not_after", na,
                                                  "key_type", row->info.key_type, "key_path",
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
    /* Printed as the store is walked: a failure half-way leaves the list unfinished (and the
     * error on stderr, exit status 1). */
    if (ret == 0 && cli->json) {
        if (sc.count == 0)
            cb_cli_json_list_begin(&sc.list, "certs");
        cb_cli_json_list_end(&sc.list);
    }
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
    /* Files go only after the commit (a crash before it leaves the certificate whole), and
     * only those inside the state folder: a linked certificate's files are the user's. */
    if ((ret = cb_store_cert_delete(st, thumb, &cli->err)) != 0 ||
        (ret = cb_store_unlink_after_commit(st, row.cert_path, &cli->err)) != 0 ||
        (ret = cb_store_unlink_after_commit(st, row.key_path, &cli->err)) != 0 ||
        (ret = cb_store_commit(st, &cli->err)) != 0)
        goto out_free_keys;
    for (size_t i = 0; i < keys.n; i++)
        fprintf(stderr,
                "certbind: warning: binding %s now has no certificate; give it one with "
                "'certbind update sslcert %s certhash=…'\n",
                keys.keys[i], keys.keys[i]);
    if (cb_cli_verbose(cli))
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
