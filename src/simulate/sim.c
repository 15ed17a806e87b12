/* simulate/sim.c — population simulation of a regimen: per-subject streams, predictions
 * (the engine record by record, or the recurrence of lti.c for linear time-invariant
 * models), percentiles over time (exact, or the histogram sketch of sketch.c for large
 * runs), exposure metrics and target attainment. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pred/pred.h"
#include "simulate/sim.h"
#include "simulate/sim_impl.h"
#include "simulate/simulate.h"
#include "util/error.h"


static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    if (isnan(x))
        return isnan(y) ? 0 : 1;
    if (isnan(y))
        return -1;
    return (x > y) - (x < y);
}

/* Type-7 sample quantile of the n finite values at the start of sorted x. */
static double quantile_sorted(const double *x, size_t n, double p)
{
    if (n == 0)
        return NAN;
    double h = (double)(n - 1) * p;
    size_t i = (size_t)floor(h);
    if (i + 1 >= n)
        return x[n - 1];
    return x[i] + (h - (double)i) * (x[i + 1] - x[i]);
}

double *popk_sim_parse_times(const char *spec, size_t *ntimes, popk_error *err)
{
    double *t = NULL;
    size_t n = 0;
    const char *colon = strchr(spec, ':');
    char *e;
    if (colon) {
        double a, step, b;
        a = strtod(spec, &e);
        if (e == spec || *e != ':')
            goto bad;
        const char *q = e + 1;
        step = strtod(q, &e);
        if (e == q || *e != ':')
            goto bad;
        q = e + 1;
        b = strtod(q, &e);
        if (e == q || *e || !isfinite(a) || !isfinite(b) || !(step > 0) || a < 0 || b < a)
            goto bad;
        double cnt = floor((b - a) / step * (1 + 1e-12)) + 1;
        if (cnt > 1e6) {
            popk_error_set(err, POPK_ERR_LIMIT, "--times", 1, 1, "more than 10^6 time points");
            return NULL;
        }
        n = (size_t)cnt;
        if (!(t = malloc(sizeof(double) * n)))
            goto nomem;
        for (size_t i = 0; i < n; i++)
            t[i] = a + (double)i * step;
    } else {
        size_t cap = 16;
        if (!(t = malloc(sizeof(double) * cap)))
            goto nomem;
        const char *q = spec;
        for (;;) {
            double v = strtod(q, &e);
            if (e == q || !isfinite(v) || v < 0) {
                popk_error_set(err, POPK_ERR_ARG, "--times", 1, (int)(q - spec) + 1,
                               "expected a time >= 0");
                popk_error_set_context(err, spec, strlen(spec));
                free(t);
                return NULL;
            }
            if (n == cap) {
                double *u = realloc(t, sizeof(double) * (cap *= 2));
                if (!u) {
                    free(t);
                    goto nomem;
                }
                t = u;
            }
            t[n++] = v;
            while (*e == ' ')
                e++;
            if (!*e)
                break;
            if (*e != ',' || n >= 1000000) {
                popk_error_set(err, POPK_ERR_ARG, "--times", 1, (int)(e - spec) + 1,
                               "expected ',' between times");
                popk_error_set_context(err, spec, strlen(spec));
                free(t);
                return NULL;
            }
            q = e + 1;
        }
        qsort(t, n, sizeof *t, cmp_double);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (k == 0 || t[i] != t[k - 1])
                t[k++] = t[i];
        n = k;
    }
    *ntimes = n;
    return t;
bad:
    popk_error_set(err, POPK_ERR_ARG, "--times", 1, 1,
                   "expected START:STEP:END (0:0.5:336, STEP > 0, END >= START >= 0) or a "
                   "list (0,1,2,4)");
    popk_error_set_context(err, spec, strlen(spec));
    return NULL;
nomem:
    popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    return NULL;
}

double *popk_sim_default_times(const popk_regimen *reg, size_t *ntimes)
{
    double end = reg->t_last + (reg->tau > 0 ? reg->tau : 24.0);
    double step = end <= 48 ? 0.25 : 1.0;
    size_t n = (size_t)floor(end / step + 1e-9) + 1;
    double *t = malloc(sizeof(double) * (n + 1));
    if (!t)
        return NULL;
    for (size_t i = 0; i < n; i++)
        t[i] = (double)i * step;
    if (t[n - 1] < end - 1e-9)
        t[n++] = end;
    *ntimes = n;
    return t;
}

void popk_sim_result_free(popk_sim_result *r)
{
    if (!r)
        return;
    free(r->times);
    free(r->quantiles);
    free(r->q);
    free(r->mean);
    free(r->metric);
    free(r->cov);
    free(r->pta);
    free(r->pass);
    free(r->profile);
    free(r);
}

/* --- the design: one template subject ----------------------------------------------------- */

/* Sample points: the output grid plus, for the metrics, a pre-dose point at each dose time
 * inside the grid and the window ends (last dose, end of its interval, 24 h marks), so
 * AUCs do not smear a bolus jump over a grid step. */
typedef popk_sim_sample sample_pt;

static int cmp_sample(const void *a, const void *b)
{
    const sample_pt *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    if (x->pre != y->pre)
        return y->pre - x->pre;
    return (x->grid > y->grid) - (x->grid < y->grid);
}

typedef struct {
    popk_data *d;
    size_t nsample;
    sample_pt *pt;
    size_t *rec_of_pt;       /* record index of each sample point */
    size_t *pt_of_grid;      /* sample point of each output time */
} design;

static void design_free(design *g)
{
    popk_data_free(g->d);
    free(g->pt);
    free(g->rec_of_pt);
    free(g->pt_of_grid);
}

static popk_status design_build(design *g, const popk_model *m, const popk_regimen *reg,
                                const double *times, size_t nt, popk_error *err)
{
    memset(g, 0, sizeof *g);
    size_t cap = nt + reg->ndose + 4;
    g->pt = malloc(sizeof *g->pt * cap);
    if (!g->pt)
        return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    double tmax = times[nt - 1], tend = reg->t_last + (reg->tau > 0 ? reg->tau : 0);
    for (size_t i = 0; i < nt; i++)
        g->pt[g->nsample++] = (sample_pt){times[i], 0, (long)i};
    for (size_t i = 0; i < reg->ndose; i++)
        if (reg->dose[i].time > times[0] && reg->dose[i].time <= tmax &&
            (i == 0 || reg->dose[i].time != reg->dose[i - 1].time))
            g->pt[g->nsample++] = (sample_pt){reg->dose[i].time, 1, -1};
    double keys[4] = {reg->t_last, tend, 24.0, tend - 24.0};
    for (int k = 0; k < 4; k++)
        if (keys[k] >= times[0] && keys[k] <= tmax)
            g->pt[g->nsample++] = (sample_pt){keys[k], 0, -1};
    qsort(g->pt, g->nsample, sizeof *g->pt, cmp_sample);
    /* drop metric-only points that duplicate a grid point */
    size_t k = 0;
    for (size_t i = 0; i < g->nsample; i++) {
        sample_pt p = g->pt[i];
        if (k > 0 && g->pt[k - 1].time == p.time && g->pt[k - 1].pre == p.pre &&
            (p.grid < 0 || g->pt[k - 1].grid < 0)) {
            if (p.grid >= 0)
                g->pt[k - 1].grid = p.grid;
            continue;
        }
        g->pt[k++] = p;
    }
    g->nsample = k;
    if (!(g->rec_of_pt = malloc(sizeof(size_t) * g->nsample)) ||
        !(g->pt_of_grid = malloc(sizeof(size_t) * nt)))
        return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    for (size_t i = 0; i < g->nsample; i++)
        if (g->pt[i].grid >= 0)
            g->pt_of_grid[g->pt[i].grid] = i;

    const char **names = malloc(sizeof(char *) * (size_t)(m->ncov + 1));
    double *cov = malloc(sizeof(double) * (size_t)(m->ncov + 1));
    if (!names || !cov) {
        free(names);
        free(cov);
        return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    }
    for (int j = 0; j < m->ncov; j++)
        names[j] = m->cov[j].name;
    popk_sim_draw_covariates(NULL, m, NULL, 0, cov);
    popk_data_builder *b = popk_data_builder_new(m->ncov, names, err);
    popk_status st = b ? POPK_OK : POPK_ERR_NOMEM;
    size_t di = 0, nrec = 0;
    for (size_t i = 0; st == POPK_OK && i <= g->nsample; i++) {
        /* doses strictly before this point, or at its time when the point is post-dose */
        while (st == POPK_OK && di < reg->ndose &&
               (i == g->nsample || reg->dose[di].time < g->pt[i].time ||
                (reg->dose[di].time == g->pt[i].time && !g->pt[i].pre))) {
            st = popk_data_builder_add(b, 1, &reg->dose[di++], cov, err);
            nrec++;
        }
        if (i == g->nsample || st != POPK_OK)
            break;
        popk_record r = {.time = g->pt[i].time, .dv = NAN, .evid = 2, .mdv = 1};
        st = popk_data_builder_add(b, 1, &r, cov, err);
        g->rec_of_pt[i] = nrec++;
    }
    free(names);
    free(cov);
    if (st != POPK_OK) {
        popk_data_builder_free(b);
        return st;
    }
    g->d = popk_data_builder_finish(b);
    return POPK_OK;
}

/* --- metrics ------------------------------------------------------------------------------ */

/* Area of one segment: linear up, log down (the usual NCA rule). */
static double seg_auc(double t0, double c0, double t1, double c1)
{
    double dt = t1 - t0;
    if (dt <= 0)
        return 0;
    if (c1 < c0 && c1 > 0 && c0 > 0)
        return dt * (c0 - c1) / log(c0 / c1);
    return 0.5 * dt * (c0 + c1);
}

/* A window [a, b] of the sample points: the segments [ia, ib) that overlap it (contiguous,
 * the points being sorted); valid = 0 when it is empty or outside the sampled range. */
typedef struct {
    double a, b;
    size_t ia, ib;
    int valid;
} window;

static window make_window(const sample_pt *pt, size_t n, double a, double b, int need_inside)
{
    window w = {a, b, 0, 0, 0};
    if (!(a < b) || (need_inside && !(a >= pt[0].time - 1e-9 && b <= pt[n - 1].time + 1e-9)))
        return w;
    w.valid = 1;
    size_t i = 0;
    while (i + 1 < n && !(pt[i + 1].time > a))
        i++;
    w.ia = i;
    while (i + 1 < n && pt[i].time < b)
        i++;
    w.ib = i;
    return w;
}

static double auc_window(const sample_pt *pt, const double *c, const window *w)
{
    if (!w->valid)
        return NAN;
    double s = 0;
    /* window ends fall on sample points (they are added to the design) */
    for (size_t i = w->ia; i < w->ib; i++)
        s += seg_auc(pt[i].time, c[i], pt[i + 1].time, c[i + 1]);
    return s;
}

/* Percent of [a, b] with c > x, crossings interpolated linearly. */
static double time_above(const sample_pt *pt, const double *c, const window *w, double x)
{
    if (!w->valid || isnan(x))
        return NAN;
    double s = 0;
    for (size_t i = w->ia; i < w->ib; i++) {
        double t0 = pt[i].time, t1 = pt[i + 1].time;
        if (t1 <= t0)
            continue;
        double c0 = c[i], c1 = c[i + 1];
        if (c0 > x && c1 > x)
            s += t1 - t0;
        else if (c0 > x || c1 > x) {
            double tc = t0 + (x - c0) / (c1 - c0) * (t1 - t0);
            s += c0 > x ? tc - t0 : t1 - tc;
        }
    }
    return 100.0 * s / (w->b - w->a);
}

/* Where each metric is read: the same for every subject. */
typedef struct {
    long i_trough;           /* the last point at the end of the last interval, or -1 */
    window tau, d1, d24, above;
} metric_plan;

static metric_plan plan_metrics(const sample_pt *pt, size_t n, const popk_regimen *reg)
{
    metric_plan mp;
    double tend = reg->tau > 0 ? reg->t_last + reg->tau : pt[n - 1].time;
    mp.i_trough = -1;
    if (reg->tau > 0)
        for (size_t i = 0; i < n; i++)
            if (pt[i].time == tend)
                mp.i_trough = (long)i;
    double a = reg->tau > 0 ? reg->t_last : pt[0].time;
    mp.tau = make_window(pt, n, a, tend, 1);
    mp.tau.valid &= reg->tau > 0;
    mp.d1 = make_window(pt, n, 0, 24, 1);
    mp.d24 = make_window(pt, n, tend - 24, tend, 1);
    mp.above = make_window(pt, n, a, tend, 0);
    return mp;
}

static void compute_metrics(const sample_pt *pt, const double *c, size_t n,
                            const metric_plan *mp, double threshold, double *met)
{
    /* the first maximum (NaN never is one); selects rather than branches, the profile's
     * ups and downs being unpredictable */
    double cmax = -INFINITY;
    size_t imax = n;
    for (size_t i = 0; i < n; i++) {
        int up = c[i] > cmax;
        cmax = up ? c[i] : cmax;
        imax = up ? i : imax;
    }
    met[POPK_MET_CMAX] = isfinite(cmax) ? cmax : NAN;
    met[POPK_MET_TMAX] = imax < n ? pt[imax].time : NAN;
    met[POPK_MET_TROUGH] = mp->i_trough >= 0 ? c[mp->i_trough] : NAN;
    met[POPK_MET_AUCTAU] = auc_window(pt, c, &mp->tau);
    met[POPK_MET_AUC0_24] = auc_window(pt, c, &mp->d1);
    met[POPK_MET_AUC24] = auc_window(pt, c, &mp->d24);
    met[POPK_MET_TABOVE] = time_above(pt, c, &mp->above, threshold);
}

/* --- the run ------------------------------------------------------------------------------ */

typedef struct {
    popk_pred_ws *ws;
    popk_binding *b;
    popk_sim_lti_ws *lw;
    double *theta, *cov, *c;
    uint32_t *hist;          /* ntimes x POPK_SK_NBINS (sketch) */
    uint32_t *cbuf;          /* ntimes x CHUNK: the chunk's bins, counted time by time so
                                one time's histogram stays in cache */
} thread_ws;

/* Subject s's output at the sample points into w->c, or its error. */
static int subject_profile(const popk_model *m, const design *g, const popk_sim_lti *lti,
                           const popk_population *pop, const popk_sim_options *o,
                           const double *Leta, const double *Lth, thread_ws *w, long s,
                           popk_rng *rng, popk_error *e)
{
    int ne = m->neta, nth = m->ntheta, ncov = m->ncov;
    popk_rng_init(rng, o->seed, (uint64_t)s);
    popk_sim_draw_covariates(pop, m, rng, s, w->cov);
    for (int k = 0; k < nth; k++)
        w->theta[k] = m->theta[k].init;
    if (o->theta_cov) {
        double z[64];
        int theta_ok = 0;
        for (int tries = 0; tries < 100 && !theta_ok; tries++) {
            popk_rng_mvnormal(rng, nth, Lth, z);
            theta_ok = 1;
            for (int k = 0; k < nth; k++) {
                w->theta[k] = m->theta[k].init + z[k];
                if (!(w->theta[k] > m->theta[k].lower || m->theta[k].lower == -INFINITY) ||
                    !(w->theta[k] < m->theta[k].upper || m->theta[k].upper == INFINITY))
                    theta_ok = 0;
            }
        }
        if (!theta_ok) {
            popk_error_set(e, POPK_ERR_NUMERIC, NULL, 0, 0,
                           "subject %ld: no theta draw within the bounds in 100 tries", s + 1);
            return 1;
        }
    }
    double eta[64] = {0};
    if (o->iiv)
        popk_rng_mvnormal(rng, ne, Leta, eta);
    if (lti && popk_sim_lti_subject(lti, w->lw, w->cov, w->theta, eta, w->c) == 0)
        return 0;
    size_t nrec = g->d->nrec;
    for (int k = 0; k < ncov; k++) {
        double *col = w->b->cov + (size_t)k * nrec;
        for (size_t r = 0; r < nrec; r++)
            col[r] = w->cov[k];
    }
    popk_pred_result pr;
    if (popk_pred_subject(w->ws, m, g->d, w->b, 0, w->theta, eta, &(popk_pred_dirs){0}, &pr,
                          e) != POPK_OK) {
        size_t len = strlen(e->message);
        snprintf(e->message + len, sizeof e->message - len, " (virtual subject %ld)", s + 1);
        return 1;
    }
    for (size_t i = 0; i < g->nsample; i++)
        w->c[i] = pr.out[g->rec_of_pt[i] * (size_t)pr.nout + (size_t)o->output];
    return 0;
}

popk_sim_result *popk_sim_run(const popk_model *m, const popk_regimen *reg,
                              const popk_population *pop, const double *times, size_t nt,
                              const popk_sim_options *o, popk_error *err)
{
    if (o->n < 1) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "the number of subjects must be >= 1");
        return NULL;
    }
    if (nt == 0 || o->output < 0 || o->output >= m->nout || o->nq < 0) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "invalid simulation options");
        return NULL;
    }
    long n = o->n;
    int nthreads = o->nthreads > 0 ? o->nthreads : omp_get_max_threads();
    design g;
    popk_sim_result *res = NULL;
    popk_sim_lti *lti = NULL;
    thread_ws *tw = NULL;
    double *Leta = NULL, *Lth = NULL, *exact = NULL, *chunk_sum = NULL;
    long *chunk_cnt = NULL;
    uint32_t *hist = NULL;
    int ne = m->neta, nth = m->ntheta, ncov = m->ncov;
    if (design_build(&g, m, reg, times, nt, err) != POPK_OK) {
        design_free(&g);
        return NULL;
    }
    size_t nsp = g.nsample;
    res = calloc(1, sizeof *res);
    if (!res)
        goto nomem;
    res->n = n;
    res->ntimes = nt;
    res->nq = o->nq;
    res->ncov = ncov;
    res->ntarget = o->ntarget;
    res->tau = reg->tau;
    res->t_last = reg->t_last;
    res->times = malloc(sizeof(double) * nt);
    res->quantiles = malloc(sizeof(double) * (size_t)(o->nq + 1));
    res->q = malloc(sizeof(double) * nt * (size_t)(o->nq + 1));
    res->mean = malloc(sizeof(double) * nt);
    res->metric = malloc(sizeof(double) * (size_t)n * POPK_MET_N);
    res->cov = malloc(sizeof(double) * (size_t)n * (size_t)(ncov + 1));
    res->pta = calloc((size_t)o->ntarget + 1, sizeof(double));
    res->pass = malloc((size_t)n * (size_t)(o->ntarget + 1));
    Leta = malloc(sizeof(double) * (size_t)(ne * ne + 1));
    Lth = malloc(sizeof(double) * (size_t)(nth * nth + 1));
    if (!res->times || !res->quantiles || !res->q || !res->mean || !res->metric ||
        !res->cov || !res->pta || !res->pass || !Leta || !Lth)
        goto nomem;
    memcpy(res->times, times, sizeof(double) * nt);
    if (o->nq)
        memcpy(res->quantiles, o->quantiles, sizeof(double) * (size_t)o->nq);
    if (o->keep_profiles && !(res->profile = malloc(sizeof(double) * (size_t)n * nt)))
        goto nomem;
    if (ne > 64 || popk_sim_cholesky(ne, m->omega, Leta) != 0) {
        popk_error_set(err, POPK_ERR_MODEL, m->path, 0, 0,
                       "omega is not positive semi-definite (or has more than 64 etas)");
        goto fail;
    }
    if (o->theta_cov && (nth > 64 || popk_sim_cholesky(nth, o->theta_cov, Lth) != 0)) {
        popk_error_set(err, POPK_ERR_ARG, m->path, 0, 0,
                       "the theta covariance matrix is not positive semi-definite");
        goto fail;
    }
    /* A handful of subjects runs through the engine record by record, so that a typical
     * curve matches 'popk predict' digit for digit; larger runs take the recurrence when
     * the model is linear and time-invariant (lti.c). */
    if (n >= 100 && !o->engine_only &&
        popk_sim_lti_plan(m, reg, g.pt, nsp, g.d->nrec, o->output, 0, &lti, err) != POPK_OK)
        goto fail;
    res->lti = lti != NULL;
    long exact_limit = o->exact_limit > 0 ? o->exact_limit : 4000000;
    res->exact = (double)n * (double)nt <= (double)exact_limit;
    popk_sketch sk;
    popk_sketch_init(&sk, 1.0);
    /* Chunks: the unit of scheduling and of the ordered sum of means. Their size depends
     * on n only (never on the thread count), large enough that counting a chunk time by
     * time reuses each time's histogram lines. */
    long CHUNK = n / 64 < 16 ? 16 : n / 64 > 4096 ? 4096 : n / 64;
    long nchunk = (n + CHUNK - 1) / CHUNK;
    /* rows of a thread's chunk buffer one cache line longer than the chunk, so that the
     * ntimes lines a subject writes fall in distinct cache sets */
    size_t cstride = (size_t)CHUNK + 16;
    chunk_sum = calloc((size_t)nchunk * nt, sizeof(double));
    chunk_cnt = calloc((size_t)nchunk * nt, sizeof(long));
    if (!chunk_sum || !chunk_cnt)
        goto nomem;
    if (res->exact && !(exact = malloc(sizeof(double) * (size_t)n * nt)))
        goto nomem;
    if (!(tw = calloc((size_t)nthreads, sizeof *tw)))
        goto nomem;
    for (int t = 0; t < nthreads; t++) {
        if (!(tw[t].ws = popk_pred_ws_new(m, err)) || !(tw[t].b = popk_model_bind(m, g.d, err)) ||
            (lti && !(tw[t].lw = popk_sim_lti_ws_new(lti, err))))
            goto fail;
        tw[t].theta = malloc(sizeof(double) * (size_t)(nth + 1));
        tw[t].cov = malloc(sizeof(double) * (size_t)(ncov + 1));
        tw[t].c = malloc(sizeof(double) * (nsp + 1)); /* + the trash slot of lti.c */
        if (!tw[t].theta || !tw[t].cov || !tw[t].c)
            goto nomem;
    }
    if (!res->exact) {
        /* The sketch's scale: the typical subject's peak. */
        popk_pred_result pr;
        if (popk_pred_subject(tw[0].ws, m, g.d, tw[0].b, 0, NULL, NULL,
                              &(popk_pred_dirs){0}, &pr, err) != POPK_OK)
            goto fail;
        double peak = 0;
        for (size_t i = 0; i < nsp; i++)
            peak = fmax(peak, fabs(pr.out[g.rec_of_pt[i] * (size_t)pr.nout + (size_t)o->output]));
        popk_sketch_init(&sk, peak);
        for (int t = 0; t < nthreads; t++)
            if (!(tw[t].hist = calloc(nt * POPK_SK_NBINS, sizeof(uint32_t))) ||
                !(tw[t].cbuf = malloc(sizeof(uint32_t) * nt * cstride)))
                goto nomem;
    }
    metric_plan mp = plan_metrics(g.pt, nsp, reg);

    long fail_subject = n, done = 0;
    popk_error fail_err;
    popk_error_clear(&fail_err);
    const popk_output *out = &m->out[o->output];
    double sig[64] = {0};
    for (int k = 0; k < m->nsigma && k < 64; k++)
        sig[k] = m->sigma[k].init;
    int cancelled = 0;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
    for (long ch = 0; ch < nchunk; ch++) {
        int tid = omp_get_thread_num();
        thread_ws *w = &tw[tid];
        long failed;
#pragma omp atomic read
        failed = fail_subject;
        int stop;
#pragma omp atomic read
        stop = cancelled;
        if (ch * CHUNK > failed || stop)
            continue;
        double *csum = chunk_sum + (size_t)ch * nt;
        long *ccnt = chunk_cnt + (size_t)ch * nt;
        long s0 = ch * CHUNK, s1 = s0 + CHUNK < n ? s0 + CHUNK : n, s;
        for (s = s0; s < s1; s++) {
            popk_rng rng;
            popk_error e;
            if (subject_profile(m, &g, lti, pop, o, Leta, Lth, w, s, &rng, &e)) {
#pragma omp critical(popk_sim_run_fail)
                if (s < fail_subject) {
                    fail_err = e;
#pragma omp atomic write
                    fail_subject = s;
                }
                break;
            }
            memcpy(res->cov + (size_t)s * (size_t)ncov, w->cov, sizeof(double) * (size_t)ncov);
            if (o->residual)
                for (size_t i = 0; i < nsp; i++)
                    w->c[i] = popk_sim_residual(out, sig, w->c[i], popk_rng_normal(&rng));
            double *met = res->metric + (size_t)s * POPK_MET_N;
            compute_metrics(g.pt, w->c, nsp, &mp, o->threshold, met);
            unsigned char *pass = res->pass + (size_t)s * (size_t)(o->ntarget + 1);
            int all = 1;
            for (int j = 0; j < o->ntarget; j++) {
                const popk_target *tg = &o->target[j];
                double v = tg->metric == POPK_MET_TABOVE
                               ? time_above(g.pt, w->c, &mp.above, tg->threshold)
                               : met[tg->metric];
                pass[j] = (unsigned char)popk_target_pass(tg, v);
                all &= pass[j];
            }
            pass[o->ntarget] = (unsigned char)all;
            size_t si = (size_t)(s - s0);
            if (res->profile)
                for (size_t t = 0; t < nt; t++)
                    res->profile[(size_t)s * nt + t] = w->c[g.pt_of_grid[t]];
            if (exact) {
                for (size_t t = 0; t < nt; t++) {
                    double v = w->c[g.pt_of_grid[t]];
                    exact[t * (size_t)n + (size_t)s] = v;
                    if (!isnan(v)) {
                        csum[t] += v;
                        ccnt[t]++;
                    }
                }
            } else {
                for (size_t t = 0; t < nt; t++) {
                    double v = w->c[g.pt_of_grid[t]];
                    uint32_t bin = popk_sketch_bin(&sk, v);
                    w->cbuf[t * cstride + si] = bin;
                    int ok = bin != POPK_SK_NONE;
                    csum[t] += ok ? v : 0.0;
                    ccnt[t] += ok;
                }
            }
        }
        if (!exact && s == s1) { /* (after a failure the run's result is dropped) */
            long ns = s1 - s0;
            for (size_t t = 0; t < nt; t++) {
                uint32_t *h = w->hist + t * POPK_SK_NBINS;
                const uint32_t *v = w->cbuf + t * cstride;
                for (long i = 0; i < ns; i++)
                    if (v[i] != POPK_SK_NONE)
                        h[v[i]]++;
            }
        }
#pragma omp atomic
        done += CHUNK;
        if (tid == 0 && o->progress) {
            long d;
#pragma omp atomic read
            d = done;
            if (o->progress((double)(d < n ? d : n) / (double)n, o->progress_user) != 0) {
#pragma omp atomic write
                cancelled = 1;
            }
        }
    }
    if (fail_subject < n) {
        if (err)
            *err = fail_err;
        goto fail;
    }
    if (cancelled) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "cancelled");
        goto fail;
    }
    /* means in chunk order, so the sum does not depend on the schedule */
    for (size_t t = 0; t < nt; t++) {
        double s = 0;
        long c = 0;
        for (long ch = 0; ch < nchunk; ch++) {
            s += chunk_sum[(size_t)ch * nt + t];
            c += chunk_cnt[(size_t)ch * nt + t];
        }
        res->mean[t] = c ? s / (double)c : NAN;
    }
    if (exact) {
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 8)
        for (size_t t = 0; t < nt; t++) {
            double *x = exact + t * (size_t)n;
            qsort(x, (size_t)n, sizeof *x, cmp_double);
            size_t nf = (size_t)n;
            while (nf > 0 && isnan(x[nf - 1]))
                nf--;
            for (int j = 0; j < o->nq; j++)
                res->q[t * (size_t)o->nq + (size_t)j] = quantile_sorted(x, nf, o->quantiles[j]);
        }
    } else {
        /* per-thread counts added time by time (in parallel: each time is one block) */
        hist = tw[0].hist;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 4)
        for (size_t t = 0; t < nt; t++) {
            uint32_t *h = hist + t * POPK_SK_NBINS;
            for (int th = 1; th < nthreads; th++) {
                const uint32_t *h2 = tw[th].hist + t * POPK_SK_NBINS;
                for (size_t i = 0; i < POPK_SK_NBINS; i++)
                    if (h2[i])
                        h[i] += h2[i];
            }
            long cnt = 0;
            for (size_t i = 0; i < POPK_SK_NBINS; i++)
                cnt += h[i];
            popk_sketch_quantiles(&sk, h, cnt, o->quantiles, o->nq, res->q + t * (size_t)o->nq, 1);
        }
    }
    for (int j = 0; j <= o->ntarget; j++) {
        long c = 0;
        for (long s = 0; s < n; s++)
            c += res->pass[(size_t)s * (size_t)(o->ntarget + 1) + (size_t)j];
        res->pta[j] = (double)c / (double)n;
    }
    goto done;
nomem:
    popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
fail:
    popk_sim_result_free(res);
    res = NULL;
done:
    for (int t = 0; tw && t < nthreads; t++) {
        popk_pred_ws_free(tw[t].ws);
        popk_binding_free(tw[t].b);
        popk_sim_lti_ws_free(tw[t].lw);
        free(tw[t].theta);
        free(tw[t].cov);
        free(tw[t].c);
        free(tw[t].hist);
        free(tw[t].cbuf);
    }
    free(tw);
    free(Leta);
    free(Lth);
    free(exact);
    free(chunk_sum);
    free(chunk_cnt);
    popk_sim_lti_free(lti);
    design_free(&g);
    return res;
}
