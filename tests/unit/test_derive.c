/*
 * test_derive.c: cb_snapshot_derive, the one-change path, must give exactly what a
 * full build of the same bindings gives: every binding found with its fields,
 * every resolution the same, the source map right, and the old snapshot untouched.
 * Randomised over many rounds of adds, changes and removals, chained derivation
 * after derivation, with IP, wildcard-IP, exact and wildcard name bindings.
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
#include <sys/socket.h>

#include "binding/snapshot.h"

#define UNIVERSE 400 /* candidate keys */
#define PORTS 3

struct model {
    bool present[UNIVERSE];
    unsigned version[UNIVERSE]; /* changes certhash and backend */
};

static uint32_t rnd_state = 12345;

static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

/* Key number k: a mix of every kind on a few ports. */
static void key_word(unsigned k, char *out, size_t size)
{
    unsigned port = 443 + k % PORTS;
    switch (k % 5) {
    case 0:
        snprintf(out, size, "hostnameport=site%u.example.com:%u", k, port);
        break;
    case 1:
        snprintf(out, size, "hostnameport=*.zone%u.example.com:%u", k, port);
        break;
    case 2:
        snprintf(out, size, "ipport=127.0.%u.%u:%u", k / 250, 1 + k % 250, port);
        break;
    case 3:
        snprintf(out, size, "ipport=[2001:db8::%x]:%u", k, port);
        break;
    default: /* six wildcard-IP keys (two families on three ports), then more names */
        if (k < 30)
            snprintf(out, size, (k / 5) % 2 ? "ipport=[::]:%u" : "ipport=0.0.0.0:%u", port);
        else
            snprintf(out, size, "hostnameport=host%u.example.org:%u", k, port);
        break;
    }
}

static void make_binding(unsigned k, unsigned version, struct cb_binding *b)
{
    char word[128], thumb[83], backend[64];
    struct cb_err err = {0};
    unsigned fields = 0;

    cb_binding_init(b);
    key_word(k, word, sizeof(word));
    if (cb_key_parse_word(word, &b->key, &err) != 0)
        fail_msg("key %s: %s", word, err.msg);
    snprintf(thumb, sizeof(thumb), "%08X%032X", version, k);
    /* A second certificate on some (certhash=T1,T2): a record points to it in the arena. */
    if (version % 5 == 1)
        snprintf(thumb + 40, sizeof(thumb) - 40, ",%08X%032X", version + 7, k ^ 0xabcu);
    snprintf(backend, sizeof(backend), "127.0.0.1:%u", 1000 + version % 60000);
    assert_int_equal(cb_binding_set_option(b, "certhash", thumb, &fields, &err), 0);
    assert_int_equal(cb_binding_set_option(b, "backend", backend, &fields, &err), 0);
    /* A client CA file on some: few paths shared by many bindings, as in real stores. */
    if (version % 3 != 0) {
        char ca[64];
        snprintf(ca, sizeof(ca), "/etc/certbind/ca%u.pem", version % 4);
        assert_int_equal(cb_binding_set_option(b, "clientca", ca, &fields, &err), 0);
    }
}

static struct cb_snapshot *full_build(const struct model *m, uint64_t gen)
{
    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    struct cb_snapshot *s = NULL;
    struct cb_err err = {0};

    assert_non_null(sb);
    for (unsigned k = 0; k < UNIVERSE; k++) {
        struct cb_binding b;
        if (!m->present[k])
            continue;
        make_binding(k, m->version[k], &b);
        if (cb_snapshot_builder_add(sb, &b, NULL, &err) != 0)
            fail_msg("add: %s", err.msg);
    }
    assert_int_equal(cb_snapshot_builder_finish(sb, gen, &s, &err), 0);
    return s;
}

/* The derived snapshot holds exactly the model's bindings, and resolves like a full build. */
static void assert_same(const struct cb_snapshot *d, const struct cb_snapshot *full,
                        const struct model *m)
{
    assert_int_equal(cb_snapshot_count(d), cb_snapshot_count(full));
    for (unsigned k = 0; k < UNIVERSE; k++) {
        struct cb_binding b;
        make_binding(k, m->version[k], &b);
        long i = cb_snapshot_find(d, &b.key);
        if (!m->present[k]) {
            assert_true(i < 0);
            continue;
        }
        assert_true(i >= 0);
        const struct cb_snap_binding *e = cb_snapshot_binding(d, (uint32_t)i);
        char word[128];
        key_word(k, word, sizeof(word));
        struct cb_binding_key key;
        assert_int_equal(cb_key_parse_word(word, &key, NULL), 0);
        char text[CB_KEY_TEXT_MAX];
        cb_key_format(&key, text, sizeof(text));
        assert_string_equal(e->key_text, text);
        assert_string_equal(e->certhash, b.certhash);
        assert_string_equal(e->certhash2, b.certhash2); /* "" when none, never NULL */
        assert_string_equal(e->backend, b.backend);
        const char *ca = cb_snapshot_clientca(d, e);
        if (b.clientca[0] == '\0')
            assert_null(ca);
        else
            assert_string_equal(ca, b.clientca);
    }
    /* A full build keeps each client CA path once, however many bindings use it. */
    assert_true(cb_snapshot_clientca_count(full) <= 4);
    /* Every binding index is found again through the index (no stale slot). */
    for (uint32_t i = 0; i < cb_snapshot_count(d); i++) {
        const struct cb_snap_binding *e = cb_snapshot_binding(d, i);
        struct cb_binding_key key;
        assert_int_equal(cb_key_parse_word(e->key_text, &key, NULL), 0);
        assert_int_equal(cb_snapshot_find(d, &key), (long)i);
    }
    /* Resolutions agree with the full build, by key. */
    for (int q = 0; q < 300; q++) {
        struct cb_resolve_query query = {.port = (uint16_t)(443 + rnd() % PORTS)};
        char sni[128];
        unsigned k = rnd() % UNIVERSE;
        if (rnd() % 2) {
            query.family = AF_INET;
            inet_pton(AF_INET, "127.0.0.1", query.addr);
            query.addr[2] = (uint8_t)(k / 250);
            query.addr[3] = (uint8_t)(1 + k % 250);
        } else {
            query.family = AF_INET6;
            inet_pton(AF_INET6, "2001:db8::1", query.addr);
            query.addr[15] = (uint8_t)k;
            query.addr[14] = (uint8_t)(k >> 8);
        }
        if (rnd() % 3) {
            snprintf(sni, sizeof(sni), rnd() % 2 ? "site%u.example.com" : "www.zone%u.example.com",
                     k);
            query.sni = sni;
        }
        struct cb_resolution a, b;
        cb_resolve(d, &query, &a);
        cb_resolve(full, &query, &b);
        assert_int_equal(a.rule, b.rule);
        if (a.rule != CB_RULE_NONE)
            assert_string_equal(cb_snapshot_binding(d, a.binding)->key_text,
                                cb_snapshot_binding(full, b.binding)->key_text);
    }
}

static void random_changes(void)
{
    struct model m = {0};
    struct cb_err err = {0};

    for (unsigned k = 0; k < UNIVERSE; k++)
        m.present[k] = rnd() % 3 == 0;
    struct cb_snapshot *cur = full_build(&m, 1);
    int derived = 0, rebuilt = 0;

    for (int round = 0; round < 300; round++) {
        struct model before = m;
        struct cb_binding set[8];
        struct cb_binding_key removed[8];
        size_t n_set = 0, n_removed = 0;
        bool touched[UNIVERSE] = {false};
        size_t changes = 1 + rnd() % 6;
        for (size_t c = 0; c < changes; c++) {
            unsigned k = rnd() % UNIVERSE;
            if (touched[k])
                continue;
            touched[k] = true;
            if (m.present[k] && rnd() % 2) {
                m.present[k] = false;
                struct cb_binding b;
                make_binding(k, m.version[k], &b);
                removed[n_removed++] = b.key;
            } else {
                m.present[k] = true;
                m.version[k]++;
                make_binding(k, m.version[k], &set[n_set++]);
            }
        }
        /* A removal of a key that is not there is ignored. */
        for (unsigned k = 0; k < UNIVERSE && n_removed < 8; k++) {
            if (!before.present[k] && !m.present[k] && !touched[k]) {
                struct cb_binding b;
                make_binding(k, 0, &b);
                removed[n_removed++] = b.key;
                break;
            }
        }
        struct cb_snapshot *next = NULL;
        uint32_t *src = NULL;
        int ret = cb_snapshot_derive(cur, set, n_set, removed, n_removed, (uint64_t)round + 2,
                                     &next, &src, &err);
        struct cb_snapshot *full = full_build(&m, (uint64_t)round + 2);
        if (ret == CB_SNAPSHOT_REBUILD) {
            rebuilt++;
            cb_snapshot_unref(cur);
            cur = cb_snapshot_ref(full);
            cb_snapshot_unref(full);
            continue;
        }
        assert_int_equal(ret, 0);
        derived++;
        assert_int_equal(cb_snapshot_generation(next), (uint64_t)round + 2);
        assert_same(next, full, &m);
        /* The source map: unchanged bindings come from the same key in the old one. */
        for (uint32_t i = 0; i < cb_snapshot_count(next); i++) {
            const struct cb_snap_binding *e = cb_snapshot_binding(next, i);
            if (src[i] == CB_SNAPSHOT_NEW)
                continue;
            const struct cb_snap_binding *o = cb_snapshot_binding(cur, src[i]);
            assert_non_null(o);
            assert_string_equal(o->key_text, e->key_text);
            assert_string_equal(o->certhash, e->certhash);
        }
        /* The old snapshot is unchanged while the new one lives (they share parts), and
         * once it goes. */
        struct cb_snapshot *old_full = full_build(&before, 0);
        assert_same(cur, old_full, &before);
        cb_snapshot_unref(next);
        assert_same(cur, old_full, &before);
        cb_snapshot_unref(old_full);
        /* Continue from a fresh derivation of the same change, so derivations chain. */
        free(src);
        src = NULL;
        ret = cb_snapshot_derive(cur, set, n_set, removed, n_removed, (uint64_t)round + 2, &next,
                                 &src, &err);
        if (ret == 0) {
            cb_snapshot_unref(cur);
            cur = next;
        } else {
            cb_snapshot_unref(cur);
            cur = cb_snapshot_ref(full);
        }
        free(src);
        cb_snapshot_unref(full);
    }
    assert_true(derived > 200); /* the path under test was taken */
    assert_true(rebuilt >= 1);  /* and the depth limit forces a full build now and then */
    cb_snapshot_unref(cur);
}

static void test_derive_equals_full_build_over_random_changes(void **state)
{
    (void)state;
    random_changes();
}

/* Parts of 256 bytes: a table of a few hundred bindings spans many parts, so the
 * derivations copy some parts, share the others, and grow the last. */
static void test_derive_over_small_parts(void **state)
{
    (void)state;
    cb_snapshot_set_part_bytes(256);
    random_changes();
    cb_snapshot_set_part_bytes(0);
}

/* Every fingerprint alike: a probe compares each slot of its run, and the removals'
 * backward shifts move fingerprints with their slots, across parts. */
static void test_derive_with_colliding_fingerprints(void **state)
{
    (void)state;
    cb_snapshot_set_fp_bits(0);
    random_changes();
    cb_snapshot_set_part_bytes(256);
    random_changes();
    cb_snapshot_set_part_bytes(0);
    cb_snapshot_set_fp_bits(8);
}

static void test_ccs_bindings_need_a_full_build(void **state)
{
    (void)state;
    struct cb_snapshot_builder *sb = cb_snapshot_builder_new();
    struct cb_snapshot *s = NULL, *next = NULL;
    struct cb_binding b;
    struct cb_err err = {0};
    unsigned fields = 0;
    uint32_t *src = NULL;

    cb_binding_init(&b);
    assert_int_equal(cb_key_parse_word("ccs=443", &b.key, &err), 0);
    assert_int_equal(cb_binding_set_option(&b, "ccspath", "/srv/ccs", &fields, &err), 0);
    assert_int_equal(cb_snapshot_builder_add(sb, &b, NULL, &err), 0);
    assert_int_equal(cb_snapshot_builder_finish(sb, 1, &s, &err), 0);
    struct cb_binding add;
    make_binding(0, 1, &add);
    assert_int_equal(cb_snapshot_derive(s, &add, 1, NULL, 0, 2, &next, &src, &err),
                     CB_SNAPSHOT_REBUILD);
    assert_null(next);
    /* And adding a ccs binding to a snapshot without one. */
    struct cb_snapshot *plain = NULL;
    sb = cb_snapshot_builder_new();
    assert_int_equal(cb_snapshot_builder_add(sb, &add, NULL, &err), 0);
    assert_int_equal(cb_snapshot_builder_finish(sb, 1, &plain, &err), 0);
    assert_int_equal(cb_snapshot_derive(plain, &b, 1, NULL, 0, 2, &next, &src, &err),
                     CB_SNAPSHOT_REBUILD);
    cb_snapshot_unref(plain);
    cb_snapshot_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_derive_equals_full_build_over_random_changes),
        cmocka_unit_test(test_derive_over_small_parts),
        cmocka_unit_test(test_derive_with_colliding_fingerprints),
        cmocka_unit_test(test_ccs_bindings_need_a_full_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
