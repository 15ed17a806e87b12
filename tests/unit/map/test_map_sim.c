/* Simulation checks of map/ with the vancomycin model: 200 virtual patients with known etas
 * (simulated here with the prediction engine and util/rng), 2-3 levels each. MAP clearance
 * must beat the population prior, its 90% credible intervals must cover the truth about 90%
 * of the time, and the recommended regimens, judged with the true clearance, must reach the
 * AUC24 target more often than a standard regimen. */
#include <math.h>
#include <string.h>

#include "common/popk_test.h"
#include "map/map.h"
#include "pred/pred.h"
#include "util/rng.h"

#define NPAT 200

static popk_record rec_of(double time, double amt, int evid)
{
    popk_record r = {0};
    r.time = time;
    r.amt = amt;
    r.rate = amt > 0 ? amt : 0; /* 1 h infusions */
    r.evid = evid;
    r.mdv = evid != 0;
    r.dv = evid == 0 ? 0.0 : NAN;
    r.cmt = 1;
    return r;
}

/* Both models have cl = 4.5 (CRCL/120)^0.8 exp(eta_cl) (eta 0) and V proportional to WT;
 * error var = add^2 + (prop f)^2. strict: the thresholds. */
static void run_case(popk_model *m, double add, double prop, int strict)
{
    popk_error err;
    CU_ASSERT_FATAL(m != NULL);
    CU_ASSERT_FATAL(!strcmp(m->eta_name[0], "eta_cl"));
    popk_pred_ws *ws = popk_pred_ws_new(m, &err);
    const char *names[] = {"CRCL", "WT", "DIAL", "CENS"};
    double se_map = 0, se_prior = 0;
    int covered = 0, covered_laplace = 0, rec_hit = 0, std_hit = 0;
    for (int i = 0; i < NPAT; i++) {
        popk_rng rng;
        popk_rng_init(&rng, 7, (uint64_t)i);
        double cov[4] = {30 + 100 * popk_rng_uniform(&rng), 50 + 60 * popk_rng_uniform(&rng), 0, 0};
        double eta[3] = {0};
        for (int k = 0; k < m->neta; k++)
            eta[k] = sqrt(m->omega[k * m->neta + k]) * popk_rng_normal(&rng);
        double cl_true = 4.5 * pow(cov[0] / 120, 0.8) * exp(eta[0]);
        double cl_prior = 4.5 * pow(cov[0] / 120, 0.8);
        /* design: 1000 mg q12h, levels at steady state on day 3: one hour after the end of
         * the sixth dose and the trough before the next (+ one mid-interval for half of them) */
        double times[] = {62, 71.5, 66};
        int nobs = 2 + i % 2;
        popk_record design[9];
        int n = 0;
        for (int k = 0; k < 5; k++)
            design[n++] = rec_of(12.0 * k, 1000, 1);
        design[n++] = rec_of(60, 1000, 1);
        design[n++] = rec_of(times[0], 0, 0);
        if (nobs == 3)
            design[n++] = rec_of(times[2], 0, 0);
        design[n++] = rec_of(times[1], 0, 0);
        popk_data_builder *bld = popk_data_builder_new(4, names, &err);
        for (int r = 0; r < n; r++)
            popk_data_builder_add(bld, i + 1, &design[r], cov, &err);
        popk_data *d = popk_data_builder_finish(bld);
        popk_binding *b = popk_model_bind(m, d, &err);
        CU_ASSERT_FATAL(b != NULL);
        popk_pred_result res;
        double theta[8];
        for (int k = 0; k < m->ntheta; k++)
            theta[k] = m->theta[k].init;
        CU_ASSERT_FATAL(popk_pred_subject(ws, m, d, b, 0, theta, eta, NULL, &res, &err) == POPK_OK);
        for (size_t r = 0; r < d->nrec; r++) {
            if (d->rec[r].evid != 0)
                continue;
            double f = res.out[r * (size_t)res.nout];
            double sd = sqrt(add * add + prop * prop * f * f);
            double y = f + sd * popk_rng_normal(&rng);
            if (y < 1.0) { /* the lab reports < 1 mg/L */
                y = 1.0;
                d->cov[3].values[r] = 1;
            }
            d->rec[r].dv = y;
        }
        popk_binding_free(b);
        popk_map_options o;
        popk_map_options_default(&o);
        /* every eighth patient: PTA from the 200 posterior draws; the others: the delta method
         * (one prediction per regimen, keeps the suite fast) */
        o.nsamples = 200;
        o.pta = i % 8 ? POPK_PTA_DELTA : POPK_PTA_SAMPLE;
        o.seed = (unsigned long long)i;
        popk_map *mp = popk_map_new(m, d, &o, &err);
        CU_ASSERT_FATAL(mp != NULL);
        double cl_map = popk_map_params(mp)[0].value;
        CU_ASSERT(fabs(popk_map_params(mp)[0].typical - cl_prior) < 1e-9 * cl_prior);
        se_map += (cl_map - cl_true) * (cl_map - cl_true);
        se_prior += (cl_prior - cl_true) * (cl_prior - cl_true);
        /* the 90% credible interval from the posterior draws; and the Laplace one */
        covered += cl_true >= popk_map_params(mp)[0].lo90 && cl_true <= popk_map_params(mp)[0].hi90;
        double e0 = popk_map_eta(mp)[0], sd0 = sqrt(popk_map_eta_cov(mp)[0]);
        double lo = cl_prior * exp(e0 - 1.6448536 * sd0), hi = cl_prior * exp(e0 + 1.6448536 * sd0);
        covered_laplace += cl_true >= lo && cl_true <= hi;
        /* (c) recommendation, judged by the true AUC24 = daily dose / CL */
        popk_map_target t = {POPK_TARGET_AUC24, 400, 600, 0, 0};
        double doses[] = {500, 750, 1000, 1250, 1500}, ii[] = {8, 12, 24}, dur[] = {1};
        int nr;
        popk_map_regimen *rg = popk_map_recommend(mp, &t, 5, doses, 3, ii, 1, dur, &nr, &err);
        CU_ASSERT_FATAL(rg != NULL);
        double auc_rec = rg[0].dose * 24 / rg[0].interval / cl_true, auc_std = 2000 / cl_true;
        rec_hit += auc_rec >= 400 && auc_rec <= 600;
        std_hit += auc_std >= 400 && auc_std <= 600;
        free(rg);
        popk_map_free(mp);
        popk_data_free(d);
    }
    double rmse_map = sqrt(se_map / NPAT), rmse_prior = sqrt(se_prior / NPAT);
    printf("\n    CL RMSE: MAP %.3f L/h, prior %.3f L/h (%.0f%% lower); 90%% CI coverage %d/%d "
           "(Laplace approximation alone: %d)\n", rmse_map, rmse_prior,
           100 * (1 - rmse_map / rmse_prior), covered, NPAT, covered_laplace);
    printf("    AUC24 in 400-600 with the true CL: recommended %.1f%%, standard 1000 mg q12h "
           "%.1f%%\n", 100.0 * rec_hit / NPAT, 100.0 * std_hit / NPAT);
    if (strict) {
        CU_ASSERT(rmse_map <= 0.6 * rmse_prior);
        CU_ASSERT(covered >= 0.85 * NPAT && covered <= 0.95 * NPAT);
        CU_ASSERT(rec_hit >= std_hit + NPAT / 5);
    } else {
        CU_ASSERT(rmse_map < rmse_prior);
        CU_ASSERT(rec_hit > std_hit);
    }
    popk_pred_ws_free(ws);
    popk_model_free(m);
}

static const char one_cmt[] =
    "name: onecmt\n"
    "theta:\n  tcl: {init: 4.5}\n  tv: {init: 60}\n"
    "omega:\n  eta_cl: 0.147\n  eta_v: 0.1\n"
    "sigma:\n  prop_sd: {init: 0.15, lower: 0}\n"
    "covariates:\n  CRCL: {unit: mL/min, reference: 120}\n  WT: {unit: kg, reference: 70}\n"
    "individual:\n  cl: tcl * (min(CRCL, 150) / 120)^0.8 * exp(eta_cl)\n"
    "  v: tv * WT / 70 * exp(eta_v)\n"
    "linear:\n  CL: cl\n  V: v\n"
    "observe:\n  cp:\n    value: central / v\n    cmt: central\n"
    "    error: {proportional: prop_sd}\n";

/* 1-compartment IV with 15% proportional error: the thresholds hold. */
static void test_one_compartment(void)
{
    popk_error err;
    run_case(popk_model_parse("onecmt.yaml", one_cmt, sizeof one_cmt - 1, &err), 0, 0.15, 1);
}

/* Goti 2018 vancomycin (2-cmt, additive 3.4 mg/L + 22.7%): levels are much less informative;
 * the numbers are printed, and MAP and the recommendations must still beat the prior. */
static void test_vancomycin(void)
{
    popk_error err;
    run_case(popk_model_load(popk_test_src("models/vancomycin.yaml"), &err), 3.4, 0.227, 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("map_sim", NULL, NULL);
    CU_add_test(s, "200 virtual patients, 1-cmt IV", test_one_compartment);
    CU_add_test(s, "200 virtual patients, vancomycin (Goti 2018)", test_vancomycin);
    return popk_test_run();
}
