/*
 * A file writer on threads of its own: new files are handed over with their bytes and
 * created while the caller goes on (a batch parses the next certificate while the kernel
 * creates the last one's files). The queues are bounded, so memory stays flat however many
 * files pass through them. The failure with the smallest tag (the caller's, a batch's line
 * number; tags must not decrease from one file to the next) is kept: once one failed, files
 * with larger tags are no longer written (some may already be, up to a chunk a thread had
 * taken: the caller removes them). A file waits at most a few milliseconds for others before
 * a thread takes it, so a caller that stops adding (a batch reading a slow standard input)
 * still has its files written.
 */
#ifndef CB_UTIL_FILEWRITER_H
#define CB_UTIL_FILEWRITER_H

#include <certbind/certbind.h>

#include <stddef.h>
#include <sys/types.h>

struct cb_filewriter;

#define CB_FILEWRITER_QUEUE                                                                        \
    256 /* files waiting a thread at most; cb_filewriter_add blocks beyond */
/* Threads writing: creating a file waits on the disk (ext4 reads inode table blocks to find
 * a free inode), so several creations in flight overlap those waits. Each folder's files
 * are created by one thread (a batch's certs/ and keys/, one each): two threads creating
 * in one folder only take turns on its lock. */
#define CB_FILEWRITER_THREADS 2
/* Files queued before an idle thread is woken to take them (fewer are taken after a few ms). */
#define CB_FILEWRITER_WAKE 32

/* Starts a writer (owned, ended with cb_filewriter_finish). Errors: CB_ENOMEM, CB_EIO. */
int cb_filewriter_start(struct cb_filewriter **out, struct cb_err *err) CB_MUST_CHECK;

/*
 * Queues file `path` (copied; shorter than PATH_MAX) with `len` bytes of `data` (taken:
 * freed, cleansed first, by the writer), mode `mode`, given to uid:gid when uid is not
 * (uid_t)-1. The file is created with O_EXCL and one write; when it exists already (left by
 * a batch that was killed) it is written beside and renamed over it. No fsync: the caller
 * flushes the file system once. Returns the first failure of an earlier file instead
 * (data freed all the same) with its tag in *failed_tag, or CB_ENOMEM (path too long too).
 */
int cb_filewriter_add(struct cb_filewriter *w, const char *path, mode_t mode, uid_t uid, gid_t gid,
                      char *data, size_t len, unsigned long tag, unsigned long *failed_tag,
                      struct cb_err *err) CB_MUST_CHECK;

/* For tests: how many threads wait with no file queued (no time limit). */
int cb_filewriter__asleep(struct cb_filewriter *w);

/* For tests: the thread (0 .. CB_FILEWRITER_THREADS - 1) that creates the files of path's
 * folder; the first folders met get one each. Not thread-safe: the caller's, as _add. */
int cb_filewriter__lane(struct cb_filewriter *w, const char *path);

/* Waits until every queued file is written; returns the first failure as _add does. */
int cb_filewriter_wait(struct cb_filewriter *w, unsigned long *failed_tag,
                       struct cb_err *err) CB_MUST_CHECK;

/* Waits for the queued files, ends the thread and frees w (NULL is ignored); returns the
 * first failure as _add does. */
int cb_filewriter_finish(struct cb_filewriter *w, unsigned long *failed_tag, struct cb_err *err);

#endif
