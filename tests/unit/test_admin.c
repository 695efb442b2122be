/*
 * test_admin.c: the pure parts of the admin endpoint (admin/admin.c): --admin
 * ADDR:PORT parsing, and the Prometheus text and status JSON rendered from a model
 * built from a store in a mkdtemp folder (label values escaped, series per binding,
 * counters from a stats region, resolution order).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "store/store.h"
#include "tls/cert.h"

/* ---- cb_admin_parse_addr ------------------------------------------------------- */

struct addr_case {
    const char *text;
    bool allow_public;
    int family; /* 0: refused */
    const char *host;
    unsigned port;
    const char *msg; /* a part of the error message */
};

static const struct addr_case addr_cases[] = {
    {"127.0.0.1:9110", false, AF_INET, "127.0.0.1", 9110, NULL},
    {"127.0.0.1:1", false, AF_INET, "127.0.0.1", 1, NULL},
    {"127.0.0.1:65535", false, AF_INET, "127.0.0.1", 65535, NULL},
    {"127.1.2.3:80", false, AF_INET, "127.1.2.3", 80, NULL},
    {"[::1]:9110", false, AF_INET6, "::1", 9110, NULL},
    {"[0:0:0:0:0:0:0:1]:443", false, AF_INET6, "::1", 443, NULL},
    {"127.0.0.1:09110", false, AF_INET, "127.0.0.1", 9110, NULL},
    /* Public addresses: only with --admin-public. */
    {"0.0.0.0:9110", true, AF_INET, "0.0.0.0", 9110, NULL},
    {"192.0.2.7:9110", true, AF_INET, "192.0.2.7", 9110, NULL},
    {"[::]:9110", true, AF_INET6, "::", 9110, NULL},
    {"[2001:db8::5]:8080", true, AF_INET6, "2001:db8::5", 8080, NULL},
    {"0.0.0.0:9110", false, 0, NULL, 0, "--admin-public"},
    {"192.0.2.7:9110", false, 0, NULL, 0, "--admin-public"},
    {"128.0.0.1:9110", false, 0, NULL, 0, "--admin-public"},
    {"[::]:9110", false, 0, NULL, 0, "--admin-public"},
    {"[2001:db8::5]:8080", false, 0, NULL, 0, "--admin-public"},
    /* Malformed, with or without --admin-public. */
    {"9110", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"[::1]", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:0", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:65536", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:70000", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:99999999999999999999999", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:-1", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:+80", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1: 80", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:80 ", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:8x", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:", true, 0, NULL, 0, "ADDRESS:PORT"},
    {":9110", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"host:1", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"localhost:9110", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.1:9110", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"::1:9110", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"[::1:9110", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"::1]:9110", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"[]:9110", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"[127.0.0.1]:9110", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"127.0.0.1:9110:1", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"[aaaa:bbbb:cccc:dddd:eeee:ffff:1111:2222:3333]:1", true, 0, NULL, 0, "ADDRESS:PORT"},
    {"[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001]:1", true, 0, NULL, 0,
     "ADDRESS:PORT"},
};

static void test_parse_addr_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
        const struct addr_case *c = &addr_cases[i];
        struct sockaddr_storage ss;
        socklen_t len = 0;
        struct cb_err err = {0};
        char host[INET6_ADDRSTRLEN];
        int ret = cb_admin_parse_addr(c->text, c->allow_public, &ss, &len, &err);
        if (c->family == 0) {
            if (ret != CB_EINVAL)
                fail_msg("'%s' (public %d): want CB_EINVAL, got %d", c->text, c->allow_public, ret);
            if (strstr(err.msg, c->msg) == NULL || strstr(err.msg, "--admin") == NULL)
                fail_msg("'%s': message '%s' does not say '%s'", c->text, err.msg, c->msg);
            continue;
        }
        if (ret != 0)
            fail_msg("'%s' (public %d): refused: %s", c->text, c->allow_public, err.msg);
        if (ss.ss_family != c->family)
            fail_msg("'%s': family %d, want %d", c->text, ss.ss_family, c->family);
        if (c->family == AF_INET) {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
            assert_int_equal(len, sizeof(*s4));
            assert_non_null(inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host)));
            if (ntohs(s4->sin_port) != c->port || strcmp(host, c->host) != 0)
                fail_msg("'%s': got %s port %u", c->text, host, ntohs(s4->sin_port));
        } else {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
            assert_int_equal(len, sizeof(*s6));
            assert_non_null(inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host)));
            if (ntohs(s6->sin6_port) != c->port || strcmp(host, c->host) != 0)
                fail_msg("'%s': got %s port %u", c->text, host, ntohs(s6->sin6_port));
        }
    }
}

/* ---- a store for the model ------------------------------------------------------ */

static char base[64];
static char crt[128], key[128], state_dir[128];

static int run(const char *cmd)
{
    char full[1024];
    snprintf(full, sizeof(full), "cd '%s' && ( %s ) >/dev/null 2>&1", base, cmd);
    return system(full);
}

static int setup_run(void **state)
{
    (void)state;
    snprintf(base, sizeof(base), "/tmp/cb-test-admin-XXXXXX");
    if (mkdtemp(base) == NULL)
        return -1;
    snprintf(crt, sizeof(crt), "%s/ec.crt", base);
    snprintf(key, sizeof(key), "%s/ec.key", base);
    return run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30"
               " -subj '/CN=www.example.com' -addext 'subjectAltName=DNS:www.example.com'"
               " -keyout ec.key -out ec.crt") == 0
               ? 0
               : -1;
}

static int teardown_run(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void add_binding(struct cb_store *st, const char *key_word, const char *certhash)
{
    struct cb_binding b;
    struct cb_err err = {0};
    unsigned fields = 0;
    cb_binding_init(&b);
    if (cb_key_parse_word(key_word, &b.key, &err) != 0)
        fail_msg("key %s: %s", key_word, err.msg);
    if (cb_binding_set_option(&b, "certhash", certhash, &fields, &err) != 0)
        fail_msg("certhash: %s", err.msg);
    b.flags_set = 0;
    if (cb_store_binding_insert(st, &b, &err) != 0)
        fail_msg("insert %s: %s", key_word, err.msg);
}

/*
 * The store: one certificate whose subject (as stored) holds a quote, a backslash and a
 * newline, and four bindings on port 8443 added in an order other than resolution order.
 */
static const char odd_subject[] = "CN=we\"ird\\name,O=line\nbreak";

static struct cb_store *make_store(char thumb[CB_THUMB_LEN + 1])
{
    struct cb_store *st = NULL;
    struct cb_cert_bundle *bundle = NULL;
    struct cb_cert_info info = {0};
    struct cb_err err = {0};
    char cert_path[CB_PATH_MAX + 1], key_path[CB_PATH_MAX + 1];

    static int n;
    snprintf(state_dir, sizeof(state_dir), "%s/state%d", base, ++n); /* a fresh store each time */
    if (cb_store_open(state_dir, CB_STORE_WRITE, &st, &err) != 0)
        fail_msg("open %s: %s", state_dir, err.msg);
    if (cb_cert_bundle_load(crt, key, NULL, &bundle, &err) != 0)
        fail_msg("load: %s", err.msg);
    assert_int_equal(cb_cert_bundle_info(bundle, &info, &err), 0);
    cb_store_cert_paths(st, info.thumbprint, cert_path, key_path, sizeof(cert_path));
    if (cb_cert_bundle_write(bundle, cert_path, key_path, &err) != 0)
        fail_msg("write: %s", err.msg);
    cb_cert_bundle_free(bundle);
    free(info.subject);
    info.subject = strdup(odd_subject);
    assert_non_null(info.subject);
    memcpy(thumb, info.thumbprint, CB_THUMB_LEN + 1);
    if (cb_store_begin(st, &err) != 0)
        fail_msg("begin: %s", err.msg);
    if (cb_store_cert_put(st, &info, cert_path, key_path, &err) != 0)
        fail_msg("put: %s", err.msg);
    add_binding(st, "ipport=0.0.0.0:8443", thumb);
    add_binding(st, "hostnameport=*.example.com:8443", thumb);
    add_binding(st, "hostnameport=www.example.com:8443", thumb);
    add_binding(st, "ipport=127.0.0.2:8443", thumb);
    if (cb_store_commit(st, &err) != 0)
        fail_msg("commit: %s", err.msg);
    cb_cert_info_clear(&info);
    return st;
}

static struct cb_admin_model *build(struct cb_store *st)
{
    struct cb_admin_model *m = NULL;
    struct cb_err err = {0};
    if (cb_admin_model_build(st, (int64_t)time(NULL), &m, &err) != 0)
        fail_msg("cb_admin_model_build: %s", err.msg);
    assert_non_null(m);
    return m;
}

/* The line of text that starts with prefix, copied into out; fails when absent. */
static void line_with(const char *text, const char *prefix, char *out, size_t size)
{
    const char *p = strstr(text, prefix);
    while (p != NULL && p != text && p[-1] != '\n')
        p = strstr(p + 1, prefix);
    if (p == NULL)
        fail_msg("no line starting with '%s' in:\n%s", prefix, text);
    const char *end = strchr(p, '\n');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    assert_true(n < size);
    memcpy(out, p, n);
    out[n] = '\0';
}

static void test_metrics_escape_label_values(void **state)
{
    (void)state;
    char thumb[CB_THUMB_LEN + 1], want[512], line[1024];
    struct cb_store *st = make_store(thumb);
    struct cb_admin_model *m = build(st);
    struct cb_admin_body body = {0};

    assert_int_equal(cb_admin_render_metrics(m, NULL, 0, &body), 0);
    assert_non_null(body.data);
    assert_int_equal(strlen(body.data), body.len);
    /* \ -> \\, " -> \", newline -> \n: the line stays one line. */
    snprintf(want, sizeof(want),
             "certbind_certificate_not_after_seconds{thumbprint=\"%s\","
             "subject=\"CN=we\\\"ird\\\\name,O=line\\nbreak\"} ",
             thumb);
    line_with(body.data, "certbind_certificate_not_after_seconds{", line, sizeof(line));
    if (strncmp(line, want, strlen(want)) != 0)
        fail_msg("got  %s\nwant %s...", line, want);
    /* Every line is a comment or a sample: nothing broke a line. */
    for (const char *p = body.data; *p;) {
        const char *end = strchr(p, '\n');
        assert_non_null(end);
        assert_true(*p == '#' || strncmp(p, "certbind_", 9) == 0);
        p = end + 1;
    }
    free(body.data);
    cb_admin_model_free(m);
    cb_store_close(st);
}

static void test_metrics_series_per_binding_with_counters(void **state)
{
    (void)state;
    char thumb[CB_THUMB_LEN + 1], line[1024];
    struct cb_store *st = make_store(thumb);
    struct cb_admin_model *m = build(st);
    struct cb_metrics *stats = NULL;
    struct cb_err err = {0};
    struct cb_admin_body body = {0};

    assert_int_equal(cb_metrics_new(2, 16, &stats, &err), 0);
    struct cb_metrics_writer *w0 = cb_metrics_writer_new(cb_metrics_area(stats, 0));
    struct cb_metrics_writer *w1 = cb_metrics_writer_new(cb_metrics_area(stats, 1));
    assert_true(w0 && w1);
    struct cb_metrics_entry *e0 = cb_metrics_entry_get(w0, "hostnameport=www.example.com:8443");
    struct cb_metrics_entry *e1 = cb_metrics_entry_get(w1, "hostnameport=www.example.com:8443");
    struct cb_metrics_entry *r1 = cb_metrics_entry_get(w1, "ipport=127.0.0.2:8443");
    /* A key no binding has any more: not shown. */
    struct cb_metrics_entry *gone = cb_metrics_entry_get(w0, "hostnameport=old.example.com:8443");
    assert_true(e0 && e1 && r1 && gone);
    cb_metric_add(&e0->v[CB_METRIC_HANDSHAKES], 2);
    cb_metric_add(&e1->v[CB_METRIC_HANDSHAKES], 5);
    cb_metric_add(&e1->v[CB_METRIC_OPEN], 1);
    cb_metric_add(&r1->v[CB_METRIC_FAIL_REJECTED], 3);
    cb_metric_add(&gone->v[CB_METRIC_HANDSHAKES], 100);
    cb_metric_add(&cb_metrics_area(stats, 0)->g[CB_GMETRIC_NO_BINDING], 4);
    cb_metric_add(&cb_metrics_area(stats, 1)->g[CB_GMETRIC_ACCEPTED], 9);
    cb_metric_add(&cb_metrics_area(stats, 0)->g[CB_GMETRIC_CAPACITY], 1);

    assert_int_equal(cb_admin_render_metrics(m, stats, 2, &body), 0);
    const char *t = body.data;
    line_with(t, "certbind_handshakes_total{binding=\"hostnameport=www.example.com:8443\"", line,
              sizeof(line));
    assert_string_equal(line, "certbind_handshakes_total{binding=\"hostnameport=www.example.com:"
                              "8443\",port=\"8443\"} 7");
    line_with(t, "certbind_open_connections{binding=\"hostnameport=www.example.com:8443\"", line,
              sizeof(line));
    assert_string_equal(line, "certbind_open_connections{binding=\"hostnameport=www.example.com:"
                              "8443\",port=\"8443\"} 1");
    line_with(t,
              "certbind_handshake_failures_total{binding=\"ipport=127.0.0.2:8443\",port=\"8443\","
              "reason=\"rejected\"}",
              line, sizeof(line));
    assert_true(strcmp(strrchr(line, ' '), " 3") == 0);
    line_with(t, "certbind_handshake_failures_total{binding=\"\",port=\"\",reason=\"no_binding\"}",
              line, sizeof(line));
    assert_true(strcmp(strrchr(line, ' '), " 4") == 0);
    line_with(t, "certbind_connections_accepted_total ", line, sizeof(line));
    assert_string_equal(line, "certbind_connections_accepted_total 9");
    line_with(t, "certbind_connections_refused_total ", line, sizeof(line));
    assert_string_equal(line, "certbind_connections_refused_total 1");
    line_with(t, "certbind_bindings ", line, sizeof(line));
    assert_string_equal(line, "certbind_bindings 4");
    line_with(t, "certbind_workers ", line, sizeof(line));
    assert_string_equal(line, "certbind_workers 2");
    assert_null(strstr(t, "old.example.com"));
    /* Series in resolution order: IP, exact, wildcard, wildcard IP. */
    const char *a = strstr(t, "certbind_handshakes_total{binding=\"ipport=127.0.0.2:8443\"");
    const char *b = strstr(t, "certbind_handshakes_total{binding=\"hostnameport=www.example.com");
    const char *c = strstr(t, "certbind_handshakes_total{binding=\"hostnameport=*.example.com");
    const char *d = strstr(t, "certbind_handshakes_total{binding=\"ipport=0.0.0.0:8443\"");
    assert_true(a && b && c && d && a < b && b < c && c < d);
    free(body.data);

    /* The status JSON: the same order, rules and counts. */
    assert_int_equal(cb_admin_render_status(m, stats, (int64_t)time(NULL), 1000, &body), 0);
    json_error_t jerr;
    json_t *root = json_loads(body.data, 0, &jerr);
    if (root == NULL)
        fail_msg("status JSON: %s\n%s", jerr.text, body.data);
    json_t *ports = json_object_get(root, "ports");
    assert_int_equal(json_array_size(ports), 1);
    json_t *p = json_array_get(ports, 0);
    assert_int_equal(json_integer_value(json_object_get(p, "port")), 8443);
    assert_int_equal(json_integer_value(json_object_get(p, "total")), 4);
    json_t *list = json_object_get(p, "bindings");
    static const char *const keys[] = {"ipport=127.0.0.2:8443", "hostnameport=www.example.com:8443",
                                       "hostnameport=*.example.com:8443", "ipport=0.0.0.0:8443"};
    static const char *const rules[] = {"ip", "sni-exact", "sni-wildcard", "wildcard-ip"};
    assert_int_equal(json_array_size(list), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *x = json_array_get(list, i);
        assert_string_equal(json_string_value(json_object_get(x, "key")), keys[i]);
        assert_string_equal(json_string_value(json_object_get(x, "rule")), rules[i]);
        assert_string_equal(json_string_value(json_object_get(x, "subject")), odd_subject);
    }
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 1), "handshakes")), 7);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "failures")), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "health")),
                        "error"); /* ip-shadows-sni */
    json_t *totals = json_object_get(root, "totals");
    assert_int_equal(json_integer_value(json_object_get(totals, "accepted")), 9);
    assert_int_equal(json_integer_value(json_object_get(totals, "no_binding")), 4);
    json_decref(root);
    free(body.data);

    /* At most max_per_port listed, beyond which only bindings with a finding. */
    assert_int_equal(cb_admin_render_status(m, stats, (int64_t)time(NULL), 1, &body), 0);
    root = json_loads(body.data, 0, &jerr);
    assert_non_null(root);
    p = json_array_get(json_object_get(root, "ports"), 0);
    assert_int_equal(json_integer_value(json_object_get(p, "total")), 4);
    list = json_object_get(p, "bindings");
    assert_true(json_array_size(list) >= 1 && json_array_size(list) < 4);
    json_decref(root);
    free(body.data);

    cb_metrics_writer_free(w0);
    cb_metrics_writer_free(w1);
    cb_metrics_free(stats);
    cb_admin_model_free(m);
    cb_store_close(st);
}

/* Beyond 10^4 bindings only those that saw a connection get series (not a million zeros). */
static void test_metrics_beyond_ten_thousand_bindings_only_active_ones(void **state)
{
    (void)state;
    char thumb[CB_THUMB_LEN + 1], word[128];
    struct cb_store *st = make_store(thumb);
    struct cb_metrics *stats = NULL;
    struct cb_err err = {0};
    struct cb_admin_body body = {0};

    assert_int_equal(cb_store_begin(st, &err), 0);
    for (int i = 0; i < 10000; i++) {
        snprintf(word, sizeof(word), "hostnameport=s%d.example.net:8443", i);
        add_binding(st, word, thumb);
    }
    assert_int_equal(cb_store_commit(st, &err), 0);
    struct cb_admin_model *m = build(st); /* 10004 bindings */
    assert_int_equal(cb_metrics_new(1, 16, &stats, &err), 0);
    struct cb_metrics_writer *w = cb_metrics_writer_new(cb_metrics_area(stats, 0));
    assert_non_null(w);
    struct cb_metrics_entry *e = cb_metrics_entry_get(w, "hostnameport=s77.example.net:8443");
    assert_non_null(e);
    cb_metric_add(&e->v[CB_METRIC_HANDSHAKES], 3);

    assert_int_equal(cb_admin_render_metrics(m, stats, 1, &body), 0);
    size_t handshakes = 0, failures = 0;
    for (const char *p = body.data; (p = strstr(p, "\ncertbind_handshakes_total{")) != NULL; p++)
        handshakes++;
    for (const char *p = body.data;
         (p = strstr(p, "\ncertbind_handshake_failures_total{binding=\"hostnameport")) != NULL; p++)
        failures++;
    assert_int_equal(handshakes, 1);
    assert_int_equal(failures, 5); /* one per reason, for the one active binding */
    assert_non_null(strstr(body.data, "certbind_handshakes_total{binding=\"hostnameport="
                                      "s77.example.net:8443\",port=\"8443\"} 3\n"));
    assert_non_null(strstr(body.data, "certbind_bindings 10004\n"));
    free(body.data);
    cb_admin_model_free(m);
    cb_metrics_writer_free(w);
    cb_metrics_free(stats);
    cb_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addr_table),
        cmocka_unit_test(test_metrics_escape_label_values),
        cmocka_unit_test(test_metrics_series_per_binding_with_counters),
        cmocka_unit_test(test_metrics_beyond_ten_thousand_bindings_only_active_ones),
    };
    return cmocka_run_group_tests(tests, setup_run, teardown_run);
}
