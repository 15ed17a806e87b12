/* Tests for report/vpc: coverage of observed percentiles by the simulated intervals on data
 * simulated from the model (ACOP Oral_1CPT design at NONMEM's estimates), bin statistics
 * recomputed independently, prediction correction, censoring below LLOQ, strata. */
#include "common/popk_test.h"

#include <math.h>
#include <string.h>

#include "data/data.h"
#include "model/model.h"
#include "report/stats.h"
#include "report/vpc.h"
#include "simulate/simulate.h"

static popk_model *m;
static popk_data *d;
static popk_binding *b;

/* The ACOP Oral_1CPT single-dose design with NONMEM 7.4.3's estimates (refdata N023). */
static int setup(void)
{
    popk_error err;
    m = popk_model_load(popk_test_src("models/acop/Oral_1CPT.yaml"), &err);
    popk_data *full = popk_data_read(popk_test_src("tests/reference/data/acop/Oral_1CPT.csv"),
                                     &err);
    if (!m || !full)
        return 1;
    d = popk_data_filter(full, "SD=1", 1, &err);
    popk_data_free(full);
    if (!d || !(b = popk_model_bind(m, d, &err)))
        return 1;
    const double theta[3] = {1.39014, 4.19282, -0.026632};
    const double omega[3] = {0.0642546, 0.0751482, 0.103790};
    for (int k = 0; k < 3; k++) {
        m->theta[k].init = theta[k];
        for (int j = 0; j < 3; j++)
            m->omega[k * 3 + j] = j == k ? omega[k] : 0.0;
    }
    m->sigma[0].init = 0.198611;
    return 0;
}

static int teardown(void)
{
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
    return 0;
}

/* Replace the observations of d by one replicate simulated with this seed. */
static void simulate_observed(uint64_t seed)
{
    popk_error err;
    popk_sim_design_opts so = {.seed = seed, .nrep = 1, .residual = 1};
    popk_sim_replicates *r = popk_sim_design(m, d, b, &so, &err);
    CU_ASSERT_FATAL(r != NULL);
    for (size_t i = 0; i < d->nrec; i++)
        if (d->rec[i].evid == 0 && d->rec[i].mdv == 0)
            d->rec[i].dv = r->dv[i];
    popk_sim_replicates_free(r);
}

/* Under the model each observed percentile falls inside its 90% interval with probability
 * 0.9; pooled over 10 datasets (300 comparisons, bins correlated) the fraction stays above
 * 0.85 unless something is wrong (24 datasets gave 0.904 for the VPC, 0.892 for the pcVPC). */
static void test_coverage(void)
{
    popk_error err;
    int inside = 0, total = 0, pc_inside = 0, pc_total = 0;
    for (uint64_t seed = 101; seed <= 110; seed++) {
        simulate_observed(seed);
        popk_vpc_options o;
        popk_vpc_options_default(&o);
        popk_sim_design_opts so = {.seed = 7, .nrep = 150, .residual = 1};
        popk_sim_replicates *sims = popk_sim_design(m, d, b, &so, &err);
        CU_ASSERT_FATAL(sims != NULL);
        popk_vpc *v = popk_vpc_compute(m, d, b, sims, &o, &err);
        CU_ASSERT_FATAL(v != NULL);
        int n;
        double c = popk_vpc_coverage(v, &n);
        inside += (int)lround(c * n);
        total += n;
        CU_ASSERT_EQUAL(n, 3 * v->strata[0].nbins);
        o.pred_corrected = 1;
        popk_vpc *pc = popk_vpc_compute(m, d, b, sims, &o, &err);
        CU_ASSERT_FATAL(pc != NULL);
        double cpc = popk_vpc_coverage(pc, &n);
        pc_inside += (int)lround(cpc * n);
        pc_total += n;
        printf("\n  dataset %llu: %d bins, VPC coverage %.3f, pcVPC %.3f",
               (unsigned long long)seed, v->strata[0].nbins, c, cpc);
        popk_vpc_free(v);
        popk_vpc_free(pc);
        popk_sim_replicates_free(sims);
    }
    printf("\n  pooled: VPC %d/%d, pcVPC %d/%d\n", inside, total, pc_inside, pc_total);
    CU_ASSERT(inside >= 0.85 * total);
    CU_ASSERT(pc_inside >= 0.85 * pc_total);
}

static int cmp(const void *a, const void *c)
{
    double x = *(const double *)a, y = *(const double *)c;
    return (x > y) - (x < y);
}

/* Type-7 quantile written out again for the check. */
static double q7(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    double h = (n - 1) * p;
    int lo = (int)floor(h);
    return lo + 1 < n ? v[lo] + (h - lo) * (v[lo + 1] - v[lo]) : v[n - 1];
}

static void test_bin_statistics(void)
{
    popk_error err;
    simulate_observed(201);
    popk_sim_design_opts so = {.seed = 9, .nrep = 50, .residual = 1};
    popk_sim_replicates *sims = popk_sim_design(m, d, b, &so, &err);
    CU_ASSERT_FATAL(sims != NULL);
    popk_vpc_options o;
    popk_vpc_options_default(&o);
    o.nbins = 6;
    popk_vpc *v = popk_vpc_compute(m, d, b, sims, &o, &err);
    o.pred_corrected = 1;
    popk_vpc *pc = popk_vpc_compute(m, d, b, sims, &o, &err);
    CU_ASSERT_FATAL(v != NULL && pc != NULL);
    CU_ASSERT_EQUAL(v->nstrata, 1);
    const popk_vpc_stratum *S = &v->strata[0];
    CU_ASSERT_EQUAL(S->nbins, 6);
    double *vals = malloc(sizeof(double) * d->nrec), *preds = malloc(sizeof(double) * d->nrec);
    double *reps = malloc(sizeof(double) * 50);
    size_t total = 0;
    for (int k = 0; k < S->nbins; k++) {
        const popk_vpc_bin *B = &S->bin[k];
        int n = 0;
        for (size_t r = 0; r < d->nrec; r++) {
            const popk_record *rec = &d->rec[r];
            if (rec->evid || rec->mdv)
                continue;
            int in = rec->time >= B->t_lo && (rec->time < B->t_hi || k == S->nbins - 1);
            if (in && (k == 0 || rec->time >= B->t_lo))
                vals[n++] = rec->dv;
        }
        CU_ASSERT_EQUAL(n, B->nobs);
        total += (size_t)n;
        CU_ASSERT_DOUBLE_EQUAL(B->obs[0], q7(vals, n, 0.05), 1e-9 * fabs(B->obs[0]));
        CU_ASSERT_DOUBLE_EQUAL(B->obs[1], q7(vals, n, 0.5), 1e-9 * fabs(B->obs[1]));
        CU_ASSERT_DOUBLE_EQUAL(B->obs[2], q7(vals, n, 0.95), 1e-9 * fabs(B->obs[2]));
        /* Simulated median: each replicate's median in the bin, then its 5/50/95%. */
        for (int rep = 0; rep < 50; rep++) {
            int c = 0;
            for (size_t r = 0; r < d->nrec; r++) {
                const popk_record *rec = &d->rec[r];
                if (!rec->evid && !rec->mdv && rec->time >= B->t_lo &&
                    (rec->time < B->t_hi || k == S->nbins - 1))
                    vals[c++] = sims->dv[(size_t)rep * d->nrec + r];
            }
            reps[rep] = q7(vals, c, 0.5);
        }
        CU_ASSERT_DOUBLE_EQUAL(B->sim[1][0], q7(reps, 50, 0.05), 1e-9 * fabs(B->sim[1][0]));
        CU_ASSERT_DOUBLE_EQUAL(B->sim[1][1], q7(reps, 50, 0.5), 1e-9 * fabs(B->sim[1][1]));
        CU_ASSERT_DOUBLE_EQUAL(B->sim[1][2], q7(reps, 50, 0.95), 1e-9 * fabs(B->sim[1][2]));
        /* Prediction correction: DV * median(PRED in bin) / PRED. */
        int np = 0;
        for (size_t r = 0; r < d->nrec; r++) {
            const popk_record *rec = &d->rec[r];
            if (!rec->evid && !rec->mdv && rec->time >= B->t_lo &&
                (rec->time < B->t_hi || k == S->nbins - 1))
                preds[np++] = sims->pred[r];
        }
        double pbin = q7(preds, np, 0.5);
        int c = 0;
        for (size_t r = 0; r < d->nrec; r++) {
            const popk_record *rec = &d->rec[r];
            if (!rec->evid && !rec->mdv && rec->time >= B->t_lo &&
                (rec->time < B->t_hi || k == S->nbins - 1))
                vals[c++] = rec->dv * pbin / sims->pred[r];
        }
        CU_ASSERT_DOUBLE_EQUAL(pc->strata[0].bin[k].obs[1], q7(vals, c, 0.5),
                               1e-9 * fabs(pc->strata[0].bin[k].obs[1]));
    }
    CU_ASSERT_EQUAL(total, S->nobs);
    free(vals), free(preds), free(reps);
    popk_vpc_free(v);
    popk_vpc_free(pc);
    popk_sim_replicates_free(sims);
}

static void test_blq_and_strata(void)
{
    popk_error err;
    simulate_observed(301);
    popk_vpc_options o;
    popk_vpc_options_default(&o);
    o.nsim = 100;
    o.lloq = 20.0;
    popk_vpc *v = popk_vpc_run(m, d, b, &o, &err);
    CU_ASSERT_FATAL(v != NULL);
    CU_ASSERT(v->has_lloq);
    const popk_vpc_stratum *S = &v->strata[0];
    int censored_seen = 0;
    for (int k = 0; k < S->nbins; k++) {
        const popk_vpc_bin *B = &S->bin[k];
        int n = 0, below = 0;
        for (size_t r = 0; r < d->nrec; r++) {
            const popk_record *rec = &d->rec[r];
            if (!rec->evid && !rec->mdv && rec->time >= B->t_lo &&
                (rec->time < B->t_hi || k == S->nbins - 1)) {
                n++;
                below += rec->dv < 20.0;
            }
        }
        CU_ASSERT_DOUBLE_EQUAL(B->blq_obs, (double)below / n, 1e-12);
        /* The 5th percentile is censored exactly when more than ~5% of the bin is BLQ. */
        if (below > 0.05 * (n - 1) + 1)
            CU_ASSERT(isnan(B->obs[0]));
        if (below == 0)
            CU_ASSERT(isfinite(B->obs[0]) && B->obs[0] >= 20.0);
        censored_seen += isnan(B->obs[0]);
        CU_ASSERT(B->blq_sim[0] <= B->blq_sim[1] && B->blq_sim[1] <= B->blq_sim[2]);
    }
    CU_ASSERT(censored_seen > 0);
    popk_vpc_free(v);

    o.lloq = NAN;
    o.stratify = "DOSE";
    v = popk_vpc_run(m, d, b, &o, &err);
    CU_ASSERT_FATAL(v != NULL);
    CU_ASSERT_EQUAL(v->nstrata, 4);
    size_t n = 0;
    for (int s = 0; s < v->nstrata; s++)
        n += v->strata[s].nobs;
    CU_ASSERT_EQUAL(n, 2273);
    CU_ASSERT_STRING_EQUAL(v->strata[0].label, "cp, DOSE = 10000");
    CU_ASSERT_STRING_EQUAL(v->strata[3].label, "cp, DOSE = 120000");
    popk_vpc_free(v);
    o.stratify = "NOSUCH";
    CU_ASSERT(popk_vpc_run(m, d, b, &o, &err) == NULL);
    CU_ASSERT(strstr(err.message, "NOSUCH") != NULL);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("report_vpc", setup, teardown);
    CU_add_test(s, "coverage on data simulated from the model", test_coverage);
    CU_add_test(s, "bin statistics recomputed", test_bin_statistics);
    CU_add_test(s, "BLQ and strata", test_blq_and_strata);
    return popk_test_run();
}
