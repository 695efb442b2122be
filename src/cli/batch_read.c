/*
 * batch_read.c: the batch's reader (batch.h). On a regular file, one thread reads the lines
 * ahead into a ring of CB_BATCH_AHEAD and loads the files of `add cert` lines, while the
 * batch's own thread runs the lines before them (SQLite, the file writer): a pair's decoding
 * and encoding then costs the batch's thread nothing. The line's command takes what was
 * loaded (cmd_cert.c) and reports a file that could not be, as it would have.
 */
#include "cli/batch.h"
#include "cli/cli.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct cb_batch_reader {
    FILE *f;
    bool ahead; /* a thread reads ahead (f is a regular file) */
    unsigned long lineno;
    char *buf; /* CB_BATCH_LINE_MAX + 1: the line being read */
    /* Ahead: the ring, and the thread's own state. */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t ready, space, idle;
    struct cb_batch_line ring[CB_BATCH_AHEAD];
    size_t head, count; /* the line handed over is ring[head] while held */
    bool held;          /* the caller holds ring[head] */
    _Atomic bool stop;
    size_t files_ahead; /* prepared files in the ring: at most CB_BATCH_AHEAD before a wait */
    bool loading;       /* the thread is reading or loading a line (not waiting between two) */
    bool paused;        /* a fork is under way: the thread starts no line (see on_fork_*) */
    /* Each side sleeps only when it must, and is woken only when it sleeps: the thread when
     * the ring is full, until half of it is free again; the caller when it is empty. */
    bool thread_waits, caller_waits;
    char *split;                 /* the thread's: cb_batch_split's words */
    struct cb_cli *lc;           /* the thread's: a line parsed as a command */
    struct cb_cert_keycache *kc; /* the thread's own key cache */
    /* Not ahead: the one line handed over. */
    struct cb_batch_line one;
};

static void prepared_free(struct cb_cli_prepared *v, int n)
{
    for (int i = 0; i < n; i++) {
        free(v[i].file);
        cb_cert_bundle_free(v[i].bundle);
        cb_cert_info_clear(&v[i].info);
        cb_certstore_pems_clear(&v[i].pems);
    }
    free(v);
}

static void line_clear(struct cb_batch_line *l)
{
    free(l->text);
    prepared_free(l->files, l->n_files);
    memset(l, 0, sizeof(*l));
}

/* Reads the next line into l (text owned by l). */
static void read_one(struct cb_batch_reader *r, struct cb_batch_line *l)
{
    size_t len = 0;

    memset(l, 0, sizeof(*l));
    l->lineno = ++r->lineno;
    errno = 0;
    l->read_ret = cb_batch_read_line(r->f, r->buf, CB_BATCH_LINE_MAX + 1, &len);
    l->read_errno = errno;
    if (l->read_ret != 0)
        return;
    if ((l->text = malloc(len + 1)) == NULL) {
        l->read_ret = CB_EIO;
        l->read_errno = ENOMEM;
        return;
    }
    memcpy(l->text, r->buf, len + 1);
    l->len = len;
}

/* One file of an `add cert` line: loaded as cb_cli_load_cert would (no password), then
 * encoded as the store writes it. */
static void prepare_file(struct cb_batch_reader *r, const char *file, const char *key,
                         struct cb_cli_prepared *p)
{
    p->ret = cb_cert_bundle_load_cached(file, key, NULL, r->kc, &p->bundle, &p->err);
    if (p->ret != 0)
        return;
    if ((p->ret = cb_cert_bundle_info(p->bundle, &p->info, &p->err)) != 0) {
        cb_cert_bundle_free(p->bundle);
        p->bundle = NULL;
        return;
    }
    struct cb_err ignored;
    if (cb_cert_bundle_pem(p->bundle, r->kc, &p->pems.cert, &p->pems.cert_len, &p->pems.key,
                           &p->pems.key_len, &ignored) != 0)
        memset(&p->pems, 0, sizeof(p->pems)); /* the import encodes them, and says why not */
}

/* The files of an `add cert` line that its command would load itself, loaded ahead. A line
 * that is anything else, or that the command will refuse before loading, is left alone. */
static void prepare(struct cb_batch_reader *r, struct cb_batch_line *l)
{
    char *words[CB_BATCH_WORDS_MAX + 1];
    struct cb_err err;
    const char *key = NULL;
    int n;

    if (cb_batch_split(l->text, l->len, r->split, words + 1, CB_BATCH_WORDS_MAX, &n, &err) != 0 ||
        n < 3 || strcmp(words[1], "add") != 0 || strcmp(words[2], "cert") != 0)
        return;
    for (int i = 1; i <= n; i++)
        if (words[i][0] == '-' && strchr(words[i], '=') == NULL)
            return; /* a flag: refused by the batch */
    words[0] = "certbind";
    memset(r->lc, 0, sizeof(*r->lc));
    r->lc->batch_line = true;
    if (cb_cli_parse(r->lc, n + 1, words) != 0 || r->lc->n_pos == 0)
        return;
    for (int i = 0; i < r->lc->n_opts; i++) {
        const char *name = r->lc->opts[i].name;
        if (strcmp(name, "key") == 0)
            key = r->lc->opts[i].value;
        else
            return; /* password-file, link, or one the command refuses */
    }
    if (key != NULL && r->lc->n_pos > 1)
        return;
    /* A key that is not a regular file (a FIFO: opening it may block) is the command's, which
     * says what is wrong. The certificates need no such check: loaded with a key cache, they
     * are read without waiting (a FIFO is refused at once), and a failure is the command's to
     * report as it would have. The stat also spares reading the key again when it is the
     * same file as before. */
    struct stat sb;
    if (key != NULL && (cb_cert_keycache_stat(r->kc, key, &sb) != 0 || !S_ISREG(sb.st_mode)))
        return;
    struct cb_cli_prepared *files = calloc((size_t)r->lc->n_pos, sizeof(*files));
    if (files == NULL)
        return;
    for (int i = 0; i < r->lc->n_pos; i++)
        if ((files[i].file = strdup(r->lc->pos[i])) == NULL) {
            prepared_free(files, r->lc->n_pos); /* the command loads them */
            return;
        }
    for (int i = 0; i < r->lc->n_pos && !atomic_load(&r->stop); i++)
        prepare_file(r, r->lc->pos[i], key, &files[i]);
    l->files = files;
    l->n_files = r->lc->n_pos;
}

/*
 * A fork while the thread is inside OpenSSL would leave the child with whatever lock the
 * thread held (a batch run as root forks to test a key as the service user, and the child
 * uses OpenSSL): the fork waits until the thread is between two lines, and the thread
 * starts none until it is done. One reader at a time (the batch's).
 */
static struct cb_batch_reader *forking_reader;
static pthread_mutex_t forking_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_prepare(void)
{
    pthread_mutex_lock(&forking_mu);
    struct cb_batch_reader *r = forking_reader;
    if (r == NULL)
        return; /* forking_mu stays held until the fork is done */
    pthread_mutex_lock(&r->mu);
    r->paused = true;
    while (r->loading)
        pthread_cond_wait(&r->idle, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void on_fork_parent(void)
{
    struct cb_batch_reader *r = forking_reader;
    if (r != NULL) {
        pthread_mutex_lock(&r->mu);
        r->paused = false;
        pthread_cond_signal(&r->space);
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&forking_mu);
}

static void on_fork_child(void)
{
    /* No reader thread here: the child never reads the batch. */
    pthread_mutex_unlock(&forking_mu);
}

static void register_atfork(void)
{
    pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

static void *ahead_main(void *arg)
{
    struct cb_batch_reader *r = arg;

    for (;;) {
        struct cb_batch_line l;
        pthread_mutex_lock(&r->mu);
        if (r->count == CB_BATCH_AHEAD || r->files_ahead >= CB_BATCH_AHEAD) {
            r->thread_waits = true;
            while (!atomic_load(&r->stop) &&
                   (r->count > CB_BATCH_AHEAD / 2 || r->files_ahead > CB_BATCH_AHEAD / 2))
                pthread_cond_wait(&r->space, &r->mu);
            r->thread_waits = false;
        }
        while (r->paused && !atomic_load(&r->stop))
            pthread_cond_wait(&r->space, &r->mu);
        bool stop = atomic_load(&r->stop);
        r->loading = !stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            break;
        read_one(r, &l);
        if (l.read_ret == 0)
            prepare(r, &l);
        pthread_mutex_lock(&r->mu);
        r->ring[(r->head + r->count) % CB_BATCH_AHEAD] = l;
        r->count++;
        r->files_ahead += (size_t)l.n_files;
        r->loading = false;
        if (r->paused)
            pthread_cond_signal(&r->idle);
        if (r->caller_waits)
            pthread_cond_signal(&r->ready);
        pthread_mutex_unlock(&r->mu);
        if (l.read_ret != 0)
            break; /* the end, or an error: the batch stops there */
    }
    /* The keys parsed on this thread: OpenSSL's clean-up takes its locks, so a fork waits
     * for it as for a line (a child forked meanwhile hung on such a lock, under ASan). */
    pthread_mutex_lock(&r->mu);
    while (r->paused && !atomic_load(&r->stop))
        pthread_cond_wait(&r->space, &r->mu);
    r->loading = true;
    pthread_mutex_unlock(&r->mu);
    cb_cert_thread_done();
    pthread_mutex_lock(&r->mu);
    r->loading = false;
    if (r->paused)
        pthread_cond_signal(&r->idle);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int cb_batch_reader_new(FILE *f, struct cb_batch_reader **out, struct cb_err *err)
{
    struct cb_batch_reader *r = calloc(1, sizeof(*r));
    struct stat sb;

    *out = NULL;
    if (r == NULL || (r->buf = malloc(CB_BATCH_LINE_MAX + 1)) == NULL)
        goto out_nomem;
    r->f = f;
    r->ahead = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode);
    if (!r->ahead) {
        *out = r;
        return 0;
    }
    if ((r->split = malloc(CB_BATCH_LINE_MAX + 1)) == NULL ||
        (r->lc = malloc(sizeof(*r->lc))) == NULL || cb_cert_keycache_new(&r->kc, err) != 0)
        goto out_nomem;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->ready, NULL);
    pthread_cond_init(&r->space, NULL);
    pthread_cond_init(&r->idle, NULL);
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&forking_mu);
    if (forking_reader != NULL || pthread_create(&r->thread, NULL, ahead_main, r) != 0) {
        /* Another reader, or no thread: read as for a pipe. */
        pthread_mutex_unlock(&forking_mu);
        pthread_cond_destroy(&r->idle);
        pthread_cond_destroy(&r->space);
        pthread_cond_destroy(&r->ready);
        pthread_mutex_destroy(&r->mu);
        cb_cert_keycache_free(r->kc);
        r->kc = NULL;
        r->ahead = false;
        *out = r;
        return 0;
    }
    forking_reader = r;
    pthread_mutex_unlock(&forking_mu);
    *out = r;
    return 0;
out_nomem:
    if (r != NULL) {
        cb_cert_keycache_free(r->kc);
        free(r->lc);
        free(r->split);
        free(r->buf);
    }
    free(r);
    return cb_err_set(err, CB_ENOMEM, "out of memory");
}

struct cb_batch_line *cb_batch_reader_next(struct cb_batch_reader *r)
{
    struct cb_batch_line *l;

    if (!r->ahead) {
        line_clear(&r->one);
        read_one(r, &r->one);
        return &r->one;
    }
    pthread_mutex_lock(&r->mu);
    if (r->held) {
        /* The line handed over last is done: its slot is free again. */
        r->files_ahead -= (size_t)r->ring[r->head].n_files;
        line_clear(&r->ring[r->head]);
        r->head = (r->head + 1) % CB_BATCH_AHEAD;
        r->count--;
        r->held = false;
        if (r->thread_waits && r->count <= CB_BATCH_AHEAD / 2 &&
            r->files_ahead <= CB_BATCH_AHEAD / 2)
            pthread_cond_signal(&r->space);
    }
    if (r->count == 0) {
        r->caller_waits = true;
        while (r->count == 0)
            pthread_cond_wait(&r->ready, &r->mu);
        r->caller_waits = false;
    }
    l = &r->ring[r->head];
    r->held = true;
    pthread_mutex_unlock(&r->mu);
    return l;
}

void cb_batch_reader_free(struct cb_batch_reader *r)
{
    if (r == NULL)
        return;
    if (r->ahead) {
        pthread_mutex_lock(&forking_mu);
        forking_reader = NULL;
        pthread_mutex_unlock(&forking_mu);
        pthread_mutex_lock(&r->mu);
        atomic_store(&r->stop, true);
        pthread_cond_signal(&r->space);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
        for (size_t i = 0; i < r->count; i++)
            line_clear(&r->ring[(r->head + i) % CB_BATCH_AHEAD]);
        pthread_cond_destroy(&r->idle);
        pthread_cond_destroy(&r->space);
        pthread_cond_destroy(&r->ready);
        pthread_mutex_destroy(&r->mu);
        cb_cert_keycache_free(r->kc);
    }
    line_clear(&r->one);
    free(r->lc);
    free(r->split);
    free(r->buf);
    free(r);
}

bool cb_batch_reader__waiting(struct cb_batch_reader *r)
{
    bool waits = false;
    if (r->ahead) {
        pthread_mutex_lock(&r->mu);
        waits = r->thread_waits;
        pthread_mutex_unlock(&r->mu);
    }
    return waits;
}
