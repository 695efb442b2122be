/* Reading whole input files (certificates, netsh output, IIS configuration). */
#ifndef CB_UTIL_FILE_H
#define CB_UTIL_FILE_H

#include <certbind/certbind.h>
#include <stddef.h>
#include <sys/stat.h>

/*
 * Reads the regular file `path` (at most `max` bytes) into an owned buffer with a
 * NUL after the last byte; the caller frees it (and cleanses it if it held a key).
 * Errors: CB_EINVAL (no such file), CB_EPERM, CB_EIO, CB_EBADFILE (not a regular
 * file, or too large), CB_ENOMEM.
 */
int cb_read_file(const char *path, size_t max, char **out, size_t *len,
                 struct cb_err *err) CB_MUST_CHECK;
/* cb_read_file, with what fstat said of the file that was read in *st, and anything but a
 * regular file refused without waiting (a FIFO is opened with O_NONBLOCK: cb_read_file waits
 * in open() for a writer, then refuses it). */
int cb_read_file_stat(const char *path, size_t max, char **out, size_t *len, struct stat *st,
                      struct cb_err *err) CB_MUST_CHECK;

#endif
