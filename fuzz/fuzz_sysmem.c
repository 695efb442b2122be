/* fuzz_sysmem.c: the text of /proc/self/cgroup and of a memory limit file (util/sysmem.h).
 * A named limit file lies under the root given, ends in memory.max or
 * memory.limit_in_bytes, holds no NUL and fits the buffer, and so does each ancestor's,
 * each shorter; a limit value is a number only
 * when every byte before trailing newlines and spaces is a digit (or it is "max"). */
#include "fuzz_common.h"

#include "util/sysmem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char out[128];

    if (cb_sysmem_limit_file(text, size, "/root", out, sizeof(out)) == 0) {
        size_t n = strlen(out);
        FUZZ_REQUIRE(n < sizeof(out), out);
        FUZZ_REQUIRE(strncmp(out, "/root/", 6) == 0, out);
        FUZZ_REQUIRE((n > 11 && strcmp(out + n - 11, "/memory.max") == 0) ||
                         (n > 22 && strcmp(out + n - 22, "/memory.limit_in_bytes") == 0),
                     out);
        /* Up the ancestors: each step shorter, under the root, with the same file name. */
        const char *name = strrchr(out, '/');
        char last[32];
        snprintf(last, sizeof(last), "%s", name);
        size_t len = strlen(out);
        while (cb_sysmem_parent_file(out, 5) == 0) {
            size_t now = strlen(out);
            FUZZ_REQUIRE(now < len, out);
            FUZZ_REQUIRE(strncmp(out, "/root/", 6) == 0, out);
            FUZZ_REQUIRE(now > strlen(last) && strcmp(out + now - strlen(last), last) == 0, out);
            len = now;
        }
    }
    uint64_t v = cb_sysmem_parse_limit(text, size);
    size_t len = size;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    bool digits = len > 0;
    for (size_t i = 0; i < len; i++)
        digits = digits && text[i] >= '0' && text[i] <= '9';
    bool max = len == 3 && memcmp(text, "max", 3) == 0;
    if (!digits && !max)
        FUZZ_REQUIRE(v == 0, "a value that is no number");
    if (max)
        FUZZ_REQUIRE(v == UINT64_MAX, "max");
    if (digits && len <= 19) {
        uint64_t want = 0;
        for (size_t i = 0; i < len; i++)
            want = want * 10 + (uint64_t)(text[i] - '0');
        FUZZ_REQUIRE(v == want, "a number");
    }
    return 0;
}
