/* file.c: whole-file reads for input files. */
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The whole file, opened with O_RDONLY | O_CLOEXEC | oflags; what fstat said of it in *sp. */
static int read_whole(const char *path, size_t max, char **out, size_t *len, struct stat *sp,
                      int oflags, struct cb_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | oflags);
    struct stat st;
    size_t got = 0;
    char *buf;

    if (fd < 0 && errno == ENOENT)
        return cb_err_set(err, CB_EINVAL, "no such file: %s", path);
    if (fd < 0)
        return cb_err_set(err, errno == EACCES ? CB_EPERM : CB_EIO, "cannot read %s: %s", path,
                          strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        return cb_err_set(err, CB_EBADFILE, "%s is not a regular file of at most %zu MiB", path,
                          max >> 20);
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        close(fd);
        return cb_err_set(err, CB_ENOMEM, "out of memory reading %s", path);
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *sp = st;
    *out = buf;
    *len = got;
    return 0;
}

int cb_read_file(const char *path, size_t max, char **out, size_t *len, struct cb_err *err)
{
    struct stat st;
    return read_whole(path, max, out, len, &st, 0, err);
}

int cb_read_file_stat(const char *path, size_t max, char **out, size_t *len, struct stat *st,
                      struct cb_err *err)
{
    /* O_NONBLOCK: opening a FIFO would wait for a writer; it is refused at once instead.
     * No effect on a regular file's reads. */
    return read_whole(path, max, out, len, st, O_NONBLOCK, err);
}
