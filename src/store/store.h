/*
 * The store: certificates, bindings and settings in SQLite (WAL mode) inside the
 * state folder, beside the certificate and key files. The only module that
 * includes sqlite3.h. Every changing command runs in one transaction between
 * cb_store_begin() and cb_store_commit(); bad input is refused before anything is
 * written, and a failure rolls back.
 */
#ifndef CB_STORE_STORE_H
#define CB_STORE_STORE_H

#include "binding/binding.h"
#include "binding/snapshot.h"
#include "store/cert_info.h"

#include <sys/types.h>

#define CB_STORE_SCHEMA_VERSION 8

struct cb_store;

/* A stored certificate. info's strings are owned: release with cb_cert_row_clear(). */
struct cb_cert_row {
    struct cb_cert_info info;
    char cert_path[CB_PATH_MAX + 1]; /* absolute */
    char key_path[CB_PATH_MAX + 1];  /* absolute */
    int64_t added_at;
    bool acme_issued; /* obtained by serve through ACME, not imported by a person */
};

enum cb_store_mode { CB_STORE_READ = 0, CB_STORE_WRITE = 1 };

/*
 * Opens (WRITE: creating if needed, mode 0700) the state folder `dir` and its
 * database, migrating the schema. Returns an owned store in *out.
 * Errors: CB_EIO/CB_EPERM (folder), CB_ENOENT (READ and no store yet), CB_ESTORE.
 */
int cb_store_open(const char *dir, enum cb_store_mode mode, struct cb_store **out,
                  struct cb_err *err) CB_MUST_CHECK;
void cb_store_close(struct cb_store *st);
const char *cb_store_dir(const struct cb_store *st);

/* BEGIN IMMEDIATE: CB_EBUSY with "try again" if another writer holds the store. */
int cb_store_begin(struct cb_store *st, struct cb_err *err) CB_MUST_CHECK;
int cb_store_commit(struct cb_store *st, struct cb_err *err) CB_MUST_CHECK;
void cb_store_rollback(struct cb_store *st);

/*
 * A batch: one transaction around many commands (`certbind -f`). While it is open,
 * cb_store_begin, cb_store_commit and cb_store_rollback do nothing (each command's work
 * stays in the batch's transaction; a command that fails makes its caller roll the batch
 * back), and the files of cb_store_unlink_on_rollback/_after_commit are kept on disk in a
 * temporary table, not in memory. cb_store_batch_commit flushes the file system the state
 * folder is on (syncfs: files written in the batch need no sync each) and commits
 * everything as one generation; on failure everything is rolled back. A certificate
 * deleted in a batch cannot be added back in it (CB_EINVAL from _on_rollback).
 */
int cb_store_batch_begin(struct cb_store *st, struct cb_err *err) CB_MUST_CHECK;
int cb_store_batch_commit(struct cb_store *st, struct cb_err *err) CB_MUST_CHECK;
/* Rolls the batch back and removes the files written for it. No-op without a batch. */
void cb_store_batch_rollback(struct cb_store *st);
bool cb_store_in_batch(const struct cb_store *st);

/*
 * New files of a batch, created on a thread of their own while the batch goes on
 * (batch_files.c). _line tags the files that follow with the batch's line (for the error).
 * _write registers path (borrowed, inside the state folder) to be removed on a rollback and
 * queues it with len bytes of data (taken: freed and cleansed), mode, owner uid:gid unless
 * uid is (uid_t)-1. The queue is bounded: _write waits when it is full. A file that cannot
 * be written fails the batch: a later _write, _wait_files or cb_store_batch_commit returns
 * its error, and _failed_line its line. _wait_files returns once the queued files are on
 * disk (for reading one back). Outside a batch _write and _wait_files are CB_EINVAL.
 */
void cb_store_batch_line(struct cb_store *st, unsigned long line);
int cb_store_batch_write(struct cb_store *st, const char *path, mode_t mode, uid_t uid, gid_t gid,
                         char *data, size_t len, struct cb_err *err) CB_MUST_CHECK;
int cb_store_batch_wait_files(struct cb_store *st, struct cb_err *err) CB_MUST_CHECK;
unsigned long cb_store_batch_failed_line(const struct cb_store *st);

/*
 * Files that follow the current transaction (path borrowed, copied; ignored unless it
 * lies inside the state folder, cb_store_owns): _on_rollback removes a file written for
 * rows the transaction adds when it is rolled back (or fails to commit, or the store is
 * closed inside it); _after_commit removes a file of rows it deletes once it has
 * committed, so a crash before the commit leaves the old rows whole. CB_ENOMEM.
 */
int cb_store_unlink_on_rollback(struct cb_store *st, const char *path,
                                struct cb_err *err) CB_MUST_CHECK;
int cb_store_unlink_after_commit(struct cb_store *st, const char *path,
                                 struct cb_err *err) CB_MUST_CHECK;
/* Inside a batch: whether path is a file the batch wrote (for a row it adds). One lookup
 * in the batch's file table, which stays on disk however many files the batch writes.
 * False outside a batch, and when the lookup fails. */
bool cb_store_batch_wrote(struct cb_store *st, const char *path);

/*
 * The running serve's lock: STATE/serve.lock, held with an open-file-description write
 * lock (fcntl F_OFD_SETLK) for as long as *fd stays open. The daemon takes it once at
 * start (it is kept across fork, and closing other descriptors of the file does not
 * drop it); closing *fd releases it. CB_EBUSY when another serve holds it.
 */
int cb_store_serve_lock(struct cb_store *st, int *fd, struct cb_err *err) CB_MUST_CHECK;
/* Whether any process holds the serve lock (fcntl F_OFD_GETLK; a classic POSIX lock
 * counts too). CB_EIO/CB_EPERM when the lock file cannot be read. */
int cb_store_serve_running(struct cb_store *st, bool *running) CB_MUST_CHECK;

/* Certificates. Paths are stored relative to the state folder when inside it. */
int cb_store_cert_put(struct cb_store *st, const struct cb_cert_info *info, const char *cert_path,
                      const char *key_path, struct cb_err *err) CB_MUST_CHECK;
/* CB_ENOENT when absent. Fills *row (clear with cb_cert_row_clear). */
int cb_store_cert_get(struct cb_store *st, const char *thumbprint, struct cb_cert_row *row,
                      struct cb_err *err) CB_MUST_CHECK;
int cb_store_cert_delete(struct cb_store *st, const char *thumbprint,
                         struct cb_err *err) CB_MUST_CHECK;
/* Marks a stored certificate as obtained through ACME (cb_cert_row.acme_issued), which
 * lets cb_certstore_rebind delete it once no binding uses it. CB_ENOENT when absent. */
int cb_store_cert_mark_acme(struct cb_store *st, const char *thumbprint,
                            struct cb_err *err) CB_MUST_CHECK;
/* Calls fn for each certificate in thumbprint order; fn borrows row. A non-zero
 * return from fn stops the walk and is returned. */
typedef int (*cb_cert_fn)(const struct cb_cert_row *row, void *ctx);
int cb_store_cert_foreach(struct cb_store *st, cb_cert_fn fn, void *ctx,
                          struct cb_err *err) CB_MUST_CHECK;
void cb_cert_row_clear(struct cb_cert_row *row);
/* Calls fn with each certificate's thumbprint and absolute file paths (borrowed), in no
 * set order and without the names: at 10^6 certificates a sequential read of the table,
 * where cb_store_cert_foreach makes two index lookups a certificate. A non-zero return
 * from fn stops the walk and is returned. */
typedef int (*cb_cert_paths_fn)(const char *thumb, const char *cert_path, const char *key_path,
                                void *ctx);
int cb_store_cert_paths_foreach(struct cb_store *st, cb_cert_paths_fn fn, void *ctx,
                                struct cb_err *err) CB_MUST_CHECK;

/* Bindings. */
int cb_store_binding_get(struct cb_store *st, const struct cb_binding_key *key,
                         struct cb_binding *out, struct cb_err *err) CB_MUST_CHECK;
int cb_store_binding_insert(struct cb_store *st, const struct cb_binding *b,
                            struct cb_err *err) CB_MUST_CHECK;
int cb_store_binding_update(struct cb_store *st, const struct cb_binding *b,
                            struct cb_err *err) CB_MUST_CHECK;
int cb_store_binding_delete(struct cb_store *st, const struct cb_binding_key *key,
                            struct cb_err *err) CB_MUST_CHECK;
/* fn borrows b; thumbprint NULL walks all bindings, else those using that certificate
 * (as their first or their second, certhash=T1,T2). */
typedef int (*cb_binding_fn)(const struct cb_binding *b, void *ctx);
int cb_store_binding_foreach(struct cb_store *st, const char *thumbprint, cb_binding_fn fn,
                             void *ctx, struct cb_err *err) CB_MUST_CHECK;
/* Every binding, in no promised order (the store's own: one sequential read, where key
 * order costs a random page read a binding, 30x more at 10^6): for scans that index what
 * they find themselves. */
int cb_store_binding_foreach_stored(struct cb_store *st, cb_binding_fn fn, void *ctx,
                                    struct cb_err *err) CB_MUST_CHECK;

/* Walks the bindings of one port (every kind), in key order. */
/* A damaged binding row (one that the strict readers refuse), as a snapshot load meets it:
 * its key as stored (borrowed), why it cannot be read, and whether its key is readable (the
 * snapshot then holds it as a binding that fails its handshakes; else it is left out). A
 * non-zero return stops the load and is returned. */
typedef int (*cb_damaged_fn)(const char *key_text, const char *reason, bool key_readable,
                             void *ctx);
int cb_store_binding_foreach_port(struct cb_store *st, uint16_t port, cb_binding_fn fn, void *ctx,
                                  struct cb_err *err) CB_MUST_CHECK;

/* Walks the bindings of one port whose key starts with prefix ("ipport=" or
 * "hostnameport="), in key order, at most limit of them (0: all). Uses the key
 * index: cheap for the few IP bindings among many names. */
int cb_store_binding_foreach_port_prefix(struct cb_store *st, uint16_t port, const char *prefix,
                                         size_t limit, cb_binding_fn fn, void *ctx,
                                         struct cb_err *err) CB_MUST_CHECK;

/* Settings ("user"). CB_ENOENT when unset. */
int cb_store_setting_get(struct cb_store *st, const char *name, char *out, size_t size,
                         struct cb_err *err) CB_MUST_CHECK;
int cb_store_setting_set(struct cb_store *st, const char *name, const char *value,
                         struct cb_err *err) CB_MUST_CHECK;

/* Changes whenever another connection commits (PRAGMA data_version). */
int cb_store_data_version(struct cb_store *st, uint64_t *out) CB_MUST_CHECK;
/* The commit counter kept in the store: bumped by every changing command. */
int cb_store_generation(struct cb_store *st, uint64_t *out) CB_MUST_CHECK;

/* The binding changes that lead from one generation to the store's current one. */
struct cb_store_changes {
    uint64_t generation;    /* the generation they lead to */
    struct cb_binding *set; /* owned: added or changed, as stored now */
    size_t n_set;
    struct cb_binding_key *removed; /* owned: keys no longer in the store */
    size_t n_removed;
    bool challenges; /* the pending TLS-ALPN-01 challenges changed (store/challenge.h):
                      * read them again with cb_store_challenges_load */
    bool tickets;    /* the session ticket keys changed (store/tickets.h): read them
                      * again with cb_store_ticket_keys_load */
    /* owned: certificates whose cached OCSP response changed (store/ocsp.h) */
    char (*ocsp)[CB_THUMB_LEN + 1];
    size_t n_ocsp;
    /* Every commit since `from` changed only challenges, ticket keys or OCSP responses, no
     * binding, no certificate: the bindings' snapshot stays as it is. */
    bool only_challenges;
};
/*
 * Reads, in one transaction, what changed since generation `from`. CB_ENOENT when
 * the store cannot tell (older than the history it keeps, edited by other means,
 * or too many changes to be worth it): read every binding instead. Clear *out with
 * cb_store_changes_clear().
 */
int cb_store_changes_since(struct cb_store *st, uint64_t from, struct cb_store_changes *out,
                           struct cb_err *err) CB_MUST_CHECK;
void cb_store_changes_clear(struct cb_store_changes *c);

/* Every binding in key order as serve reads them (a damaged row whose key is readable comes
 * to fn with CB_OPT_DAMAGED and nothing else), with its key as stored (borrowed: the
 * canonical text, unless the row was written by other means; NULL when it is not plain
 * text: a BLOB, or text with a NUL in it), telling on_damaged (may be
 * NULL) of each damaged row, readable key or not: one read for both, holding one binding at
 * a time. */
typedef int (*cb_binding_stored_fn)(const struct cb_binding *b, const char *stored_key, void *ctx);
int cb_store_binding_foreach_serving(struct cb_store *st, cb_binding_stored_fn fn,
                                     cb_damaged_fn on_damaged, void *ctx,
                                     struct cb_err *err) CB_MUST_CHECK;
/* A snapshot of the central store (ccs) bindings alone, with their folders' files. Owned. */
int cb_store_load_ccs_snapshot(struct cb_store *st, struct cb_snapshot **out,
                               struct cb_err *err) CB_MUST_CHECK;
/* One read transaction for several reads (what they see is one commit), in which temporary
 * tables may be written (store/spool.h): its end rolls them back, so close the spools opened
 * in it before it ends. Not inside another transaction or a batch. */
int cb_store_read_begin(struct cb_store *st, struct cb_err *err) CB_MUST_CHECK;
void cb_store_read_end(struct cb_store *st);

/* Builds a resolver snapshot of every binding, scanning ccs folders. Owned result. */
int cb_store_load_snapshot(struct cb_store *st, struct cb_snapshot **out,
                           struct cb_err *err) CB_MUST_CHECK;
/* cb_store_load_snapshot, telling on_damaged (may be NULL) of each damaged row met: one
 * read of the bindings for both. key_order: the snapshot's bindings (and the damaged rows)
 * in key order, as listings show them; else in the order the store keeps them, 30x faster
 * at 10^6 bindings, for serve, which looks its bindings up by key only. */
int cb_store_load_snapshot_reporting(struct cb_store *st, struct cb_snapshot **out,
                                     cb_damaged_fn on_damaged, void *ctx, bool key_order,
                                     struct cb_err *err) CB_MUST_CHECK;
/*
 * A snapshot of what decides the listening sockets only (cb_listen_plan gives the same
 * plan from it as from the full one): every IP binding, and one other binding per port.
 * No central-store folder is listed. For serve's start-up checks: at 10^6 bindings it
 * holds a handful, where the full snapshot holds them all and their index.
 */
int cb_store_load_endpoints(struct cb_store *st, struct cb_snapshot **out,
                            struct cb_err *err) CB_MUST_CHECK;
/* Decodes a stored binding row (key text and option columns) into *out. certhash2 is the
 * second certificate of certhash=T1,T2, "" for none; clientca the client CA file, "" for none. */
int cb_store_decode_binding(const char *key, const char *certhash, const char *certhash2,
                            const char *appid, const char *backend, const char *ccspath,
                            const char *clientca, int64_t flags, int64_t proxy,
                            struct cb_binding *out, struct cb_err *err) CB_MUST_CHECK;

/* Whether path lies inside the state folder (a copy certbind owns and may delete), not
 * merely a path that starts with the folder's name, such as a linked "/srv/state-live". */
bool cb_store_owns(const struct cb_store *st, const char *path);

/* Paths inside the state folder for a thumbprint's files. */
void cb_store_cert_paths(const struct cb_store *st, const char *thumbprint, char *cert_path,
                         char *key_path, size_t size);

#endif
