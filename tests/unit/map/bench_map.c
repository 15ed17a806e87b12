/* Benchmark of map/: one patient, MAP plus a 4 strengths x 3 intervals search with target
 * attainment probabilities (200 posterior draws for the analytic model; the delta method, the
 * default, for the ODE model), for a 1-cmt analytic and a 2-cmt ODE model. Prints wall and CPU
 * times over 7 runs; the limit is checked against the median CPU time. Run through bench/map.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "map/map.h"

static const char one_cmt[] =
    "name: onecmt\n"
    "theta:\n  tcl: {init: 4.5}\n  tv: {init: 60}\n"
    "omega:\n  eta_cl: 0.147\n  eta_v: 0.1\n"
    "sigma:\n  prop_sd: {init: 0.15, lower: 0}\n"
    "individual:\n  cl: tcl * exp(eta_cl)\n  v: tv * exp(eta_v)\n"
    "linear:\n  CL: cl\n  V: v\n"
    "observe:\n  cp:\n    value: central / v\n    cmt: central\n"
    "    error: {proportional: prop_sd}\n";

static const char two_cmt_ode[] =
    "name: twocmt_ode\n"
    "theta:\n  tcl: {init: 4.5}\n  tvc: {init: 58.4}\n  tvp: {init: 38.4}\n  tq: {init: 6.5}\n"
    "omega:\n  eta_cl: 0.147\n  eta_vc: 0.51\n  eta_vp: 0.28\n"
    "sigma:\n  add_sd: {init: 3.4, lower: 0}\n  prop_sd: {init: 0.227, lower: 0}\n"
    "individual:\n  cl: tcl * exp(eta_cl)\n  vc: tvc * exp(eta_vc)\n  vp: tvp * exp(eta_vp)\n"
    "  q: tq\n"
    "odes:\n  central: -cl / vc * central - q / vc * central + q / vp * peripheral\n"
    "  peripheral: q / vc * central - q / vp * peripheral\n"
    "observe:\n  cp:\n    value: central / vc\n    cmt: central\n"
    "    error: {combined_var: [add_sd, prop_sd]}\n";

static const char patient[] = "ID,TIME,DV,AMT,RATE,EVID,CMT\n"
                              "1,0,.,1000,1000,1,1\n1,12,.,1000,1000,1,1\n1,23.5,14.8,.,.,0,1\n"
                              "1,24,.,1000,1000,1,1\n1,26,31.5,.,.,0,1\n";

static double now(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench(const char *name, const char *text, size_t len, double limit_ms)
{
    popk_error err;
    popk_model *m = popk_model_parse(name, text, len, &err);
    popk_data *d = popk_data_parse("patient.csv", patient, sizeof patient - 1, &err);
    if (!m || !d) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    popk_map_options o;
    popk_map_options_default(&o);
    o.nsamples = 200;
    popk_map_target t = {POPK_TARGET_AUC24, 400, 600, 0, 0};
    double doses[] = {750, 1000, 1250, 1500}, ii[] = {8, 12, 24}, dur[] = {1};
    double ms[7], cpu[7];
    double pta = 0;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        popk_map *mp = popk_map_new(m, d, &o, &err);
        int n;
        popk_map_regimen *r = mp ? popk_map_recommend(mp, &t, 4, doses, 3, ii, 1, dur, &n, &err)
                                 : NULL;
        ms[rep] = 1e3 * (now(CLOCK_MONOTONIC) - t0);
        cpu[rep] = 1e3 * (now(CLOCK_PROCESS_CPUTIME_ID) - c0);
        if (!r) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        pta = r[0].pta;
        free(r);
        popk_map_free(mp);
    }
    qsort(ms, 7, sizeof *ms, cmp);
    qsort(cpu, 7, sizeof *cpu, cmp);
    /* on a shared machine the wall time includes waiting for a core: CPU time is shown too */
    printf("%-10s MAP + 4x3 regimens with PTA: wall median %.1f ms (min %.1f), CPU median %.1f ms"
           " (limit %g ms)  best PTA %.2f  %s\n", name, ms[3], ms[0], cpu[3], limit_ms, pta,
           cpu[3] < limit_ms ? "OK" : "SLOW");
    popk_data_free(d);
    popk_model_free(m);
    return cpu[3] < limit_ms ? 0 : 2;
}

int main(void)
{
    int a = bench("1-cmt", one_cmt, sizeof one_cmt - 1, 50);
    int b = bench("2-cmt-ode", two_cmt_ode, sizeof two_cmt_ode - 1, 500);
    return a || b;
}
