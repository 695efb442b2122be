/*
 * The netsh-style command line: `certbind VERB OBJECT [WORD] key=value … [--flags]`.
 * Each command is a function that returns 0 or a CB_E* code with cli->err filled.
 */
#ifndef CB_CLI_CLI_H
#define CB_CLI_CLI_H

#include "binding/binding.h"
#include "certstore/certstore.h"
#include "net/iplisten.h"
#include "store/store.h"
#include "tls/cert.h"

#include <stdbool.h>
#include <stdio.h>

#define CB_CLI_MAX_OPTS 48
#define CB_CLI_MAX_POS 64 /* add cert FILE FILE ... */

struct cb_cli_opt {
    const char *name; /* borrowed from argv, up to '=' (copied) */
    const char *value;
    char name_buf[32];
};

/* One file of a batch's `add cert` line, loaded ahead of the line's turn by the batch's
 * reader (batch_read.c): what cb_cli_load_cert and the encoding of its files would give. */
struct cb_cli_prepared {
    char *file; /* as the line names it, owned */
    int ret;    /* 0, or why it could not be loaded (err) */
    struct cb_err err;
    struct cb_cert_bundle *bundle; /* owned until add cert takes it */
    struct cb_cert_info info;      /* owned until add cert takes it */
    struct cb_certstore_pems pems; /* owned until add cert takes it; may be empty */
};

/* A batch being run (cb_cli_batch): its one store and transaction, and what it did. */
struct cb_fleet;

struct cb_cli_batch {
    struct cb_store *st;              /* opened by the first command that needs it; owned */
    struct cb_fleet *fleet;           /* with --store: st's fleet, owned */
    struct cb_cert_keycache *keys;    /* the key= file last read (tls/cert.h), owned */
    unsigned long line;               /* the line running, which new files are tagged with */
    struct cb_cli_prepared *prepared; /* the running line's files, loaded ahead; or NULL */
    int n_prepared;
    size_t commands;
    size_t certs_added, certs_present, certs_deleted;
    size_t bindings_added, bindings_updated, bindings_deleted;
    /* The key test as the service user (a process of its own as root) is not repeated for
     * every binding: rings of the last certificates this batch wrote and of those whose
     * key passed the test. A binding to one that passed needs no test; nor does one to a
     * certificate written here once any of those passed (written alike, by this process,
     * for that user, into the same folder). */
    char written[CB_CLI_MAX_POS][CB_THUMB_LEN + 1];
    char tested[CB_CLI_MAX_POS][CB_THUMB_LEN + 1];
    unsigned n_written, n_tested;
    bool written_key_tested;
    /* The service user new files are given to, looked up by the first `add cert`
     * (cb_certstore_batch_owner): 0 not yet, 1 none, 2 owner. */
    int owner_known;
    struct cb_user owner;
};

struct cb_cli {
    char state_dir[CB_PATH_MAX + 1];
    const char *store_url;      /* --store URL or $CERTBIND_STORE; NULL: the local store */
    const char *store_key;      /* --store-key FILE or $CERTBIND_STORE_KEY: a path, never a key */
    struct cb_fleet *fleet;     /* owned while a command's store is open (cb_cli_open_store) */
    const char *batch_file;     /* -f FILE, borrowed from argv */
    struct cb_cli_batch *batch; /* set while a line of a batch runs: borrowed */
    bool batch_line;            /* parsed as a batch's line: the state and store are the batch's, so
                                 * cb_cli_parse looks up no defaults for them (an environment scan and a
                                 * system call a line) */
    bool json;
    bool help;
    const char *verb;
    const char *object;
    const char *pos[CB_CLI_MAX_POS];
    int n_pos;
    struct cb_cli_opt opts[CB_CLI_MAX_OPTS];
    int n_opts;
    /* serve flags */
    int workers;
    int grace;
    int max_conns;
    int max_conns_binding;
    int cert_cache_mb; /* serve --cert-cache-mb, 0: not given */
    int handshake_timeout;
    int idle_timeout;
    const char *admin; /* --admin ADDR:PORT, borrowed from argv */
    bool admin_public;
    bool no_affinity; /* serve --no-affinity: no passing of connections between workers */
    struct cb_iplisten iplisten; /* serve --iplisten ADDR, repeatable */
    int64_t ticket_rotate_s;     /* serve --ticket-rotate HOURS, in seconds; 0: not given */
    struct cb_err err;
};

/* Parses argv (borrowed: cli keeps pointers into it). CB_EINVAL on malformed words. */
int cb_cli_parse(struct cb_cli *cli, int argc, char **argv) CB_MUST_CHECK;
/* Refuses options not in the NULL-terminated list `allowed`, and extra positionals. */
int cb_cli_expect(struct cb_cli *cli, const char *const *allowed, int max_pos) CB_MUST_CHECK;
/* The value of option `name`, or NULL. */
const char *cb_cli_opt(const struct cb_cli *cli, const char *name);
/* yes/no option: *out false when absent. CB_EINVAL when not yes|no. */
int cb_cli_yesno(struct cb_cli *cli, const char *name, bool *out) CB_MUST_CHECK;
/* Opens the store of cli->state_dir (owned: give it back with cb_cli_close_store). Inside a
 * batch, every command gets the batch's one store, inside its one transaction. With --store,
 * that store is the fleet's replica: opened for writing, brought up to date (cb_fleet_sync),
 * and changes made through it go to etcd when they commit. etcd unreachable: a reading
 * command (mode READ) answers from the replica with a warning naming its age; a changing one
 * fails (CB_EIO), nothing changed. */
int cb_cli_open_store(struct cb_cli *cli, enum cb_store_mode mode,
                      struct cb_store **out) CB_MUST_CHECK;
/* Closes a store of cb_cli_open_store and its fleet (the batch's stays open until the batch
 * ends: cb_cli_close_batch_store). */
void cb_cli_close_store(struct cb_cli *cli, struct cb_store *st);
/* Closes the batch's store and its fleet (b->st may be NULL). */
void cb_cli_close_batch_store(struct cb_cli_batch *b);
/* Whether a command should print what it did: not inside a batch, which prints one summary. */
bool cb_cli_verbose(const struct cb_cli *cli);
/* Runs the command cli->verb and cli->object name (dispatch.c). */
int cb_cli_run(struct cb_cli *cli) CB_MUST_CHECK;
/* Runs the commands of cli->batch_file in one transaction and prints a summary (batch.c). */
int cb_cli_batch(struct cb_cli *cli) CB_MUST_CHECK;
/* Reads a password file's first line into out (size bytes). */
int cb_cli_read_password(struct cb_cli *cli, const char *path, char *out,
                         size_t size) CB_MUST_CHECK;

int cb_cmd_add_cert(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_show_cert(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_delete_cert(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_add_sslcert(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_update_sslcert(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_delete_sslcert(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_show_sslcert(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_resolve(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_set(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_serve(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_check(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_set_acme(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_show_acme(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_acme(struct cb_cli *cli) CB_MUST_CHECK;

/* Prints a JSON value (stolen) on stdout, followed by a newline. */
struct json_t;
void cb_cli_print_json(struct json_t *value);
/* {"NAME": [elements]} printed one element at a time, the same bytes as cb_cli_print_json
 * gives for the whole document: _begin, _add for each element (stolen), then _end. */
struct cb_cli_json_list {
    size_t n; /* elements printed so far */
};
void cb_cli_json_list_begin(struct cb_cli_json_list *l, const char *name);
void cb_cli_json_list_add(struct cb_cli_json_list *l, struct json_t *item);
void cb_cli_json_list_end(struct cb_cli_json_list *l);
/* ISO 8601 UTC time. */
void cb_cli_time(int64_t t, char *buf, size_t size);

/* Prints "certbind: warning: MSG" on stderr (a cb_svcuser_warn_fn; arg unused). */
void cb_cli_warn(const char *msg, void *arg);
/* Loads certificate `file` with the command's key= and password-file= options and
 * fills *info; on success the caller owns *bundle and *info. */
int cb_cli_load_cert(struct cb_cli *cli, const char *file, struct cb_cert_bundle **bundle,
                     struct cb_cert_info *info) CB_MUST_CHECK;
int cb_cmd_deploy(struct cb_cli *cli) CB_MUST_CHECK;
int cb_cmd_import(struct cb_cli *cli) CB_MUST_CHECK;

#endif
