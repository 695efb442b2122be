/*
 * test_acme_policy.c: when serve orders a certificate for a managed binding and when it
 * tries again (design/bindings.md section 7): a binding without a certificate is due at
 * once, a valid one at its renewal time, a failed one at its next attempt; `acme renew`
 * orders when forced or due and is declined otherwise; an attempt under way is never
 * doubled; the backoff runs from 1 minute doubling to 1 day with a ±10% spread and
 * honours Retry-After; renewal is at two thirds of the lifetime or inside the CA's
 * ACME Renewal Information window.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "daemon/acme_policy.h"

#define NOW 1800000000

static struct cb_acme_state state(enum cb_acme_status st, bool cert)
{
    struct cb_acme_state s;
    memset(&s, 0, sizeof(s));
    strcpy(s.key, "hostnameport=www.example.com:443");
    s.status = st;
    if (cert)
        strcpy(s.certhash, "0123456789ABCDEF0123456789ABCDEF01234567");
    return s;
}

static void test_without_a_certificate_is_due_at_once(void **unused)
{
    (void)unused;
    int64_t when;
    struct cb_acme_state s = state(CB_ACME_PENDING, false);
    assert_int_equal(cb_acme_due(&s, NOW, &when), CB_ACME_DUE);
}

static void test_valid_is_due_at_its_renewal_time(void **unused)
{
    (void)unused;
    int64_t when;
    struct cb_acme_state s = state(CB_ACME_VALID, true);
    s.renew_after = NOW + 100;
    assert_int_equal(cb_acme_due(&s, NOW, &when), CB_ACME_NOT_DUE);
    assert_int_equal(when, NOW + 100);
    assert_int_equal(cb_acme_due(&s, NOW + 100, &when), CB_ACME_DUE);
}

static void test_failed_waits_for_its_next_attempt(void **unused)
{
    (void)unused;
    int64_t when;
    struct cb_acme_state s = state(CB_ACME_FAILED, false);
    s.next_attempt = NOW + 60;
    assert_int_equal(cb_acme_due(&s, NOW, &when), CB_ACME_NOT_DUE);
    assert_int_equal(when, NOW + 60);
    assert_int_equal(cb_acme_due(&s, NOW + 60, &when), CB_ACME_DUE);
    /* A failed renewal (the old certificate still served) waits the same way. */
    s = state(CB_ACME_FAILED, true);
    s.renew_after = NOW - 1000;
    s.next_attempt = NOW + 60;
    assert_int_equal(cb_acme_due(&s, NOW, &when), CB_ACME_NOT_DUE);
}

static void test_an_attempt_under_way_is_never_doubled(void **unused)
{
    (void)unused;
    int64_t when;
    struct cb_acme_state s = state(CB_ACME_RENEWING, true);
    s.renew_after = NOW - 1;
    s.renew_requested = NOW;
    s.renew_force = true;
    assert_int_equal(cb_acme_due(&s, NOW, &when), CB_ACME_NOT_DUE);
}

static void test_renew_requests(void **unused)
{
    (void)unused;
    int64_t when;
    struct cb_acme_state s = state(CB_ACME_VALID, true);
    s.renew_after = NOW + 86400;
    s.renew_requested = NOW;
    assert_int_equal(cb_acme_due(&s, NOW, &when), CB_ACME_DECLINE); /* not due, not forced */
    s.renew_force = true;
    assert_int_equal(cb_acme_due(&s, NOW, &when), CB_ACME_DUE);
    /* A request for a failed one does not wait for the backoff. */
    s = state(CB_ACME_FAILED, true);
    s.next_attempt = NOW + 3600;
    s.renew_requested = NOW;
    assert_int_equal(cb_acme_due(&s, NOW, &when), CB_ACME_DUE);
}

static void test_backoff_doubles_to_a_day_with_spread(void **unused)
{
    (void)unused;
    int64_t prev = 0;
    for (unsigned f = 1; f <= 20; f++) {
        int64_t lo = cb_acme_next_attempt(f, NOW, 0, 0) - NOW;
        int64_t hi = cb_acme_next_attempt(f, NOW, 0, UINT32_MAX) - NOW;
        int64_t base = 60;
        for (unsigned i = 1; i < f && base < 86400; i++)
            base *= 2;
        if (base > 86400)
            base = 86400;
        assert_true(lo >= base - base / 10 && lo <= base + base / 10);
        assert_true(hi >= base - base / 10 && hi <= base + base / 10);
        assert_true(lo >= prev - prev / 5 || base == 86400);
        prev = lo;
    }
    /* Retry-After wins when later. */
    assert_int_equal(cb_acme_next_attempt(1, NOW, NOW + 7200, 0), NOW + 7200);
    assert_true(cb_acme_next_attempt(1, NOW, NOW + 1, 0) > NOW + 1);
}

static void test_renewal_time(void **unused)
{
    (void)unused;
    int64_t nb = NOW, na = NOW + 90 * 86400;
    assert_int_equal(cb_acme_renew_at(nb, na, 0, 0, 12345), NOW + 60 * 86400);
    int64_t s = NOW + 50 * 86400, e = NOW + 52 * 86400;
    for (uint32_t r = 0; r < 1000; r += 97) {
        int64_t at = cb_acme_renew_at(nb, na, s, e, r * 2654435761u);
        assert_true(at >= s && at < e);
    }
    /* An empty or inverted window is not a window. */
    assert_int_equal(cb_acme_renew_at(nb, na, e, s, 1), NOW + 60 * 86400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_a_certificate_is_due_at_once),
        cmocka_unit_test(test_valid_is_due_at_its_renewal_time),
        cmocka_unit_test(test_failed_waits_for_its_next_attempt),
        cmocka_unit_test(test_an_attempt_under_way_is_never_doubled),
        cmocka_unit_test(test_renew_requests),
        cmocka_unit_test(test_backoff_doubles_to_a_day_with_spread),
        cmocka_unit_test(test_renewal_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
