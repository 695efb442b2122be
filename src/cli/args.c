/* args.c: command-line words, global flags, and helpers shared by the commands. */
#include "cli/cli.h"
#include "fleet/fleet.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

static void default_state(char *out, size_t size)
{
    const char *env = getenv("CERTBIND_STATE");
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");

    if (env != NULL && env[0] != '\0')
        snprintf(out, size, "%s", env);
    else if (geteuid() == 0)
        snprintf(out, size, "/var/lib/certbind");
    else if (xdg != NULL && xdg[0] == '/')
        snprintf(out, size, "%s/certbind", xdg);
    else
        snprintf(out, size, "%s/.local/state/certbind", home ? home : ".");
}

/* An option word is NAME=VALUE with NAME made of [a-z0-9-]. */
static bool is_option(const char *w)
{
    const char *eq = strchr(w, '=');
    if (eq == NULL || eq == w)
        return false;
    for (const char *p = w; p < eq; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    return true;
}

static int int_flag(struct cb_cli *cli, const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end;
    long n;

    if (v == NULL)
        return cb_err_set(&cli->err, CB_EINVAL, "%s needs a value", flag);
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || end == v || n < lo || n > hi)
        return cb_err_set(&cli->err, CB_EINVAL, "%s %s: give a number from %d to %d", flag, v, lo,
                          hi);
    *out = (int)n;
    return 0;
}

/* --ticket-rotate HOURS: a decimal number of hours, kept as whole seconds (at least one). */
static int hours_flag(struct cb_cli *cli, const char *flag, const char *v, int64_t *out)
{
    char *end;
    double h;

    errno = 0;
    h = strtod(v, &end);
    if (errno != 0 || *end != '\0' || end == v || !(h * 3600.0 >= 1.0) || h > 8760.0)
        return cb_err_set(&cli->err, CB_EINVAL,
                          "%s %s: give hours, more than 0 (at least a second: 0.0003) and at "
                          "most 8760 (a year), e.g. 12 or 0.5",
                          flag, v);
    *out = (int64_t)(h * 3600.0 + 0.5);
    return 0;
}

int cb_cli_parse(struct cb_cli *cli, int argc, char **argv)
{
    const char *state = NULL;

    for (int i = 1; i < argc; i++) {
        const char *w = argv[i];
        const char *val = NULL;
        char flag[32];

        if (w[0] == '-' && w[1] == '-' && w[2] != '\0') {
            const char *eq = strchr(w, '=');
            size_t n = eq ? (size_t)(eq - w) : strlen(w);
            if (n >= sizeof(flag))
                return cb_err_set(&cli->err, CB_EINVAL, "unknown flag %s; see certbind --help", w);
            memcpy(flag, w, n);
            flag[n] = '\0';
            bool takes = strcmp(flag, "--state") == 0 || strcmp(flag, "--store") == 0 ||
                         strcmp(flag, "--store-key") == 0 || strcmp(flag, "--workers") == 0 ||
                         strcmp(flag, "--grace") == 0 || strcmp(flag, "--max-connections") == 0 ||
                         strcmp(flag, "--max-connections-per-binding") == 0 ||
                         strcmp(flag, "--handshake-timeout") == 0 ||
                         strcmp(flag, "--idle-timeout") == 0 || strcmp(flag, "--admin") == 0 ||
                         strcmp(flag, "--cert-cache-mb") == 0 ||
                         strcmp(flag, "--ticket-rotate") == 0 || strcmp(flag, "--iplisten") == 0;
            if (takes) {
                val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (val == NULL || val[0] == '\0')
                    return cb_err_set(&cli->err, CB_EINVAL, "%s needs a value", flag);
            } else if (eq != NULL) {
                return cb_err_set(&cli->err, CB_EINVAL, "%s takes no value", flag);
            }
            if (strcmp(flag, "--json") == 0)
                cli->json = true;
            else if (strcmp(flag, "--help") == 0)
                cli->help = true;
            else if (strcmp(flag, "--version") == 0)
                cli->verb = "--version";
            else if (strcmp(flag, "--state") == 0)
                state = val;
            else if (strcmp(flag, "--store") == 0)
                cli->store_url = val;
            else if (strcmp(flag, "--store-key") == 0)
                cli->store_key = val;
            else if (strcmp(flag, "--admin") == 0)
                cli->admin = val;
            else if (strcmp(flag, "--admin-public") == 0)
                cli->admin_public = true;
            else if (strcmp(flag, "--no-affinity") == 0)
                cli->no_affinity = true;
            else if (strcmp(flag, "--iplisten") == 0) {
                if (cb_iplisten_add(&cli->iplisten, val, &cli->err) != 0)
                    return CB_EINVAL;
            } else if (strcmp(flag, "--max-connections") == 0) {
                if (int_flag(cli, flag, val, 1, 10000000, &cli->max_conns) != 0)
                    return CB_EINVAL;
            } else if (strcmp(flag, "--max-connections-per-binding") == 0) {
                if (int_flag(cli, flag, val, 1, 10000000, &cli->max_conns_binding) != 0)
                    return CB_EINVAL;
            } else if (strcmp(flag, "--cert-cache-mb") == 0) {
                if (int_flag(cli, flag, val, 1, 1048576, &cli->cert_cache_mb) != 0)
                    return CB_EINVAL;
            } else if (strcmp(flag, "--grace") == 0) {
                if (int_flag(cli, flag, val, 0, 3600, &cli->grace) != 0)
                    return CB_EINVAL;
            } else if (strcmp(flag, "--workers") == 0) {
                if (int_flag(cli, flag, val, 1, 256, &cli->workers) != 0)
                    return CB_EINVAL;
            } else if (strcmp(flag, "--handshake-timeout") == 0) {
                if (int_flag(cli, flag, val, 1, 3600, &cli->handshake_timeout) != 0)
                    return CB_EINVAL;
            } else if (strcmp(flag, "--ticket-rotate") == 0) {
                if (hours_flag(cli, flag, val, &cli->ticket_rotate_s) != 0)
                    return CB_EINVAL;
            } else if (strcmp(flag, "--idle-timeout") == 0) {
                if (int_flag(cli, flag, val, 1, 86400, &cli->idle_timeout) != 0)
                    return CB_EINVAL;
            } else
                return cb_err_set(&cli->err, CB_EINVAL, "unknown flag %s; see certbind --help",
                                  flag);
            continue;
        }
        if (strcmp(w, "-h") == 0) {
            cli->help = true;
            continue;
        }
        if (strcmp(w, "-f") == 0) {
            /* A flag is no file name (a file called -x is ./-x); "-" is standard input. */
            if (i + 1 == argc || argv[i + 1][0] == '\0' ||
                (argv[i + 1][0] == '-' && argv[i + 1][1] != '\0'))
                return cb_err_set(&cli->err, CB_EINVAL,
                                  "-f needs a file of commands (- for standard input)");
            if (cli->batch_file != NULL)
                return cb_err_set(&cli->err, CB_EINVAL, "-f given twice; give one file");
            cli->batch_file = argv[++i];
            continue;
        }
        if (cli->verb == NULL) {
            cli->verb = w;
        } else if (cli->object == NULL && !is_option(w)) {
            cli->object = w;
        } else if (is_option(w)) {
            const char *eq = strchr(w, '=');
            size_t n = (size_t)(eq - w);
            struct cb_cli_opt *o;
            if (cli->n_opts == CB_CLI_MAX_OPTS)
                return cb_err_set(&cli->err, CB_EINVAL, "too many options");
            if (n >= sizeof(o->name_buf))
                return cb_err_set(&cli->err, CB_EINVAL, "unknown option '%.*s'", (int)n, w);
            o = &cli->opts[cli->n_opts];
            memcpy(o->name_buf, w, n);
            o->name_buf[n] = '\0';
            for (char *p = o->name_buf; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p + 32); /* netsh keys are case-insensitive */
            o->name = o->name_buf;
            o->value = eq + 1;
            for (int j = 0; j < cli->n_opts; j++)
                if (strcmp(cli->opts[j].name, o->name) == 0)
                    return cb_err_set(&cli->err, CB_EINVAL, "option %s= given twice", o->name);
            cli->n_opts++;
        } else {
            if (cli->n_pos == CB_CLI_MAX_POS)
                return cb_err_set(&cli->err, CB_EINVAL, "unexpected word '%s'", w);
            cli->pos[cli->n_pos++] = w;
        }
    }
    if (cli->batch_line)
        return 0;
    if (cli->store_url == NULL && (cli->store_url = getenv("CERTBIND_STORE")) != NULL &&
        cli->store_url[0] == '\0')
        cli->store_url = NULL;
    if (cli->store_key == NULL && (cli->store_key = getenv("CERTBIND_STORE_KEY")) != NULL &&
        cli->store_key[0] == '\0')
        cli->store_key = NULL;
    if (state != NULL)
        snprintf(cli->state_dir, sizeof(cli->state_dir), "%s", state);
    else
        default_state(cli->state_dir, sizeof(cli->state_dir));
    return 0;
}

int cb_cli_expect(struct cb_cli *cli, const char *const *allowed, int max_pos)
{
    for (int i = 0; i < cli->n_opts; i++) {
        bool ok = false;
        for (const char *const *a = allowed; *a != NULL && !ok; a++)
            ok = strcmp(*a, cli->opts[i].name) == 0;
        if (!ok) {
            char list[512] = "";
            for (const char *const *a = allowed; *a != NULL; a++) {
                strncat(list, *a, sizeof(list) - strlen(list) - 1);
                strncat(list, a[1] ? ", " : "", sizeof(list) - strlen(list) - 1);
            }
            return cb_err_set(
                &cli->err, CB_EINVAL, "'certbind %s %s' does not take %s=; it takes: %s", cli->verb,
                cli->object ? cli->object : "", cli->opts[i].name, list[0] ? list : "no options");
        }
    }
    if (cli->n_pos > max_pos)
        return cb_err_set(&cli->err, CB_EINVAL, "unexpected word '%s' after 'certbind %s %s'",
                          cli->pos[max_pos], cli->verb, cli->object ? cli->object : "");
    return 0;
}

const char *cb_cli_opt(const struct cb_cli *cli, const char *name)
{
    for (int i = 0; i < cli->n_opts; i++)
        if (strcmp(cli->opts[i].name, name) == 0)
            return cli->opts[i].value;
    return NULL;
}

int cb_cli_yesno(struct cb_cli *cli, const char *name, bool *out)
{
    const char *v = cb_cli_opt(cli, name);
    *out = false;
    if (v == NULL || strcmp(v, "no") == 0)
        return 0;
    if (strcmp(v, "yes") == 0) {
        *out = true;
        return 0;
    }
    return cb_err_set(&cli->err, CB_EINVAL, "%s=%s: use %s=yes or %s=no", name, v, name, name);
}

/* mkdir -p for the parents of the state folder (the folder itself is made by the store). */
static void make_parents(const char *dir)
{
    char path[CB_PATH_MAX + 1];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(path, 0700);
        *p = '/';
    }
}

/* The fleet's replica, brought up to date; etcd unreachable is an answer from the replica for
 * a reading command, a failure for a changing one. */
static int open_fleet(struct cb_cli *cli, enum cb_store_mode mode, struct cb_store *st)
{
    int ret;

    if ((ret = cb_fleet_open(cli->store_url, cli->store_key, st, &cli->fleet, &cli->err)) != 0)
        return ret;
    if ((ret = cb_fleet_sync(cli->fleet, &cli->err)) == 0)
        return 0;
    int64_t at = cb_fleet_synced_at(cli->fleet);
    if (ret != CB_EIO || mode != CB_STORE_READ || at == 0) {
        if (ret == CB_EIO && mode != CB_STORE_READ) {
            char why[sizeof(cli->err.msg)];
            snprintf(why, sizeof(why), "%s", cli->err.msg);
            cb_err_set(&cli->err, CB_EIO, "%.600s; nothing changed: try again when etcd is back",
                       why);
        } else if (ret == CB_EIO) {
            char why[sizeof(cli->err.msg)];
            snprintf(why, sizeof(why), "%s", cli->err.msg);
            cb_err_set(&cli->err, CB_EIO,
                       "%.600s, and the replica in %s was never synced: try again when etcd "
                       "is back",
                       why, cli->state_dir);
        }
        cb_fleet_close(cli->fleet);
        cli->fleet = NULL;
        return ret;
    }
    long age = (long)(time(NULL) - at);
    fprintf(stderr,
            "certbind: warning: %s; answering from the replica in %s, last synced %ld s ago\n",
            cli->err.msg, cli->state_dir, age < 0 ? 0 : age);
    return 0;
}

int cb_cli_open_store(struct cb_cli *cli, enum cb_store_mode mode, struct cb_store **out)
{
    struct cb_cli_batch *b = cli->batch;
    int ret;

    if (b != NULL && b->st != NULL) {
        *out = b->st;
        return 0;
    }
    if (cli->store_url == NULL) {
        if (mode == CB_STORE_WRITE)
            make_parents(cli->state_dir);
        ret = cb_store_open(cli->state_dir, mode, out, &cli->err);
    } else {
        /* The replica is written by the sync even for a command that only reads. */
        make_parents(cli->state_dir);
        if ((ret = cb_store_open(cli->state_dir, CB_STORE_WRITE, out, &cli->err)) == 0 &&
            (ret = open_fleet(cli, mode, *out)) != 0) {
            cb_store_close(*out);
            *out = NULL;
        }
    }
    if (ret != 0 || b == NULL)
        return ret;
    /* The batch's one store keeps its fleet (and commit hook) until the batch ends. */
    b->fleet = cli->fleet;
    cli->fleet = NULL;
    b->st = *out;
    if ((ret = cb_store_batch_begin(*out, &cli->err)) != 0) {
        cb_cli_close_batch_store(b); /* closes the store and its fleet, NULLs b->st */
        *out = NULL;
        return ret;
    }
    cb_store_batch_line(*out, b->line); /* the files of the line that opened it */
    return 0;
}

void cb_cli_close_store(struct cb_cli *cli, struct cb_store *st)
{
    if (cli->batch != NULL && st == cli->batch->st)
        return;
    /* The fleet first: it removes its hook from the store. */
    cb_fleet_close(cli->fleet);
    cli->fleet = NULL;
    cb_store_close(st);
}

void cb_cli_close_batch_store(struct cb_cli_batch *b)
{
    cb_fleet_close(b->fleet);
    b->fleet = NULL;
    cb_store_close(b->st);
    b->st = NULL;
}

bool cb_cli_verbose(const struct cb_cli *cli)
{
    return cli->batch == NULL;
}

int cb_cli_read_password(struct cb_cli *cli, const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0 && errno == ENOENT)
        return cb_err_set(&cli->err, CB_EINVAL, "no such file: password-file=%s", path);
    if (fd < 0)
        return cb_err_set(&cli->err, errno == EACCES ? CB_EPERM : CB_EIO,
                          "cannot read password-file %s: %s", path, strerror(errno));
    n = read(fd, out, size - 1);
    close(fd);
    if (n < 0)
        return cb_err_set(&cli->err, CB_EIO, "cannot read password-file %s: %s", path,
                          strerror(errno));
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

void cb_cli_print_json(json_t *value)
{
    json_dumpf(value, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(value);
}

void cb_cli_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL)
        snprintf(buf, size, "?");
    else
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
