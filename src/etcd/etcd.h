/*
 * etcd v3 through its JSON gateway (etcd 3.4: POST /v3/kv/range, /v3/kv/txn, /v3/watch,
 * /v3/lease/...), with libcurl and jansson. Debian has no maintained C client for etcd v3
 * (the gRPC API would need a generated protobuf client), and the gateway is part of every
 * etcd server. Keys and values are base64 in the JSON; this module hides that.
 *
 * Every call tries the endpoints in turn, starting from the last that answered, each with a
 * bounded timeout, and fails with CB_EIO "etcd unreachable at H:P,…: …" when none answers.
 * Responses are size-limited. A client is used by one thread at a time.
 */
#ifndef CB_ETCD_ETCD_H
#define CB_ETCD_ETCD_H

#include <certbind/certbind.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cb_etcd; /* opaque client */

/* url: "etcd://H:P[,H:P…]/PREFIX" (PREFIX non-empty, no trailing slash needed). Parses and
 * keeps the endpoint list; no I/O yet. CB_EINVAL with a clear message on a malformed URL.
 * Owned *out: cb_etcd_close. */
int cb_etcd_open(const char *url, struct cb_etcd **out, struct cb_err *err) CB_MUST_CHECK;
void cb_etcd_close(struct cb_etcd *e);
const char *cb_etcd_prefix(const struct cb_etcd *e); /* "PREFIX/" */
/* The endpoints as "H:P,H:P" (borrowed), for messages. */
const char *cb_etcd_endpoints(const struct cb_etcd *e);

/* Standard base64, as etcd's JSON carries bytes: owned NUL-terminated text, NULL when out of
 * memory; decoding (padding optional) gives owned bytes with a NUL after *out_len of them,
 * CB_EINVAL on bad input, CB_ENOMEM. */
char *cb_etcd_b64_encode(const void *in, size_t len);
int cb_etcd_b64_decode(const char *in, unsigned char **out, size_t *out_len) CB_MUST_CHECK;

struct cb_etcd_kv {
    char *key;            /* owned, full key */
    unsigned char *value; /* owned, value_len bytes (+ a NUL after them) */
    size_t value_len;
    int64_t create_rev, mod_rev;
};
struct cb_etcd_kvs {
    struct cb_etcd_kv *v; /* owned */
    size_t n;
    int64_t revision;
};
void cb_etcd_kvs_clear(struct cb_etcd_kvs *k);
void cb_etcd_kv_clear(struct cb_etcd_kv *kv);

/* Every key under `prefix` (full key prefix), at revision `rev` (0: latest), paged
 * internally (every page read at the first page's revision); out->revision is the store
 * revision read at. When rev is older than the compaction: CB_ENOENT with err saying
 * "compacted". Fills *out (cb_etcd_kvs_clear). */
int cb_etcd_range_prefix(struct cb_etcd *e, const char *prefix, int64_t rev,
                         struct cb_etcd_kvs *out, struct cb_err *err) CB_MUST_CHECK;
/* One key; CB_ENOENT when absent. *revision (may be NULL) gets the header revision.
 * Fills *out (cb_etcd_kv_clear). */
int cb_etcd_get(struct cb_etcd *e, const char *key, struct cb_etcd_kv *out, int64_t *revision,
                struct cb_err *err) CB_MUST_CHECK;

enum cb_etcd_cmp_target { CB_ETCD_MOD_REV, CB_ETCD_CREATE_REV };
/* Compare (EQUAL) the key's target revision with rev; rev 0 with CB_ETCD_CREATE_REV: the key
 * does not exist. */
struct cb_etcd_cmp {
    const char *key;
    enum cb_etcd_cmp_target target;
    int64_t rev;
};
enum cb_etcd_op_kind { CB_ETCD_PUT, CB_ETCD_DELETE };
struct cb_etcd_op {
    enum cb_etcd_op_kind kind;
    const char *key;
    const void *value; /* PUT */
    size_t value_len;  /* PUT */
    int64_t lease;     /* PUT: 0 none */
};
/* One atomic txn: if every compare holds, all ops apply. *ok says whether they did;
 * *revision (may be NULL) gets the resulting revision. */
int cb_etcd_txn(struct cb_etcd *e, const struct cb_etcd_cmp *cmp, size_t n_cmp,
                const struct cb_etcd_op *ops, size_t n_ops, bool *ok, int64_t *revision,
                struct cb_err *err) CB_MUST_CHECK;

/* Leases. keepalive: CB_ENOENT when the lease has expired. */
int cb_etcd_lease_grant(struct cb_etcd *e, int ttl_s, int64_t *id,
                        struct cb_err *err) CB_MUST_CHECK;
int cb_etcd_lease_keepalive(struct cb_etcd *e, int64_t id, struct cb_err *err) CB_MUST_CHECK;
int cb_etcd_lease_revoke(struct cb_etcd *e, int64_t id, struct cb_err *err) CB_MUST_CHECK;

/*
 * Watch every key under prefix from revision start_rev (inclusive), blocking: calls fn for
 * each batch of events in revision order (fn borrows them; n may be 0 for a progress
 * notification, which tells that the store is at `revision`). Returns when fn returns
 * non-zero (that value), when *stop becomes true (0; checked at least every 500 ms), when
 * the stream breaks (CB_EIO, with *resume_rev set to the next revision to ask for), or
 * when start_rev was compacted (CB_ENOENT, err says "compacted": do a full range again).
 */
enum cb_etcd_ev_type { CB_ETCD_EV_PUT, CB_ETCD_EV_DELETE };
struct cb_etcd_event {
    enum cb_etcd_ev_type type;
    struct cb_etcd_kv kv;
};
typedef int (*cb_etcd_watch_fn)(const struct cb_etcd_event *ev, size_t n, int64_t revision,
                                void *ctx);
int cb_etcd_watch(struct cb_etcd *e, const char *prefix, int64_t start_rev, cb_etcd_watch_fn fn,
                  void *ctx, const _Atomic bool *stop, int64_t *resume_rev,
                  struct cb_err *err) CB_MUST_CHECK;

#endif
