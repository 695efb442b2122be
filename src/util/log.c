/* log.c: key=value log lines on stderr, written with one write() each. */
#include "util/log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int journal;

void cb_log_set_journal(int on)
{
    journal = on;
}

const char *cb_log_quote(const char *s, char *buf, size_t size)
{
    size_t n = 0;

    if (size < 3) {
        if (size > 0)
            buf[0] = '\0';
        return buf;
    }
    buf[n++] = '"';
    for (; *s != '\0' && n + 5 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return buf;
}

void cb_log(const char *level, const char *event, const char *fmt, ...)
{
    char line[2048];
    size_t n = 0;
    va_list ap;

    if (!journal) {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ", (long)tv.tv_usec / 1000);
    }
    if (journal) /* journald reads the priority from a "<N>" prefix */
        n += (size_t)snprintf(line + n, sizeof(line) - n, "<%c>",
                              level[0] == 'e'   ? '3'
                              : level[0] == 'w' ? '4'
                                                : '6');
    n += (size_t)snprintf(line + n, sizeof(line) - n, "level=%s pid=%ld event=%s", level,
                          (long)getpid(), event);
    if (fmt != NULL && fmt[0] != '\0' && n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_start(ap, fmt);
        int w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (w > 0)
            n += (size_t)w;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t wr = write(STDERR_FILENO, line, n);
    (void)wr;
}
