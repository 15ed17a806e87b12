/* simulate/lti.c — the fast path of popk_sim_run for linear time-invariant models: every
 * virtual subject shares the dosing schedule and the sample points, so each subject's
 * profile is a recurrence x <- Phi(dt) x + input over a few distinct steps dt, with Phi and
 * the infusion responses read from one short "probe" run of the prediction engine per
 * subject instead of a run over every record. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pred/pred.h"
#include "simulate/sim_impl.h"
#include "util/error.h"

/* Is an output affine in the compartment amounts, with coefficients free of time? Decided
 * symbolically when the model loads (popk_expr_affine, as for the odes). */
int popk_sim_output_affine(const popk_model *m, int output)
{
    return m->out[output].affine;
}

/* ---------------------------------------------------------------------------------------
 * The plan: the probe design and the operations of the recurrence. */

enum { OP_ADVANCE, OP_BOLUS, OP_SAMPLE };

typedef struct {
    int kind;
    int a;                   /* ADVANCE: step index; BOLUS: compartment; SAMPLE: point */
    int b;                   /* ADVANCE: input index, or -1 without infusions */
    double v;                /* BOLUS: amount */
} lti_op;

/* One event time of the schedule: advance to it (step a, input b; a = -1: no advance),
 * read a sample before the doses, give the doses, read a sample after them. Samples not
 * taken write to the trash slot npt. */
typedef struct {
    int k, q;
    int pre, post;
    int ib, nb;              /* boluses bolus[ib .. ib + nb) */
    double amt1;             /* their total (one compartment: they all go there) */
} lti_step;

typedef struct {
    int cmt;
    double amt;
} lti_bolus;

struct popk_sim_lti {
    const popk_model *m;
    int n;                   /* compartments */
    int output;
    size_t npt;
    size_t nop;
    lti_op *op;
    size_t nstep, nbolus;
    lti_step *step;
    lti_bolus *bolus;
    int ndt;
    double *dt;              /* distinct steps */
    int ninput;              /* distinct (step, infusion rates) pairs */
    int *input_dt;
    double *input_rate;      /* ninput x n */
    int *infused;            /* n: 1 when some dose infuses into the compartment */
    popk_data *probe;
    size_t rec_zero;         /* probe record with zero amounts */
    size_t *rec_dose;        /* n: record right after a unit bolus into compartment j */
    size_t *rec_phi;         /* n x ndt: record dt[k] after that bolus */
    size_t *rec_gam;         /* n x ndt: record dt[k] into a unit-rate infusion into j */
    int drift;               /* 1: the system may have a constant input (dA/dt = K A + c, an
                                affine ODE system): probed from a reset without doses */
    size_t *rec_drift;       /* ndt: record dt[k] after that reset */
};

struct popk_sim_lti_ws {
    popk_pred_ws *ws;
    popk_binding *b;
    double *phi;             /* ndt x n x n, row-major per step */
    double *in;              /* ninput x n */
    double *gam;             /* n x ndt x n: gam[(j * ndt + k) * n + i] */
    double *f, *w, *x;       /* n each */
};

void popk_sim_lti_free(popk_sim_lti *p)
{
    if (!p)
        return;
    free(p->op);
    free(p->step);
    free(p->bolus);
    free(p->dt);
    free(p->input_dt);
    free(p->input_rate);
    free(p->infused);
    popk_data_free(p->probe);
    free(p->rec_dose);
    free(p->rec_phi);
    free(p->rec_gam);
    free(p->rec_drift);
    free(p);
}

/* A dose or infusion event of the schedule, subject-independent. */
typedef struct {
    double time;
    int order;               /* at equal times: 0 pre-dose sample, 1 infusion end,
                                2 dose, 3 post-dose sample */
    int seq;
    int kind;                /* 0 sample, 1 bolus, 2 rate change */
    int cmt;
    double v;                /* bolus amount or rate change */
    long sample;
} lti_event;

static int cmp_event(const void *a, const void *b)
{
    const lti_event *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    if (x->order != y->order)
        return x->order - y->order;
    return x->seq - y->seq;
}

static int find_dt(const double *dt, int ndt, double d)
{
    for (int k = 0; k < ndt; k++)
        if (fabs(dt[k] - d) <= 1e-12 * fmax(dt[k], d))
            return k;
    return -1;
}

popk_status popk_sim_lti_plan(const popk_model *m, const popk_regimen *reg,
                              const popk_sim_sample *pt, size_t npt, size_t engine_nrec,
                              int output, int drift, popk_sim_lti **plan, popk_error *err)
{
    *plan = NULL;
    /* Closed forms and linear ODEs solved by matrix exponential (exact propagators); not
     * CVODES, whose tolerance-level error would accumulate over the recurrence. */
    if (!(m->kind == POPK_STRUCT_LINEAR || popk_model_uses_expm(m)) || m->ncmt < 1 || m->ncmt > 8 ||
        !popk_sim_output_affine(m, output))
        return POPK_OK;
    int n = m->ncmt;
    for (int j = 0; j < n; j++)
        if (m->dose[j].alag_slot >= 0)
            return POPK_OK;
    size_t nev = npt + 2 * reg->ndose;
    lti_event *ev = malloc(sizeof *ev * (nev + 1));
    popk_sim_lti *p = calloc(1, sizeof *p);
    double *rate = calloc((size_t)n, sizeof(double));
    if (!ev || !p || !rate)
        goto nomem;
    p->m = m;
    p->n = n;
    p->output = output;
    p->drift = drift || m->kind != POPK_STRUCT_LINEAR;
    if (!(p->infused = calloc((size_t)n, sizeof(int))))
        goto nomem;
    nev = 0;
    for (size_t i = 0; i < npt; i++)
        ev[nev++] = (lti_event){pt[i].time, pt[i].pre ? 0 : 3, (int)nev, 0, 0, 0, (long)i};
    for (size_t i = 0; i < reg->ndose; i++) {
        const popk_record *d = &reg->dose[i];
        int cmt = (d->cmt == 0 ? m->default_dose_cmt : d->cmt) - 1;
        if (cmt < 0 || cmt >= n || d->ss || d->addl > 0 || d->rate < 0 || !(d->amt >= 0) ||
            d->evid != 1)
            goto ineligible;
        if (d->rate > 0) {
            if (m->dose[cmt].f_slot >= 0) /* F would scale the duration per subject */
                goto ineligible;
            if (d->amt == 0)
                continue;
            p->infused[cmt] = 1;
            double end = d->time + d->amt / d->rate;
            ev[nev++] = (lti_event){d->time, 2, (int)nev, 2, cmt, d->rate, -1};
            ev[nev++] = (lti_event){end, 1, (int)nev, 2, cmt, -d->rate, -1};
        } else {
            ev[nev++] = (lti_event){d->time, 2, (int)nev, 1, cmt, d->amt, -1};
        }
    }
    qsort(ev, nev, sizeof *ev, cmp_event);
    if (!(p->op = malloc(sizeof *p->op * 2 * (nev + 1))) ||
        !(p->dt = malloc(sizeof(double) * (nev + 1))) ||
        !(p->input_dt = malloc(sizeof(int) * (nev + 1))) ||
        !(p->input_rate = malloc(sizeof(double) * (nev + 1) * (size_t)n)))
        goto nomem;
    /* The engine starts at the first record's time: the first sample point or dose. */
    double t = nev ? ev[0].time : 0;
    for (size_t i = 0; i < nev; i++) {
        const lti_event *e = &ev[i];
        if (e->time > t) {
            double d = e->time - t;
            int k = find_dt(p->dt, p->ndt, d);
            if (k < 0)
                p->dt[k = p->ndt++] = d;
            int any = 0;
            for (int j = 0; j < n; j++)
                any |= rate[j] != 0;
            int q = -1;
            if (any || p->drift) {
                for (int u = 0; u < p->ninput && q < 0; u++)
                    if (p->input_dt[u] == k &&
                        !memcmp(p->input_rate + (size_t)u * (size_t)n, rate, sizeof(double) * (size_t)n))
                        q = u;
                if (q < 0) {
                    q = p->ninput++;
                    p->input_dt[q] = k;
                    memcpy(p->input_rate + (size_t)q * (size_t)n, rate, sizeof(double) * (size_t)n);
                }
            }
            p->op[p->nop++] = (lti_op){OP_ADVANCE, k, q, 0};
            t = e->time;
        }
        if (e->kind == 0) {
            p->op[p->nop++] = (lti_op){OP_SAMPLE, (int)e->sample, 0, 0};
        } else if (e->kind == 1) {
            p->op[p->nop++] = (lti_op){OP_BOLUS, e->cmt, 0, e->v};
        } else {
            rate[e->cmt] += e->v;
            /* as the engine: the sum of a rate and its removal is exactly zero */
            if (e->v < 0 && fabs(rate[e->cmt]) < 1e-12 * fabs(e->v))
                rate[e->cmt] = 0;
        }
    }
    /* The operations grouped by event time (see lti_step). */
    p->npt = npt;
    if (!(p->step = malloc(sizeof *p->step * (p->nop + 1))) ||
        !(p->bolus = malloc(sizeof *p->bolus * (p->nop + 1))))
        goto nomem;
    lti_step *cur = NULL;
    for (size_t i = 0; i < p->nop; i++) {
        const lti_op *o = &p->op[i];
        int fresh = o->kind == OP_ADVANCE || !cur ||
                    (o->kind == OP_SAMPLE && cur->post != (int)npt) ||
                    (o->kind == OP_BOLUS && cur->post != (int)npt);
        if (fresh) {
            cur = &p->step[p->nstep++];
            *cur = (lti_step){-1, -1, (int)npt, (int)npt, (int)p->nbolus, 0, 0.0};
            if (o->kind == OP_ADVANCE) {
                cur->k = o->a;
                cur->q = o->b;
                continue;
            }
        }
        if (o->kind == OP_SAMPLE) {
            if (cur->nb == 0 && cur->pre == (int)npt)
                cur->pre = o->a;
            else
                cur->post = o->a;
        } else {
            p->bolus[p->nbolus++] = (lti_bolus){o->a, o->v};
            cur->nb++;
            cur->amt1 += o->v;
        }
    }
    /* The probe: worth it only when much shorter than the design. */
    int ninf = 0;
    for (int j = 0; j < n; j++)
        ninf += p->infused[j];
    size_t nprobe = 1 + (size_t)n * (size_t)(2 + p->ndt) + (size_t)(ninf + p->drift) * (size_t)(1 + p->ndt);
    if (nprobe * 4 > engine_nrec)
        goto ineligible;
    double maxdt = 0;
    for (int k = 0; k < p->ndt; k++)
        maxdt = fmax(maxdt, p->dt[k]);
    /* dt in increasing order inside each block */
    int *ord = malloc(sizeof(int) * (size_t)(p->ndt + 1));
    if (!ord)
        goto nomem;
    for (int k = 0; k < p->ndt; k++)
        ord[k] = k;
    for (int a = 1; a < p->ndt; a++)
        for (int b = a; b > 0 && p->dt[ord[b - 1]] > p->dt[ord[b]]; b--) {
            int tmp = ord[b];
            ord[b] = ord[b - 1];
            ord[b - 1] = tmp;
        }
    double span = 1;
    while (span < 2 * maxdt + 2)
        span *= 2;
    p->rec_dose = malloc(sizeof(size_t) * (size_t)n);
    p->rec_phi = malloc(sizeof(size_t) * (size_t)n * (size_t)(p->ndt + 1));
    p->rec_gam = malloc(sizeof(size_t) * (size_t)n * (size_t)(p->ndt + 1));
    p->rec_drift = malloc(sizeof(size_t) * (size_t)(p->ndt + 1));
    const char **names = malloc(sizeof(char *) * (size_t)(m->ncov + 1));
    double *cov = calloc((size_t)(m->ncov + 1), sizeof(double));
    popk_data_builder *bld = NULL;
    if (!p->rec_dose || !p->rec_phi || !p->rec_gam || !p->rec_drift || !names || !cov) {
        free(ord);
        free(names);
        free(cov);
        goto nomem;
    }
    for (int j = 0; j < m->ncov; j++)
        names[j] = m->cov[j].name;
    popk_sim_draw_covariates(NULL, m, NULL, 0, cov);
    bld = popk_data_builder_new(m->ncov, names, err);
    popk_status st = bld ? POPK_OK : POPK_ERR_NOMEM;
    size_t nrec = 0;
#define ADD(REC) (st == POPK_OK ? (st = popk_data_builder_add(bld, 1, &(REC), cov, err), nrec++) : 0)
    popk_record r0 = {.time = 0, .dv = NAN, .evid = 2, .mdv = 1};
    p->rec_zero = nrec;
    ADD(r0);
    double tb = 0;
    if (p->drift) {
        tb += span;
        popk_record z = {.time = tb, .dv = NAN, .evid = 3, .mdv = 1};
        ADD(z);
        for (int a = 0; a < p->ndt; a++) {
            popk_record o = {.time = tb + p->dt[ord[a]], .dv = NAN, .evid = 2, .mdv = 1};
            p->rec_drift[ord[a]] = nrec;
            ADD(o);
        }
    }
    for (int blk = 0; blk < 2 * n; blk++) {
        int j = blk % n, inf = blk >= n;
        if (inf && !p->infused[j])
            continue;
        tb += span;
        popk_record d = {.time = tb, .dv = NAN, .amt = inf ? span / 2 : 1.0, .rate = inf ? 1.0 : 0.0,
                         .evid = 4, .mdv = 1, .cmt = j + 1};
        ADD(d);
        if (!inf) {
            popk_record o = {.time = tb, .dv = NAN, .evid = 2, .mdv = 1};
            p->rec_dose[j] = nrec;
            ADD(o);
        }
        for (int a = 0; a < p->ndt; a++) {
            popk_record o = {.time = tb + p->dt[ord[a]], .dv = NAN, .evid = 2, .mdv = 1};
            (inf ? p->rec_gam : p->rec_phi)[(size_t)j * (size_t)p->ndt + (size_t)ord[a]] = nrec;
            ADD(o);
        }
    }
#undef ADD
    free(ord);
    free(names);
    free(cov);
    if (st != POPK_OK) {
        popk_data_builder_free(bld);
        free(ev);
        free(rate);
        popk_sim_lti_free(p);
        return st;
    }
    p->probe = popk_data_builder_finish(bld);
    if (!p->probe)
        goto nomem;
    free(ev);
    free(rate);
    *plan = p;
    return POPK_OK;
ineligible:
    free(ev);
    free(rate);
    popk_sim_lti_free(p);
    return POPK_OK;
nomem:
    free(ev);
    free(rate);
    popk_sim_lti_free(p);
    return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
}

void popk_sim_lti_ws_free(popk_sim_lti_ws *w)
{
    if (!w)
        return;
    popk_pred_ws_free(w->ws);
    popk_binding_free(w->b);
    free(w->phi);
    free(w->in);
    free(w->gam);
    free(w->f);
    free(w->w);
    free(w->x);
    free(w);
}

popk_sim_lti_ws *popk_sim_lti_ws_new(const popk_sim_lti *p, popk_error *err)
{
    popk_sim_lti_ws *w = calloc(1, sizeof *w);
    if (!w) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    size_t n = (size_t)p->n, ndt = (size_t)p->ndt;
    if (!(w->ws = popk_pred_ws_new(p->m, err)) || !(w->b = popk_model_bind(p->m, p->probe, err))) {
        popk_sim_lti_ws_free(w);
        return NULL;
    }
    /* step -1 (no advance) is the identity, input -1 is zero: entries 0 of phi and in */
    w->phi = calloc((ndt + 1) * n * n, sizeof(double));
    w->in = calloc(((size_t)p->ninput + 1) * n, sizeof(double));
    w->gam = malloc(sizeof(double) * (n * ndt * n + 1));
    w->f = malloc(sizeof(double) * n);
    w->w = malloc(sizeof(double) * n);
    w->x = malloc(sizeof(double) * n);
    if (!w->phi || !w->in || !w->gam || !w->f || !w->w || !w->x) {
        popk_sim_lti_ws_free(w);
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        w->phi[i * n + i] = 1;
    return w;
}

/* 1 when no c[i] is infinite or NaN (exponent bits all ones), without branches. */
static int all_finite(const double *c, size_t n)
{
    uint64_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, &c[i], sizeof u);
        bad |= (((u >> 52) & 0x7ff) + 1) >> 11;
    }
    return bad == 0;
}

int popk_sim_lti_subject(const popk_sim_lti *p, popk_sim_lti_ws *w, const double *cov,
                         const double *theta, const double *eta, double *c)
{
    const popk_model *m = p->m;
    size_t nrec = w->b->nrec;
    for (int k = 0; k < m->ncov; k++) {
        double *col = w->b->cov + (size_t)k * nrec;
        for (size_t r = 0; r < nrec; r++)
            col[r] = cov[k];
    }
    popk_pred_result pr;
    popk_error e;
    if (popk_pred_subject(w->ws, m, p->probe, w->b, 0, theta, eta, &(popk_pred_dirs){0}, &pr,
                          &e) != POPK_OK)
        return 1;
    int n = p->n, ndt = p->ndt, nout = pr.nout;
    const double *amt = pr.amt, *out = pr.out;
    double b0 = out[p->rec_zero * (size_t)nout + (size_t)p->output];
    for (int j = 0; j < n; j++) {
        size_t r = p->rec_dose[j];
        double f = amt[r * (size_t)n + (size_t)j];
        if (!(f > 0) || !isfinite(f))
            return 1;
        w->f[j] = f;
        w->w[j] = (out[r * (size_t)nout + (size_t)p->output] - b0) / f;
        /* the responses less what the constant input alone does over the step */
        for (int k = 0; k < ndt; k++) {
            const double *a = amt + p->rec_phi[(size_t)j * (size_t)ndt + (size_t)k] * (size_t)n;
            const double *g = p->drift ? amt + p->rec_drift[k] * (size_t)n : NULL;
            double *phi = w->phi + (size_t)(k + 1) * (size_t)n * (size_t)n;
            for (int i = 0; i < n; i++)
                phi[i * n + j] = (g ? a[i] - g[i] : a[i]) / f;
        }
        if (p->infused[j])
            for (int k = 0; k < ndt; k++) {
                const double *a = amt + p->rec_gam[(size_t)j * (size_t)ndt + (size_t)k] * (size_t)n;
                const double *g = p->drift ? amt + p->rec_drift[k] * (size_t)n : NULL;
                double *gam = w->gam + ((size_t)j * (size_t)ndt + (size_t)k) * (size_t)n;
                for (int i = 0; i < n; i++)
                    gam[i] = g ? a[i] - g[i] : a[i];
            }
    }
    for (int q = 0; q < p->ninput; q++) {
        double *u = w->in + (size_t)(q + 1) * (size_t)n;
        const double *rate = p->input_rate + (size_t)q * (size_t)n;
        int k = p->input_dt[q];
        const double *g = p->drift ? amt + p->rec_drift[k] * (size_t)n : NULL;
        for (int i = 0; i < n; i++)
            u[i] = g ? g[i] : 0;
        for (int j = 0; j < n; j++)
            if (rate[j] != 0)
                for (int i = 0; i < n; i++)
                    u[i] += rate[j] * w->gam[((size_t)j * (size_t)ndt + (size_t)k) * (size_t)n + i];
    }
    /* c[npt] is the trash slot */
    const lti_step *st = p->step, *end = st + p->nstep;
    if (n == 1) {
        /* one compartment: scalars, no branch, and one multiply-add per event time on the
         * chain from one time to the next (the state after the doses) */
        double x0 = 0, w0 = w->w[0], f0 = w->f[0];
        const double *phi = w->phi + 1, *in = w->in + 1;
        for (; st < end; st++) {
            double ph = phi[st->k], u = in[st->q];
            double pre = ph * x0 + u;
            x0 = ph * x0 + (u + f0 * st->amt1);
            c[st->pre] = b0 + w0 * pre;
            c[st->post] = b0 + w0 * x0;
        }
        return all_finite(c, p->npt) ? 0 : 1;
    }
    double *x = w->x;
    for (int i = 0; i < n; i++)
        x[i] = 0;
    size_t nn = (size_t)n * (size_t)n;
    for (; st < end; st++) {
        const double *phi = w->phi + (size_t)(st->k + 1) * nn;
        const double *u = w->in + (size_t)(st->q + 1) * (size_t)n;
        double y[8];
        for (int i = 0; i < n; i++) {
            double v = u[i];
            for (int j = 0; j < n; j++)
                v += phi[i * n + j] * x[j];
            y[i] = v;
        }
        double o = b0;
        for (int i = 0; i < n; i++) {
            x[i] = y[i];
            o += w->w[i] * x[i];
        }
        c[st->pre] = o;
        for (int b = st->ib; b < st->ib + st->nb; b++)
            x[p->bolus[b].cmt] += w->f[p->bolus[b].cmt] * p->bolus[b].amt;
        o = b0;
        for (int i = 0; i < n; i++)
            o += w->w[i] * x[i];
        c[st->post] = o;
    }
    return all_finite(c, p->npt) ? 0 : 1;
}
