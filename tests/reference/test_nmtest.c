/* Conformance: popk's predictions against NONMEM 7.4.3's own output for the 54 dosing
 * scenarios of nmtest (tests/reference/data/README.md), on the analytic path, the ODE path
 * through CVODES (method bdf forced) and the ODE path by matrix exponential (the default for
 * this linear system). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/popk_test.h"
#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"

typedef struct {
    popk_model *m;
    popk_binding *b;
    popk_pred_ws *ws;
} path_ctx;

static popk_data *data;
static path_ctx lin, ode, exm;

static int open_path(path_ctx *p, const char *rel)
{
    popk_error err;
    char buf[1024];
    p->m = popk_model_load(popk_test_src(rel), &err);
    if (!p->m) {
        fprintf(stderr, "%s\n", popk_error_format(&err, buf, sizeof buf));
        return -1;
    }
    p->b = popk_model_bind(p->m, data, &err);
    p->ws = p->b ? popk_pred_ws_new(p->m, &err) : NULL;
    if (!p->ws) {
        fprintf(stderr, "%s\n", popk_error_format(&err, buf, sizeof buf));
        return -1;
    }
    return 0;
}

static void close_path(path_ctx *p)
{
    popk_pred_ws_free(p->ws);
    popk_binding_free(p->b);
    popk_model_free(p->m);
}

static int setup(void)
{
    popk_error err;
    data = popk_data_read(popk_test_src("tests/reference/data/nmtest.csv"), &err);
    if (!data)
        return -1;
    if (open_path(&lin, "models/nmtest.yaml") || open_path(&ode, "models/nmtest_ode.yaml") ||
        open_path(&exm, "models/nmtest_ode.yaml"))
        return -1;
    ode.m->ode_method = POPK_ODE_BDF;
    return popk_model_uses_expm(exm.m) ? 0 : -1;
}

static int teardown(void)
{
    close_path(&lin);
    close_path(&ode);
    close_path(&exm);
    popk_data_free(data);
    return 0;
}

/* Short description of a subject's dosing scenario. */
static void features(size_t s, char *buf, size_t size)
{
    const popk_subject *sub = &data->sub[s];
    int bolus = 0, inf = 0, ss1 = 0, ss2 = 0, addl = 0, reset = 0, lag = 0, fchg = 0, model_r = 0;
    int clag = popk_data_find_cov(data, "LAGT"), cf = popk_data_find_cov(data, "BIOAV");
    for (size_t r = sub->first; r < sub->first + sub->n; r++) {
        const popk_record *rec = &data->rec[r];
        if (rec->evid == 3 || rec->evid == 4)
            reset = 1;
        if (rec->evid != 1 && rec->evid != 4)
            continue;
        if (rec->rate > 0)
            inf = 1;
        else if (rec->rate < 0)
            model_r = 1;
        else
            bolus = 1;
        ss1 |= rec->ss == 1;
        ss2 |= rec->ss == 2;
        addl |= rec->addl > 0;
        lag |= data->cov[clag].values[r] != 0.0;
        fchg |= data->cov[cf].values[r] != 1.0;
    }
    snprintf(buf, size, "%s%s%s%s%s%s%s%s%s", bolus ? "bolus " : "", inf ? "infusion " : "",
             model_r ? "modelled-rate/dur " : "", ss1 ? "SS1 " : "", ss2 ? "SS2 " : "",
             addl ? "ADDL " : "", lag ? "lag " : "", fchg ? "F " : "", reset ? "reset " : "");
}

static double max_rel(double a, double b)
{
    double scale = fmax(fabs(a), fabs(b));
    return scale > 0 ? fabs(a - b) / scale : 0.0;
}

static void test_nmtest(void)
{
    int ccp = popk_data_find_cov(data, "CP");
    CU_ASSERT_FATAL(ccp >= 0);
    printf("\n  %-5s %-48s %10s %10s %10s %10s %10s\n", "ID", "scenario", "analytic", "ode",
           "expm", "lin-vs-ode", "lin-vs-exp");
    int failures = 0, checked = 0;
    for (size_t s = 0; s < data->nsub; s++) {
        popk_error err;
        popk_pred_result rl, ro;
        const popk_subject *sub = &data->sub[s];
        int okl = popk_pred_subject(lin.ws, lin.m, data, lin.b, s, NULL, NULL, NULL, &rl, &err) == POPK_OK;
        double out_l[200];
        size_t n = sub->n < 200 ? sub->n : 200;
        for (size_t r = 0; okl && r < n; r++)
            out_l[r] = rl.out[r * rl.nout];
        popk_pred_result rx;
        int okx = okl && popk_pred_subject(exm.ws, exm.m, data, exm.b, s, NULL, NULL, NULL, &rx,
                                           &err) == POPK_OK;
        int oko = okx && popk_pred_subject(ode.ws, ode.m, data, ode.b, s, NULL, NULL, NULL, &ro,
                                           &err) == POPK_OK;
        CU_ASSERT(okl && okx && oko);
        if (!okl || !okx || !oko) {
            char buf[1024];
            printf("  ID %g failed: %s\n", sub->id, popk_error_format(&err, buf, sizeof buf));
            failures++;
            continue;
        }
        double el = 0, eo = 0, ex = 0, elo = 0, elx = 0;
        int given = 0;
        for (size_t r = 0; r < n; r++) {
            const popk_record *rec = &data->rec[sub->first + r];
            if (rec->evid != 0)
                continue;
            double pl = out_l[r], po = ro.out[r * ro.nout], px = rx.out[r * rx.nout];
            elo = fmax(elo, fabs(pl - po) <= 1e-6 ? 0.0 : max_rel(pl, po));
            elx = fmax(elx, fabs(pl - px) <= 1e-6 ? 0.0 : max_rel(pl, px));
            double cp = data->cov[ccp].values[sub->first + r];
            if (isnan(cp))
                continue;
            given = 1;
            el = fmax(el, fabs(pl - cp) <= 1e-6 ? 0.0 : max_rel(pl, cp));
            eo = fmax(eo, fabs(po - cp) <= 1e-6 ? 0.0 : max_rel(po, cp));
            ex = fmax(ex, fabs(px - cp) <= 1e-6 ? 0.0 : max_rel(px, cp));
        }
        char feat[128];
        features(s, feat, sizeof feat);
        int bad = elo > 1e-6 || elx > 1e-6 ||
                  (given && (el > 1e-4 || eo > 1e-4 || ex > 1e-4));
        if (given) {
            printf("  %-5g %-48s %10.2e %10.2e %10.2e %10.2e %10.2e%s\n", sub->id, feat, el, eo,
                   ex, elo, elx, bad ? "  FAIL" : "");
            checked++;
        } else {
            printf("  %-5g %-48s %10s %10s %10s %10.2e %10.2e%s\n", sub->id, feat, "withheld",
                   "withheld", "withheld", elo, elx, bad ? "  FAIL" : "");
        }
        failures += bad;
    }
    printf("  %d subjects compared with NONMEM, %d failing\n", checked, failures);
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT(checked >= 26);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("nmtest", setup, teardown);
    CU_add_test(s, "nonmem_conformance", test_nmtest);
    return popk_test_run();
}
