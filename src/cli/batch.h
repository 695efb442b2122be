/*
 * Batch files (`certbind -f FILE`, design section 10): reading a file line by line and
 * splitting each line into words as a shell would, without expanding anything. The
 * runner that gives the words to the commands is cb_cli_batch (cli.h).
 */
#ifndef CB_CLI_BATCH_H
#define CB_CLI_BATCH_H

#include <certbind/certbind.h>

#include <stdio.h>

#define CB_BATCH_LINE_MAX 65536 /* bytes in one line, its newline excluded */
#define CB_BATCH_WORDS_MAX 72   /* words in one line: VERB OBJECT, files and options */

/*
 * Reads one line from f into buf (size bytes, at least 2; borrowed) without its newline
 * (and without a carriage return before it), NUL-terminated, its length in *len (a NUL
 * byte inside the line stays in it: the splitter refuses it). Returns 0, CB_ENOENT at the
 * end of the file (nothing read), CB_EINVAL for a line longer than size - 1 bytes (the
 * rest of it is skipped), CB_EIO on a read error (errno set).
 */
int cb_batch_read_line(FILE *f, char *buf, size_t size, size_t *len) CB_MUST_CHECK;

/*
 * Splits line (len bytes, borrowed; need not be NUL-terminated) into words: blanks
 * (space, tab) separate words; '...' keeps everything literally; "..." keeps everything
 * but a backslash before " or \\, which stands for that character; outside quotes a
 * backslash stands for the character after it; an unquoted # at the start of a word starts
 * a comment that runs to the end of the line. Nothing is expanded ($, *, ~ are plain).
 * Words are written NUL-terminated into out (at least len + 1 bytes, caller-owned) and
 * pointed to from words[0..*n) (max slots). *n is 0 for a blank or comment line.
 * CB_EINVAL with err filled: an unbalanced quote, a backslash at the end of the line, a
 * NUL byte or other control character, more than max words.
 */
int cb_batch_split(const char *line, size_t len, char *out, char **words, int max, int *n,
                   struct cb_err *err) CB_MUST_CHECK;

#endif
