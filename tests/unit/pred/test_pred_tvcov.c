/* pred engine, time-varying covariates: the value on record n governs the interval that ends
 * at record n (docs/methods.md), checked against hand-computed closed forms on both paths. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/popk_test.h"
#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"

static const char header[] = "name: tvcov\n"
                             "theta:\n  tv: 10\n  tf: 1\n"
                             "sigma:\n  sd: 0.1\n"
                             "covariates:\n  CLI: {}\n  FI: {}\n"
                             "individual:\n  cl: CLI\n  v: tv\n  f1: tf * FI\n";
static const char linear_body[] = "linear:\n  CL: cl\n  V: v\n";
static const char ode_body[] = "odes:\n  central: -cl / v * central\n";
static const char footer[] = "dosing:\n  central: {F: f1}\n"
                             "observe:\n  cp: {value: central / v, error: {additive: sd}}\n";

/* Predictions (output 0) of subject 0 of csv on the analytic (ode = 0) or ODE path. */
static void predict(const char *csv, int ode, double *out, size_t nmax)
{
    char text[2048];
    int len = snprintf(text, sizeof text, "%s%s%s", header, ode ? ode_body : linear_body,
                       footer);
    popk_error err;
    popk_model *m = popk_model_parse("tvcov.yaml", text, (size_t)len, &err);
    popk_data *d = popk_data_parse("tvcov.csv", csv, strlen(csv), &err);
    CU_ASSERT_FATAL(m && d);
    m->rtol = 1e-12;
    m->atol = 1e-14;
    popk_binding *b = popk_model_bind(m, d, &err);
    popk_pred_ws *ws = popk_pred_ws_new(m, &err);
    CU_ASSERT_FATAL(b && ws);
    popk_pred_result res;
    CU_ASSERT_FATAL(popk_pred_subject(ws, m, d, b, 0, NULL, NULL, NULL, &res, &err) == POPK_OK);
    CU_ASSERT_FATAL(res.nrec <= nmax);
    for (size_t r = 0; r < res.nrec; r++)
        out[r] = res.out[r * (size_t)res.nout];
    popk_pred_ws_free(ws);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
}

static void check(const double *got, const double *want, size_t n, const char *what)
{
    for (size_t r = 0; r < n; r++)
        if (fabs(got[r] - want[r]) > 1e-9 * fabs(want[r]) + 1e-15) {
            printf("\n    %s record %zu: got %.15g, want %.15g", what, r, got[r], want[r]);
            CU_FAIL("prediction differs from the closed form");
        }
}

/* CL changes on an EVID 2 record and on observations: each record's CLI governs the
 * interval before it, so the change at t = 5 already applies over (2, 5]. */
static void test_clearance_changes(void)
{
    static const char csv[] = "ID,TIME,AMT,CMT,EVID,CLI,FI,DV\n"
                              "1,0,100,1,1,2,1,0\n"
                              "1,2,0,1,0,2,1,1\n"
                              "1,5,0,1,2,4,1,.\n"
                              "1,8,0,1,0,4,1,1\n"
                              "1,12,0,1,0,1,1,1\n";
    const double v = 10.0;
    double a0 = 100.0;
    double a2 = a0 * exp(-2.0 / v * 2.0);
    double a5 = a2 * exp(-4.0 / v * 3.0);
    double a8 = a5 * exp(-4.0 / v * 3.0);
    double a12 = a8 * exp(-1.0 / v * 4.0);
    double want[5] = {a0 / v, a2 / v, a5 / v, a8 / v, a12 / v}, got[5];
    for (int ode = 0; ode <= 1; ode++) {
        predict(csv, ode, got, 5);
        check(got, want, 5, ode ? "ode" : "analytic");
    }
}

/* A dose takes F from its own record, while the interval before it uses that record's CL;
 * additional doses (ADDL) keep the dose record's F even after FI changes, and the CL of an
 * interval with an additional dose inside is the CL of the record that ends it. */
static void test_dose_record_values(void)
{
    static const char csv[] = "ID,TIME,AMT,CMT,EVID,II,ADDL,CLI,FI,DV\n"
                              "1,0,100,1,1,0,0,1,0.5,0\n"
                              "1,4,100,1,1,6,1,3,0.8,0\n"   /* (0,4] with CL 3; F 0.8 */
                              "1,7,0,1,0,0,0,2,0.1,1\n"     /* (4,7] with CL 2 */
                              "1,13,0,1,0,0,0,5,0.1,1\n";   /* (7,13] CL 5; extra dose at 10 */
    const double v = 10.0;
    double a4 = 50.0 * exp(-3.0 / v * 4.0) + 80.0;
    double a7 = a4 * exp(-2.0 / v * 3.0);
    double a10 = a7 * exp(-5.0 / v * 3.0) + 80.0;
    double a13 = a10 * exp(-5.0 / v * 3.0);
    double want[4] = {50.0 / v, a4 / v, a7 / v, a13 / v}, got[4];
    for (int ode = 0; ode <= 1; ode++) {
        predict(csv, ode, got, 4);
        check(got, want, 4, ode ? "ode" : "analytic");
    }
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("pred_tvcov", NULL, NULL);
    CU_add_test(s, "clearance_changes", test_clearance_changes);
    CU_add_test(s, "dose_record_values", test_dose_record_values);
    return popk_test_run();
}
