/*
 * benchutil.h: what the C load generators (hsload, tpload) share: a stop flag for
 * SIGINT/SIGTERM, a monotonic clock, and the CPU time of this process and of the
 * server processes being measured (from /proc). Header-only: each tool is built from
 * one .c file by the run-* scripts as well as by CMake.
 */
#ifndef CB_BENCH_BENCHUTIL_H
#define CB_BENCH_BENCHUTIL_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_PIDS 64

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of this process. */
static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* "PID,PID,...": appends to pids[*n] (at most BENCH_MAX_PIDS). -1 on a bad list. */
static int parse_pids(char *arg, pid_t *pids, int *n)
{
    for (char *tok = strtok(arg, ","); tok != NULL; tok = strtok(NULL, ",")) {
        long v = strtol(tok, NULL, 10);
        if (*n == BENCH_MAX_PIDS || v <= 0)
            return -1;
        pids[(*n)++] = (pid_t)v;
    }
    return 0;
}

/* CPU seconds (user + system, all threads) of the given processes. */
static double pids_cpu(const pid_t *pids, int n)
{
    double total = 0;
    long hz = sysconf(_SC_CLK_TCK);

    for (int i = 0; i < n; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pids[i]);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        /* Fields after the command name, which may hold spaces: state is field 3. */
        char *p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0;
        if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                                &utime, &stime) != 2)
            continue;
        total += (double)(utime + stime) / (double)hz;
    }
    return total;
}

#endif
