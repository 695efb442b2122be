/*
 * etcd_probe (test-only, never installed): drives src/etcd against a real etcd for
 * tests/fleet/test_etcd.py. Each scenario prints what it saw, one line per fact, and exits 0
 * when every check held; a failed check prints "FAIL ..." and exits 1.
 *   etcd_probe kv URL          paging, get, txn compares, deletes
 *   etcd_probe lease URL       grant, put with the lease, keepalive, revoke, expiry
 *   etcd_probe watch URL N     watch the prefix from the current revision: prints each
 *                              event ("ev put KEY VALUE REV") until N events, then exits
 *   etcd_probe compacted URL REV  a watch and a range from REV must say "compacted"
 *   etcd_probe loop URL SECONDS  range and txn every 50 ms for SECONDS, counting failures
 *                              (the failover test stops the leader meanwhile)
 */
#include "etcd/etcd.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int scenario_kv(struct cb_etcd *e)
{
    const char *p = cb_etcd_prefix(e);
    char key[512], other[512];
    struct cb_etcd_kvs kvs;
    struct cb_etcd_kv kv;
    struct cb_err err = {0};
    int64_t rev, rev2;
    bool ok;
    int ret;

    /* Empty prefix. */
    ret = cb_etcd_range_prefix(e, p, 0, &kvs, &err);
    CHECK(ret == 0 && kvs.n == 0 && kvs.revision > 0, "empty range: %d n=%zu", ret, kvs.n);
    cb_etcd_kvs_clear(&kvs);
    /* 1203 keys: three pages of 500, in key order, binary values survive. */
    for (int i = 0; i < 1203; i++) {
        struct cb_etcd_op op;
        unsigned char val[4] = {0, (unsigned char)(i & 0xff), 0xff, '\n'};
        snprintf(key, sizeof(key), "%sk/%05d", p, i);
        op = (struct cb_etcd_op){.kind = CB_ETCD_PUT, .key = key, .value = val, .value_len = 4};
        ret = cb_etcd_txn(e, NULL, 0, &op, 1, &ok, &rev, &err);
        if (ret != 0 || !ok) {
            CHECK(0, "put %d: %s", i, err.msg);
            return 1;
        }
    }
    snprintf(key, sizeof(key), "%sk/", p);
    ret = cb_etcd_range_prefix(e, key, 0, &kvs, &err);
    CHECK(ret == 0 && kvs.n == 1203, "paged range: %d n=%zu %s", ret, kvs.n, err.msg);
    for (size_t i = 0; ret == 0 && i < kvs.n; i++) {
        snprintf(other, sizeof(other), "%sk/%05zu", p, i);
        CHECK(strcmp(kvs.v[i].key, other) == 0 && kvs.v[i].value_len == 4 &&
                  kvs.v[i].value[1] == (unsigned char)(i & 0xff) && kvs.v[i].value[4] == 0,
              "kv %zu: %s", i, kvs.v[i].key);
    }
    CHECK(kvs.revision == rev, "range revision %lld, last put %lld", (long long)kvs.revision,
          (long long)rev);
    printf("range n=%zu revision=%lld\n", kvs.n, (long long)kvs.revision);
    cb_etcd_kvs_clear(&kvs);
    /* An older revision reads the older state. */
    snprintf(key, sizeof(key), "%sk/00000", p);
    ret = cb_etcd_range_prefix(e, key, rev - 1202, &kvs, &err);
    CHECK(ret == 0 && kvs.n == 1, "range at an old revision: %d n=%zu", ret, kvs.n);
    cb_etcd_kvs_clear(&kvs);

    /* get, absent. */
    ret = cb_etcd_get(e, key, &kv, &rev2, &err);
    CHECK(ret == 0 && kv.mod_rev == kv.create_rev && rev2 == rev, "get: %d", ret);
    int64_t mod = kv.mod_rev;
    cb_etcd_kv_clear(&kv);
    snprintf(other, sizeof(other), "%sabsent", p);
    CHECK(cb_etcd_get(e, other, &kv, NULL, &err) == CB_ENOENT, "absent key");

    /* txn: a compare that holds applies every op; one that fails applies none. */
    struct cb_etcd_cmp c[2] = {{key, CB_ETCD_MOD_REV, mod}, {other, CB_ETCD_CREATE_REV, 0}};
    struct cb_etcd_op ops[2] = {{.kind = CB_ETCD_PUT, .key = key, .value = "a", .value_len = 1},
                                {.kind = CB_ETCD_PUT, .key = other, .value = "b", .value_len = 1}};
    ret = cb_etcd_txn(e, c, 2, ops, 2, &ok, &rev, &err);
    CHECK(ret == 0 && ok, "txn that holds: %d %s", ret, err.msg);
    ret = cb_etcd_txn(e, c, 2, ops, 2, &ok, &rev2, &err);
    CHECK(ret == 0 && !ok && rev2 == rev, "stale txn: %d ok=%d", ret, ok);
    ret = cb_etcd_get(e, other, &kv, NULL, &err);
    CHECK(ret == 0 && kv.value_len == 1 && kv.value[0] == 'b' && kv.mod_rev == rev, "after txn");
    cb_etcd_kv_clear(&kv);
    printf("txn ok, stale refused\n");
    /* Delete in a txn. */
    struct cb_etcd_op del = {.kind = CB_ETCD_DELETE, .key = other};
    ret = cb_etcd_txn(e, NULL, 0, &del, 1, &ok, &rev, &err);
    CHECK(ret == 0 && ok && cb_etcd_get(e, other, &kv, NULL, &err) == CB_ENOENT, "delete");
    return failures != 0;
}

static int scenario_lease(struct cb_etcd *e)
{
    char key[512];
    struct cb_err err = {0};
    struct cb_etcd_kv kv;
    int64_t id, rev;
    bool ok;
    int ret;

    ret = cb_etcd_lease_grant(e, 2, &id, &err);
    CHECK(ret == 0 && id != 0, "grant: %d %s", ret, err.msg);
    snprintf(key, sizeof(key), "%slock/x", cb_etcd_prefix(e));
    struct cb_etcd_op op = {
        .kind = CB_ETCD_PUT, .key = key, .value = "me", .value_len = 2, .lease = id};
    ret = cb_etcd_txn(e, NULL, 0, &op, 1, &ok, &rev, &err);
    CHECK(ret == 0 && ok, "put with lease: %s", err.msg);
    CHECK(cb_etcd_lease_keepalive(e, id, &err) == 0, "keepalive: %s", err.msg);
    CHECK(cb_etcd_lease_revoke(e, id, &err) == 0, "revoke: %s", err.msg);
    CHECK(cb_etcd_get(e, key, &kv, NULL, &err) == CB_ENOENT, "revoking removes the key");
    CHECK(cb_etcd_lease_keepalive(e, id, &err) == CB_ENOENT, "keepalive of a revoked lease");
    CHECK(cb_etcd_lease_revoke(e, id, &err) == CB_ENOENT, "revoke twice: %s", err.msg);
    /* Expiry: a 1 s lease left alone; wait for it with a deadline. */
    ret = cb_etcd_lease_grant(e, 1, &id, &err);
    CHECK(ret == 0, "grant: %s", err.msg);
    op.lease = id;
    ret = cb_etcd_txn(e, NULL, 0, &op, 1, &ok, &rev, &err);
    time_t end = time(NULL) + 15;
    bool gone = false;
    while (!gone && time(NULL) < end) {
        gone = cb_etcd_get(e, key, &kv, NULL, &err) == CB_ENOENT;
        if (!gone) {
            cb_etcd_kv_clear(&kv);
            struct timespec ts = {0, 100000000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(gone, "an expired lease's key goes");
    CHECK(cb_etcd_lease_keepalive(e, id, &err) == CB_ENOENT, "keepalive after expiry");
    printf("lease ok\n");
    return failures != 0;
}

struct watch_ctx {
    int want, got;
    int64_t last_rev;
};

static int on_watch(const struct cb_etcd_event *ev, size_t n, int64_t rev, void *ctx)
{
    struct watch_ctx *w = ctx;
    if (n == 0)
        return 0;
    CHECK(rev > w->last_rev, "revisions in order: %lld after %lld", (long long)rev,
          (long long)w->last_rev);
    w->last_rev = rev;
    for (size_t i = 0; i < n; i++) {
        CHECK(ev[i].kv.mod_rev == rev, "an event of its batch's revision");
        printf("ev %s %s %.*s %lld\n", ev[i].type == CB_ETCD_EV_PUT ? "put" : "delete",
               ev[i].kv.key, (int)ev[i].kv.value_len, (const char *)ev[i].kv.value, (long long)rev);
        w->got++;
    }
    fflush(stdout);
    return w->got >= w->want ? 1 : 0;
}

static int scenario_watch(struct cb_etcd *e, int want, int64_t from)
{
    struct cb_err err = {0};
    struct watch_ctx w = {.want = want};
    struct cb_etcd_kvs kvs;
    int64_t resume;
    int ret;

    if (from == 0) {
        ret = cb_etcd_range_prefix(e, cb_etcd_prefix(e), 0, &kvs, &err);
        if (ret != 0) {
            printf("FAIL range: %s\n", err.msg);
            return 1;
        }
        from = kvs.revision + 1;
        cb_etcd_kvs_clear(&kvs);
    }
    printf("watching from %lld\n", (long long)from);
    fflush(stdout);
    while (w.got < want) {
        ret = cb_etcd_watch(e, cb_etcd_prefix(e), from, on_watch, &w, NULL, &resume, &err);
        if (ret == 1)
            break;
        if (ret == CB_EIO) { /* the stream broke: resume where it stopped */
            printf("resume %lld (%s)\n", (long long)resume, err.msg);
            fflush(stdout);
            from = resume;
            continue;
        }
        printf("FAIL watch: %d %s\n", ret, err.msg);
        return 1;
    }
    printf("watch done %d\n", w.got);
    return failures != 0;
}

static int scenario_compacted(struct cb_etcd *e, int64_t rev)
{
    struct cb_err err = {0};
    struct cb_etcd_kvs kvs;
    struct watch_ctx w = {.want = 1};
    int64_t resume;

    int ret = cb_etcd_range_prefix(e, cb_etcd_prefix(e), rev, &kvs, &err);
    CHECK(ret == CB_ENOENT && strstr(err.msg, "compacted") != NULL, "range: %d %s", ret, err.msg);
    ret = cb_etcd_watch(e, cb_etcd_prefix(e), rev, on_watch, &w, NULL, &resume, &err);
    CHECK(ret == CB_ENOENT && strstr(err.msg, "compacted") != NULL, "watch: %d %s", ret, err.msg);
    printf("compacted ok\n");
    return failures != 0;
}

static atomic_bool stop_flag;

static int scenario_stop(struct cb_etcd *e)
{
    struct cb_err err = {0};
    struct watch_ctx w = {.want = 1000};
    int64_t resume;

    /* The flag is already up: the watch must notice it and return 0. */
    atomic_store(&stop_flag, true);
    int ret = cb_etcd_watch(e, cb_etcd_prefix(e), 1, on_watch, &w, &stop_flag, &resume, &err);
    CHECK(ret == 0, "stop: %d %s", ret, err.msg);
    printf("stop ok\n");
    return failures != 0;
}

static int scenario_loop(struct cb_etcd *e, int seconds)
{
    char key[512];
    struct cb_err err = {0};
    struct cb_etcd_kvs kvs;
    int ok_n = 0, fail_n = 0;
    time_t end = time(NULL) + seconds;

    snprintf(key, sizeof(key), "%sloop", cb_etcd_prefix(e));
    while (time(NULL) < end) {
        int64_t rev;
        bool ok;
        char v[32];
        snprintf(v, sizeof(v), "%d", ok_n);
        struct cb_etcd_op op = {
            .kind = CB_ETCD_PUT, .key = key, .value = v, .value_len = strlen(v)};
        if (cb_etcd_txn(e, NULL, 0, &op, 1, &ok, &rev, &err) == 0 &&
            cb_etcd_range_prefix(e, cb_etcd_prefix(e), 0, &kvs, &err) == 0) {
            cb_etcd_kvs_clear(&kvs);
            ok_n++;
        } else {
            printf("error %s\n", err.msg);
            fail_n++;
        }
        fflush(stdout);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    printf("loop ok=%d failed=%d\n", ok_n, fail_n);
    return 0;
}

int main(int argc, char **argv)
{
    struct cb_etcd *e;
    struct cb_err err = {0};
    int ret;

    if (argc < 3) {
        fprintf(stderr, "usage: etcd_probe kv|lease|watch|compacted|stop|loop URL [ARG]\n");
        return 2;
    }
    if (cb_etcd_open(argv[2], &e, &err) != 0) {
        printf("open: %s\n", err.msg);
        return 2;
    }
    if (strcmp(argv[1], "kv") == 0)
        ret = scenario_kv(e);
    else if (strcmp(argv[1], "lease") == 0)
        ret = scenario_lease(e);
    else if (strcmp(argv[1], "watch") == 0 && argc >= 4)
        ret = scenario_watch(e, atoi(argv[3]), argc >= 5 ? atoll(argv[4]) : 0);
    else if (strcmp(argv[1], "compacted") == 0 && argc >= 4)
        ret = scenario_compacted(e, atoll(argv[3]));
    else if (strcmp(argv[1], "stop") == 0)
        ret = scenario_stop(e);
    else if (strcmp(argv[1], "loop") == 0 && argc >= 4)
        ret = scenario_loop(e, atoi(argv[3]));
    else
        ret = 2;
    cb_etcd_close(e);
    return ret;
}
