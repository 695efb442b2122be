/* filewriter.c: creating files on a thread of the caller's (filewriter.h). */
#include "util/filewriter.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct job {
    char *path; /* owned */
    char *data; /* owned */
    size_t len;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    unsigned long tag;
};

struct cb_filewriter {
    pthread_t threads[CB_FILEWRITER_THREADS];
    int n_threads; /* started */
    pthread_mutex_t lock;
    pthread_cond_t work; /* for the threads: jobs queued, or stop */
    pthread_cond_t done; /* for the caller: a job taken or written */
    int idle;            /* threads waiting on work */
    int asleep;          /* of those, waiting with no job queued (no time limit) */
    clockid_t clock;     /* work's clock, for the linger's deadline */
    bool waiting;        /* the caller waits on done */
    bool want_idle;      /* for every job taken to be written (else for room in the queue) */
    struct job jobs[CB_FILEWRITER_QUEUE]; /* a ring: head is the next to write */
    size_t head, count;
    int busy;   /* jobs the threads took from the ring and are writing */
    bool stop;  /* finish: no more jobs come */
    int failed; /* the first failure (a CB_E*), 0 while none */
    unsigned long failed_tag;
    struct cb_err err; /* its message */
};

static void free_data(struct job *j)
{
    free(j->path);
    j->path = NULL;
    if (j->data != NULL) {
        explicit_bzero(j->data, j->len);
        free(j->data);
        j->data = NULL;
    }
}

/* Writes all of data to fd and gives it away when asked; 0 or errno. */
static int fill(int fd, const struct job *j)
{
    size_t off = 0;

    while (off < j->len) {
        ssize_t n = write(fd, j->data + off, j->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO;
        off += (size_t)n;
    }
    if (j->uid != (uid_t)-1 && fchown(fd, j->uid, j->gid) != 0)
        return errno;
    return 0;
}

/* Creates j's file; 0 or CB_EIO/CB_EPERM with err filled. */
static int write_job(const struct job *j, struct cb_err *err)
{
    char tmp[PATH_MAX + 32];
    const char *at = j->path;
    int fd = open(j->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, j->mode);
    int e;

    if (fd < 0 && errno == EEXIST) {
        /* Left by a batch that was killed before it could remove it: replaced whole. */
        snprintf(tmp, sizeof(tmp), "%s.tmp%ld", j->path, (long)getpid());
        unlink(tmp);
        at = tmp;
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, j->mode);
    }
    if (fd < 0) {
        e = errno;
        goto out_error;
    }
    e = fill(fd, j);
    if (close(fd) != 0 && e == 0)
        e = errno;
    if (e == 0 && at != j->path && rename(at, j->path) != 0)
        e = errno;
    if (e == 0)
        return 0;
    unlink(at);
out_error:
    return cb_err_set(err, e == EPERM || e == EACCES ? CB_EPERM : CB_EIO, "cannot write %s: %s",
                      j->path, strerror(e));
}

/*
 * Wakes the caller, with the lock held, once what it waits for is there: room for half the
 * queue (not for one job: a caller woken for every job taken would take turns with the
 * threads, a context switch a file), or no job being written, or a failure.
 */
static void wake_caller(struct cb_filewriter *w)
{
    if (!w->waiting)
        return;
    if (w->want_idle ? w->busy == 0 && (w->count == 0 || w->failed != 0)
                     : w->count <= CB_FILEWRITER_QUEUE / 2 || w->failed != 0)
        pthread_cond_signal(&w->done);
}

/* Milliseconds a job waits at most for others to come before an idle thread takes it. */
#define CB_FILEWRITER_LINGER_MS 5

/*
 * Whether an idle thread takes jobs now, with the lock held: CB_FILEWRITER_WAKE of them
 * wait, or the caller waits (for room, or for every file), or no more come. Not one job at
 * a time: a writer faster than the caller would sleep and be woken for every file, a futex
 * call and a context switch each (2.5 a file at 10^4 pairs, most of a batch's system time).
 */
static bool worth_taking(const struct cb_filewriter *w)
{
    return w->count > 0 ? w->count >= CB_FILEWRITER_WAKE || w->waiting || w->stop : w->stop;
}

/* Jobs a thread takes from the ring at once: a lock round trip (and, with the other thread
 * and the caller on it, a futex wake-up) a chunk instead of a file. */
#define CB_FILEWRITER_CHUNK 16

static void *run(void *arg)
{
    struct cb_filewriter *w = arg;
    struct job chunk[CB_FILEWRITER_CHUNK];
    struct cb_err err;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        struct timespec until;
        bool lingering = false, late = false;
        while (!worth_taking(w)) {
            w->idle++;
            if (w->count == 0) {
                lingering = false;
                w->asleep++;
                pthread_cond_wait(&w->work, &w->lock);
                w->asleep--;
            } else {
                /* A few jobs wait and no more come for now (a batch reading a slow
                 * standard input): taken CB_FILEWRITER_LINGER_MS after this thread first
                 * saw them, whatever wakes it meanwhile. */
                if (!lingering) {
                    clock_gettime(w->clock, &until);
                    until.tv_nsec += CB_FILEWRITER_LINGER_MS * 1000000L;
                    until.tv_sec += until.tv_nsec / 1000000000L;
                    until.tv_nsec %= 1000000000L;
                    lingering = true;
                }
                late = pthread_cond_timedwait(&w->work, &w->lock, &until) == ETIMEDOUT;
            }
            w->idle--;
            if (late && w->count > 0)
                break;
            late = false;
        }
        if (w->count == 0)
            break;
        /* Half of what waits, up to a chunk, so the other thread gets the rest; all of it
         * (up to a chunk) once it waited its time, when the other may be asleep. */
        size_t k = late ? w->count : (w->count + 1) / 2;
        if (k > CB_FILEWRITER_CHUNK)
            k = CB_FILEWRITER_CHUNK;
        for (size_t i = 0; i < k; i++) {
            chunk[i] = w->jobs[w->head];
            w->jobs[w->head].data = NULL;
            w->jobs[w->head].path = NULL;
            w->head = (w->head + 1) % CB_FILEWRITER_QUEUE;
        }
        w->count -= k;
        w->busy += (int)k;
        if (late && w->count > 0 && w->idle > 0)
            pthread_cond_signal(&w->work); /* more than a chunk waited its time */
        /* After a failure the batch is lost: only files of earlier lines are still written,
         * to know whether one of them fails first. */
        bool failed = w->failed != 0;
        unsigned long failed_tag = w->failed_tag;
        wake_caller(w);
        pthread_mutex_unlock(&w->lock);
        int ret = 0;
        size_t bad = k;
        for (size_t i = 0; i < k; i++) {
            if (ret == 0 && !(failed && chunk[i].tag > failed_tag) &&
                (ret = write_job(&chunk[i], &err)) != 0)
                bad = i;
            free_data(&chunk[i]);
        }
        pthread_mutex_lock(&w->lock);
        w->busy -= (int)k;
        if (ret != 0 && (w->failed == 0 || chunk[bad].tag < w->failed_tag)) {
            w->failed = ret;
            w->failed_tag = chunk[bad].tag;
            w->err = err;
        }
        wake_caller(w);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int cb_filewriter_start(struct cb_filewriter **out, struct cb_err *err)
{
    struct cb_filewriter *w = calloc(1, sizeof(*w));
    int e = 0;

    if (w == NULL)
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    /* The linger's deadline on the monotonic clock, else (never on Linux) on the wall's. */
    w->clock =
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 ? CLOCK_MONOTONIC : CLOCK_REALTIME;
    pthread_cond_init(&w->work, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&w->done, NULL);
    while (w->n_threads < CB_FILEWRITER_THREADS &&
           (e = pthread_create(&w->threads[w->n_threads], NULL, run, w)) == 0)
        w->n_threads++;
    if (w->n_threads == 0) {
        pthread_cond_destroy(&w->work);
        pthread_cond_destroy(&w->done);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return cb_err_set(err, CB_EIO, "cannot start a thread to write files: %s", strerror(e));
    }
    *out = w;
    return 0;
}

/* Waits on done, with the lock held: for every job taken to be written (idle), or for
 * room in the queue. */
static void wait_done(struct cb_filewriter *w, bool idle)
{
    w->waiting = true;
    w->want_idle = idle;
    pthread_cond_wait(&w->done, &w->lock);
    w->waiting = false;
}

/* Wakes the idle threads, with the lock held: before the caller waits for them. */
static void wake_all(struct cb_filewriter *w)
{
    if (w->idle > 0)
        pthread_cond_broadcast(&w->work);
}

/* The first failure, with the lock held: once every file taken is written, since one of
 * an earlier line may still fail. */
static int failure(struct cb_filewriter *w, unsigned long *failed_tag, struct cb_err *err)
{
    if (w->failed == 0)
        return 0;
    while (w->busy > 0)
        wait_done(w, true);
    if (failed_tag != NULL)
        *failed_tag = w->failed_tag;
    if (err != NULL)
        *err = w->err;
    return w->failed;
}

int cb_filewriter_add(struct cb_filewriter *w, const char *path, mode_t mode, uid_t uid, gid_t gid,
                      char *data, size_t len, unsigned long tag, unsigned long *failed_tag,
                      struct cb_err *err)
{
    struct job j = {.data = data, .len = len, .mode = mode, .uid = uid, .gid = gid, .tag = tag};
    int ret;

    if (strlen(path) >= PATH_MAX || (j.path = strdup(path)) == NULL) {
        free_data(&j);
        return cb_err_set(err, CB_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&w->lock);
    while (w->count == CB_FILEWRITER_QUEUE && w->failed == 0) {
        wake_all(w);
        wait_done(w, false);
    }
    if ((ret = failure(w, failed_tag, err)) != 0) {
        pthread_mutex_unlock(&w->lock);
        free_data(&j);
        return ret;
    }
    w->jobs[(w->head + w->count) % CB_FILEWRITER_QUEUE] = j;
    w->count++;
    /* A thread asleep is woken by the first job (it then waits for more with a time limit,
     * so every job is soon on its way even in a batch that waits for its next line), and
     * one to take them once CB_FILEWRITER_WAKE jobs wait: not for every job, since a
     * wake-up is a system call and a context switch, worth a file's writing here. */
    if ((w->count == 1 && w->asleep > 0) || (w->count == CB_FILEWRITER_WAKE && w->idle > 0))
        pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int cb_filewriter__asleep(struct cb_filewriter *w)
{
    pthread_mutex_lock(&w->lock);
    int n = w->asleep;
    pthread_mutex_unlock(&w->lock);
    return n;
}

int cb_filewriter_wait(struct cb_filewriter *w, unsigned long *failed_tag, struct cb_err *err)
{
    int ret;

    pthread_mutex_lock(&w->lock);
    wake_all(w);
    while ((w->count > 0 || w->busy > 0) && w->failed == 0)
        wait_done(w, true);
    ret = failure(w, failed_tag, err);
    pthread_mutex_unlock(&w->lock);
    return ret;
}

int cb_filewriter_finish(struct cb_filewriter *w, unsigned long *failed_tag, struct cb_err *err)
{
    int ret;

    if (w == NULL)
        return 0;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    ret = failure(w, failed_tag, err);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->lock);
    free(w);
    return ret;
}
