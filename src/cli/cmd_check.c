/* cmd_check.c: `certbind check [soon=DAYS]`, the pre-flight report. */
#include "check/check.h"
#include "cli/cli.h"
#include "fleet/fleet.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/* A JSON string of s. A path in a message can hold bytes that are not UTF-8, which
 * json_string() refuses; they become '?' so that no finding is left out of --json. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    char *t = strdup(s);
    if (t == NULL)
        return NULL;
    unsigned char *p = (unsigned char *)t;
    while (*p) {
        size_t n = *p < 0x80   ? 1
                   : *p < 0xc2 ? 0
                   : *p < 0xe0 ? 2
                   : *p < 0xf0 ? 3
                   : *p < 0xf5 ? 4
                               : 0;
        size_t k = 1;
        while (k < n && (p[k] & 0xc0) == 0x80)
            k++;
        if (n == 0 || k < n)
            *p++ = '?';
        else
            p += n;
    }
    if ((j = json_string(t)) == NULL) { /* overlong forms, surrogates: keep ASCII only */
        for (p = (unsigned char *)t; *p; p++)
            if (*p >= 0x80)
                *p = '?';
        j = json_string(t);
    }
    free(t);
    return j;
}

/* Each finding as it comes, sorted (all are found before the first comes): a JSON list element, or
 * a line of the text report (under its port and its first binding, each printed when it changes).
 */
struct out_ctx {
    bool json;
    struct cb_cli_json_list list;
    size_t n;
    int port;
    char binding[CB_KEY_TEXT_MAX];
};

static int print_finding(const struct cb_finding *x, void *arg)
{
    struct out_ctx *o = arg;

    if (o->json) {
        if (o->n == 0) /* begun with the first: a check that fails prints nothing */
            cb_cli_json_list_begin(&o->list, "findings");
        json_t *b = json_array();
        for (size_t j = 0; j < x->n_bindings; j++)
            json_array_append_new(b, json_string(x->bindings[j]));
        cb_cli_json_list_add(&o->list, json_pack("{s:s, s:s, s:o, s:o}", "code", x->code,
                                                 "severity", cb_severity_name(x->severity),
                                                 "bindings", b, "message", json_text(x->message)));
        o->n++;
        return 0;
    }
    const char *first = x->n_bindings ? x->bindings[0] : "(no binding)";
    if ((int)x->port != o->port) {
        o->port = x->port;
        o->binding[0] = '\0';
        printf("%sPort %u\n", o->n ? "\n" : "", x->port);
    }
    if (o->binding[0] == '\0' || strcmp(o->binding, first) != 0) {
        snprintf(o->binding, sizeof(o->binding), "%s", first);
        printf("  %s\n", first);
    }
    printf("    %-7s %-22s %s\n", cb_severity_name(x->severity), x->code, x->message);
    if (x->n_bindings > 1) {
        printf("    %-30s also:", "");
        for (size_t j = 1; j < x->n_bindings; j++)
            printf("%s %s", j > 1 ? "," : "", x->bindings[j]);
        printf("\n");
    }
    o->n++;
    return 0;
}

int cb_cmd_check(struct cb_cli *cli)
{
    static const char *const allowed[] = {"soon", NULL};
    struct cb_check_opts opts = {.soon_days = 14, .now = (int64_t)time(NULL)};
    struct out_ctx o = {.json = cli->json, .port = -1};
    struct cb_store *st = NULL;
    const char *soon = cb_cli_opt(cli, "soon");
    size_t errors = 0, warnings = 0;
    int ret;

    if ((ret = cb_cli_expect(cli, allowed, 0)) != 0)
        return ret;
    if (soon != NULL) {
        char *end;
        long d = strtol(soon, &end, 10);
        if (*soon == '\0' || *end != '\0' || d < 0 || d > 3650)
            return cb_err_set(&cli->err, CB_EINVAL, "soon=%s: give a number of days from 0 to 3650",
                              soon);
        opts.soon_days = (int)d;
    }
    if ((ret = cb_cli_open_store(cli, CB_STORE_READ, &st)) != 0) {
        if (ret != CB_ENOENT)
            return ret;
        if (cli->json)
            cb_cli_print_json(json_pack("{s:[]}", "findings"));
        else
            printf("No store yet in %s: nothing to check.\n", cli->state_dir);
        return 0;
    }
    if (cli->fleet != NULL) {
        opts.fleet = true;
        opts.fleet_synced_at = cb_fleet_synced_at(cli->fleet);
        opts.fleet_stale_s = CB_CHECK_FLEET_STALE_S;
    }
    ret = cb_check_stream(st, &opts, print_finding, &o, &errors, &warnings, &cli->err);
    cb_cli_close_store(cli, st);
    if (ret != 0)
        return ret;
    if (o.json) {
        if (o.n == 0)
            cb_cli_json_list_begin(&o.list, "findings");
        cb_cli_json_list_end(&o.list);
    } else if (o.n == 0)
        printf("No problems found.\n");
    else
        printf("\n%zu error%s, %zu warning%s.\n", errors, errors == 1 ? "" : "s", warnings,
               warnings == 1 ? "" : "s");
    return errors > 0 ? cb_err_set(&cli->err, CB_EFAILED,
                                   "check found %zu error%s; fix them as each line says", errors,
                                   errors == 1 ? "" : "s")
                      : 0;
}
