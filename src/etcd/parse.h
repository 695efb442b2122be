/*
 * Internal to src/etcd: base64 and the parsers of what the JSON gateway answers (range,
 * txn, lease and watch-stream messages). Kept apart from the HTTP code so that the fuzz
 * target (fuzz/fuzz_etcd_json.c) and the unit tests reach them without a server.
 */
#ifndef CB_ETCD_PARSE_H
#define CB_ETCD_PARSE_H

#include "etcd/etcd.h"

#include <jansson.h>

/* The largest single answer (a range page, a txn, one watch message) accepted. */
#define CB_ETCD_MAX_RESPONSE (32u * 1024 * 1024)

/* A gateway's int64 (a JSON string of digits, or a number); absent: 0. CB_EINVAL otherwise. */
int cb_etcd__int64(const json_t *v, int64_t *out) CB_MUST_CHECK;

/* Parses the gateway's answer body as JSON: an error object ("error"/"message", "code")
 * becomes CB_EIO, or CB_ENOENT for a compacted revision ("compacted" in err); *code gets
 * the gRPC code (0 on success). Owned *out on success. */
int cb_etcd__parse_body(const char *body, size_t len, json_t **out, int *code,
                        struct cb_err *err) CB_MUST_CHECK;
/* {"header":{"revision"}} of an answer: *rev. CB_EIO when missing or malformed. */
int cb_etcd__header_rev(const json_t *resp, int64_t *rev, struct cb_err *err) CB_MUST_CHECK;
/* One KeyValue object into *kv (cleared first; cb_etcd_kv_clear). */
int cb_etcd__parse_kv(const json_t *o, struct cb_etcd_kv *kv, struct cb_err *err) CB_MUST_CHECK;
/* A range answer: appends its kvs to *out, *more says whether a page follows. */
int cb_etcd__parse_range(const json_t *resp, struct cb_etcd_kvs *out, bool *more,
                         struct cb_err *err) CB_MUST_CHECK;

/* One message of the watch stream ({"result":{…}} or {"error":{…}}). */
struct cb_etcd__watch_msg {
    int64_t revision;         /* header revision */
    bool created, canceled;   /* the watch started; the server ended it */
    int64_t compact_revision; /* > 0: start_rev was compacted */
    char cancel_reason[256];
    struct cb_etcd_event *ev; /* owned */
    size_t n_ev;
};
int cb_etcd__parse_watch_msg(const char *text, size_t len, struct cb_etcd__watch_msg *out,
                             struct cb_err *err) CB_MUST_CHECK;
void cb_etcd__watch_msg_clear(struct cb_etcd__watch_msg *m);

/*
 * Splits a byte stream of concatenated JSON objects (what /v3/watch sends) into whole
 * objects, holding at most CB_ETCD_MAX_RESPONSE bytes of an unfinished one.
 */
struct cb_etcd__splitter {
    char *buf; /* owned */
    size_t len, cap, scan;
    size_t pending; /* bytes of the object handed out last, dropped at the next call */
    int depth;
    bool in_str, esc;
};
/* Adds bytes; CB_EIO when an object grows beyond the limit or the stream is not objects. */
int cb_etcd__split_feed(struct cb_etcd__splitter *s, const char *data, size_t n,
                        struct cb_err *err) CB_MUST_CHECK;
/* The next whole object: 1 and *obj, *len (borrowed until the next call), 0 when none yet. */
int cb_etcd__split_next(struct cb_etcd__splitter *s, const char **obj, size_t *len);
void cb_etcd__split_free(struct cb_etcd__splitter *s);

#endif
