/*
 * Batch files (`certbind -f FILE`, design section 10): reading a file line by line and
 * splitting each line into words as a shell would, without expanding anything. The
 * runner that gives the words to the commands is cb_cli_batch (cli.h).
 */
#ifndef CB_CLI_BATCH_H
#define CB_CLI_BATCH_H

#include <certbind/certbind.h>

#include <stdbool.h>
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

/* Lines a batch's reader keeps ahead of the line running, and files loaded for them: it
 * stops at either, and goes on once both are down to half. */
#define CB_BATCH_AHEAD 64

struct cb_cli_prepared;

/* One line of a batch, as the reader hands it over. */
struct cb_batch_line {
    unsigned long lineno;
    int read_ret;   /* cb_batch_read_line's: 0, CB_ENOENT (the end), CB_EINVAL, CB_EIO */
    int read_errno; /* with CB_EIO */
    char *text;     /* the line, NUL-terminated (len bytes), owned by the reader */
    size_t len;
    struct cb_cli_prepared *files; /* an `add cert` line's files, loaded ahead; else NULL */
    int n_files;
};

struct cb_batch_reader;

/*
 * A reader of the batch file f (borrowed; read by the reader alone until it is freed). When
 * f is a regular file, a thread of the reader's reads up to CB_BATCH_AHEAD lines ahead and
 * loads the files each `add cert` line names (read, decoded, checked against their key,
 * encoded as the store writes them): the batch's costliest work besides SQLite, done
 * beside it. Lines that take a password file or link=yes are left to the command. Any
 * other input (a pipe, a terminal) is read a line at a time when asked, so that no line
 * waits for input that is not needed yet. Owned *out: cb_batch_reader_free. CB_ENOMEM.
 */
int cb_batch_reader_new(FILE *f, struct cb_batch_reader **out, struct cb_err *err) CB_MUST_CHECK;
/* The next line, owned by the reader until the next call (its files may be taken from it).
 * After a line whose read_ret is not 0 there is none: do not call again. */
struct cb_batch_line *cb_batch_reader_next(struct cb_batch_reader *r);
/* Stops the thread (it finishes the file it is loading) and frees what was read ahead. */
void cb_batch_reader_free(struct cb_batch_reader *r);
/* For tests: the thread waits for room in the ring (it is full). */
bool cb_batch_reader__waiting(struct cb_batch_reader *r);

#endif
