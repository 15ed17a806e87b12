/* bench/bench_data.c — time popk_data_read in process: best and median of N reads. */
#include "data/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_data FILE [REPEATS]\n");
        return 2;
    }
    int repeats = argc > 2 ? atoi(argv[2]) : 10;
    if (repeats < 1 || repeats > 1000)
        repeats = 10;
    double *ms = malloc((size_t)repeats * sizeof *ms);
    size_t nrec = 0, nsub = 0;
    for (int i = 0; i < repeats; i++) {
        popk_error err;
        double t0 = now_ms();
        popk_data *d = popk_data_read(argv[1], &err);
        double t1 = now_ms();
        if (!d) {
            char buf[1024];
            fprintf(stderr, "%s\n", popk_error_format(&err, buf, sizeof buf));
            free(ms);
            return 2;
        }
        nrec = d->nrec;
        nsub = d->nsub;
        popk_data_free(d);
        ms[i] = t1 - t0;
    }
    qsort(ms, (size_t)repeats, sizeof *ms, cmp_double);
    printf("popk_data_read %s: %zu records, %zu subjects; best %.2f ms, median %.2f ms (%d runs)\n",
           argv[1], nrec, nsub, ms[0], ms[repeats / 2], repeats);
    free(ms);
    return 0;
}
