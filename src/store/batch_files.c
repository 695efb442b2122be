/*
 * batch_files.c: the new files of a batch (store.h), written by a util/filewriter thread
 * while the batch parses its next lines. The rows that name them are committed only after
 * the writer has written every one and the file system is flushed (cb_store_batch_commit).
 */
#include "store/store_int.h"
#include "util/filewriter.h"

#include <stdlib.h>
#include <string.h>

void cb_store_batch_line(struct cb_store *st, unsigned long line)
{
    st->batch_line = line;
}

unsigned long cb_store_batch_failed_line(const struct cb_store *st)
{
    return st->batch_failed_line;
}

int cb_store_batch_write(struct cb_store *st, const char *path, mode_t mode, uid_t uid, gid_t gid,
                         char *data, size_t len, struct cb_err *err)
{
    unsigned long failed = 0;
    int ret;

    if (!st->batch) {
        explicit_bzero(data, len);
        free(data);
        return cb_err_set(err, CB_EINVAL, "internal: a batch file written outside a batch");
    }
    /* Registered before it is queued: a rollback removes what a failed write left, too. */
    if ((ret = cb_store_unlink_on_rollback(st, path, err)) != 0 ||
        (st->writer == NULL && (ret = cb_filewriter_start(&st->writer, err)) != 0)) {
        explicit_bzero(data, len);
        free(data);
        return ret;
    }
    ret = cb_filewriter_add(st->writer, path, mode, uid, gid, data, len, st->batch_line, &failed,
                            err);
    if (ret != 0 && failed != 0)
        st->batch_failed_line = failed;
    return ret;
}

int cb_store_batch_wait_files(struct cb_store *st, struct cb_err *err)
{
    unsigned long failed = 0;
    int ret;

    if (!st->batch)
        return cb_err_set(err, CB_EINVAL, "internal: no batch to wait for");
    if (st->writer == NULL)
        return 0;
    if ((ret = cb_filewriter_wait(st->writer, &failed, err)) != 0 && failed != 0)
        st->batch_failed_line = failed;
    return ret;
}

int cb_store__batch_files_end(struct cb_store *st, struct cb_err *err)
{
    unsigned long failed = 0;
    int ret = cb_filewriter_finish(st->writer, &failed, err);

    st->writer = NULL;
    if (ret != 0 && failed != 0)
        st->batch_failed_line = failed;
    return ret;
}
