/* pred engine derivatives: df/deta and df/dtheta from the engine (dual numbers through the
 * closed forms; CVODES sensitivities) against central finite differences of the engine's own
 * predictions, for 1-3 compartment models with bolus, infusion, oral, lag, F, modelled
 * duration, ADDL, SS = 1 and 2 (infusions longer than II) and resets. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/popk_test.h"
#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"

/* Every subject is one dosing scenario. Observation times keep away from the event times
 * (lagged doses at 0.4 + k 8, infusion ends at 2.5, 3, 3.6, 15), where predictions have kinks
 * that central differences cannot resolve. */
static const char dataset[] =
    "ID,TIME,AMT,RATE,CMT,EVID,II,ADDL,SS,DV\n"
    /* 1: IV bolus */
    "1,0,100,0,2,1,0,0,0,0\n"
    /* 2: infusion at a given rate: duration F AMT / RATE depends on F */
    "2,0,100,25,2,1,0,0,0,0\n"
    /* 3: oral with lag and F, two additional doses */
    "3,0,100,0,1,1,8,2,0,0\n"
    /* 4: modelled duration (RATE = -2) */
    "4,0,100,-2,2,1,0,0,0,0\n"
    /* 5: oral at steady state (lag understood for the implied doses) */
    "5,0,100,0,1,1,12,0,1,0\n"
    /* 6: infusion at steady state lasting longer than II (F 100 / 6 = 15 h > 12 h) */
    "6,0,100,6,2,1,12,0,1,0\n"
    /* 7: modelled-duration infusion at steady state */
    "7,0,100,-2,2,1,12,0,1,0\n"
    /* 8: a bolus, then an oral SS = 2 dose added to it */
    "8,0,50,0,2,1,0,0,0,0\n"
    "8,5,100,0,1,1,12,0,2,0\n"
    /* 9: oral, then reset and IV bolus */
    "9,0,100,0,1,1,0,0,0,0\n"
    "9,7,80,0,2,4,0,0,0,0\n";

static const double obs_times[] = {0.2, 0.9, 1.7, 3.3, 4.3, 6.2, 9.5, 11.3, 14.6, 20.2, 27.5};
enum { NOBS = sizeof obs_times / sizeof obs_times[0] };

/* The dataset above with the observation records merged in time order. */
static popk_data *make_data(void)
{
    char buf[8192];
    size_t len = 0;
    const char *p = dataset;
    const char *nl = strchr(p, '\n');
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%.*s\n", (int)(nl - p), p);
    p = nl + 1;
    for (int id = 1; id <= 9; id++) {
        int k = 0;
        while (*p && atoi(p) == id) {
            nl = strchr(p, '\n');
            double t = atof(strchr(p, ',') + 1);
            for (; k < NOBS && obs_times[k] < t; k++)
                len += (size_t)snprintf(buf + len, sizeof buf - len, "%d,%g,0,0,2,0,0,0,0,1\n",
                                        id, obs_times[k]);
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%.*s\n", (int)(nl - p), p);
            p = nl + 1;
        }
        for (; k < NOBS; k++)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%d,%g,0,0,2,0,0,0,0,1\n", id,
                                    obs_times[k]);
    }
    popk_error err;
    popk_data *d = popk_data_parse("sens.csv", buf, len, &err);
    if (!d) {
        char msg[1024];
        fprintf(stderr, "%s\n", popk_error_format(&err, msg, sizeof msg));
    }
    return d;
}

/* Model text for ncmt (1-3) disposition compartments plus a depot, closed form or ODEs. */
static popk_model *make_model(int ncmt, int ode)
{
    static const char *const names[] = {"cl", "v", "ka", "fo", "fc", "lag", "dur",
                                        "q", "v2", "q3", "v3"};
    static const double inits[] = {2.0, 20.0, 1.2, 0.7, 0.9, 0.4, 2.5, 3.0, 40.0, 1.5, 80.0};
    int npar = 7 + 2 * (ncmt - 1);
    char buf[8192];
    size_t len = 0;
#define ADD(...) len += (size_t)snprintf(buf + len, sizeof buf - len, __VA_ARGS__)
    ADD("name: sens%d%s\ntheta:\n", ncmt, ode ? "_ode" : "");
    for (int k = 0; k < npar; k++)
        ADD("  t%s: %g\n", names[k], inits[k]);
    ADD("omega:\n");
    for (int k = 0; k < npar; k++)
        ADD("  eta_%s: 0.1\n", names[k]);
    ADD("sigma:\n  sd: 0.1\nindividual:\n");
    for (int k = 0; k < npar; k++)
        ADD("  %s: t%s * exp(eta_%s)\n", names[k], names[k], names[k]);
    if (!ode) {
        ADD("linear:\n  CL: cl\n  V: v\n  KA: ka\n");
        if (ncmt >= 2)
            ADD("  Q: q\n  V2: v2\n");
        if (ncmt >= 3)
            ADD("  Q3: q3\n  V3: v3\n");
    } else {
        ADD("odes:\n  depot: -ka * depot\n  central: ka * depot - cl / v * central");
        if (ncmt >= 2)
            ADD(" - q / v * central + q / v2 * peripheral1");
        if (ncmt >= 3)
            ADD(" - q3 / v * central + q3 / v3 * peripheral2");
        ADD("\n");
        if (ncmt >= 2)
            ADD("  peripheral1: q / v * central - q / v2 * peripheral1\n");
        if (ncmt >= 3)
            ADD("  peripheral2: q3 / v * central - q3 / v3 * peripheral2\n");
        ADD("solver: {rtol: 1e-11, atol: 1e-12}\n");
    }
    ADD("dosing:\n  depot: {F: fo, ALAG: lag}\n  central: {F: fc, DUR: dur}\n");
    ADD("observe:\n  cp: {value: central / v, cmt: central, error: {additive: sd}}\n");
#undef ADD
    popk_error err;
    popk_model *m = popk_model_parse("sens.yaml", buf, len, &err);
    if (!m) {
        char msg[1024];
        fprintf(stderr, "%s\n%s\n", buf, popk_error_format(&err, msg, sizeof msg));
    }
    return m;
}

static popk_data *data;

static int setup(void)
{
    data = make_data();
    return data ? 0 : -1;
}

static int teardown(void)
{
    popk_data_free(data);
    return 0;
}

/* Output 0 at every record for (theta, eta), values only. */
static int predict(popk_pred_ws *ws, const popk_model *m, const popk_binding *b, size_t s,
                   const double *theta, const double *eta, double *f)
{
    popk_pred_result res;
    popk_error err;
    if (popk_pred_subject(ws, m, data, b, s, theta, eta, NULL, &res, &err) != POPK_OK) {
        char msg[1024];
        fprintf(stderr, "%s\n", popk_error_format(&err, msg, sizeof msg));
        return -1;
    }
    for (size_t r = 0; r < res.nrec; r++)
        f[r] = res.out[r * (size_t)res.nout];
    return 0;
}

/* Worst relative error of the engine's derivatives of every output against central
 * differences, over every subject, for all etas (is_eta) or all thetas. The relative error
 * of a partial is taken against the largest |df/dx_k| of that subject and direction, so a
 * partial crossing zero is held to the same absolute accuracy as its neighbours. */
static double check_dirs(const popk_model *m, int is_eta, double *worst_fd_scale)
{
    popk_error err;
    popk_binding *b = popk_model_bind(m, data, &err);
    popk_pred_ws *ws = popk_pred_ws_new(m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    int n = is_eta ? m->neta : m->ntheta;
    double theta[16], eta[16];
    for (int k = 0; k < m->ntheta; k++)
        theta[k] = m->theta[k].init;
    for (int k = 0; k < m->neta; k++)
        eta[k] = 0.05 * ((k % 3) - 1.0) + 0.02 * k; /* away from zero: no special point */
    popk_pred_dirs dirs = {0};
    dirs.nd = n;
    for (int k = 0; k < n; k++) {
        dirs.dir_is_eta[k] = is_eta;
        dirs.dir_index[k] = k;
    }
    double worst = 0.0, scale_min = INFINITY;
    for (size_t s = 0; s < data->nsub; s++) {
        popk_pred_result res;
        size_t nrec = data->sub[s].n;
        double fp[64], fm[64], deriv[64 * 16];
        CU_ASSERT_FATAL(nrec <= 64);
        if (popk_pred_subject(ws, m, data, b, s, theta, eta, &dirs, &res, &err) != POPK_OK) {
            char msg[1024];
            fprintf(stderr, "%s\n", popk_error_format(&err, msg, sizeof msg));
            CU_FAIL("prediction with derivatives failed");
            continue;
        }
        for (size_t r = 0; r < nrec; r++)
            for (int k = 0; k < n; k++)
                deriv[r * 16 + k] = res.out[r * (size_t)res.nout * (1 + n) + 1 + k];
        for (int k = 0; k < n; k++) {
            double *x = is_eta ? eta : theta, x0 = x[k];
            /* Step balancing truncation (h^2) and the predictions' own error over h. */
            double h = (is_eta ? 1.0 : fabs(x0)) * (m->kind == POPK_STRUCT_ODE ? 1e-3 : 1e-4);
            x[k] = x0 + h;
            int ok = predict(ws, m, b, s, theta, eta, fp) == 0;
            x[k] = x0 - h;
            ok = ok && predict(ws, m, b, s, theta, eta, fm) == 0;
            x[k] = x0;
            CU_ASSERT_FATAL(ok);
            double scale = 0.0;
            for (size_t r = 0; r < nrec; r++)
                scale = fmax(scale, fabs(deriv[r * 16 + k]));
            if (scale == 0.0)
                continue; /* e.g. the depot's F in a subject dosed only IV: checked below */
            scale_min = fmin(scale_min, scale);
            for (size_t r = 0; r < nrec; r++) {
                double fd = (fp[r] - fm[r]) / (2.0 * h);
                double e = fabs(deriv[r * 16 + k] - fd) / scale;
                if (e > worst)
                    worst = e;
                if (e > 1e-5)
                    printf("\n    %s %s %s[%d] ID %g t %g: engine %.10g fd %.10g", m->name,
                           is_eta ? "eta" : "theta",
                           is_eta ? m->eta_name[k] : m->theta[k].name, k, data->sub[s].id,
                           data->rec[data->sub[s].first + r].time, deriv[r * 16 + k], fd);
            }
        }
        /* A direction the subject does not depend on must have zero partials: the finite
         * differences are exactly zero too (same code path, same inputs). */
        for (int k = 0; k < n; k++) {
            double *x = is_eta ? eta : theta, x0 = x[k];
            int zero = 1;
            for (size_t r = 0; r < nrec; r++)
                zero &= deriv[r * 16 + k] == 0.0;
            if (!zero)
                continue;
            x[k] = x0 * 1.01 + 0.01;
            CU_ASSERT_FATAL(predict(ws, m, b, s, theta, eta, fp) == 0);
            x[k] = x0;
            CU_ASSERT_FATAL(predict(ws, m, b, s, theta, eta, fm) == 0);
            for (size_t r = 0; r < nrec; r++)
                CU_ASSERT_DOUBLE_EQUAL(fp[r], fm[r], 1e-12 * fabs(fm[r]));
        }
    }
    popk_pred_ws_free(ws);
    popk_binding_free(b);
    *worst_fd_scale = scale_min;
    return worst;
}

/* The ODE path is differenced on the 2-compartment model only (it costs seconds); its 1-
 * and 3-compartment derivatives are held to the analytic ones in test_paths_agree. */
static void run_family(int ode)
{
    printf("\n");
    for (int ncmt = ode ? 2 : 1; ncmt <= (ode ? 2 : 3); ncmt++) {
        popk_model *m = make_model(ncmt, ode);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        double smin_e, smin_t;
        double we = check_dirs(m, 1, &smin_e);
        double wt = check_dirs(m, 0, &smin_t);
        printf("    %-12s df/deta (%2d) max rel err %.2e   df/dtheta (%2d) max rel err %.2e\n",
               m->name, m->neta, we, m->ntheta, wt);
        CU_ASSERT(we < 1e-5);
        CU_ASSERT(wt < 1e-5);
        popk_model_free(m);
    }
}

static void test_analytic(void)
{
    run_family(0);
}

static void test_ode(void)
{
    run_family(1);
}

/* The two paths' derivatives agree with each other directly (no differencing error). */
static void test_paths_agree(void)
{
    popk_error err;
    double worst = 0.0;
    for (int ncmt = 1; ncmt <= 3; ncmt++) {
        popk_model *ml = make_model(ncmt, 0), *mo = make_model(ncmt, 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ml);
        CU_ASSERT_PTR_NOT_NULL_FATAL(mo);
        popk_binding *bl = popk_model_bind(ml, data, &err), *bo = popk_model_bind(mo, data, &err);
        popk_pred_ws *wl = popk_pred_ws_new(ml, &err), *wo = popk_pred_ws_new(mo, &err);
        CU_ASSERT_FATAL(bl && bo && wl && wo);
        popk_pred_dirs dirs = {0};
        dirs.nd = ml->neta;
        for (int k = 0; k < dirs.nd; k++) {
            dirs.dir_is_eta[k] = 1;
            dirs.dir_index[k] = k;
        }
        for (size_t s = 0; s < data->nsub; s++) {
            popk_pred_result rl, ro;
            CU_ASSERT_FATAL(popk_pred_subject(wl, ml, data, bl, s, NULL, NULL, &dirs, &rl,
                                              &err) == POPK_OK);
            double copy[64 * 17];
            size_t nv = rl.nrec * (size_t)rl.nout * (size_t)(1 + rl.nd);
            CU_ASSERT_FATAL(nv <= sizeof copy / sizeof copy[0]);
            memcpy(copy, rl.out, sizeof(double) * nv);
            CU_ASSERT_FATAL(popk_pred_subject(wo, mo, data, bo, s, NULL, NULL, &dirs, &ro,
                                              &err) == POPK_OK);
            double scale = 0.0;
            for (size_t i = 0; i < nv; i++)
                scale = fmax(scale, fabs(copy[i]));
            for (size_t i = 0; i < nv; i++)
                worst = fmax(worst, fabs(copy[i] - ro.out[i]) / scale);
        }
        popk_pred_ws_free(wl);
        popk_pred_ws_free(wo);
        popk_binding_free(bl);
        popk_binding_free(bo);
        popk_model_free(ml);
        popk_model_free(mo);
    }
    printf("  max |analytic - ODE| / max|value| over values and df/deta: %.2e ", worst);
    CU_ASSERT(worst < 1e-7);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("pred_sens", setup, teardown);
    CU_add_test(s, "analytic_vs_finite_differences", test_analytic);
    CU_add_test(s, "ode_vs_finite_differences", test_ode);
    CU_add_test(s, "analytic_and_ode_derivatives_agree", test_paths_agree);
    return popk_test_run();
}
