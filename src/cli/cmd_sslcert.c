/* cmd_sslcert.c: `add|update|delete|show sslcert`, the binding commands. */
#include "check/check.h"
#include "check/dual.h"
#include "cli/cli.h"
#include "store/acme.h"
#include "tls/clientca.h"

#include <limits.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#define BINDING_OPTIONS                                                                            \
    "certhash", "appid", "backend", "proxyprotocol", "ccspath", "clientca", "disablehttp2",        \
        "disabletls12", "disabletls13", "disablelegacytls", "clientcertnegotiation",               \
        "enablesessionticket", "disableocspstapling", "reject", "acme"

static bool is_key_name(const char *name)
{
    return strcmp(name, "ipport") == 0 || strcmp(name, "hostnameport") == 0 ||
           strcmp(name, "ccs") == 0;
}

/* Reads the one binding key among the options. */
static int cli_key(struct cb_cli *cli, struct cb_binding_key *key)
{
    const struct cb_cli_opt *found = NULL;

    for (int i = 0; i < cli->n_opts; i++) {
        if (!is_key_name(cli->opts[i].name))
            continue;
        if (found != NULL)
            return cb_err_set(&cli->err, CB_EINVAL,
                              "give one binding key, not both %s= and %s=", found->name,
                              cli->opts[i].name);
        found = &cli->opts[i];
    }
    if (found == NULL)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "give the binding key: ipport=ADDR:PORT, hostnameport=NAME:PORT or "
                          "ccs=PORT");
    return cb_key_parse(found->name, found->value, key, &cli->err);
}

/* clientca=FILE as stored: a relative path made absolute from the current folder (serve
 * runs elsewhere), symbolic links kept (a link that follows the CA's renewals stays one). */
static int clientca_value(struct cb_cli *cli, const char *value, char *out, size_t size)
{
    char cwd[PATH_MAX];

    if (value[0] == '/' || value[0] == '\0' || strcmp(value, "none") == 0) {
        snprintf(out, size, "%s", value);
        return 0;
    }
    if (getcwd(cwd, sizeof(cwd)) == NULL ||
        (size_t)snprintf(out, size, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, value) >= size)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "clientca=%.200s: give the absolute path of the CA file", value);
    return 0;
}

/* Applies every non-key option to b; *fields says which were given. */
static int cli_options(struct cb_cli *cli, struct cb_binding *b, unsigned *fields)
{
    for (int i = 0; i < cli->n_opts; i++) {
        const struct cb_cli_opt *o = &cli->opts[i];
        const char *value = o->value;
        char path[CB_PATH_MAX + 2];
        if (is_key_name(o->name) || strcmp(o->name, "force") == 0)
            continue;
        if (strcmp(o->name, "clientca") == 0) {
            if (clientca_value(cli, value, path, sizeof(path)) != 0)
                return CB_EINVAL;
            value = path;
        }
        if (cb_binding_set_option(b, o->name, value, fields, &cli->err) != 0)
            return CB_EINVAL;
    }
    return 0;
}

/*
 * A client CA file given on the command line must be usable now: it exists, parses and
 * holds at least one CA certificate (exit 2 otherwise, nothing stored). Whether the service
 * user can read it is `check`'s finding clientca-unusable (the file may be put in place for
 * it later).
 */
static int clientca_options(struct cb_cli *cli, const struct cb_binding *given, unsigned fields)
{
    struct cb_tls_ca *ca = NULL;
    size_t ignored = 0;
    int ret;

    if (!(fields & CB_F_CLIENTCA) || given->clientca[0] == '\0')
        return 0;
    if ((ret = cb_tls_ca_load(given->clientca, &ca, &ignored, &cli->err)) != 0) {
        if (ret != CB_ENOMEM)
            cli->err.code = ret = CB_EBADFILE; /* an input file: malformed, exit 2 */
        return ret;
    }
    if (ignored > 0)
        fprintf(stderr,
                "certbind: note: clientca=%s: %zu certificate%s in it %s not a CA and %s not "
                "trusted; %zu CA certificate%s %s\n",
                given->clientca, ignored, ignored == 1 ? "" : "s", ignored == 1 ? "is" : "are",
                ignored == 1 ? "is" : "are", cb_tls_ca_count(ca),
                cb_tls_ca_count(ca) == 1 ? "" : "s", cb_tls_ca_count(ca) == 1 ? "is" : "are");
    cb_tls_ca_free(ca);
    return 0;
}

/*
 * The ACME rules of a command line (design section 7): acme=enable with certhash= is
 * malformed (one or the other manages the certificate), and needs a hostnameport= key.
 */
static int acme_options(struct cb_cli *cli, const struct cb_binding *given, unsigned fields)
{
    char key[CB_KEY_TEXT_MAX];

    if (!(given->flags_set & given->flags & CB_OPT_ACME))
        return 0;
    cb_key_format(&given->key, key, sizeof(key));
    if (fields & CB_F_CERTHASH)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "%s: give either certhash= or acme=enable, not both: certhash= is a "
                          "certificate you manage, with acme=enable serve obtains and renews one",
                          key);
    return cb_binding_acme_key_ok(&given->key, &cli->err);
}

/* Notes what a managed binding still needs before serve can obtain its certificate. */
static void acme_notes(struct cb_store *st, const struct cb_binding *b)
{
    struct cb_acme_settings acct;

    if (!(b->flags & CB_OPT_ACME))
        return;
    if (cb_store_acme_settings_get(st, &acct, NULL) != 0)
        fprintf(stderr, "certbind: note: no ACME account is set yet; set it so serve can obtain "
                        "the certificate: certbind set acme directory=URL email=ADDRESS "
                        "agreetos=yes\n");
    else if (b->key.kind == CB_KEY_HOST_WILD && acct.dnshook[0] == '\0')
        fprintf(stderr, "certbind: note: a wildcard name is validated through DNS (DNS-01) only; "
                        "give the DNS hook: certbind set acme dnshook=PATH\n");
}

/* "CODE: KEY, KEY: MESSAGE": one finding of check on one line (its first bindings, then the
 * sentence `certbind check` prints for it). */
static void finding_text(const struct cb_finding *x, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "%s: ", x->code);
    for (size_t i = 0; i < x->n_bindings && i < 3 && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "", x->bindings[i]);
    if (x->n_bindings > 3 && n < size)
        n += (size_t)snprintf(buf + n, size - n, " and %zu more", x->n_bindings - 3);
    if (n < size)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", x->n_bindings ? ": " : "", x->message);
    if (n >= size && size > 4)
        memcpy(buf + size - 4, "...", 4); /* cut short: say so */
}

/* Whether thumb is in a ring of the batch (cb_cli_batch) holding n entries so far. */
static bool in_ring(const char (*ring)[CB_THUMB_LEN + 1], unsigned n, const char *thumb)
{
    for (unsigned i = 0; i < n && i < CB_CLI_MAX_POS; i++)
        if (strcmp(ring[i], thumb) == 0)
            return true;
    return false;
}

/*
 * Refuses binding b when check finds a problem it brings about (check's own finding, in
 * its words), unless force: then each finding is a warning. what: CB_CHECK_* of check.h.
 */
static int refuse_findings(struct cb_cli *cli, struct cb_store *st, const struct cb_binding *b,
                           unsigned what, bool force)
{
    static const char hint[] = "; add force=yes to bind it anyway";
    struct cb_findings f;
    char text[sizeof(cli->err.msg) - sizeof(hint) + 1];
    int ret;

    struct cb_cli_batch *bt = (what & CB_CHECK_CERT) ? cli->batch : NULL;
    bool written = bt != NULL && in_ring(bt->written, bt->n_written, b->certhash);
    if (bt != NULL && !written && b->certhash[0]) {
        /* Written by this batch longer ago than the ring reaches (all the certificates
         * first, then all the bindings): its key file is in the batch's file table. */
        char cert_path[CB_PATH_MAX + 1], key_path[CB_PATH_MAX + 1];
        cb_store_cert_paths(st, b->certhash, cert_path, key_path, sizeof(cert_path));
        written = cb_store_batch_wrote(st, key_path);
    }
    if (bt != NULL &&
        (in_ring(bt->tested, bt->n_tested, b->certhash) || (written && bt->written_key_tested)))
        what |= CB_CHECK_KEY_KNOWN;
    /* The key is read back for its test: the batch's files must be on disk by then. */
    if (bt != NULL && !(what & CB_CHECK_KEY_KNOWN) &&
        (ret = cb_store_batch_wait_files(st, &cli->err)) != 0)
        return ret;
    if ((ret = cb_check_binding(st, b, what, &f, &cli->err)) != 0)
        return ret;
    if (bt != NULL && b->certhash[0] && !(what & CB_CHECK_KEY_KNOWN) && f.n == 0) {
        memcpy(bt->tested[bt->n_tested++ % CB_CLI_MAX_POS], b->certhash, CB_THUMB_LEN + 1);
        bt->written_key_tested |= written;
    }
    for (size_t i = 0; i < f.n; i++) {
        finding_text(&f.v[i], text, sizeof(text));
        if (!force) {
            ret = cb_err_set(&cli->err, CB_EFAILED, "%s%s", text, hint);
            break;
        }
        fprintf(stderr, "certbind: warning: %s\n", text);
    }
    cb_findings_clear(&f);
    return ret;
}

int cb_cmd_add_sslcert(struct cb_cli *cli)
{
    static const char *const allowed[] = {"ipport",        "hostnameport", "ccs",
                                          BINDING_OPTIONS, "force",        NULL};
    struct cb_store *st = NULL;
    struct cb_binding b;
    char key[CB_KEY_TEXT_MAX];
    unsigned fields = 0;
    bool force;
    int ret;

    cb_binding_init(&b);
    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0 ||
        (ret = cb_cli_yesno(cli, "force", &force)) != 0 || (ret = cli_key(cli, &b.key)) != 0 ||
        (ret = cli_options(cli, &b, &fields)) != 0 || (ret = acme_options(cli, &b, fields)) != 0 ||
        (ret = cb_binding_validate(&b, &cli->err)) != 0 ||
        (ret = clientca_options(cli, &b, fields)) != 0)
        return ret;
    cb_key_format(&b.key, key, sizeof(key));
    if ((ret = cb_cli_open_store(cli, CB_STORE_WRITE, &st)) != 0)
        return ret;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    /* Insert first: "already exists" must not come after a force=yes warning. */
    if ((ret = cb_dual_order(st, &b, &cli->err)) != 0 ||
        (ret = cb_store_binding_insert(st, &b, &cli->err)) != 0 ||
        (ret = refuse_findings(cli, st, &b, CB_CHECK_CERT | CB_CHECK_SHADOW, force)) != 0 ||
        (ret = cb_store_commit(st, &cli->err)) != 0)
        goto out_rollback;
    if (!cb_cli_verbose(cli))
        goto out_rollback; /* a batch prints one summary, and no notes for every line */
    printf("Added binding %s.\n", key);
    acme_notes(st, &b);
    if (b.backend[0] && !(b.flags_set & CB_OPT_DISABLEHTTP2))
        fprintf(stderr,
                "certbind: note: clients are offered h2 (HTTP/2), as HTTP.sys does; if %s "
                "speaks only HTTP/1.1, add disablehttp2=enable\n",
                b.backend);
out_rollback:
    cb_store_rollback(st);
out_close:
    cb_cli_close_store(cli, st);
    return ret;
}

int cb_cmd_update_sslcert(struct cb_cli *cli)
{
    static const char *const allowed[] = {"ipport",        "hostnameport", "ccs",
                                          BINDING_OPTIONS, "force",        NULL};
    struct cb_store *st = NULL;
    struct cb_binding change, current;
    char key[CB_KEY_TEXT_MAX];
    unsigned fields = 0;
    bool force;
    int ret;

    cb_binding_init(&change);
    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0 ||
        (ret = cb_cli_yesno(cli, "force", &force)) != 0 || (ret = cli_key(cli, &change.key)) != 0 ||
        (ret = cli_options(cli, &change, &fields)) != 0 ||
        (ret = acme_options(cli, &change, fields)) != 0 ||
        (ret = clientca_options(cli, &change, fields)) != 0)
        return ret;
    cb_key_format(&change.key, key, sizeof(key));
    /* A certificate given by hand makes a managed binding manual again. */
    if ((fields & CB_F_CERTHASH) && !(change.flags_set & CB_OPT_ACME)) {
        change.flags &= ~(uint32_t)CB_OPT_ACME;
        change.flags_set |= CB_OPT_ACME;
        fields |= CB_F_FLAGS;
    }
    if (fields == 0)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "nothing to change; give options such as certhash=… or backend=…");
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &st)) != 0)
        return ret == CB_ENOENT ? cb_err_set(&cli->err, CB_ENOENT,
                                             "no binding %s (the store is empty); create it with "
                                             "'certbind add sslcert'",
                                             key)
                                : ret;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    if ((ret = cb_store_binding_get(st, &change.key, &current, &cli->err)) != 0)
        goto out_rollback;
    cb_binding_merge(&current, &change, fields);
    if (!(current.flags & CB_OPT_ACME) && current.certhash[0] == '\0' &&
        current.key.kind != CB_KEY_CCS) {
        ret = cb_err_set(&cli->err, CB_EINVAL,
                         "%s has no certificate yet (serve has not obtained one); to manage it "
                         "by hand give one: certbind update sslcert %s certhash=THUMBPRINT",
                         key, key);
        goto out_rollback;
    }
    if ((ret = cb_binding_validate(&current, &cli->err)) != 0 ||
        (ret = cb_dual_order(st, &current, &cli->err)) != 0)
        goto out_rollback;
    if ((fields & CB_F_CERTHASH) &&
        (ret = refuse_findings(cli, st, &current, CB_CHECK_CERT, force)) != 0)
        goto out_rollback;
    if ((ret = cb_store_binding_update(st, &current, &cli->err)) != 0 ||
        (ret = cb_store_commit(st, &cli->err)) != 0)
        goto out_rollback;
    if (cb_cli_verbose(cli)) {
        printf("Updated binding %s.\n", key);
        acme_notes(st, &current);
    }
out_rollback:
    cb_store_rollback(st);
out_close:
    cb_cli_close_store(cli, st);
    return ret;
}

int cb_cmd_delete_sslcert(struct cb_cli *cli)
{
    static const char *const allowed[] = {"ipport", "hostnameport", "ccs", NULL};
    struct cb_store *st = NULL;
    struct cb_binding_key k;
    char key[CB_KEY_TEXT_MAX];
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0 || (ret = cli_key(cli, &k)) != 0)
        return ret;
    cb_key_format(&k, key, sizeof(key));
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &st)) != 0)
        return ret == CB_ENOENT
                   ? cb_err_set(&cli->err, CB_ENOENT, "no binding %s (the store is empty)", key)
                   : ret;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    if ((ret = cb_store_binding_delete(st, &k, &cli->err)) != 0 ||
        (ret = cb_store_commit(st, &cli->err)) != 0)
        goto out_rollback;
    if (cb_cli_verbose(cli))
        printf("Deleted binding %s.\n", key);
out_rollback:
    cb_store_rollback(st);
out_close:
    cb_cli_close_store(cli, st);
    return ret;
}

static json_t *binding_json(const struct cb_binding *b)
{
    char key[CB_KEY_TEXT_MAX], hashes[CB_CERTHASH_TEXT_MAX + 1];
    json_t *o;

    cb_key_format(&b->key, key, sizeof(key));
    o = json_pack("{s:s}", "key", key);
    /* "T1" or "T1,T2": the value certhash= takes, so the output can be given back. */
    cb_binding_certhash_text(b, hashes, sizeof(hashes));
    json_object_set_new(o, "certhash", b->certhash[0] ? json_string(hashes) : json_null());
    if (cb_binding_is_dual(b)) /* and, for two, each: the contract's shape is kept otherwise */
        json_object_set_new(o, "certhashes", json_pack("[s,s]", b->certhash, b->certhash2));
    json_object_set_new(o, "appid", b->appid[0] ? json_string(b->appid) : json_null());
    json_object_set_new(o, "backend", b->backend[0] ? json_string(b->backend) : json_null());
    if (b->key.kind == CB_KEY_CCS)
        json_object_set_new(o, "ccspath", json_string(b->ccspath));
    json_object_set_new(o, "clientca", b->clientca[0] ? json_string(b->clientca) : json_null());
    json_object_set_new(o, "proxyprotocol", json_string(cb_proxy_name(b->proxy)));
    for (uint32_t bit = 1; bit & CB_OPT_ALL; bit <<= 1)
        json_object_set_new(o, cb_opt_flag_name(bit),
                            json_string(b->flags & bit ? "enable" : "disable"));
    return o;
}

struct show_ctx {
    bool json;
    struct cb_cli_json_list list; /* begun with the first binding */
    size_t count;
};

static int show_one(const struct cb_binding *b, void *arg)
{
    struct show_ctx *sc = arg;
    char key[CB_KEY_TEXT_MAX], hashes[CB_CERTHASH_TEXT_MAX + 1];

    if (sc->json) {
        if (sc->count++ == 0)
            cb_cli_json_list_begin(&sc->list, "bindings");
        cb_cli_json_list_add(&sc->list, binding_json(b));
        return 0;
    }
    sc->count++;
    cb_key_format(&b->key, key, sizeof(key));
    printf("%s%s\n", sc->count > 1 ? "\n" : "", key);
    if (b->key.kind == CB_KEY_CCS)
        printf("    %-22s: %s\n", "ccspath", b->ccspath);
    else if (cb_binding_is_dual(b))
        printf("    %-22s: %s\n", "certhash",
               cb_binding_certhash_text(b, hashes, sizeof(hashes)) > 0 ? hashes : "");
    else
        printf("    %-22s: %s\n", "certhash",
               b->certhash[0] ? b->certhash : "(none yet: serve obtains it through ACME)");
    printf("    %-22s: %s\n", "backend", b->backend[0] ? b->backend : "(none: answers 503)");
    printf("    %-22s: %s\n", "proxyprotocol", cb_proxy_name(b->proxy));
    printf("    %-22s: %s\n", "clientca",
           b->clientca[0] ? b->clientca
                          : (b->flags & CB_OPT_CLIENTCERTNEGOTIATION
                                 ? "(none: a client certificate is asked for, not verified)"
                                 : "(none)"));
    if (b->appid[0])
        printf("    %-22s: %s\n", "appid", b->appid);
    for (uint32_t bit = 1; bit & CB_OPT_ALL; bit <<= 1)
        printf("    %-22s: %s\n", cb_opt_flag_name(bit), b->flags & bit ? "enable" : "disable");
    return 0;
}

int cb_cmd_show_sslcert(struct cb_cli *cli)
{
    static const char *const allowed[] = {"ipport", "hostnameport", "ccs", NULL};
    struct show_ctx sc = {.json = cli->json};
    struct cb_store *st = NULL;
    struct cb_binding_key k;
    struct cb_binding b;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0)
        return ret;
    bool one = cli->n_opts > 0;
    if (one && (ret = cli_key(cli, &k)) != 0)
        return ret;
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &st)) != 0) {
        if (ret != CB_ENOENT)
            return ret;
        if (one) {
            char key[CB_KEY_TEXT_MAX];
            cb_key_format(&k, key, sizeof(key));
            return cb_err_set(&cli->err, CB_ENOENT, "no binding %s (the store is empty)", key);
        }
        if (cli->json)
            cb_cli_print_json(json_pack("{s:[]}", "bindings"));
        else
            printf("No bindings. Add one with 'certbind add sslcert KEY certhash=…'.\n");
        return 0;
    }
    if (one) {
        if ((ret = cb_store_binding_get(st, &k, &b, &cli->err)) == 0)
            ret = show_one(&b, &sc);
    } else {
        ret = cb_store_binding_foreach(st, NULL, show_one, &sc, &cli->err);
        if (ret == 0 && sc.count == 0 && !cli->json)
            printf("No bindings. Add one with 'certbind add sslcert KEY certhash=…'.\n");
    }
    /* Printed as the store is walked: a failure half-way leaves the list unfinished (and the
     * error on stderr, exit status 1). */
    if (ret == 0 && cli->json) {
        if (sc.count == 0)
            cb_cli_json_list_begin(&sc.list, "bindings");
        cb_cli_json_list_end(&sc.list);
    }
    cb_cli_close_store(cli, st);
    return ret;
}
