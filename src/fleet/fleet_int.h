/*
 * Internal to src/fleet: the fleet handle, and the row codec that push.c and pull.c share.
 */
#ifndef CB_FLEET_FLEET_INT_H
#define CB_FLEET_FLEET_INT_H

#include "etcd/etcd.h"
#include "fleet/fleet.h"
#include "store/replica.h"
#include "tls/seal.h"

struct cb_fleet {
    struct cb_etcd *etcd; /* owned */
    struct cb_store *st;  /* borrowed: the replica */
    char url[512];
    bool have_key;
    bool key_verified; /* the key opened the fleet's key check value */
    unsigned char key[CB_SEAL_KEY_LEN];
    int64_t revision, synced_at;
    int64_t pushed; /* the revision of the last push's txn */
};

/* Where a replicated row lives in etcd: "PREFIX/binding/KEY" for (bindings, KEY), and so
 * on (fleet/fleet.h). 0 and the key in out; CB_ENOENT for a row that stays on the node
 * (a node-local setting), CB_EINVAL when it does not fit. */
int cb_fleet__etcd_key(const struct cb_fleet *f, const char *table, const char *row_key, char *out,
                       size_t size) CB_MUST_CHECK;
/* The reverse: the table and row key (into row_key) of an etcd key under the prefix;
 * CB_ENOENT for a key that is not a replicated row (a lock, something unknown). */
int cb_fleet__row_of(const struct cb_fleet *f, const char *etcd_key, const char **table,
                     char *row_key, size_t size) CB_MUST_CHECK;

/* Encodes the replica's row (table, row_key) for etcd key ek: owned JSON text in *out
 * (secrets sealed under the store key). CB_ENOENT when the row is not in the replica;
 * CB_EKEY (err says --store-key) when it holds a secret and no key was given. */
int cb_fleet__encode(struct cb_fleet *f, const char *table, const char *row_key, const char *ek,
                     char **out, size_t *out_len, struct cb_err *err) CB_MUST_CHECK;
/* Writes the row a value from etcd describes into the replica, inside the caller's
 * transaction (applying mode). *partial is set when the row's secret could not be opened
 * for want of a store key (the row is then left out). A value that cannot be decoded:
 * CB_EBADFILE, after a binding was written as a damaged row. */
int cb_fleet__apply_put(struct cb_fleet *f, const char *table, const char *row_key, const char *ek,
                        const unsigned char *value, size_t len, bool *partial,
                        struct cb_err *err) CB_MUST_CHECK;
/* Deletes the row (table, row_key) from the replica (its files after the commit). */
int cb_fleet__apply_delete(struct cb_fleet *f, const char *table, const char *row_key,
                           struct cb_err *err) CB_MUST_CHECK;

/* PREFIX/keycheck: a value sealed under the fleet's store key when its first secret was
 * pushed. A key that cannot open it is the wrong key (CB_EKEY, the command fails); with a key
 * that does, a sealed value that cannot be opened is damaged (skipped like a damaged row). */
#define CB_FLEET_KEY_CHECK "keycheck"
/* Checks the key against the check value kv (sets f->key_verified). */
int cb_fleet__key_check(struct cb_fleet *f, const struct cb_etcd_kv *kv,
                        struct cb_err *err) CB_MUST_CHECK;
/* A new check value for etcd key ek under the store key: owned *out. */
int cb_fleet__key_check_value(struct cb_fleet *f, const char *ek, unsigned char **out,
                              size_t *out_len, struct cb_err *err) CB_MUST_CHECK;

/* The commit hook (push.c). */
int cb_fleet__push(struct cb_store *st, const struct cb_store_dirty *d, size_t n, void *ctx,
                   struct cb_err *err);

#endif
