/* Tests for simulate/sim.c, regimen.c, population.c: percentiles of a lognormal 1-cmt model
 * against quadrature of the exact distribution (n = 100,000; exact and sketch paths),
 * steady-state trough, peak and AUC against their closed forms, thread-count
 * reproducibility, regimen and covariate parsing with error positions, genotype draws
 * against their frequencies. */
#include <math.h>
#include <string.h>

#include "common/popk_test.h"
#include "simulate/sim.h"
#include "simulate/sim_impl.h"

/* 1-cmt IV bolus, CL = 2 exp(eta_cl), V = 20 exp(eta_v), omega 0.1 each; a depot variant
 * for the oral route; WT and a genotype for the population tests. */
static const char *model_text =
    "name: simbolus\n"
    "theta: {tcl: 2.0, tv: 20.0, tka: 1.0}\n"
    "omega: {eta_cl: 0.1, eta_v: 0.1}\n"
    "sigma: {prop: 0.1}\n"
    "covariates:\n"
    "  WT: {unit: kg, reference: 70}\n"
    "  GENO: [PM, IM, NM]\n"
    "individual:\n"
    "  cl: tcl * exp(eta_cl) * if(GENO == \"PM\", 0.5, 1) * (WT / 70)^0.75\n"
    "  v: tv * exp(eta_v)\n"
    "linear: {CL: cl, V: v}\n"
    "observe:\n"
    "  cp: {value: central / v, error: {proportional: prop}}\n";

static const char *oral_text =
    "name: simoral\n"
    "theta: {tcl: 2.0, tv: 20.0, tka: 1.0}\n"
    "omega: {eta_cl: 0.1}\n"
    "sigma: {prop: 0.1}\n"
    "individual:\n"
    "  cl: tcl * exp(eta_cl)\n"
    "  v: tv\n"
    "  ka: tka\n"
    "linear: {CL: cl, V: v, KA: ka}\n"
    "observe:\n"
    "  cp: {value: central / v, error: {proportional: prop}}\n";

static popk_model *M, *MO;

static int setup(void)
{
    popk_error err;
    M = popk_model_parse("simbolus.yaml", model_text, strlen(model_text), &err);
    MO = popk_model_parse("simoral.yaml", oral_text, strlen(oral_text), &err);
    return M && MO ? 0 : 1;
}

static int teardown(void)
{
    popk_model_free(M);
    popk_model_free(MO);
    return 0;
}

static popk_population fixed_pop(popk_covdist *dist, const char *spec)
{
    popk_population pop = {.ncov = M->ncov, .dist = dist};
    memset(dist, 0, sizeof(popk_covdist) * (size_t)M->ncov);
    popk_error err;
    if (spec)
        CU_ASSERT_EQUAL(popk_population_parse(&pop, M, spec, &err), POPK_OK);
    return pop;
}

/* P(C(t) <= c) for C = D/V exp(-CL/V t), log CL ~ N(log 2, w), log V ~ N(log 20, w)
 * independent: integrate over eta_v (trapezoid on +-10 SD) the normal tail of eta_cl. */
static double cdf_conc(double c, double t, double D, double w)
{
    double sd = sqrt(w), s = 0, h = 20 * sd / 4000;
    for (int i = 0; i <= 4000; i++) {
        double v = -10 * sd + i * h;
        double wt = (i == 0 || i == 4000) ? 0.5 : 1.0;
        double V = 20 * exp(v), L = log(D / V / c);
        double p;
        if (t == 0)
            p = L <= 0 ? 1 : 0;
        else if (L <= 0)
            p = 1;
        else /* C <= c  <=>  CL t / V >= L  <=>  eta_cl >= log(L V / (2 t)) */
            p = 0.5 * erfc(log(L * V / (2 * t)) / sd / sqrt(2));
        s += wt * p * exp(-0.5 * v * v / w) / sqrt(2 * M_PI * w) * h;
    }
    return s;
}

static double quantile_conc(double p, double t, double D, double w)
{
    double lo = 1e-6, hi = 100;
    for (int i = 0; i < 100; i++) {
        double mid = sqrt(lo * hi);
        if (cdf_conc(mid, t, D, w) < p)
            lo = mid;
        else
            hi = mid;
    }
    return sqrt(lo * hi);
}

static void check_percentiles(long exact_limit)
{
    popk_error err;
    popk_regimen *reg = popk_regimen_parse("100 mg iv", M, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    double times[] = {0, 2, 4, 8};
    double qs[] = {0.05, 0.25, 0.5, 0.75, 0.95};
    popk_covdist dist[2];
    popk_population pop = fixed_pop(dist, "WT=70,GENO=NM");
    popk_sim_options o = {.seed = 11, .n = 100000, .iiv = 1, .nq = 5, .quantiles = qs,
                          .threshold = NAN, .exact_limit = exact_limit};
    popk_sim_result *r = popk_sim_run(M, reg, &pop, times, 4, &o, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->exact, exact_limit != 1);
    double worst = 0;
    for (int t = 0; t < 4; t++)
        for (int j = 0; j < 5; j++) {
            double ref = quantile_conc(qs[j], times[t], 100, 0.1);
            double rel = fabs(r->q[t * 5 + j] / ref - 1);
            worst = fmax(worst, rel);
            CU_ASSERT(rel < 0.01);
            if (!(rel < 0.01))
                fprintf(stderr, "\nt=%g p=%g: %g vs %g\n", times[t], qs[j], r->q[t * 5 + j], ref);
        }
    /* Times where the spread of log C stays below ~0.5, so that the 1% tolerance is more
     * than 4 standard errors of a sample quantile at n = 1e5 (at 24 h it is ~1.2 and the
     * standard error of the median alone is 0.5%). At t = 0, C = D/V is exactly lognormal: the closed form 5 exp(z_p sqrt(0.1)) */
    static const double z[] = {-1.6448536269514722, -0.6744897501960817, 0, 0.6744897501960817,
                               1.6448536269514722};
    for (int j = 0; j < 5; j++)
        CU_ASSERT(fabs(r->q[j] / (5 * exp(z[j] * sqrt(0.1))) - 1) < 0.01);
    CU_ASSERT(worst > 0); /* sampling error is never exactly zero */
    if (getenv("POPK_TEST_VERBOSE"))
        fprintf(stderr, "\nworst relative error %.4f%%\n", 100 * worst);
    popk_sim_result_free(r);
    popk_regimen_free(reg);
}

static void test_percentiles_exact(void)
{
    check_percentiles(0);
}

static void test_percentiles_sketch(void)
{
    check_percentiles(1);
}

/* Typical patient, 100 mg q12h x 28: trough at the end of the last interval
 * D/V e^{-k tau} (1 - e^{-k N tau}) / (1 - e^{-k tau}); the peak after the last dose
 * D/V (1 - e^{-k N tau}) / (1 - e^{-k tau}); AUC over the last interval peak (1 - e^{-k tau})
 * / k, exact under the log-down rule for a monoexponential decline. */
static void test_steady_state(void)
{
    popk_error err;
    popk_regimen *reg = popk_regimen_parse("100 mg iv q12h x 28", M, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    CU_ASSERT_EQUAL(reg->ndose, 28);
    CU_ASSERT_DOUBLE_EQUAL(reg->t_last, 324, 0);
    CU_ASSERT_DOUBLE_EQUAL(reg->tau, 12, 0);
    size_t nt;
    double *times = popk_sim_parse_times("0:1:336", &nt, &err);
    CU_ASSERT_EQUAL_FATAL(nt, 337);
    popk_covdist dist[2];
    popk_population pop = fixed_pop(dist, "WT=70,GENO=NM");
    popk_sim_options o = {.n = 1, .iiv = 0, .threshold = 3.0};
    popk_sim_result *r = popk_sim_run(M, reg, &pop, times, nt, &o, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    double k = 0.1, tau = 12, N = 28, ekt = exp(-k * tau), acc = (1 - pow(ekt, N)) / (1 - ekt);
    double peak = 5 * acc, trough = peak * ekt;
    const double *met = r->metric;
    CU_ASSERT(fabs(met[POPK_MET_TROUGH] / trough - 1) < 1e-12);
    /* 28 doses are at steady state to e^{-33.6}: the SS closed form D/V e^{-k tau}/(1-e^{-k tau}) */
    CU_ASSERT(fabs(met[POPK_MET_TROUGH] / (5 * ekt / (1 - ekt)) - 1) < 1e-12);
    CU_ASSERT(fabs(met[POPK_MET_CMAX] / peak - 1) < 1e-12);
    /* the peaks grow to steady state: Tmax is a dose time in the last days */
    CU_ASSERT(fmod(met[POPK_MET_TMAX], 12) == 0 && met[POPK_MET_TMAX] >= 200);
    CU_ASSERT(fabs(met[POPK_MET_AUCTAU] / (peak * (1 - ekt) / k) - 1) < 1e-10);
    /* at steady state the AUC over an interval is D/CL */
    CU_ASSERT(fabs(met[POPK_MET_AUCTAU] / 50.0 - 1) < 1e-10);
    /* AUC24 over the last two intervals = 2 D / CL */
    CU_ASSERT(fabs(met[POPK_MET_AUC24] / 100.0 - 1) < 1e-10);
    /* time above 3 mg/L: ln(peak/3)/k hours of the interval (linear interpolation between
     * hourly points overestimates a convex decline by less than the grid step's chord) */
    double tab = 100 * log(peak / 3) / k / tau;
    CU_ASSERT(fabs(met[POPK_MET_TABOVE] - tab) < 100 * 1.0 / tau * 0.05);
    popk_sim_result_free(r);
    free(times);
    popk_regimen_free(reg);
}

/* Parameter uncertainty: thetas from N(theta, C) with var(tv) = 1, etas zero; at t = 0,
 * C = 100 / tv, so its p-quantile is 100 / (20 + z_{1-p}). */
static void test_uncertainty(void)
{
    popk_error err;
    popk_regimen *reg = popk_regimen_parse("100 mg iv", M, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    double times[] = {0, 1};
    double qs[] = {0.05, 0.5, 0.95};
    double C[9] = {0.01, 0, 0, 0, 1, 0, 0, 0, 0};
    popk_covdist dist[2];
    popk_population pop = fixed_pop(dist, "WT=70,GENO=NM");
    popk_sim_options o = {.seed = 2, .n = 20000, .iiv = 0, .theta_cov = C, .nq = 3,
                          .quantiles = qs, .threshold = NAN};
    popk_sim_result *r = popk_sim_run(M, reg, &pop, times, 2, &o, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    static const double z[] = {1.6448536269514722, 0, -1.6448536269514722};
    for (int j = 0; j < 3; j++)
        CU_ASSERT(fabs(r->q[j] / (100 / (20 + z[j])) - 1) < 0.005);
    /* a theta covariance that is not positive semi-definite is refused */
    double bad[9] = {1, 2, 0, 2, 1, 0, 0, 0, 1};
    o.theta_cov = bad;
    popk_sim_result *r2 = popk_sim_run(M, reg, &pop, times, 2, &o, &err);
    CU_ASSERT_PTR_NULL(r2);
    popk_sim_result_free(r);
    popk_regimen_free(reg);
}

static void test_threads(void)
{
    popk_error err;
    popk_regimen *reg = popk_regimen_parse("100 mg iv q12h x 4", M, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reg);
    size_t nt;
    double *times = popk_sim_parse_times("0:0.5:48", &nt, &err);
    double qs[] = {0.05, 0.5, 0.95};
    popk_covdist dist[2];
    popk_population pop = fixed_pop(dist, "WT=N(70,15,40,150),GENO={PM:0.2,IM:0.3,NM:0.5}");
    popk_target tg;
    CU_ASSERT_EQUAL(popk_target_parse(&tg, "trough>=1", NAN, &err), POPK_OK);
    for (int sketch = 0; sketch < 2; sketch++) {
        popk_sim_options o = {.seed = 5, .n = 3000, .iiv = 1, .residual = 1, .nq = 3,
                              .quantiles = qs, .threshold = 2, .ntarget = 1, .target = &tg,
                              .exact_limit = sketch ? 1 : 0, .nthreads = 1};
        popk_sim_result *a = popk_sim_run(M, reg, &pop, times, nt, &o, &err);
        o.nthreads = 2;
        popk_sim_result *b = popk_sim_run(M, reg, &pop, times, nt, &o, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        CU_ASSERT(memcmp(a->q, b->q, sizeof(double) * nt * 3) == 0);
        CU_ASSERT(memcmp(a->mean, b->mean, sizeof(double) * nt) == 0);
        CU_ASSERT(memcmp(a->metric, b->metric, sizeof(double) * 3000 * POPK_MET_N) == 0);
        CU_ASSERT(memcmp(a->cov, b->cov, sizeof(double) * 3000 * 2) == 0);
        CU_ASSERT_EQUAL(a->pta[0], b->pta[0]);
        CU_ASSERT(a->pta[0] > 0 && a->pta[0] < 1);
        popk_sim_result_free(a);
        popk_sim_result_free(b);
    }
    free(times);
    popk_regimen_free(reg);
}

/* Genotype frequencies by chi-square (2 df); truncated-normal weights inside the window
 * with the truncated mean (symmetric window: the mean). */
static void test_covariate_draws(void)
{
    popk_covdist dist[2];
    popk_population pop = fixed_pop(dist, "GENO={PM:0.1,IM:0.3,NM:0.6},WT=N(70,15,50,90)");
    const int n = 50000;
    double cnt[3] = {0}, sw = 0;
    int inside = 1;
    for (int s = 0; s < n; s++) {
        popk_rng r;
        popk_rng_init(&r, 3, (uint64_t)s);
        double cov[2];
        popk_sim_draw_covariates(&pop, M, &r, s, cov);
        cnt[(int)cov[1]]++;
        sw += cov[0];
        inside &= cov[0] >= 50 && cov[0] <= 90;
    }
    CU_ASSERT(inside);
    double p[3] = {0.1, 0.3, 0.6}, x2 = 0;
    for (int k = 0; k < 3; k++)
        x2 += (cnt[k] - n * p[k]) * (cnt[k] - n * p[k]) / (n * p[k]);
    CU_ASSERT(x2 < 13.8); /* chi-square(2) upper 0.1% point */
    /* SD of the truncated normal on +-1.33 SD is < 15: 5 SE of the mean */
    CU_ASSERT(fabs(sw / n - 70) < 5 * 15 / sqrt((double)n));
}

static void test_regimen_parse(void)
{
    popk_error err;
    popk_regimen *r = popk_regimen_parse("400 mg po q12h x2, then 200 mg po q12h x 26", MO, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->ndose, 28);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[1].time, 12, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[1].amt, 400, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[2].time, 24, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[2].amt, 200, 0);
    CU_ASSERT_EQUAL(r->dose[2].cmt, MO->default_dose_cmt);
    CU_ASSERT_DOUBLE_EQUAL(r->t_last, 12 * 27, 0);
    popk_regimen_free(r);
    r = popk_regimen_parse("1 g iv over 1 h q12h x 14", M, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->ndose, 14);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[13].rate, 1000, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[13].amt, 1000, 0);
    popk_regimen_free(r);
    r = popk_regimen_parse("25 mg iv at 50 mg/h q24h for 7 days; at 200 h 10 mg bolus", M,
                           &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->ndose, 8);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[7].time, 200, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[0].rate, 50, 0);
    popk_regimen_free(r);
    static const struct {
        const char *text;
        int column;
        const char *msg;
    } bad[] = {
        {"400 mg iv q12h x2, then 200 mg pox q12h x 26", 32, "route"},
        {"-400 mg iv", 1, "positive"},
        {"100 mg iv q0h x 3", 11, "interval must be positive"},
        {"100 mg iv q12h", 11, "number of doses"},
        {"100 mg iv x 3", 11, "need an interval"},
        {"100 mg iv q12h x 2.5", 16, "whole number"},
        {"100 mg iv q12h x 2,", 20, "another dose"},
        {"", 1, "empty"},
        {"100 mg po", 8, "absorption"},
        {"100 mg infusion", 1, "needs 'over"},
        {"100 mg iv q12h x 2 blah", 20, "unexpected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        popk_error_clear(&err);
        CU_ASSERT_PTR_NULL(popk_regimen_parse(bad[i].text, M, &err));
        CU_ASSERT_EQUAL(err.column, bad[i].column);
        CU_ASSERT(strstr(err.message, bad[i].msg) != NULL);
        if (err.column != bad[i].column || !strstr(err.message, bad[i].msg))
            fprintf(stderr, "\n'%s': column %d: %s\n", bad[i].text, err.column, err.message);
    }
}

/* Random mutations of valid regimens: each parse either succeeds with positive doses in time
 * order or fails with a column inside the text (never a crash or an out-of-range position). */
static void test_regimen_mutations(void)
{
    static const char *seeds[] = {"400 mg po q12h x2, then 200 mg po q12h x 26",
                                  "1 g iv over 1 h q12h x 14", "25 mg infusion at 50 mg/h qd for 7 days",
                                  "at 3 h 5 mg to depot; 10 mg iv bolus"};
    static const char alphabet[] = "0123456789 .,;-+xqhmgivpoatfrdyuQXH/e";
    popk_rng r;
    popk_rng_init(&r, 77, 0);
    int ok = 0, failed = 0, bad_column = 0, bad_doses = 0;
    for (int i = 0; i < 3000; i++) {
        char text[128];
        snprintf(text, sizeof text, "%s", seeds[i % 4]);
        size_t len = strlen(text);
        int nmut = 1 + (int)(popk_rng_uniform(&r) * 3);
        for (int k = 0; k < nmut && len > 0; k++) {
            size_t at = (size_t)(popk_rng_uniform(&r) * (double)len);
            double u = popk_rng_uniform(&r);
            char c = alphabet[(size_t)(popk_rng_uniform(&r) * (sizeof alphabet - 1))];
            if (u < 0.4)
                text[at] = c;
            else if (u < 0.7) {
                memmove(text + at, text + at + 1, len - at);
                len--;
            } else if (len + 1 < sizeof text) {
                memmove(text + at + 1, text + at, len - at + 1);
                text[at] = c;
                len++;
            }
        }
        popk_error err;
        popk_error_clear(&err);
        popk_regimen *reg = popk_regimen_parse(text, MO, &err);
        if (reg) {
            ok++;
            for (size_t d = 0; d < reg->ndose; d++)
                if (!(reg->dose[d].amt > 0) || (d && reg->dose[d].time < reg->dose[d - 1].time))
                    bad_doses++;
            popk_regimen_free(reg);
        } else {
            failed++;
            if (err.column < 1 || err.column > (int)len + 1)
                bad_column++;
        }
    }
    CU_ASSERT(ok > 100 && failed > 100);
    CU_ASSERT_EQUAL(bad_column, 0);
    CU_ASSERT_EQUAL(bad_doses, 0);
}

/* The YAML form, its error positions, and a dataset's dose records as the template. */
static void test_regimen_files(void)
{
    popk_error err;
    popk_model *vanc = popk_model_load(popk_test_src("models/vancomycin.yaml"), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(vanc);
    popk_regimen *r =
        popk_regimen_load(popk_test_src("datasets/sim/vancomycin_loading.yaml"), vanc, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->ndose, 14);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[0].rate, 1000, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[1].time, 12, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[1].rate, 1000, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->t_last, 12 * 13, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->tau, 12, 0);
    popk_regimen_free(r);
    const char *bad = "/tmp/popk_test_bad_regimen.yaml";
    FILE *f = fopen(bad, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("doses:\n  - {amount: 100, route: iv}\n  - {amount: 50, rout: iv}\n", f);
    fclose(f);
    CU_ASSERT_PTR_NULL(popk_regimen_load(bad, vanc, &err));
    CU_ASSERT_EQUAL(err.line, 3);
    CU_ASSERT_EQUAL(err.column, 18);
    CU_ASSERT(strstr(err.message, "unknown key 'rout'") != NULL);
    f = fopen(bad, "w");
    fputs("regimen: \"100 mg iv q12h x\"\n", f);
    fclose(f);
    CU_ASSERT_PTR_NULL(popk_regimen_load(bad, vanc, &err));
    CU_ASSERT_EQUAL(err.line, 1);
    CU_ASSERT_EQUAL(err.column, 27); /* the end of the text, inside the quotes */
    remove(bad);
    popk_model_free(vanc);
    popk_data *d = popk_data_read(popk_test_src("datasets/theo_sd.csv"), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    r = popk_regimen_from_data(d, 2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->ndose, 1);
    CU_ASSERT_DOUBLE_EQUAL(r->dose[0].amt, d->rec[d->sub[1].first].amt, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->tau, 0, 0);
    popk_regimen_free(r);
    CU_ASSERT_PTR_NULL(popk_regimen_from_data(d, 99, &err));
    popk_data_free(d);
}

static void test_population_errors(void)
{
    popk_covdist dist[2];
    popk_population pop = fixed_pop(dist, NULL);
    popk_error err;
    CU_ASSERT_EQUAL(popk_population_parse(&pop, M, "WT=70,HT=180", &err), POPK_ERR_ARG);
    CU_ASSERT(strstr(err.message, "unknown covariate 'HT'") != NULL);
    CU_ASSERT_EQUAL(err.column, 7);
    CU_ASSERT_EQUAL(popk_population_parse(&pop, M, "GENO=XM", &err), POPK_ERR_ARG);
    CU_ASSERT(strstr(err.message, "unknown level 'XM'") != NULL);
    CU_ASSERT_EQUAL(popk_population_parse(&pop, M, "GENO={PM:0.5,NM:0.4}", &err), POPK_ERR_ARG);
    CU_ASSERT_EQUAL(popk_population_parse(&pop, M, "WT=N(70,-1)", &err), POPK_ERR_ARG);
    memset(dist, 0, sizeof dist);
    CU_ASSERT_EQUAL(popk_population_parse(&pop, M, "WT=70", &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_population_check(&pop, M, &err), POPK_ERR_ARG);
    CU_ASSERT(strstr(err.message, "GENO") != NULL);
    popk_target t;
    CU_ASSERT_EQUAL(popk_target_parse(&t, "AUC24 in 400..600", NAN, &err), POPK_OK);
    CU_ASSERT(popk_target_pass(&t, 400) && popk_target_pass(&t, 600) &&
              !popk_target_pass(&t, 399.9));
    CU_ASSERT_EQUAL(popk_target_parse(&t, "T>MIC 50%", 2, &err), POPK_OK);
    CU_ASSERT_DOUBLE_EQUAL(t.threshold, 2, 0);
    CU_ASSERT_EQUAL(popk_target_parse(&t, "T>MIC 50%", NAN, &err), POPK_ERR_ARG);
    CU_ASSERT_EQUAL(popk_target_parse(&t, "trough>10", NAN, &err), POPK_OK);
    CU_ASSERT(!popk_target_pass(&t, 10) && popk_target_pass(&t, 10.01));
    CU_ASSERT_EQUAL(popk_target_parse(&t, "AUC25 >= 3", NAN, &err), POPK_ERR_ARG);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("simulate_sim", setup, teardown);
    CU_add_test(s, "lognormal percentiles, exact (n = 1e5)", test_percentiles_exact);
    CU_add_test(s, "lognormal percentiles, sketch (n = 1e5)", test_percentiles_sketch);
    CU_add_test(s, "steady state closed forms", test_steady_state);
    CU_add_test(s, "parameter uncertainty", test_uncertainty);
    CU_add_test(s, "thread-count reproducibility", test_threads);
    CU_add_test(s, "covariate draws", test_covariate_draws);
    CU_add_test(s, "regimen parser", test_regimen_parse);
    CU_add_test(s, "regimen files", test_regimen_files);
    CU_add_test(s, "regimen mutations", test_regimen_mutations);
    CU_add_test(s, "population and target errors", test_population_errors);
    return popk_test_run();
}
