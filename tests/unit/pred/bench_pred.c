/* Benchmark of the prediction engine (pred/pred.c): all 120 subjects of ACOP Oral_2CPT on the
 * analytic path, the ODE path (matrix exponential, the default for this linear system, and
 * CVODES BDF forced) and with eta derivatives, side by side; then how the cost grows with
 * records per subject and with compartments. Not a test; see bench/pred.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"

/* CPU time of this process: on a shared machine, wall time would count other jobs. */
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static void die(const popk_error *err)
{
    char buf[1024];
    fprintf(stderr, "%s\n", popk_error_format(err, buf, sizeof buf));
    exit(1);
}

typedef struct {
    popk_model *m;
    popk_binding *b;
    popk_pred_ws *ws;
} path;

static path open_path(popk_model *m, const popk_data *d)
{
    popk_error err;
    path p = {m, NULL, NULL};
    if (!m || !(p.b = popk_model_bind(m, d, &err)) || !(p.ws = popk_pred_ws_new(m, &err)))
        die(&err);
    return p;
}

static void close_path(path *p)
{
    popk_pred_ws_free(p->ws);
    popk_binding_free(p->b);
    popk_model_free(p->m);
}

static popk_model *load(const char *root, const char *rel)
{
    char file[4096];
    popk_error err;
    snprintf(file, sizeof file, "%s/%s", root, rel);
    popk_model *m = popk_model_load(file, &err);
    if (!m)
        die(&err);
    return m;
}

/* Best of `repeats` runs of predicting every subject (etas: nsub x neta, or NULL), in ms. */
static double time_all(path *p, const popk_data *d, const double *eta, int nd, int repeats,
                       double *check)
{
    popk_pred_dirs dirs = {0};
    dirs.nd = nd;
    for (int k = 0; k < nd; k++) {
        dirs.dir_is_eta[k] = 1;
        dirs.dir_index[k] = k;
    }
    double best = INFINITY;
    for (int rep = 0; rep < repeats; rep++) {
        double sum = 0.0, t0 = now_ms();
        for (size_t s = 0; s < d->nsub; s++) {
            popk_pred_result res;
            popk_error err;
            if (popk_pred_subject(p->ws, p->m, d, p->b, s, NULL,
                                  eta ? eta + s * (size_t)p->m->neta : NULL, &dirs, &res,
                                  &err) != POPK_OK)
                die(&err);
            sum += res.out[(res.nrec - 1) * (size_t)res.nout * (size_t)(1 + nd)];
        }
        best = fmin(best, now_ms() - t0);
        *check = sum;
    }
    return best;
}

/* One subject: a dose every 24 h and an observation every `spacing` hours, n records. */
static popk_data *timeline(size_t n, double spacing, int dose_cmt, int obs_cmt)
{
    popk_error err;
    popk_data_builder *b = popk_data_builder_new(0, NULL, &err);
    if (!b)
        die(&err);
    double t = 0.0, next_dose = 0.0;
    for (size_t r = 0; r < n; r++) {
        popk_record rec = {0};
        if (t >= next_dose) {
            rec.time = next_dose;
            rec.amt = 100.0;
            rec.evid = 1;
            rec.cmt = dose_cmt;
            next_dose += 24.0;
        } else {
            rec.time = t;
            rec.evid = 0;
            rec.cmt = obs_cmt;
            rec.dv = 1.0;
            t += spacing;
        }
        if (popk_data_builder_add(b, 1.0, &rec, NULL, &err) != POPK_OK)
            die(&err);
    }
    return popk_data_builder_finish(b);
}

/* An oral model with ncmt disposition compartments, closed form or ODEs, 2 + 2 ncmt etas. */
static popk_model *oral_model(int ncmt, int ode)
{
    char buf[4096];
    size_t len = 0;
#define ADD(...) len += (size_t)snprintf(buf + len, sizeof buf - len, __VA_ARGS__)
    ADD("name: oral%d\ntheta: {tcl: 2, tv: 20, tka: 1.2, tq: 3, tv2: 40, tq3: 1.5, tv3: 80}\n",
        ncmt);
    ADD("omega: {eta_cl: 0.1, eta_v: 0.1, eta_ka: 0.1%s%s}\nsigma: {sd: 0.1}\n",
        ncmt >= 2 ? ", eta_q: 0.1, eta_v2: 0.1" : "",
        ncmt >= 3 ? ", eta_q3: 0.1, eta_v3: 0.1" : "");
    ADD("individual:\n  cl: tcl * exp(eta_cl)\n  v: tv * exp(eta_v)\n  ka: tka * exp(eta_ka)\n");
    if (ncmt >= 2)
        ADD("  q: tq * exp(eta_q)\n  v2: tv2 * exp(eta_v2)\n");
    if (ncmt >= 3)
        ADD("  q3: tq3 * exp(eta_q3)\n  v3: tv3 * exp(eta_v3)\n");
    if (!ode) {
        ADD("linear: {CL: cl, V: v, KA: ka%s%s}\n", ncmt >= 2 ? ", Q: q, V2: v2" : "",
            ncmt >= 3 ? ", Q3: q3, V3: v3" : "");
    } else {
        ADD("odes:\n  depot: -ka * depot\n  central: ka * depot - cl / v * central%s%s\n",
            ncmt >= 2 ? " - q / v * central + q / v2 * peripheral1" : "",
            ncmt >= 3 ? " - q3 / v * central + q3 / v3 * peripheral2" : "");
        if (ncmt >= 2)
            ADD("  peripheral1: q / v * central - q / v2 * peripheral1\n");
        if (ncmt >= 3)
            ADD("  peripheral2: q3 / v * central - q3 / v3 * peripheral2\n");
    }
    ADD("observe:\n  cp: {value: central / v, cmt: central, error: {additive: sd}}\n");
#undef ADD
    popk_error err;
    popk_model *m = popk_model_parse("bench.yaml", buf, len, &err);
    if (!m)
        die(&err);
    return m;
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : ".";
    int quick = argc > 2 && !strcmp(argv[2], "--quick"); /* analytic rows only */
    char file[4096];
    popk_error err;
    snprintf(file, sizeof file, "%s/tests/reference/data/acop/Oral_2CPT.csv", root);
    popk_data *d = popk_data_read(file, &err);
    if (!d)
        die(&err);
    path lin = open_path(load(root, "models/acop/Oral_2CPT.yaml"), d);
    path ode = open_path(load(root, "models/acop/Oral_2CPT_ode.yaml"), d);
    path exm = open_path(load(root, "models/acop/Oral_2CPT_ode.yaml"), d);
    ode.m->ode_method = POPK_ODE_BDF; /* CVODES, as before the matrix exponential */
    /* Each subject's true parameters (P = exp(theta + eta), columns CL V1 Q V2 KA). */
    static const char *const cols[] = {"CL", "V1", "Q", "V2", "KA"};
    int neta = lin.m->neta;
    double *eta = malloc(sizeof(double) * d->nsub * (size_t)neta);
    for (size_t s = 0; s < d->nsub; s++)
        for (int k = 0; k < neta; k++)
            eta[s * (size_t)neta + k] =
                log(d->cov[popk_data_find_cov(d, cols[k])].values[d->sub[s].first]) -
                lin.m->theta[k].init;
    double c1, c2, c3, c4, c5, c6, c7;
    printf("ACOP Oral_2CPT: %zu subjects, %zu records (process CPU time, best of runs)\n",
           d->nsub, d->nrec);
    printf("  %-36s %10s %10s %14s\n", "path", "ms", "target ms", "us/record");
    double t_lin = time_all(&lin, d, eta, 0, 20, &c1);
    double t_lind = time_all(&lin, d, eta, neta, 20, &c2);
    if (quick) {
        printf("  %-36s %10.3f %10s %14.3f\n", "analytic", t_lin, "< 2", 1e3 * t_lin / d->nrec);
        printf("  %-36s %10.3f %10s %14.3f\n", "analytic + df/deta (5 etas)", t_lind, "< 5",
               1e3 * t_lind / d->nrec);
        return 0;
    }
    double t_exm = time_all(&exm, d, eta, 0, 10, &c6);
    double t_exmd = time_all(&exm, d, eta, neta, 10, &c7);
    double t_ode = time_all(&ode, d, eta, 0, 3, &c3);
    double t_oded = time_all(&ode, d, eta, neta, 2, &c4);
    /* The same at NONMEM-like looser tolerances: BDF's step count grows slowly with 1/rtol. */
    path ode6 = open_path(load(root, "models/acop/Oral_2CPT_ode.yaml"), d);
    ode6.m->ode_method = POPK_ODE_BDF;
    ode6.m->rtol = 1e-6;
    ode6.m->atol = 1e-6;
    double t_ode6 = time_all(&ode6, d, eta, 0, 3, &c5);
    close_path(&ode6);
    /* Adams (with the BDF fallback): what CVODES runs for non-linear systems by default */
    double c8, c9;
    path oda = open_path(load(root, "models/acop/Oral_2CPT_ode.yaml"), d);
    oda.m->ode_method = POPK_ODE_ADAMS;
    double t_oda = time_all(&oda, d, eta, 0, 3, &c8);
    double t_odad = time_all(&oda, d, eta, neta, 2, &c9);
    close_path(&oda);
    printf("  %-36s %10.3f %10s %14.3f\n", "analytic", t_lin, "< 2", 1e3 * t_lin / d->nrec);
    printf("  %-36s %10.3f %10s %14.3f\n", "analytic + df/deta (5 etas)", t_lind, "< 5",
           1e3 * t_lind / d->nrec);
    printf("  %-36s %10.3f %10s %14.3f\n", "ODE (auto: matrix exponential)", t_exm, "< 100",
           1e3 * t_exm / d->nrec);
    printf("  %-36s %10.3f %10s %14.3f\n", "ODE + df/deta (5 etas, expm)", t_exmd, "",
           1e3 * t_exmd / d->nrec);
    printf("  %-36s %10.3f %10s %14.3f\n", "ODE (bdf: CVODES, rtol 1e-8)", t_ode,
           "< 100", 1e3 * t_ode / d->nrec);
    printf("  %-36s %10.3f %10s %14.3f\n", "ODE + df/deta (5 etas, CVODES)", t_oded, "",
           1e3 * t_oded / d->nrec);
    printf("  %-36s %10.3f %10s %14.3f\n", "ODE (bdf, rtol 1e-6, atol 1e-6)", t_ode6, "",
           1e3 * t_ode6 / d->nrec);
    printf("  %-36s %10.3f %10s %14.3f\n", "ODE (adams: CVODES, rtol 1e-8)", t_oda, "< 100",
           1e3 * t_oda / d->nrec);
    printf("  %-36s %10.3f %10s %14.3f\n", "ODE + df/deta (5 etas, adams)", t_odad, "",
           1e3 * t_odad / d->nrec);
    printf("  analytic vs adams: %.10g vs %.10g (rel %.1e)\n", c1, c8, fabs(c1 - c8) / fabs(c1));
    printf("  analytic vs ODE: sum of last predictions %.10g vs %.10g (rel %.1e; %.1e at 1e-6)\n",
           c1, c3, fabs(c1 - c3) / fabs(c1), fabs(c1 - c5) / fabs(c1));
    printf("  analytic vs expm: %.10g vs %.10g (rel %.1e)\n", c1, c6, fabs(c1 - c6) / fabs(c1));
    (void)c2;
    (void)c4;
    (void)c7;
    (void)c9;
    close_path(&lin);
    close_path(&ode);
    close_path(&exm);
    free(eta);
    popk_data_free(d);

    printf("\nCost per record vs records per subject (oral 2-cmt, one subject, daily doses,\n"
           "hourly observations), microseconds per record\n");
    printf("  %8s %12s %16s %12s %12s\n", "records", "analytic", "analytic+deta", "ODE expm",
           "ODE bdf");
    for (size_t n = 100; n <= 100000; n *= 10) {
        popk_data *t = timeline(n, 1.0, 1, 2);
        path pl = open_path(oral_model(2, 0), t), px = open_path(oral_model(2, 1), t);
        path po = open_path(oral_model(2, 1), t);
        po.m->ode_method = POPK_ODE_BDF;
        int reps = n >= 10000 ? 2 : 10;
        double a = time_all(&pl, t, NULL, 0, reps, &c1);
        double b = time_all(&pl, t, NULL, pl.m->neta, reps, &c2);
        double x = time_all(&px, t, NULL, 0, reps, &c3);
        double o = n <= 10000 ? time_all(&po, t, NULL, 0, reps, &c3) : NAN;
        printf("  %8zu %12.3f %16.3f %12.3f %12.3f\n", n, 1e3 * a / n, 1e3 * b / n, 1e3 * x / n,
               1e3 * o / n);
        close_path(&pl);
        close_path(&px);
        close_path(&po);
        popk_data_free(t);
    }

    printf("\nCost per record vs compartments (oral, 1000 records), microseconds per record\n");
    printf("  %5s %9s %13s %9s %13s %9s %13s\n", "cmts", "analytic", "analytic+deta", "expm",
           "expm+deta", "bdf", "bdf+deta");
    popk_data *t = timeline(1000, 1.0, 1, 2);
    for (int ncmt = 1; ncmt <= 3; ncmt++) {
        path pl = open_path(oral_model(ncmt, 0), t), px = open_path(oral_model(ncmt, 1), t);
        path po = open_path(oral_model(ncmt, 1), t);
        po.m->ode_method = POPK_ODE_BDF;
        double a = time_all(&pl, t, NULL, 0, 10, &c1);
        double b = time_all(&pl, t, NULL, pl.m->neta, 10, &c2);
        double x = time_all(&px, t, NULL, 0, 10, &c3);
        double xd = time_all(&px, t, NULL, px.m->neta, 10, &c3);
        double o = time_all(&po, t, NULL, 0, 3, &c3);
        double od = time_all(&po, t, NULL, po.m->neta, 3, &c5);
        printf("  %5d %9.3f %13.3f %9.3f %13.3f %9.3f %13.3f   (%d etas)\n", ncmt + 1, a, b, x,
               xd, o, od, pl.m->neta);
        close_path(&pl);
        close_path(&px);
        close_path(&po);
    }
    popk_data_free(t);
    return 0;
}
