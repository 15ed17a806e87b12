/* Tests for the fit: theo_sd against nlmixr2's FOCE-I and FO estimates, ACOP single-dose
 * subsets against NONMEM 7.4.3 (estimates, SEs, OFV), perturbed starts, thread counts, the
 * iteration callback and evaluate-only. */
#include "common/popk_test.h"
#include "models.h"
#include "estimate/estimate_impl.h"

static test_data theo, bolus, oral;
static int have_acop;

static int setup(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", popk_test_src("datasets/theo_sd.csv"));
    if (test_data_read(path, 0, &theo) != 0)
        return 1;
    snprintf(path, sizeof path, "%s", popk_test_src("tests/reference/data/acop/Bolus_1CPT.csv"));
    have_acop = test_data_read(path, 1, &bolus) == 0;
    snprintf(path, sizeof path, "%s", popk_test_src("tests/reference/data/acop/Oral_1CPT.csv"));
    have_acop = have_acop && test_data_read(path, 1, &oral) == 0;
    if (!have_acop)
        printf("\n  SKIP ACOP tests: %s not found\n", path);
    return 0;
}

static int teardown(void)
{
    test_data_free(&theo);
    test_data_free(&bolus);
    test_data_free(&oral);
    return 0;
}

static double theo_theta0[3] = {0.45, 1.0, 3.45}, theo_omega0[9] = {0.6, 0, 0, 0, 0.3, 0, 0, 0, 0.1},
              theo_sigma0[1] = {0.7};

static void theo_problem(popk_problem *p)
{
    test_problem(p, &theo, 3, 3, 1);
    p->theta0 = theo_theta0;
    p->omega0 = theo_omega0;
    p->sigma0 = theo_sigma0;
    p->pred = theo_pred;
    p->user = &theo;
}

static popk_estimate_result *fit(const popk_problem *p, popk_method method, popk_covstep_kind cov,
                                 int nthreads, double *seconds)
{
    popk_estimate_options opt;
    popk_estimate_options_default(&opt);
    opt.method = method;
    opt.covariance = cov;
    opt.nthreads = nthreads;
    popk_error err;
    popk_error_clear(&err);
    double t0 = test_seconds();
    popk_estimate_result *r = popk_estimate(p, &opt, &err);
    if (seconds)
        *seconds = test_seconds() - t0;
    if (!r)
        printf("\n  fit failed: %s\n", err.message);
    return r;
}

static long theo_predictions;

/* theo_pred, counting the predictions */
static int theo_pred_counted(int i, int thread, const double *theta, const double *sigma,
                             const double *eta, double *f, double *V, double *G, double *dV,
                             void *user, popk_error *err)
{
    __atomic_fetch_add(&theo_predictions, 1, __ATOMIC_RELAXED);
    return theo_pred(i, thread, theta, sigma, eta, f, V, G, dV, user, err);
}

/* nlmixr2 FOCEi reference (refdata README 6(ii)): OFV 116.8038, thetas 0.464451, 1.012047,
 * 3.459973, add.sd 0.693839, omegas 0.404625, 0.068796, 0.019222; SEs ("r,s") 0.19789,
 * 0.07555, 0.04293, 0.09247. */
static void test_theo_focei(void)
{
    popk_problem p;
    theo_problem(&p);
    p.pred = theo_pred_counted;
    double secs;
    theo_predictions = 0;
    popk_estimate_result *r = fit(&p, POPK_METHOD_FOCEI, POPK_COV_NONE, 2, &secs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    long fit_predictions = theo_predictions;
    printf("\n  theo_sd FOCE-I: OFV %.4f (%d iterations, %d OFV passes, %.1f predictions per "
           "subject)\n", r->ofv, r->iterations, r->evaluations,
           (double)fit_predictions / theo.nsub);
    popk_estimate_result_free(r);
    r = fit(&p, POPK_METHOD_FOCEI, POPK_COV_SANDWICH, 2, &secs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    printf("  theo_sd FOCE-I with covariance step: OFV %.4f in %.3f s\n", r->ofv, secs);
    CU_ASSERT_EQUAL(r->status, POPK_OK);
    CU_ASSERT_DOUBLE_EQUAL(r->ofv, 116.8038, 0.02);
    /* the outer search's cost, in predictions (passes differ in cost: FOCE-I's outer
     * differences take one prediction per subject from the quadratic models, or none for an
     * Omega step): 358 per subject (with the inner problem solved in every difference pass,
     * 483 with the same first step, 431 with a longer one) */
    CU_ASSERT((double)fit_predictions / theo.nsub <= 380.0);
    const double theta_ref[] = {0.464451, 1.012047, 3.459973}, omega_ref[] = {0.404625, 0.068796, 0.019222};
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_DOUBLE_EQUAL(r->theta[k], theta_ref[k], 0.01 * theta_ref[k]);
        CU_ASSERT_DOUBLE_EQUAL(r->omega[k * 4], omega_ref[k], 0.03 * omega_ref[k]);
    }
    CU_ASSERT_DOUBLE_EQUAL(r->sigma[0], 0.693839, 0.01 * 0.693839);
    CU_ASSERT_EQUAL_FATAL(r->cov_status, POPK_OK);
    const double se_ref[] = {0.19789, 0.07555, 0.04293};
    for (int k = 0; k < 3; k++) {
        printf("  SE THETA(%d) %.5f (nlmixr2 r,s %.5f)\n", k + 1, r->se[k], se_ref[k]);
        CU_ASSERT_DOUBLE_EQUAL(r->se[k], se_ref[k], 0.1 * se_ref[k]);
    }
    printf("  SE add.sd %.5f (nlmixr2 r,s 0.09247); eta shrinkage %.2f %.2f %.2f %%, eps %.2f %%, "
           "condition %.1f\n", r->se[6], 100 * r->eta_shrinkage[0], 100 * r->eta_shrinkage[1],
           100 * r->eta_shrinkage[2], 100 * r->eps_shrinkage, r->condition);
    CU_ASSERT_DOUBLE_EQUAL(r->se[6], 0.09247, 0.1 * 0.09247);
    popk_estimate_result_free(r);
}


/* The same fit from initial values perturbed by +-30% reaches the same OFV (within 0.01). */
static void test_theo_perturbed(void)
{
    popk_problem p;
    theo_problem(&p);
    double th[3], om[9], si[1];
    const double factor[7] = {1.3, 0.7, 1.3, 0.7, 1.3, 0.7, 1.3};
    memcpy(om, theo_omega0, sizeof om);
    for (int k = 0; k < 3; k++) {
        th[k] = theo_theta0[k] * factor[k];
        om[4 * k] = theo_omega0[4 * k] * factor[3 + k];
    }
    si[0] = theo_sigma0[0] * factor[6];
    p.theta0 = th;
    p.omega0 = om;
    p.sigma0 = si;
    popk_estimate_result *r = fit(&p, POPK_METHOD_FOCEI, POPK_COV_NONE, 2, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    printf("\n  theo_sd FOCE-I from +-30%%: OFV %.4f\n", r->ofv);
    CU_ASSERT_DOUBLE_EQUAL(r->ofv, 116.8038, 0.02);
    popk_estimate_result *r0 = fit(&p, POPK_METHOD_FOCEI, POPK_COV_NONE, 2, NULL);
    popk_estimate_result_free(r0);
    theo_problem(&p);
    r0 = fit(&p, POPK_METHOD_FOCEI, POPK_COV_NONE, 2, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r0);
    CU_ASSERT_DOUBLE_EQUAL(r->ofv, r0->ofv, 0.01);
    popk_estimate_result_free(r);
    popk_estimate_result_free(r0);
}

/* A whole fit gives the same bits with 1 and 2 threads. */
static void test_theo_threads(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_estimate_result *r1 = fit(&p, POPK_METHOD_FOCEI, POPK_COV_SANDWICH, 1, NULL);
    popk_estimate_result *r2 = fit(&p, POPK_METHOD_FOCEI, POPK_COV_SANDWICH, 2, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r2);
    CU_ASSERT(memcmp(&r1->ofv, &r2->ofv, sizeof r1->ofv) == 0);
    CU_ASSERT(memcmp(r1->p, r2->p, (size_t)r1->npar * sizeof *r1->p) == 0);
    CU_ASSERT(memcmp(r1->eta, r2->eta, (size_t)(r1->nsub * r1->neta) * sizeof *r1->eta) == 0);
    CU_ASSERT_EQUAL_FATAL(r1->cov_status, POPK_OK);
    CU_ASSERT_EQUAL_FATAL(r2->cov_status, POPK_OK);
    CU_ASSERT(memcmp(r1->se, r2->se, (size_t)r1->npar * sizeof *r1->se) == 0);
    popk_estimate_result_free(r1);
    popk_estimate_result_free(r2);
}

/* FO: the fit is reproducible from a perturbed start; its OFV is the linearised marginal,
 * recomputed here with the full n x n covariance (independent of the Woodbury form). */
static void test_theo_fo(void)
{
    popk_problem p;
    theo_problem(&p);
    double secs;
    popk_estimate_result *r = fit(&p, POPK_METHOD_FO, POPK_COV_NONE, 2, &secs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    printf("\n  theo_sd FO: OFV %.4f in %.3f s: tka %.4f tcl %.4f tv %.4f omega %.4f %.4f %.4f "
           "add.sd %.4f\n", r->ofv, secs, r->theta[0], r->theta[1], r->theta[2], r->omega[0],
           r->omega[4], r->omega[8], r->sigma[0]);
    CU_ASSERT_EQUAL(r->status, POPK_OK);
    double full = 0.0;
    for (int i = 0; i < theo.nsub; i++) {
        int n = theo.nobs[i];
        double f[32], V[32], G[96], C[32 * 32], res[32], z[32], eta0[3] = {0, 0, 0};
        theo_pred(i, 0, r->theta, r->sigma, eta0, f, V, G, NULL, &theo, NULL);
        for (int a = 0; a < n; a++) {
            res[a] = z[a] = theo.y[i][a] - f[a];
            for (int b = 0; b < n; b++) {
                double c = a == b ? V[a] : 0.0;
                for (int k = 0; k < 3; k++)
                    for (int l = 0; l < 3; l++)
                        c += G[a * 3 + k] * r->omega[k * 3 + l] * G[b * 3 + l];
                C[a * n + b] = c;
            }
        }
        /* Gaussian elimination for log det C and C^-1 r */
        double logdet = 0.0;
        for (int k = 0; k < n; k++) {
            logdet += log(C[k * n + k]);
            for (int a = k + 1; a < n; a++) {
                double m = C[a * n + k] / C[k * n + k];
                for (int b = k; b < n; b++)
                    C[a * n + b] -= m * C[k * n + b];
                z[a] -= m * z[k];
            }
        }
        for (int a = n - 1; a >= 0; a--) {
            for (int b = a + 1; b < n; b++)
                z[a] -= C[a * n + b] * z[b];
            z[a] /= C[a * n + a];
        }
        full += logdet;
        for (int a = 0; a < n; a++)
            full += res[a] * z[a];
    }
    CU_ASSERT_DOUBLE_EQUAL(r->ofv, full, 1e-8 * fabs(full));
    /* The FO reference 128.011 is nlmixr2's convention: an FO fit reports the
     * FOCE(-I) objective at the FO estimates (its "FOCE posthoc"); NONMEM reports the FO
     * value itself. */
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double focei;
    CU_ASSERT_EQUAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, r->theta, r->omega, r->sigma,
                                       &focei, &err), POPK_OK);
    printf("  FOCE-I objective at the FO estimates %.4f (nlmixr2 FO fit 128.011)\n", focei);
    CU_ASSERT_DOUBLE_EQUAL(focei, 128.011, 0.05);
    popk_estimator_free(est);
    double th[3] = {r->theta[0] * 0.8, r->theta[1] * 1.2, r->theta[2] * 0.9};
    p.theta0 = th;
    popk_estimate_result *r2 = fit(&p, POPK_METHOD_FO, POPK_COV_NONE, 2, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r2);
    CU_ASSERT_DOUBLE_EQUAL(r2->ofv, r->ofv, 0.01);
    popk_estimate_result_free(r);
    popk_estimate_result_free(r2);
}

static int stop_at_3(int it, double ofv, const double *theta, const double *omega,
                     const double *sigma, void *user)
{
    int *calls = user;
    (*calls)++;
    CU_ASSERT(isfinite(ofv) && theta[2] > 0 && omega[0] > 0 && sigma[0] > 0);
    return it >= 3;
}

/* The iteration callback sees every iteration and can stop the fit (status NOCONV,
 * estimates kept); evaluate-only returns the OFV at the initial values. */
static void test_callback_and_evaluate(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_estimate_options opt;
    popk_estimate_options_default(&opt);
    opt.covariance = POPK_COV_NONE;
    int calls = 0;
    opt.iter = stop_at_3;
    opt.iter_user = &calls;
    popk_error err;
    popk_estimate_result *r = popk_estimate(&p, &opt, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(calls, 3);
    CU_ASSERT_EQUAL(r->status, POPK_ERR_NOCONV);
    CU_ASSERT(isfinite(r->ofv));
    popk_estimate_result_free(r);
    /* an evaluation limit: status NOCONV, best estimates so far */
    opt.iter = NULL;
    opt.maxeval = 3;
    r = popk_estimate(&p, &opt, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->status, POPK_ERR_NOCONV);
    CU_ASSERT(r->iterations >= 1 && r->iterations <= 3);
    double ofv_start;
    popk_estimator *e0 = popk_estimator_create(&p, 1, &err);
    popk_estimator_ofv(e0, POPK_METHOD_FOCEI, theo_theta0, theo_omega0, theo_sigma0, &ofv_start, &err);
    popk_estimator_free(e0);
    CU_ASSERT(r->ofv < ofv_start);
    popk_estimate_result_free(r);
    opt.maxeval = 0;
    opt.evaluate_only = 1;
    r = popk_estimate(&p, &opt, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    double ofv;
    popk_estimator_ofv(est, POPK_METHOD_FOCEI, theo_theta0, theo_omega0, theo_sigma0, &ofv, &err);
    CU_ASSERT_EQUAL(r->ofv, ofv);
    CU_ASSERT_EQUAL(r->theta[0], theo_theta0[0]);
    popk_estimator_free(est);
    popk_estimate_result_free(r);
}

/* ACOP single dose, NONMEM 7.4.3 FOCE-I runs N001 / N023 (refdata README 6(iii)). */
typedef struct {
    const char *name;
    int oral;
    double ofv, theta[4], theta_se[4], omega[3], omega_se[3], shrink[3];
    double theta0[4];
} acop_ref;

static const acop_ref acop_refs[] = {
    {"Bolus_1CPT", 0, 20058.4761237305, {1.36831, 4.20533, 0.198077},
     {0.0249285, 0.0281880, 0.00291642}, {0.0725899, 0.0914409}, {0.00918602, 0.0120228},
     {1.1841, 1.3463}, {1.6, 4.5, 0.3}},
    {"Oral_1CPT", 1, 19365.1940245131, {1.39014, 4.19282, -0.0266320, 0.198611},
     {0.0235500, 0.0257817, 0.0330662, 0.00298517}, {0.0642546, 0.0751482, 0.103790},
     {0.00688837, 0.0111574, 0.0162445}, {1.7409, 2.9792, 10.443}, {1.8, 4.7, 0.2, 0.3}},
};

/* The arrays an ACOP problem points into. */
typedef struct {
    acop_user u;
    double th[4], lo[4], hi[4], om[9], sigma;
    int sigma_fixed;
} acop_setup;

/* NONMEM's parameterisation (models.h acop_pred): log thetas, RSV bounded to (0, 1), sigma 1
 * fixed, diagonal omega; initial thetas theta0 and omega variances omega0. */
static void acop_problem(popk_problem *p, acop_setup *s, const acop_ref *ref, test_data *d,
                         const double *theta0, const double *omega0)
{
    int q = ref->oral ? 3 : 2, nth = q + 1;
    memset(s, 0, sizeof *s);
    s->u = (acop_user){d, ref->oral};
    for (int k = 0; k < nth; k++) {
        s->th[k] = theta0[k];
        s->lo[k] = k == q ? 0.0 : -INFINITY;
        s->hi[k] = k == q ? 1.0 : INFINITY;
    }
    for (int k = 0; k < q; k++)
        s->om[k * q + k] = omega0[k];
    s->sigma = 1.0;
    s->sigma_fixed = 1;
    test_problem(p, d, nth, q, 1);
    p->theta0 = s->th;
    p->theta_lo = s->lo;
    p->theta_hi = s->hi;
    p->omega0 = s->om;
    p->sigma0 = &s->sigma;
    p->sigma_fixed = &s->sigma_fixed;
    p->pred = acop_pred;
    p->user = &s->u;
}

static void acop_fit(const acop_ref *ref, test_data *d, double perturb)
{
    if (!have_acop) {
        printf("\n  SKIP: ACOP data not found\n");
        return;
    }
    int q = ref->oral ? 3 : 2, nth = q + 1;
    double th[4], om[3];
    for (int k = 0; k < nth; k++)
        th[k] = ref->theta0[k] * (k % 2 ? 1.0 - perturb : 1.0 + perturb);
    for (int k = 0; k < q; k++)
        om[k] = 0.15 * (k % 2 ? 1.0 + perturb : 1.0 - perturb);
    popk_problem p;
    acop_setup setup;
    acop_problem(&p, &setup, ref, d, th, om);
    double secs;
    popk_estimate_result *r = fit(&p, POPK_METHOD_FOCEI, perturb == 0 ? POPK_COV_SANDWICH : POPK_COV_NONE, 2, &secs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    printf("\n  %s FOCE-I%s: OFV %.4f (NONMEM %.4f) in %.3f s, %d iterations, %d OFV passes\n",
           ref->name, perturb == 0 ? " with covariance step" : " from perturbed start",
           r->ofv, ref->ofv, secs, r->iterations, r->evaluations);
    CU_ASSERT_EQUAL(r->status, POPK_OK);
    CU_ASSERT_DOUBLE_EQUAL(r->ofv, ref->ofv, perturb == 0 ? 0.1 : 0.01 + fabs(r->ofv - ref->ofv));
    if (perturb != 0) {
        popk_estimate_result_free(r);
        return;
    }
    CU_ASSERT_DOUBLE_EQUAL(r->ofv, ref->ofv, 0.1);
    for (int k = 0; k < q; k++)
        CU_ASSERT_DOUBLE_EQUAL(r->theta[k], ref->theta[k], 0.005);
    CU_ASSERT_DOUBLE_EQUAL(r->theta[q], ref->theta[q], 0.005 * ref->theta[q]);
    for (int k = 0; k < q; k++)
        CU_ASSERT_DOUBLE_EQUAL(r->omega[k * q + k], ref->omega[k], 0.03 * ref->omega[k]);
    CU_ASSERT_EQUAL_FATAL(r->cov_status, POPK_OK);
    for (int k = 0; k < nth; k++) {
        printf("  THETA(%d) %.5f SE %.5f (NONMEM %.5f SE %.5f)\n", k + 1, r->theta[k], r->se[k],
               ref->theta[k], ref->theta_se[k]);
        CU_ASSERT_DOUBLE_EQUAL(r->se[k], ref->theta_se[k], 0.1 * ref->theta_se[k]);
    }
    for (int k = 0; k < q; k++) {
        printf("  OMEGA(%d,%d) %.5f SE %.5f (NONMEM %.5f SE %.5f), shrinkage %.2f%% (NONMEM "
               "%.2f%%)\n", k + 1, k + 1, r->omega[k * q + k], r->se[nth + k], ref->omega[k],
               ref->omega_se[k], 100 * r->eta_shrinkage[k], ref->shrink[k]);
        CU_ASSERT_DOUBLE_EQUAL(r->se[nth + k], ref->omega_se[k], 0.1 * ref->omega_se[k]);
        CU_ASSERT_DOUBLE_EQUAL(100 * r->eta_shrinkage[k], ref->shrink[k], 0.5);
    }
    printf("  condition number %.1f\n", r->condition);
    popk_estimate_result_free(r);
}

static void test_acop_bolus(void) { acop_fit(&acop_refs[0], &bolus, 0.0); }
static void test_acop_bolus_perturbed(void) { acop_fit(&acop_refs[0], &bolus, 0.3); }
static void test_acop_oral(void) { acop_fit(&acop_refs[1], &oral, 0.0); }
static void test_acop_oral_perturbed(void) { acop_fit(&acop_refs[1], &oral, 0.3); }


/* Covariance options at the theo_sd estimates: R-only is 2 R^-1, S-only 4 S^-1, the sandwich
 * satisfies R cov R = S; R agrees with second differences of the OFV taken with another step;
 * the three SEs agree roughly (information equality at the optimum of a sound model). */
/* theo_pred with an ODE solver's kind of noise: each prediction off by up to 1e-7 relative,
 * a deterministic hash of (theta, sigma, eta, record) so that 1 and 2 threads agree; the
 * sensitivities are exact. l then carries noise of ~1e-6 per subject. */
static int theo_pred_noisy(int i, int thread, const double *theta, const double *sigma,
                           const double *eta, double *f, double *V, double *G, double *dV,
                           void *user, popk_error *err)
{
    int st = theo_pred(i, thread, theta, sigma, eta, f, V, G, dV, user, err);
    if (st != 0)
        return st;
    unsigned long long h0 = 1469598103934665603ULL;
    const double *parts[] = {theta, sigma, eta};
    const int sizes[] = {3, 1, 3};
    for (int p = 0; p < 3; p++) {
        const unsigned char *b = (const unsigned char *)parts[p];
        for (size_t k = 0; k < sizes[p] * sizeof(double); k++)
            h0 = (h0 ^ b[k]) * 1099511628211ULL;
    }
    for (int j = 0; j < theo.nobs[i]; j++) {
        unsigned long long h = (h0 ^ (unsigned long long)(j + 1)) * 1099511628211ULL;
        h ^= h >> 29;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 32;
        f[j] *= 1.0 + 1e-7 * ((double)(h >> 11) / 4503599627370496.0 - 1.0);
    }
    return 0;
}

/* --optimizer bhhh (fit.c outer_bhhh) on theo_sd FOCE-I: the nlmixr2 reference as test_theo_focei
 * checks it (OFV 116.8038 within 0.02, thetas 1%, omegas 3%), and within 1e-3 of SLSQP's OFV
 * (it converges linearly at the end: 12 subjects make a rough outer-product Hessian). */
static void test_theo_bhhh(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_estimate_options opt;
    popk_estimate_options_default(&opt);
    opt.optimizer = POPK_OPT_BHHH;
    opt.covariance = POPK_COV_NONE;
    opt.nthreads = 2;
    popk_error err;
    popk_estimate_result *r = popk_estimate(&p, &opt, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    printf("\n  theo_sd FOCE-I, BHHH: OFV %.4f, %d iterations\n", r->ofv, r->iterations);
    CU_ASSERT_EQUAL(r->status, POPK_OK);
    CU_ASSERT_DOUBLE_EQUAL(r->ofv, 116.8038, 0.02);
    CU_ASSERT(r->ofv - 116.8034 < 1e-3);
    const double theta_ref[] = {0.464451, 1.012047, 3.459973}, omega_ref[] = {0.404625, 0.068796, 0.019222};
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_DOUBLE_EQUAL(r->theta[k], theta_ref[k], 0.01 * theta_ref[k]);
        CU_ASSERT_DOUBLE_EQUAL(r->omega[k * 4], omega_ref[k], 0.03 * omega_ref[k]);
    }
    CU_ASSERT_DOUBLE_EQUAL(r->sigma[0], 0.693839, 0.01 * 0.693839);
    CU_ASSERT_STRING_EQUAL(popk_optimizer_name(POPK_OPT_BHHH), "bhhh");
    popk_optimizer o;
    CU_ASSERT_EQUAL(popk_optimizer_parse("bhhh", &o), 0);
    CU_ASSERT_EQUAL(o, POPK_OPT_BHHH);
    popk_estimate_result_free(r);
}

/* The covariance step on a noisy OFV (theo_pred_noisy: 1e-7 of each prediction, ~5e-6 of
 * each subject's term) at the noise-free estimates: the relative steps of the second
 * differences (1e-3 of each parameter, a change of the OFV of 1e-6 to 1e-4) would be noise;
 * once the estimator has seen the noise the steps widen until they move the OFV by ~1e-2, and
 * the SEs match the noise-free ones. */
static void test_covariance_noisy(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_estimate_result *r = fit(&p, POPK_METHOD_FOCEI, POPK_COV_SANDWICH, 2, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL_FATAL(r->cov_status, POPK_OK);
    popk_problem pn = p;
    pn.pred = theo_pred_noisy;
    pn.theta0 = r->theta;
    pn.omega0 = r->omega;
    pn.sigma0 = r->sigma;
    popk_estimate_options opt;
    popk_estimate_options_default(&opt);
    opt.evaluate_only = 1;
    opt.nthreads = 2;
    popk_error err;
    popk_estimate_result *rn = popk_estimate(&pn, &opt, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rn);
    if (rn->cov_status != POPK_OK)
        printf("\n  covariance step failed: %s\n", rn->cov_message);
    CU_ASSERT_EQUAL_FATAL(rn->cov_status, POPK_OK);
    double worst = 0.0;
    printf("\n  SEs with noise / without:");
    for (int k = 0; k < r->npar; k++) {
        printf(" %.5f/%.5f", rn->se[k], r->se[k]);
        worst = fmax(worst, fabs(rn->se[k] / r->se[k] - 1.0));
    }
    printf("\n  worst relative difference %.2e\n", worst);
    /* without the widening: 88%, or R not positive definite; with the widening and the
     * models' H from forward differences at 1e-6: 5% (central ones at 1e-4: 0.6%) */
    CU_ASSERT(worst < 0.02);
    popk_estimate_result_free(rn);
    popk_estimate_result_free(r);
}

/* R from FOCE-I's quadratic models (the default: one prediction per subject and point)
 * against R from re-solved inner problems at every point (the definition), at the same
 * estimates; every element within tol of sqrt(R_kk R_ll). The re-solved R takes 3 times the
 * steps: its inner problems' stopping leaves ~1e-10 in each term, which the smallest default
 * steps (ACOP's log KA of -0.027: 2.7e-5, an OFV change of 1e-6) turn into 1.5e-3 of R_kk,
 * while the models' R stays put from 1 to 30 times the steps; with 3 the truncation (O(h^2))
 * and that noise are both near 1e-4. */
static void covariance_models_case(const char *name, const popk_problem *p,
                                   const popk_estimate_result *r, double tol)
{
    popk_error err;
    int n = r->npar;
    double *R[2];
    long preds[2];
    for (int solve_all = 0; solve_all < 2; solve_all++) {
        popk_estimator *est = popk_estimator_create(p, 2, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(est);
        double ofv0;
        CU_ASSERT_EQUAL_FATAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, r->theta, r->omega,
                                                 r->sigma, &ofv0, &err), POPK_OK);
        popk_estimate_result rr = *r;
        rr.cov = rr.R = rr.S = rr.se = rr.corr = rr.eigenvalues = NULL;
        long before = popk_estimator_predictions(est);
        CU_ASSERT_EQUAL_FATAL(popk_estimate_covariance_ex(est, POPK_METHOD_FOCEI, POPK_COV_R,
                                                          solve_all, solve_all ? 3.0 : 1.0,
                                                          &rr, &err), POPK_OK);
        preds[solve_all] = popk_estimator_predictions(est) - before;
        R[solve_all] = rr.R;
        free(rr.cov);
        free(rr.S);
        free(rr.se);
        free(rr.corr);
        free(rr.eigenvalues);
        popk_estimator_free(est);
    }
    double worst = 0.0;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            worst = fmax(worst, fabs(R[0][a * n + b] - R[1][a * n + b]) /
                                    sqrt(R[1][a * n + a] * R[1][b * n + b]));
    printf("\n  %s: R from the models vs re-solved: worst %.2e of sqrt(R_kk R_ll); "
           "predictions %ld vs %ld", name, worst, preds[0], preds[1]);
    CU_ASSERT(worst < tol);
    CU_ASSERT(preds[0] < preds[1]);
    free(R[0]);
    free(R[1]);
}

static void test_covariance_models(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_estimate_result *r = fit(&p, POPK_METHOD_FOCEI, POPK_COV_NONE, 2, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    covariance_models_case("theo_sd", &p, r, 3e-4);
    popk_estimate_result_free(r);
    if (!have_acop)
        return;
    acop_setup setup;
    acop_problem(&p, &setup, &acop_refs[1], &oral, acop_refs[1].theta, acop_refs[1].omega);
    r = fit(&p, POPK_METHOD_FOCEI, POPK_COV_NONE, 2, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    covariance_models_case("ACOP Oral_1CPT", &p, r, 3e-4);
    printf("\n");
    popk_estimate_result_free(r);
}

static void test_covariance_kinds(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_estimate_result *r = fit(&p, POPK_METHOD_FOCEI, POPK_COV_SANDWICH, 2, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL_FATAL(r->cov_status, POPK_OK);
    int n = r->npar;
    CU_ASSERT_EQUAL_FATAL(n, 7);
    double se_sandwich[7];
    memcpy(se_sandwich, r->se, sizeof se_sandwich);
    /* sandwich: R cov R = S */
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            double s = 0.0;
            for (int k = 0; k < n; k++)
                for (int l = 0; l < n; l++)
                    s += r->R[a * n + k] * r->cov[k * n + l] * r->R[l * n + b];
            CU_ASSERT_DOUBLE_EQUAL(s, r->S[a * n + b], 1e-8 * sqrt(r->S[a * n + a] * r->S[b * n + b]));
        }
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double ofv0;
    CU_ASSERT_EQUAL_FATAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, r->theta, r->omega, r->sigma, &ofv0, &err), POPK_OK);
    /* R's diagonal against second differences with twice the step */
    for (int k = 0; k < n; k++) {
        double pt[7], th[3], om[9], si[1], fp, fm, h = 2e-3 * fabs(r->p[k]);
        memcpy(pt, r->p, sizeof pt);
        pt[k] += h;
        popk_param_map_set_natural(popk_estimator_map(est), pt, th, om, si);
        popk_estimator_ofv(est, POPK_METHOD_FOCEI, th, om, si, &fp, &err);
        pt[k] -= 2 * h;
        popk_param_map_set_natural(popk_estimator_map(est), pt, th, om, si);
        popk_estimator_ofv(est, POPK_METHOD_FOCEI, th, om, si, &fm, &err);
        double hess = (fp - 2 * ofv0 + fm) / (h * h);
        CU_ASSERT_DOUBLE_EQUAL(r->R[k * n + k], hess, 1e-3 * fabs(hess));
    }
    popk_estimator_ofv(est, POPK_METHOD_FOCEI, r->theta, r->omega, r->sigma, &ofv0, &err);
    CU_ASSERT_EQUAL(popk_estimate_covariance(est, POPK_METHOD_FOCEI, POPK_COV_R, r, &err), POPK_OK);
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            double s = 0.0;
            for (int k = 0; k < n; k++)
                s += r->cov[a * n + k] * r->R[k * n + b] / 2;
            CU_ASSERT_DOUBLE_EQUAL(s, a == b, 1e-8);
        }
    /* nlmixr2's "analytic" (R-based) SEs of tka, tcl, tv, add.sd (refdata README 6(ii)) */
    const double se_r_ref[4] = {0.1911, 0.08366, 0.04654, 0.04951};
    printf("\n  SE sandwich / R-only (nlmixr2 analytic):");
    for (int k = 0; k < n; k++) {
        int ref = k < 3 ? k : k == 6 ? 3 : -1;
        printf(" %.5f/%.5f", se_sandwich[k], r->se[k]);
        if (ref >= 0) {
            printf(" (%.5f)", se_r_ref[ref]);
            CU_ASSERT_DOUBLE_EQUAL(r->se[k], se_r_ref[ref], 0.05 * se_r_ref[ref]);
        }
    }
    CU_ASSERT_EQUAL(popk_estimate_covariance(est, POPK_METHOD_FOCEI, POPK_COV_S, r, &err), POPK_OK);
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            double s = 0.0;
            for (int k = 0; k < n; k++)
                s += r->cov[a * n + k] * r->S[k * n + b] / 4;
            CU_ASSERT_DOUBLE_EQUAL(s, a == b, 1e-8);
        }
    for (int k = 0; k < n; k++)
        printf(k ? "  S %.5f" : "\n  S-only SEs %.5f", r->se[k]);
    printf("\n");
    popk_estimator_free(est);
    popk_estimate_result_free(r);
}

/* A parameter the predictions do not depend on: R is singular; the step reports it and the
 * estimates are kept. */
static int theo_pred_extra(int i, int thread, const double *theta, const double *sigma,
                           const double *eta, double *f, double *V, double *G, double *dV,
                           void *user, popk_error *err)
{
    return theo_pred(i, thread, theta, sigma, eta, f, V, G, dV, user, err);
}

static void test_covariance_failure(void)
{
    popk_problem p;
    theo_problem(&p);
    double th[4] = {0.45, 1.0, 3.45, 2.0};
    p.ntheta = 4;
    p.theta0 = th;
    p.pred = theo_pred_extra;
    popk_estimate_options opt;
    popk_estimate_options_default(&opt);
    opt.evaluate_only = 1;
    popk_error err;
    popk_estimate_result *r = popk_estimate(&p, &opt, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->cov_status, POPK_ERR_NUMERIC);
    CU_ASSERT_STRING_EQUAL(r->cov_message, "R matrix is not positive definite");
    CU_ASSERT_PTR_NULL(r->cov);
    CU_ASSERT(isfinite(r->ofv));
    CU_ASSERT_EQUAL(r->theta[3], 2.0);
    popk_estimate_result_free(r);

    /* an omega block on its boundary (correlation 0.99999 between eta_cl and eta_v): the
     * second differences step out of the positive definite matrices; the message names the
     * point and the reason */
    theo_problem(&p);
    double om[9] = {0.6, 0, 0, 0, 0.3, 0.99999 * sqrt(0.3 * 0.1), 0, 0.99999 * sqrt(0.3 * 0.1),
                    0.1};
    int block[3] = {0, 1, 1};
    p.omega0 = om;
    p.omega_block = block;
    r = popk_estimate(&p, &opt, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    printf("\n  boundary block: %s\n", r->cov_message);
    CU_ASSERT_EQUAL(r->cov_status, POPK_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(r->cov_message, "finite-difference point OMEGA("));
    CU_ASSERT_PTR_NOT_NULL(strstr(r->cov_message, "not positive definite"));
    CU_ASSERT_PTR_NULL(r->cov);
    CU_ASSERT(isfinite(r->ofv));
    CU_ASSERT_EQUAL(r->omega[5], om[5]);
    popk_estimate_result_free(r);
}

static int theo_pred_no_eta(int i, int thread, const double *theta, const double *sigma,
                            const double *eta, double *f, double *V, double *G, double *dV,
                            void *user, popk_error *err)
{
    (void)eta, (void)G, (void)dV;
    const double zero[3] = {0, 0, 0};
    return theo_pred(i, thread, theta, sigma, zero, f, V, NULL, NULL, user, err);
}

/* No etas: every method is the naive pooled -2 log-likelihood sum (r^2/V + log V). */
static void test_naive_pooled(void)
{
    popk_problem p;
    theo_problem(&p);
    p.neta = 0;
    p.omega0 = NULL;
    p.pred = theo_pred_no_eta;
    double expect = 0.0, eta0[3] = {0, 0, 0};
    for (int i = 0; i < theo.nsub; i++) {
        double f[32], V[32];
        theo_pred(i, 0, theo_theta0, theo_sigma0, eta0, f, V, NULL, NULL, &theo, NULL);
        for (int j = 0; j < theo.nobs[i]; j++)
            expect += (theo.y[i][j] - f[j]) * (theo.y[i][j] - f[j]) / V[j] + log(V[j]);
    }
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    for (int m = POPK_METHOD_FO; m <= POPK_METHOD_LAPLACE; m++) {
        double ofv;
        CU_ASSERT_EQUAL(popk_estimator_ofv(est, (popk_method)m, theo_theta0, NULL, theo_sigma0, &ofv, &err), POPK_OK);
        CU_ASSERT_DOUBLE_EQUAL(ofv, expect, 1e-10 * fabs(expect));
    }
    popk_estimator_free(est);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("estimate_fit", setup, teardown);
    CU_add_test(s, "theo_focei", test_theo_focei);
    CU_add_test(s, "theo_perturbed", test_theo_perturbed);
    CU_add_test(s, "theo_threads", test_theo_threads);
    CU_add_test(s, "theo_fo", test_theo_fo);
    CU_add_test(s, "callback_and_evaluate", test_callback_and_evaluate);
    CU_add_test(s, "covariance_kinds", test_covariance_kinds);
    CU_add_test(s, "covariance_noisy", test_covariance_noisy);
    CU_add_test(s, "covariance_models", test_covariance_models);
    CU_add_test(s, "theo_bhhh", test_theo_bhhh);
    CU_add_test(s, "covariance_failure", test_covariance_failure);
    CU_add_test(s, "naive_pooled", test_naive_pooled);
    CU_add_test(s, "acop_bolus", test_acop_bolus);
    CU_add_test(s, "acop_bolus_perturbed", test_acop_bolus_perturbed);
    CU_add_test(s, "acop_oral", test_acop_oral);
    CU_add_test(s, "acop_oral_perturbed", test_acop_oral_perturbed);
    return popk_test_run();
}
