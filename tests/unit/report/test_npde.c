/* Tests for report/npde: decorrelation against the exact multivariate normal answer, NPDE of
 * data simulated from the true model ~ N(0, 1) and uncorrelated (1,000 subjects), and the
 * Wang (2007) proportional case against NONMEM's NPD and NPDE and the exact first
 * observation. */
#include "common/popk_test.h"

#include <math.h>
#include <string.h>

#include "data/data.h"
#include "model/model.h"
#include "report/npde.h"
#include "simulate/simulate.h"
#include "util/rng.h"

/* 3x3 Cholesky written out, independent of the code under test. */
static void chol3(const double *S, double *L)
{
    memset(L, 0, 9 * sizeof(double));
    L[0] = sqrt(S[0]);
    L[3] = S[3] / L[0];
    L[6] = S[6] / L[0];
    L[4] = sqrt(S[4] - L[3] * L[3]);
    L[7] = (S[7] - L[6] * L[3]) / L[4];
    L[8] = sqrt(S[8] - L[6] * L[6] - L[7] * L[7]);
}

static void test_mvn_exact(void)
{
    const double mu[3] = {5, 3, 1}, S[9] = {4, 2.4, 1.0, 2.4, 2.25, 1.2, 1.0, 1.2, 1.0};
    const double y[3] = {6.1, 2.5, 1.6};
    double L[9];
    chol3(S, L);
    enum { K = 40000 };
    double *ys = malloc(sizeof(double) * 3 * K);
    popk_rng rng;
    popk_rng_init(&rng, 2024, 0);
    for (int k = 0; k < K; k++) {
        double z[3] = {popk_rng_normal(&rng), popk_rng_normal(&rng), popk_rng_normal(&rng)};
        for (int i = 0; i < 3; i++) {
            double v = mu[i];
            for (int j = 0; j <= i; j++)
                v += L[i * 3 + j] * z[j];
            ys[k * 3 + i] = v;
        }
    }
    double pd[3], npd[3], pde[3], npde[3];
    CU_ASSERT_EQUAL_FATAL(popk_npde_subject(3, y, K, ys, pd, npd, pde, npde), 0);
    /* Exact: z = L^-1 (y - mu) is N(0, I), so npde -> z; npd -> (y - mu)/sd. */
    double z[3];
    z[0] = (y[0] - mu[0]) / L[0];
    z[1] = (y[1] - mu[1] - L[3] * z[0]) / L[4];
    z[2] = (y[2] - mu[2] - L[6] * z[0] - L[7] * z[1]) / L[8];
    for (int i = 0; i < 3; i++) {
        /* Monte Carlo SD of a pde near 0.5 with K = 40000 is 0.0025 (0.006 on the z scale);
         * the estimated mean and covariance add as much again. */
        CU_ASSERT_DOUBLE_EQUAL(npde[i], z[i], 0.03);
        CU_ASSERT_DOUBLE_EQUAL(npd[i], (y[i] - mu[i]) / sqrt(S[i * 3 + i]), 0.03);
        CU_ASSERT_DOUBLE_EQUAL(pde[i], 0.5 * erfc(-z[i] / sqrt(2.0)), 0.01);
    }
    /* Extremes take the npde package's 1/(2K) convention. */
    double far[3] = {100, 100, 100};
    CU_ASSERT_EQUAL(popk_npde_subject(3, far, K, ys, pd, NULL, NULL, NULL), 0);
    CU_ASSERT_DOUBLE_EQUAL(pd[0], 1 - 0.5 / K, 1e-15);
    /* A degenerate direction (the third observation a copy of the first): NaN pde for it. */
    for (int k = 0; k < K; k++)
        ys[k * 3 + 2] = ys[k * 3];
    double y2[3] = {6.1, 2.5, 6.1};
    CU_ASSERT_EQUAL(popk_npde_subject(3, y2, K, ys, pd, npd, pde, npde), 0);
    CU_ASSERT(isnan(npde[2]) && isfinite(npde[0]) && isfinite(npde[1]) && isfinite(npd[2]));
    CU_ASSERT_DOUBLE_EQUAL(npde[0], z[0], 0.03);
    CU_ASSERT_EQUAL(popk_npde_subject(3, y, 1, ys, pd, npd, pde, npde), -1);
    free(ys);
}

/* A 1-cmt oral design of nsub subjects: 320 mg at 0, observations at fixed times. */
static popk_data *oral_design(int nsub)
{
    static const double times[] = {0.5, 1, 2, 4, 7, 12, 24};
    popk_data_builder *b = popk_data_builder_new(0, NULL, NULL);
    for (int s = 0; s < nsub; s++) {
        popk_record dose = {.time = 0, .dv = NAN, .amt = 320, .evid = 1, .mdv = 1, .cmt = 1};
        popk_data_builder_add(b, s + 1, &dose, NULL, NULL);
        for (int j = 0; j < 7; j++) {
            popk_record o = {.time = times[j], .dv = 0, .evid = 0, .mdv = 0, .cmt = 2};
            popk_data_builder_add(b, s + 1, &o, NULL, NULL);
        }
    }
    return popk_data_builder_finish(b);
}

static void test_true_model_normal(void)
{
    popk_error err;
    popk_model *m = popk_model_load(popk_test_src("models/theophylline.yaml"), &err);
    CU_ASSERT_FATAL(m != NULL);
    popk_data *d = oral_design(1000);
    popk_binding *b = popk_model_bind(m, d, &err);
    CU_ASSERT_FATAL(d != NULL && b != NULL);
    /* "Observed" data: one replicate from the model (its own seed). */
    popk_sim_design_opts so = {.seed = 77, .nrep = 1, .residual = 1};
    popk_sim_replicates *obs = popk_sim_design(m, d, b, &so, &err);
    CU_ASSERT_FATAL(obs != NULL);
    for (size_t r = 0; r < d->nrec; r++)
        if (d->rec[r].evid == 0)
            d->rec[r].dv = obs->dv[r];
    so.seed = 78;
    so.nrep = 300;
    popk_sim_replicates *sims = popk_sim_design(m, d, b, &so, &err);
    CU_ASSERT_FATAL(sims != NULL);
    double *out = malloc(sizeof(double) * d->nrec * 2);
    double *npd = out, *npde = out + d->nrec;
    CU_ASSERT_EQUAL(popk_npde_dataset(m, d, b, sims, NULL, npd, NULL, npde, &err), POPK_OK);
    double s1 = 0, s2 = 0;
    int n = 0;
    for (size_t r = 0; r < d->nrec; r++)
        if (isfinite(npde[r])) {
            s1 += npde[r];
            s2 += npde[r] * npde[r];
            n++;
        }
    CU_ASSERT_EQUAL(n, 7000);
    double mean = s1 / n, var = (s2 - n * mean * mean) / (n - 1);
    printf("\n  NPDE over %d observations: mean %.4f, variance %.4f\n", n, mean, var);
    CU_ASSERT(fabs(mean) < 0.1);
    CU_ASSERT(fabs(var - 1) < 0.15);
    /* Decorrelation: NPD of consecutive observations share the subject's eta and are
     * correlated; NPDE are not. */
    double c_npd = 0, c_npde = 0, v1 = 0, v2 = 0, w1 = 0, w2 = 0;
    for (size_t s = 0; s < d->nsub; s++) {
        size_t r = d->sub[s].first + 5, q = r + 1; /* 4 h and 7 h */
        c_npd += npd[r] * npd[q];
        v1 += npd[r] * npd[r];
        v2 += npd[q] * npd[q];
        c_npde += npde[r] * npde[q];
        w1 += npde[r] * npde[r];
        w2 += npde[q] * npde[q];
    }
    double r_npd = c_npd / sqrt(v1 * v2), r_npde = c_npde / sqrt(w1 * w2);
    printf("  correlation 4 h / 7 h: NPD %.3f, NPDE %.3f\n", r_npd, r_npde);
    CU_ASSERT(r_npd > 0.3);
    CU_ASSERT(fabs(r_npde) < 0.1);
    free(out);
    popk_sim_replicates_free(sims);
    popk_sim_replicates_free(obs);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
}

static void test_wang2007_nonmem(void)
{
    popk_error err;
    popk_model *m = popk_model_load(popk_test_src("models/wang2007_prop.yaml"), &err);
    popk_data *d = popk_data_read(popk_test_src("datasets/wang2007.csv"), &err);
    CU_ASSERT_FATAL(m != NULL && d != NULL);
    popk_binding *b = popk_model_bind(m, d, &err);
    popk_sim_design_opts so = {.seed = 5, .nrep = 20000, .residual = 1};
    popk_sim_replicates *sims = popk_sim_design(m, d, b, &so, &err);
    CU_ASSERT_FATAL(sims != NULL);
    double *out = malloc(sizeof(double) * d->nrec * 2);
    double *npd = out, *npde = out + d->nrec;
    CU_ASSERT_EQUAL(popk_npde_dataset(m, d, b, sims, NULL, npd, NULL, npde, &err), POPK_OK);
    FILE *f = fopen(popk_test_src("tests/reference/data/wang2007_nonmem_prop_focei.tsv"), "r");
    CU_ASSERT_FATAL(f != NULL);
    char line[4096];
    CU_ASSERT_FATAL(fgets(line, sizeof line, f) != NULL);
    /* Column of NPD in the header. */
    int col_npd = -1, col_npde = -1, col = 0;
    for (char *tok = strtok(line, "\t\r\n"); tok; tok = strtok(NULL, "\t\r\n"), col++) {
        if (!strcmp(tok, "NPD"))
            col_npd = col;
        if (!strcmp(tok, "NPDE"))
            col_npde = col;
    }
    CU_ASSERT_FATAL(col_npd >= 0 && col_npde >= 0);
    size_t r = 0;
    double maxdiff = 0, maxdiff_npde = 0;
    while (fgets(line, sizeof line, f) && r < d->nrec) {
        double v[32];
        int k = 0;
        for (char *tok = strtok(line, "\t\r\n"); tok && k < 32; tok = strtok(NULL, "\t\r\n"))
            v[k++] = atof(tok);
        CU_ASSERT_DOUBLE_EQUAL(v[0], d->sub[r / 2].id, 0);
        CU_ASSERT_DOUBLE_EQUAL(v[1], d->rec[r].time, 0);
        maxdiff = fmax(maxdiff, fabs(npd[r] - v[col_npd]));
        /* NONMEM's NPD is itself a simulation estimate (its default sample): 0.1 covers both
         * Monte Carlo errors at 3 SD. */
        CU_ASSERT_DOUBLE_EQUAL(npd[r], v[col_npd], 0.1);
        /* NONMEM's NPDE are multiples of 1/300 on the pde scale (its default sample of 300):
         * SD about 0.073 near 0 on the npde scale, so 0.25 is 3.4 SD. */
        maxdiff_npde = fmax(maxdiff_npde, fabs(npde[r] - v[col_npde]));
        CU_ASSERT_DOUBLE_EQUAL(npde[r], v[col_npde], 0.25);
        if (d->rec[r].time == 0) {
            /* At t = 0, y = 10 (1 + eps) exactly: N(10, 10), first in the Cholesky order. */
            double z = (d->rec[r].dv - 10) / sqrt(10.0);
            CU_ASSERT_DOUBLE_EQUAL(npde[r], z, 0.03);
            CU_ASSERT_DOUBLE_EQUAL(npd[r], z, 0.03);
        }
        r++;
    }
    printf("\n  largest difference from NONMEM over %zu records: NPD %.4f, NPDE %.4f\n", r,
           maxdiff, maxdiff_npde);
    CU_ASSERT_EQUAL(r, 20);
    fclose(f);
    free(out);
    popk_sim_replicates_free(sims);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("report_npde", NULL, NULL);
    CU_add_test(s, "decorrelation vs exact MVN", test_mvn_exact);
    CU_add_test(s, "true model: NPDE ~ N(0,1), 1000 subjects", test_true_model_normal);
    CU_add_test(s, "Wang 2007 vs NONMEM NPD", test_wang2007_nonmem);
    return popk_test_run();
}
