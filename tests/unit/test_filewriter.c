/*
 * test_filewriter.c: the batch's file writer thread (util/filewriter.h): files created with
 * their bytes, mode and no temporary left; more files than the queue holds; a file left by
 * a killed batch replaced whole; the first failure kept with its tag and every later call
 * reporting that failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/filewriter.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct dir {
    char path[256];
};

static int make_dir(void **state)
{
    struct dir *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -1;
    snprintf(d->path, sizeof(d->path), "/tmp/cb-test-filewriter-XXXXXX");
    if (mkdtemp(d->path) == NULL) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

static int remove_dir(void **state)
{
    struct dir *d = *state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
    int rc = system(cmd);
    free(d);
    return rc == 0 ? 0 : -1;
}

static char *dup_bytes(const char *s)
{
    char *p = strdup(s);
    assert_non_null(p);
    return p;
}

static void read_back(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static int count_entries(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *e;
    int n = 0;
    assert_non_null(dir);
    while ((e = readdir(dir)) != NULL)
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

static void test_files_are_written_with_their_bytes_and_mode(void **state)
{
    struct dir *d = *state;
    struct cb_filewriter *w;
    struct cb_err err = {0};
    unsigned long tag = 0;
    char path[300], buf[4096];
    struct stat st;
    const int n = 3 * CB_FILEWRITER_QUEUE + 7; /* more than the queue holds at once */

    assert_int_equal(cb_filewriter_start(&w, &err), 0);
    for (int i = 0; i < n; i++) {
        char text[64];
        snprintf(path, sizeof(path), "%s/f%04d", d->path, i);
        snprintf(text, sizeof(text), "file %d\n", i);
        assert_int_equal(cb_filewriter_add(w, path, i % 2 ? 0600 : 0644, (uid_t)-1, (gid_t)-1,
                                           dup_bytes(text), strlen(text), (unsigned long)i + 1,
                                           &tag, &err),
                         0);
    }
    assert_int_equal(cb_filewriter_wait(w, &tag, &err), 0);
    snprintf(path, sizeof(path), "%s/f%04d", d->path, n - 1);
    read_back(path, buf, sizeof(buf));
    snprintf(path, sizeof(path), "file %d\n", n - 1);
    assert_string_equal(buf, path);
    assert_int_equal(cb_filewriter_finish(w, &tag, &err), 0);
    assert_int_equal(count_entries(d->path), n); /* no temporary left */
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/f%04d", d->path, i);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, i % 2 ? 0600 : 0644);
    }
}

static void test_a_file_left_by_a_killed_batch_is_replaced(void **state)
{
    struct dir *d = *state;
    struct cb_filewriter *w;
    struct cb_err err = {0};
    char path[300], buf[64];
    FILE *f;

    snprintf(path, sizeof(path), "%s/left", d->path);
    assert_non_null(f = fopen(path, "w"));
    fputs("a longer half-written old content", f);
    fclose(f);
    assert_int_equal(cb_filewriter_start(&w, &err), 0);
    assert_int_equal(
        cb_filewriter_add(w, path, 0600, (uid_t)-1, (gid_t)-1, dup_bytes("new"), 3, 1, NULL, &err),
        0);
    assert_int_equal(cb_filewriter_finish(w, NULL, &err), 0);
    read_back(path, buf, sizeof(buf));
    assert_string_equal(buf, "new");
    assert_int_equal(count_entries(d->path), 1);
}

static void test_the_first_failure_is_kept_with_its_tag(void **state)
{
    struct dir *d = *state;
    struct cb_filewriter *w;
    struct cb_err err = {0};
    unsigned long tag = 0;
    char path[300];
    int ret = 0;

    assert_int_equal(cb_filewriter_start(&w, &err), 0);
    snprintf(path, sizeof(path), "%s/ok", d->path);
    assert_int_equal(
        cb_filewriter_add(w, path, 0644, (uid_t)-1, (gid_t)-1, dup_bytes("x"), 1, 1, &tag, &err),
        0);
    snprintf(path, sizeof(path), "%s/no-such-folder/bad", d->path);
    assert_int_equal(
        cb_filewriter_add(w, path, 0644, (uid_t)-1, (gid_t)-1, dup_bytes("x"), 1, 2, &tag, &err),
        0);
    /* Added until the writer has met the failure: then _add reports it. */
    for (unsigned long i = 3; ret == 0; i++) {
        snprintf(path, sizeof(path), "%s/later%lu", d->path, i);
        ret = cb_filewriter_add(w, path, 0644, (uid_t)-1, (gid_t)-1, dup_bytes("x"), 1, i, &tag,
                                &err);
        if (ret == 0 && i % 64 == 0)
            ret = cb_filewriter_wait(w, &tag, &err);
    }
    assert_int_equal(ret, CB_EIO);
    assert_int_equal(tag, 2);
    assert_non_null(strstr(err.msg, "no-such-folder/bad"));
    tag = 0;
    memset(&err, 0, sizeof(err));
    assert_int_equal(cb_filewriter_wait(w, &tag, &err), CB_EIO);
    assert_int_equal(tag, 2);
    tag = 0;
    assert_int_equal(cb_filewriter_finish(w, &tag, &err), CB_EIO);
    assert_int_equal(tag, 2);
    /* The file before the failure is there (later ones may be too: the caller removes them). */
    snprintf(path, sizeof(path), "%s/ok", d->path);
    assert_int_equal(access(path, F_OK), 0);
}

/* Polls (with a deadline) until every thread waits with no file queued. */
static void until_all_asleep(struct cb_filewriter *w)
{
    struct timespec start, now, tick = {0, 1000000};

    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        nanosleep(&tick, NULL); /* polling a condition, with a deadline */
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (cb_filewriter__asleep(w) < CB_FILEWRITER_THREADS && now.tv_sec - start.tv_sec < 10);
    assert_int_equal(cb_filewriter__asleep(w), CB_FILEWRITER_THREADS);
}

/* Fewer files than wake a thread, and then nothing: a batch reading a slow standard input.
 * With every thread asleep, they are written all the same, without a wait or finish
 * (polled, with a deadline); and more than a chunk of them too. */
static void test_a_few_files_are_written_while_the_caller_waits_for_more(void **state)
{
    struct dir *d = *state;
    struct cb_filewriter *w;
    struct cb_err err = {0};
    char path[300];
    struct timespec start, now, tick = {0, 1000000};
    const int counts[] = {3, 1, CB_FILEWRITER_WAKE - 1};
    int total = 0;

    assert_int_equal(cb_filewriter_start(&w, &err), 0);
    for (int round = 0; round < 3; round++) {
        until_all_asleep(w);
        for (int i = 0; i < counts[round]; i++) {
            snprintf(path, sizeof(path), "%s/r%d-%d", d->path, round, i);
            assert_int_equal(cb_filewriter_add(w, path, 0600, (uid_t)-1, (gid_t)-1, dup_bytes("x"),
                                               1, 1, NULL, &err),
                             0);
        }
        total += counts[round];
        clock_gettime(CLOCK_MONOTONIC, &start);
        do {
            nanosleep(&tick, NULL); /* polling a condition, with a deadline */
            clock_gettime(CLOCK_MONOTONIC, &now);
        } while (count_entries(d->path) < total && now.tv_sec - start.tv_sec < 10);
        assert_int_equal(count_entries(d->path), total);
    }
    assert_int_equal(cb_filewriter_finish(w, NULL, &err), 0);
}

/* Each folder's files go to one thread, and the first two folders to two threads (two
 * threads creating files in one folder take turns on its lock); a third shares one, and
 * files of every folder are written. */
static void test_each_folder_has_a_thread_of_its_own(void **state)
{
    struct dir *d = *state;
    struct cb_filewriter *w;
    struct cb_err err = {0};
    char path[300];
    const char *folders[] = {"certs", "keys", "more"};
    int lane[3][2];

    assert_int_equal(cb_filewriter_start(&w, &err), 0);
    for (int f = 0; f < 3; f++) {
        snprintf(path, sizeof(path), "%s/%s", d->path, folders[f]);
        assert_int_equal(mkdir(path, 0700), 0);
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof(path), "%s/%s/f%d", d->path, folders[f], i);
            lane[f][i] = cb_filewriter__lane(w, path);
            assert_true(lane[f][i] >= 0 && lane[f][i] < CB_FILEWRITER_THREADS);
            assert_int_equal(cb_filewriter_add(w, path, 0600, (uid_t)-1, (gid_t)-1, dup_bytes("x"),
                                               1, (unsigned long)f + 1, NULL, &err),
                             0);
        }
        assert_int_equal(lane[f][0], lane[f][1]);
    }
    assert_int_not_equal(lane[0][0], lane[1][0]);
    assert_int_equal(cb_filewriter_finish(w, NULL, &err), 0);
    for (int f = 0; f < 3; f++) {
        snprintf(path, sizeof(path), "%s/%s", d->path, folders[f]);
        assert_int_equal(count_entries(path), 2);
    }
}

static void test_finish_without_files(void **state)
{
    struct cb_filewriter *w;
    struct cb_err err = {0};
    (void)state;
    assert_int_equal(cb_filewriter_start(&w, &err), 0);
    assert_int_equal(cb_filewriter_finish(w, NULL, NULL), 0);
    assert_int_equal(cb_filewriter_finish(NULL, NULL, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_files_are_written_with_their_bytes_and_mode, make_dir,
                                        remove_dir),
        cmocka_unit_test_setup_teardown(test_a_file_left_by_a_killed_batch_is_replaced, make_dir,
                                        remove_dir),
        cmocka_unit_test_setup_teardown(test_the_first_failure_is_kept_with_its_tag, make_dir,
                                        remove_dir),
        cmocka_unit_test_setup_teardown(
            test_a_few_files_are_written_while_the_caller_waits_for_more, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_each_folder_has_a_thread_of_its_own, make_dir,
                                        remove_dir),
        cmocka_unit_test(test_finish_without_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
