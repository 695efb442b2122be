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

int cb_cmd_check(struct cb_cli *cli)
{
    static const char *const allowed[] = {"soon", NULL};
    struct cb_check_opts opts = {.soon_days = 14, .now = (int64_t)time(NULL)};
    struct cb_findings f;
    struct cb_store *st = NULL;
    const char *soon = cb_cli_opt(cli, "soon");
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
    ret = cb_check_run(st, &opts, &f, &cli->err);
    cb_cli_close_store(cli, st);
    if (ret != 0)
        return ret;
    if (cli->json) {
        struct cb_cli_json_list list;
        cb_cli_json_list_begin(&list, "findings");
        for (size_t i = 0; i < f.n; i++) {
            json_t *b = json_array();
            for (size_t j = 0; j < f.v[i].n_bindings; j++)
                json_array_append_new(b, json_string(f.v[i].bindings[j]));
            cb_cli_json_list_add(&list,
                                 json_pack("{s:s, s:s, s:o, s:o}", "code", f.v[i].code, "severity",
                                           cb_severity_name(f.v[i].severity), "bindings", b,
                                           "message", json_text(f.v[i].message)));
        }
        cb_cli_json_list_end(&list);
    } else {
        int port = -1;
        const char *binding = NULL;
        for (size_t i = 0; i < f.n; i++) {
            const struct cb_finding *x = &f.v[i];
            const char *first = x->n_bindings ? x->bindings[0] : "(no binding)";
            if ((int)x->port != port) {
                port = x->port;
                binding = NULL;
                printf("%sPort %u\n", i ? "\n" : "", x->port);
            }
            if (binding == NULL || strcmp(binding, first) != 0) {
                binding = first;
                printf("  %s\n", first);
            }
            printf("    %-7s %-22s %s\n", cb_severity_name(x->severity), x->code, x->message);
            if (x->n_bindings > 1) {
                printf("    %-30s also:", "");
                for (size_t j = 1; j < x->n_bindings; j++)
                    printf("%s %s", j > 1 ? "," : "", x->bindings[j]);
                printf("\n");
            }
        }
        if (f.n == 0)
            printf("No problems found.\n");
        else
            printf("\n%zu error%s, %zu warning%s.\n", f.errors, f.errors == 1 ? "" : "s",
                   f.warnings, f.warnings == 1 ? "" : "s");
    }
    ret = f.errors > 0 ? cb_err_set(&cli->err, CB_EFAILED,
                                    "check found %zu error%s; fix them as each line says", f.errors,
                                    f.errors == 1 ? "" : "s")
                       : 0;
    cb_findings_clear(&f);
    return ret;
}
