/*
 * ACME in the store (design/bindings.md section 7): the store's one ACME account, and the
 * state of each managed binding (a binding with the toggle acme=enable). Commands write
 * the account and renewal requests; `serve` writes the account's URL and key path and
 * each binding's state. Every writer works inside the caller's transaction
 * (cb_store_begin ... cb_store_commit), and every commit bumps the store's generation, so
 * `serve` and the admin page see the change.
 */
#ifndef CB_STORE_ACME_H
#define CB_STORE_ACME_H

#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>

enum cb_acme_keytype_setting { CB_ACME_KT_ECDSA = 0, CB_ACME_KT_RSA = 1 };

/* The account. Fixed buffers: it lives on the stack. */
struct cb_acme_settings {
    char directory[512];                    /* https URL */
    char email[256];                        /* "" none */
    bool agreetos;                          /* the user agreed to the CA's terms of service */
    char cafile[CB_PATH_MAX + 1];           /* "" system roots */
    char eab_kid[256], eab_hmac[256];       /* "" none; eab_hmac is base64url, never printed */
    char dnshook[CB_PATH_MAX + 1];          /* "" none */
    int keytype;                            /* CB_ACME_KT_*: of the certificates ordered */
    char account_url[512];                  /* "" until registered (set by serve) */
    char account_key_path[CB_PATH_MAX + 1]; /* "" until made (serve makes it in keys/) */
};

/* "ecdsa", "rsa". */
const char *cb_acme_keytype_name(int keytype);

/* The account; CB_ENOENT with "set the account first: certbind set acme directory=URL
 * email=ADDRESS" when none was set. *out is written only on success. */
int cb_store_acme_settings_get(struct cb_store *st, struct cb_acme_settings *out,
                               struct cb_err *err) CB_MUST_CHECK;
/* Replaces the account with *in (borrowed; every field is written, so read, change and
 * put back). Inside the caller's transaction. No validation here: the command does it. */
int cb_store_acme_settings_put(struct cb_store *st, const struct cb_acme_settings *in,
                               struct cb_err *err) CB_MUST_CHECK;

enum cb_acme_status { CB_ACME_PENDING = 0, CB_ACME_VALID, CB_ACME_RENEWING, CB_ACME_FAILED };
/* "pending", "valid", "renewing", "failed" ("?" for anything else). */
const char *cb_acme_status_name(enum cb_acme_status s);

/*
 * The state of one managed binding.
 *
 * The renewal request protocol between `certbind acme renew` and the scheduler in serve:
 *  - the command sets renew_requested = now (and renew_force) with
 *    cb_store_acme_renew_request, then waits;
 *  - serve, when it takes the request, clears renew_requested (0) in the same transaction
 *    that sets status RENEWING and last_attempt = the attempt's start; when it declines a
 *    request that is not forced and not due, it clears renew_requested alone;
 *  - when the attempt ends, serve sets status VALID (certificate bound, last_error "") or
 *    FAILED (last_error, next_attempt, failures + 1).
 * The command's outcome: status VALID or FAILED with last_attempt > the request time (or
 * >= it once the request was taken), or a declined request (taken, not RENEWING, and no
 * attempt since it was made).
 */
struct cb_acme_state {
    char key[CB_KEY_TEXT_MAX]; /* the managed binding's canonical key */
    enum cb_acme_status status;
    /* The certificate it serves now, "" none: always the binding's certhash as stored,
     * never a copy (cb_store_acme_state_put ignores it: cb_certstore_rebind moves it). */
    char certhash[CB_THUMB_LEN + 1];
    /* Seconds since the epoch, 0 unset. not_after as read is the state's own when set,
     * else the served certificate's (a binding made managed keeps its certificate). */
    int64_t not_after, renew_after, last_attempt, next_attempt;
    unsigned failures;       /* in a row, for the backoff */
    char last_error[1024];   /* "" none: the CA's problem (type and detail) or what failed */
    int64_t renew_requested; /* `acme renew` asked at this time, 0 none */
    bool renew_force;
};

/* Every managed binding (flag acme set), in key order, with its state (a binding without a
 * state row yet: status pending, zeros). fn borrows s; a non-zero return stops the walk and
 * is returned. */
typedef int (*cb_acme_state_fn)(const struct cb_acme_state *s, void *ctx);
int cb_store_acme_state_foreach(struct cb_store *st, cb_acme_state_fn fn, void *ctx,
                                struct cb_err *err) CB_MUST_CHECK;
/* One managed binding's state by its canonical key text. CB_ENOENT: no such binding, or
 * not a managed one (err says which). */
int cb_store_acme_state_get(struct cb_store *st, const char *key, struct cb_acme_state *out,
                            struct cb_err *err) CB_MUST_CHECK;
/* Writes s (borrowed; s->certhash ignored) for the managed binding s->key, in the caller's
 * transaction. CB_ENOENT when s->key is not a managed binding. */
int cb_store_acme_state_put(struct cb_store *st, const struct cb_acme_state *s,
                            struct cb_err *err) CB_MUST_CHECK;
/* Records a renewal request at `now` (force: even when not due) for the managed binding
 * key (canonical text), or for every managed binding when key is NULL; in the caller's
 * transaction. CB_ENOENT when key is not a managed binding, or (key NULL) when there is
 * none. */
int cb_store_acme_renew_request(struct cb_store *st, const char *key, bool force, int64_t now,
                                struct cb_err *err) CB_MUST_CHECK;

#endif
