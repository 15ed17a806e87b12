/* pred engine, steady state on the ODE path for a nonlinear (Michaelis-Menten) model: SS = 1
 * equals the limit of many repeated doses, for boluses and for infusions longer than II. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/popk_test.h"
#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"

static const char model_text[] =
    "name: mm_ss\n"
    "theta:\n  tvm: 15\n  tkm: 2\n  tv: 10\n"
    "sigma:\n  sd: 0.1\n"
    "individual:\n  vm: tvm\n  km: tkm\n  v: tv\n"
    "odes:\n  central: -vm * (central / v) / (km + central / v)\n"
    "observe:\n  cp: {value: central / v, error: {additive: sd}}\n"
    "solver: {rtol: 1e-11, atol: 1e-12}\n";

/* Concentrations at 1, 5 and 11 h after the last dose, from SS = 1 at time 0 (ss = 1) or
 * after 80 doses every 12 h (ss = 0). rate 0: bolus. */
static void predict(int ss, double rate, double *cp)
{
    char csv[1024];
    double t0 = ss ? 0.0 : 80 * 12.0;
    snprintf(csv, sizeof csv,
             "ID,TIME,AMT,RATE,CMT,EVID,II,ADDL,SS,DV\n"
             "1,0,100,%g,1,1,12,%d,%d,0\n"
             "1,%g,0,0,1,0,0,0,0,1\n1,%g,0,0,1,0,0,0,0,1\n1,%g,0,0,1,0,0,0,0,1\n",
             rate, ss ? 0 : 80, ss, t0 + 1, t0 + 5, t0 + 11);
    popk_error err;
    popk_model *m = popk_model_parse("mm_ss.yaml", model_text, strlen(model_text), &err);
    popk_data *d = popk_data_parse("mm_ss.csv", csv, strlen(csv), &err);
    CU_ASSERT_FATAL(m && d);
    popk_binding *b = popk_model_bind(m, d, &err);
    popk_pred_ws *ws = popk_pred_ws_new(m, &err);
    CU_ASSERT_FATAL(b && ws);
    popk_pred_result res;
    CU_ASSERT_FATAL(popk_pred_subject(ws, m, d, b, 0, NULL, NULL, NULL, &res, &err) == POPK_OK);
    for (int k = 0; k < 3; k++)
        cp[k] = res.out[(size_t)(k + 1) * (size_t)res.nout];
    popk_pred_ws_free(ws);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
}

static void compare(double rate)
{
    double ss[3], rep[3];
    predict(1, rate, ss);
    predict(0, rate, rep);
    for (int k = 0; k < 3; k++) {
        printf("\n    rate %g: SS %.12g, 80 doses %.12g", rate, ss[k], rep[k]);
        CU_ASSERT_DOUBLE_EQUAL(ss[k], rep[k], 1e-8 * rep[k]);
    }
}

static void test_bolus(void)
{
    compare(0.0);
}

/* 100 / 6 h = 16.7 h infusions every 12 h: two overlap during part of each cycle. */
static void test_long_infusion(void)
{
    compare(6.0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("pred_ss", NULL, NULL);
    CU_add_test(s, "mm_bolus_steady_state", test_bolus);
    CU_add_test(s, "mm_long_infusion_steady_state", test_long_infusion);
    return popk_test_run();
}
