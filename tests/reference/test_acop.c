/* Conformance: the analytic and ODE paths agree on the 12 ACOP datasets with each subject's
 * true individual parameters; Michaelis-Menten files (no closed form) are checked against an
 * independent fixed-step RK4 integration written here. The ODE path is CVODES (method bdf
 * forced: the linear models would otherwise be solved by matrix exponential); the matrix
 * exponential path is checked against the closed forms too (column "expm"). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/popk_test.h"
#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"

static const char *const files[] = {"Bolus_1CPT",    "Bolus_2CPT",    "Infusion_1CPT",
                                    "Infusion_2CPT", "Oral_1CPT",     "Oral_2CPT",
                                    "Bolus_1CPTMM",  "Bolus_2CPTMM",  "Infusion_1CPTMM",
                                    "Infusion_2CPTMM", "Oral_1CPTMM", "Oral_2CPTMM"};
enum { NFILES = sizeof files / sizeof files[0] };

/* Tight solver tolerances for the ODE side of every comparison. */
#define ODE_RTOL 1e-10
#define ODE_ATOL 1e-10

typedef struct {
    popk_model *m;
    popk_binding *b;
    popk_pred_ws *ws;
    int *eta_col;   /* data column of the true value behind each eta */
    int *eta_theta; /* theta index paired with each eta (P = exp(theta + eta)) */
} path_ctx;

static void report(const popk_error *err)
{
    char buf[1024];
    fprintf(stderr, "%s\n", popk_error_format(err, buf, sizeof buf));
}

static void close_path(path_ctx *p)
{
    popk_pred_ws_free(p->ws);
    popk_binding_free(p->b);
    popk_model_free(p->m);
    free(p->eta_col);
    free(p->eta_theta);
    memset(p, 0, sizeof *p);
}

/* Load a model, bind it and pair each eta_xx with theta txx and data column XX (V falls
 * back to V1, V3 to V2). */
static int open_path(path_ctx *p, const char *model, const popk_data *d)
{
    char rel[256];
    popk_error err;
    memset(p, 0, sizeof *p);
    snprintf(rel, sizeof rel, "models/acop/%s.yaml", model);
    if (!(p->m = popk_model_load(popk_test_src(rel), &err)) ||
        !(p->b = popk_model_bind(p->m, d, &err)) || !(p->ws = popk_pred_ws_new(p->m, &err))) {
        report(&err);
        return -1;
    }
    p->m->rtol = ODE_RTOL;
    p->m->atol = ODE_ATOL;
    p->m->ode_method = POPK_ODE_BDF;
    int ne = p->m->neta;
    p->eta_col = calloc((size_t)ne, sizeof(int));
    p->eta_theta = calloc((size_t)ne, sizeof(int));
    for (int k = 0; k < ne; k++) {
        const char *suffix = p->m->eta_name[k] + 4; /* after "eta_" */
        char col[16], th[16];
        size_t i;
        for (i = 0; suffix[i] && i < sizeof col - 1; i++)
            col[i] = (char)toupper((unsigned char)suffix[i]);
        col[i] = '\0';
        snprintf(th, sizeof th, "t%s", suffix);
        p->eta_col[k] = popk_data_find_cov(d, col);
        if (p->eta_col[k] < 0 && !strcmp(col, "V"))
            p->eta_col[k] = popk_data_find_cov(d, "V1");
        if (p->eta_col[k] < 0 && !strcmp(col, "V3")) /* ADVAN4 naming: V3 is peripheral */
            p->eta_col[k] = popk_data_find_cov(d, "V2");
        p->eta_theta[k] = -1;
        for (int j = 0; j < p->m->ntheta; j++)
            if (!strcmp(p->m->theta[j].name, th))
                p->eta_theta[k] = j;
        if (p->eta_col[k] < 0 || p->eta_theta[k] < 0) {
            fprintf(stderr, "%s: no true value or theta for %s\n", model, p->m->eta_name[k]);
            return -1;
        }
    }
    return 0;
}

/* eta_k = log(P_true) - theta_k for subject s. */
static void true_etas(const path_ctx *p, const popk_data *d, size_t s, double *eta)
{
    size_t r = d->sub[s].first;
    for (int k = 0; k < p->m->neta; k++)
        eta[k] = log(d->cov[p->eta_col[k]].values[r]) - p->m->theta[p->eta_theta[k]].init;
}

/* ---- independent reference for the Michaelis-Menten models ------------------------------ */

typedef struct {
    int depot, ncmt;          /* layout: [depot,] central[, peripheral] */
    double vm, km, v, q, v2, ka;
} mm_sys;

static void mm_rhs(const mm_sys *s, const double *a, const double *r, double *f)
{
    int c = s->depot;
    double conc = a[c] / s->v;
    if (s->depot)
        f[0] = -s->ka * a[0] + r[0];
    f[c] = (s->depot ? s->ka * a[0] : 0.0) - s->vm * conc / (s->km + conc) + r[c];
    if (s->ncmt == 2) {
        double flow = s->q / s->v * a[c] - s->q / s->v2 * a[c + 1];
        f[c] -= flow;
        f[c + 1] = flow + r[c + 1];
    }
}

/* Classical RK4 over [0, dt] in equal steps no longer than h. */
static void rk4(const mm_sys *s, double *a, const double *r, double dt, double h)
{
    int n = s->depot + s->ncmt;
    long steps = (long)ceil(dt / h);
    double k[4][3], y[3];
    if (dt <= 0.0)
        return;
    h = dt / (double)steps;
    for (long it = 0; it < steps; it++) {
        mm_rhs(s, a, r, k[0]);
        for (int i = 0; i < n; i++)
            y[i] = a[i] + 0.5 * h * k[0][i];
        mm_rhs(s, y, r, k[1]);
        for (int i = 0; i < n; i++)
            y[i] = a[i] + 0.5 * h * k[1][i];
        mm_rhs(s, y, r, k[2]);
        for (int i = 0; i < n; i++)
            y[i] = a[i] + h * k[2][i];
        mm_rhs(s, y, r, k[3]);
        for (int i = 0; i < n; i++)
            a[i] += h / 6.0 * (k[0][i] + 2.0 * k[1][i] + 2.0 * k[2][i] + k[3][i]);
    }
}

static double col_value(const popk_data *d, size_t r, const char *name, const char *alt)
{
    int c = popk_data_find_cov(d, name);
    if (c < 0 && alt)
        c = popk_data_find_cov(d, alt);
    return c < 0 ? NAN : d->cov[c].values[r];
}

/* Central concentration at every record of subject s with its true parameters. These files
 * hold only plain boluses and 1-h infusions (RATE > 0, no SS, ADDL or lag), one infusion at
 * a time, so the event handling here can stay minimal. */
static void mm_reference(const popk_data *d, size_t s, int depot, int ncmt, double *cp)
{
    const popk_subject *sub = &d->sub[s];
    size_t r0 = sub->first;
    mm_sys sys = {depot, ncmt, col_value(d, r0, "VM", NULL), col_value(d, r0, "KM", NULL),
                  col_value(d, r0, "V", "V1"), col_value(d, r0, "Q", NULL),
                  col_value(d, r0, "V2", NULL), col_value(d, r0, "KA", NULL)};
    /* RK4's error per unit time scales as (h lambda)^4 lambda: h lambda = 0.01 keeps the
     * global relative error near 1e-9 over 288 h. */
    double lambda = sys.vm / (sys.km * sys.v) + (depot ? sys.ka : 0.0) +
                    (ncmt == 2 ? sys.q / sys.v + sys.q / sys.v2 : 0.0);
    double h = fmin(0.01 / lambda, 0.02);
    double a[3] = {0}, rate[3] = {0}, t = d->rec[r0].time, inf_end = INFINITY;
    int inf_cmt = -1;
    for (size_t r = 0; r < sub->n; r++) {
        const popk_record *rec = &d->rec[r0 + r];
        if (inf_cmt >= 0 && inf_end <= rec->time) {
            rk4(&sys, a, rate, inf_end - t, h);
            t = inf_end;
            rate[inf_cmt] = 0.0;
            inf_cmt = -1;
        }
        rk4(&sys, a, rate, rec->time - t, h);
        t = rec->time;
        if (rec->evid == 1) {
            int c = (rec->cmt ? rec->cmt : 1) - 1;
            if (rec->rate > 0.0) {
                CU_ASSERT_FATAL(inf_cmt < 0);
                inf_cmt = c;
                rate[c] = rec->rate;
                inf_end = t + rec->amt / rec->rate;
            } else {
                a[c] += rec->amt;
            }
        }
        cp[r] = a[depot] / sys.v;
    }
}

/* ---- the comparison ----------------------------------------------------------------------- */

static double rel_diff(double a, double b)
{
    double scale = fmax(fabs(a), fabs(b));
    return scale > 0.0 ? fabs(a - b) / scale : 0.0;
}

static void test_acop(void)
{
    printf("\n  %-16s %-20s %8s %8s %14s %6s %6s %10s\n", "file", "ODE compared with",
           "subjects", "records", "max rel diff", "ode s", "ref s", "expm");
    int failures = 0;
    for (int f = 0; f < NFILES; f++) {
        char rel[256], ode_name[64];
        popk_error err;
        snprintf(rel, sizeof rel, "tests/reference/data/acop/%s.csv", files[f]);
        popk_data *d = popk_data_read(popk_test_src(rel), &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        int mm = strstr(files[f], "MM") != NULL;
        snprintf(ode_name, sizeof ode_name, mm ? "%s" : "%s_ode", files[f]);
        path_ctx ode, lin = {0}, exm = {0};
        int ok = open_path(&ode, ode_name, d) == 0 &&
                 (mm || (open_path(&lin, files[f], d) == 0 && open_path(&exm, ode_name, d) == 0));
        CU_ASSERT_FATAL(ok);
        if (!mm) {
            exm.m->ode_method = POPK_ODE_AUTO;
            CU_ASSERT_FATAL(popk_model_uses_expm(exm.m));
        }
        double worst_expm = 0.0;
        int depot = !strncmp(files[f], "Oral", 4), ncmt = strstr(files[f], "2CPT") ? 2 : 1;
        double worst = 0.0, eta[8], ref[200], t_ode = 0.0, t_ref = 0.0;
        size_t nrec = 0;
        for (size_t s = 0; s < d->nsub; s++) {
            popk_pred_result ro, rl;
            size_t n = d->sub[s].n;
            CU_ASSERT_FATAL(n <= 200);
            true_etas(&ode, d, s, eta);
            clock_t c0 = clock();
            if (popk_pred_subject(ode.ws, ode.m, d, ode.b, s, NULL, eta, NULL, &ro, &err)) {
                report(&err);
                CU_FAIL("ODE prediction failed");
                failures++;
                continue;
            }
            clock_t c1 = clock();
            t_ode += (double)(c1 - c0) / CLOCKS_PER_SEC;
            if (mm) {
                mm_reference(d, s, depot, ncmt, ref);
            } else {
                true_etas(&lin, d, s, eta);
                if (popk_pred_subject(lin.ws, lin.m, d, lin.b, s, NULL, eta, NULL, &rl, &err)) {
                    report(&err);
                    CU_FAIL("analytic prediction failed");
                    failures++;
                    continue;
                }
                for (size_t r = 0; r < n; r++)
                    ref[r] = rl.out[r * (size_t)rl.nout];
                popk_pred_result rx;
                if (popk_pred_subject(exm.ws, exm.m, d, exm.b, s, NULL, eta, NULL, &rx, &err)) {
                    report(&err);
                    CU_FAIL("matrix exponential prediction failed");
                    failures++;
                    continue;
                }
                for (size_t r = 0; r < n; r++)
                    worst_expm = fmax(worst_expm, rel_diff(rx.out[r * (size_t)rx.nout], ref[r]));
            }
            t_ref += (double)(clock() - c1) / CLOCKS_PER_SEC;
            for (size_t r = 0; r < n; r++)
                worst = fmax(worst, rel_diff(ro.out[r * (size_t)ro.nout], ref[r]));
            nrec += n;
        }
        int bad = !(worst < 1e-6) || !(worst_expm < 1e-9);
        failures += bad;
        char expm_col[16] = "-"; /* no matrix exponential for Michaelis-Menten */
        if (!mm)
            snprintf(expm_col, sizeof expm_col, "%.2e", worst_expm);
        printf("  %-16s %-20s %8zu %8zu %14.2e %6.2f %6.2f %10s%s\n", files[f],
               mm ? "RK4 reference" : "closed form", d->nsub, nrec, worst, t_ode, t_ref,
               expm_col, bad ? "  FAIL" : "");
        close_path(&ode);
        close_path(&lin);
        close_path(&exm);
        popk_data_free(d);
    }
    CU_ASSERT_EQUAL(failures, 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("acop", NULL, NULL);
    CU_add_test(s, "analytic_vs_ode", test_acop);
    return popk_test_run();
}
