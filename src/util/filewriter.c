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

struct cb_filewriter;

/*
 * A thread and the files it creates: every file of one folder goes to the same lane. Two
 * threads creating files in one folder take turns on the folder's lock (ext4 holds it for
 * the whole creation) and the one waiting spins on a CPU meanwhile: 7% of a batch's CPU at
 * 10^6 pairs, on the two CPUs the batch's own threads need. One folder a thread, they never
 * meet (a batch's certs/ and keys/).
 */
struct lane {
    struct cb_filewriter *w;
    pthread_cond_t work;                  /* for the thread: jobs queued here, or stop */
    struct job jobs[CB_FILEWRITER_QUEUE]; /* a ring: head is the next to write */
    size_t head, count;
    bool idle;   /* the thread waits on work */
    bool asleep; /* with no job queued (no time limit) */
    char *dir;   /* owned, the caller's: the folder whose files come here (NULL: none yet) */
    size_t dir_len;
};

struct cb_filewriter {
    pthread_t threads[CB_FILEWRITER_THREADS];
    int n_threads; /* started: lanes[0 .. n_threads - 1] are used */
    pthread_mutex_t lock;
    pthread_cond_t done; /* for the caller: a job taken or written */
    clockid_t clock;     /* work's clock, for the linger's deadline */
    bool waiting;        /* the caller waits on done */
    bool want_idle;      /* for every job taken to be written (else for room in wait_lane) */
    const struct lane *wait_lane;
    struct lane lanes[CB_FILEWRITER_THREADS];
    size_t queued; /* jobs in all the lanes */
    int busy;      /* jobs the threads took from the lanes and are writing */
    bool stop;     /* finish: no more jobs come */
    int failed;    /* the first failure (a CB_E*), 0 while none */
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
 * Wakes the caller, with the lock held, once what it waits for is there: room for half its
 * lane (not for one job: a caller woken for every job taken would take turns with the
 * threads, a context switch a file), or no job being written, or a failure.
 */
static void wake_caller(struct cb_filewriter *w)
{
    if (!w->waiting)
        return;
    if (w->want_idle ? w->busy == 0 && (w->queued == 0 || w->failed != 0)
                     : w->wait_lane->count <= CB_FILEWRITER_QUEUE / 2 || w->failed != 0)
        pthread_cond_signal(&w->done);
}

/* Milliseconds a job waits at most for others to come before an idle thread takes it. */
#define CB_FILEWRITER_LINGER_MS 5

/*
 * Whether lane l's thread takes jobs now, with the lock held: CB_FILEWRITER_WAKE of them
 * wait, or the caller waits (for room, or for every file), or no more come. Not one job at
 * a time: a writer faster than the caller would sleep and be woken for every file, a futex
 * call and a context switch each (2.5 a file at 10^4 pairs, most of a batch's system time).
 */
static bool worth_taking(const struct cb_filewriter *w, const struct lane *l)
{
    return l->count > 0 ? l->count >= CB_FILEWRITER_WAKE || w->waiting || w->stop : w->stop;
}

/* Jobs a thread takes from its lane at once: a lock round trip (and, with the caller on
 * it, a futex wake-up) a chunk instead of a file. */
#define CB_FILEWRITER_CHUNK 16

/* Waits with the lock held until lane l's thread should take jobs (worth_taking), or until
 * jobs waited CB_FILEWRITER_LINGER_MS since it first saw them, whatever woke it meanwhile
 * (a batch reading a slow standard input). */
static void wait_for_work(struct cb_filewriter *w, struct lane *l)
{
    struct timespec until;
    bool lingering = false;

    while (!worth_taking(w, l)) {
        bool late = false;
        l->idle = true;
        if (l->count == 0) {
            lingering = false;
            l->asleep = true;
            pthread_cond_wait(&l->work, &w->lock);
            l->asleep = false;
        } else {
            if (!lingering) {
                clock_gettime(w->clock, &until);
                until.tv_nsec += CB_FILEWRITER_LINGER_MS * 1000000L;
                until.tv_sec += until.tv_nsec / 1000000000L;
                until.tv_nsec %= 1000000000L;
                lingering = true;
            }
            late = pthread_cond_timedwait(&l->work, &w->lock, &until) == ETIMEDOUT;
        }
        l->idle = false;
        if (late && l->count > 0)
            return;
    }
}

static void *run(void *arg)
{
    struct lane *l = arg;
    struct cb_filewriter *w = l->w;
    struct job chunk[CB_FILEWRITER_CHUNK];
    struct cb_err err;
    bool more = false; /* jobs that waited their time are left: taken without waiting again */

    pthread_mutex_lock(&w->lock);
    for (;;) {
        if (!more)
            wait_for_work(w, l);
        if (l->count == 0)
            break; /* stop, and every job of the lane written */
        size_t k = l->count < CB_FILEWRITER_CHUNK ? l->count : CB_FILEWRITER_CHUNK;
        for (size_t i = 0; i < k; i++) {
            chunk[i] = l->jobs[l->head];
            l->jobs[l->head].data = NULL;
            l->jobs[l->head].path = NULL;
            l->head = (l->head + 1) % CB_FILEWRITER_QUEUE;
        }
        l->count -= k;
        w->queued -= k;
        w->busy += (int)k;
        more = l->count > 0 && !worth_taking(w, l);
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
    for (int i = 0; i < CB_FILEWRITER_THREADS; i++) {
        w->lanes[i].w = w;
        pthread_cond_init(&w->lanes[i].work, &attr);
    }
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&w->done, NULL);
    while (w->n_threads < CB_FILEWRITER_THREADS &&
           (e = pthread_create(&w->threads[w->n_threads], NULL, run, &w->lanes[w->n_threads])) == 0)
        w->n_threads++;
    if (w->n_threads == 0) {
        for (int i = 0; i < CB_FILEWRITER_THREADS; i++)
            pthread_cond_destroy(&w->lanes[i].work);
        pthread_cond_destroy(&w->done);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return cb_err_set(err, CB_EIO, "cannot start a thread to write files: %s", strerror(e));
    }
    *out = w;
    return 0;
}

/* The lane of path's folder (the caller's alone: no lock): the lane the folder was given,
 * else a lane of its own while one is free, else one by the folder's hash. */
static struct lane *lane_of(struct cb_filewriter *w, const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash != NULL ? (size_t)(slash - path) : 0;
    unsigned long h = 5381;

    for (int i = 0; i < w->n_threads; i++) {
        struct lane *l = &w->lanes[i];
        if (l->dir == NULL) {
            if ((l->dir = strndup(path, len)) == NULL)
                break; /* out of memory: shared by hash, as below */
            l->dir_len = len;
            return l;
        }
        if (l->dir_len == len && memcmp(l->dir, path, len) == 0)
            return l;
    }
    for (size_t i = 0; i < len; i++)
        h = h * 33 + (unsigned char)path[i];
    return &w->lanes[h % (unsigned long)w->n_threads];
}

int cb_filewriter__lane(struct cb_filewriter *w, const char *path)
{
    return (int)(lane_of(w, path) - w->lanes);
}

/* Waits on done, with the lock held: for every job taken to be written (l NULL), or for
 * room in lane l. */
static void wait_done(struct cb_filewriter *w, const struct lane *l)
{
    w->waiting = true;
    w->want_idle = l == NULL;
    w->wait_lane = l;
    pthread_cond_wait(&w->done, &w->lock);
    w->waiting = false;
}

/* Wakes the idle threads, with the lock held: before the caller waits for them. */
static void wake_all(struct cb_filewriter *w)
{
    for (int i = 0; i < w->n_threads; i++)
        if (w->lanes[i].idle)
            pthread_cond_signal(&w->lanes[i].work);
}

/* The first failure, with the lock held: once every file taken is written, since one of
 * an earlier line may still fail. */
static int failure(struct cb_filewriter *w, unsigned long *failed_tag, struct cb_err *err)
{
    if (w->failed == 0)
        return 0;
    while (w->busy > 0)
        wait_done(w, NULL);
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
    struct lane *l = lane_of(w, path);
    pthread_mutex_lock(&w->lock);
    while (l->count == CB_FILEWRITER_QUEUE && w->failed == 0) {
        wake_all(w);
        wait_done(w, l);
    }
    if ((ret = failure(w, failed_tag, err)) != 0) {
        pthread_mutex_unlock(&w->lock);
        free_data(&j);
        return ret;
    }
    l->jobs[(l->head + l->count) % CB_FILEWRITER_QUEUE] = j;
    l->count++;
    w->queued++;
    /* A thread asleep is woken by the first job (it then waits for more with a time limit,
     * so every job is soon on its way even in a batch that waits for its next line), and
     * to take them once CB_FILEWRITER_WAKE jobs wait: not for every job, since a wake-up
     * is a system call and a context switch, worth a file's writing here. */
    if ((l->count == 1 && l->asleep) || (l->count == CB_FILEWRITER_WAKE && l->idle))
        pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int cb_filewriter__asleep(struct cb_filewriter *w)
{
    int n = 0;
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < w->n_threads; i++)
        n += w->lanes[i].asleep;
    pthread_mutex_unlock(&w->lock);
    return n;
}

int cb_filewriter_wait(struct cb_filewriter *w, unsigned long *failed_tag, struct cb_err *err)
{
    int ret;

    pthread_mutex_lock(&w->lock);
    wake_all(w);
    while ((w->queued > 0 || w->busy > 0) && w->failed == 0)
        wait_done(w, NULL);
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
    for (int i = 0; i < w->n_threads; i++)
        pthread_cond_signal(&w->lanes[i].work);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    ret = failure(w, failed_tag, err);
    for (int i = 0; i < CB_FILEWRITER_THREADS; i++) {
        pthread_cond_destroy(&w->lanes[i].work);
        free(w->lanes[i].dir);
    }
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->lock);
    free(w);
    return ret;
}
