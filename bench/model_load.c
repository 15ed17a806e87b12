/* bench/model_load.c — mean time of popk_model_load (read, YAML, schema, compile, free) per
 * model file, in-process, so process start-up is not counted. Built by bench/model.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model/model.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 200;
    double worst = 0;
    for (int i = 2; i < argc; i++) {
        popk_error err;
        double t0 = now();
        for (int r = 0; r < runs; r++) {
            popk_model *m = popk_model_load(argv[i], &err);
            if (!m) {
                char buf[1024];
                fprintf(stderr, "%s\n", popk_error_format(&err, buf, sizeof buf));
                return 2;
            }
            popk_model_free(m);
        }
        double ms = (now() - t0) / runs * 1e3;
        if (ms > worst)
            worst = ms;
        printf("%-34s %8.3f\n", argv[i], ms);
    }
    printf("slowest load: %.3f ms (target < 5 ms)\n", worst);
    return worst < 5 ? 0 : 1;
}
