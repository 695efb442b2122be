/* fuzz_batch.c: the batch file reader and word splitter of `certbind -f` (cli/batch.h).
 * Every line read is shorter than the buffer and holds no newline; a split line gives at
 * most the maximum of words, each inside the output buffer, and the words quoted again
 * ('...' with ' as '\'') split back to the same words; a refusal is one line. */
#include "fuzz_common.h"

#include "cli/batch.h"

#define LINE_SIZE 256 /* small, so long lines are met often */
#define MAX_WORDS 8

/* words as one line that cb_batch_split reads back to them: each in single quotes. */
static size_t requote(char **words, int n, char *out)
{
    size_t o = 0;

    for (int i = 0; i < n; i++) {
        out[o++] = '\'';
        for (const char *p = words[i]; *p; p++) {
            if (*p == '\'') {
                memcpy(out + o, "'\\''", 4);
                o += 4;
            } else {
                out[o++] = *p;
            }
        }
        out[o++] = '\'';
        out[o++] = ' ';
    }
    return o;
}

static void check_line(const char *line, size_t len)
{
    char out[LINE_SIZE + 1], again[LINE_SIZE * 4 + 2 * MAX_WORDS * 2 + 8];
    char out2[sizeof(again) + 1];
    char *words[MAX_WORDS], *words2[MAX_WORDS];
    struct cb_err err = {0};
    int n = -1, n2 = -1;

    if (cb_batch_split(line, len, out, words, MAX_WORDS, &n, &err) != 0) {
        FUZZ_REQUIRE(err.msg[0] != '\0' && strpbrk(err.msg, "\r\n") == NULL, err.msg);
        return;
    }
    FUZZ_REQUIRE(n >= 0 && n <= MAX_WORDS, NULL);
    for (int i = 0; i < n; i++) {
        FUZZ_REQUIRE(words[i] >= out && words[i] + strlen(words[i]) < out + len + 1, NULL);
        for (const char *p = words[i]; *p; p++)
            FUZZ_REQUIRE((unsigned char)*p >= 0x20 || *p == '\t', words[i]);
    }
    size_t alen = requote(words, n, again);
    FUZZ_REQUIRE(cb_batch_split(again, alen, out2, words2, MAX_WORDS, &n2, &err) == 0, err.msg);
    FUZZ_REQUIRE(n2 == n, NULL);
    for (int i = 0; i < n; i++)
        FUZZ_REQUIRE(strcmp(words[i], words2[i]) == 0, words[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[LINE_SIZE];
    size_t len;
    int ret;
    FILE *f = fmemopen((void *)data, size, "r");

    if (f == NULL)
        return 0; /* fmemopen refuses an empty buffer on some C libraries */
    while ((ret = cb_batch_read_line(f, line, sizeof(line), &len)) != CB_ENOENT) {
        FUZZ_REQUIRE(ret == 0 || ret == CB_EINVAL, NULL);
        FUZZ_REQUIRE(len < sizeof(line) && line[len] == '\0', NULL);
        FUZZ_REQUIRE(memchr(line, '\n', len) == NULL, NULL);
        if (ret == 0)
            check_line(line, len);
    }
    fclose(f);
    return 0;
}
