/*
 * test_batch_read.c: the batch's reader (cli/batch.h). On a regular file a thread reads
 * ahead and loads the files of `add cert` lines: every line comes out once, in order, with
 * its number, through many turns of the ring; a loaded file holds what the command would
 * have loaded (the same thumbprint and encoding), and one that cannot be loaded holds the
 * same error the command would report; lines the command must refuse or load itself (a
 * password file, link=yes, key= with several files, a flag) are left alone; freeing the
 * reader in the middle, with the thread waiting on a full ring, leaves nothing behind (run
 * under ASan). A pipe is read a line at a time, with nothing loaded ahead.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/batch.h"
#include "cli/cli.h"

static char dir[64];

static const char *p(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static int setup(void **state)
{
    char cmd[1024];
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cb-test-batch-read-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-days 30 -subj /CN=a.example.com -keyout a.key -out a.crt >/dev/null 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
             "-subj /CN=b.example.com -keyout b.key -out b.crt >/dev/null 2>&1 && "
             "cat b.crt b.key > b.pem && cat a.crt a.key > a.pem",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A batch file of the given text, opened for reading. */
static FILE *batch(const char *text)
{
    FILE *f = fopen(p("batch.txt"), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    f = fopen(p("batch.txt"), "r");
    assert_non_null(f);
    return f;
}

static void test_every_line_once_in_order_through_many_turns(void **unused)
{
    (void)unused;
    const int n = CB_BATCH_AHEAD * 5 + 3;
    FILE *f = fopen(p("many.txt"), "w");
    assert_non_null(f);
    for (int i = 1; i <= n; i++)
        fprintf(f, "# line %d\n", i);
    fclose(f);
    f = fopen(p("many.txt"), "r");
    struct cb_batch_reader *r;
    struct cb_err err = {0};
    assert_int_equal(cb_batch_reader_new(f, &r, &err), 0);
    for (int i = 1; i <= n; i++) {
        char want[32];
        struct cb_batch_line *l = cb_batch_reader_next(r);
        snprintf(want, sizeof(want), "# line %d", i);
        assert_int_equal(l->read_ret, 0);
        assert_int_equal(l->lineno, (unsigned long)i);
        assert_string_equal(l->text, want);
        assert_int_equal(l->len, strlen(want));
        assert_null(l->files);
    }
    struct cb_batch_line *end = cb_batch_reader_next(r);
    assert_int_equal(end->read_ret, CB_ENOENT);
    assert_int_equal(end->lineno, (unsigned long)n + 1);
    cb_batch_reader_free(r);
    fclose(f);
}

/* What `add cert FILE [key=KEY]` would load: the thumbprint, and the store's key file. */
static void loaded_alone(const char *file, const char *key, char thumb[CB_THUMB_LEN + 1],
                         char **key_pem, size_t *key_len)
{
    struct cb_cert_bundle *b;
    struct cb_cert_info info;
    struct cb_err err = {0};
    char *cert_pem;
    size_t cert_len;
    assert_int_equal(cb_cert_bundle_load(file, key, NULL, &b, &err), 0);
    assert_int_equal(cb_cert_bundle_info(b, &info, &err), 0);
    memcpy(thumb, info.thumbprint, CB_THUMB_LEN + 1);
    assert_int_equal(cb_cert_bundle_pem(b, NULL, &cert_pem, &cert_len, key_pem, key_len, &err), 0);
    free(cert_pem);
    cb_cert_info_clear(&info);
    cb_cert_bundle_free(b);
}

/* A file the reader could not load: refused as the batch's command refuses it, loading it
 * alone with the batch's key cache (without a key: the lines that use this name none). */
static void assert_refused_as_alone(const struct cb_cli_prepared *pre, const char *file)
{
    struct cb_cert_bundle *b = NULL;
    struct cb_cert_keycache *kc = NULL;
    struct cb_err alone = {0};
    assert_int_equal(cb_cert_keycache_new(&kc, &alone), 0);
    int ret = cb_cert_bundle_load_cached(file, NULL, NULL, kc, &b, &alone);
    cb_cert_keycache_free(kc);
    assert_int_not_equal(ret, 0);
    assert_null(b);
    assert_string_equal(pre->file, file);
    assert_int_equal(pre->ret, ret);
    assert_string_equal(pre->err.msg, alone.msg);
    assert_null(pre->bundle);
}

static void test_add_cert_lines_are_loaded_as_the_command_would(void **unused)
{
    (void)unused;
    char text[16384], ta[CB_THUMB_LEN + 1], tb[CB_THUMB_LEN + 1];
    char acrt[128], akey[128], bpem[128], bkey[128], missing[128];
    snprintf(acrt, sizeof(acrt), "%s/a.crt", dir);
    snprintf(akey, sizeof(akey), "%s/a.key", dir);
    snprintf(bpem, sizeof(bpem), "%s/b.pem", dir);
    snprintf(bkey, sizeof(bkey), "%s/b.key", dir);
    snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
    char fifo[128], apem[128];
    snprintf(apem, sizeof(apem), "%s/a.pem", dir);
    snprintf(fifo, sizeof(fifo), "%s/fifo.pem", dir);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    char *ka, *kb;
    size_t ka_len, kb_len;
    loaded_alone(acrt, akey, ta, &ka, &ka_len);
    loaded_alone(bpem, NULL, tb, &kb, &kb_len);
    snprintf(text, sizeof(text),
             "add cert %s key=%s\n"                         /* 1: loaded */
             "add cert %s %s\n"                             /* 2: two files, the second missing */
             "add cert %s key=%s\n"                         /* 3: the wrong key */
             "add cert %s key=%s password-file=%s\n"        /* 4: a password: the command's */
             "add cert %s key=%s link=yes\n"                /* 5: link=yes: the command's */
             "add cert %s %s key=%s\n"                      /* 6: key= with two files: refused */
             "add cert %s --json\n"                         /* 7: a flag: refused */
             "add sslcert ipport=0.0.0.0:443 certhash=%s\n" /* 8: not add cert */
             "add cert 'unbalanced\n"                       /* 9: not split */
             "add cert %s %s\n"                             /* 10: two files */
             "add cert %s %s\n",                            /* 11: a FIFO */
             acrt, akey, bpem, missing, acrt, bkey, acrt, akey, akey, acrt, akey, acrt, bpem, akey,
             acrt, ta, bpem, apem, acrt, fifo);
    FILE *f = batch(text);
    struct cb_batch_reader *r;
    struct cb_err err = {0};
    assert_int_equal(cb_batch_reader_new(f, &r, &err), 0);

    struct cb_batch_line *l = cb_batch_reader_next(r);
    assert_int_equal(l->n_files, 1);
    assert_int_equal(l->files[0].ret, 0);
    assert_string_equal(l->files[0].file, acrt);
    assert_string_equal(l->files[0].info.thumbprint, ta);
    assert_non_null(l->files[0].bundle);
    assert_int_equal(l->files[0].pems.key_len, ka_len);
    assert_memory_equal(l->files[0].pems.key, ka, ka_len);

    /* A file that cannot be loaded (missing here, a FIFO below) is loaded ahead all the same,
     * with the command's refusal word for word, and the files before it loaded. */
    l = cb_batch_reader_next(r);
    assert_int_equal(l->lineno, 2);
    assert_int_equal(l->n_files, 2);
    assert_int_equal(l->files[0].ret, 0);
    assert_string_equal(l->files[0].info.thumbprint, tb);
    assert_refused_as_alone(&l->files[1], missing);

    /* The same refusal, word for word, as loading it alone. */
    l = cb_batch_reader_next(r);
    struct cb_cert_bundle *b = NULL;
    struct cb_err alone = {0};
    int ret = cb_cert_bundle_load(acrt, bkey, NULL, &b, &alone);
    assert_int_not_equal(ret, 0);
    assert_int_equal(l->n_files, 1);
    assert_int_equal(l->files[0].ret, ret);
    assert_string_equal(l->files[0].err.msg, alone.msg);

    for (int line = 4; line <= 9; line++) {
        l = cb_batch_reader_next(r);
        assert_int_equal(l->lineno, (unsigned long)line);
        assert_int_equal(l->read_ret, 0);
        assert_null(l->files);
    }
    l = cb_batch_reader_next(r);
    assert_int_equal(l->n_files, 2);
    assert_int_equal(l->files[0].ret, 0);
    assert_string_equal(l->files[0].info.thumbprint, tb);
    assert_int_equal(l->files[0].pems.key_len, kb_len);
    assert_memory_equal(l->files[0].pems.key, kb, kb_len);
    assert_int_equal(l->files[1].ret, 0);
    assert_string_equal(l->files[1].info.thumbprint, ta);
    l = cb_batch_reader_next(r); /* the reader did not block opening the FIFO */
    assert_int_equal(l->lineno, 11);
    assert_int_equal(l->n_files, 2);
    assert_refused_as_alone(&l->files[0], acrt); /* its key is in a.key, not named here */
    assert_refused_as_alone(&l->files[1], fifo);
    assert_int_equal(l->files[1].ret, CB_EBADFILE);
    assert_int_equal(cb_batch_reader_next(r)->read_ret, CB_ENOENT);
    cb_batch_reader_free(r);
    fclose(f);
    free(ka);
    free(kb);
}

static void test_freed_in_the_middle_with_a_full_ring(void **unused)
{
    (void)unused;
    FILE *f = fopen(p("full.txt"), "w");
    assert_non_null(f);
    char acrt[128], akey[128];
    snprintf(acrt, sizeof(acrt), "%s/a.crt", dir);
    snprintf(akey, sizeof(akey), "%s/a.key", dir);
    for (int i = 0; i < CB_BATCH_AHEAD * 3; i++)
        fprintf(f, "add cert %s key=%s\n", acrt, akey);
    fclose(f);
    f = fopen(p("full.txt"), "r");
    struct cb_batch_reader *r;
    struct cb_err err = {0};
    assert_int_equal(cb_batch_reader_new(f, &r, &err), 0);
    struct cb_batch_line *l = cb_batch_reader_next(r);
    assert_int_equal(l->files[0].ret, 0);
    /* Taken by the command: the reader frees only what is left. */
    cb_cert_bundle_free(l->files[0].bundle);
    l->files[0].bundle = NULL;
    l = cb_batch_reader_next(r);
    assert_int_equal(l->lineno, 2);
    /* The ring fills up: the thread waits for room (polled, with a deadline). */
    struct timespec nap = {0, 2000000};
    for (int i = 0; i < 10000 && !cb_batch_reader__waiting(r); i++)
        nanosleep(&nap, NULL);
    assert_true(cb_batch_reader__waiting(r));
    cb_batch_reader_free(r); /* wakes it to stop */
    fclose(f);
}

static void test_a_pipe_is_read_a_line_at_a_time(void **unused)
{
    (void)unused;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    FILE *f = fdopen(fds[0], "r");
    assert_non_null(f);
    char text[1024];
    int len = snprintf(text, sizeof(text), "add cert %s key=%s\n", p("a.crt"), p("a.key"));
    assert_int_equal(write(fds[1], text, (size_t)len), len);
    struct cb_batch_reader *r;
    struct cb_err err = {0};
    assert_int_equal(cb_batch_reader_new(f, &r, &err), 0);
    /* The writer has not closed the pipe: a reader that read ahead would wait here. */
    struct cb_batch_line *l = cb_batch_reader_next(r);
    assert_int_equal(l->lineno, 1);
    assert_int_equal(l->read_ret, 0);
    assert_null(l->files); /* the command loads it */
    close(fds[1]);
    assert_int_equal(cb_batch_reader_next(r)->read_ret, CB_ENOENT);
    cb_batch_reader_free(r);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_line_once_in_order_through_many_turns),
        cmocka_unit_test(test_add_cert_lines_are_loaded_as_the_command_would),
        cmocka_unit_test(test_freed_in_the_middle_with_a_full_ring),
        cmocka_unit_test(test_a_pipe_is_read_a_line_at_a_time),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
