/*
 * test_batch_split.c: the line reader and word splitter of batch files (cli/batch.h):
 * which lines give which words, which are refused and why, and how lines are read
 * (CRLF, a last line without newline, a line too long).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cli/batch.h"

struct good {
    const char *line;
    int n;
    const char *words[6];
};

static const struct good goods[] = {
    {"", 0, {NULL}},
    {"   \t ", 0, {NULL}},
    {"# a comment", 0, {NULL}},
    {"   # an indented comment", 0, {NULL}},
    {"add cert a.pem", 3, {"add", "cert", "a.pem"}},
    {"  add\tcert   a.pem  ", 3, {"add", "cert", "a.pem"}},
    {"add cert a.pem # the rest is a comment", 3, {"add", "cert", "a.pem"}},
    {"add cert a#b.pem", 3, {"add", "cert", "a#b.pem"}}, /* # inside a word is plain */
    {"add cert 'my file.pem'", 3, {"add", "cert", "my file.pem"}},
    {"add cert \"my file.pem\"", 3, {"add", "cert", "my file.pem"}},
    {"add cert my\\ file.pem", 3, {"add", "cert", "my file.pem"}},
    {"x 'it'\\''s'", 2, {"x", "it's"}},
    {"x \"say \\\"hi\\\" \\\\ \\n\"", 2, {"x", "say \"hi\" \\ \\n"}}, /* \n stays two chars */
    {"x 'a\\b'", 2, {"x", "a\\b"}},                                   /* no escapes in '...' */
    {"x key=\"a b\"c'd e'", 2, {"x", "key=a bcd e"}},                 /* parts of one word */
    {"x '' \"\"", 3, {"x", "", ""}},                                  /* empty words */
    {"x '#not a comment'", 2, {"x", "#not a comment"}},
    {"x $HOME *.pem ~", 4, {"x", "$HOME", "*.pem", "~"}}, /* nothing is expanded */
    {"x caf\xc3\xa9", 2, {"x", "caf\xc3\xa9"}},
    {"x 'tab\there'", 2, {"x", "tab\there"}},
};

static void test_good_lines_split_into_words(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        const struct good *g = &goods[i];
        char out[256];
        char *words[8];
        struct cb_err err = {0};
        int n = -1;

        if (cb_batch_split(g->line, strlen(g->line), out, words, 8, &n, &err) != 0)
            fail_msg("'%s' refused: %s", g->line, err.msg);
        if (n != g->n)
            fail_msg("'%s': %d words, want %d", g->line, n, g->n);
        for (int w = 0; w < n; w++)
            if (strcmp(words[w], g->words[w]) != 0)
                fail_msg("'%s': word %d is '%s', want '%s'", g->line, w, words[w], g->words[w]);
    }
}

struct bad {
    const char *line;
    size_t len; /* 0: strlen */
    const char *reason;
};

static const struct bad bads[] = {
    {"add cert \"a.pem", 0, "unbalanced double"},
    {"add cert 'a.pem", 0, "unbalanced single"},
    {"add cert 'a.pem\"", 0, "unbalanced single"},
    {"x \"a\\\"", 0, "unbalanced double"}, /* the escaped quote does not close */
    {"add cert a.pem\\", 0, "ends with a backslash"},
    {"add cert a\x01.pem", 0, "control character 0x01 in column 11"},
    {"add cert a\x7f", 0, "control character 0x7f"},
    {"x \\\x1b", 0, "control character 0x1b"},
    {"x a\0b", 5, "control character 0x00 in column 4"},
    {"a b c d e f g h i", 0, "more than 8 words"},
};

static void test_bad_lines_are_refused_with_the_reason(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        const struct bad *b = &bads[i];
        size_t len = b->len ? b->len : strlen(b->line);
        char out[256];
        char *words[8];
        struct cb_err err = {0};
        int n = -1;

        if (cb_batch_split(b->line, len, out, words, 8, &n, &err) != CB_EINVAL)
            fail_msg("'%s' was taken", b->line);
        if (strstr(err.msg, b->reason) == NULL)
            fail_msg("'%s': '%s' does not say '%s'", b->line, err.msg, b->reason);
        assert_int_equal(n, -1); /* written only on success */
    }
}

static void test_words_exactly_at_the_limit(void **state)
{
    char out[64];
    char *words[3];
    int n;
    (void)state;
    assert_int_equal(cb_batch_split("a b c", 5, out, words, 3, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_int_equal(cb_batch_split("a b c # d e", 11, out, words, 3, &n, NULL), 0);
    assert_int_equal(n, 3);
    /* A line needs at most len + 1 bytes of output: "a b" -> "a\0b\0". */
    char tight[4];
    assert_int_equal(cb_batch_split("a b", 3, tight, words, 3, &n, NULL), 0);
    assert_string_equal(words[1], "b");
}

static void test_lines_are_read_one_by_one(void **state)
{
    static const char text[] = "one\r\ntwo\n\nthree-is-long\nlast";
    FILE *f = fmemopen((void *)text, sizeof(text) - 1, "r");
    char line[8];
    size_t len;
    (void)state;
    assert_non_null(f);
    assert_int_equal(cb_batch_read_line(f, line, sizeof(line), &len), 0);
    assert_string_equal(line, "one"); /* the CR of CRLF goes */
    assert_int_equal(len, 3);
    assert_int_equal(cb_batch_read_line(f, line, sizeof(line), &len), 0);
    assert_string_equal(line, "two");
    assert_int_equal(cb_batch_read_line(f, line, sizeof(line), &len), 0);
    assert_int_equal(len, 0);
    /* Too long: refused, its rest skipped; the next line reads whole. */
    assert_int_equal(cb_batch_read_line(f, line, sizeof(line), &len), CB_EINVAL);
    assert_int_equal(cb_batch_read_line(f, line, sizeof(line), &len), 0);
    assert_string_equal(line, "last"); /* no newline at the end of the file */
    assert_int_equal(cb_batch_read_line(f, line, sizeof(line), &len), CB_ENOENT);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_lines_split_into_words),
        cmocka_unit_test(test_bad_lines_are_refused_with_the_reason),
        cmocka_unit_test(test_words_exactly_at_the_limit),
        cmocka_unit_test(test_lines_are_read_one_by_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
