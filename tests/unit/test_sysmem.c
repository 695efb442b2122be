/*
 * test_sysmem.c: the memory limit a batch sizes its caches by (util/sysmem.h): the control
 * group's limit file named by /proc/self/cgroup (v2, v1, both, neither, malformed lines), a
 * limit file's value (a number, "max", past 64 bits, not a number), the ancestors' limit
 * files up to the hierarchy's root, and the whole on this
 * machine (no more than its memory).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/sysmem.h"

#include <string.h>
#include <unistd.h>

static int file_of(const char *text, char *out, size_t size)
{
    return cb_sysmem_limit_file(text, strlen(text), "/sys/fs/cgroup", out, size);
}

static void test_the_limit_file_of_each_cgroup_version(void **state)
{
    char out[256];
    (void)state;
    assert_int_equal(file_of("0::/system.slice/certbind.service\n", out, sizeof(out)), 0);
    assert_string_equal(out, "/sys/fs/cgroup/system.slice/certbind.service/memory.max");
    assert_int_equal(file_of("0::/", out, sizeof(out)), 0); /* no newline at the end */
    assert_string_equal(out, "/sys/fs/cgroup//memory.max");
    /* v1: the line whose controllers hold "memory", first among several; beside "0::" too. */
    assert_int_equal(file_of("9:name=systemd:/\n4:memory:/a/b\n0::/\n", out, sizeof(out)), 0);
    assert_string_equal(out, "/sys/fs/cgroup/memory/a/b/memory.limit_in_bytes");
    assert_int_equal(file_of("3:cpu,memory,pids:/x:y\n", out, sizeof(out)), 0);
    assert_string_equal(out, "/sys/fs/cgroup/memory/x:y/memory.limit_in_bytes");
}

static void test_texts_that_name_no_limit_file(void **state)
{
    static const char *bad[] = {
        "",                     /* empty */
        "\n\n",                 /* blank lines */
        "4:memoryx:/a\n",       /* not the memory controller */
        "4:pids:/a\n1:cpu:/\n", /* v1 without memory, and no v2 line */
        "0::relative\n",        /* a path that is not absolute */
        "0::\n",                /* no path */
        "0:/a\n",               /* one colon */
        "10::/a\n",             /* hierarchy 10 with no controllers is not v2's */
        "memory:/a\n",          /* no hierarchy id */
    };
    char out[256];
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(file_of(bad[i], out, sizeof(out)), -1);
    /* A NUL inside the path, and a path longer than the output. */
    assert_int_equal(cb_sysmem_limit_file("0::/a\0b\n", 8, "/r", out, sizeof(out)), -1);
    assert_int_equal(file_of("0::/a-rather-long-path\n", out, 16), -1);
}

static uint64_t parse(const char *text)
{
    return cb_sysmem_parse_limit(text, strlen(text));
}

static void test_limit_values(void **state)
{
    (void)state;
    assert_true(parse("536870912\n") == 536870912ull);
    assert_true(parse("1") == 1);
    assert_true(parse("max\n") == UINT64_MAX);
    assert_true(parse("18446744073709551615") == UINT64_MAX);
    assert_true(parse("99999999999999999999999") == UINT64_MAX);           /* past 64 bits */
    assert_true(parse("9223372036854771712\n") == 9223372036854771712ull); /* v1's "none" */
    assert_true(parse("") == 0);
    assert_true(parse("\n") == 0);
    assert_true(parse("-1") == 0);
    assert_true(parse("12k") == 0);
    assert_true(parse("maximum") == 0);
    assert_true(parse("99999999999999999999999x") == 0);
    assert_true(cb_sysmem_parse_limit("42junk", 2) == 42); /* only len bytes are read */
}

static void test_the_ancestors_limit_files(void **state)
{
    char f[128];
    (void)state;
    strcpy(f, "/sys/fs/cgroup/system.slice/certbind.service/memory.max");
    assert_int_equal(cb_sysmem_parent_file(f, 14), 0);
    assert_string_equal(f, "/sys/fs/cgroup/system.slice/memory.max");
    assert_int_equal(cb_sysmem_parent_file(f, 14), 0);
    assert_string_equal(f, "/sys/fs/cgroup/memory.max");
    assert_int_equal(cb_sysmem_parent_file(f, 14), -1); /* the root: no parent */
    assert_string_equal(f, "/sys/fs/cgroup/memory.max");
    /* v1: the root is ROOT/memory. */
    strcpy(f, "/sys/fs/cgroup/memory/a/memory.limit_in_bytes");
    assert_int_equal(cb_sysmem_parent_file(f, 21), 0);
    assert_string_equal(f, "/sys/fs/cgroup/memory/memory.limit_in_bytes");
    assert_int_equal(cb_sysmem_parent_file(f, 21), -1);
    /* The root group itself ("0::/"), empty components, and texts with no parts. */
    strcpy(f, "/sys/fs/cgroup//memory.max");
    assert_int_equal(cb_sysmem_parent_file(f, 14), -1);
    strcpy(f, "/r/a//memory.max");
    assert_int_equal(cb_sysmem_parent_file(f, 2), 0);
    assert_string_equal(f, "/r/memory.max");
    static const char *none[] = {"", "memory.max", "/memory.max", "//memory.max", "a/memory.max"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        strcpy(f, none[i]);
        assert_int_equal(cb_sysmem_parent_file(f, 0), -1);
        assert_string_equal(f, none[i]);
    }
}

static void test_this_machine(void **state)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t limit = cb_sysmem_limit();
    (void)state;
    assert_true(limit > 0);
    assert_true(limit <= (uint64_t)pages * (uint64_t)page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_limit_file_of_each_cgroup_version),
        cmocka_unit_test(test_texts_that_name_no_limit_file),
        cmocka_unit_test(test_limit_values),
        cmocka_unit_test(test_the_ancestors_limit_files),
        cmocka_unit_test(test_this_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
