/*
 * test_hostport.c: the one HOST:PORT parser (cb_hostport_parse, cb_host_parse) that
 * binding keys, backend=, serve --admin, the runtime's backends and resolve's ip= share:
 * which texts it takes, in what canonical form, and why it refuses the others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "binding/hostport.h"

#define ADDR 0u                                        /* addresses only */
#define NAME CB_HOSTPORT_NAME                          /* addresses and names */
#define WILD (CB_HOSTPORT_NAME | CB_HOSTPORT_WILDCARD) /* and "*." names */

struct good {
    const char *text;
    unsigned flags;
    enum cb_host_kind kind;
    const char *host; /* canonical host */
    unsigned port;
    const char *canonical; /* cb_hostport_format */
};

static const struct good goods[] = {
    /* IPv4 */
    {"203.0.113.5:443", ADDR, CB_HOST_IPV4, "203.0.113.5", 443, "203.0.113.5:443"},
    {"127.0.0.1:1", ADDR, CB_HOST_IPV4, "127.0.0.1", 1, "127.0.0.1:1"},
    {"0.0.0.0:65535", ADDR, CB_HOST_IPV4, "0.0.0.0", 65535, "0.0.0.0:65535"},
    {"127.0.0.1:09110", ADDR, CB_HOST_IPV4, "127.0.0.1", 9110, "127.0.0.1:9110"},
    {"203.0.113.5:443", NAME, CB_HOST_IPV4, "203.0.113.5", 443, "203.0.113.5:443"},
    /* [IPv6], canonical (compressed, lower case); IPv4-mapped is IPv4 */
    {"[2001:db8::5]:443", ADDR, CB_HOST_IPV6, "2001:db8::5", 443, "[2001:db8::5]:443"},
    {"[2001:DB8:0::5]:80", ADDR, CB_HOST_IPV6, "2001:db8::5", 80, "[2001:db8::5]:80"},
    {"[::1]:9110", ADDR, CB_HOST_IPV6, "::1", 9110, "[::1]:9110"},
    {"[::]:443", ADDR, CB_HOST_IPV6, "::", 443, "[::]:443"},
    {"[::ffff:203.0.113.5]:443", ADDR, CB_HOST_IPV4, "203.0.113.5", 443, "203.0.113.5:443"},
    {"[::FFFF:7f00:1]:8080", NAME, CB_HOST_IPV4, "127.0.0.1", 8080, "127.0.0.1:8080"},
    /* host names, when accepted: lower case, trailing dot removed, A-labels */
    {"localhost:8080", NAME, CB_HOST_NAME, "localhost", 8080, "localhost:8080"},
    {"Backend.Example.COM.:8080", NAME, CB_HOST_NAME, "backend.example.com", 8080,
     "backend.example.com:8080"},
    {"b\xc3\xbc"
     "cher.example:80",
     NAME, CB_HOST_NAME, "xn--bcher-kva.example", 80, "xn--bcher-kva.example:80"},
    {"123:443", NAME, CB_HOST_NAME, "123", 443, "123:443"},
    {"*.Example.com:443", WILD, CB_HOST_NAME, "*.example.com", 443, "*.example.com:443"},
    /* a name that is a dotted quad once its trailing dot is gone is that address */
    {"203.0.113.5.:443", NAME, CB_HOST_IPV4, "203.0.113.5", 443, "203.0.113.5:443"},
};

struct bad {
    const char *text;
    unsigned flags;
    enum cb_hostport_fault fault;
    const char *msg; /* a part of the message */
};

static const struct bad bads[] = {
    /* empty, missing host or port */
    {"", ADDR, CB_HOSTPORT_NO_PORT, "missing port; write ADDRESS:PORT"},
    {"", NAME, CB_HOSTPORT_NO_PORT, "HOST:PORT"},
    {"203.0.113.5", ADDR, CB_HOSTPORT_NO_PORT, "missing port"},
    {"www.example.com", NAME, CB_HOSTPORT_NO_PORT, "missing port"},
    {"[2001:db8::5]", ADDR, CB_HOSTPORT_NO_PORT, "missing port"},
    {":443", ADDR, CB_HOSTPORT_NO_HOST, "empty"},
    {":443", NAME, CB_HOSTPORT_NO_HOST, "empty"},
    /* ports */
    {"203.0.113.5:", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:0", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:00000", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:65536", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:70000", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:443443", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:99999999999999999999", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:+443", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:-1", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5: 443", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:443 ", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"203.0.113.5:0x1bb", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"localhost:http", NAME, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    {"[::1]:0", ADDR, CB_HOSTPORT_BAD_PORT, "1 to 65535"},
    /* IPv6 without brackets, and brackets where they do not belong */
    {"2001:db8::5:443", ADDR, CB_HOSTPORT_UNBRACKETED, "brackets"},
    {"::1:443", NAME, CB_HOSTPORT_UNBRACKETED, "brackets"},
    {"203.0.113.5:443:1", ADDR, CB_HOSTPORT_UNBRACKETED, "brackets"},
    {"::1]:443", ADDR, CB_HOSTPORT_UNBRACKETED, "brackets"},
    {"[203.0.113.5]:443", ADDR, CB_HOSTPORT_BRACKETS, "IPv4"},
    {"[www.example.com]:443", NAME, CB_HOSTPORT_BRACKETS, "only IPv6"},
    {"[2001:db8::5:443", ADDR, CB_HOSTPORT_BRACKETS, "']'"},
    {"[2001:db8::5]443", ADDR, CB_HOSTPORT_BRACKETS, "':PORT'"},
    {"[[::1]]:443", ADDR, CB_HOSTPORT_BRACKETS, NULL},
    {"[]:443", ADDR, CB_HOSTPORT_BRACKETS, "no address"},
    /* not addresses */
    {"www.example.com:443", ADDR, CB_HOSTPORT_NOT_ADDRESS, "not an IPv4 or IPv6 address"},
    {"203.0.113:443", ADDR, CB_HOSTPORT_NOT_ADDRESS, "not an IPv4 or IPv6"},
    {"256.0.113.5:443", ADDR, CB_HOSTPORT_NOT_ADDRESS, "not an IPv4 or IPv6"},
    {"0x7f.0.0.1:443", ADDR, CB_HOSTPORT_NOT_ADDRESS, "not an IPv4 or IPv6"},
    {"203.0.113.5.:443", ADDR, CB_HOSTPORT_NOT_ADDRESS, "not an IPv4 or IPv6"},
    {" 203.0.113.5:443", ADDR, CB_HOSTPORT_NOT_ADDRESS, "not an IPv4 or IPv6"},
    {"[2001:db8::g]:443", NAME, CB_HOSTPORT_NOT_ADDRESS, "not an IPv4 or IPv6"},
    {"[fe80::1%eth0]:443", ADDR, CB_HOSTPORT_NOT_ADDRESS, "not an IPv4 or IPv6"},
    {"[2001:db8:::5]:443", ADDR, CB_HOSTPORT_NOT_ADDRESS, "not an IPv4 or IPv6"},
    /* junk as a host name */
    {"www..example.com:443", NAME, CB_HOSTPORT_BAD_NAME, "empty label"},
    {"-www.example.com:443", NAME, CB_HOSTPORT_BAD_NAME, "'-'"},
    {"www example.com:443", NAME, CB_HOSTPORT_BAD_NAME, NULL},
    {"user@backend:8080", NAME, CB_HOSTPORT_BAD_NAME, NULL},
    {"*.example.com:443", NAME, CB_HOSTPORT_BAD_NAME, "'*'"},
    {"a.*.example.com:443", WILD, CB_HOSTPORT_BAD_NAME, "'*'"},
};

static void test_good_texts_parse_to_canonical_form(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        const struct good *c = &goods[i];
        struct cb_hostport hp, again;
        struct cb_err err = {0};
        char text[300];

        if (cb_hostport_parse(c->text, c->flags, &hp, NULL, &err) != 0)
            fail_msg("'%s' (flags %u): refused: %s", c->text, c->flags, err.msg);
        if (hp.kind != c->kind || hp.port != c->port || strcmp(hp.host, c->host) != 0)
            fail_msg("'%s': kind %d host '%s' port %u, want kind %d host '%s' port %u", c->text,
                     hp.kind, hp.host, hp.port, c->kind, c->host, c->port);
        size_t n = cb_hostport_format(&hp, text, sizeof(text));
        if (n != strlen(text) || strcmp(text, c->canonical) != 0)
            fail_msg("'%s': formatted as '%s', want '%s'", c->text, text, c->canonical);
        /* The canonical form parses back to the same thing. */
        if (cb_hostport_parse(text, c->flags, &again, NULL, &err) != 0 ||
            memcmp(&again, &hp, sizeof(hp)) != 0)
            fail_msg("'%s': canonical '%s' does not parse back the same", c->text, text);
    }
}

static void test_bad_texts_are_refused_with_the_reason(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        const struct bad *c = &bads[i];
        struct cb_hostport hp;
        enum cb_hostport_fault fault = 0;
        struct cb_err err = {0};

        memset(&hp, 0xa5, sizeof(hp));
        int ret = cb_hostport_parse(c->text, c->flags, &hp, &fault, &err);
        if (ret != CB_EINVAL)
            fail_msg("'%s' (flags %u): want CB_EINVAL, got %d", c->text, c->flags, ret);
        if (fault != c->fault)
            fail_msg("'%s' (flags %u): fault %d, want %d (%s)", c->text, c->flags, fault, c->fault,
                     err.msg);
        if (err.msg[0] == '\0' || (c->msg != NULL && strstr(err.msg, c->msg) == NULL))
            fail_msg("'%s': message '%s' does not say '%s'", c->text, err.msg,
                     c->msg ? c->msg : "anything");
        /* The output is written only on success. */
        for (size_t b = 0; b < sizeof(hp); b++)
            if (((unsigned char *)&hp)[b] != 0xa5)
                fail_msg("'%s': refused, but the output was written", c->text);
        /* Without a fault pointer or an error report, the answer is the same. */
        assert_int_equal(cb_hostport_parse(c->text, c->flags, &hp, NULL, NULL), CB_EINVAL);
    }
}

static void test_long_and_embedded_texts(void **state)
{
    char text[600];
    struct cb_hostport hp;
    enum cb_hostport_fault fault;
    (void)state;

    /* A name of 253 bytes is the longest; one more is refused as a name. */
    memset(text, 'a', 253);
    for (size_t i = 63; i < 253; i += 64)
        text[i] = '.'; /* labels of 63 bytes, the last one of 61 */
    strcpy(text + 253, ":443");
    assert_int_equal(cb_hostport_parse(text, NAME, &hp, &fault, NULL), 0);
    assert_int_equal(strlen(hp.host), 253);
    memmove(text + 1, text, strlen(text) + 1);
    text[0] = 'b';
    assert_int_equal(cb_hostport_parse(text, NAME, &hp, &fault, NULL), CB_EINVAL);
    assert_int_equal(fault, CB_HOSTPORT_BAD_NAME);
    /* An address longer than any address is not one. */
    memset(text, '1', 300);
    strcpy(text + 300, ":443");
    assert_int_equal(cb_hostport_parse(text, ADDR, &hp, &fault, NULL), CB_EINVAL);
    assert_int_equal(fault, CB_HOSTPORT_NOT_ADDRESS);
    text[0] = '[';
    strcpy(text + 300, "]:443");
    assert_int_equal(cb_hostport_parse(text, ADDR, &hp, &fault, NULL), CB_EINVAL);
    assert_int_equal(fault, CB_HOSTPORT_BRACKETS);
}

static void test_a_host_alone(void **state)
{
    static const struct {
        const char *text;
        unsigned flags;
        enum cb_host_kind kind; /* 0: refused */
        const char *host;
    } cases[] = {
        {"192.0.2.1", ADDR, CB_HOST_IPV4, "192.0.2.1"},
        {"2001:db8::1", ADDR, CB_HOST_IPV6, "2001:db8::1"},
        {"[2001:DB8::1]", ADDR, CB_HOST_IPV6, "2001:db8::1"},
        {"::ffff:192.0.2.1", ADDR, CB_HOST_IPV4, "192.0.2.1"},
        {"www.example.com", NAME, CB_HOST_NAME, "www.example.com"},
        {"", ADDR, 0, NULL},
        {"[", ADDR, 0, NULL},
        {"[]", ADDR, 0, NULL},
        {"[192.0.2.1]", ADDR, 0, NULL},
        {"[2001:db8::1", ADDR, 0, NULL},
        {"192.0.2", ADDR, 0, NULL},
        {"192.0.2.1:443", ADDR, 0, NULL},
        {"www.example.com", ADDR, 0, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cb_hostport hp;
        struct cb_err err = {0};
        int ret = cb_host_parse(cases[i].text, cases[i].flags, &hp, NULL, &err);
        if (cases[i].kind == 0) {
            if (ret != CB_EINVAL || err.msg[0] == '\0')
                fail_msg("'%s': want a refusal with a message, got %d", cases[i].text, ret);
            continue;
        }
        if (ret != 0)
            fail_msg("'%s': refused: %s", cases[i].text, err.msg);
        if (hp.kind != cases[i].kind || hp.port != 0 || strcmp(hp.host, cases[i].host) != 0)
            fail_msg("'%s': kind %d host '%s' port %u", cases[i].text, hp.kind, hp.host, hp.port);
    }
}

static void test_socket_addresses(void **state)
{
    struct cb_hostport hp;
    struct sockaddr_storage ss;
    (void)state;

    assert_int_equal(cb_hostport_parse("[::ffff:127.0.0.1]:9110", ADDR, &hp, NULL, NULL), 0);
    assert_int_equal(cb_hostport_sockaddr(&hp, &ss), sizeof(struct sockaddr_in));
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohs(s4->sin_port), 9110);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x7f000001);

    assert_int_equal(cb_hostport_parse("[2001:db8::5]:443", ADDR, &hp, NULL, NULL), 0);
    assert_int_equal(cb_hostport_sockaddr(&hp, &ss), sizeof(struct sockaddr_in6));
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
    char text[INET6_ADDRSTRLEN];
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6->sin6_port), 443);
    assert_string_equal(inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof(text)), "2001:db8::5");

    assert_int_equal(cb_hostport_parse("localhost:80", NAME, &hp, NULL, NULL), 0);
    assert_int_equal(cb_hostport_sockaddr(&hp, &ss), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_texts_parse_to_canonical_form),
        cmocka_unit_test(test_bad_texts_are_refused_with_the_reason),
        cmocka_unit_test(test_long_and_embedded_texts),
        cmocka_unit_test(test_a_host_alone),
        cmocka_unit_test(test_socket_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
