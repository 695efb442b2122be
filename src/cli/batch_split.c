/* batch_split.c: the line reader and word splitter of batch files (batch.h). */
#include "cli/batch.h"

#include <errno.h>
#include <stdbool.h>

int cb_batch_read_line(FILE *f, char *buf, size_t size, size_t *len)
{
    size_t n = 0;
    bool too_long = false;
    int c;

    while ((c = getc_unlocked(f)) != EOF && c != '\n') {
        if (n + 1 < size)
            buf[n++] = (char)c;
        else
            too_long = true;
    }
    if (c == EOF && ferror(f))
        return CB_EIO;
    if (c == EOF && n == 0 && !too_long)
        return CB_ENOENT;
    if (n > 0 && buf[n - 1] == '\r')
        n--; /* a file written on Windows, where netsh scripts come from */
    buf[n] = '\0';
    *len = n;
    return too_long ? CB_EINVAL : 0;
}

int cb_batch_split(const char *line, size_t len, char *out, char **words, int max, int *n,
                   struct cb_err *err)
{
    enum { BLANK, WORD, SINGLE, DOUBLE } state = BLANK;
    size_t i = 0, o = 0;
    int count = 0;

    for (; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return cb_err_set(err, CB_EINVAL,
                              "control character 0x%02x in column %zu; a batch file is text, "
                              "one command per line",
                              c, i + 1);
        if (state == BLANK) {
            if (c == ' ' || c == '\t')
                continue;
            if (c == '#')
                break; /* a comment, to the end of the line */
            if (count == max)
                return cb_err_set(err, CB_EINVAL, "more than %d words on one line", max);
            words[count++] = out + o;
            state = WORD;
        }
        if (state == SINGLE) {
            if (c == '\'')
                state = WORD;
            else
                out[o++] = (char)c;
        } else if (state == DOUBLE) {
            if (c == '"')
                state = WORD;
            else if (c == '\\' && i + 1 < len && (line[i + 1] == '"' || line[i + 1] == '\\'))
                out[o++] = line[++i];
            else
                out[o++] = (char)c;
        } else if (c == ' ' || c == '\t') {
            out[o++] = '\0';
            state = BLANK;
        } else if (c == '\'') {
            state = SINGLE;
        } else if (c == '"') {
            state = DOUBLE;
        } else if (c == '\\') {
            if (i + 1 == len)
                return cb_err_set(err, CB_EINVAL,
                                  "the line ends with a backslash; a command is one line (quote "
                                  "a backslash as '\\\\')");
            c = (unsigned char)line[++i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return cb_err_set(err, CB_EINVAL, "control character 0x%02x in column %zu", c,
                                  i + 1);
            out[o++] = (char)c;
        } else {
            out[o++] = (char)c;
        }
    }
    if (state == SINGLE || state == DOUBLE)
        return cb_err_set(err, CB_EINVAL, "unbalanced %s quote; close it on the same line",
                          state == SINGLE ? "single (')" : "double (\")");
    if (state == WORD)
        out[o++] = '\0';
    *n = count;
    return 0;
}
