/* pred engine faults: solver failures and invalid individual parameters give an error naming
 * the subject, the time, the failing check and (for parameters) the assignment and record;
 * 'popk predict' then exits non-zero with that message and leaves no --out file. Also the
 * wiring of 'popk predict' --params and --eta against the engine called directly. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/popk_test.h"
#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"

static const char header[] =
    "name: faults\n"
    "theta:\n  tcl: 2\n  tv: 0.5\n  tf: 0.02\n"
    "omega:\n  eta_cl: 0.1\n"
    "sigma:\n  sd: 0.1\n"
    "covariates:\n  WT: {unit: kg}\n";

/* Subject 7: WT 90 on the dose (line 2), 70 from the observation at t = 6 (line 4). */
static const char csv[] = "ID,TIME,AMT,CMT,EVID,WT,DV\n"
                          "7,0,100,1,1,90,0\n"
                          "7,2,0,1,0,90,1\n"
                          "7,6,0,1,0,70,1\n"
                          "7,24,0,1,0,70,1\n";

/* Run subject 0 of csv through the model body (after the header); return the status and
 * the message in msg. */
static popk_status run_model(const char *body, char *msg, size_t size)
{
    char text[4096];
    int len = snprintf(text, sizeof text, "%s%s", header, body);
    popk_error err;
    popk_model *m = popk_model_parse("faults.yaml", text, (size_t)len, &err);
    popk_data *d = popk_data_parse("faults.csv", csv, strlen(csv), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    popk_binding *b = popk_model_bind(m, d, &err);
    popk_pred_ws *ws = popk_pred_ws_new(m, &err);
    CU_ASSERT_FATAL(b && ws);
    popk_pred_result res;
    popk_error_clear(&err);
    popk_status st = popk_pred_subject(ws, m, d, b, 0, NULL, NULL, NULL, &res, &err);
    snprintf(msg, size, "%s", err.message);
    printf("\n    -> %s", st == POPK_OK ? "(ok)" : msg);
    popk_pred_ws_free(ws);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
    return st;
}

static void expect(const char *msg, const char *part)
{
    if (!strstr(msg, part)) {
        printf("\n    message lacks \"%s\"", part);
        CU_FAIL("message lacks an expected part");
    }
}

static void test_ode_too_much_work(void)
{
    char msg[1024];
    popk_status st = run_model("individual:\n  cl: tcl * exp(eta_cl)\n  v: 10\n"
                               "odes:\n  central: -cl / v * central\n"
                               "observe:\n  cp: {value: central / v, error: {additive: sd}}\n"
                               "solver: {method: bdf, max_steps: 3}\n",
                               msg, sizeof msg);
    CU_ASSERT_EQUAL(st, POPK_ERR_SOLVER);
    expect(msg, "subject ID 7");
    expect(msg, "time ");
    expect(msg, "too much work");
}

static void test_ode_nan_rhs(void)
{
    char msg[1024];
    /* sqrt(central - 50) is NaN once the amount falls below 50 (t = 2.5 log 2). */
    popk_status st = run_model("individual:\n  cl: tcl * exp(eta_cl)\n  v: 10\n"
                               "odes:\n  central: -cl / v * central * sqrt(central - 50) / "
                               "sqrt(central - 50)\n"
                               "observe:\n  cp: {value: central / v, error: {additive: sd}}\n",
                               msg, sizeof msg);
    CU_ASSERT(st == POPK_ERR_SOLVER || st == POPK_ERR_NUMERIC);
    expect(msg, "subject ID 7");
    expect(msg, "time ");
    expect(msg, "right-hand side");
}

/* v = theta (WT - 80) is negative from the record where WT drops to 70 (line 4). */
static void test_negative_parameter_linear(void)
{
    char msg[1024];
    popk_status st = run_model("individual:\n  cl: tcl * exp(eta_cl)\n  v: tv * (WT - 80)\n"
                               "linear:\n  CL: cl\n  V: v\n"
                               "observe:\n  cp: {value: central / v, error: {additive: sd}}\n",
                               msg, sizeof msg);
    CU_ASSERT_EQUAL(st, POPK_ERR_NUMERIC);
    expect(msg, "subject ID 7");
    expect(msg, "time 6");
    expect(msg, "'v'");
    expect(msg, "tv * (WT - 80)");
    expect(msg, "line 4");
}

static void test_nan_parameter(void)
{
    char msg[1024];
    popk_status st = run_model("individual:\n  cl: tcl * exp(eta_cl)\n  v: tv * sqrt(WT - 80)\n"
                               "odes:\n  central: -cl / v * central\n"
                               "observe:\n  cp: {value: central / v, error: {additive: sd}}\n",
                               msg, sizeof msg);
    CU_ASSERT_EQUAL(st, POPK_ERR_NUMERIC);
    expect(msg, "subject ID 7");
    expect(msg, "'v'");
    expect(msg, "tv * sqrt(WT - 80)");
    expect(msg, "line 4");
}

static void test_negative_bioavailability(void)
{
    /* F is computed from the dose record (WT 70 here makes it negative). */
    static const char *body = "individual:\n  cl: tcl * exp(eta_cl)\n  v: 10\n"
                              "  f1: tf * (WT - 80)\n"
                              "linear:\n  CL: cl\n  V: v\n"
                              "dosing:\n  central: {F: f1}\n"
                              "observe:\n  cp: {value: central / v, error: {additive: sd}}\n";
    char text[2048];
    int len = snprintf(text, sizeof text, "%s%s", header, body);
    static const char data[] = "ID,TIME,AMT,CMT,EVID,WT,DV\n8,0,100,1,1,70,0\n8,2,0,1,0,70,1\n";
    popk_error err;
    popk_model *m = popk_model_parse("faults.yaml", text, (size_t)len, &err);
    popk_data *d = popk_data_parse("f.csv", data, strlen(data), &err);
    CU_ASSERT_FATAL(m && d);
    popk_binding *b = popk_model_bind(m, d, &err);
    popk_pred_ws *ws = popk_pred_ws_new(m, &err);
    CU_ASSERT_FATAL(b && ws);
    popk_pred_result res;
    CU_ASSERT_EQUAL(popk_pred_subject(ws, m, d, b, 0, NULL, NULL, NULL, &res, &err),
                    POPK_ERR_NUMERIC);
    printf("\n    -> %s", err.message);
    expect(err.message, "subject ID 8");
    expect(err.message, "bioavailability");
    expect(err.message, "'f1'");
    expect(err.message, "line 2");
    popk_pred_ws_free(ws);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
}

/* ---- popk predict --------------------------------------------------------------------------- */

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void test_cli_no_partial_output(void)
{
    char dir[] = "/tmp/popk_pred_faults_XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    char model[4200], data[4200], out[4200], err_path[4200], cmd[20000], text[4096];
    snprintf(model, sizeof model, "%s/m.yaml", dir);
    snprintf(data, sizeof data, "%s/d.csv", dir);
    snprintf(out, sizeof out, "%s/pred.csv", dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", dir);
    snprintf(text, sizeof text, "%s%s", header,
             "individual:\n  cl: tcl * exp(eta_cl)\n  v: tv * (WT - 80)\n"
             "linear:\n  CL: cl\n  V: v\n"
             "observe:\n  cp: {value: central / v, error: {additive: sd}}\n");
    CU_ASSERT_FATAL(write_file(model, text) == 0);
    /* Subject 6 predicts fine and comes first: its rows must not reach the output either. */
    CU_ASSERT_FATAL(write_file(data, "ID,TIME,AMT,CMT,EVID,WT,DV\n"
                                     "6,0,100,1,1,90,0\n6,2,0,1,0,90,1\n"
                                     "7,0,100,1,1,90,0\n7,2,0,1,0,90,1\n7,6,0,1,0,70,1\n") == 0);
    snprintf(cmd, sizeof cmd, "'%s' predict '%s' '%s' --out '%s' 2>'%s'", getenv("POPK_EXE"),
             model, data, out, err_path);
    int rc = system(cmd);
    CU_ASSERT(WIFEXITED(rc) && WEXITSTATUS(rc) != 0);
    struct stat sb;
    CU_ASSERT(stat(out, &sb) != 0); /* no output file, not even a partial one */
    FILE *f = fopen(err_path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    printf("\n    popk predict stderr: %s", text);
    expect(text, "subject ID 7");
    expect(text, "'v'");
    /* The directory holds nothing but the inputs and stderr (no temporary left behind). */
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 3", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

/* popk predict with --params and --eta (ID 2 listed, others zero) gives the engine's
 * predictions for those parameters, to the 10 significant digits it prints. */
static void test_cli_params_and_etas(void)
{
    char dir[] = "/tmp/popk_pred_cli_XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    char params[256], etas[256], out[256], cmd[16384];
    snprintf(params, sizeof params, "%s/params.txt", dir);
    snprintf(etas, sizeof etas, "%s/eta.csv", dir);
    snprintf(out, sizeof out, "%s/pred.csv", dir);
    CU_ASSERT_FATAL(write_file(params, "# thetas\ntcl = 1.2\ntv = 3.3\nadd_sd = 0.5\n") == 0);
    CU_ASSERT_FATAL(write_file(etas, "ID,SD,eta_v,eta_cl,eta_ka\n2,9,0.05,-0.2,0.1\n") == 0);
    char model[4096], data[4096];
    snprintf(model, sizeof model, "%s", popk_test_src("models/theophylline.yaml"));
    snprintf(data, sizeof data, "%s", popk_test_src("datasets/theo_sd.csv"));
    snprintf(cmd, sizeof cmd, "'%s' predict '%s' '%s' --params '%s' --eta '%s' --out '%s'",
             getenv("POPK_EXE"), model, data, params, etas, out);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);

    popk_error err;
    popk_model *m = popk_model_load(model, &err);
    popk_data *d = popk_data_read(data, &err);
    CU_ASSERT_FATAL(m && d);
    popk_binding *b = popk_model_bind(m, d, &err);
    popk_pred_ws *ws = popk_pred_ws_new(m, &err);
    CU_ASSERT_FATAL(b && ws);
    double theta[3] = {0.45, 1.2, 3.3}; /* tka tcl tv */
    FILE *f = fopen(out, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[4096];
    CU_ASSERT_PTR_NOT_NULL_FATAL(fgets(line, sizeof line, f));
    CU_ASSERT_STRING_EQUAL(line, "ID,TIME,EVID,CMT,cp,A_depot,A_central\n");
    size_t rows = 0;
    for (size_t s = 0; s < d->nsub; s++) {
        double eta[3] = {0, 0, 0};
        if (d->sub[s].id == 2) {
            eta[0] = 0.1;
            eta[1] = -0.2;
            eta[2] = 0.05;
        }
        popk_pred_result res;
        CU_ASSERT_FATAL(popk_pred_subject(ws, m, d, b, s, theta, eta, NULL, &res, &err) ==
                        POPK_OK);
        for (size_t r = 0; r < res.nrec; r++, rows++) {
            double id, t, cp, a1, a2;
            int evid, cmt;
            CU_ASSERT_FATAL(fgets(line, sizeof line, f) != NULL);
            CU_ASSERT_FATAL(sscanf(line, "%lf,%lf,%d,%d,%lf,%lf,%lf", &id, &t, &evid, &cmt, &cp,
                                   &a1, &a2) == 7);
            CU_ASSERT_EQUAL(id, d->sub[s].id);
            CU_ASSERT_DOUBLE_EQUAL(cp, res.out[r], 1e-9 * fabs(res.out[r]) + 1e-12);
            CU_ASSERT_DOUBLE_EQUAL(a2, res.amt[r * 2 + 1], 1e-9 * fabs(res.amt[r * 2 + 1]) + 1e-12);
        }
    }
    CU_ASSERT_PTR_NULL(fgets(line, sizeof line, f));
    CU_ASSERT_EQUAL(rows, d->nrec);
    fclose(f);
    popk_pred_ws_free(ws);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("pred_faults", NULL, NULL);
    CU_add_test(s, "ode_too_much_work", test_ode_too_much_work);
    CU_add_test(s, "ode_nan_rhs", test_ode_nan_rhs);
    CU_add_test(s, "negative_parameter_linear", test_negative_parameter_linear);
    CU_add_test(s, "nan_parameter", test_nan_parameter);
    CU_add_test(s, "negative_bioavailability", test_negative_bioavailability);
    CU_add_test(s, "predict_cli_no_partial_output", test_cli_no_partial_output);
    CU_add_test(s, "predict_cli_params_and_etas", test_cli_params_and_etas);
    return popk_test_run();
}
