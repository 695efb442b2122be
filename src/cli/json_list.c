/*
 * json_list.c: `--json` lists printed as a store is walked: {"NAME": [ … ]} element by
 * element, byte for byte as cb_cli_print_json prints the whole document (jansson,
 * two-space indent, keys in insertion order), so memory does not grow with the store.
 */
#include "cli/cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define CB_JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER)

void cb_cli_json_list_begin(struct cb_cli_json_list *l, const char *name)
{
    json_t *key = json_string(name);
    char *quoted = key != NULL ? json_dumps(key, JSON_ENCODE_ANY) : NULL;

    l->n = 0;
    printf("{\n  %s: [", quoted != NULL ? quoted : "\"\"");
    free(quoted);
    json_decref(key);
}

void cb_cli_json_list_add(struct cb_cli_json_list *l, json_t *item)
{
    char *text = item != NULL ? json_dumps(item, CB_JSON_FLAGS) : NULL;

    json_decref(item);
    /* An element of the list sits two levels deep: each of its lines moves 4 columns right
     * (strings hold no raw newline: JSON escapes them). */
    fputs(l->n++ ? ",\n    " : "\n    ", stdout);
    for (const char *p = text != NULL ? text : "null"; *p; p++) {
        putchar(*p);
        if (*p == '\n')
            fputs("    ", stdout);
    }
    free(text);
}

void cb_cli_json_list_end(struct cb_cli_json_list *l)
{
    fputs(l->n ? "\n  ]\n}\n" : "]\n}\n", stdout);
}
