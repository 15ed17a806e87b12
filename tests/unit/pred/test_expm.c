/* Tests of the matrix-exponential path for linear odes: models (pred/expm.c, the linearity
 * check in expr/affine.c and model.c): exp() against closed forms, the ODE path against the
 * linear closed forms and against CVODES on the ACOP and nmtest data, derivatives against
 * closed-form derivatives and central differences, and the choice of method at load. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/popk_test.h"
#include "data/data.h"
#include "model/model.h"
#include "pred/expm.h"
#include "pred/pred.h"

static void report(const popk_error *err)
{
    char buf[1024];
    fprintf(stderr, "%s\n", popk_error_format(err, buf, sizeof buf));
}

static double rel_diff(double a, double b, double floor_)
{
    double scale = fmax(fmax(fabs(a), fabs(b)), floor_);
    return scale > 0.0 ? fabs(a - b) / scale : 0.0;
}

/* ---- exp() of small matrices against closed forms ----------------------------------------- */

static double work[8192];

/* exp of the 2 x 2 upper triangular [[a, b], [0, c]] (a != c), with the partials of the
 * (0, 1) entry in a: both against the closed forms, over norms that select every Pade degree
 * and scaling from none to many squarings. */
static void test_dense_triangular(void)
{
    static const double sizes[] = {1e-4, 1e-2, 0.2, 0.8, 1.9, 4.0, 30.0, 700.0};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        double x = sizes[k], a = -x, b = 0.7 * x, c = -x / 3.0;
        /* planes: values, d/da, d/db */
        double X[3 * 4] = {a, b, 0, c, 1, 0, 0, 0, 0, 1, 0, 0}, E[3 * 4];
        CU_ASSERT_EQUAL_FATAL(popk_expm_dense(2, 2, X, E, work), 0);
        /* q = (e^a - e^c) / (a - c) and dq/da = e^c f(a - c), f(d) = (d e^d - e^d + 1) / d^2
         * = sum_k>=2 (k - 1) d^(k-2) / k!, free of cancellation for a near c. */
        double ea = exp(a), ec = exp(c), dd = a - c, q = ec * expm1(dd) / dd, f = 0.0;
        if (fabs(dd) < 0.5)
            for (int j = 30; j >= 2; j--) {
                double term = j - 1.0;
                for (int i = 1; i <= j; i++)
                    term /= i;
                f = f * dd + term;
            }
        else
            f = (dd * exp(dd) - expm1(dd)) / (dd * dd);
        double want[4] = {ea, b * q, 0.0, ec};
        double dq_da = ec * f;
        double want_da[4] = {ea, b * dq_da, 0.0, 0.0}, want_db[4] = {0.0, q, 0.0, 0.0};
        double worst = 0.0;
        for (int e = 0; e < 4; e++) {
            worst = fmax(worst, rel_diff(E[e], want[e], ea));
            worst = fmax(worst, rel_diff(E[4 + e], want_da[e], ea));
            worst = fmax(worst, rel_diff(E[8 + e], want_db[e], q));
        }
        /* exp's condition grows with the norm: up to 1e-13 below 50, then proportional */
        double tol = 2e-15 * fmax(50.0, x);
        if (!(worst < tol))
            printf("\n    norm %g: relative error %.2e", x, worst);
        CU_ASSERT(worst < tol);
    }
}

/* Rotation generator [[0, w], [-w, 0]]: exp = [[cos w, sin w], [-sin w, cos w]]; the
 * derivative in w is the rotation times the generator / w. Nilpotent 3 x 3 shift times t:
 * exp = [[1, t, t^2/2], [0, 1, t], [0, 0, 1]] exactly. Zero matrix: identity. */
static void test_dense_rotation_nilpotent(void)
{
    static const double ws[] = {0.05, 1.0, 3.0, 20.0};
    for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++) {
        double w = ws[k];
        double X[8] = {0, w, -w, 0, 0, 1, -1, 0}, E[8];
        CU_ASSERT_EQUAL_FATAL(popk_expm_dense(2, 1, X, E, work), 0);
        double want[8] = {cos(w), sin(w), -sin(w), cos(w), -sin(w), cos(w), -cos(w), -sin(w)};
        for (int e = 0; e < 8; e++)
            CU_ASSERT(fabs(E[e] - want[e]) < 1e-14 * fmax(1.0, w));
    }
    for (double t = 0.01; t < 2000.0; t *= 13.0) {
        double X[9] = {0, t, 0, 0, 0, t, 0, 0, 0}, E[9];
        CU_ASSERT_EQUAL_FATAL(popk_expm_dense(3, 0, X, E, work), 0);
        double want[9] = {1, t, t * t / 2, 0, 1, t, 0, 0, 1};
        for (int e = 0; e < 9; e++)
            CU_ASSERT(rel_diff(E[e], want[e], 1.0) < 1e-14);
    }
    double Z[4] = {0}, E[4];
    CU_ASSERT_EQUAL(popk_expm_dense(2, 0, Z, E, work), 0);
    CU_ASSERT(E[0] == 1.0 && E[1] == 0.0 && E[2] == 0.0 && E[3] == 1.0);
    double bad[4] = {NAN, 0, 0, 0};
    CU_ASSERT_EQUAL(popk_expm_dense(2, 0, bad, E, work), -1);
}

/* Partials of an augmented 4 x 4 compartment matrix against central differences along two
 * directions (one perturbing the rates, one the input column). */
static void test_dense_fd(void)
{
    const int N = 4;
    double X0[16] = {-1.5, 0, 0, 0, 1.5, -0.9, 0.4, 50.0, 0, 0.5, -0.4, 0, 0, 0, 0, 0};
    double D1[16] = {-1, 0, 0, 0, 1, 0.3, 0, 0, 0, 0, 0.2, 0, 0, 0, 0, 0};
    double D2[16] = {0, 0, 0, 0, 0, 0, 0, 8.0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (double t = 0.1; t < 100.0; t *= 6.0) {
        double X[48], E[48], Xp[16], Xm[16], Ep[16], Em[16];
        for (int e = 0; e < 16; e++) {
            X[e] = t * X0[e];
            X[16 + e] = t * D1[e];
            X[32 + e] = t * D2[e];
        }
        CU_ASSERT_EQUAL_FATAL(popk_expm_dense(N, 2, X, E, work), 0);
        for (int dir = 0; dir < 2; dir++) {
            const double *D = dir ? D2 : D1;
            double h = 1e-5, worst = 0.0, scale = 0.0;
            for (int e = 0; e < 16; e++) {
                Xp[e] = t * (X0[e] + h * D[e]);
                Xm[e] = t * (X0[e] - h * D[e]);
            }
            popk_expm_dense(N, 0, Xp, Ep, work);
            popk_expm_dense(N, 0, Xm, Em, work);
            for (int e = 0; e < 16; e++)
                scale = fmax(scale, fabs(E[16 * (1 + dir) + e]));
            for (int e = 0; e < 16; e++)
                worst = fmax(worst, fabs((Ep[e] - Em[e]) / (2 * h) - E[16 * (1 + dir) + e]));
            if (!(worst < 1e-7 * scale))
                printf("\n    t %g direction %d: error %.2e of %.2e", t, dir, worst, scale);
            CU_ASSERT(worst < 1e-7 * scale);
        }
    }
}

/* ---- models ---------------------------------------------------------------------------- */

typedef struct {
    popk_model *m;
    popk_binding *b;
    popk_pred_ws *ws;
} path;

static int open_model(path *p, popk_model *m, const popk_data *d)
{
    popk_error err;
    memset(p, 0, sizeof *p);
    p->m = m;
    if (!m || !(p->b = popk_model_bind(m, d, &err)) || !(p->ws = popk_pred_ws_new(m, &err))) {
        if (m)
            report(&err);
        return -1;
    }
    return 0;
}

static int open_file(path *p, const char *rel, const popk_data *d)
{
    popk_error err;
    popk_model *m = popk_model_load(popk_test_src(rel), &err);
    if (!m)
        report(&err);
    return open_model(p, m, d);
}

static void close_path(path *p)
{
    popk_pred_ws_free(p->ws);
    popk_binding_free(p->b);
    popk_model_free(p->m);
    memset(p, 0, sizeof *p);
}


/* Largest relative difference of output 0 between two paths over every record of d
 * (differences below abs_floor count as zero: amounts that vanish). Counts failures. */
static double compare_paths(path *a, path *b, const popk_data *d, const double *eta_of,
                            int neta, double abs_floor, int *failed)
{
    double worst = 0.0;
    for (size_t s = 0; s < d->nsub; s++) {
        popk_error err;
        popk_pred_result ra, rb;
        const double *eta = eta_of ? eta_of + s * (size_t)neta : NULL;
        if (popk_pred_subject(a->ws, a->m, d, a->b, s, NULL, eta, NULL, &ra, &err) ||
            popk_pred_subject(b->ws, b->m, d, b->b, s, NULL, eta, NULL, &rb, &err)) {
            report(&err);
            (*failed)++;
            continue;
        }
        /* ra's buffers belong to a's workspace: still valid after b ran */
        for (size_t r = 0; r < ra.nrec; r++) {
            double x = ra.out[r * (size_t)ra.nout], y = rb.out[r * (size_t)rb.nout];
            if (fabs(x - y) > abs_floor)
                worst = fmax(worst, rel_diff(x, y, 0.0));
        }
    }
    return worst;
}

/* The ACOP structures: each file's linear ODE model and its closed form (MM files use the
 * linear model of the same route and compartments: their dosing designs are what counts). */
static const char *const acop_files[] = {
    "Bolus_1CPT", "Bolus_2CPT", "Infusion_1CPT", "Infusion_2CPT", "Oral_1CPT", "Oral_2CPT",
    "Bolus_1CPTMM", "Bolus_2CPTMM", "Infusion_1CPTMM", "Infusion_2CPTMM", "Oral_1CPTMM",
    "Oral_2CPTMM"};

/* Deterministic etas spread like omega 0.15 (sd ~0.39), different per subject. */
static double *spread_etas(size_t nsub, int neta)
{
    double *eta = malloc(sizeof(double) * nsub * (size_t)neta);
    for (size_t s = 0; s < nsub; s++)
        for (int k = 0; k < neta; k++)
            eta[s * (size_t)neta + k] = 0.5 * sin(1.7 * (double)s + 2.3 * k + 0.4);
    return eta;
}

/* expm against the closed forms on all 12 ACOP files, every subject: 1e-9. The models are
 * detected as linear and solved by expm by default. */
static void test_acop_vs_closed_form(void)
{
    printf("\n  %-16s %12s %12s", "file", "vs closed", "vs CVODES");
    for (size_t f = 0; f < sizeof acop_files / sizeof acop_files[0]; f++) {
        char rel[256], base[64];
        popk_error err;
        snprintf(rel, sizeof rel, "tests/reference/data/acop/%s.csv", acop_files[f]);
        popk_data *d = popk_data_read(popk_test_src(rel), &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        snprintf(base, sizeof base, "%s", acop_files[f]);
        char *mm = strstr(base, "MM");
        if (mm)
            *mm = '\0';
        path lin = {0}, ex = {0}, bdf = {0};
        char lrel[256], orel[256];
        snprintf(lrel, sizeof lrel, "models/acop/%s.yaml", base);
        snprintf(orel, sizeof orel, "models/acop/%s_ode.yaml", base);
        CU_ASSERT_FATAL(open_file(&lin, lrel, d) == 0 && open_file(&ex, orel, d) == 0 &&
                        open_file(&bdf, orel, d) == 0);
        CU_ASSERT(ex.m->ode_affine && popk_model_uses_expm(ex.m));
        bdf.m->ode_method = POPK_ODE_BDF;
        bdf.m->rtol = 1e-13;
        bdf.m->atol = 1e-13;
        CU_ASSERT(!popk_model_uses_expm(bdf.m));
        double *eta = spread_etas(d->nsub, ex.m->neta);
        int failed = 0;
        double w_lin = compare_paths(&ex, &lin, d, eta, ex.m->neta, 1e-12, &failed);
        /* CVODES at rtol 1e-13 is slow: every 15th subject. */
        popk_data *few = NULL;
        unsigned char *keep = calloc(d->nrec, 1);
        double eta_few[200 * 8];
        size_t nfew = 0;
        CU_ASSERT_FATAL(d->nsub <= 200 && ex.m->neta <= 8);
        for (size_t s = 0; s < d->nsub; s += 15, nfew++) {
            memset(keep + d->sub[s].first, 1, d->sub[s].n);
            memcpy(eta_few + nfew * (size_t)ex.m->neta, eta + s * (size_t)ex.m->neta,
                   sizeof(double) * (size_t)ex.m->neta);
        }
        few = popk_data_subset(d, keep, &err);
        free(keep);
        CU_ASSERT_PTR_NOT_NULL_FATAL(few);
        path ex2 = {0}, bdf2 = {0};
        CU_ASSERT_FATAL(open_model(&ex2, ex.m, few) == 0 && open_model(&bdf2, bdf.m, few) == 0);
        double w_bdf = compare_paths(&ex2, &bdf2, few, eta_few, ex.m->neta, 1e-12, &failed);
        printf("\n  %-16s %12.2e %12.2e", acop_files[f], w_lin, w_bdf);
        CU_ASSERT_EQUAL(failed, 0);
        CU_ASSERT(w_lin < 1e-9);
        CU_ASSERT(w_bdf < 1e-9);
        popk_pred_ws_free(ex2.ws);
        popk_binding_free(ex2.b);
        popk_pred_ws_free(bdf2.ws);
        popk_binding_free(bdf2.b);
        popk_data_free(few);
        free(eta);
        close_path(&lin);
        close_path(&ex);
        close_path(&bdf);
        popk_data_free(d);
    }
}

/* nmtest (54 NONMEM event-handling scenarios: infusions, SS1/SS2, ADDL, lag, F, modelled
 * rates and durations, resets): expm against the closed form and against CVODES at
 * rtol = atol = 1e-13, every record: 1e-9 relative (differences below 1e-12 absolute
 * count as 0: amounts that vanish). */
static void test_nmtest(void)
{
    popk_error err;
    popk_data *d = popk_data_read(popk_test_src("tests/reference/data/nmtest.csv"), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    path lin = {0}, ex = {0}, bdf = {0};
    CU_ASSERT_FATAL(open_file(&lin, "models/nmtest.yaml", d) == 0 &&
                    open_file(&ex, "models/nmtest_ode.yaml", d) == 0 &&
                    open_file(&bdf, "models/nmtest_ode.yaml", d) == 0);
    CU_ASSERT(popk_model_uses_expm(ex.m));
    bdf.m->ode_method = POPK_ODE_BDF;
    bdf.m->rtol = 1e-13;
    bdf.m->atol = 1e-13;
    int failed = 0;
    double w_lin = compare_paths(&ex, &lin, d, NULL, 0, 1e-12, &failed);
    double w_bdf = compare_paths(&ex, &bdf, d, NULL, 0, 1e-12, &failed);
    printf("\n  nmtest: expm vs closed form %.2e, vs CVODES %.2e", w_lin, w_bdf);
    CU_ASSERT_EQUAL(failed, 0);
    CU_ASSERT(w_lin < 1e-9);
    CU_ASSERT(w_bdf < 1e-9);
    close_path(&lin);
    close_path(&ex);
    close_path(&bdf);
    popk_data_free(d);
}

/* A two-compartment oral model whose lag time and modelled infusion duration carry etas, so
 * that event times have partials (the time-shift terms), as a closed form and as ODEs. */
#define TWO_CPT_PARAMS                                                                         \
    "theta: {tcl: 2, tv: 20, tq: 3, tv2: 40, tka: 1.2, tlag: 0.5, tdur: 2, tf: 0.8}\n"          \
    "omega: {eta_cl: 0.1, eta_v: 0.1, eta_q: 0.1, eta_v2: 0.1, eta_ka: 0.1, eta_lag: 0.1,\n"    \
    "        eta_dur: 0.1, eta_f: 0.1}\n"                                                       \
    "sigma: {sd: 0.1}\n"                                                                       \
    "individual:\n  cl: tcl * exp(eta_cl)\n  v: tv * exp(eta_v)\n  q: tq * exp(eta_q)\n"       \
    "  v2: tv2 * exp(eta_v2)\n  ka: tka * exp(eta_ka)\n  lag: tlag * exp(eta_lag)\n"           \
    "  dur: tdur * exp(eta_dur)\n  f: tf * exp(eta_f)\n"                                       \
    "dosing:\n  depot: {ALAG: lag, F: f}\n  central: {DUR: dur}\n"                             \
    "observe:\n  cp: {value: central / v, cmt: central, error: {additive: sd}}\n"

static const char two_cpt_linear[] =
    TWO_CPT_PARAMS "linear: {CL: cl, V: v, Q: q, V2: v2, KA: ka}\n";
static const char two_cpt_ode[] =
    TWO_CPT_PARAMS "odes:\n  depot: -ka * depot\n"
                   "  central: ka * depot - (cl + q) * central / v + q / v2 * peripheral1\n"
                   "  peripheral1: q / v * central - q / v2 * peripheral1\n";

/* Doses: oral with lag; a modelled-duration infusion; SS1 oral q12h with ADDL; an SS1
 * infusion q8h; an SS2 infusion on top; a reset-and-dose. Observations stay clear of the
 * event times (where the prediction has kinks in the parameters). */
static const char two_cpt_data[] =
    "ID,TIME,AMT,RATE,EVID,MDV,CMT,II,ADDL,SS,DV\n"
    "1,0,100,0,1,1,1,0,0,0,0\n1,0.25,0,0,0,0,2,0,0,0,0\n1,1,0,0,0,0,2,0,0,0,0\n"
    "1,3,0,0,0,0,2,0,0,0,0\n1,5,50,-2,1,1,2,0,0,0,0\n1,6,0,0,0,0,2,0,0,0,0\n"
    "1,8,0,0,0,0,2,0,0,0,0\n1,24,0,0,0,0,2,0,0,0,0\n"
    "2,0,100,0,1,1,1,12,3,1,0\n2,2,0,0,0,0,2,0,0,0,0\n2,6,0,0,0,0,2,0,0,0,0\n"
    "2,11.9,0,0,0,0,2,0,0,0,0\n2,30,0,0,0,0,2,0,0,0,0\n2,60,0,0,0,0,2,0,0,0,0\n"
    "3,0,80,-2,1,1,2,8,0,1,0\n3,1,0,0,0,0,2,0,0,0,0\n3,4,0,0,0,0,2,0,0,0,0\n"
    "3,7.5,0,0,0,0,2,0,0,0,0\n3,10,20,-2,1,1,2,8,0,2,0\n3,11,0,0,0,0,2,0,0,0,0\n"
    "3,20,0,0,0,0,2,0,0,0,0\n"
    "4,0,100,0,1,1,1,0,0,0,0\n4,5,0,0,0,0,2,0,0,0,0\n4,10,50,0,4,1,2,0,0,0,0\n"
    "4,12,0,0,0,0,2,0,0,0,0\n";

/* Values and the partials in all etas and one theta: expm against the closed form's duals
 * (an independent derivation) to 1e-9, and against central differences of expm's own
 * values (h = 1e-5: truncation ~1e-10) to 1e-6 of the partials' scale. */
static void test_derivatives(void)
{
    popk_error err;
    popk_data *d = popk_data_parse("inline.csv", two_cpt_data, strlen(two_cpt_data), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    path lin = {0}, ex = {0};
    CU_ASSERT_FATAL(
        open_model(&lin, popk_model_parse("lin.yaml", two_cpt_linear, strlen(two_cpt_linear),
                                          &err), d) == 0 &&
        open_model(&ex, popk_model_parse("ode.yaml", two_cpt_ode, strlen(two_cpt_ode), &err),
                   d) == 0);
    CU_ASSERT_FATAL(popk_model_uses_expm(ex.m));
    int neta = ex.m->neta, nd = neta + 1;
    popk_pred_dirs dirs = {0};
    dirs.nd = nd;
    for (int k = 0; k < neta; k++) {
        dirs.dir_is_eta[k] = 1;
        dirs.dir_index[k] = k;
    }
    dirs.dir_is_eta[neta] = 0; /* theta tka */
    dirs.dir_index[neta] = 4;
    double eta[8] = {0.1, -0.2, 0.15, 0.05, -0.1, 0.2, -0.15, -0.05};
    double w_val = 0.0, w_der = 0.0, w_fd = 0.0;
    for (size_t s = 0; s < d->nsub; s++) {
        popk_pred_result rl, re, rp, rm;
        CU_ASSERT_FATAL(popk_pred_subject(lin.ws, lin.m, d, lin.b, s, NULL, eta, &dirs, &rl,
                                          &err) == POPK_OK);
        CU_ASSERT_FATAL(popk_pred_subject(ex.ws, ex.m, d, ex.b, s, NULL, eta, &dirs, &re,
                                          &err) == POPK_OK);
        size_t nrec = re.nrec, stride = (size_t)(1 + nd);
        double *val = malloc(sizeof(double) * nrec * stride);
        memcpy(val, re.out, sizeof(double) * nrec * stride); /* nout = 1 */
        double scale = 0.0;
        for (size_t r = 0; r < nrec; r++)
            for (int k = 0; k < nd; k++)
                scale = fmax(scale, fabs(val[r * stride + 1 + (size_t)k]));
        for (size_t r = 0; r < nrec; r++) {
            w_val = fmax(w_val, rel_diff(val[r * stride], rl.out[r * stride], 1e-12));
            for (int k = 0; k < nd; k++)
                w_der = fmax(w_der, fabs(val[r * stride + 1 + (size_t)k] -
                                         rl.out[r * stride + 1 + (size_t)k]) / scale);
        }
        for (int k = 0; k < nd; k++) {
            double h = 1e-5, ep[8], em[8], th_p[8], th_m[8];
            const double *thp = NULL, *thm = NULL;
            memcpy(ep, eta, sizeof ep);
            memcpy(em, eta, sizeof em);
            if (k < neta) {
                ep[k] += h;
                em[k] -= h;
            } else {
                for (int j = 0; j < ex.m->ntheta; j++)
                    th_p[j] = th_m[j] = ex.m->theta[j].init;
                th_p[4] += h;
                th_m[4] -= h;
                thp = th_p;
                thm = th_m;
            }
            CU_ASSERT_FATAL(popk_pred_subject(ex.ws, ex.m, d, ex.b, s, thp, ep, NULL, &rp,
                                              &err) == POPK_OK);
            double *plus = malloc(sizeof(double) * nrec);
            for (size_t r = 0; r < nrec; r++)
                plus[r] = rp.out[r];
            CU_ASSERT_FATAL(popk_pred_subject(ex.ws, ex.m, d, ex.b, s, thm, em, NULL, &rm,
                                              &err) == POPK_OK);
            for (size_t r = 0; r < nrec; r++)
                w_fd = fmax(w_fd, fabs((plus[r] - rm.out[r]) / (2 * h) -
                                       val[r * stride + 1 + (size_t)k]) / scale);
            free(plus);
        }
        free(val);
    }
    printf("\n  values vs closed form %.2e, partials vs closed form %.2e, vs central "
           "differences %.2e", w_val, w_der, w_fd);
    CU_ASSERT(w_val < 1e-9);
    CU_ASSERT(w_der < 1e-9);
    CU_ASSERT(w_fd < 1e-6);
    close_path(&lin);
    close_path(&ex);
    popk_data_free(d);
}

/* ---- the choice of method at load ----------------------------------------------------- */

/* A one-compartment model with the given right-hand side of 'central' (and of 'other') and
 * solver section; cl, v, k and a categorical covariate are available. */
static popk_model *rhs_model(const char *central, const char *other, const char *solver,
                             popk_error *err)
{
    char buf[2048];
    snprintf(buf, sizeof buf,
             "theta: {tcl: 2, tv: 20}\nomega: {eta_cl: 0.1}\nsigma: {sd: 0.1}\n"
             "covariates:\n  WT: {}\n  FORM: {levels: [tablet, solution]}\n"
             "individual:\n  cl: tcl * exp(eta_cl)\n  v: tv\n  k: cl / v\n"
             "odes:\n  central: %s\n  other: %s\n"
             "observe:\n  cp: {value: central / v, cmt: central, error: {additive: sd}}\n%s",
             central, other, solver);
    return popk_model_parse("rhs.yaml", buf, strlen(buf), err);
}

/* Which right-hand sides count as linear with constant coefficients (table), and where the
 * reason points for those that do not. */
static void test_detection(void)
{
    static const struct {
        const char *rhs;
        int affine;
        int at; /* offset in rhs of the offending operator, call or name */
    } cases[] = {
        {"-k * central", 1, 0},
        {"-cl * central / v + other / 2", 1, 0},
        {"k * (other - central) / v * 3", 1, 0},
        {"-(central) * exp(-k) + 5 * log(v)", 1, 0},
        {"if(WT > 70, k, 2 * k) * central + if(FORM == \"tablet\", 1, 0)", 1, 0},
        {"-k * central^1 + 7", 1, 0},
        {"-central / (v / cl)", 1, 0},
        {"0", 1, 0},
        {"-k * central * other", 0, 13},
        {"-cl * central / (v + central)", 0, 14},
        {"-k * central^2", 0, 12},
        {"-k * exp(central)", 0, 5},
        {"-k * central * t", 0, 15},
        {"-k * central + TIME", 0, 15},
        {"if(central > 1, -k * central, 0)", 0, 11},
        {"-min(k * central, 3)", 0, 1},
        {"-k * abs(central)", 0, 5},
        {"(central > 2) * k", 0, 9},
        {"-k * 2^central", 0, 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        popk_error err;
        popk_model *m = rhs_model(cases[i].rhs, "-k * other", "", &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        int ok = m->ode_affine == cases[i].affine &&
                 popk_model_uses_expm(m) == cases[i].affine &&
                 (m->ode_nonaffine == NULL) == cases[i].affine;
        if (!cases[i].affine && m->ode_nonaffine) {
            char where[64];
            /* "  central: <rhs>" is line 12 of the model: rhs starts at column 12 */
            snprintf(where, sizeof where, "rhs.yaml:12:%d: the right-hand side of 'central'",
                     12 + cases[i].at);
            ok = ok && strstr(m->ode_nonaffine, where) == m->ode_nonaffine;
        }
        if (!ok)
            printf("\n    '%s': affine %d, reason %s", cases[i].rhs, m->ode_affine,
                   m->ode_nonaffine ? m->ode_nonaffine : "(none)");
        CU_ASSERT(ok);
        popk_model_free(m);
    }
    /* The second right-hand side counts too. */
    popk_error err;
    popk_model *m = rhs_model("-k * central", "-k * other * other", "", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT(!m->ode_affine && m->ode_nonaffine &&
              strstr(m->ode_nonaffine, "rhs.yaml:13:21:") &&
              strstr(m->ode_nonaffine, "'other'") &&
              strstr(m->ode_nonaffine, "product of two amount-dependent terms"));
    popk_model_free(m);
    /* The ACOP Michaelis-Menten models stay on CVODES. */
    m = popk_model_load(popk_test_src("models/acop/Oral_2CPTMM.yaml"), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT(m->ode_method == POPK_ODE_AUTO && !m->ode_affine && !popk_model_uses_expm(m));
    CU_ASSERT(m->ode_nonaffine && strstr(m->ode_nonaffine, "division by an amount-dependent"));
    popk_model_free(m);
}

/* solver: method: expm on a non-linear system is a load error at the offending place; bdf
 * and adams keep CVODES on a linear one; unknown methods are refused. */
static void test_method_key(void)
{
    popk_error err;
    popk_model *m = rhs_model("-k * central * other", "0", "solver: {method: expm}\n", &err);
    CU_ASSERT_PTR_NULL(m);
    char buf[1024];
    popk_error_format(&err, buf, sizeof buf);
    CU_ASSERT(err.code == POPK_ERR_MODEL && err.line == 12 && err.column == 25);
    CU_ASSERT(strstr(buf, "solver method 'expm' needs linear odes") != NULL);
    CU_ASSERT(strstr(buf, "the right-hand side of 'central' is not linear") != NULL);
    popk_model_free(m);

    static const char *const methods[] = {"auto", "expm", "bdf", "adams"};
    for (int k = 0; k < 4; k++) {
        char solver[64];
        snprintf(solver, sizeof solver, "solver: {method: %s, rtol: 1e-9}\n", methods[k]);
        m = rhs_model("-k * central", "k * central", solver, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT(m->ode_method == (popk_ode_method)k && m->ode_affine && m->rtol == 1e-9);
        CU_ASSERT(popk_model_uses_expm(m) == (k <= 1));
        popk_model_free(m);
    }
    m = rhs_model("-k * central", "0", "solver: {method: lsoda}\n", &err);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT(err.line == 16 && strstr(err.message, "unknown solver method 'lsoda'"));
    popk_model_free(m);
}

/* A constant input in the right-hand side (zero-order production) with infusions on top:
 * A' = -k A + r0 + R has A(t) = A0 e^(-kt) + (r0 + R)/k (1 - e^(-kt)). */
static void test_constant_input(void)
{
    popk_error err;
    const char model[] = "theta: {tk: 0.3, tr: 4}\nsigma: {sd: 0.1}\n"
                         "individual:\n  k: tk\n  r0: tr\n"
                         "odes:\n  central: -k * central + r0\n"
                         "observe:\n  a: {value: central, error: {additive: sd}}\n";
    const char data[] = "ID,TIME,AMT,RATE,EVID,MDV,CMT,DV\n"
                        "1,0,10,0,1,1,1,0\n1,1,0,0,0,0,1,0\n1,2,30,5,1,1,1,0\n"
                        "1,3,0,0,0,0,1,0\n1,7,0,0,0,0,1,0\n1,20,0,0,0,0,1,0\n";
    popk_data *d = popk_data_parse("c.csv", data, strlen(data), &err);
    path p = {0};
    CU_ASSERT_FATAL(d && open_model(&p, popk_model_parse("c.yaml", model, strlen(model), &err),
                                    d) == 0);
    CU_ASSERT_FATAL(popk_model_uses_expm(p.m));
    popk_pred_result r;
    CU_ASSERT_FATAL(popk_pred_subject(p.ws, p.m, d, p.b, 0, NULL, NULL, NULL, &r, &err) == 0);
    /* piecewise: [0,2) input 4; [2,8) input 4 + 5 (30 at rate 5); then 4 */
    double k = 0.3, want[6];
    double a2 = 10 * exp(-2 * k) + 4 / k * (1 - exp(-2 * k));
    double a8 = a2 * exp(-6 * k) + 9 / k * (1 - exp(-6 * k));
    want[0] = 10;
    want[1] = 10 * exp(-k) + 4 / k * (1 - exp(-k));
    want[2] = a2;
    want[3] = a2 * exp(-k) + 9 / k * (1 - exp(-k));
    want[4] = a2 * exp(-5 * k) + 9 / k * (1 - exp(-5 * k));
    want[5] = a8 * exp(-12 * k) + 4 / k * (1 - exp(-12 * k));
    for (int i = 0; i < 6; i++)
        CU_ASSERT(rel_diff(r.out[i], want[i], 0.0) < 1e-13);
    close_path(&p);
    popk_data_free(d);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("expm", NULL, NULL);
    CU_add_test(s, "dense_triangular", test_dense_triangular);
    CU_add_test(s, "dense_rotation_nilpotent", test_dense_rotation_nilpotent);
    CU_add_test(s, "dense_fd", test_dense_fd);
    CU_add_test(s, "acop_vs_closed_form_and_cvodes", test_acop_vs_closed_form);
    CU_add_test(s, "nmtest_vs_closed_form_and_cvodes", test_nmtest);
    CU_add_test(s, "derivatives", test_derivatives);
    CU_add_test(s, "detection", test_detection);
    CU_add_test(s, "method_key", test_method_key);
    CU_add_test(s, "constant_input", test_constant_input);
    return popk_test_run();
}
