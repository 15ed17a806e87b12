/* Tests for map/: EBEs equal to the estimator's on theo_sd, M3 mode and covariance against a
 * brute-force optimum of an independently written objective, a-priori behaviour, and the
 * warnings and errors of bad patient files. */
#include "map/map.h"

#include <math.h>
#include <string.h>

#include "common/popk_test.h"
#include "estimate/estimate.h"
#include "fit/fit.h"

/* (a) popk fit on theo_sd, then MAP for each subject with the fitted parameters: the same
 * EBEs as the fit reports and as a full-population posthoc at those parameters. */
static void test_theo_ebes(void)
{
    popk_error err;
    popk_model *m = popk_model_load(popk_test_src("models/theophylline.yaml"), &err);
    popk_data *d = popk_data_read(popk_test_src("datasets/theo_sd.csv"), &err);
    CU_ASSERT_FATAL(m && d);
    popk_binding *b = popk_model_bind(m, d, &err);
    popk_fit_problem *fp = popk_fit_problem_new(m, d, b, 1, &err);
    CU_ASSERT_FATAL(b && fp);
    popk_estimate_options opt;
    popk_estimate_options_default(&opt);
    opt.covariance = POPK_COV_NONE;
    opt.nthreads = 1;
    popk_estimate_result *res = popk_estimate(popk_fit_problem_get(fp), &opt, &err);
    CU_ASSERT_FATAL(res != NULL);
    CU_ASSERT(fabs(res->ofv - 116.8034) < 1e-3);
    popk_estimator *est = popk_estimator_create(popk_fit_problem_get(fp), 1, &err);
    CU_ASSERT_FATAL(est != NULL);
    CU_ASSERT_EQUAL_FATAL(popk_estimator_posthoc(est, 1, res->theta, res->omega, res->sigma,
                                                 &err), POPK_OK);
    const double *post = popk_estimator_eta(est), *post_cov = popk_estimator_eta_cov(est);
    for (int k = 0; k < m->ntheta; k++)
        m->theta[k].init = res->theta[k];
    memcpy(m->omega, res->omega, sizeof(double) * 9);
    m->sigma[0].init = res->sigma[0];
    double worst = 0, worst_post = 0, worst_cov = 0;
    for (size_t i = 0; i < d->nsub; i++) {
        popk_map_options mo;
        popk_map_options_default(&mo);
        mo.id = d->sub[i].id;
        mo.nsamples = 50;
        popk_map *mp = popk_map_new(m, d, &mo, &err);
        CU_ASSERT_FATAL(mp != NULL);
        CU_ASSERT(popk_map_converged(mp));
        for (int k = 0; k < 3; k++) {
            worst = fmax(worst, fabs(popk_map_eta(mp)[k] - res->eta[i * 3 + k]));
            worst_post = fmax(worst_post, fabs(popk_map_eta(mp)[k] - post[i * 3 + k]));
        }
        for (int k = 0; k < 9; k++)
            worst_cov = fmax(worst_cov, fabs(popk_map_eta_cov(mp)[k] - post_cov[i * 9 + k]));
        popk_map_free(mp);
    }
    printf("\n    theo_sd: max |eta_map - eta_fit| = %.2e, vs posthoc %.2e, cov %.2e\n", worst,
           worst_post, worst_cov);
    CU_ASSERT(worst < 1e-6);
    CU_ASSERT(worst_post < 1e-9);
    CU_ASSERT(worst_cov < 1e-9);
    popk_estimator_free(est);
    popk_estimate_result_free(res);
    popk_fit_problem_free(fp);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
}

/* A 1-compartment IV bolus model whose objective is written out below independently. */
static const char bolus_model[] =
    "name: bolus\n"
    "theta:\n  tcl: {init: 2}\n  tv: {init: 20}\n"
    "omega:\n  eta_cl: 0.09\n  eta_v: 0.04\n"
    "sigma:\n  add_sd: {init: 0.3, lower: 0}\n  prop_sd: {init: 0.1, lower: 0}\n"
    "individual:\n  cl: tcl * exp(eta_cl)\n  v: tv * exp(eta_v)\n"
    "linear:\n  CL: cl\n  V: v\n"
    "observe:\n  cp:\n    value: central / v\n    cmt: central\n"
    "    error: {combined_var: [add_sd, prop_sd]}\n";

static const double obs_t[] = {1, 4, 16}, obs_y[] = {4.1, 3.2, 0.8};

/* l(eta) with the third observation censored at 0.8 (M3). */
static double bolus_objective(const double *e)
{
    double cl = 2 * exp(e[0]), v = 20 * exp(e[1]), l = 0;
    for (int j = 0; j < 3; j++) {
        double f = 100 / v * exp(-cl / v * obs_t[j]);
        double var = 0.3 * 0.3 + 0.1 * 0.1 * f * f;
        if (j < 2)
            l += (obs_y[j] - f) * (obs_y[j] - f) / var + log(var);
        else
            l += -2 * log(0.5 * erfc(-(obs_y[j] - f) / sqrt(var) / sqrt(2.0)));
    }
    return l + e[0] * e[0] / 0.09 + e[1] * e[1] / 0.04 + log(0.09 * 0.04);
}

static void test_m3_bruteforce(void)
{
    popk_error err;
    popk_model *m = popk_model_parse("bolus.yaml", bolus_model, sizeof bolus_model - 1, &err);
    CU_ASSERT_FATAL(m != NULL);
    static const char csv[] = "ID,TIME,DV,AMT,EVID,CMT,CENS\n"
                              "1,0,.,100,1,1,0\n1,1,4.1,.,0,1,0\n1,4,3.2,.,0,1,0\n"
                              "1,16,0.8,.,0,1,1\n";
    popk_data *d = popk_data_parse("p.csv", csv, sizeof csv - 1, &err);
    CU_ASSERT_FATAL(d != NULL);
    popk_map *mp = popk_map_new(m, d, NULL, &err);
    CU_ASSERT_FATAL(mp != NULL);
    CU_ASSERT(popk_map_used_m3(mp));
    CU_ASSERT(popk_map_converged(mp));
    /* brute force: grid, then compass search down to 1e-10 */
    double best[2] = {0, 0}, lb = bolus_objective(best);
    for (double a = -1.5; a <= 1.5; a += 0.01)
        for (double c = -1; c <= 1; c += 0.01) {
            double e[2] = {a, c}, l = bolus_objective(e);
            if (l < lb) {
                lb = l;
                best[0] = a;
                best[1] = c;
            }
        }
    for (double h = 0.01; h > 1e-10;) {
        int moved = 0;
        for (int k = 0; k < 4; k++) {
            double e[2] = {best[0], best[1]};
            e[k / 2] += k % 2 ? -h : h;
            double l = bolus_objective(e);
            if (l < lb) {
                lb = l;
                best[0] = e[0];
                best[1] = e[1];
                moved = 1;
            }
        }
        if (!moved)
            h *= 0.5;
    }
    const double *eta = popk_map_eta(mp);
    printf("\n    M3: map (%.8f, %.8f) brute force (%.8f, %.8f); l %.10f vs %.10f\n", eta[0],
           eta[1], best[0], best[1], popk_map_objective(mp), lb);
    CU_ASSERT(fabs(eta[0] - best[0]) < 1e-5 && fabs(eta[1] - best[1]) < 1e-5);
    CU_ASSERT(fabs(popk_map_objective(mp) - lb) < 1e-8);
    /* covariance (H/2)^-1 with H from second differences of the independent objective */
    double h = 1e-4, H[4];
    for (int a = 0; a < 2; a++)
        for (int c = 0; c < 2; c++) {
            double e[2], s = 0;
            for (int sa = -1; sa <= 1; sa += 2)
                for (int sc = -1; sc <= 1; sc += 2) {
                    e[0] = best[0];
                    e[1] = best[1];
                    e[a] += sa * h;
                    e[c] += sc * h;
                    s += sa * sc * bolus_objective(e);
                }
            H[a * 2 + c] = s / (4 * h * h);
        }
    double det = H[0] * H[3] - H[1] * H[2];
    double cov[4] = {2 * H[3] / det, -2 * H[1] / det, -2 * H[2] / det, 2 * H[0] / det};
    const double *pc = popk_map_eta_cov(mp);
    for (int k = 0; k < 4; k++)
        CU_ASSERT(fabs(pc[k] - cov[k]) < 1e-4 * fabs(cov[0]));
    /* the individual parameter is cl = 2 exp(eta_cl) at the mode */
    const popk_map_param *p = popk_map_params(mp);
    CU_ASSERT_STRING_EQUAL(p[0].name, "cl");
    CU_ASSERT(fabs(p[0].value - 2 * exp(eta[0])) < 1e-12);
    CU_ASSERT(fabs(p[0].typical - 2) < 1e-12);
    CU_ASSERT(isnan(popk_map_observations(mp)[2].iwres));
    CU_ASSERT(popk_map_observations(mp)[2].lloq == 0.8);
    popk_map_free(mp);
    popk_data_free(d);
    popk_model_free(m);
}

/* No levels: the posterior is the prior (eta 0, covariance omega). */
static void test_a_priori(void)
{
    popk_error err;
    popk_model *m = popk_model_parse("bolus.yaml", bolus_model, sizeof bolus_model - 1, &err);
    static const char csv[] = "ID,TIME,DV,AMT,EVID,CMT\n1,0,.,100,1,1\n";
    popk_data *d = popk_data_parse("p.csv", csv, sizeof csv - 1, &err);
    CU_ASSERT_FATAL(m && d);
    popk_map *mp = popk_map_new(m, d, NULL, &err);
    CU_ASSERT_FATAL(mp != NULL);
    CU_ASSERT(fabs(popk_map_eta(mp)[0]) < 1e-12 && fabs(popk_map_eta(mp)[1]) < 1e-12);
    const double *c = popk_map_eta_cov(mp);
    CU_ASSERT(fabs(c[0] - 0.09) < 1e-8 && fabs(c[3] - 0.04) < 1e-8 && fabs(c[1]) < 1e-8);
    /* steady state AUC over the interval is dose / CL for a linear model */
    popk_map_target t;
    CU_ASSERT_EQUAL(popk_map_target_parse("auc24=400-600", &t), 0);
    double doses[] = {500, 1000}, ii[] = {12, 24};
    int n = 0;
    popk_map_regimen *r = popk_map_recommend(mp, &t, 2, doses, 2, ii, 0, NULL, &n, &err);
    CU_ASSERT_FATAL(r != NULL && n == 4);
    for (int k = 0; k < n; k++)
        CU_ASSERT(fabs(r[k].auc24 - r[k].dose * 24 / r[k].interval / 2) < 1e-6 * r[k].auc24);
    /* the median of the posterior AUC for the top regimen: dose/CL with CL ~ logN(log 2, .09):
     * P(400 <= AUC24 <= 600) is known in closed form */
    double daily = r[0].dose * 24 / r[0].interval, sd = 0.3;
    double exact = 0.5 * erfc(-log(daily / 400 / 2) / sd / sqrt(2.0)) -
                   0.5 * erfc(-log(daily / 600 / 2) / sd / sqrt(2.0));
    printf("\n    a priori PTA %.3f vs exact %.3f\n", r[0].pta, exact);
    CU_ASSERT(fabs(r[0].pta - exact) < 0.05); /* 500 draws: SE about 0.022 */
    free(r);
    popk_map_free(mp);
    popk_data_free(d);
    popk_model_free(m);
}

/* The same 1-compartment model as ODEs: with an IV infusion, the steady-state AUC over an
 * interval is dose/CL, and log AUC24 is linear in eta_cl, so the delta-method PTA (the
 * default for ODE models CVODES integrates; forced here with method bdf, since a linear
 * model would otherwise take the matrix exponential and be sampled) equals the closed form. */
static const char ode_model[] =
    "name: bolus_ode\n"
    "theta:\n  tcl: {init: 2}\n  tv: {init: 20}\n"
    "omega:\n  eta_cl: 0.09\n  eta_v: 0.04\n"
    "sigma:\n  add_sd: {init: 0.3, lower: 0}\n  prop_sd: {init: 0.1, lower: 0}\n"
    "individual:\n  cl: tcl * exp(eta_cl)\n  v: tv * exp(eta_v)\n"
    "odes:\n  central: -cl / v * central\n"
    "solver: {method: bdf}\n"
    "observe:\n  cp:\n    value: central / v\n    cmt: central\n"
    "    error: {combined_var: [add_sd, prop_sd]}\n";

static void test_ode_delta(void)
{
    popk_error err;
    popk_model *m = popk_model_parse("ode.yaml", ode_model, sizeof ode_model - 1, &err);
    static const char csv[] = "ID,TIME,DV,AMT,RATE,EVID,CMT\n1,0,.,100,100,1,1\n"
                              "1,2,4.5,.,.,0,1\n1,8,2.9,.,.,0,1\n";
    popk_data *d = popk_data_parse("p.csv", csv, sizeof csv - 1, &err);
    CU_ASSERT_FATAL(m && d);
    popk_map *mp = popk_map_new(m, d, NULL, &err);
    CU_ASSERT_FATAL(mp != NULL);
    popk_map_target t;
    CU_ASSERT_EQUAL(popk_map_target_parse("auc24=400-600", &t), 0);
    /* three doses: the middle one is scaled from the others (linear system) */
    double doses[] = {400, 450, 500}, ii[] = {8, 12}, dur[] = {1};
    int n = 0;
    popk_map_regimen *r = popk_map_recommend(mp, &t, 3, doses, 2, ii, 1, dur, &n, &err);
    CU_ASSERT_FATAL(r != NULL && n == 6);
    double e = popk_map_eta(mp)[0], sd = sqrt(popk_map_eta_cov(mp)[0]), cl = 2 * exp(e);
    double worst_auc = 0, worst_pta = 0;
    for (int k = 0; k < n; k++) {
        CU_ASSERT(r[k].delta);
        double daily = r[k].dose * 24 / r[k].interval, auc = daily / cl;
        double exact = 0.5 * erfc(-log(auc / 400) / sd / sqrt(2.0)) -
                       0.5 * erfc(-log(auc / 600) / sd / sqrt(2.0));
        worst_auc = fmax(worst_auc, fabs(r[k].auc24 / auc - 1));
        worst_pta = fmax(worst_pta, fabs(r[k].pta - exact));
    }
    printf("\n    ODE: AUC24 rel. error %.1e, delta PTA error %.1e\n", worst_auc, worst_pta);
    CU_ASSERT(worst_auc < 2e-3);
    CU_ASSERT(worst_pta < 5e-3);
    free(r);
    popk_map_free(mp);
    popk_data_free(d);
    popk_model_free(m);
}

/* Delta method on the 2-cmt closed-form vancomycin model at steady state (infusions): AUC24 =
 * daily dose / CL, so log AUC24 has posterior SD sqrt(C[eta_cl, eta_cl]) exactly and the
 * delta-method interval and PTA have closed forms. (This caught wrong steady-state partials
 * of closed-form models in pred/.) */
static void test_delta_closed_form(void)
{
    popk_error err;
    popk_model *m = popk_model_load(popk_test_src("models/vancomycin.yaml"), &err);
    popk_data *d = popk_data_read(popk_test_src("datasets/vancomycin_patient.csv"), &err);
    CU_ASSERT_FATAL(m && d);
    popk_map_options o;
    popk_map_options_default(&o);
    o.pta = POPK_PTA_DELTA;
    o.nsamples = 50;
    popk_map *mp = popk_map_new(m, d, &o, &err);
    CU_ASSERT_FATAL(mp != NULL);
    popk_map_target t;
    CU_ASSERT_EQUAL(popk_map_target_parse("auc24=400-600", &t), 0);
    double doses[] = {1000, 1250}, ii[] = {12, 24}, dur[] = {1};
    int n;
    popk_map_regimen *r = popk_map_recommend(mp, &t, 2, doses, 2, ii, 1, dur, &n, &err);
    CU_ASSERT_FATAL(r != NULL);
    double cl = popk_map_params(mp)[0].value, sd = sqrt(popk_map_eta_cov(mp)[0]), worst = 0;
    for (int k = 0; k < n; k++) {
        double auc = r[k].dose * 24 / r[k].interval / cl;
        double exact = 0.5 * erfc(-log(auc / 400) / sd / sqrt(2.0)) -
                       0.5 * erfc(-log(auc / 600) / sd / sqrt(2.0));
        worst = fmax(worst, fabs(r[k].pta - exact));
        worst = fmax(worst, fabs(r[k].auc_hi / (auc * exp(1.6448536269514722 * sd)) - 1));
        worst = fmax(worst, fabs(r[k].auc24 / auc - 1));
    }
    printf("\n    2-cmt steady state, delta method: worst error %.1e\n", worst);
    CU_ASSERT(worst < 1e-5);
    free(r);
    popk_map_free(mp);
    popk_data_free(d);
    popk_model_free(m);
}

/* models/tacrolimus.yaml against Andrews 2019 Equation (3): dose = CL/F x AUC0-12; for the
 * reference patient (CYP3A5 non-expresser, 55.72 y, 1.93 m^2) 5 mg twice daily gives
 * AUC0-12 = 5000/22.5 = 222 ng.h/mL, and a CYP3A5 expresser needs 1.62 times the dose. */
static void test_tacrolimus_a_priori(void)
{
    popk_error err;
    popk_model *m = popk_model_load(popk_test_src("models/tacrolimus.yaml"), &err);
    CU_ASSERT_FATAL(m != NULL);
    static const char csv[] = "ID,TIME,DV,AMT,EVID,CMT,CYP3A5,AGE,BSA\n"
                              "1,0,.,5,1,1,nonexpresser,55.72,1.93\n"
                              "2,0,.,5,1,1,expresser,55.72,1.93\n";
    popk_data *d = popk_data_parse("p.csv", csv, sizeof csv - 1, &err);
    CU_ASSERT_FATAL(d != NULL);
    popk_map_target t;
    CU_ASSERT_EQUAL(popk_map_target_parse("auc24=400-500", &t), 0);
    double dose[] = {5, 8.1}, ii[] = {12};
    for (int id = 1; id <= 2; id++) {
        popk_map_options o;
        popk_map_options_default(&o);
        o.id = id;
        o.nsamples = 50;
        popk_map *mp = popk_map_new(m, d, &o, &err);
        CU_ASSERT_FATAL(mp != NULL);
        CU_ASSERT(fabs(popk_map_params(mp)[0].value - 22.5 * (id == 2 ? 1.62 : 1)) < 1e-9);
        int n;
        popk_map_regimen *r = popk_map_recommend(mp, &t, 1, &dose[id - 1], 1, ii, 0, NULL, &n,
                                                 &err);
        CU_ASSERT_FATAL(r != NULL);
        printf("\n    AUC0-12 %.4f (exact %.4f)\n", r[0].auc24 / 2, 5000 / 22.5);
        /* Simpson's rule across the kink at the lag time: about 1e-4 relative */
        CU_ASSERT(fabs(r[0].auc24 / 2 - 5000 / 22.5) < 5e-4 * 222);
        free(r);
        popk_map_free(mp);
    }
    popk_data_free(d);
    popk_model_free(m);
}

/* Michaelis-Menten elimination: results are not proportional to the dose, so no regimen may
 * be scaled from another; each equals its own evaluation. */
static const char mm_model[] =
    "name: mm\n"
    "theta:\n  tvm: {init: 20}\n  tkm: {init: 5}\n  tv: {init: 20}\n"
    "omega:\n  eta_vm: 0.09\n  eta_v: 0.04\n"
    "sigma:\n  prop_sd: {init: 0.1, lower: 0}\n"
    "individual:\n  vm: tvm * exp(eta_vm)\n  v: tv * exp(eta_v)\n  km: tkm\n"
    "odes:\n  central: -vm * (central / v) / (km + central / v)\n"
    "observe:\n  cp:\n    value: central / v\n    cmt: central\n"
    "    error: {proportional: prop_sd}\n";

static void test_nonlinear_not_scaled(void)
{
    popk_error err;
    popk_model *m = popk_model_parse("mm.yaml", mm_model, sizeof mm_model - 1, &err);
    static const char csv[] = "ID,TIME,DV,AMT,RATE,EVID,CMT\n1,0,.,100,100,1,1\n";
    popk_data *d = popk_data_parse("p.csv", csv, sizeof csv - 1, &err);
    CU_ASSERT_FATAL(m && d);
    popk_map *mp = popk_map_new(m, d, NULL, &err);
    CU_ASSERT_FATAL(mp != NULL);
    popk_map_target t;
    CU_ASSERT_EQUAL(popk_map_target_parse("auc24=100-300", &t), 0);
    double doses[] = {50, 100, 150}, ii[] = {12}, dur[] = {1};
    int n = 0, n1;
    popk_map_regimen *r = popk_map_recommend(mp, &t, 3, doses, 1, ii, 1, dur, &n, &err);
    popk_map_regimen *one = popk_map_recommend(mp, &t, 1, &doses[1], 1, ii, 1, dur, &n1, &err);
    CU_ASSERT_FATAL(r && one);
    const popk_map_regimen *r50 = NULL, *r100 = NULL;
    for (int k = 0; k < n; k++) {
        if (r[k].dose == 50)
            r50 = &r[k];
        if (r[k].dose == 100)
            r100 = &r[k];
    }
    CU_ASSERT_FATAL(r50 && r100);
    CU_ASSERT(fabs(r100->auc24 - one[0].auc24) < 1e-9 * one[0].auc24);
    CU_ASSERT(fabs(r100->pta - one[0].pta) < 1e-9);
    CU_ASSERT(r100->auc24 > 2.02 * r50->auc24); /* saturable: more than proportional */
    free(r);
    free(one);
    popk_map_free(mp);
    popk_data_free(d);
    popk_model_free(m);
}

/* A target on a given day: 1-cmt IV (a priori, CL 2, V 20), one 100 mg infusion at 0, then
 * D every 12 h over 1 h from 12 h; day 1 is [12, 36] h. Mass balance gives the AUC of that
 * day: (drug infused in the window - V (C(36) - C(12))) / CL, with C in closed form. */
static double infusions_conc(double t, const double *t0, const double *amt, int n)
{
    double k = 0.1, c = 0;
    for (int i = 0; i < n; i++) {
        if (t <= t0[i])
            continue;
        double on = fmin(t - t0[i], 1.0), off = fmax(t - t0[i] - 1.0, 0.0);
        c += amt[i] / 2.0 * (1 - exp(-k * on)) * exp(-k * off);
    }
    return c;
}

static void test_target_day(void)
{
    popk_error err;
    popk_model *m = popk_model_parse("bolus.yaml", bolus_model, sizeof bolus_model - 1, &err);
    static const char csv[] = "ID,TIME,DV,AMT,RATE,EVID,CMT\n1,0,.,100,100,1,1\n";
    popk_data *d = popk_data_parse("p.csv", csv, sizeof csv - 1, &err);
    CU_ASSERT_FATAL(m && d);
    popk_map *mp = popk_map_new(m, d, NULL, &err);
    CU_ASSERT_FATAL(mp != NULL);
    popk_map_target t;
    CU_ASSERT_EQUAL(popk_map_target_parse("auc24=100-200", &t), 0);
    t.day = 1;
    double doses[] = {50, 80}, ii[] = {12}, dur[] = {1};
    int n;
    popk_map_regimen *r = popk_map_recommend(mp, &t, 2, doses, 1, ii, 1, dur, &n, &err);
    CU_ASSERT_FATAL(r != NULL && n == 2);
    for (int k = 0; k < n; k++) {
        double t0[] = {0, 12, 24, 36}, amt[] = {100, r[k].dose, r[k].dose, r[k].dose};
        double c12 = infusions_conc(12, t0, amt, 4), c36 = infusions_conc(36, t0, amt, 4);
        double auc = (2 * r[k].dose - 20 * (c36 - c12)) / 2;
        printf("\n    day 1: AUC %.6f vs mass balance %.6f", r[k].auc24, auc);
        CU_ASSERT(fabs(r[k].auc24 / auc - 1) < 1e-5);
        CU_ASSERT(r[k].trough <= fmin(c12, c36) + 1e-9);
    }
    /* day 20 is at steady state */
    t.day = 20;
    popk_map_regimen *r20 = popk_map_recommend(mp, &t, 1, doses, 1, ii, 1, dur, &n, &err);
    CU_ASSERT_FATAL(r20 != NULL);
    CU_ASSERT(fabs(r20[0].auc24 - 50 * 2 / 2.0) < 1e-6 * 50);
    free(r20);
    free(r);
    popk_map_free(mp);
    popk_data_free(d);
    popk_model_free(m);
}

static int has_warning(const popk_map *mp, const char *text)
{
    for (int k = 0; k < popk_map_nwarnings(mp); k++)
        if (strstr(popk_map_warning(mp, k), text))
            return 1;
    return 0;
}

static const char cov_model[] =
    "name: covs\n"
    "theta:\n  tcl: {init: 2}\n  tv: {init: 20}\n"
    "omega:\n  eta_cl: 0.09\n"
    "sigma:\n  prop_sd: {init: 0.1, lower: 0}\n"
    "covariates:\n  WT: {unit: kg, reference: 70}\n"
    "individual:\n  cl: tcl * (WT / 70)^0.75 * exp(eta_cl)\n  v: tv * WT / 70\n"
    "linear:\n  CL: cl\n  V: v\n"
    "observe:\n  cp:\n    value: central / v\n    cmt: central\n"
    "    error: {proportional: prop_sd}\n";

static popk_map *run(const char *csv, popk_map_options *o, popk_error *err)
{
    popk_model *m = popk_model_parse("covs.yaml", cov_model, sizeof cov_model - 1, err);
    popk_data *d = popk_data_parse("p.csv", csv, strlen(csv), err);
    CU_ASSERT_FATAL(m && d);
    popk_map *mp = popk_map_new(m, d, o, err);
    popk_data_free(d);
    /* the handle keeps a pointer to the model: free it with the handle in the tests below */
    if (!mp)
        popk_model_free(m);
    return mp;
}

static void done(popk_map *mp, const popk_model *m)
{
    popk_map_free(mp);
    popk_model_free((popk_model *)m);
}

static void test_bad_input(void)
{
    popk_error err;
    popk_error_clear(&err);
    /* negative concentration: an error naming the line */
    CU_ASSERT(run("ID,TIME,DV,AMT,EVID,CMT,WT\n1,0,.,100,1,1,70\n1,2,-3,.,0,1,70\n", NULL,
                  &err) == NULL);
    CU_ASSERT(err.code == POPK_ERR_DATA && err.line == 3 && strstr(err.message, "negative"));
    /* missing covariate: an error naming it, fixed by --covariates */
    CU_ASSERT(run("ID,TIME,DV,AMT,EVID,CMT\n1,0,.,100,1,1\n1,2,3,.,0,1\n", NULL, &err) == NULL);
    CU_ASSERT(strstr(err.message, "WT") && strstr(err.message, "--covariates"));
    popk_map_options o;
    popk_map_options_default(&o);
    const char *nm[] = {"WT"}, *val[] = {"80"};
    o.ncov = 1;
    o.cov_name = nm;
    o.cov_value = val;
    o.nsamples = 100;
    popk_model *m = popk_model_parse("covs.yaml", cov_model, sizeof cov_model - 1, &err);
    static const char csv1[] = "ID,TIME,DV,AMT,EVID,CMT\n1,0,.,100,1,1\n1,2,3,.,0,1\n";
    popk_data *d = popk_data_parse("p.csv", csv1, sizeof csv1 - 1, &err);
    popk_map *mp = popk_map_new(m, d, &o, &err);
    CU_ASSERT_FATAL(mp != NULL);
    /* v = 20 * 80/70 at eta 0 (no eta on v) */
    CU_ASSERT(fabs(popk_map_params(mp)[1].value - 20.0 * 80 / 70) < 1e-12);
    popk_map_free(mp);
    popk_data_free(d);
    /* a level before the first dose is ignored with a warning; levels 1000x the prediction
     * (ug/L given for mg/L) and a weight in grams are flagged */
    static const char csv2[] = "ID,TIME,DV,AMT,EVID,CMT,WT\n1,0,2.5,.,0,1,70\n"
                               "1,1,.,100,1,1,70\n1,3,4000,.,0,1,70\n1,6,3000,.,0,1,70\n";
    d = popk_data_parse("p.csv", csv2, sizeof csv2 - 1, &err);
    mp = popk_map_new(m, d, NULL, &err);
    CU_ASSERT_FATAL(mp != NULL);
    CU_ASSERT(has_warning(mp, "before the first dose"));
    CU_ASSERT(has_warning(mp, "units"));
    CU_ASSERT_EQUAL(popk_map_nobs(mp), 2);
    popk_map_free(mp);
    popk_data_free(d);
    static const char csv3[] = "ID,TIME,DV,AMT,EVID,CMT,WT\n1,0,.,100,1,1,70000\n";
    d = popk_data_parse("p.csv", csv3, sizeof csv3 - 1, &err);
    o.ncov = 0;
    o.dose_lo = 50;
    o.dose_hi = 400;
    mp = popk_map_new(m, d, &o, &err);
    CU_ASSERT_FATAL(mp != NULL);
    CU_ASSERT(has_warning(mp, "WT = 70000"));
    popk_map_free(mp);
    popk_data_free(d);
    /* unreachable target and doses outside the studied range */
    static const char csv4[] = "ID,TIME,DV,AMT,EVID,CMT,WT\n1,0,.,100,1,1,70\n";
    d = popk_data_parse("p.csv", csv4, sizeof csv4 - 1, &err);
    mp = popk_map_new(m, d, &o, &err);
    CU_ASSERT_FATAL(mp != NULL);
    popk_map_target t;
    CU_ASSERT_EQUAL(popk_map_target_parse("trough=50-60", &t), 0);
    double doses[] = {10, 20}, ii[] = {12};
    int n;
    popk_map_regimen *r = popk_map_recommend(mp, &t, 2, doses, 1, ii, 0, NULL, &n, &err);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(has_warning(mp, "not reachable"));
    CU_ASSERT(has_warning(mp, "outside the range"));
    CU_ASSERT(r[0].outside_range);
    free(r);
    CU_ASSERT_EQUAL(popk_map_target_parse("trough=5", &t), -1);
    CU_ASSERT_EQUAL(popk_map_target_parse("cmax=1-2", &t), -1);
    CU_ASSERT_EQUAL(popk_map_target_parse("tmic=2:0.4", &t), 0);
    CU_ASSERT(t.kind == POPK_TARGET_TMIC && t.mic == 2 && t.lo == 0.4);
    CU_ASSERT_EQUAL(popk_map_target_parse("AUC24 in 400..600", &t), 0);
    CU_ASSERT(t.kind == POPK_TARGET_AUC24 && t.lo == 400 && t.hi == 600);
    CU_ASSERT_EQUAL(popk_map_target_parse("trough in 10..20", &t), 0);
    CU_ASSERT(t.kind == POPK_TARGET_TROUGH && t.lo == 10 && t.hi == 20);
    CU_ASSERT_EQUAL(popk_map_target_parse("trough in 20..10", &t), -1);
    CU_ASSERT_EQUAL(popk_map_target_parse("cmax in 1..2", &t), -1);
    CU_ASSERT_EQUAL(popk_map_target_parse("AUC24 in 400..600x", &t), -1);
    popk_map_free(mp);
    popk_data_free(d);
    done(NULL, m);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("map", NULL, NULL);
    CU_add_test(s, "theo_sd EBEs equal the fit's", test_theo_ebes);
    CU_add_test(s, "M3 against brute force", test_m3_bruteforce);
    CU_add_test(s, "a priori", test_a_priori);
    CU_add_test(s, "ODE model, delta-method PTA", test_ode_delta);
    CU_add_test(s, "tacrolimus: Andrews 2019 starting dose", test_tacrolimus_a_priori);
    CU_add_test(s, "delta method, 2-cmt closed form", test_delta_closed_form);
    CU_add_test(s, "nonlinear model: no dose scaling", test_nonlinear_not_scaled);
    CU_add_test(s, "target on a given day", test_target_day);
    CU_add_test(s, "bad input", test_bad_input);
    return popk_test_run();
}
