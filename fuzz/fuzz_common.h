/*
 * fuzz_common.h: helpers shared by the libFuzzer targets: the entry point's
 * prototype, an invariant check that aborts (so libFuzzer keeps the input as a
 * crash), and splitting the input into NUL-terminated words.
 */
#ifndef CB_FUZZ_COMMON_H
#define CB_FUZZ_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

_Noreturn static inline void fuzz_fail(const char *file, int line, const char *cond,
                                       const char *detail)
{
    fprintf(stderr, "%s:%d: invariant violated: %s (%s)\n", file, line, cond,
            detail != NULL ? detail : "");
    abort();
}

/* Checks an invariant of the code under test; `detail` (may be NULL) is printed on failure. */
#define FUZZ_REQUIRE(cond, detail)                                                                 \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, (detail));                                        \
    } while (0)

/* The input cut into words; each word is its own exact-size heap copy, so ASan
 * catches any read past its terminating NUL. */
struct fuzz_words {
    char **word;
    size_t n;
};

static inline void fuzz_words_free(struct fuzz_words *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->word[i]);
    free(w->word);
    w->word = NULL;
    w->n = 0;
}

/* Splits data on NUL and '\n' into at most max words (empty words kept; the rest of
 * the input dropped). Fills *out (free with fuzz_words_free); returns false when out
 * of memory. */
static inline bool fuzz_words_split(const uint8_t *data, size_t size, size_t max,
                                    struct fuzz_words *out)
{
    size_t start = 0;

    out->n = 0;
    out->word = calloc(max, sizeof(*out->word));
    if (out->word == NULL)
        return false;
    for (size_t i = 0; i <= size && out->n < max; i++) {
        if (i < size && data[i] != '\0' && data[i] != '\n')
            continue;
        char *w = malloc(i - start + 1);
        if (w == NULL) {
            fuzz_words_free(out);
            return false;
        }
        if (i > start)
            memcpy(w, data + start, i - start);
        w[i - start] = '\0';
        out->word[out->n++] = w;
        start = i + 1;
    }
    return true;
}

#endif
