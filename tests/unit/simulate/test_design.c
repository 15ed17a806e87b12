/* Tests for simulate/design.c: replicates of a dataset design. Drawn etas against Omega by
 * the likelihood-ratio (Wishart) test, residuals against each error model's variance by
 * chi-square, predictions against the 1-compartment oral closed form, thread-count
 * reproducibility, and the refused inputs. */
#include <math.h>
#include <string.h>

#include "common/popk_test.h"
#include "simulate/simulate.h"

/* 1-cmt oral; etas on KA and a correlated block on CL and V; one output per error model,
 * selected by DVID. */
static const char *model_text =
    "name: simtest\n"
    "theta: {tka: 1.2, tcl: 2.0, tv: 20.0}\n"
    "omega:\n"
    "  - eta_ka: 0.25\n"
    "  - block: [eta_cl, eta_v]\n"
    "    values: [0.09, 0.03, 0.04]\n"
    "sigma: {a: 0.3, b: 0.15, c: 0.7}\n"
    "individual:\n"
    "  ka: tka * exp(eta_ka)\n"
    "  cl: tcl * exp(eta_cl)\n"
    "  v: tv * exp(eta_v)\n"
    "linear: {CL: cl, V: v, KA: ka}\n"
    "observe:\n"
    "  c_add: {value: central / v, dvid: 1, error: {additive: a}}\n"
    "  c_prop: {value: central / v, dvid: 2, error: {proportional: b}}\n"
    "  c_comb: {value: central / v, dvid: 3, error: {combined_var: [a, b]}}\n"
    "  c_pow: {value: central / v, dvid: 4, error: {power: [b, c]}}\n"
    "  c_log: {value: central / v, dvid: 5, error: {log: b}}\n";

static const double obs_times[] = {0.5, 1, 2, 4, 8, 12, 24};
#define NTIMES 7
#define NDVID 5
#define DOSE 100.0

static popk_model *M;

static popk_data *make_design(int nsub)
{
    popk_error err;
    popk_data_builder *bld = popk_data_builder_new(0, NULL, &err);
    for (int i = 0; i < nsub; i++) {
        popk_record dose = {.time = 0, .dv = NAN, .amt = DOSE, .evid = 1, .mdv = 1, .cmt = 1};
        popk_data_builder_add(bld, i + 1, &dose, NULL, &err);
        for (int t = 0; t < NTIMES; t++)
            for (int k = 1; k <= NDVID; k++) {
                popk_record obs = {.time = obs_times[t], .dv = 0, .cmt = 2, .dvid = k};
                popk_data_builder_add(bld, i + 1, &obs, NULL, &err);
            }
    }
    return popk_data_builder_finish(bld);
}

static int setup(void)
{
    popk_error err;
    M = popk_model_parse("simtest.yaml", model_text, strlen(model_text), &err);
    if (!M)
        fprintf(stderr, "%s\n", err.message);
    return M ? 0 : 1;
}

static int teardown(void)
{
    popk_model_free(M);
    return 0;
}

/* Upper tail of the chi-square distribution with k degrees of freedom: Q(k/2, x/2), the
 * regularized upper incomplete gamma function (series below a + 1, continued fraction
 * above; Numerical Recipes' split). */
static double chi2_sf(double x, double k)
{
    double a = 0.5 * k, y = 0.5 * x;
    if (y <= 0)
        return 1.0;
    double lg = lgamma(a);
    if (y < a + 1) {
        double term = 1.0 / a, sum = term;
        for (int n = 1; n < 1000; n++) {
            term *= y / (a + n);
            sum += term;
            if (term < sum * 1e-16)
                break;
        }
        return 1.0 - sum * exp(-y + a * log(y) - lg);
    }
    double b = y + 1 - a, c = 1e300, d = 1 / b, h = d;
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300)
            d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300)
            c = 1e-300;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-16)
            break;
    }
    return exp(-y + a * log(y) - lg) * h;
}

static void test_chi2_sf(void)
{
    /* Closed forms: 2 df: exp(-x/2); 4 df: exp(-x/2)(1 + x/2); 1 df: erfc(sqrt(x/2)). */
    for (double x = 0.1; x < 40; x *= 1.7) {
        CU_ASSERT_DOUBLE_EQUAL(chi2_sf(x, 2), exp(-x / 2), 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(chi2_sf(x, 4), exp(-x / 2) * (1 + x / 2), 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(chi2_sf(x, 1), erfc(sqrt(x / 2)), 1e-12);
    }
}

/* The likelihood-ratio statistic of H0: Sigma = Omega for n zero-mean normal vectors with
 * scatter S = sum x x': n [tr(Omega^-1 S/n) - log det(Omega^-1 S/n) - p], asymptotically
 * chi-square with p(p+1)/2 degrees of freedom (Anderson, Multivariate Analysis, ch. 10).
 * Here p = 3 and Omega is block diagonal (1 + 2). */
static double omega_lrt(const double *S, double n, const double *omega)
{
    /* Omega^-1 of [[w00,0,0],[0,w11,w12],[0,w12,w22]] */
    double w00 = omega[0], w11 = omega[4], w12 = omega[5], w22 = omega[8];
    double det2 = w11 * w22 - w12 * w12;
    double inv[9] = {1 / w00, 0, 0, 0, w22 / det2, -w12 / det2, 0, -w12 / det2, w11 / det2};
    double A[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double s = 0;
            for (int k = 0; k < 3; k++)
                s += inv[i * 3 + k] * S[k * 3 + j] / n;
            A[i * 3 + j] = s;
        }
    double tr = A[0] + A[4] + A[8];
    double det = A[0] * (A[4] * A[8] - A[5] * A[7]) - A[1] * (A[3] * A[8] - A[5] * A[6]) +
                 A[2] * (A[3] * A[7] - A[4] * A[6]);
    return n * (tr - log(det) - 3);
}

static void test_omega_recovery(void)
{
    popk_data *d = make_design(50);
    popk_error err;
    popk_binding *b = popk_model_bind(M, d, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    popk_sim_design_opts o = {.seed = 20261125, .nrep = 200, .residual = 0};
    popk_sim_replicates *r = popk_sim_design(M, d, b, &o, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->neta, 3);
    double S[9] = {0};
    size_t n = (size_t)r->nrep * r->nsub;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++)
                S[j * 3 + k] += r->eta[i * 3 + j] * r->eta[i * 3 + k];
    double stat = omega_lrt(S, (double)n, M->omega);
    double p = chi2_sf(stat, 6);
    CU_ASSERT(p > 1e-3);
    /* The test has power: the same draws reject an Omega 10% too large. */
    double big[9];
    for (int i = 0; i < 9; i++)
        big[i] = 1.1 * M->omega[i];
    CU_ASSERT(chi2_sf(omega_lrt(S, (double)n, big), 6) < 1e-6);
    popk_sim_replicates_free(r);
    popk_binding_free(b);
    popk_data_free(d);
}

/* Closed form of the 1-cmt oral model for one subject's etas. */
static double conc(const double *eta, double t)
{
    double ka = 1.2 * exp(eta[0]), cl = 2.0 * exp(eta[1]), v = 20.0 * exp(eta[2]);
    double k = cl / v;
    return DOSE * ka / (v * (ka - k)) * (exp(-k * t) - exp(-ka * t));
}

/* Predictions against the closed form; residuals standardised by each error model's SD
 * (written out here independently of pred/obs.c) against N(0, 1): the sum of squares by
 * chi-square (normal approximation with n = 2000 per model), the mean by its SE. */
static void test_residuals(void)
{
    popk_data *d = make_design(20);
    popk_error err;
    popk_binding *b = popk_model_bind(M, d, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    popk_sim_design_opts o = {.seed = 7, .nrep = 15, .residual = 1};
    popk_sim_replicates *r = popk_sim_design(M, d, b, &o, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    const double a = 0.3, bs = 0.15, c = 0.7;
    double sz[NDVID + 1] = {0}, szz[NDVID + 1] = {0};
    int nz[NDVID + 1] = {0};
    double max_err = 0;
    for (int rep = 0; rep < r->nrep; rep++)
        for (size_t s = 0; s < r->nsub; s++) {
            const double *eta = r->eta + ((size_t)rep * r->nsub + s) * 3;
            for (size_t i = 0; i < d->sub[s].n; i++) {
                size_t g = d->sub[s].first + i;
                const popk_record *rec = &d->rec[g];
                double f = r->ipred[(size_t)rep * r->nrec + g];
                double y = r->dv[(size_t)rep * r->nrec + g];
                if (rec->evid != 0) {
                    CU_ASSERT(isnan(f) && isnan(y));
                    continue;
                }
                double exact = conc(eta, rec->time);
                max_err = fmax(max_err, fabs(f - exact) / exact);
                CU_ASSERT_DOUBLE_EQUAL(r->pred[g], conc((double[3]){0, 0, 0}, rec->time),
                                       1e-12 * r->pred[g]);
                double z;
                switch (rec->dvid) {
                case 1: z = (y - f) / a; break;
                case 2: z = (y - f) / (bs * f); break;
                case 3: z = (y - f) / sqrt(a * a + bs * bs * f * f); break;
                case 4: z = (y - f) / (bs * pow(f, c)); break;
                default: z = (log(y) - log(f)) / bs; break;
                }
                sz[rec->dvid] += z;
                szz[rec->dvid] += z * z;
                nz[rec->dvid]++;
            }
        }
    CU_ASSERT(max_err < 1e-12);
    for (int k = 1; k <= NDVID; k++) {
        CU_ASSERT_EQUAL(nz[k], 15 * 20 * NTIMES);
        double n = nz[k];
        /* chi-square(n) ~ N(n, 2n) at this n; 4 SDs is a 6e-5 two-sided tail */
        CU_ASSERT(fabs(szz[k] - n) / sqrt(2 * n) < 4);
        CU_ASSERT(fabs(sz[k]) / sqrt(n) < 4);
    }
    /* The chi-square check has power: a residual SD 10% off moves it by >> 4 SDs. */
    CU_ASSERT(fabs(szz[2] / 1.21 - nz[2]) / sqrt(2.0 * nz[2]) > 4);
    popk_sim_replicates_free(r);
    popk_binding_free(b);
    popk_data_free(d);
}

static void test_threads_reproducible(void)
{
    popk_data *d = make_design(37);
    popk_error err;
    popk_binding *b = popk_model_bind(M, d, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    popk_sim_design_opts o1 = {.seed = 99, .nrep = 3, .residual = 1, .nthreads = 1};
    popk_sim_design_opts o2 = o1;
    o2.nthreads = 2;
    popk_sim_replicates *r1 = popk_sim_design(M, d, b, &o1, &err);
    popk_sim_replicates *r2 = popk_sim_design(M, d, b, &o2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r2);
    size_t n = (size_t)r1->nrep * r1->nrec;
    CU_ASSERT(memcmp(r1->dv, r2->dv, n * sizeof(double)) == 0);
    CU_ASSERT(memcmp(r1->eta, r2->eta, (size_t)r1->nrep * r1->nsub * 3 * sizeof(double)) == 0);
    /* Replicate 2 of subject 5 is stream 2 * nsub + 5. */
    popk_rng g;
    popk_rng_init(&g, 99, 2 * 37 + 5);
    double L[9], eta[3];
    CU_ASSERT_EQUAL(popk_sim_cholesky(3, M->omega, L), 0);
    popk_rng_mvnormal(&g, 3, L, eta);
    CU_ASSERT(memcmp(eta, r1->eta + (2 * 37 + 5) * 3, sizeof eta) == 0);
    /* a different seed gives different draws */
    o1.seed = 100;
    popk_sim_replicates *r3 = popk_sim_design(M, d, b, &o1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r3);
    CU_ASSERT(r3->eta[0] != r1->eta[0]);
    popk_sim_replicates_free(r1);
    popk_sim_replicates_free(r2);
    popk_sim_replicates_free(r3);
    popk_binding_free(b);
    popk_data_free(d);
}

static void test_cholesky(void)
{
    double C[9] = {4, 2, 0, 2, 5, 0, 0, 0, 0}, L[9];
    CU_ASSERT_EQUAL(popk_sim_cholesky(3, C, L), 0);
    /* L L' = C, with the zero-variance eta's row zero */
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double s = 0;
            for (int k = 0; k < 3; k++)
                s += L[i * 3 + k] * L[j * 3 + k];
            CU_ASSERT_DOUBLE_EQUAL(s, C[i * 3 + j], 1e-14);
        }
    double bad[4] = {1, 2, 2, 1};
    CU_ASSERT_EQUAL(popk_sim_cholesky(2, bad, L), -1);
    double asym[4] = {1, 0.5, 0.2, 1};
    CU_ASSERT_EQUAL(popk_sim_cholesky(2, asym, L), -1);
}

static void test_bad_options(void)
{
    popk_data *d = make_design(2);
    popk_error err;
    popk_binding *b = popk_model_bind(M, d, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    popk_sim_design_opts o = {.seed = 1, .nrep = 0};
    CU_ASSERT_PTR_NULL(popk_sim_design(M, d, b, &o, &err));
    CU_ASSERT_EQUAL(err.code, POPK_ERR_ARG);
    double om[9] = {0.1, 0, 0, 0, 0.1, 0.5, 0, 0.5, 0.1};
    o.nrep = 1;
    o.omega = om;
    CU_ASSERT_PTR_NULL(popk_sim_design(M, d, b, &o, &err));
    CU_ASSERT(strstr(err.message, "positive semi-definite") != NULL);
    /* a thetas vector that makes the prediction fail names the subject */
    double th[3] = {1.2, NAN, 20};
    o.omega = NULL;
    o.theta = th;
    CU_ASSERT_PTR_NULL(popk_sim_design(M, d, b, &o, &err));
    CU_ASSERT(err.code != POPK_OK);
    popk_binding_free(b);
    popk_data_free(d);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("simulate_design", setup, teardown);
    CU_add_test(s, "chi-square tail", test_chi2_sf);
    CU_add_test(s, "cholesky", test_cholesky);
    CU_add_test(s, "omega recovery (LRT)", test_omega_recovery);
    CU_add_test(s, "residuals and predictions", test_residuals);
    CU_add_test(s, "thread-count reproducibility", test_threads_reproducible);
    CU_add_test(s, "bad options", test_bad_options);
    return popk_test_run();
}
