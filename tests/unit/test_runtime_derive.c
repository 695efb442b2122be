/*
 * test_runtime_derive.c: cb_runtime_derive, a worker's one-change path, against a real
 * store. After every change the derived runtime must serve what a full build of the same
 * store serves (each binding's certificate entry, backend address, broken list), keep the
 * open-connection counts of unchanged and changed bindings, share every part of its
 * tables it did not write with the runtime it came from (it costs what changed, not N),
 * and leave that runtime, which connections may still use, exactly as it was. Chains of
 * derivations with adds, deletes, certificate and backend changes, a broken binding fixed
 * by importing its certificate, and old runtimes kept alive across later derivations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/runtime_build.h"
#include "util/cow.h"

#define INITIAL 9000 /* three parts of each table (CB_COW_PART elements each) */
#define UNIVERSE 9400
#define ROUNDS 24
#define N_THUMBS 3

/* Thumbprints 0 and 1 are in the store from the start; 2 is imported later. */
static const char *thumbs[N_THUMBS] = {
    "1111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222",
    "3333333333333333333333333333333333333333",
};

static char dir[64];
static struct cb_store *st;
static struct cb_tls_cache *cache;
static uint32_t rnd_state = 2463534242u;

static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

/* Key k: names on port 443, every 97th an IP binding (a listen plan of its own). */
static void make_binding(struct cb_binding *b, unsigned k, unsigned thumb, unsigned backend)
{
    char word[128];
    memset(b, 0, sizeof(*b));
    if (k % 97 == 5)
        snprintf(word, sizeof(word), "ipport=127.1.%u.%u:443", k / 250, 1 + k % 250);
    else
        snprintf(word, sizeof(word), "hostnameport=site%u.example.com:443", k);
    assert_int_equal(cb_key_parse_word(word, &b->key, NULL), 0);
    snprintf(b->certhash, sizeof(b->certhash), "%s", thumbs[thumb]);
    if (backend != 0)
        snprintf(b->backend, sizeof(b->backend), "127.0.0.1:%u", 8000 + backend);
}

static void put_cert(unsigned t)
{
    struct cb_cert_info info;
    struct cb_err err = {0};
    char cert[128], key[128];
    FILE *f;

    memset(&info, 0, sizeof(info));
    snprintf(info.thumbprint, sizeof(info.thumbprint), "%s", thumbs[t]);
    memset(info.sha256, 'A', 64);
    info.subject = "CN=test";
    info.not_after = 4102444800; /* 2100 */
    snprintf(info.key_type, sizeof(info.key_type), "EC-P256");
    /* In the state folder: parsed on first use only, so any bytes will do here. */
    snprintf(cert, sizeof(cert), "%s/c%u.pem", dir, t);
    snprintf(key, sizeof(key), "%s/c%u.key", dir, t);
    assert_non_null(f = fopen(cert, "w"));
    fclose(f);
    assert_non_null(f = fopen(key, "w"));
    fclose(f);
    assert_int_equal(chmod(key, 0600), 0);
    assert_int_equal(cb_store_cert_put(st, &info, cert, key, &err), 0);
}

/* The model: which keys are bound, to which certificate and backend. */
static bool present[UNIVERSE];
static unsigned thumb_of[UNIVERSE], backend_of[UNIVERSE];

static void store_set(unsigned k, bool insert)
{
    struct cb_binding b;
    struct cb_err err = {0};
    make_binding(&b, k, thumb_of[k], backend_of[k]);
    assert_int_equal(
        insert ? cb_store_binding_insert(st, &b, &err) : cb_store_binding_update(st, &b, &err), 0);
}

static int setup(void **unused)
{
    struct cb_err err = {0};
    (void)unused;

    snprintf(dir, sizeof(dir), "/tmp/cb-rtderive-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(cb_store_open(dir, CB_STORE_WRITE, &st, &err), 0);
    assert_non_null(cache = cb_tls_cache_new());
    assert_int_equal(cb_store_begin(st, &err), 0);
    put_cert(0);
    put_cert(1);
    for (unsigned k = 0; k < INITIAL; k++) {
        present[k] = true;
        thumb_of[k] = k % 2;
        backend_of[k] = k % 3 == 0 ? 1 : 0;
        store_set(k, true);
    }
    assert_int_equal(cb_store_commit(st, &err), 0);
    return 0;
}

static int teardown(void **unused)
{
    char cmd[128];
    (void)unused;
    cb_tls_cache_free(cache);
    cb_store_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static long index_of(const struct cb_runtime *rt, unsigned k)
{
    struct cb_binding b;
    make_binding(&b, k, 0, 0);
    return cb_snapshot_find(rt->snap, &b.key);
}

static uint32_t active_of(const struct cb_runtime *rt, long i)
{
    return *(const uint32_t *)cb_cow_at(&rt->active, (size_t)i);
}

/* What a runtime serves, per key: enough to tell that nothing of it changed. */
struct image {
    const void *cert[UNIVERSE]; /* entry's certificate object, NULL when absent */
    uint16_t backend_port[UNIVERSE];
    uint32_t active[UNIVERSE];
    size_t n_broken;
};

static void take_image(const struct cb_runtime *rt, struct image *im)
{
    memset(im, 0, sizeof(*im));
    for (unsigned k = 0; k < UNIVERSE; k++) {
        long i = index_of(rt, k);
        if (i < 0)
            continue;
        im->cert[k] = cb_runtime_tls(rt, (uint32_t)i)->cert;
        im->backend_port[k] = ntohs(cb_runtime_backend(rt, (uint32_t)i)->addr.in.sin_port);
        im->active[k] = active_of(rt, i);
    }
    im->n_broken = rt->n_broken;
}

static void assert_same_image(const struct image *a, const struct image *b)
{
    for (unsigned k = 0; k < UNIVERSE; k++) {
        assert_ptr_equal(a->cert[k], b->cert[k]);
        assert_int_equal(a->backend_port[k], b->backend_port[k]);
        assert_int_equal(a->active[k], b->active[k]);
    }
    assert_int_equal(a->n_broken, b->n_broken);
}

/* rt serves what a full build of the store serves: same entries (the cache gives one
 * object per certificate), backends, broken bindings. */
static void assert_as_full_build(const struct cb_runtime *rt)
{
    struct cb_runtime *full = NULL;
    struct cb_runtime_stats stats;
    struct cb_err err = {0};

    assert_int_equal(cb_runtime_build(st, cache, false, NULL, &full, &stats, &err), 0);
    assert_int_equal(cb_snapshot_count(rt->snap), cb_snapshot_count(full->snap));
    assert_int_equal(rt->n_broken, full->n_broken);
    for (unsigned k = 0; k < UNIVERSE; k++) {
        long i = index_of(rt, k), j = index_of(full, k);
        assert_int_equal(i >= 0, present[k]);
        assert_int_equal(j >= 0, present[k]);
        if (i < 0)
            continue;
        const struct cb_tls_entry *e = cb_runtime_tls(rt, (uint32_t)i);
        const struct cb_tls_entry *f = cb_runtime_tls(full, (uint32_t)j);
        const char *ee = cb_tls_entry_error(e), *fe = cb_tls_entry_error(f);
        assert_int_equal(ee == NULL, fe == NULL);
        if (ee == NULL)
            assert_ptr_equal(e->cert, f->cert);
        else
            assert_string_equal(ee, fe);
        const struct cb_backend *be = cb_runtime_backend(rt, (uint32_t)i);
        const struct cb_backend *fb = cb_runtime_backend(full, (uint32_t)j);
        assert_int_equal(be->addr_len, fb->addr_len);
        assert_memory_equal(&be->addr, &fb->addr, be->addr_len);
    }
    /* The broken list names exactly the broken bindings. */
    for (size_t b = 0; b < rt->n_broken; b++)
        assert_non_null(cb_tls_entry_error(cb_runtime_tls(rt, rt->broken[b])));
    cb_runtime_unref(full);
}

static struct cb_runtime *derive(struct cb_runtime *old, struct cb_runtime_stats *stats)
{
    struct cb_runtime *rt = NULL;
    struct cb_err err = {0};
    assert_int_equal(cb_runtime_derive(st, cache, old, false, &rt, stats, &err), 0);
    assert_true(stats->derived);
    return rt;
}

/* One commit of `changes` random adds, deletes, certificate and backend changes. */
static void random_change(unsigned changes)
{
    struct cb_err err = {0};
    assert_int_equal(cb_store_begin(st, &err), 0);
    for (unsigned c = 0; c < changes; c++) {
        unsigned k = rnd() % UNIVERSE;
        if (!present[k]) {
            present[k] = true;
            thumb_of[k] = rnd() % 2;
            backend_of[k] = rnd() % 3;
            store_set(k, true);
        } else if (rnd() % 3 == 0) {
            struct cb_binding b;
            make_binding(&b, k, 0, 0);
            present[k] = false;
            assert_int_equal(cb_store_binding_delete(st, &b.key, &err), 0);
        } else {
            if (rnd() % 2)
                thumb_of[k] ^= 1;
            else
                backend_of[k] = (backend_of[k] + 1) % 3;
            store_set(k, false);
        }
    }
    assert_int_equal(cb_store_commit(st, &err), 0);
}

static void test_chain_matches_full_builds(void **unused)
{
    struct cb_runtime *rt = NULL, *kept = NULL;
    struct cb_runtime_stats stats;
    struct cb_err err = {0};
    static struct image before, after, kept_im;
    (void)unused;

    assert_int_equal(cb_runtime_build(st, cache, false, NULL, &rt, &stats, &err), 0);
    assert_int_equal(rt->n_broken, 0); /* so that entries are compared by certificate */
    /* Open connections on some bindings (as the server counts them). */
    for (unsigned k = 0; k < INITIAL; k += 7)
        (*(uint32_t *)cb_cow_mut(&rt->active, (size_t)index_of(rt, k))) = 1 + k % 5;
    for (unsigned round = 0; round < ROUNDS; round++) {
        random_change(1 + rnd() % 4);
        take_image(rt, &before);
        struct cb_runtime *next = derive(rt, &stats);
        assert_ptr_equal(next->counts_of, rt);
        /* What it came from is untouched, and still usable. */
        take_image(rt, &after);
        assert_same_image(&before, &after);
        /* Counts kept: every key still bound has the connections it had. */
        for (unsigned k = 0; k < UNIVERSE; k++) {
            long i = index_of(next, k);
            if (i >= 0)
                assert_int_equal(active_of(next, i), before.active[k]);
        }
        /* It costs what changed: at most a part per table per changed binding (and the
         * parts the changes shrank the table out of are gone, not copied). */
        assert_true(cb_cow_owned_parts(&next->bind_tls) <= 2 * 4 + 1);
        assert_true(cb_cow_owned_parts(&next->active) <= 2 * 4 + 1);
        assert_as_full_build(next);
        /* Every eighth runtime is kept across the next derivations (a slow connection). */
        if (round % 8 == 0) {
            if (kept != NULL) {
                take_image(kept, &after);
                assert_same_image(&kept_im, &after);
                cb_runtime_unref(kept);
            }
            kept = cb_runtime_ref(rt);
            take_image(kept, &kept_im);
        }
        cb_runtime_unref(rt);
        rt = next;
    }
    cb_runtime_unref(kept);
    cb_runtime_unref(rt);
}

static void test_broken_binding_fixed_by_import(void **unused)
{
    struct cb_runtime *rt = NULL, *next;
    struct cb_runtime_stats stats;
    struct cb_err err = {0};
    unsigned k = UNIVERSE - 1;
    (void)unused;

    /* Bound to a certificate the store does not have: broken, and listed so. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    present[k] = true;
    thumb_of[k] = 2;
    backend_of[k] = 0;
    store_set(k, true);
    assert_int_equal(cb_store_commit(st, &err), 0);
    assert_int_equal(cb_runtime_build(st, cache, false, NULL, &rt, &stats, &err), 0);
    size_t broken = rt->n_broken;
    assert_non_null(cb_tls_entry_error(cb_runtime_tls(rt, (uint32_t)index_of(rt, k))));
    /* An unrelated change keeps it broken... */
    random_change(1);
    next = derive(rt, &stats);
    assert_as_full_build(next);
    cb_runtime_unref(rt);
    rt = next;
    assert_non_null(cb_tls_entry_error(cb_runtime_tls(rt, (uint32_t)index_of(rt, k))));
    /* ...importing the certificate fixes it, with no binding changed. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    put_cert(2);
    assert_int_equal(cb_store_commit(st, &err), 0);
    next = derive(rt, &stats);
    const char *why = cb_tls_entry_error(cb_runtime_tls(next, (uint32_t)index_of(next, k)));
    if (why != NULL)
        fail_msg("still broken: %s", why);
    assert_int_equal(next->n_broken, broken - 1);
    assert_as_full_build(next);
    cb_runtime_unref(rt);
    cb_runtime_unref(next);
}

static void test_listen_same_unless_ports_change(void **unused)
{
    struct cb_runtime *rt = NULL, *next;
    struct cb_runtime_stats stats;
    struct cb_err err = {0};
    struct cb_binding b;
    (void)unused;

    assert_int_equal(cb_runtime_build(st, cache, false, NULL, &rt, &stats, &err), 0);
    /* A name on port 443, which has names already: the same sockets. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    make_binding(&b, 1, 0, 0);
    snprintf(b.key.host, sizeof(b.key.host), "new.example.com");
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    next = derive(rt, &stats);
    assert_true(next->listen_same);
    cb_runtime_unref(rt);
    rt = next;
    /* A name on a port of its own: a new socket. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    b.key.port = 9443;
    assert_int_equal(cb_store_binding_insert(st, &b, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    next = derive(rt, &stats);
    assert_false(next->listen_same);
    cb_runtime_unref(rt);
    rt = next;
    /* Its last binding gone: the socket goes too. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_binding_delete(st, &b.key, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    next = derive(rt, &stats);
    assert_false(next->listen_same);
    cb_runtime_unref(rt);
    rt = next;
    /* An IP binding changed in place (its certificate, its backend): the same address. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    make_binding(&b, 5, 1, 2);
    assert_int_equal(cb_store_binding_update(st, &b, &err), 0);
    thumb_of[5] = 1;
    backend_of[5] = 2;
    assert_int_equal(cb_store_commit(st, &err), 0);
    next = derive(rt, &stats);
    assert_true(next->listen_same);
    assert_as_full_build(next);
    cb_runtime_unref(rt);
    rt = next;
    /* A new IP binding, then its removal: its own socket, then none. */
    struct cb_binding ip;
    make_binding(&ip, 5, 0, 0);
    assert_int_equal(cb_key_parse_word("ipport=127.9.9.9:443", &ip.key, NULL), 0);
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_binding_insert(st, &ip, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    next = derive(rt, &stats);
    assert_false(next->listen_same);
    cb_runtime_unref(rt);
    rt = next;
    assert_int_equal(cb_store_begin(st, &err), 0);
    assert_int_equal(cb_store_binding_delete(st, &ip.key, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    next = derive(rt, &stats);
    assert_false(next->listen_same);
    assert_as_full_build(next);
    /* The new name is still there, the model does not know it: take it out again. */
    assert_int_equal(cb_store_begin(st, &err), 0);
    make_binding(&b, 1, 0, 0);
    snprintf(b.key.host, sizeof(b.key.host), "new.example.com");
    assert_int_equal(cb_store_binding_delete(st, &b.key, &err), 0);
    assert_int_equal(cb_store_commit(st, &err), 0);
    cb_runtime_unref(rt);
    cb_runtime_unref(next);
}

/* A full build tells its caller it goes on, every CB_RUNTIME_PROGRESS_EVERY bindings, in
 * order, with the count it will reach; a derivation and a build without a callback do not. */
struct progress_log {
    size_t calls, last_done, total;
    bool ordered;
};

static void on_progress(void *arg, size_t done, size_t total)
{
    struct progress_log *p = arg;
    if (done == 0 && total == 0)
        return; /* the store's rows being read: fewer certificates than one step here */
    p->ordered &= done > p->last_done && done % CB_RUNTIME_PROGRESS_EVERY == 0 && done <= total;
    p->last_done = done;
    p->total = total;
    p->calls++;
}

static void test_build_reports_progress(void **unused)
{
    struct progress_log log = {.ordered = true};
    struct cb_runtime_progress progress = {.fn = on_progress, .arg = &log};
    struct cb_runtime *rt = NULL;
    struct cb_runtime_stats stats;
    struct cb_err err = {0};
    (void)unused;

    assert_int_equal(cb_runtime_build(st, cache, false, &progress, &rt, &stats, &err), 0);
    size_t n = cb_snapshot_count(rt->snap);
    assert_true(n >= 2 * CB_RUNTIME_PROGRESS_EVERY);
    assert_int_equal(log.calls, n / CB_RUNTIME_PROGRESS_EVERY);
    assert_true(log.ordered);
    assert_int_equal(log.total, n);
    assert_int_equal(log.last_done, (n / CB_RUNTIME_PROGRESS_EVERY) * CB_RUNTIME_PROGRESS_EVERY);
    cb_runtime_unref(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_matches_full_builds),
        cmocka_unit_test(test_broken_binding_fixed_by_import),
        cmocka_unit_test(test_listen_same_unless_ports_change),
        cmocka_unit_test(test_build_reports_progress),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
