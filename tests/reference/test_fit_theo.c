/* Gates (b) and (d) on theo_sd: the FOCE-I fit against nlmixr2's published fit, the FO fit
 * (its own objective, and the FOCE-I objective at its estimates, which is what nlmixr2
 * reports), the same optimum from initial values perturbed by +-30%, and bit-identical
 * results with 1 and 2 threads (refdata README section 6(ii)). */
#include "test_fit.h"

#define THEO_MODEL "models/theophylline.yaml"
#define THEO_DATA "datasets/theo_sd.csv"

/* nlmixr2 FOCEi (nlmixr2qual theophylline__focei__t1.json): OFV 116.803781 */
static const double ref_ofv = 116.804, ref_theta[3] = {0.4645, 1.0120, 3.4600},
                    ref_add_sd = 0.6938, ref_omega[3] = {0.4046, 0.0688, 0.0192};

static double focei_ofv = NAN;

static void test_focei(void)
{
    fit_case c;
    CU_ASSERT_FATAL(fit_case_load(&c, THEO_MODEL, THEO_DATA, NULL, NULL, NULL, 2) == 0);
    popk_estimate_result *r = fit_case_run(&c, POPK_METHOD_FOCEI, 0, 2);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT_EQUAL(r->status, POPK_OK);
    CU_ASSERT(fabs(r->ofv - ref_ofv) <= 0.02);
    for (int k = 0; k < 3; k++) {
        CU_ASSERT(fabs(r->theta[k] / ref_theta[k] - 1.0) <= 0.01);
        CU_ASSERT(fabs(r->omega[k * 3 + k] / ref_omega[k] - 1.0) <= 0.03);
    }
    CU_ASSERT(fabs(r->sigma[0] / ref_add_sd - 1.0) <= 0.01);
    /* SEs: nlmixr2's "r,s" covariance gives 0.19789, 0.07555, 0.04293 for the thetas; the
     * refdata README suggests 10-50% between covariance variants, we hold 10% */
    static const double ref_se[3] = {0.19789, 0.07555, 0.04293};
    CU_ASSERT_EQUAL_FATAL(r->cov_status, POPK_OK);
    for (int k = 0; k < 3; k++)
        CU_ASSERT(fabs(r->se[k] / ref_se[k] - 1.0) <= 0.10);
    focei_ofv = r->ofv;
    popk_estimate_result_free(r);
    fit_case_free(&c);
}

/* nlmixr2's FO fit of theo_sd reports OFV 128.011: the FOCE-I objective evaluated at the FO
 * estimates. popk's FO result carries its own (smaller) FO objective; the FOCE-I objective at
 * those estimates must give nlmixr2's figure. */
static void test_fo(void)
{
    fit_case c;
    CU_ASSERT_FATAL(fit_case_load(&c, THEO_MODEL, THEO_DATA, NULL, NULL, NULL, 2) == 0);
    popk_estimate_result *r = fit_case_run(&c, POPK_METHOD_FO, 0, 2);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT_EQUAL(r->status, POPK_OK);
    double at = NAN, fo_again = NAN;
    popk_error err;
    CU_ASSERT_EQUAL_FATAL(popk_fit_ofv_at(c.fp, POPK_METHOD_FOCEI, r->theta, r->omega,
                                          r->sigma, &at, &err),
                          POPK_OK);
    CU_ASSERT(fabs(at - 128.011) <= 0.05);
    /* the FO objective is a different function: re-evaluating it at the estimates gives the
     * reported value, and it lies below the FOCE-I one on these data */
    CU_ASSERT_EQUAL(popk_fit_ofv_at(c.fp, POPK_METHOD_FO, r->theta, r->omega, r->sigma,
                                    &fo_again, &err),
                    POPK_OK);
    CU_ASSERT(fabs(fo_again - r->ofv) <= 1e-8 * fabs(r->ofv));
    CU_ASSERT(r->ofv < at - 10.0);
    popk_estimate_result_free(r);
    fit_case_free(&c);
}

static char tmpdir[256];

/* The same through 'popk fit --method fo': fit.yaml records both objectives. */
static void test_fo_cli(void)
{
    char out[512], path[600], mpath[4096], dpath[4096];
    snprintf(out, sizeof out, "%s/fo", tmpdir);
    snprintf(mpath, sizeof mpath, "%s", popk_test_src(THEO_MODEL));
    snprintf(dpath, sizeof dpath, "%s", popk_test_src(THEO_DATA));
    const char *args[] = {"fit", mpath, dpath, "--method", "fo", "--quiet", "--out", out, NULL};
    snprintf(path, sizeof path, "%s.stderr", out);
    CU_ASSERT_FATAL(run_popk(args, NULL, path) == 0);
    CU_ASSERT(file_size(path) == 0);
    snprintf(path, sizeof path, "%s/fit.yaml", out);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    char line[512];
    double ofv = NAN, at = NAN;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, " ofv: %lf", &ofv);
        sscanf(line, " ofv_focei_at_estimates: %lf", &at);
    }
    fclose(f);
    CU_ASSERT(fabs(at - 128.011) <= 0.05);
    CU_ASSERT(isfinite(ofv) && ofv < at - 10.0);
}

/* +-30% on every initial value, the sign alternating over the parameters (sign0 first). */
static void perturb(popk_model *m, void *user)
{
    double sign = *(const double *)user;
    for (int k = 0; k < m->ntheta; k++, sign = -sign)
        m->theta[k].init *= 1.0 + 0.3 * sign;
    for (int k = 0; k < m->neta; k++, sign = -sign)
        m->omega[k * m->neta + k] *= 1.0 + 0.3 * sign;
    for (int k = 0; k < m->nsigma; k++, sign = -sign)
        m->sigma[k].init *= 1.0 + 0.3 * sign;
}

static void test_perturbed(void)
{
    CU_ASSERT_FATAL(isfinite(focei_ofv));
    for (int p = 0; p < 2; p++) {
        double sign = p ? -1.0 : 1.0;
        fit_case c;
        CU_ASSERT_FATAL(fit_case_load(&c, THEO_MODEL, THEO_DATA, NULL, perturb, &sign, 2) ==
                        0);
        CU_ASSERT(fabs(c.m->theta[0].init - 0.45 * (1.0 + 0.3 * sign)) < 1e-12);
        popk_estimate_result *r = fit_case_run(&c, POPK_METHOD_FOCEI, 0, 2);
        CU_ASSERT_FATAL(r != NULL);
        if (fabs(r->ofv - focei_ofv) > 0.01)
            fprintf(stderr, "perturbed %+g: OFV %.5f vs %.5f\n", sign, r->ofv, focei_ofv);
        CU_ASSERT(fabs(r->ofv - focei_ofv) <= 0.01);
        popk_estimate_result_free(r);
        fit_case_free(&c);
    }
}

/* Per-individual terms are summed in subject order, so the thread count cannot change a
 * bit of the OFV, the estimates or the SEs. */
static void test_threads(void)
{
    popk_estimate_result *r[2];
    for (int t = 0; t < 2; t++) {
        fit_case c;
        CU_ASSERT_FATAL(fit_case_load(&c, THEO_MODEL, THEO_DATA, NULL, NULL, NULL, t + 1) == 0);
        r[t] = fit_case_run(&c, POPK_METHOD_FOCEI, 0, t + 1);
        fit_case_free(&c);
        CU_ASSERT_FATAL(r[t] != NULL);
    }
    CU_ASSERT(memcmp(&r[0]->ofv, &r[1]->ofv, sizeof(double)) == 0);
    CU_ASSERT_EQUAL_FATAL(r[0]->npar, r[1]->npar);
    CU_ASSERT(memcmp(r[0]->p, r[1]->p, sizeof(double) * (size_t)r[0]->npar) == 0);
    CU_ASSERT(memcmp(r[0]->eta, r[1]->eta, sizeof(double) * 12 * 3) == 0);
    CU_ASSERT_EQUAL(r[0]->iterations, r[1]->iterations);
    if (r[0]->cov_status == POPK_OK && r[1]->cov_status == POPK_OK)
        CU_ASSERT(memcmp(r[0]->se, r[1]->se, sizeof(double) * (size_t)r[0]->npar) == 0);
    popk_estimate_result_free(r[0]);
    popk_estimate_result_free(r[1]);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/popk-fit-theo-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("fit_theo_sd", NULL, NULL);
    CU_add_test(s, "FOCE-I fit vs nlmixr2", test_focei);
    CU_add_test(s, "FO fit: FOCE-I objective at the FO estimates = nlmixr2's 128.011", test_fo);
    CU_add_test(s, "popk fit --method fo records both objectives", test_fo_cli);
    CU_add_test(s, "+-30% initial values reach the same OFV", test_perturbed);
    CU_add_test(s, "1 and 2 threads: bit-identical", test_threads);
    int rc = popk_test_run();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
