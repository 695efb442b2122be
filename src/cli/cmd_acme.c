/*
 * cmd_acme.c: the ACME commands (design/bindings.md section 7): `set acme` (the store's one
 * account), `show acme` (the account and every managed binding) and `acme renew` (ask the
 * running serve to renew now, and wait for the outcome). serve does the ordering itself.
 */
#include "cli/cli.h"
#include "store/acme.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

/* ---- set acme ----------------------------------------------------------------------- */

static bool is_host_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

/* An https URL with a host: https://HOST[:PORT][/PATH], nothing a shell or JSON would mangle. */
static int check_directory(struct cb_cli *cli, const char *url)
{
    static const char hint[] = "give the CA's ACME directory URL, such as directory=https://"
                               "acme-staging-v02.api.letsencrypt.org/directory";
    const char *p = url, *host, *end;
    size_t n = strlen(url);

    if (n >= sizeof(((struct cb_acme_settings *)0)->directory))
        return cb_err_set(&cli->err, CB_EINVAL, "directory=%.80s…: too long (at most %zu bytes)",
                          url, sizeof(((struct cb_acme_settings *)0)->directory) - 1);
    for (const char *q = url; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f || *q == '"' || *q == '\\' || *q == '<' ||
            *q == '>' || *q == '`' || *q == '{' || *q == '}' || *q == '|' || *q == '^')
            return cb_err_set(&cli->err, CB_EINVAL,
                              "directory=%s: a URL holds no spaces, quotes or control characters; "
                              "%s",
                              url, hint);
    if (strncasecmp(p, "https://", 8) != 0)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "directory=%s: the ACME directory must be an https:// URL; %s", url,
                          hint);
    host = p + 8;
    end = host + strcspn(host, "/?#");
    if (memchr(host, '@', (size_t)(end - host)) != NULL)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "directory=%s: user names and passwords do not belong in the URL; %s",
                          url, hint);
    const char *port = NULL, *hend = end;
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (close == NULL || close == host + 1)
            return cb_err_set(&cli->err, CB_EINVAL, "directory=%s: malformed [IPv6] host; %s", url,
                              hint);
        for (const char *q = host + 1; q < close; q++)
            if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
                return cb_err_set(&cli->err, CB_EINVAL, "directory=%s: malformed [IPv6] host; %s",
                                  url, hint);
        if (close + 1 < end && close[1] != ':')
            return cb_err_set(&cli->err, CB_EINVAL, "directory=%s: malformed host; %s", url, hint);
        port = close + 1 < end ? close + 2 : NULL;
    } else {
        const char *colon = memchr(host, ':', (size_t)(end - host));
        if (colon != NULL) {
            hend = colon;
            port = colon + 1;
        }
        if (hend == host)
            return cb_err_set(&cli->err, CB_EINVAL, "directory=%s: the URL has no host; %s", url,
                              hint);
        for (const char *q = host; q < hend; q++)
            if (!is_host_char(*q))
                return cb_err_set(&cli->err, CB_EINVAL,
                                  "directory=%s: '%.*s' is not a host name; %s", url,
                                  (int)(hend - host), host, hint);
        bool bad = host[0] == '.' || host[0] == '-' || hend[-1] == '-';
        for (const char *q = host; q + 1 < hend && !bad; q++)
            bad = q[0] == '.' && q[1] == '.';
        if (bad)
            return cb_err_set(&cli->err, CB_EINVAL, "directory=%s: '%.*s' is not a host name; %s",
                              url, (int)(hend - host), host, hint);
    }
    if (port != NULL) {
        uint16_t pn;
        if (cb_port_parse(port, (size_t)(end - port), &pn) != 0)
            return cb_err_set(&cli->err, CB_EINVAL,
                              "directory=%s: the port must be a number from 1 to 65535; %s", url,
                              hint);
    }
    return 0;
}

/* local@domain.tld: what a CA accepts as a mailto: contact. */
static int check_email(struct cb_cli *cli, const char *v)
{
    const char *at = strchr(v, '@');
    bool ok = at != NULL && at != v && strchr(at + 1, '@') == NULL && strchr(at + 1, '.') != NULL &&
              at[1] != '.' && v[strlen(v) - 1] != '.' && strlen(v) < 256;
    for (const char *p = v; ok && *p; p++)
        ok = (unsigned char)*p > ' ' && *p != 0x7f && strchr("\"\\,;<>()[]:", *p) == NULL;
    if (!ok)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "email=%s is not an e-mail address; give the address the CA writes to "
                          "about expiring certificates, such as email=admin@example.com",
                          v);
    return 0;
}

/* Base64url (RFC 4648 section 5) without padding or with it, as CAs hand out EAB keys. */
static bool is_base64url(const char *v)
{
    size_t n = strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    size_t pad = strspn(v + n, "=");
    return n > 0 && v[n + pad] == '\0' && n % 4 != 1 && pad <= 2 &&
           (pad == 0 || (n + pad) % 4 == 0);
}

/* A file option: an absolute path to an existing regular file (executable: exec). */
static int check_file(struct cb_cli *cli, const char *opt, const char *v, bool exec, char *out,
                      size_t size)
{
    char real[PATH_MAX];
    struct stat sb;

    if (realpath(v, real) == NULL || stat(real, &sb) != 0)
        return cb_err_set(&cli->err, CB_EINVAL, "%s=%s: %s; give an existing file", opt, v,
                          strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return cb_err_set(&cli->err, CB_EINVAL, "%s=%s is not a regular file", opt, v);
    if (access(real, exec ? X_OK : R_OK) != 0)
        return cb_err_set(&cli->err, CB_EINVAL,
                          exec ? "%s=%s is not executable; chmod +x it"
                               : "%s=%s cannot be read: %s",
                          opt, v, strerror(errno));
    if (strlen(real) >= size)
        return cb_err_set(&cli->err, CB_EINVAL, "%s=%s: the path is too long (at most %zu bytes)",
                          opt, v, size - 1);
    snprintf(out, size, "%s", real);
    return 0;
}

/* cafile=: a readable file that holds at least one PEM certificate. */
static int check_cafile(struct cb_cli *cli, const char *v, char *out, size_t size)
{
    char buf[65536];
    int ret, fd;
    ssize_t n;

    if ((ret = check_file(cli, "cafile", v, false, out, size)) != 0)
        return ret;
    if ((fd = open(out, O_RDONLY | O_CLOEXEC)) < 0)
        return cb_err_set(&cli->err, CB_EINVAL, "cafile=%s cannot be read: %s", v, strerror(errno));
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    if (n <= 0 || strstr(buf, "-----BEGIN CERTIFICATE-----") == NULL)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "cafile=%s holds no PEM certificate (-----BEGIN CERTIFICATE-----); "
                          "give the CA certificates that sign the ACME server's TLS certificate",
                          v);
    return 0;
}

static bool option_given(const struct cb_cli *cli, const char *name)
{
    return cb_cli_opt(cli, name) != NULL;
}

/* Applies every given option to *a, validating each; nothing is stored here. */
static int apply_settings(struct cb_cli *cli, struct cb_acme_settings *a, bool first)
{
    const char *dir = cb_cli_opt(cli, "directory"), *email = cb_cli_opt(cli, "email");
    const char *kid = cb_cli_opt(cli, "eabkid"), *hmac = cb_cli_opt(cli, "eabhmackey");
    const char *cafile = cb_cli_opt(cli, "cafile"), *hook = cb_cli_opt(cli, "dnshook");
    const char *kt = cb_cli_opt(cli, "keytype");
    int ret;

    if (first && (dir == NULL || email == NULL))
        return cb_err_set(&cli->err, CB_EINVAL,
                          "no ACME account is set yet: give at least the directory and the "
                          "contact, certbind set acme directory=URL email=ADDRESS [agreetos=yes]");
    if (dir != NULL) {
        if ((ret = check_directory(cli, dir)) != 0)
            return ret;
        if (strcmp(dir, a->directory) != 0)
            a->account_url[0] = '\0'; /* another CA: serve registers a new account there */
        snprintf(a->directory, sizeof(a->directory), "%s", dir);
    }
    if (email != NULL) {
        if ((ret = check_email(cli, email)) != 0)
            return ret;
        snprintf(a->email, sizeof(a->email), "%s", email);
    }
    if (option_given(cli, "agreetos")) {
        bool yes;
        if ((ret = cb_cli_yesno(cli, "agreetos", &yes)) != 0)
            return ret;
        a->agreetos = yes;
    }
    if ((kid == NULL) != (hmac == NULL))
        return cb_err_set(&cli->err, CB_EINVAL,
                          "External Account Binding needs both eabkid=ID and eabhmackey=KEY, as "
                          "the CA gave them (eabkid= eabhmackey= removes them)");
    if (kid != NULL) {
        if ((kid[0] == '\0') != (hmac[0] == '\0'))
            return cb_err_set(&cli->err, CB_EINVAL,
                              "give eabkid= and eabhmackey= both empty (no External Account "
                              "Binding) or both set");
        for (const char *p = kid; *p; p++)
            if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '"' || *p == '\\')
                return cb_err_set(&cli->err, CB_EINVAL,
                                  "eabkid=%s: a key identifier holds no spaces, quotes or control "
                                  "characters",
                                  kid);
        if (strlen(kid) >= sizeof(a->eab_kid))
            return cb_err_set(&cli->err, CB_EINVAL, "eabkid= is too long (at most %zu bytes)",
                              sizeof(a->eab_kid) - 1);
        if (hmac[0] != '\0' && (!is_base64url(hmac) || strlen(hmac) >= sizeof(a->eab_hmac)))
            return cb_err_set(&cli->err, CB_EINVAL,
                              "eabhmackey= is not a base64url key (letters, digits, - and _) of "
                              "at most %zu characters; copy it exactly as the CA gave it",
                              sizeof(a->eab_hmac) - 1);
        snprintf(a->eab_kid, sizeof(a->eab_kid), "%s", kid);
        snprintf(a->eab_hmac, sizeof(a->eab_hmac), "%s", hmac);
    }
    if (cafile != NULL) {
        if (cafile[0] == '\0')
            a->cafile[0] = '\0';
        else if ((ret = check_cafile(cli, cafile, a->cafile, sizeof(a->cafile))) != 0)
            return ret;
    }
    if (hook != NULL) {
        if (hook[0] == '\0')
            a->dnshook[0] = '\0';
        else if ((ret = check_file(cli, "dnshook", hook, true, a->dnshook, sizeof(a->dnshook))) !=
                 0)
            return ret;
    }
    if (kt != NULL) {
        if (strcasecmp(kt, "ecdsa") == 0)
            a->keytype = CB_ACME_KT_ECDSA;
        else if (strcasecmp(kt, "rsa") == 0)
            a->keytype = CB_ACME_KT_RSA;
        else
            return cb_err_set(&cli->err, CB_EINVAL,
                              "keytype=%s: use keytype=ecdsa (P-256, the default) or keytype=rsa "
                              "(2048 bits)",
                              kt);
    }
    return 0;
}

int cb_cmd_set_acme(struct cb_cli *cli)
{
    static const char *const allowed[] = {"directory",  "email",   "agreetos", "cafile", "eabkid",
                                          "eabhmackey", "dnshook", "keytype",  NULL};
    struct cb_acme_settings a, old;
    struct cb_store *st = NULL;
    struct cb_err gerr;
    bool first;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0)
        return ret;
    if (cli->n_opts == 0)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "give the account: certbind set acme directory=URL email=ADDRESS "
                          "[agreetos=yes] [cafile=FILE] [eabkid=ID eabhmackey=KEY] "
                          "[dnshook=PATH] [keytype=ecdsa|rsa]");
    /* Validate what can be before touching the store: bad input never creates one. */
    memset(&a, 0, sizeof(a));
    ret = cb_cli_open_store(cli, CB_STORE_READ, &st);
    if (ret != 0 && ret != CB_ENOENT)
        return ret;
    if ((ret = apply_settings(cli, &a, st == NULL)) != 0)
        goto out_close;
    if (st == NULL && (ret = cb_cli_open_store(cli, CB_STORE_WRITE, &st)) != 0)
        return ret;
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    memset(&a, 0, sizeof(a));
    ret = cb_store_acme_settings_get(st, &a, &gerr);
    if (ret != 0 && ret != CB_ENOENT) {
        cb_err_set(&cli->err, ret, "%s", gerr.msg);
        goto out_rollback;
    }
    first = ret == CB_ENOENT;
    old = a;
    if ((ret = apply_settings(cli, &a, first)) != 0 ||
        (ret = cb_store_acme_settings_put(st, &a, &cli->err)) != 0 ||
        (ret = cb_store_commit(st, &cli->err)) != 0)
        goto out_rollback;
    printf("ACME account %s: directory %s, contact %s, %s certificates.\n",
           first ? "set" : "changed", a.directory, a.email[0] ? a.email : "(none)",
           cb_acme_keytype_name(a.keytype));
    if (!first && old.account_url[0] && !a.account_url[0])
        printf("The directory changed: serve registers a new account there.\n");
    if (!a.agreetos)
        fprintf(stderr, "certbind: note: most CAs require agreeing to their terms of service; "
                        "read them and add agreetos=yes, or registration fails\n");
    explicit_bzero(&a, sizeof(a));
    explicit_bzero(&old, sizeof(old));
out_rollback:
    cb_store_rollback(st);
out_close:
    cb_cli_close_store(cli, st);
    return ret;
}

/* ---- show acme ---------------------------------------------------------------------- */

static json_t *time_json(int64_t t)
{
    char buf[32];
    if (t == 0)
        return json_null();
    cb_cli_time(t, buf, sizeof(buf));
    return json_string(buf);
}

static json_t *text_json(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

struct show_ctx {
    json_t *array; /* --json */
    size_t n;
};

static int show_binding(const struct cb_acme_state *s, void *arg)
{
    struct show_ctx *sc = arg;
    char na[32], ra[32];

    sc->n++;
    if (sc->array != NULL) {
        json_t *o =
            json_pack("{s:s, s:s}", "key", s->key, "status", cb_acme_status_name(s->status));
        json_object_set_new(o, "certhash", text_json(s->certhash));
        json_object_set_new(o, "not_after", time_json(s->not_after));
        json_object_set_new(o, "renew_after", time_json(s->renew_after));
        json_object_set_new(o, "last_error", text_json(s->last_error));
        json_object_set_new(o, "last_attempt", time_json(s->last_attempt));
        return json_array_append_new(sc->array, o) == 0 ? 0 : CB_ENOMEM;
    }
    if (sc->n == 1)
        printf("\nManaged bindings:\n");
    cb_cli_time(s->not_after, na, sizeof(na));
    cb_cli_time(s->renew_after, ra, sizeof(ra));
    printf("  %-40s %-8s %s", s->key, cb_acme_status_name(s->status),
           s->certhash[0] ? s->certhash : "(no certificate yet)");
    if (s->not_after)
        printf(" valid until %s", na);
    if (s->renew_after)
        printf(" renew after %s", ra);
    if (s->last_error[0])
        printf(" last error: %s", s->last_error);
    printf("\n");
    return 0;
}

int cb_cmd_show_acme(struct cb_cli *cli)
{
    static const char *const allowed[] = {NULL};
    struct show_ctx sc = {0};
    struct cb_acme_settings a;
    struct cb_store *st = NULL;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0)
        return ret;
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &st)) != 0)
        return ret == CB_ENOENT ? cb_err_set(&cli->err, CB_ENOENT,
                                             "no ACME account is set (the store is empty); set it "
                                             "first: certbind set acme directory=URL "
                                             "email=ADDRESS agreetos=yes")
                                : ret;
    if ((ret = cb_store_acme_settings_get(st, &a, &cli->err)) != 0)
        goto out_close;
    if (cli->json) {
        sc.array = json_array();
    } else {
        printf("ACME account\n");
        printf("  %-10s: %s\n", "directory", a.directory);
        printf("  %-10s: %s\n", "contact", a.email[0] ? a.email : "(none)");
        printf("  %-10s: %s%s\n", "status", a.account_url[0] ? "registered, " : "unregistered",
               a.account_url);
        printf("  %-10s: %s\n", "terms", a.agreetos ? "agreed" : "not agreed (agreetos=yes)");
        printf("  %-10s: %s\n", "key type", cb_acme_keytype_name(a.keytype));
        printf("  %-10s: %s\n", "CA trust", a.cafile[0] ? a.cafile : "system roots");
        printf("  %-10s: %s\n", "EAB", a.eab_kid[0] ? a.eab_kid : "none");
        printf("  %-10s: %s\n", "DNS hook", a.dnshook[0] ? a.dnshook : "none (TLS-ALPN-01 only)");
    }
    if ((ret = cb_store_acme_state_foreach(st, show_binding, &sc, &cli->err)) != 0) {
        if (ret == CB_ENOMEM)
            cb_err_set(&cli->err, ret, "out of memory");
        goto out_free;
    }
    if (cli->json) {
        json_t *acct = json_pack("{s:s}", "directory", a.directory);
        json_object_set_new(acct, "email", text_json(a.email));
        json_object_set_new(acct, "status",
                            json_string(a.account_url[0] ? "registered" : "unregistered"));
        json_object_set_new(acct, "url", text_json(a.account_url));
        json_object_set_new(acct, "keytype", json_string(cb_acme_keytype_name(a.keytype)));
        json_object_set_new(acct, "agreetos", json_boolean(a.agreetos));
        json_object_set_new(acct, "dnshook", text_json(a.dnshook));
        json_object_set_new(acct, "eab", json_boolean(a.eab_kid[0] != '\0'));
        cb_cli_print_json(json_pack("{s:o, s:O}", "account", acct, "bindings", sc.array));
    } else if (sc.n == 0) {
        printf("\nNo managed bindings. Add one with 'certbind add sslcert "
               "hostnameport=NAME:PORT acme=enable backend=HOST:PORT'.\n");
    }
out_free:
    json_decref(sc.array);
    explicit_bzero(&a, sizeof(a));
out_close:
    cb_cli_close_store(cli, st);
    return ret;
}

/* ---- acme renew --------------------------------------------------------------------- */

#define CB_RENEW_WAIT_DEFAULT 120
#define CB_RENEW_POLL_NS 200000000L /* waiting on another process, not synchronising a test */

struct renew {
    char (*keys)[CB_KEY_TEXT_MAX];
    size_t n;
};

static int collect_key(const struct cb_acme_state *s, void *arg)
{
    struct renew *r = arg;
    void *nk = realloc(r->keys, (r->n + 1) * sizeof(*r->keys));
    if (nk == NULL)
        return CB_ENOMEM;
    r->keys = nk;
    memcpy(r->keys[r->n++], s->key, CB_KEY_TEXT_MAX);
    return 0;
}

enum outcome { OUT_WAITING, OUT_VALID, OUT_FAILED, OUT_DECLINED };

/* Where one binding is after the request made at t_req (the protocol in store/acme.h). */
static enum outcome judge(const struct cb_acme_state *s, int64_t t_req)
{
    bool taken = s->renew_requested == 0;

    if (s->status == CB_ACME_RENEWING)
        return OUT_WAITING;
    if (s->status == CB_ACME_VALID || s->status == CB_ACME_FAILED) {
        if (s->last_attempt > t_req || (taken && s->last_attempt >= t_req))
            return s->status == CB_ACME_VALID ? OUT_VALID : OUT_FAILED;
    }
    if (taken && s->last_attempt < t_req)
        return OUT_DECLINED;
    return OUT_WAITING;
}

/* The binding key among the options, in canonical text; *given false when none. */
static int renew_key(struct cb_cli *cli, char key[CB_KEY_TEXT_MAX], bool *given)
{
    static const char *const names[] = {"hostnameport", "ipport", "ccs"};
    struct cb_binding_key k;
    const char *found = NULL;
    int ret;

    *given = false;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (cb_cli_opt(cli, names[i]) == NULL)
            continue;
        if (found != NULL)
            return cb_err_set(&cli->err, CB_EINVAL,
                              "give one binding key, not both %s= and %s=", found, names[i]);
        found = names[i];
    }
    if (found == NULL)
        return 0;
    if ((ret = cb_key_parse(found, cb_cli_opt(cli, found), &k, &cli->err)) != 0)
        return ret;
    cb_key_format(&k, key, CB_KEY_TEXT_MAX);
    *given = true;
    return 0;
}

/* Waits until every binding in r has an outcome, serve stops, or wait seconds pass. */
static int renew_wait(struct cb_cli *cli, struct cb_store *st, const struct renew *r, int64_t t_req,
                      long wait)
{
    enum outcome *done = calloc(r->n, sizeof(*done));
    struct timespec start, now, nap = {0, CB_RENEW_POLL_NS};
    char failed_msg[sizeof(cli->err.msg)] = "";
    size_t left = r->n, n_failed = 0;
    int ret = 0;

    if (done == NULL)
        return cb_err_set(&cli->err, CB_ENOMEM, "out of memory");
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        for (size_t i = 0; i < r->n; i++) {
            struct cb_acme_state s;
            char t[32];
            if (done[i] != OUT_WAITING)
                continue;
            if ((ret = cb_store_acme_state_get(st, r->keys[i], &s, &cli->err)) != 0)
                goto out_free; /* deleted or made manual meanwhile: the message says so */
            if ((done[i] = judge(&s, t_req)) == OUT_WAITING)
                continue;
            left--;
            cb_cli_time(s.not_after, t, sizeof(t));
            if (done[i] == OUT_VALID) {
                printf("%s: certificate %s bound%s%s.\n", s.key, s.certhash,
                       s.not_after ? ", valid until " : "", s.not_after ? t : "");
            } else if (done[i] == OUT_DECLINED) {
                cb_cli_time(s.renew_after, t, sizeof(t));
                printf("%s: not due for renewal%s%s; nothing done (force=yes renews now).\n", s.key,
                       s.renew_after ? " until " : "", s.renew_after ? t : "");
            } else {
                size_t m = strlen(failed_msg);
                /* Cut short when long: the one error line names the first three. */
                if (n_failed++ < 3 &&
                    snprintf(failed_msg + m, sizeof(failed_msg) - m, "%s%s: %s", m ? "; " : "",
                             s.key, s.last_error[0] ? s.last_error : "failed (no message)") < 0)
                    failed_msg[m] = '\0';
                printf("%s: renewal failed: %s\n", s.key,
                       s.last_error[0] ? s.last_error : "(no message)");
            }
        }
        if (left == 0)
            break;
        bool running = true;
        if (cb_store_serve_running(st, &running) == 0 && !running) {
            ret = cb_err_set(&cli->err, CB_EFAILED,
                             "certbind serve stopped before the renewal ended; start it "
                             "(systemctl start certbind) and see 'certbind show acme'");
            goto out_free;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= wait) {
            ret = cb_err_set(&cli->err, CB_EFAILED,
                             "no outcome within %ld s for %zu binding%s; serve is still working "
                             "on it: follow it with 'certbind show acme'",
                             wait, left, left == 1 ? "" : "s");
            goto out_free;
        }
        nanosleep(&nap, NULL);
    }
    if (n_failed > 0)
        ret = cb_err_set(&cli->err, CB_EFAILED, "renewal failed for %s%s", failed_msg,
                         n_failed > 3 ? " and more (see 'certbind show acme')" : "");
out_free:
    free(done);
    return ret;
}

static int cmd_renew(struct cb_cli *cli)
{
    static const char *const allowed[] = {"hostnameport", "ipport", "ccs", "force", "wait", NULL};
    const char *wait_text = cb_cli_opt(cli, "wait");
    struct cb_store *st = NULL;
    struct renew r = {0};
    struct cb_acme_state s;
    char key[CB_KEY_TEXT_MAX];
    bool one, force, running = false;
    long wait = CB_RENEW_WAIT_DEFAULT;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0 ||
        (ret = cb_cli_yesno(cli, "force", &force)) != 0 || (ret = renew_key(cli, key, &one)) != 0)
        return ret;
    if (wait_text != NULL) {
        char *end;
        errno = 0;
        wait = strtol(wait_text, &end, 10);
        if (errno != 0 || end == wait_text || *end != '\0' || wait < 0 || wait > 86400)
            return cb_err_set(&cli->err, CB_EINVAL,
                              "wait=%s: give the seconds to wait for the outcome, 0 to 86400 "
                              "(0: do not wait)",
                              wait_text);
    }
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &st)) != 0)
        return ret == CB_ENOENT ? cb_err_set(&cli->err, CB_ENOENT,
                                             "no managed binding to renew (the store is empty); "
                                             "add one with 'certbind add sslcert "
                                             "hostnameport=NAME:PORT acme=enable'")
                                : ret;
    if (one) {
        if ((ret = cb_store_acme_state_get(st, key, &s, &cli->err)) != 0 ||
            (ret = collect_key(&s, &r)) != 0)
            goto out_close;
    } else if ((ret = cb_store_acme_state_foreach(st, collect_key, &r, &cli->err)) != 0) {
        goto out_close;
    } else if (r.n == 0) {
        ret = cb_err_set(&cli->err, CB_ENOENT,
                         "no managed binding to renew; add one with 'certbind add sslcert "
                         "hostnameport=NAME:PORT acme=enable'");
        goto out_close;
    }
    if ((ret = cb_store_serve_running(st, &running)) != 0) {
        cb_err_set(&cli->err, ret, "cannot read %s/serve.lock to see whether serve runs",
                   cli->state_dir);
        goto out_close;
    }
    if (!running) {
        ret = cb_err_set(&cli->err, CB_EFAILED,
                         "no certbind serve is running on this state folder; start it "
                         "(systemctl start certbind)");
        goto out_close;
    }
    int64_t t_req = (int64_t)time(NULL);
    if ((ret = cb_store_begin(st, &cli->err)) != 0)
        goto out_close;
    if ((ret = cb_store_acme_renew_request(st, one ? key : NULL, force, t_req, &cli->err)) != 0 ||
        (ret = cb_store_commit(st, &cli->err)) != 0) {
        cb_store_rollback(st);
        goto out_close;
    }
    if (wait == 0) {
        printf("Renewal requested for %s%s; follow it with 'certbind show acme'.\n",
               one ? key : "every managed binding", force ? " (forced)" : "");
        goto out_close;
    }
    ret = renew_wait(cli, st, &r, t_req, wait);
out_close:
    if (ret == CB_ENOMEM)
        cb_err_set(&cli->err, ret, "out of memory");
    free(r.keys);
    cb_cli_close_store(cli, st);
    return ret;
}

int cb_cmd_acme(struct cb_cli *cli)
{
    if (cli->object != NULL && strcmp(cli->object, "renew") == 0)
        return cmd_renew(cli);
    return cb_err_set(&cli->err, CB_EINVAL,
                      "'certbind acme %s' is not a command; use 'certbind acme renew [KEY] "
                      "[force=yes] [wait=SECONDS]'",
                      cli->object ? cli->object : "");
}
