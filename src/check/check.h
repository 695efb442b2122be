/*
 * `certbind check` (design/bindings.md section 5): every way the configuration
 * serves the wrong certificate, no certificate, or an expired one, found before a
 * client meets it. Each finding has a stable code, a severity, the bindings
 * involved and a sentence that says how to fix it.
 */
#ifndef CB_CHECK_CHECK_H
#define CB_CHECK_CHECK_H

#include "store/store.h"

enum cb_severity { CB_SEV_WARNING = 1, CB_SEV_ERROR = 2 };

struct cb_finding {
    const char *code; /* "ip-shadows-sni", "key-unusable", … (static) */
    enum cb_severity severity;
    uint16_t port;   /* for grouping; 0 when the finding is about no single port */
    char *message;   /* owned */
    char **bindings; /* owned canonical keys, the first one being the one at fault */
    size_t n_bindings;
};

struct cb_findings {
    struct cb_finding *v;
    size_t n, cap;
    size_t errors, warnings;
};

/* A fleet node's replica older than this is reported (fleet-replica-stale): a serve that
 * follows etcd hears from it continuously, and a CLI command syncs before it reads. */
#define CB_CHECK_FLEET_STALE_S 60

struct cb_check_opts {
    int soon_days; /* expires-soon threshold (14) */
    int64_t now;   /* seconds since the epoch */
    /* A fleet node (--store etcd://…): when its replica last heard from etcd (seconds since
     * the epoch, 0: never); fleet_stale_s: the age past which that is reported
     * (fleet-replica-stale, a warning). fleet false: not a fleet node. */
    bool fleet;
    int64_t fleet_synced_at;
    int fleet_stale_s;
};

/*
 * Runs every check against the store and gives fn each finding (borrowed until fn returns),
 * sorted by port, then the first binding, then severity (errors first), then code. Memory
 * stays flat however many bindings, certificates and findings there are: what waits meanwhile
 * is in the store's temporary tables (store/spool.h). *errors and *warnings: how many of
 * each. A non-zero return from fn stops the walk and is returned.
 */
typedef int (*cb_finding_fn)(const struct cb_finding *x, void *ctx);
int cb_check_stream(struct cb_store *st, const struct cb_check_opts *opts, cb_finding_fn fn,
                    void *ctx, size_t *errors, size_t *warnings, struct cb_err *err) CB_MUST_CHECK;
/* cb_check_stream into *out (owned: cb_findings_clear()), in that order: for callers that
 * show the findings beside other things (the admin endpoint). */
int cb_check_run(struct cb_store *st, const struct cb_check_opts *opts, struct cb_findings *out,
                 struct cb_err *err) CB_MUST_CHECK;
void cb_findings_clear(struct cb_findings *f);

/*
 * The findings that one binding b (borrowed) brings about, found by the same rules and
 * told in the same words as cb_check_run tells them, without reading every binding:
 *  - CB_CHECK_CERT: unknown-cert, and key-unusable (tested as the service user);
 *  - CB_CHECK_SHADOW: ip-shadows-sni between b and the other bindings of its port, so b
 *    must be in the store already (add it in the transaction first).
 * Fills *out (owned: cb_findings_clear()), in that order; each finding names b first
 * when b is at fault, else the IP binding that is, then the others.
 */
#define CB_CHECK_CERT 1u
#define CB_CHECK_SHADOW 2u
/* With CB_CHECK_CERT: the key is not tested again (unknown-cert only), for a certificate
 * whose files the caller has just written for the service user and tested once. */
#define CB_CHECK_KEY_KNOWN 4u
int cb_check_binding(struct cb_store *st, const struct cb_binding *b, unsigned what,
                     struct cb_findings *out, struct cb_err *err) CB_MUST_CHECK;
const char *cb_severity_name(enum cb_severity s);

#endif
