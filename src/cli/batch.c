/*
 * batch.c: `certbind -f FILE` (design section 10): every line a command, all of them in
 * one store transaction. The commands are the ordinary ones (dispatch.c); inside a batch
 * they share its store (cb_cli_open_store), their own begin/commit do nothing
 * (cb_store_batch_begin) and they print nothing but warnings; the first line that fails
 * rolls everything back and is reported as FILE:LINE.
 */
#include "cli/batch.h"
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* The name of standard input in messages, as compilers call it. */
static const char stdin_name[] = "<stdin>";

/* Runs one split line (words borrowed) as a command of batch b. */
static int run_line(struct cb_cli *cli, struct cb_cli_batch *b, char **words, int n,
                    struct cb_cli *lc)
{
    char *argv[CB_BATCH_WORDS_MAX + 1];
    int ret;

    for (int i = 0; i < n; i++)
        if (words[i][0] == '-' && strchr(words[i], '=') == NULL)
            return cb_err_set(&lc->err, CB_EINVAL,
                              "'%s': flags are not taken inside a batch (give --state and "
                              "--json on the command line, and -f only there)",
                              words[i]);
    argv[0] = "certbind";
    memcpy(argv + 1, words, (size_t)n * sizeof(*argv));
    memset(lc, 0, sizeof(*lc));
    lc->batch_line = true;
    if ((ret = cb_cli_parse(lc, n + 1, argv)) != 0)
        return ret;
    memcpy(lc->state_dir, cli->state_dir, sizeof(lc->state_dir));
    lc->store_url = cli->store_url;
    lc->store_key = cli->store_key;
    lc->batch = b;
    if ((ret = cb_cli_run(lc)) != 0)
        return ret;
    b->commands++;
    if (strcmp(lc->verb, "delete") == 0 && strcmp(lc->object, "cert") == 0)
        b->certs_deleted++;
    else if (strcmp(lc->object, "sslcert") == 0)
        ++*(lc->verb[0] == 'a'   ? &b->bindings_added
            : lc->verb[0] == 'u' ? &b->bindings_updated
                                 : &b->bindings_deleted);
    return 0;
}

static void print_summary(const struct cb_cli *cli, const struct cb_cli_batch *b, const char *name)
{
    if (cli->json) {
        cb_cli_print_json(json_pack(
            "{s:s, s:I, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I}}", "file", name, "commands",
            (json_int_t)b->commands, "certs", "added", (json_int_t)b->certs_added, "present",
            (json_int_t)b->certs_present, "deleted", (json_int_t)b->certs_deleted, "bindings",
            "added", (json_int_t)b->bindings_added, "updated", (json_int_t)b->bindings_updated,
            "deleted", (json_int_t)b->bindings_deleted));
        return;
    }
    printf("Ran %zu command%s from %s: certificates %zu added", b->commands,
           b->commands == 1 ? "" : "s", name, b->certs_added);
    if (b->certs_present > 0)
        printf(" (%zu already in the store)", b->certs_present);
    printf(", %zu deleted; bindings %zu added, %zu updated, %zu deleted.\n", b->certs_deleted,
           b->bindings_added, b->bindings_updated, b->bindings_deleted);
}

int cb_cli_batch(struct cb_cli *cli)
{
    const bool is_stdin = strcmp(cli->batch_file, "-") == 0;
    const char *name = is_stdin ? stdin_name : cli->batch_file;
    struct cb_cli_batch b = {0};
    struct cb_batch_reader *reader = NULL;
    struct cb_err commit_err;
    struct cb_cli *lc = NULL;
    char *split = NULL, *words[CB_BATCH_WORDS_MAX];
    FILE *f = is_stdin ? stdin : fopen(cli->batch_file, "r");
    int ret = 0;

    if (f == NULL)
        return cb_err_set(&cli->err, errno == ENOENT ? CB_EINVAL : CB_EIO,
                          "cannot read the batch file %s: %s", name, strerror(errno));
    split = malloc(CB_BATCH_LINE_MAX + 1);
    lc = malloc(sizeof(*lc)); /* one command line's state, reused for every line */
    if (split == NULL || lc == NULL || cb_cert_keycache_new(&b.keys, &cli->err) != 0 ||
        cb_batch_reader_new(f, &reader, &cli->err) != 0) {
        ret = cb_err_set(&cli->err, CB_ENOMEM, "out of memory");
        goto out_free;
    }
    for (;;) {
        struct cb_batch_line *l = cb_batch_reader_next(reader);
        unsigned long lineno = l->lineno;
        int n;
        b.line = lineno;
        if (b.st != NULL)
            cb_store_batch_line(b.st, lineno);
        ret = l->read_ret;
        if (ret == CB_ENOENT) {
            ret = 0;
            break;
        }
        if (ret == CB_EIO) {
            ret = cb_err_set(&cli->err, CB_EIO, "%s:%lu: cannot read: %s", name, lineno,
                             strerror(l->read_errno));
            goto out_rollback;
        }
        if (ret == CB_EINVAL) {
            ret = cb_err_set(&cli->err, CB_EINVAL,
                             "%s:%lu: the line is longer than %d bytes; one command per line", name,
                             lineno, CB_BATCH_LINE_MAX);
            goto out_rollback;
        }
        b.prepared = l->files;
        b.n_prepared = l->n_files;
        if ((ret = cb_batch_split(l->text, l->len, split, words, CB_BATCH_WORDS_MAX, &n,
                                  &lc->err)) == 0 &&
            n > 0)
            ret = run_line(cli, &b, words, n, lc);
        b.prepared = NULL;
        b.n_prepared = 0;
        if (ret != 0) {
            /* A file an earlier line queued that could not be written is the first error:
             * the files still on their way are waited for to know. */
            struct cb_err werr;
            int wret = b.st != NULL ? cb_store_batch_wait_files(b.st, &werr) : 0;
            unsigned long at = b.st != NULL ? cb_store_batch_failed_line(b.st) : 0;
            if (at != 0 && at < lineno && wret != 0)
                cb_err_set(&cli->err, wret, "%s:%lu: %s", name, at, werr.msg);
            else
                cb_err_set(&cli->err, ret, "%s:%lu: %s", name, at ? at : lineno,
                           lc->err.msg[0] ? lc->err.msg : cb_strerror(ret));
            goto out_rollback;
        }
    }
    if (b.st != NULL && (ret = cb_store_batch_commit(b.st, &commit_err)) != 0) {
        /* A file that could not be written is the line's that added it. */
        unsigned long at = cb_store_batch_failed_line(b.st);
        if (at != 0)
            cb_err_set(&cli->err, ret, "%s:%lu: %s", name, at, commit_err.msg);
        else
            cli->err = commit_err;
        goto out_close;
    }
    print_summary(cli, &b, name);
    goto out_close;
out_rollback:
    if (b.st != NULL)
        cb_store_batch_rollback(b.st);
out_close:
    cb_cli_close_batch_store(&b);
out_free:
    cb_batch_reader_free(reader);
    cb_cert_keycache_free(b.keys);
    free(lc);
    free(split);
    if (!is_stdin)
        fclose(f);
    return ret;
}
