/* serve.c: placeholder until the server lands (issue 3). */
#include "cli/cli.h"

int cb_cmd_serve(struct cb_cli *cli)
{
    return cb_err_set(&cli->err, CB_EFAILED, "serve is being built");
}
