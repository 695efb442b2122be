/* dispatch.c: the table of commands, and running the one a command line (or a line of a
 * batch file) names. */
#include "cli/cli.h"

#include <string.h>

struct command {
    const char *verb, *object;
    int (*run)(struct cb_cli *cli);
    bool in_batch; /* a change that can join a batch's transaction (design section 10) */
};

static const struct command commands[] = {
    {"add", "cert", cb_cmd_add_cert, true},
    {"show", "cert", cb_cmd_show_cert, false},
    {"delete", "cert", cb_cmd_delete_cert, true},
    {"add", "sslcert", cb_cmd_add_sslcert, true},
    {"update", "sslcert", cb_cmd_update_sslcert, true},
    {"delete", "sslcert", cb_cmd_delete_sslcert, true},
    {"show", "sslcert", cb_cmd_show_sslcert, false},
    {"resolve", NULL, cb_cmd_resolve, false},
    {"set", "acme", cb_cmd_set_acme, false},
    {"set", NULL, cb_cmd_set, false},
    {"show", "acme", cb_cmd_show_acme, false},
    {"acme", "*", cb_cmd_acme, false}, /* acme renew */
    {"serve", NULL, cb_cmd_serve, false},
    {"check", NULL, cb_cmd_check, false},
    {"deploy", "*", cb_cmd_deploy, false}, /* "*": the word after the verb is the file */
    {"import", "*", cb_cmd_import, false}, /* import netsh FILE, import iis FILE */
};

int cb_cli_run(struct cb_cli *cli)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const struct command *c = &commands[i];
        if (strcmp(c->verb, cli->verb) != 0)
            continue;
        if (c->object != NULL && strcmp(c->object, "*") != 0 &&
            (cli->object == NULL || strcmp(c->object, cli->object) != 0))
            continue;
        if (c->object == NULL && cli->object != NULL)
            return cb_err_set(&cli->err, CB_EINVAL, "unexpected word '%s' after 'certbind %s'",
                              cli->object, cli->verb);
        if (cli->batch != NULL && !c->in_batch)
            return cb_err_set(&cli->err, CB_EINVAL,
                              "'%s%s%s' cannot run in a batch; a batch takes the changes add "
                              "cert, delete cert and add, update and delete sslcert: run it on "
                              "its own",
                              cli->verb, c->object != NULL ? " " : "",
                              c->object == NULL     ? ""
                              : c->object[0] == '*' ? "..."
                                                    : c->object);
        return c->run(cli);
    }
    if (cli->object != NULL &&
        (strcmp(cli->verb, "add") == 0 || strcmp(cli->verb, "show") == 0 ||
         strcmp(cli->verb, "delete") == 0 || strcmp(cli->verb, "update") == 0))
        return cb_err_set(
            &cli->err, CB_EINVAL,
            "'certbind %s %s' is not a command; the objects are cert, sslcert and acme", cli->verb,
            cli->object);
    return cb_err_set(&cli->err, CB_EINVAL, "'%s' is not a command; see 'certbind --help'",
                      cli->verb);
}
