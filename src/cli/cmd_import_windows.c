/*
 * cmd_import_windows.c: `import netsh FILE` and `import iis FILE` — moving from Windows.
 */
#include "cli/cli.h"
#include "migrate/migrate.h"
#include "tls/clientca.h"
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#define CB_IMPORT_MAX (64 * 1024 * 1024)

/* The binding as the certbind command that creates it. */
static void command_text(const struct cb_binding *b, char *buf, size_t size)
{
    char key[CB_KEY_TEXT_MAX];
    size_t n;

    cb_key_format(&b->key, key, sizeof(key));
    n = (size_t)snprintf(buf, size, "certbind add sslcert %s", key);
    if (b->key.kind == CB_KEY_CCS)
        n += (size_t)snprintf(buf + n, size - n, " ccspath=%s", b->ccspath[0] ? b->ccspath : "?");
    else
        n +=
            (size_t)snprintf(buf + n, size - n, " certhash=%s", b->certhash[0] ? b->certhash : "?");
    if (b->appid[0] && n < size)
        n += (size_t)snprintf(buf + n, size - n, " appid=%s", b->appid);
    if (b->backend[0] && n < size)
        n += (size_t)snprintf(buf + n, size - n, " backend=%s", b->backend);
    if (b->clientca[0] && n < size)
        n += (size_t)snprintf(buf + n, size - n, " clientca=%s", b->clientca);
    for (uint32_t bit = 1; bit <= CB_OPT_REJECT && n < size; bit <<= 1)
        if (b->flags & bit)
            n += (size_t)snprintf(buf + n, size - n, " %s=enable", cb_opt_flag_name(bit));
}

enum status { ST_ADD, ST_EXISTS, ST_NO_CERT };

static const char *status_text(enum status s)
{
    return s == ST_ADD ? "add" : s == ST_EXISTS ? "exists" : "missing-certificate";
}

static json_t *iplisten_json(const struct cb_import *imp)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < imp->n_iplisten; i++)
        json_array_append_new(arr, json_string(imp->iplisten[i].addr));
    return arr;
}

/*
 * The IP listen list is node-local (design section 8): never stored, it becomes serve's
 * --iplisten flags, printed for the administrator to put in the service's command line.
 * Text mode prints one line; --json an object {"preview", "bindings": [], "iplisten": […]}
 * when the file held no bindings (else the import's object carries "iplisten").
 */
static void print_iplisten(struct cb_cli *cli, const struct cb_import *imp, bool preview)
{
    if (cli->json) {
        cb_cli_print_json(json_pack("{s:b, s:[], s:o}", "preview", preview, "bindings", "iplisten",
                                    iplisten_json(imp)));
        return;
    }
    if (imp->n_iplisten == 0) {
        printf("IP listen list: empty (HTTP.sys listens on every address): serve needs no "
               "--iplisten.\n");
        return;
    }
    printf("IP listen list (node-local, not stored): certbind serve");
    for (size_t i = 0; i < imp->n_iplisten; i++)
        printf(" --iplisten %s", imp->iplisten[i].addr);
    printf("\n");
}

/*
 * Client certificates on Windows: a binding with a Certificate Trust List ("Ctl
 * Identifier") accepted client certificates from that list's CAs only. netsh names the
 * list, not its CAs: with clientca=FILE (the list's CAs exported as PEM) such bindings get
 * it; without, each is named with what to do. A revocation check is not carried over.
 */
static int client_cert_notes(struct cb_cli *cli, struct cb_import *imp)
{
    const char *clientca = cb_cli_opt(cli, "clientca");
    struct cb_tls_ca *ca = NULL;
    int ret;

    for (size_t i = 0; i < imp->n; i++) {
        struct cb_import_entry *e = &imp->v[i];
        char key[CB_KEY_TEXT_MAX];
        unsigned fields = 0;
        cb_key_format(&e->b.key, key, sizeof(key));
        if (e->ctl[0] && clientca != NULL) {
            if (ca == NULL && (ret = cb_tls_ca_load(clientca, &ca, NULL, &cli->err)) != 0)
                return ret == CB_ENOMEM ? ret : (cli->err.code = CB_EBADFILE);
            if (cb_binding_set_option(&e->b, "clientca", clientca, &fields, &cli->err) != 0) {
                cb_tls_ca_free(ca);
                return CB_EINVAL;
            }
        } else if (e->ctl[0]) {
            fprintf(stderr,
                    "certbind: warning: %s:%d: %s accepted client certificates from the CAs of "
                    "trust list '%s' only; export them to a PEM file and add clientca=FILE to "
                    "the binding (or give clientca=FILE to the import); until then a client "
                    "certificate is %s\n",
                    cli->pos[0], e->line, key, e->ctl,
                    e->b.flags & CB_OPT_CLIENTCERTNEGOTIATION ? "asked for and not verified"
                                                              : "not asked for");
        }
        /* Verified here (clientca): say what Windows checked that certbind does not. */
        if (e->revocation_check && e->b.clientca[0])
            fprintf(stderr,
                    "certbind: warning: %s:%d: %s: Windows checked client certificates for "
                    "revocation; certbind verifies them against clientca=%s but does not check "
                    "revocation\n",
                    cli->pos[0], e->line, key, e->b.clientca);
    }
    cb_tls_ca_free(ca);
    return 0;
}

static int import_netsh(struct cb_cli *cli, const char *text, size_t len, bool preview)
{
    const char *ccspath = cb_cli_opt(cli, "ccspath"), *backend = cb_cli_opt(cli, "backend");
    struct cb_import imp;
    struct cb_store *st = NULL;
    enum status *status = NULL;
    size_t added = 0, missing = 0, exists = 0;
    int ret;

    if ((ret = cb_netsh_parse(text, len, &imp, &cli->err)) != 0)
        return ret;
    for (size_t i = 0; i < imp.n; i++) {
        struct cb_binding *b = &imp.v[i].b;
        unsigned fields = 0;
        if (b->key.kind == CB_KEY_CCS) {
            if (ccspath == NULL) {
                ret = cb_err_set(&cli->err, CB_EINVAL,
                                 "line %d: a central certificate store binding; netsh does not "
                                 "print its folder: give it with ccspath=/DIR",
                                 imp.v[i].line);
                goto out_clear;
            }
            if (cb_binding_set_option(b, "ccspath", ccspath, &fields, &cli->err) != 0) {
                ret = CB_EINVAL;
                goto out_clear;
            }
        }
        if (backend != NULL && b->backend[0] == '\0' &&
            cb_binding_set_option(b, "backend", backend, &fields, &cli->err) != 0) {
            ret = CB_EINVAL;
            goto out_clear;
        }
    }
    if ((ret = client_cert_notes(cli, &imp)) != 0)
        goto out_clear;
    for (size_t i = 0; i < imp.n_unknown; i++) {
        const struct cb_import_unknown *u = &imp.unknown[i];
        fprintf(stderr, "certbind: warning: %s:%d: unknown field '%s' skipped", cli->pos[0],
                u->line, u->name);
        if (u->count > 1)
            fprintf(stderr, " (here and on %d more line%s)", u->count - 1,
                    u->count == 2 ? "" : "s");
        fputs("; certbind does not carry it over\n", stderr);
    }
    if (imp.unknown_more > 0)
        fprintf(stderr, "certbind: warning: %s: %d more line%s with other unknown fields skipped\n",
                cli->pos[0], imp.unknown_more, imp.unknown_more == 1 ? "" : "s");
    if (imp.n == 0) {
        /* `show iplisten` output alone: nothing for the store. */
        print_iplisten(cli, &imp, preview);
        goto out_clear;
    }
    if ((status = calloc(imp.n, sizeof(*status))) == NULL) {
        ret = cb_err_set(&cli->err, CB_ENOMEM, "out of memory");
        goto out_clear;
    }
    if ((ret = cb_cli_open_store(cli, CB_STORE_WRITE, &st)) != 0)
        goto out_clear;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    for (size_t i = 0; i < imp.n; i++) {
        struct cb_binding *b = &imp.v[i].b, cur;
        struct cb_cert_row row;
        if (cb_store_binding_get(st, &b->key, &cur, NULL) == 0) {
            status[i] = ST_EXISTS;
            exists++;
            continue;
        }
        if (b->key.kind != CB_KEY_CCS && cb_store_cert_get(st, b->certhash, &row, NULL) != 0) {
            status[i] = ST_NO_CERT;
            missing++;
            continue;
        }
        if (b->key.kind != CB_KEY_CCS)
            cb_cert_row_clear(&row);
        status[i] = ST_ADD;
        if (!preview && (ret = cb_store_binding_insert(st, b, &cli->err)) != 0)
            goto out_rollback;
        added++;
    }
    if (!preview && added > 0 && (ret = cb_store_commit(st, &cli->err)) != 0)
        goto out_rollback;
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < imp.n; i++) {
            char key[CB_KEY_TEXT_MAX];
            cb_key_format(&imp.v[i].b.key, key, sizeof(key));
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:i}", "binding", key, "certhash",
                                                 imp.v[i].b.certhash, "status",
                                                 status_text(status[i]), "line", imp.v[i].line));
        }
        json_t *obj = json_pack("{s:b, s:o}", "preview", preview, "bindings", arr);
        if (imp.iplisten_seen)
            json_object_set_new(obj, "iplisten", iplisten_json(&imp));
        cb_cli_print_json(obj);
    } else {
        for (size_t i = 0; i < imp.n; i++) {
            char cmd[1024];
            command_text(&imp.v[i].b, cmd, sizeof(cmd));
            printf("%-20s %s\n",
                   status[i] == ST_ADD      ? (preview ? "would add:" : "added:")
                   : status[i] == ST_EXISTS ? "exists, kept:"
                                            : "no certificate:",
                   cmd);
        }
        printf("%s%zu binding%s, %zu already there, %zu waiting for their certificate.\n",
               preview ? "Preview: would add " : "Added ", added, added == 1 ? "" : "s", exists,
               missing);
        if (imp.iplisten_seen)
            print_iplisten(cli, &imp, preview);
    }
    if (missing > 0) {
        char list[600] = "";
        for (size_t i = 0, shown = 0; i < imp.n && shown < 8; i++) {
            if (status[i] != ST_NO_CERT)
                continue;
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = status[j] == ST_NO_CERT &&
                      strcmp(imp.v[j].b.certhash, imp.v[i].b.certhash) == 0;
            if (dup)
                continue;
            strncat(list, shown++ ? ", " : "", sizeof(list) - strlen(list) - 1);
            strncat(list, imp.v[i].b.certhash, sizeof(list) - strlen(list) - 1);
        }
        ret = cb_err_set(&cli->err, CB_ENOENT,
                         "%zu binding%s not %s: certificates not in the store: %s; export them "
                         "from Windows (.pfx), import them with 'certbind add cert FILE "
                         "password-file=…', and run the import again",
                         missing, missing == 1 ? "" : "s", preview ? "addable" : "added", list);
    }
out_rollback:
    cb_store_rollback(st);
out_close:
    cb_cli_close_store(cli, st);
out_clear:
    free(status);
    cb_import_clear(&imp);
    return ret;
}

static int import_iis(struct cb_cli *cli, const char *text, size_t len, bool preview)
{
    struct cb_import imp;
    struct cb_store *st = NULL;
    int ret;

    if (!preview)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "applicationHost.config holds no certificate hashes (they live in "
                          "HTTP.sys): run 'certbind import iis FILE preview=yes' to see the "
                          "bindings, and 'certbind import netsh' on the output of 'netsh http "
                          "show sslcert' to create them");
    if ((ret = cb_iis_parse(text, len, &imp, &cli->err)) != 0)
        return ret;
    /* The store, when there is one, tells which bindings exist already. */
    if (cb_cli_open_store(cli, CB_STORE_READ, &st) != 0)
        st = NULL;
    json_t *arr = cli->json ? json_array() : NULL;
    for (size_t i = 0; i < imp.n; i++) {
        struct cb_binding cur;
        char key[CB_KEY_TEXT_MAX], cmd[1024];
        bool exists = st != NULL && cb_store_binding_get(st, &imp.v[i].b.key, &cur, NULL) == 0;
        cb_key_format(&imp.v[i].b.key, key, sizeof(key));
        if (arr != NULL) {
            json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:s}", "binding", key, "site",
                                                 imp.v[i].site, "line", imp.v[i].line, "status",
                                                 exists ? "exists" : "add"));
            continue;
        }
        command_text(&imp.v[i].b, cmd, sizeof(cmd));
        printf("%-14s %s   # site \"%s\", line %d\n", exists ? "exists:" : "would add:", cmd,
               imp.v[i].site, imp.v[i].line);
    }
    if (arr != NULL)
        cb_cli_print_json(json_pack("{s:b, s:o}", "preview", true, "bindings", arr));
    else
        printf("Preview: %zu https binding%s; certhash=? comes from 'netsh http show sslcert'.\n",
               imp.n, imp.n == 1 ? "" : "s");
    cb_cli_close_store(cli, st);
    cb_import_clear(&imp);
    return 0;
}

int cb_cmd_import(struct cb_cli *cli)
{
    static const char *const allowed[] = {"preview", "ccspath", "backend", "clientca", NULL};
    char *text = NULL;
    size_t len = 0;
    bool preview;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 1)) != 0 ||
        (ret = cb_cli_yesno(cli, "preview", &preview)) != 0)
        return ret;
    if (cli->object == NULL || cli->n_pos != 1 ||
        (strcmp(cli->object, "netsh") != 0 && strcmp(cli->object, "iis") != 0))
        return cb_err_set(&cli->err, CB_EINVAL,
                          "use certbind import netsh FILE [preview=yes] [ccspath=DIR] "
                          "[backend=HOST:PORT] [clientca=FILE], or certbind import iis FILE "
                          "preview=yes");
    if ((ret = cb_read_file(cli->pos[0], CB_IMPORT_MAX, &text, &len, &cli->err)) != 0)
        return ret;
    if (strcmp(cli->object, "netsh") == 0)
        ret = import_netsh(cli, text, len, preview);
    else
        ret = import_iis(cli, text, len, preview);
    if (ret == CB_EBADFILE) {
        /* Prefix the file name to the parser's "line N: …". */
        char msg[sizeof(cli->err.msg)];
        snprintf(msg, sizeof(msg), "%s", cli->err.msg);
        cb_err_set(&cli->err, CB_EBADFILE, "%s: %s", cli->pos[0], msg);
    }
    free(text);
    return ret;
}
