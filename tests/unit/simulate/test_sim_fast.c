/* Tests for the fast paths of popk_sim_run: the linear time-invariant recurrence (lti.c)
 * against the engine run record by record (bolus, oral with bioavailability, infusions ending
 * between grid points, two compartments, an output with an offset) and against the
 * steady-state closed form; the output classifier; a failing subject reported as the engine
 * reports it; the percentile sketch (sketch.c) against the order statistics of the same
 * draws, and on synthetic values of both signs spanning 2^50. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/popk_test.h"
#include "simulate/sim.h"
#include "simulate/sim_impl.h"

static const char *bolus_text =
    "name: fastbolus\n"
    "theta: {tcl: 2.0, tv: 20.0}\n"
    "omega: {eta_cl: 0.1, eta_v: 0.1}\n"
    "sigma: {prop: 0.1}\n"
    "individual:\n"
    "  cl: tcl * exp(eta_cl)\n"
    "  v: tv * exp(eta_v)\n"
    "linear: {CL: cl, V: v}\n"
    "observe:\n"
    "  cp: {value: central / v, error: {proportional: prop}}\n";

/* A linear ODE model (matrix exponential in the engine) with a constant input: oral
 * absorption, two compartments and an endogenous production rate. */
static const char *ode_text =
    "name: fastode\n"
    "theta: {tcl: 2.0, tv: 20.0, tka: 1.2, tq: 3.0, tvp: 40.0, tkin: 0.5}\n"
    "omega: {eta_cl: 0.1, eta_ka: 0.1}\n"
    "sigma: {prop: 0.1}\n"
    "individual:\n"
    "  cl: tcl * exp(eta_cl)\n"
    "  ka: tka * exp(eta_ka)\n"
    "  v: tv\n"
    "  q: tq\n"
    "  vp: tvp\n"
    "  kin: tkin\n"
    "odes:\n"
    "  depot: -ka * depot\n"
    "  central: ka * depot - (cl + q) / v * central + q / vp * periph + kin\n"
    "  periph: q / v * central - q / vp * periph\n"
    "observe:\n"
    "  cp: {value: central / v, cmt: central, error: {proportional: prop}}\n";

/* Bioavailability on the depot; a bolus into central too. */
static const char *oral_text =
    "name: fastoral\n"
    "theta: {tcl: 2.0, tv: 20.0, tka: 1.2, tf: 0.7}\n"
    "omega: {eta_cl: 0.1, eta_ka: 0.1}\n"
    "sigma: {prop: 0.1}\n"
    "individual:\n"
    "  cl: tcl * exp(eta_cl)\n"
    "  v: tv\n"
    "  ka: tka * exp(eta_ka)\n"
    "  bio: tf\n"
    "linear: {CL: cl, V: v, KA: ka}\n"
    "dosing:\n"
    "  depot: {F: bio}\n"
    "observe:\n"
    "  cp: {value: central / v, error: {proportional: prop}}\n";

/* Two compartments, a covariate, an output reading both amounts plus an offset, additive
 * error (negative values with --residual). OUTPUT is replaced by the test's expression. */
static const char *two_text =
    "name: fasttwo\n"
    "theta: {tcl: 4.0, tv: 30.0, tq: 2.0, tv2: 50.0}\n"
    "omega: {eta_cl: 0.1, eta_v: 0.1}\n"
    "sigma: {add: 0.5}\n"
    "covariates:\n"
    "  WT: {unit: kg, reference: 70}\n"
    "individual:\n"
    "  cl: tcl * exp(eta_cl) * (WT / 70)^0.75\n"
    "  v: tv * exp(eta_v)\n"
    "  q: tq\n"
    "  v2: tv2\n"
    "  base: 0.1 * WT / 70\n"
    "  lcl: log(WT - 60)\n"
    "linear: {CL: cl, V: v, Q2: q, V2: v2}\n"
    "observe:\n"
    "  cp: {value: 'OUTPUT', error: {additive: add}}\n";

static popk_model *two_model(const char *output)
{
    char text[4096];
    const char *at = strstr(two_text, "OUTPUT");
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - two_text), two_text, output, at + 6);
    popk_error err;
    popk_model *m = popk_model_parse("fasttwo.yaml", text, strlen(text), &err);
    if (!m)
        fprintf(stderr, "\n%s: %s\n", output, err.message);
    return m;
}

static popk_population pop_of(const popk_model *m, popk_covdist *dist, const char *spec)
{
    popk_population pop = {.ncov = m->ncov, .dist = dist};
    memset(dist, 0, sizeof(popk_covdist) * (size_t)(m->ncov ? m->ncov : 1));
    popk_error err;
    if (spec)
        CU_ASSERT_EQUAL(popk_population_parse(&pop, m, spec, &err), POPK_OK);
    return pop;
}

/* The same draws through the recurrence and through the engine: profiles within 1e-11 of the
 * largest value, metrics within 1e-9 relative, identical pass/fail and covariates. */
static void compare_paths(const popk_model *m, const char *regimen, const char *times_spec,
                          const char *popspec)
{
    popk_error err;
    popk_regimen *reg = popk_regimen_parse(regimen, m, &err);
    if (!reg)
        fprintf(stderr, "\n%s: %s\n", regimen, err.message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    size_t nt;
    double *times = popk_sim_parse_times(times_spec, &nt, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(times);
    popk_covdist dist[4];
    popk_population pop = pop_of(m, dist, popspec);
    double qs[] = {0.1, 0.5, 0.9};
    popk_target tg;
    CU_ASSERT_EQUAL(popk_target_parse(&tg, "AUCtau>=5", NAN, &err), POPK_OK);
    popk_sim_options o = {.seed = 9, .n = 300, .iiv = 1, .nq = 3, .quantiles = qs,
                          .threshold = 1.0, .ntarget = 1, .target = &tg, .keep_profiles = 1};
    popk_sim_result *a = popk_sim_run(m, reg, &pop, times, nt, &o, &err);
    o.engine_only = 1;
    popk_sim_result *b = popk_sim_run(m, reg, &pop, times, nt, &o, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(a->lti, 1);
    CU_ASSERT_EQUAL(b->lti, 0);
    double big = 0, worst = 0;
    for (size_t i = 0; i < 300 * nt; i++)
        big = fmax(big, fabs(b->profile[i]));
    for (size_t i = 0; i < 300 * nt; i++)
        worst = fmax(worst, fabs(a->profile[i] - b->profile[i]));
    CU_ASSERT(big > 0);
    CU_ASSERT(worst <= 1e-11 * big);
    if (!(worst <= 1e-11 * big))
        fprintf(stderr, "\n%s: profiles differ by %g (largest %g)\n", regimen, worst, big);
    int metrics_ok = 1;
    for (int s = 0; s < 300; s++)
        for (int k = 0; k < POPK_MET_N; k++) {
            if (k == POPK_MET_TMAX)
                continue; /* ties between equal steady-state peaks may fall either way */
            double x = a->metric[s * POPK_MET_N + k], y = b->metric[s * POPK_MET_N + k];
            if (!(isnan(x) && isnan(y)) && !(fabs(x - y) <= 1e-9 * fabs(y) + 1e-12 * big))
                metrics_ok = 0;
        }
    CU_ASSERT(metrics_ok);
    CU_ASSERT(memcmp(a->pass, b->pass, 300 * 2) == 0);
    CU_ASSERT(memcmp(a->cov, b->cov, sizeof(double) * 300 * (size_t)m->ncov) == 0);
    popk_sim_result_free(a);
    popk_sim_result_free(b);
    free(times);
    popk_regimen_free(reg);
}

static void test_lti_vs_engine(void)
{
    popk_error err;
    popk_model *mb = popk_model_parse("fastbolus.yaml", bolus_text, strlen(bolus_text), &err);
    popk_model *mo = popk_model_parse("fastoral.yaml", oral_text, strlen(oral_text), &err);
    popk_model *m2 = two_model("(central + 0.01 * peripheral1) / v + base");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mb);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mo);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m2);
    compare_paths(mb, "100 mg iv q12h x 28", "0:1:336", NULL);
    /* doses between grid points: two distinct steps */
    compare_paths(mb, "100 mg iv q7.5h x 6", "0:1:48", NULL);
    compare_paths(mo, "320 mg po q12h x 3, at 40 h 100 mg iv", "0:0.25:60", NULL);
    /* infusions ending between grid points, overlapping a bolus */
    compare_paths(m2, "200 mg iv, at 5 h 1000 mg iv over 0.7 h q12h x 4", "0:0.5:60",
                  "WT=N(75,10,61,120)");
    compare_paths(m2, "500 mg iv over 30 h q12h x 2", "0:1:72", "WT=80");
    popk_model_free(mb);
    popk_model_free(mo);
    popk_model_free(m2);
    popk_model *me = popk_model_parse("fastode.yaml", ode_text, strlen(ode_text), &err);
    if (!me)
        fprintf(stderr, "\nfastode.yaml: %s\n", err.message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(me);
    compare_paths(me, "320 mg po q12h x 6, at 80 h 100 mg iv", "0:0.5:96", NULL);
    popk_model_free(me);
}

/* Typical patients (no etas) through the recurrence: the steady-state trough and peak of
 * 28 doses of D every tau, D/V e^{-k tau} acc and D/V acc with acc = (1 - e^{-k N tau}) /
 * (1 - e^{-k tau}), and AUCtau = D/CL (1 - e^{-k N tau}). */
static void test_lti_closed_form(void)
{
    popk_error err;
    popk_model *mb = popk_model_parse("fastbolus.yaml", bolus_text, strlen(bolus_text), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mb);
    popk_regimen *reg = popk_regimen_parse("100 mg iv q12h x 28", mb, &err);
    size_t nt;
    double *times = popk_sim_parse_times("0:1:336", &nt, &err);
    popk_sim_options o = {.n = 100, .iiv = 0, .threshold = NAN};
    popk_sim_result *r = popk_sim_run(mb, reg, NULL, times, nt, &o, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->lti, 1);
    double k = 0.1, tau = 12, N = 28, ekt = exp(-k * tau), acc = (1 - pow(ekt, N)) / (1 - ekt);
    const double *met = r->metric + 99 * POPK_MET_N;
    CU_ASSERT(fabs(met[POPK_MET_TROUGH] / (5 * ekt * acc) - 1) < 1e-12);
    CU_ASSERT(fabs(met[POPK_MET_CMAX] / (5 * acc) - 1) < 1e-12);
    CU_ASSERT(fabs(met[POPK_MET_AUCTAU] / (50 * (1 - pow(ekt, N))) - 1) < 1e-10);
    /* every hour of the first interval: 5 e^{-k t} */
    for (int t = 0; t < 12; t++)
        CU_ASSERT(fabs(r->mean[t] / (5 * exp(-k * t)) - 1) < 1e-13);
    popk_sim_result_free(r);
    free(times);
    popk_regimen_free(reg);
    popk_model_free(mb);
}

/* The probe of a constant input (for affine ODE systems) on a closed-form model, whose input
 * is zero: the same profile as without it, infusions included. */
static void test_lti_drift_probe(void)
{
    popk_model *m = two_model("central / v + base");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    popk_error err;
    popk_regimen *reg = popk_regimen_parse("300 mg iv over 2.5 h q12h x 4", m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    popk_sim_sample pt[97];
    for (int i = 0; i < 97; i++)
        pt[i] = (popk_sim_sample){0.5 * i, 0, i};
    popk_sim_lti *plan[2];
    popk_sim_lti_ws *ws[2];
    double c[2][98], cov[1] = {80}, eta[2] = {0.2, -0.1};
    for (int d = 0; d < 2; d++) {
        CU_ASSERT_EQUAL_FATAL(popk_sim_lti_plan(m, reg, pt, 97, 1000, 0, d, &plan[d], &err), POPK_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(plan[d]);
        ws[d] = popk_sim_lti_ws_new(plan[d], &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ws[d]);
        CU_ASSERT_EQUAL(popk_sim_lti_subject(plan[d], ws[d], cov, NULL, eta, c[d]), 0);
    }
    double worst = 0, big = 0;
    for (int i = 0; i < 97; i++) {
        worst = fmax(worst, fabs(c[0][i] - c[1][i]));
        big = fmax(big, fabs(c[0][i]));
    }
    CU_ASSERT(big > 1 && worst <= 1e-13 * big);
    for (int d = 0; d < 2; d++) {
        popk_sim_lti_ws_free(ws[d]);
        popk_sim_lti_free(plan[d]);
    }
    popk_regimen_free(reg);
    popk_model_free(m);
}

static void test_output_classifier(void)
{
    static const struct {
        const char *expr;
        int affine;
    } cases[] = {
        {"central / v", 1},
        {"(central + 0.01 * peripheral1) / v + base", 1},
        {"-central / v + 3", 1},
        {"2e-3 * central * (1 + 0.5) / v", 1},
        {"if(WT > 70, central / v, 2 * central / v)", 1},
        {"central / v - peripheral1 / v2", 1},
        {"base", 1},
        {"central ^ 2", 0},
        {"central * central / v", 0},
        {"log(central + 1)", 0},
        {"central / (v + central)", 0},
        {"1 / (central + 1)", 0},
        {"t * central / v", 0},
        {"central / v + 0.01 * time", 0},
        {"if(central > 1, central, 0) / v", 0},
        {"max(central, 0) / v", 0},
        {"abs(central) / v", 0},
        {"(central > 5) + central / v", 0},
        {"exp(-peripheral1)", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        popk_model *m = two_model(cases[i].expr);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        int got = popk_sim_output_affine(m, 0);
        CU_ASSERT_EQUAL(got, cases[i].affine);
        if (got != cases[i].affine)
            fprintf(stderr, "\n'%s': %d\n", cases[i].expr, got);
        popk_model_free(m);
    }
}

/* A subject whose individual parameter is not finite: the same error, naming the same
 * virtual subject, through either path. */
static void test_lti_failure(void)
{
    popk_model *m = two_model("central / v + 0 * lcl");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    popk_error err, e1, e2;
    popk_regimen *reg = popk_regimen_parse("100 mg iv q12h x 4", m, &err);
    size_t nt;
    double *times = popk_sim_parse_times("0:1:48", &nt, &err);
    popk_covdist dist[1];
    popk_population pop = pop_of(m, dist, "WT=U(55,100)");
    popk_sim_options o = {.seed = 4, .n = 500, .iiv = 1, .threshold = NAN};
    popk_sim_result *a = popk_sim_run(m, reg, &pop, times, nt, &o, &e1);
    o.engine_only = 1;
    popk_sim_result *b = popk_sim_run(m, reg, &pop, times, nt, &o, &e2);
    CU_ASSERT_PTR_NULL(a);
    CU_ASSERT_PTR_NULL(b);
    CU_ASSERT_STRING_EQUAL(e1.message, e2.message);
    CU_ASSERT(strstr(e1.message, "lcl") && strstr(e1.message, "virtual subject"));
    free(times);
    popk_regimen_free(reg);
    popk_model_free(m);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* q must lie between the order statistics around the type-7 position, widened by one bin:
 * 2^-10 of the value, or the linear band's bin width near zero. */
static int within_bin(double q, const double *sorted, size_t n, double p, double lin_w)
{
    double h = (double)(n - 1) * p;
    size_t i = (size_t)floor(h);
    double lo = sorted[i], hi = sorted[i + 1 < n ? i + 1 : n - 1];
    double tol_lo = fmax(ldexp(fabs(lo), -10), lin_w), tol_hi = fmax(ldexp(fabs(hi), -10), lin_w);
    return q >= lo - tol_lo && q <= hi + tol_hi;
}

/* Synthetic values of both signs from 2^-40 to 2^12 times the peak, and zeros. */
static void test_sketch_synthetic(void)
{
    const size_t n = 200001;
    double *x = malloc(sizeof(double) * n);
    uint32_t *h = calloc(POPK_SK_NBINS, sizeof(uint32_t));
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    popk_sketch sk;
    popk_sketch_init(&sk, 3.7);
    popk_rng r;
    popk_rng_init(&r, 1, 0);
    for (size_t i = 0; i < n; i++) {
        double u = popk_rng_uniform(&r);
        x[i] = i % 50 == 0 ? 0.0 : (i % 3 == 0 ? -1 : 1) * 3.7 * ldexp(1.0 + u, (int)(i % 53) - 40);
        h[popk_sketch_bin(&sk, x[i])]++;
    }
    CU_ASSERT_EQUAL(popk_sketch_bin(&sk, NAN), POPK_SK_NONE);
    qsort(x, n, sizeof *x, cmp_dbl);
    double p[] = {0.999, 0, 0.01, 0.1, 0.25, 0.3, 0.333, 0.4, 0.5, 0.6, 0.7, 0.9, 0.99, 1};
    double q[14];
    popk_sketch_quantiles(&sk, h, (long)n, p, 14, q, 1);
    double lin_w = sk.xmin / (1 << POPK_SK_MBITS);
    for (int j = 0; j < 14; j++) {
        int ok = within_bin(q[j], x, n, p[j], lin_w);
        CU_ASSERT(ok);
        if (!ok)
            fprintf(stderr, "\np=%g: %.17g\n", p[j], q[j]);
    }
    /* the bins are ordered: quantiles of increasing p never decrease */
    CU_ASSERT(q[1] <= q[2] && q[2] <= q[3] && q[12] <= q[0] && q[0] <= q[13]);
    free(x);
    free(h);
}

/* The sketch against the exact quantiles of the same run (additive error: values near and
 * below zero at the late times). */
static void test_sketch_vs_exact(void)
{
    popk_model *m = two_model("central / v");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    popk_error err;
    popk_regimen *reg = popk_regimen_parse("100 mg iv q12h x 2", m, &err);
    size_t nt;
    double *times = popk_sim_parse_times("0:4:96", &nt, &err);
    popk_covdist dist[1];
    popk_population pop = pop_of(m, dist, "WT=N(75,10,61,110)");
    double qs[] = {0.02, 0.05, 0.25, 0.5, 0.75, 0.95, 0.98};
    const long n = 40000;
    popk_sim_options o = {.seed = 21, .n = n, .iiv = 1, .residual = 1, .nq = 7, .quantiles = qs,
                          .threshold = NAN, .keep_profiles = 1};
    popk_sim_result *ex = popk_sim_run(m, reg, &pop, times, nt, &o, &err);
    o.exact_limit = 1;
    popk_sim_result *sk = popk_sim_run(m, reg, &pop, times, nt, &o, &err);
    if (!ex || !sk)
        fprintf(stderr, "\n%s\n", err.message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ex);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sk);
    CU_ASSERT(ex->exact && !sk->exact);
    CU_ASSERT(memcmp(ex->profile, sk->profile, sizeof(double) * (size_t)n * nt) == 0);
    double *col = malloc(sizeof(double) * (size_t)n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(col);
    double peak = 0;
    for (size_t i = 0; i < (size_t)n * nt; i++)
        peak = fmax(peak, fabs(ex->profile[i]));
    int ok = 1, negative = 0;
    for (size_t t = 0; t < nt; t++) {
        for (long s = 0; s < n; s++)
            col[s] = ex->profile[(size_t)s * nt + t];
        qsort(col, (size_t)n, sizeof *col, cmp_dbl);
        negative += col[0] < 0;
        for (int j = 0; j < 7; j++) {
            /* the exact path is the type-7 quantile of these values */
            double h = (double)(n - 1) * qs[j];
            size_t i = (size_t)floor(h);
            double q7 = col[i] + (h - (double)i) * (col[i + 1] - col[i]);
            CU_ASSERT_DOUBLE_EQUAL(ex->q[t * 7 + j], q7, 1e-12 * peak);
            /* linear band: below 2^-20 of the typical peak, at most 2^-30 of it per bin */
            if (!within_bin(sk->q[t * 7 + j], col, (size_t)n, qs[j], ldexp(peak, -29)))
                ok = 0;
        }
    }
    CU_ASSERT(ok);
    CU_ASSERT(negative > 0);
    free(col);
    popk_sim_result_free(ex);
    popk_sim_result_free(sk);
    free(times);
    popk_regimen_free(reg);
    popk_model_free(m);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("simulate_fast", NULL, NULL);
    CU_add_test(s, "recurrence vs engine", test_lti_vs_engine);
    CU_add_test(s, "recurrence vs steady-state closed form", test_lti_closed_form);
    CU_add_test(s, "constant-input probe", test_lti_drift_probe);
    CU_add_test(s, "output classifier", test_output_classifier);
    CU_add_test(s, "failing subject", test_lti_failure);
    CU_add_test(s, "sketch on synthetic values", test_sketch_synthetic);
    CU_add_test(s, "sketch vs exact quantiles", test_sketch_vs_exact);
    return popk_test_run();
}
