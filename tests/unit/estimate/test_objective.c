/* Tests for the estimator's objectives: Wang 2007 against NONMEM's published values and
 * per-subject output, exact gradients and the Laplace Hessian against finite differences,
 * and bit-identical sums with 1 and 2 threads. */
#include "common/popk_test.h"
#include "estimate/estimate_impl.h"
#include "models.h"
#include "util/error.h"

static test_data wang, theo;

static int setup(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", popk_test_src("datasets/wang2007.csv"));
    if (test_data_read(path, 0, &wang) != 0)
        return 1;
    snprintf(path, sizeof path, "%s", popk_test_src("datasets/theo_sd.csv"));
    return test_data_read(path, 0, &theo) != 0;
}

static int teardown(void)
{
    test_data_free(&wang);
    test_data_free(&theo);
    return 0;
}

/* The Wang problem at theta 0.5, omega 0.04, sigma^2 0.1. */
static void wang_problem(popk_problem *p, wang_user *u, int proportional)
{
    static const double theta0 = 0.5, omega0 = 0.04;
    static double sigma0;
    sigma0 = sqrt(0.1);
    u->data = &wang;
    u->proportional = proportional;
    test_problem(p, &wang, 1, 1, 1);
    p->theta0 = &theta0;
    p->omega0 = &omega0;
    p->sigma0 = &sigma0;
    p->pred = wang_pred;
    p->user = u;
}

static double wang_ofv(popk_method method, int proportional)
{
    popk_problem p;
    wang_user u;
    wang_problem(&p, &u, proportional);
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double ofv = NAN;
    CU_ASSERT_EQUAL(popk_estimator_ofv(est, method, p.theta0, p.omega0, p.sigma0, &ofv, &err),
                    POPK_OK);
    popk_estimator_free(est);
    return ofv;
}

/* NONMEM's published values (Wang 2007, Table 2) and the exact-Hessian Laplace values of
 * wang2007_objectives.py. */
static void test_wang_nonmem(void)
{
    CU_ASSERT_DOUBLE_EQUAL(wang_ofv(POPK_METHOD_FOCEI, 1), 39.458, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(wang_ofv(POPK_METHOD_FOCE, 1), 39.207, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(wang_ofv(POPK_METHOD_FO, 1), 39.213, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(wang_ofv(POPK_METHOD_LAPLACE, 1), 39.227, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(wang_ofv(POPK_METHOD_FOCEI, 0), -2.059, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(wang_ofv(POPK_METHOD_FOCE, 0), -2.059, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(wang_ofv(POPK_METHOD_FO, 0), 0.026, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(wang_ofv(POPK_METHOD_LAPLACE, 0), -1.936, 1e-3);
}

/* NONMEM's ETA1 and OBJI per subject (refdata/wang2007_nonmem_prop_focei.tsv). */
static void test_wang_subjects(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s",
             popk_test_src("tests/reference/data/wang2007_nonmem_prop_focei.tsv"));
    FILE *fp = fopen(path, "r");
    if (!fp) {
        printf("\n  SKIP: %s not found\n", path);
        return;
    }
    popk_problem p;
    wang_user u;
    wang_problem(&p, &u, 1);
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double ofv;
    CU_ASSERT_EQUAL_FATAL(
        popk_estimator_ofv(est, POPK_METHOD_FOCEI, p.theta0, p.omega0, p.sigma0, &ofv, &err),
        POPK_OK);
    const double *eta = popk_estimator_eta(est), *obji = popk_estimator_ofv_terms(est);
    char line[4096];
    int last = -1, checked = 0;
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, fp)); /* header: ID TIME DV PRED IPRE ETA1 OBJI */
    while (fgets(line, sizeof line, fp)) {
        int id;
        double t, dv, pred, ipre, eta1, obj;
        if (sscanf(line, "%d %lf %lf %lf %lf %lf %lf", &id, &t, &dv, &pred, &ipre, &eta1, &obj) != 7)
            continue;
        if (id == last)
            continue;
        last = id;
        /* NONMEM prints 5 significant digits */
        CU_ASSERT_DOUBLE_EQUAL(eta[id - 1], eta1, 5e-6 + 5e-5 * fabs(eta1));
        CU_ASSERT_DOUBLE_EQUAL(obji[id - 1], obj, 5e-5 * fabs(obj));
        checked++;
    }
    fclose(fp);
    CU_ASSERT_EQUAL(checked, 10);
    popk_estimator_free(est);
}

static const double theo_theta0[] = {0.45, 1.0, 3.45}, theo_omega0[] = {0.6, 0, 0, 0, 0.3, 0, 0, 0, 0.1},
                    theo_sigma0[] = {0.7};

static void theo_problem(popk_problem *p)
{
    test_problem(p, &theo, 3, 3, 1);
    p->theta0 = theo_theta0;
    p->omega0 = theo_omega0;
    p->sigma0 = theo_sigma0;
    p->pred = theo_pred;
    p->user = &theo;
}

/* The exact gradient of l_i (from the callback's G) against central differences of l_i. */
static void test_joint_gradient(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    const double eta[3] = {0.3, -0.2, 0.1};
    for (int i = 0; i < theo.nsub; i++) {
        double l, g[3];
        CU_ASSERT_EQUAL_FATAL(popk_estimator_joint(est, i, theo_theta0, theo_omega0, theo_sigma0,
                                                   eta, &l, g, &err), POPK_OK);
        for (int k = 0; k < 3; k++) {
            double e[3] = {eta[0], eta[1], eta[2]}, lp, lm, h = 1e-5;
            e[k] += h;
            popk_estimator_joint(est, i, theo_theta0, theo_omega0, theo_sigma0, e, &lp, NULL, &err);
            e[k] -= 2 * h;
            popk_estimator_joint(est, i, theo_theta0, theo_omega0, theo_sigma0, e, &lm, NULL, &err);
            CU_ASSERT_DOUBLE_EQUAL(g[k], (lp - lm) / (2 * h), 1e-6 * (1 + fabs(g[k])));
        }
    }
    popk_estimator_free(est);
}

/* Laplace's Hessian (differences of the exact gradient) against second differences of l_i at
 * each subject's EBE, to 1e-5 relative. */
static void test_laplace_hessian(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double ofv;
    CU_ASSERT_EQUAL_FATAL(popk_estimator_ofv(est, POPK_METHOD_LAPLACE, theo_theta0, theo_omega0,
                                             theo_sigma0, &ofv, &err), POPK_OK);
    const double *ebe = popk_estimator_eta(est), *terms = popk_estimator_ofv_terms(est);
    double worst = 0.0;
    for (int i = 0; i < theo.nsub; i++) {
        double H[9], Hfd[9], e[3], l0, h = 1e-3;
        memcpy(e, ebe + 3 * i, sizeof e);
        CU_ASSERT_EQUAL_FATAL(popk_estimator_joint_hessian(est, i, theo_theta0, theo_omega0,
                                                           theo_sigma0, e, H, &err), POPK_OK);
        popk_estimator_joint(est, i, theo_theta0, theo_omega0, theo_sigma0, e, &l0, NULL, &err);
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                double s[4], sign[4][2] = {{1, 1}, {1, -1}, {-1, 1}, {-1, -1}};
                for (int k = 0; k < 4; k++) {
                    double x[3];
                    memcpy(x, e, sizeof x);
                    x[a] += sign[k][0] * h;
                    x[b] += sign[k][1] * h;
                    popk_estimator_joint(est, i, theo_theta0, theo_omega0, theo_sigma0, x, &s[k],
                                         NULL, &err);
                }
                Hfd[a * 3 + b] = (s[0] - s[1] - s[2] + s[3]) / (4 * h * h);
            }
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                double rel = fabs(H[a * 3 + b] - Hfd[a * 3 + b]) /
                             sqrt(fabs(Hfd[a * 4] * Hfd[b * 4]));
                if (rel > worst)
                    worst = rel;
            }
        /* the Laplace term is l + log det(H/2) at the EBE */
        double M[9];
        for (int k = 0; k < 9; k++)
            M[k] = H[k] / 2;
        double det = M[0] * (M[4] * M[8] - M[5] * M[7]) - M[1] * (M[3] * M[8] - M[5] * M[6]) +
                     M[2] * (M[3] * M[7] - M[4] * M[6]);
        CU_ASSERT_DOUBLE_EQUAL(terms[i], l0 + log(det), 1e-9 * fabs(terms[i]) + 1e-9);
    }
    printf("\n  Laplace Hessian vs second differences of l_i: worst relative %.2e\n", worst);
    CU_ASSERT(worst < 1e-5);
    popk_estimator_free(est);
}

/* The EBE is a stationary point: the exact gradient there is ~0, for every method. */
static void test_ebe_stationary(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double ofv;
    CU_ASSERT_EQUAL_FATAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, theo_theta0, theo_omega0,
                                             theo_sigma0, &ofv, &err), POPK_OK);
    for (int i = 0; i < theo.nsub; i++) {
        double l, g[3];
        popk_estimator_joint(est, i, theo_theta0, theo_omega0, theo_sigma0,
                             popk_estimator_eta(est) + 3 * i, &l, g, &err);
        CU_ASSERT(fabs(g[0]) + fabs(g[1]) + fabs(g[2]) < 1e-7);
    }
    popk_estimator_free(est);
}

/* The population OFV is the same bits with 1 and 2 threads, for each method. */
static void test_threads_identical(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_error err;
    popk_method methods[] = {POPK_METHOD_FO, POPK_METHOD_FOCE, POPK_METHOD_FOCEI,
                             POPK_METHOD_LAPLACE};
    for (int m = 0; m < 4; m++) {
        double ofv[2];
        for (int nt = 1; nt <= 2; nt++) {
            popk_estimator *est = popk_estimator_create(&p, nt, &err);
            CU_ASSERT_PTR_NOT_NULL_FATAL(est);
            CU_ASSERT_EQUAL(popk_estimator_ofv(est, methods[m], theo_theta0, theo_omega0,
                                               theo_sigma0, &ofv[nt - 1], &err), POPK_OK);
            popk_estimator_free(est);
        }
        CU_ASSERT(memcmp(&ofv[0], &ofv[1], sizeof ofv[0]) == 0);
    }
}

/* A fatal callback error reaches the caller with its message; a bad omega is refused. */
static int failing_pred(int i, int thread, const double *theta, const double *sigma,
                        const double *eta, double *f, double *V, double *G, double *dV,
                        void *user, popk_error *err)
{
    if (i == 3) {
        popk_error_set(err, POPK_ERR_MODEL, "m.yaml", 4, 2, "bad subject");
        return -1;
    }
    return theo_pred(i, thread, theta, sigma, eta, f, V, G, dV, user, err);
}

static int nan_pred(int i, int thread, const double *theta, const double *sigma,
                    const double *eta, double *f, double *V, double *G, double *dV, void *user,
                    popk_error *err)
{
    theo_pred(i, thread, theta, sigma, eta, f, V, G, dV, user, err);
    if (i == 5)
        f[2] = NAN;
    return 0;
}

static long nan_all_preds;

/* from subject 4 (index 3) on, every prediction away from eta = 0 is NaN, so each of those
 * inner problems fails only after its step halvings, as on a far trial point; counts calls */
static int nan_all_pred(int i, int thread, const double *theta, const double *sigma,
                        const double *eta, double *f, double *V, double *G, double *dV,
                        void *user, popk_error *err)
{
    __atomic_fetch_add(&nan_all_preds, 1, __ATOMIC_RELAXED);
    theo_pred(i, thread, theta, sigma, eta, f, V, G, dV, user, err);
    if (i >= 3 && (eta[0] != 0.0 || eta[1] != 0.0 || eta[2] != 0.0))
        f[0] = NAN;
    return 0;
}

/* A pass fails as soon as one subject fails, so the subjects after the first failure are
 * skipped (a far trial point of the outer search failed every subject of ACOP Bolus_2CPTMM
 * after 144 predictions each); the error is still the first failing subject's in data order,
 * whatever the threads. */
static void test_failure_skips(void)
{
    popk_problem p;
    theo_problem(&p);
    long good; /* a whole pass that succeeds */
    {
        popk_error err;
        popk_estimator *est = popk_estimator_create(&p, 1, &err);
        double ofv;
        CU_ASSERT_EQUAL_FATAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, theo_theta0,
                                                 theo_omega0, theo_sigma0, &ofv, &err),
                              POPK_OK);
        good = popk_estimator_predictions(est);
        popk_estimator_free(est);
    }
    p.pred = nan_all_pred;
    for (int threads = 1; threads <= 2; threads++) {
        popk_error err;
        popk_estimator *est = popk_estimator_create(&p, threads, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(est);
        double ofv;
        nan_all_preds = 0;
        CU_ASSERT_EQUAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, theo_theta0, theo_omega0,
                                           theo_sigma0, &ofv, &err), POPK_ERR_NUMERIC);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "subject 4"));
        printf("\n  %d thread(s): %ld predictions against %ld for a whole pass that succeeds",
               threads, nan_all_preds, good);
        /* 3 good subjects and one failure per thread, not 3 good and 9 failing ones (each
         * failure costs several times a success: its step halvings, then again from 0) */
        CU_ASSERT(nan_all_preds < 2 * good);
        CU_ASSERT(popk_estimator_predictions(est) == nan_all_preds);
        popk_estimator_free(est);
    }
    printf("\n");
}

static void test_errors(void)
{
    popk_problem p;
    theo_problem(&p);
    p.pred = failing_pred;
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double ofv;
    CU_ASSERT_EQUAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, theo_theta0, theo_omega0,
                                       theo_sigma0, &ofv, &err), POPK_ERR_MODEL);
    CU_ASSERT_STRING_EQUAL(err.message, "bad subject");
    CU_ASSERT_EQUAL(err.line, 4);
    const double bad_omega[9] = {0.6, 0, 0, 0, -0.3, 0, 0, 0, 0.1};
    p.pred = theo_pred;
    CU_ASSERT_EQUAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, theo_theta0, bad_omega,
                                       theo_sigma0, &ofv, &err), POPK_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "not positive definite"));
    popk_estimator_free(est);
    p.pred = nan_pred;
    est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_EQUAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, theo_theta0, theo_omega0,
                                       theo_sigma0, &ofv, &err), POPK_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "subject 6"));
    popk_estimator_free(est);
}


/* Per-subject outputs: the EBE posterior covariance is the inverse of the FOCE-I matrix
 * Omega^-1 + sum g^2/V + 1/2 dV^2/V^2 at the EBE (Wang, proportional error, by hand); FO's
 * stored EBEs are 0 and its posthoc EBEs are FOCE-I's. */
static void test_posterior(void)
{
    popk_problem p;
    wang_user u;
    wang_problem(&p, &u, 1);
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double ofv;
    CU_ASSERT_EQUAL_FATAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, p.theta0, p.omega0, p.sigma0, &ofv, &err), POPK_OK);
    double eta_focei[10];
    memcpy(eta_focei, popk_estimator_eta(est), sizeof eta_focei);
    for (int i = 0; i < 10; i++) {
        double e = eta_focei[i], ke = 0.5 * exp(e), info = 1.0 / 0.04;
        for (int j = 0; j < 2; j++) {
            double t = wang.t[i][j], f = 10 * exp(-ke * t), g = -t * ke * f;
            double V = 0.1 * f * f, dV = 2 * 0.1 * f * g;
            info += g * g / V + 0.5 * dV * dV / (V * V);
        }
        CU_ASSERT_DOUBLE_EQUAL(popk_estimator_eta_cov(est)[i], 1.0 / info, 1e-12 / info);
    }
    CU_ASSERT_EQUAL_FATAL(popk_estimator_ofv(est, POPK_METHOD_FO, p.theta0, p.omega0, p.sigma0, &ofv, &err), POPK_OK);
    for (int i = 0; i < 10; i++)
        CU_ASSERT_EQUAL(popk_estimator_eta(est)[i], 0.0);
    CU_ASSERT_EQUAL_FATAL(popk_estimator_posthoc(est, 0, p.theta0, p.omega0, p.sigma0, &err), POPK_OK);
    for (int i = 0; i < 10; i++)
        CU_ASSERT_DOUBLE_EQUAL(popk_estimator_eta(est)[i], eta_focei[i], 1e-9);
    popk_estimator_free(est);
}


/* With additive error V does not depend on eta, so FOCE and FOCE-I are the same objective
 * (MATH.md): the Woodbury form of the linearised marginal must equal l + log det M. */
static void test_foce_equals_focei_additive(void)
{
    popk_problem p;
    theo_problem(&p);
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double foce, focei;
    CU_ASSERT_EQUAL(popk_estimator_ofv(est, POPK_METHOD_FOCE, theo_theta0, theo_omega0, theo_sigma0, &foce, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, theo_theta0, theo_omega0, theo_sigma0, &focei, &err), POPK_OK);
    CU_ASSERT_DOUBLE_EQUAL(foce, focei, 1e-9 * fabs(focei));
    popk_estimator_free(est);
}

/* A callback that cannot predict far from eta = 0 (returns > 0): a warm start out there is
 * abandoned for 0 and the EBEs are the same as from a cold start. */
static int limited_pred(int i, int thread, const double *theta, const double *sigma,
                        const double *eta, double *f, double *V, double *G, double *dV,
                        void *user, popk_error *err)
{
    if (fabs(eta[0]) > 1.0)
        return 1;
    return wang_pred(i, thread, theta, sigma, eta, f, V, G, dV, user, err);
}

static void test_recoverable_callback(void)
{
    popk_problem p;
    wang_user u;
    wang_problem(&p, &u, 1);
    popk_error err;
    popk_estimator *cold = popk_estimator_create(&p, 1, &err);
    p.pred = limited_pred;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cold);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double far[10], ofv_cold, ofv;
    for (int i = 0; i < 10; i++)
        far[i] = i % 2 ? 3.0 : -2.0;
    popk_estimator_set_eta(est, far);
    CU_ASSERT_EQUAL(popk_estimator_ofv(cold, POPK_METHOD_FOCEI, p.theta0, p.omega0, p.sigma0, &ofv_cold, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_estimator_ofv(est, POPK_METHOD_FOCEI, p.theta0, p.omega0, p.sigma0, &ofv, &err), POPK_OK);
    CU_ASSERT_DOUBLE_EQUAL(ofv, ofv_cold, 1e-10);
    for (int i = 0; i < 10; i++)
        CU_ASSERT_DOUBLE_EQUAL(popk_estimator_eta(est)[i], popk_estimator_eta(cold)[i], 1e-9);
    popk_estimator_free(est);
    popk_estimator_free(cold);
}

static long counted_preds;

/* theo_pred, counting the predictions (one thread) */
static int counting_pred(int i, int thread, const double *theta, const double *sigma,
                         const double *eta, double *f, double *V, double *G, double *dV,
                         void *user, popk_error *err)
{
    counted_preds++;
    return theo_pred(i, thread, theta, sigma, eta, f, V, G, dV, user, err);
}

/* Passes that do not commit, about a committed point whose Hessians were kept (the outer
 * finite differences), start each inner problem with Newton steps on that metric: their OFVs
 * must equal cold solves from eta = 0 with a fresh estimator (to the inner tolerance: a
 * decrement of 1e-18 puts each EBE within 1e-9 posterior SD, OFV_i within ~1e-9; 1e-16 in
 * the outer differences: 1e-8), with at most 3 predictions per subject for the inner problem
 * (Gauss-Newton from the warm start took about 7; FOCE adds one at eta = 0, Laplace 2 neta
 * for its Hessian). Perturbations of 1e-4 in each theta and omega, all methods with an inner
 * problem. */
static void test_warm_metric_passes(void)
{
    popk_problem p;
    theo_problem(&p);
    p.pred = counting_pred;
    popk_method methods[] = {POPK_METHOD_FOCE, POPK_METHOD_FOCEI, POPK_METHOD_LAPLACE};
    popk_error err;
    for (int m = 0; m < 3; m++)
        for (int loose = 0; loose < 2; loose++) {
            popk_estimator *warm = popk_estimator_create(&p, 1, &err);
            CU_ASSERT_PTR_NOT_NULL_FATAL(warm);
            double f0;
            popk_estimator_want_hessians(warm, 1);
            CU_ASSERT_EQUAL_FATAL(popk_estimator_pass(warm, methods[m], theo_theta0, theo_omega0,
                                                      theo_sigma0, 1, &f0, &err),
                                  POPK_OK);
            popk_estimator_want_hessians(warm, 0);
            popk_estimator_outer_differences(warm, loose);
            /* FOCE-I's outer differences use the subjects' quadratic models instead
             * (test_taylor_passes) */
            if (methods[m] == POPK_METHOD_FOCEI && loose) {
                popk_estimator_free(warm);
                continue;
            }
            double worst = 0.0;
            long preds = 0;
            for (int k = 0; k < 6; k++)
                for (int sign = -1; sign <= 1; sign += 2) {
                    double th[3], om[9], fw, fc;
                    memcpy(th, theo_theta0, sizeof th);
                    memcpy(om, theo_omega0, sizeof om);
                    if (k < 3)
                        th[k] += sign * 1e-4;
                    else
                        om[4 * (k - 3)] *= 1.0 + sign * 1e-4;
                    counted_preds = 0;
                    CU_ASSERT_EQUAL_FATAL(popk_estimator_pass(warm, methods[m], th, om,
                                                              theo_sigma0, 0, &fw, &err),
                                          POPK_OK);
                    preds += counted_preds;
                    popk_estimator *cold = popk_estimator_create(&p, 1, &err);
                    CU_ASSERT_PTR_NOT_NULL_FATAL(cold);
                    CU_ASSERT_EQUAL_FATAL(popk_estimator_ofv(cold, methods[m], th, om,
                                                             theo_sigma0, &fc, &err),
                                          POPK_OK);
                    popk_estimator_free(cold);
                    if (fabs(fw - fc) > worst)
                        worst = fabs(fw - fc);
                }
            double extra = methods[m] == POPK_METHOD_FOCE      ? 1.0
                           : methods[m] == POPK_METHOD_LAPLACE ? 6.0
                                                               : 0.0;
            double per_subject = (double)preds / (12.0 * theo.nsub) - extra;
            printf("\n  %s%s: warm-metric passes vs cold solves: worst |dOFV| %.2e, "
                   "%.2f predictions per subject's inner problem", popk_method_name(methods[m]),
                   loose ? " (outer differences)" : "", worst, per_subject);
            CU_ASSERT(worst <= theo.nsub * (loose ? 1e-8 : 1e-9));
            CU_ASSERT(per_subject <= 3.0);
            popk_estimator_free(warm);
        }
    printf("\n");
}

/* theo_sd's parameters with parameter k (0-2 theta, 3-5 an omega variance, 6 sigma) moved
 * by d */
static void theo_moved(int k, double d, double *th, double *om, double *sg)
{
    memcpy(th, theo_theta0, 3 * sizeof *th);
    memcpy(om, theo_omega0, 9 * sizeof *om);
    memcpy(sg, theo_sigma0, sizeof *sg);
    if (k < 3)
        th[k] += d;
    else if (k < 6)
        om[4 * (k - 3)] += d;
    else
        sg[0] += d;
}

/* OFV of a cold solve (fresh estimator, inner problems to a decrement of 1e-18) */
static double theo_cold_ofv(const popk_problem *p, int k, double d)
{
    double th[3], om[9], sg[1], f = NAN;
    popk_error err;
    theo_moved(k, d, th, om, sg);
    popk_estimator *cold = popk_estimator_create(p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cold);
    CU_ASSERT_EQUAL(popk_estimator_ofv(cold, POPK_METHOD_FOCEI, th, om, sg, &f, &err), POPK_OK);
    popk_estimator_free(cold);
    return f;
}

/* FOCE-I's outer finite differences about a committed point with kept Hessians take each
 * subject's term from its quadratic model about the committed EBE: one prediction per subject
 * for a theta or sigma step, none for an Omega step. The model's first derivative is the
 * exact one. Reference: Richardson-extrapolated central differences of cold solves with steps
 * 2e-3 and 1e-3 (truncation O(h^4); the cold OFVs are smooth to ~5e-9 only, the inner
 * problems' stopping rule, hence no smaller steps: with 1e-4 that noise alone is 5e-5 in the
 * gradient). The models' central differences with 1e-4, and their forward differences from
 * popk_estimator_taylor_base with the O(h) term taken off with the central second difference,
 * must match it to 1e-4 relative: what is left is the models' O(|d|^3) error in l, which is
 * O(h^3) but large where the EBE moves fast (theo's log V: d ~ 20 h in posterior SDs, 3e-5
 * relative). They are smooth (no noise from the inner problems): second differences with steps
 * 1e-4 and 1e-5 agree to 1e-4 relative (the rounding of the OFV at 1e-5; a cold solve's
 * noise would be of order 1). Their values match the cold ones to O(h^2). theo_sd,
 * each theta, omega variance and sigma. */
static void test_taylor_passes(void)
{
    popk_problem p;
    theo_problem(&p);
    p.pred = counting_pred;
    popk_error err;
    popk_estimator *est = popk_estimator_create(&p, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(est);
    double f0, base;
    CU_ASSERT_EQUAL(popk_estimator_taylor_base(est, &base), 0);
    popk_estimator_want_hessians(est, 1);
    CU_ASSERT_EQUAL_FATAL(popk_estimator_pass(est, POPK_METHOD_FOCEI, theo_theta0, theo_omega0,
                                              theo_sigma0, 1, &f0, &err),
                          POPK_OK);
    popk_estimator_want_hessians(est, 0);
    CU_ASSERT_EQUAL_FATAL(popk_estimator_taylor_base(est, &base), 1);
    /* at the committed point the models sit at their minima: the base is the OFV */
    CU_ASSERT_DOUBLE_EQUAL(base, f0, 1e-9);
    popk_estimator_outer_differences(est, 1);
    double worst_g = 0.0, worst_fwd = 0.0, worst_smooth = 0.0, worst_f = 0.0;
    for (int k = 0; k < 7; k++) {
        double g[2], curv[2], fwd = 0.0;
        for (int s = 0; s < 2; s++) {
            double h = s ? 1e-5 : 1e-4, fw[2];
            long preds = 0;
            for (int side = 0; side < 2; side++) {
                double th[3], om[9], sg[1];
                theo_moved(k, side ? h : -h, th, om, sg);
                counted_preds = 0;
                CU_ASSERT_EQUAL_FATAL(popk_estimator_pass(est, POPK_METHOD_FOCEI, th, om, sg, 0,
                                                          &fw[side], &err),
                                      POPK_OK);
                preds += counted_preds;
                if (!s)
                    worst_f = fmax(worst_f, fabs(fw[side] - theo_cold_ofv(&p, k, side ? h : -h)));
            }
            /* one prediction per subject and side for theta and sigma, none for Omega */
            CU_ASSERT_EQUAL(preds, k >= 3 && k < 6 ? 0 : 2 * theo.nsub);
            g[s] = (fw[1] - fw[0]) / (2 * h);
            curv[s] = (fw[1] - 2 * base + fw[0]) / (h * h);
            if (!s)
                fwd = (fw[1] - base) / h - 0.5 * h * (fw[1] - 2 * base + fw[0]) / (h * h);
        }
        double c1 = (theo_cold_ofv(&p, k, 1e-3) - theo_cold_ofv(&p, k, -1e-3)) / 2e-3;
        double c2 = (theo_cold_ofv(&p, k, 2e-3) - theo_cold_ofv(&p, k, -2e-3)) / 4e-3;
        double ref = (4.0 * c1 - c2) / 3.0, scale = 1.0 + fabs(ref);
        worst_g = fmax(worst_g, fabs(g[0] - ref) / scale);
        worst_fwd = fmax(worst_fwd, fabs(fwd - ref) / scale);
        worst_smooth = fmax(worst_smooth, fabs(curv[0] - curv[1]) / (1.0 + fabs(curv[0])));
    }
    printf("\n  FOCE-I quadratic models: gradient vs cold solves %.2e relative (forward %.2e), "
           "second differences 1e-4 vs 1e-5 %.2e, values %.2e\n", worst_g, worst_fwd,
           worst_smooth, worst_f);
    CU_ASSERT(worst_g < 1e-4);
    CU_ASSERT(worst_fwd < 1e-4);
    CU_ASSERT(worst_smooth < 1e-4);
    CU_ASSERT(worst_f < theo.nsub * 1e-7);
    /* a commit pass without Hessians, or replaced EBEs, retire the models */
    popk_estimator_outer_differences(est, 0);
    CU_ASSERT_EQUAL_FATAL(popk_estimator_pass(est, POPK_METHOD_FOCEI, theo_theta0, theo_omega0,
                                              theo_sigma0, 1, &f0, &err),
                          POPK_OK);
    CU_ASSERT_EQUAL(popk_estimator_taylor_base(est, &base), 0);
    popk_estimator_want_hessians(est, 1);
    CU_ASSERT_EQUAL_FATAL(popk_estimator_pass(est, POPK_METHOD_FOCEI, theo_theta0, theo_omega0,
                                              theo_sigma0, 1, &f0, &err),
                          POPK_OK);
    CU_ASSERT_EQUAL(popk_estimator_taylor_base(est, &base), 1);
    popk_estimator_set_eta(est, NULL);
    CU_ASSERT_EQUAL(popk_estimator_taylor_base(est, &base), 0);
    popk_estimator_free(est);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("estimate_objective", setup, teardown);
    CU_add_test(s, "wang_nonmem", test_wang_nonmem);
    CU_add_test(s, "wang_subjects", test_wang_subjects);
    CU_add_test(s, "joint_gradient", test_joint_gradient);
    CU_add_test(s, "laplace_hessian", test_laplace_hessian);
    CU_add_test(s, "ebe_stationary", test_ebe_stationary);
    CU_add_test(s, "threads_identical", test_threads_identical);
    CU_add_test(s, "errors", test_errors);
    CU_add_test(s, "failure_skips", test_failure_skips);
    CU_add_test(s, "taylor_passes", test_taylor_passes);
    CU_add_test(s, "posterior", test_posterior);
    CU_add_test(s, "foce_equals_focei_additive", test_foce_equals_focei_additive);
    CU_add_test(s, "recoverable_callback", test_recoverable_callback);
    CU_add_test(s, "warm_metric_passes", test_warm_metric_passes);
    return popk_test_run();
}
