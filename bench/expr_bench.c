/* bench/expr_bench.c — time a 10-assignment individual block on doubles and on duals.
 *
 * Usage: bench_expr [iterations]   (built by tests/unit/expr/meson.build; see bench/expr.sh)
 * Prints ns per evaluation of the whole block for doubles, for duals with nd = 4 (the four
 * etas seeded), and for the same block hand-written in C on doubles as a yardstick. */
#include "expr/expr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    S_TCL, S_TV, S_TKA, S_TQ, S_TV2, S_TF, S_ETA_CL, S_ETA_V, S_ETA_KA, S_ETA_Q,
    S_WT, S_CRCL, S_CYP, S_SEX,
    S_CL, S_V, S_KA, S_Q, S_V2, S_FCYP, S_CLC, S_K, S_F1, S_THALF,
    NSLOTS
};

static const char *const names[NSLOTS] = {
    "tcl", "tv", "tka", "tq", "tv2", "tf", "eta_cl", "eta_v", "eta_ka", "eta_q",
    "WT", "CRCL", "CYP2C19", "SEX",
    "CL", "V", "KA", "Q", "V2", "FCYP", "CLC", "K", "F1", "THALF"};

static const struct {
    int slot;
    const char *text;
} block[] = {
    {S_CL, "tcl * (WT / 70)^0.75 * exp(eta_cl)"},
    {S_V, "tv * (WT / 70) * exp(eta_v)"},
    {S_KA, "exp(tka + eta_ka)"},
    {S_Q, "tq * (WT / 70)^0.75 * exp(eta_q)"},
    {S_V2, "tv2 * WT / 70"},
    {S_FCYP, "if(CYP2C19 == \"PM\", 0.4, if(CYP2C19 == \"IM\", 0.7, 1))"},
    {S_CLC, "CL * FCYP * (CRCL / 100)^0.3"},
    {S_K, "CLC / V"},
    {S_F1, "expit(tf + 0.5 * (SEX == \"female\"))"},
    {S_THALF, "log(2) / K"},
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void hand_written(double *s)
{
    s[S_CL] = s[S_TCL] * pow(s[S_WT] / 70, 0.75) * exp(s[S_ETA_CL]);
    s[S_V] = s[S_TV] * (s[S_WT] / 70) * exp(s[S_ETA_V]);
    s[S_KA] = exp(s[S_TKA] + s[S_ETA_KA]);
    s[S_Q] = s[S_TQ] * pow(s[S_WT] / 70, 0.75) * exp(s[S_ETA_Q]);
    s[S_V2] = s[S_TV2] * s[S_WT] / 70;
    s[S_FCYP] = s[S_CYP] == 0 ? 0.4 : s[S_CYP] == 1 ? 0.7 : 1;
    s[S_CLC] = s[S_CL] * s[S_FCYP] * pow(s[S_CRCL] / 100, 0.3);
    s[S_K] = s[S_CLC] / s[S_V];
    s[S_F1] = 1 / (1 + exp(-(s[S_TF] + 0.5 * (s[S_SEX] == 0))));
    s[S_THALF] = log(2) / s[S_K];
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 300000;
    static const char *const cyp_levels[] = {"PM", "IM", "NM"};
    static const double cyp_codes[] = {0, 1, 2};
    static const char *const sex_levels[] = {"male", "female"};
    static const double sex_codes[] = {1, 0};
    popk_symbol syms[NSLOTS];
    for (int i = 0; i < NSLOTS; i++)
        syms[i] = (popk_symbol){names[i], i, 0, NULL, NULL};
    syms[S_CYP] = (popk_symbol){"CYP2C19", S_CYP, 3, cyp_levels, cyp_codes};
    syms[S_SEX] = (popk_symbol){"SEX", S_SEX, 2, sex_levels, sex_codes};
    popk_symtab st = {syms, NSLOTS};

    popk_prog *p = popk_prog_new();
    popk_error err;
    for (size_t i = 0; i < sizeof block / sizeof block[0]; i++) {
        popk_expr *e = popk_expr_parse(block[i].text, strlen(block[i].text), NULL, &err);
        if (!e || popk_prog_add(p, block[i].slot, e, &st, &err) != POPK_OK) {
            char buf[900];
            fprintf(stderr, "%s\n", popk_error_format(&err, buf, sizeof buf));
            return 1;
        }
        popk_expr_free(e);
    }
    const double inputs[S_CL] = {5.0, 40.0, 0.3, 8.0, 60.0, 1.2, 0.1, -0.2, 0.05, 0.3,
                                 82.0, 95.0, 1, 0};
    enum { ND = 4, W = 1 + ND };
    double slots[NSLOTS], ref[NSLOTS], dslots[NSLOTS * W];
    double *stack = malloc(sizeof(double) * (size_t)popk_prog_stack_size(p) * W);
    memcpy(slots, inputs, sizeof inputs);
    memcpy(ref, inputs, sizeof inputs);
    memset(dslots, 0, sizeof dslots);
    for (int i = 0; i < S_CL; i++)
        dslots[i * W] = inputs[i];
    for (int k = 0; k < ND; k++)
        dslots[(S_ETA_CL + k) * W + 1 + k] = 1;

    popk_prog_eval(p, slots, stack);
    popk_prog_eval_dual(p, ND, dslots, stack);
    hand_written(ref);
    for (int i = S_CL; i < NSLOTS; i++)
        if (fabs(slots[i] - ref[i]) > 1e-13 * fabs(ref[i]) || dslots[i * W] != slots[i]) {
            fprintf(stderr, "mismatch in %s: %g %g %g\n", names[i], slots[i], ref[i],
                    dslots[i * W]);
            return 1;
        }

    /* The machine is shared: CPU time, and the best of several rounds of each kind. */
    double best[3] = {INFINITY, INFINITY, INFINITY};
    volatile double sink = 0;
    for (int round = 0; round < 7; round++) {
        double t0 = now_ns();
        for (long it = 0; it < iters; it++)
            popk_prog_eval(p, slots, stack);
        double t1 = now_ns();
        for (long it = 0; it < iters; it++)
            popk_prog_eval_dual(p, ND, dslots, stack);
        double t2 = now_ns();
        for (long it = 0; it < iters; it++) {
            hand_written(ref);
            sink += ref[S_THALF];
        }
        double t3 = now_ns();
        best[0] = fmin(best[0], (t1 - t0) / (double)iters);
        best[1] = fmin(best[1], (t2 - t1) / (double)iters);
        best[2] = fmin(best[2], (t3 - t2) / (double)iters);
    }
    printf("individual block: %d assignments, %d stack entries, best of 7 x %ld iterations\n",
           popk_prog_count(p), popk_prog_stack_size(p), iters);
    printf("doubles:        %7.1f ns/eval\n", best[0]);
    printf("duals nd=4:     %7.1f ns/eval\n", best[1]);
    printf("hand-written C: %7.1f ns/eval (doubles, no derivatives)\n", best[2]);
    printf("dCL/deta_cl = %.6g (= CL %.6g)\n", dslots[S_CL * W + 1], dslots[S_CL * W]);
    free(stack);
    popk_prog_free(p);
    return 0;
}
