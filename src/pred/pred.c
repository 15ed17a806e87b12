/* pred/pred.c — NONMEM event loop shared by the analytic and ODE paths (see pred.h). */
#include "pred/pred.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pred/expm.h"
#include "pred/linear.h"
#include "pred/ode.h"
#include "util/error.h"

enum { EV_DOSE, EV_INF_END };

/* A pending event: a (lagged or additional) dose, or the end of an infusion. */
typedef struct {
    popk_dual time;
    int kind;
    int cmt;            /* 0-based */
    int repeats;        /* EV_DOSE: additional doses still to come after this one */
    double ii;          /* EV_DOSE: interval of the repeats */
    int infusion;       /* EV_DOSE: 1 infusion, 0 bolus */
    popk_dual amount;   /* EV_DOSE bolus: amount entering (F * AMT) */
    popk_dual rate;     /* infusion rate (EV_DOSE infusion, EV_INF_END) */
    popk_dual dur;      /* EV_DOSE infusion: duration */
    long seq;           /* insertion order: ties in time keep it */
} pend_event;

/* A dose as the event loop sees it once F, lag, rate and duration are resolved. */
typedef struct {
    int cmt;
    int infusion;
    popk_dual amount, rate, dur, lag;
    double ii;
} dose_spec;

struct popk_pred_ws {
    const popk_model *m;
    int n;              /* compartments */
    int nd;             /* directions of the current call */
    double *slots;      /* nslots * (1 + POPK_DUAL_MAX) */
    double *stack;
    double *ode_slots;  /* ODE right-hand side frame: directions = amounts + nd */
    double *ode_stack;
    pend_event *ev;
    int nev, cap_ev;
    long seq;
    popk_dual A[8], R[8];
    popk_dual Rseg[8];  /* inputs of the ODE segment being integrated */
    popk_dual t;        /* current time */
    popk_linsys lin;
    popk_linprop *lin_prop; /* lin's propagators, by step length */
    double lin_cache[POPK_LIN_NPAR * (1 + POPK_DUAL_MAX)];
    int lin_valid;      /* lin was built from lin_cache (same nd) */
    popk_ode *ode;
    int ode_ns;
    popk_expm *expm;    /* linear odes: solved by matrix exponential (created on first use) */
    int ode_method;     /* POPK_CVODE_ADAMS, or POPK_CVODE_BDF (model's choice, or after Adams
                         * failed in this call) */
    /* Where the solver's last segment ended: a segment that starts from exactly there (same
     * time, amounts, inputs and parameters, all with partials) continues the integration
     * instead of restarting it, so records without a discontinuity cost no restart. */
    int ode_live;
    popk_dual ode_t, ode_A[8], ode_R[8];
    double *ode_frame;  /* slots [0, time_slot) the right-hand side read */
    /* The right-hand side stays smooth up to here (the next dose, reset, covariate change or
     * pending event) while the current record is reached: the solver may step past the
     * record and interpolate instead of stopping at every observation. ode_smooth_live is
     * what the live integration was promised (a continuation must not promise less). */
    double smooth_until, ode_smooth_live;
    size_t disc_rec;    /* first record after the current one that breaks smoothness */
    const popk_binding *bind;
    const popk_data *data;
    size_t rec;         /* current record (for messages) */
    size_t sub;         /* current subject */
    double id;
    int segment_failed;
    int bad_cmt;        /* the compartment whose right-hand side was not finite, and when */
    double bad_t, bad_value;
    double *out, *amt, *ind;
    size_t cap_rec;
};

/* ---- workspace ------------------------------------------------------------------------ */

static int ode_rhs(double t, const double *y, double *ydot, double *jac, double *dfdq,
                   void *user);

popk_pred_ws *popk_pred_ws_new(const popk_model *m, popk_error *err)
{
    int n = m->ncmt;
    if (n > 8) {
        popk_error_set(err, POPK_ERR_MODEL, m->path, 0, 0,
                       "at most 8 compartments are supported (model has %d)", n);
        return NULL;
    }
    popk_pred_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        goto nomem;
    ws->m = m;
    ws->n = n;
    int stride = 1 + POPK_DUAL_MAX;
    int stack = 1;
    const popk_prog *progs[3] = {m->prog_pk, m->prog_rhs, m->prog_out};
    for (int i = 0; i < 3; i++)
        if (progs[i] && popk_prog_stack_size(progs[i]) > stack)
            stack = popk_prog_stack_size(progs[i]);
    ws->slots = calloc((size_t)m->nslots * stride, sizeof(double));
    ws->stack = calloc((size_t)stack * stride, sizeof(double));
    ws->ode_slots = calloc((size_t)m->nslots * stride, sizeof(double));
    ws->ode_stack = calloc((size_t)stack * stride, sizeof(double));
    ws->ode_frame = calloc((size_t)m->nslots * stride, sizeof(double));
    ws->cap_ev = 16;
    ws->ev = malloc(sizeof(pend_event) * (size_t)ws->cap_ev);
    if (!ws->slots || !ws->stack || !ws->ode_slots || !ws->ode_stack || !ws->ode_frame ||
        !ws->ev)
        goto nomem;
    ws->ode_ns = -1;
    ws->ode_method = POPK_CVODE_ADAMS;
    ws->smooth_until = -INFINITY;
    if (m->kind == POPK_STRUCT_LINEAR && !(ws->lin_prop = popk_linprop_new()))
        goto nomem;
    return ws;
nomem:
    popk_pred_ws_free(ws);
    popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    return NULL;
}

void popk_pred_ws_free(popk_pred_ws *ws)
{
    if (!ws)
        return;
    popk_ode_free(ws->ode);
    popk_expm_free(ws->expm);
    popk_linprop_free(ws->lin_prop);
    free(ws->slots);
    free(ws->stack);
    free(ws->ode_slots);
    free(ws->ode_stack);
    free(ws->ode_frame);
    free(ws->ev);
    free(ws->out);
    free(ws->amt);
    free(ws->ind);
    free(ws);
}

/* ---- helpers on the slot frame ---------------------------------------------------------- */

static inline double *slot_ptr(popk_pred_ws *ws, int slot)
{
    return ws->slots + (size_t)slot * (1 + ws->nd);
}

static popk_dual slot_get(popk_pred_ws *ws, int slot)
{
    return pd_load(slot_ptr(ws, slot), ws->nd);
}

/* Store a dual as strided: an explicit loop, as 1 + nd is small (an inline memcpy of a
 * variable length costs more than the copy itself). */
static inline void put_dual(double *strided, const popk_dual *v, int nd)
{
    strided[0] = v->v;
    for (int k = 0; k < nd; k++)
        strided[1 + k] = v->d[k];
}

static void slot_put(popk_pred_ws *ws, int slot, const popk_dual *v)
{
    put_dual(slot_ptr(ws, slot), v, ws->nd);
}

static void run_prog(popk_pred_ws *ws, const popk_prog *p)
{
    if (!p)
        return;
    if (ws->nd == 0)
        popk_prog_eval(p, ws->slots, ws->stack);
    else
        popk_prog_eval_dual(p, ws->nd, ws->slots, ws->stack);
}

static double rec_time(popk_pred_ws *ws, size_t r);

static popk_status fail(popk_pred_ws *ws, popk_error *err, popk_status code, const char *what,
                        double t)
{
    return popk_error_set(err, code, NULL, 0, 0, "subject ID %g, time %g: %s", ws->id, t, what);
}

/* Where a structural parameter or dosing attribute held in slot comes from, for messages:
 * the individual parameter with the same value (these are almost always plain names of
 * individual parameters) and the record, e.g. "; from individual parameter 'v' = tv * (WT -
 * 80) (record at line 4)". */
static void describe_source(popk_pred_ws *ws, int slot, char *buf, size_t size)
{
    const popk_model *m = ws->m;
    double v = slot_ptr(ws, slot)[0];
    int from = -1;
    for (int k = 0; k < m->nind; k++) {
        double w = slot_ptr(ws, m->ind_slot + k)[0];
        if (w == v || (isnan(v) && isnan(w)))
            from = k;
    }
    int line = ws->data ? ws->data->rec[ws->rec].line : 0;
    if (from >= 0)
        snprintf(buf, size, "; from individual parameter '%s' = %s (record at line %d)",
                 m->ind_name[from], m->ind_text[from], line);
    else
        snprintf(buf, size, " (record at line %d)", line);
}

/* ---- the structural system: advance the amounts over a step ----------------------------- */

/* Build the linear system's micro-constants from the current individual parameters. */
static popk_status linear_setup(popk_pred_ws *ws, popk_error *err)
{
    const popk_model *m = ws->m;
    int nd = ws->nd;
    /* Most records leave the structural parameters unchanged: reuse the system then. */
    int stride = 1 + nd, same = ws->lin_valid;
    for (int k = 0; k < POPK_LIN_NPAR && same; k++)
        if (m->lin_slot[k] >= 0)
            same = !memcmp(ws->lin_cache + k * (1 + POPK_DUAL_MAX), slot_ptr(ws, m->lin_slot[k]),
                           sizeof(double) * (size_t)stride);
    if (same)
        return POPK_OK;
    for (int k = 0; k < POPK_LIN_NPAR; k++)
        if (m->lin_slot[k] >= 0)
            memcpy(ws->lin_cache + k * (1 + POPK_DUAL_MAX), slot_ptr(ws, m->lin_slot[k]),
                   sizeof(double) * (size_t)stride);
    ws->lin_valid = 0;
    popk_dual p[POPK_LIN_NPAR];
    int have[POPK_LIN_NPAR];
    for (int k = 0; k < POPK_LIN_NPAR; k++) {
        have[k] = m->lin_slot[k] >= 0;
        p[k] = have[k] ? slot_get(ws, m->lin_slot[k]) : pd_const(0.0, nd);
        if (have[k] && !(isfinite(p[k].v) && p[k].v >= 0.0)) {
            static const char *names[POPK_LIN_NPAR] = {"CL", "V", "Q", "V2", "Q3", "V3", "KA",
                                                       "K", "K12", "K21", "K13", "K31"};
            char msg[600], src[400];
            describe_source(ws, m->lin_slot[k], src, sizeof src);
            snprintf(msg, sizeof msg,
                     "linear model parameter %s is %g (must be finite and >= 0)%s", names[k],
                     p[k].v, src);
            return fail(ws, err, POPK_ERR_NUMERIC, msg, rec_time(ws, ws->rec));
        }
    }
    popk_linsys *s = &ws->lin;
    s->ncmt = m->lin_ncmt;
    s->depot = m->lin_depot;
    s->nd = nd;
    if (!m->lin_rate_form) {
        if (!(p[POPK_LIN_V].v > 0.0))
            return fail(ws, err, POPK_ERR_NUMERIC, "linear model volume V must be > 0",
                        rec_time(ws, ws->rec));
        popk_linsys_from_clearances(s, &p[POPK_LIN_CL], &p[POPK_LIN_V],
                                    m->lin_ncmt >= 2 ? &p[POPK_LIN_Q2] : NULL,
                                    m->lin_ncmt >= 2 ? &p[POPK_LIN_V2] : NULL,
                                    m->lin_ncmt >= 3 ? &p[POPK_LIN_Q3] : NULL,
                                    m->lin_ncmt >= 3 ? &p[POPK_LIN_V3] : NULL,
                                    m->lin_depot ? &p[POPK_LIN_KA] : NULL);
        if ((m->lin_ncmt >= 2 && !(p[POPK_LIN_V2].v > 0.0)) ||
            (m->lin_ncmt >= 3 && !(p[POPK_LIN_V3].v > 0.0)))
            return fail(ws, err, POPK_ERR_NUMERIC, "peripheral volume must be > 0",
                        rec_time(ws, ws->rec));
    } else {
        s->k10 = p[POPK_LIN_K];
        s->k12 = p[POPK_LIN_K12];
        s->k21 = p[POPK_LIN_K21];
        s->k13 = p[POPK_LIN_K13];
        s->k31 = p[POPK_LIN_K31];
        s->ka = m->lin_depot ? p[POPK_LIN_KA] : pd_const(0.0, nd);
    }
    popk_linprop_set(ws->lin_prop, s);
    ws->lin_valid = 1;
    return POPK_OK;
}

/* Steps allowed to Adams in one advance before the segment is redone with BDF: on ACOP's
 * compartment models Adams takes 100-400 steps per 72-h dosing interval at rtol 1e-8; a
 * stiff system stalls it long before this (Robertson: max_steps). */
#define ODE_ADAMS_MAX_STEPS 5000L

/* Select the ODE method (tolerances and step limit with it) for the next reset. */
static void ode_use_method(popk_pred_ws *ws, int method)
{
    const popk_model *m = ws->m;
    long max_steps = m->max_steps;
    if (method == POPK_CVODE_ADAMS && max_steps > ODE_ADAMS_MAX_STEPS)
        max_steps = ODE_ADAMS_MAX_STEPS;
    popk_ode_set_method(ws->ode, method);
    popk_ode_set_tolerances(ws->ode, m->rtol, m->atol, max_steps);
}

/* Make sure the ODE solver exists with nd sensitivity directions. */
static popk_status ode_setup(popk_pred_ws *ws, popk_error *err)
{
    if (ws->ode && ws->ode_ns == ws->nd) {
        if (popk_ode_get_method(ws->ode) != ws->ode_method)
            ode_use_method(ws, ws->ode_method);
        return POPK_OK;
    }
    popk_ode_free(ws->ode);
    ws->ode_live = 0;
    ws->ode = popk_ode_new(ws->n, ws->nd, ode_rhs, ws, err);
    if (!ws->ode)
        return err ? err->code : POPK_ERR_SOLVER;
    ode_use_method(ws, ws->ode_method);
    ws->ode_ns = ws->nd;
    return POPK_OK;
}

/* Evaluate the ODE right-hand side on duals with directions [amounts (n), params (nd)]. */
static int ode_rhs(double t, const double *y, double *ydot, double *jac, double *dfdq,
                   void *user)
{
    popk_pred_ws *ws = user;
    const popk_model *m = ws->m;
    int n = ws->n, nd = ws->nd;
    int want_d = jac || dfdq;
    int ndir = want_d ? n + nd : 0;
    int sstride = 1 + nd, ostride = 1 + ndir;
    /* Copy the frame (values and parameter partials) into the ODE frame layout. */
    for (int s = 0; s < m->nslots; s++) {
        const double *src = ws->slots + (size_t)s * sstride;
        double *dst = ws->ode_slots + (size_t)s * ostride;
        dst[0] = src[0];
        if (ndir) {
            memset(dst + 1, 0, sizeof(double) * (size_t)n);
            memcpy(dst + 1 + n, src + 1, sizeof(double) * (size_t)nd);
        }
    }
    for (int i = 0; i < n; i++) {
        double *dst = ws->ode_slots + (size_t)(m->amt_slot + i) * ostride;
        dst[0] = y[i];
        if (ndir) {
            memset(dst + 1, 0, sizeof(double) * (size_t)(n + nd));
            dst[1 + i] = 1.0;
        }
    }
    double *ts = ws->ode_slots + (size_t)m->time_slot * ostride;
    ts[0] = t;
    if (ndir)
        memset(ts + 1, 0, sizeof(double) * (size_t)ndir);
    if (ndir)
        popk_prog_eval_dual(m->prog_rhs, ndir, ws->ode_slots, ws->ode_stack);
    else
        popk_prog_eval(m->prog_rhs, ws->ode_slots, ws->ode_stack);
    for (int i = 0; i < n; i++) {
        const double *d = ws->ode_slots + (size_t)(m->deriv_slot + i) * ostride;
        ydot[i] = d[0] + ws->Rseg[i].v;
        if (!isfinite(ydot[i])) {
            if (!ws->segment_failed) {
                ws->bad_cmt = i;
                ws->bad_t = t;
                ws->bad_value = ydot[i];
            }
            return ws->segment_failed = 1, 1;
        }
        if (jac)
            for (int j = 0; j < n; j++)
                jac[i * n + j] = d[1 + j];
        if (dfdq)
            for (int k = 0; k < nd; k++)
                dfdq[k * n + i] = d[1 + n + k] + ws->Rseg[i].d[k];
    }
    return 0;
}

/* f(x) for the current rates, on values (used for time-shift partials on the ODE path). */
static int ode_f(popk_pred_ws *ws, double t, const popk_dual *A, double *f)
{
    double y[8];
    for (int i = 0; i < ws->n; i++)
        y[i] = A[i].v;
    return ode_rhs(t, y, f, NULL, NULL, ws);
}

static int same_dual(const popk_dual *a, const popk_dual *b, int nd)
{
    return a->v == b->v && !memcmp(a->d, b->d, sizeof(double) * (size_t)nd);
}

/* The advance of a linear odes: system: exact, by matrix exponential (pred/expm.h). */
static popk_status expm_advance(popk_pred_ws *ws, popk_dual *A, const popk_dual *R,
                                popk_dual t0, popk_dual dt, popk_error *err)
{
    if (!ws->expm && !(ws->expm = popk_expm_new(ws->m, err)))
        return err ? err->code : POPK_ERR_NOMEM;
    double bad = 0.0;
    int rc = popk_expm_set_frame(ws->expm, ws->nd, ws->slots, &bad);
    if (rc > 0) {
        char msg[600];
        snprintf(msg, sizeof msg,
                 "the right-hand side of compartment '%s' is %g (the model is undefined at "
                 "these individual parameters)", ws->m->cmt_name[rc - 1], bad);
        return fail(ws, err, POPK_ERR_NUMERIC, msg, t0.v);
    }
    if (popk_expm_advance(ws->expm, A, R, dt) != 0)
        return fail(ws, err, POPK_ERR_NUMERIC, "matrix exponential of the ODE system is not "
                    "finite", t0.v);
    return POPK_OK;
}

/* Initial sensitivities of a segment starting at t0 from A: the amounts' partials, shifted
 * by -f(A) d(t0) because starting later moves the trajectory. Non-zero when f is not finite. */
static int ode_start_sens(popk_pred_ws *ws, const popk_dual *A, popk_dual t0, double *s)
{
    int n = ws->n, nd = ws->nd, need_shift = 0;
    double f[8] = {0};
    for (int k = 0; k < nd; k++)
        need_shift |= t0.d[k] != 0.0;
    if (need_shift && ode_f(ws, t0.v, A, f) != 0)
        return -1;
    for (int k = 0; k < nd; k++)
        for (int i = 0; i < n; i++)
            s[k * n + i] = A[i].d[k] - f[i] * t0.d[k];
    return 0;
}

/* Advance amounts A from time t0 over dt with the inputs R (all duals). */
static popk_status advance(popk_pred_ws *ws, popk_dual *A, const popk_dual *R, popk_dual t0,
                           popk_dual dt, popk_error *err)
{
    const popk_model *m = ws->m;
    int n = ws->n, nd = ws->nd;
    if (m->kind == POPK_STRUCT_NONE || dt.v <= 0.0)
        return POPK_OK;
    if (m->kind == POPK_STRUCT_LINEAR) {
        if (popk_linprop_advance(ws->lin_prop, A, R, &dt) != 0)
            return fail(ws, err, POPK_ERR_NUMERIC, "invalid linear compartment system",
                        t0.v);
        return POPK_OK;
    }
    if (popk_model_uses_expm(m))
        return expm_advance(ws, A, R, t0, dt, err);
    /* ODE path. The solver sees the inputs R through ws->Rseg. */
    popk_status st = ode_setup(ws, err);
    if (st != POPK_OK)
        return st;
    size_t frame = (size_t)m->time_slot * (size_t)(1 + nd);
    int cont = ws->ode_live && same_dual(&t0, &ws->ode_t, nd) &&
               !memcmp(ws->ode_frame, ws->slots, sizeof(double) * frame);
    for (int i = 0; i < n && cont; i++)
        cont = same_dual(&A[i], &ws->ode_A[i], nd) && same_dual(&R[i], &ws->ode_R[i], nd);
    double tout = t0.v + dt.v;
    double tsmooth = ws->smooth_until > tout ? ws->smooth_until : tout;
    cont = cont && tsmooth >= ws->ode_smooth_live;
    ws->ode_live = 0;
    for (int i = 0; i < n; i++)
        ws->Rseg[i] = R[i];
    double y[8], s[8 * POPK_DUAL_MAX], f[8] = {0};
    for (int i = 0; i < n; i++)
        y[i] = A[i].v;
    if (nd > 0 && !cont && ode_start_sens(ws, A, t0, s) != 0)
        return fail(ws, err, POPK_ERR_SOLVER, "non-finite ODE right-hand side", t0.v);
    ws->segment_failed = 0;
    popk_error e2;
    popk_error_clear(&e2);
    double y0[8];
    memcpy(y0, y, sizeof(double) * (size_t)n);
    int ok = (cont || popk_ode_reset(ws->ode, t0.v, y, nd ? s : NULL, &e2) == POPK_OK) &&
             popk_ode_advance_smooth(ws->ode, tout, tsmooth, y, nd ? s : NULL, &e2) == POPK_OK;
    if (!ok && ws->ode_method == POPK_CVODE_ADAMS) {
        /* Adams failed (a stiff stretch, most likely): redo the segment from its start with
         * BDF, and keep BDF for the rest of this prediction. The start is A at t0 (after a
         * continuation too), its partials shifted as above. */
        ws->ode_method = POPK_CVODE_BDF;
        ode_use_method(ws, POPK_CVODE_BDF);
        memcpy(y, y0, sizeof(double) * (size_t)n);
        if (nd > 0 && ode_start_sens(ws, A, t0, s) != 0)
            return fail(ws, err, POPK_ERR_SOLVER, "non-finite ODE right-hand side", t0.v);
        ws->segment_failed = 0;
        popk_error_clear(&e2);
        ok = popk_ode_reset(ws->ode, t0.v, y, nd ? s : NULL, &e2) == POPK_OK &&
             popk_ode_advance_smooth(ws->ode, tout, tsmooth, y, nd ? s : NULL, &e2) == POPK_OK;
    }
    if (!ok) {
        /* Name the first non-finite right-hand side: the solver only sees "failed". */
        char msg[900];
        if (ws->segment_failed) {
            snprintf(msg, sizeof msg,
                     "the right-hand side of compartment '%s' is %g at t = %.10g (amounts "
                     "non-finite or the model undefined there); %s",
                     m->cmt_name[ws->bad_cmt], ws->bad_value, ws->bad_t, e2.message);
            return fail(ws, err, POPK_ERR_SOLVER, msg, ws->bad_t);
        }
        snprintf(msg, sizeof msg, "%s", e2.message);
        return fail(ws, err, POPK_ERR_SOLVER, msg, t0.v);
    }
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i]))
            return fail(ws, err, POPK_ERR_SOLVER, "ODE solution is not finite", t0.v + dt.v);
        A[i].v = y[i];
    }
    if (nd > 0) {
        popk_dual t1 = pd_add(t0, dt, nd);
        int need_shift = 0;
        for (int k = 0; k < nd; k++)
            need_shift |= t1.d[k] != 0.0;
        if (need_shift && ode_f(ws, t1.v, A, f) != 0)
            return fail(ws, err, POPK_ERR_SOLVER, "non-finite ODE right-hand side", t1.v);
        for (int k = 0; k < nd; k++)
            for (int i = 0; i < n; i++)
                A[i].d[k] = s[k * n + i] + (need_shift ? f[i] * t1.d[k] : 0.0);
    }
    ws->ode_live = 1;
    ws->ode_smooth_live = tsmooth;
    ws->ode_t = pd_add(t0, dt, nd);
    for (int i = 0; i < n; i++) {
        ws->ode_A[i] = A[i];
        ws->ode_R[i] = R[i];
    }
    memcpy(ws->ode_frame, ws->slots, sizeof(double) * frame);
    return POPK_OK;
}

/* ---- pending events ------------------------------------------------------------------- */

static popk_status push_event(popk_pred_ws *ws, const pend_event *e, popk_error *err)
{
    if (ws->nev == ws->cap_ev) {
        int cap = ws->cap_ev * 2;
        pend_event *p = realloc(ws->ev, sizeof *p * (size_t)cap);
        if (!p)
            return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        ws->ev = p;
        ws->cap_ev = cap;
    }
    ws->ev[ws->nev] = *e;
    ws->ev[ws->nev].seq = ws->seq++;
    ws->nev++;
    return POPK_OK;
}

/* Index of the earliest pending event (ties: first inserted), or -1. */
static int next_event(const popk_pred_ws *ws)
{
    int best = -1;
    for (int i = 0; i < ws->nev; i++) {
        const pend_event *e = &ws->ev[i];
        if (best < 0 || e->time.v < ws->ev[best].time.v ||
            (e->time.v == ws->ev[best].time.v && e->seq < ws->ev[best].seq))
            best = i;
    }
    return best;
}

static void remove_event(popk_pred_ws *ws, int i)
{
    ws->ev[i] = ws->ev[--ws->nev];
}

static void reset_system(popk_pred_ws *ws)
{
    for (int i = 0; i < ws->n; i++) {
        ws->A[i] = pd_const(0.0, ws->nd);
        ws->R[i] = pd_const(0.0, ws->nd);
    }
    ws->nev = 0;
}

/* Start an infusion now (at time t): add its rate and schedule its end. */
static popk_status start_infusion(popk_pred_ws *ws, popk_dual *R, int cmt, popk_dual rate,
                                  popk_dual end, popk_error *err)
{
    R[cmt] = pd_add(R[cmt], rate, ws->nd);
    pend_event e = {0};
    e.kind = EV_INF_END;
    e.time = end;
    e.cmt = cmt;
    e.rate = rate;
    return push_event(ws, &e, err);
}

/* Apply a dose that enters the system now. Schedules its infusion end and next repeat. */
static popk_status fire_dose(popk_pred_ws *ws, const pend_event *e, popk_error *err)
{
    int nd = ws->nd;
    popk_status st = POPK_OK;
    if (e->infusion)
        st = start_infusion(ws, ws->R, e->cmt, e->rate, pd_add(e->time, e->dur, nd), err);
    else
        ws->A[e->cmt] = pd_add(ws->A[e->cmt], e->amount, nd);
    if (st == POPK_OK && e->repeats > 0) {
        pend_event next = *e;
        next.time.v += e->ii;
        next.repeats--;
        st = push_event(ws, &next, err);
    }
    return st;
}

/* Time of the next record of the subject after the current one that doses, resets or
 * changes a covariate (INFINITY if none): up to there the ODE right-hand side is smooth
 * unless a pending event comes first. */
static double next_discontinuity(popk_pred_ws *ws)
{
    const popk_data *d = ws->data;
    const popk_binding *b = ws->bind;
    const popk_model *m = ws->m;
    if (!d || !b || m->kind != POPK_STRUCT_ODE)
        return -INFINITY;
    size_t end = d->sub[ws->sub].first + d->sub[ws->sub].n;
    if (ws->disc_rec <= ws->rec) {
        size_t j = ws->rec + 1;
        for (; j < end; j++) {
            int evid = d->rec[j].evid;
            int changed = evid == 1 || evid == 3 || evid == 4;
            for (int k = 0; k < m->ncov && !changed; k++) {
                double a = b->cov[(size_t)k * b->nrec + j - 1], c = b->cov[(size_t)k * b->nrec + j];
                changed = memcmp(&a, &c, sizeof a) != 0;
            }
            if (changed)
                break;
        }
        ws->disc_rec = j;
    }
    return ws->disc_rec < end ? d->rec[ws->disc_rec].time : INFINITY;
}

/* Advance the system to time t_end (a record time), applying every pending event that
 * falls at or before it, in time order. */
static popk_status advance_to(popk_pred_ws *ws, double t_end, popk_error *err)
{
    int nd = ws->nd;
    for (;;) {
        int i = next_event(ws);
        if (i < 0 || ws->ev[i].time.v > t_end)
            break;
        pend_event e = ws->ev[i];
        remove_event(ws, i);
        popk_status st = advance(ws, ws->A, ws->R, ws->t, pd_sub(e.time, ws->t, nd), err);
        if (st != POPK_OK)
            return st;
        if (e.time.v > ws->t.v || ws->t.v == e.time.v)
            ws->t = e.time;
        if (e.kind == EV_INF_END) {
            ws->R[e.cmt] = pd_sub(ws->R[e.cmt], e.rate, nd);
            if (fabs(ws->R[e.cmt].v) < 1e-12 * fabs(e.rate.v))
                ws->R[e.cmt].v = 0.0;
        } else {
            st = fire_dose(ws, &e, err);
            if (st != POPK_OK)
                return st;
        }
    }
    int i = next_event(ws);
    ws->smooth_until = next_discontinuity(ws);
    if (i >= 0 && ws->ev[i].time.v < ws->smooth_until)
        ws->smooth_until = ws->ev[i].time.v;
    /* t_end carries no partials; only the first nd of them are set (all that is read) */
    popk_dual dt;
    dt.v = t_end - ws->t.v;
    for (int k = 0; k < nd; k++)
        dt.d[k] = -ws->t.d[k];
    popk_status st = advance(ws, ws->A, ws->R, ws->t, dt, err);
    ws->smooth_until = -INFINITY;
    ws->t.v = t_end;
    for (int k = 0; k < nd; k++)
        ws->t.d[k] = 0.0;
    return st;
}

/* ---- steady state --------------------------------------------------------------------- */

/* One dosing cycle of a steady-state pattern, from just before a dose (phase 0-) to just
 * before the next (phase II-). The pattern is the dose alone, repeated every II; infusions
 * longer than II overlap: during phase [0, r) nf + 1 of them run, then nf (D = nf II + r). */
static popk_status ss_cycle(popk_pred_ws *ws, const dose_spec *ds, popk_dual t0,
                            const popk_dual *x, popk_dual *y, popk_error *err)
{
    int n = ws->n, nd = ws->nd;
    popk_dual R[8];
    for (int i = 0; i < n; i++) {
        y[i] = x[i];
        R[i] = pd_const(0.0, nd);
    }
    popk_dual ii = pd_const(ds->ii, nd);
    if (!ds->infusion) {
        y[ds->cmt] = pd_add(y[ds->cmt], ds->amount, nd);
        return advance(ws, y, R, t0, ii, err);
    }
    if (ds->ii <= 0.0) { /* constant infusion: any period works; use 24 time units */
        R[ds->cmt] = ds->rate;
        return advance(ws, y, R, t0, pd_const(24.0, nd), err);
    }
    double nf = floor(ds->dur.v / ds->ii);
    popk_dual r = pd_sub(ds->dur, pd_const(nf * ds->ii, nd), nd);
    R[ds->cmt] = pd_scale(ds->rate, nf + 1.0, nd);
    popk_status st = advance(ws, y, R, t0, r, err);
    if (st != POPK_OK)
        return st;
    R[ds->cmt] = pd_scale(ds->rate, nf, nd);
    return advance(ws, y, R, pd_add(t0, r, nd), pd_sub(ii, r, nd), err);
}

/* Solve (I - M) z = b for z (duals) with M given by values, n <= 8, partial pivoting. */
static int solve_dual(int n, int nd, double *M, popk_dual *b)
{
    double a[8][8];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            a[i][j] = (i == j ? 1.0 : 0.0) - M[i * n + j];
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int i = c + 1; i < n; i++)
            if (fabs(a[i][c]) > fabs(a[p][c]))
                p = i;
        if (a[p][c] == 0.0)
            return -1;
        if (p != c) {
            for (int j = 0; j < n; j++) {
                double t = a[c][j];
                a[c][j] = a[p][j];
                a[p][j] = t;
            }
            popk_dual t = b[c];
            b[c] = b[p];
            b[p] = t;
        }
        for (int i = c + 1; i < n; i++) {
            double f = a[i][c] / a[c][c];
            if (f == 0.0)
                continue;
            for (int j = c; j < n; j++)
                a[i][j] -= f * a[c][j];
            b[i] = pd_sub(b[i], pd_scale(b[c], f, nd), nd);
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        for (int j = i + 1; j < n; j++)
            b[i] = pd_sub(b[i], pd_scale(b[j], a[i][j], nd), nd);
        b[i] = pd_scale(b[i], 1.0 / a[i][i], nd);
    }
    return 0;
}

/* Steady-state amounts just before a pattern dose: the fixed point x = cycle(x), found by
 * Newton's method on the periodic orbit with a finite-difference Jacobian of the cycle map
 * (exact in one step for linear systems; iterated to a relative change of 1e-10 for
 * nonlinear ODEs). Partials follow from the implicit function theorem through the duals:
 * each Newton step evaluates the cycle at the current x with its partials, so the step
 * after the values have converged makes the partials exact. For linear systems that is the
 * second step: the first starts from x = 0 and misses the parameter dependence of the
 * cycle's Jacobian (dM/dp x). For nonlinear ODEs the Jacobian (n + 1 cycles) is kept while
 * each step shrinks the change tenfold (chord iterations, one cycle each) and rebuilt when
 * convergence slows. */
static popk_status ss_fixed_point(popk_pred_ws *ws, const dose_spec *ds, popk_dual t0,
                                  popk_dual *x, popk_error *err)
{
    int n = ws->n, nd = ws->nd;
    int linear = ws->m->kind == POPK_STRUCT_LINEAR || popk_model_uses_expm(ws->m);
    popk_dual y[8], yh[8], xh[8];
    double M[64], last_change = INFINITY;
    int rebuild = 1;
    for (int i = 0; i < n; i++)
        x[i] = pd_const(0.0, nd);
    for (int iter = 0; iter < 100; iter++) {
        popk_status st = ss_cycle(ws, ds, t0, x, y, err);
        if (st != POPK_OK)
            return st;
        for (int k = 0; k < n && rebuild; k++) {
            double h = fmax(1e-6 * fabs(x[k].v), 1e-6 * (fabs(ds->amount.v) + fabs(ds->rate.v)));
            if (linear)
                h = 1.0; /* the cycle map is affine: any step is exact */
            for (int i = 0; i < n; i++)
                xh[i] = x[i];
            xh[k].v += h;
            st = ss_cycle(ws, ds, t0, xh, yh, err);
            if (st != POPK_OK)
                return st;
            for (int i = 0; i < n; i++)
                M[i * n + k] = (yh[i].v - y[i].v) / h;
        }
        popk_dual delta[8];
        double change = 0.0, size = 0.0;
        for (int i = 0; i < n; i++)
            delta[i] = pd_sub(y[i], x[i], nd);
        if (solve_dual(n, nd, M, delta) != 0)
            return fail(ws, err, POPK_ERR_NUMERIC, "steady state: singular cycle map", t0.v);
        for (int i = 0; i < n; i++) {
            x[i] = pd_add(x[i], delta[i], nd);
            change = fmax(change, fabs(delta[i].v));
            size = fmax(size, fabs(x[i].v));
        }
        if (linear ? nd == 0 || iter == 1 : change <= 1e-10 * size + 1e-14)
            return POPK_OK;
        rebuild = !linear && !(change < 0.1 * last_change);
        last_change = change;
    }
    return fail(ws, err, POPK_ERR_NOCONV, "steady state did not converge in 100 Newton steps",
                t0.v);
}

/* Apply a steady-state dose at time t (current time): add the periodic steady state at the
 * point of the cycle reached at t (II - ALAG, modulo II) to the state, with the infusions
 * of earlier implied doses that are still running. */
static popk_status apply_steady_state(popk_pred_ws *ws, const dose_spec *ds, popk_error *err)
{
    int n = ws->n, nd = ws->nd;
    popk_dual x[8];
    popk_dual t = ws->t;
    popk_status st = ss_fixed_point(ws, ds, t, x, err);
    if (st != POPK_OK)
        return st;
    if (ds->infusion && ds->ii <= 0.0) {
        /* Constant infusion at steady state (AMT = 0): the record sets the steady-state
         * amounts; the zero-amount dose itself starts nothing, so the amounts decay from
         * there (NONMEM 7.4.3, nmtest ID 26). */
        for (int i = 0; i < n; i++)
            ws->A[i] = pd_add(ws->A[i], x[i], nd);
        return POPK_OK;
    }
    /* Phase of the cycle at time t: the last implied dose entered at t - psi. */
    double k = floor(ds->lag.v / ds->ii);
    popk_dual psi = pd_sub(pd_const((k + 1.0) * ds->ii, nd), ds->lag, nd);
    if (psi.v >= ds->ii * (1.0 - 1e-12))
        psi = pd_const(0.0, nd); /* lag a multiple of II: state just before a dose */
    if (psi.v > 0.0) {
        popk_dual R[8];
        for (int i = 0; i < n; i++)
            R[i] = pd_const(0.0, nd);
        if (!ds->infusion) {
            x[ds->cmt] = pd_add(x[ds->cmt], ds->amount, nd);
            st = advance(ws, x, R, t, psi, err);
        } else {
            double nf = floor(ds->dur.v / ds->ii);
            popk_dual r = pd_sub(ds->dur, pd_const(nf * ds->ii, nd), nd);
            popk_dual first = r.v < psi.v ? r : psi;
            R[ds->cmt] = pd_scale(ds->rate, nf + 1.0, nd);
            st = advance(ws, x, R, t, first, err);
            if (st == POPK_OK && psi.v > r.v) {
                R[ds->cmt] = pd_scale(ds->rate, nf, nd);
                st = advance(ws, x, R, pd_add(t, first, nd), pd_sub(psi, first, nd), err);
            }
        }
        if (st != POPK_OK)
            return st;
    }
    for (int i = 0; i < n; i++)
        ws->A[i] = pd_add(ws->A[i], x[i], nd);
    /* Implied doses given before t whose lagged entry is at or after t (ALAG >= II) still
     * enter: they are part of the steady-state pattern. */
    for (int k = 1; k * ds->ii <= ds->lag.v * (1.0 + 1e-12); k++) {
        pend_event e = {0};
        e.kind = EV_DOSE;
        e.time = pd_add(t, pd_sub(ds->lag, pd_const(k * ds->ii, nd), nd), nd);
        e.cmt = ds->cmt;
        e.infusion = ds->infusion;
        e.amount = ds->amount;
        e.rate = ds->rate;
        e.dur = ds->dur;
        if (e.time.v <= t.v + 1e-12 * fabs(t.v) + 1e-12) {
            e.time = t;
            st = fire_dose(ws, &e, err);
        } else {
            st = push_event(ws, &e, err);
        }
        if (st != POPK_OK)
            return st;
    }
    if (ds->infusion) {
        /* Implied infusions started at t - psi - j II that are still running at t. */
        for (int j = psi.v > 0.0 ? 0 : 1;; j++) {
            popk_dual end = pd_add(pd_sub(t, psi, nd), pd_const(-j * ds->ii, nd), nd);
            end = pd_add(end, ds->dur, nd);
            if (end.v <= t.v * (1.0 + 1e-15) + 1e-12)
                break;
            st = start_infusion(ws, ws->R, ds->cmt, ds->rate, end, err);
            if (st != POPK_OK)
                return st;
        }
    }
    return POPK_OK;
}

/* ---- records ---------------------------------------------------------------------------- */

static double rec_time(popk_pred_ws *ws, size_t r)
{
    return ws->data ? ws->data->rec[r].time : NAN;
}

/* Resolve a dose record into amount, rate, duration, lag and compartment. */
static popk_status resolve_dose(popk_pred_ws *ws, const popk_record *rec, dose_spec *ds,
                                popk_error *err)
{
    const popk_model *m = ws->m;
    int nd = ws->nd;
    int cmt = rec->cmt == 0 ? m->default_dose_cmt : rec->cmt;
    char msg[600], src[400];
    if (cmt < 1 || cmt > m->ncmt) {
        snprintf(msg, sizeof msg, "dose into compartment %d, which the model does not have",
                 rec->cmt);
        return fail(ws, err, POPK_ERR_DATA, msg, rec->time);
    }
    const popk_dose_attr *at = &m->dose[cmt - 1];
    popk_dual f = at->f_slot >= 0 ? slot_get(ws, at->f_slot) : pd_const(1.0, nd);
    popk_dual lag = at->alag_slot >= 0 ? slot_get(ws, at->alag_slot) : pd_const(0.0, nd);
    if (!isfinite(f.v) || f.v < 0.0) {
        describe_source(ws, at->f_slot, src, sizeof src);
        snprintf(msg, sizeof msg, "bioavailability of compartment %d is %g%s", cmt, f.v, src);
        return fail(ws, err, POPK_ERR_NUMERIC, msg, rec->time);
    }
    if (!isfinite(lag.v) || lag.v < 0.0) {
        describe_source(ws, at->alag_slot, src, sizeof src);
        snprintf(msg, sizeof msg, "lag time of compartment %d is %g%s", cmt, lag.v, src);
        return fail(ws, err, POPK_ERR_NUMERIC, msg, rec->time);
    }
    memset(ds, 0, sizeof *ds);
    ds->cmt = cmt - 1;
    ds->lag = lag;
    ds->ii = rec->ii;
    ds->amount = pd_scale(f, rec->amt, nd);
    ds->rate = pd_const(0.0, nd);
    ds->dur = pd_const(0.0, nd);
    if (rec->rate > 0.0) {
        ds->infusion = 1;
        if (rec->amt == 0.0 && rec->ss == 1) { /* constant infusion at steady state */
            ds->rate = pd_scale(f, rec->rate, nd);
            ds->dur = pd_const(INFINITY, nd);
            ds->ii = 0.0;
        } else {
            ds->rate = pd_const(rec->rate, nd);
            ds->dur = pd_scale(ds->amount, 1.0 / rec->rate, nd);
        }
    } else if (rec->rate == -1.0) {
        if (at->rate_slot < 0)
            return fail(ws, err, POPK_ERR_MODEL,
                        "RATE = -1 but the model defines no infusion rate for this compartment",
                        rec->time);
        ds->infusion = 1;
        ds->rate = slot_get(ws, at->rate_slot);
        if (!(ds->rate.v > 0.0) || !isfinite(ds->rate.v)) {
            describe_source(ws, at->rate_slot, src, sizeof src);
            snprintf(msg, sizeof msg, "modelled infusion rate is %g (must be > 0)%s",
                     ds->rate.v, src);
            return fail(ws, err, POPK_ERR_NUMERIC, msg, rec->time);
        }
        ds->dur = pd_div(ds->amount, ds->rate, nd);
    } else if (rec->rate == -2.0) {
        if (at->dur_slot < 0)
            return fail(ws, err, POPK_ERR_MODEL,
                        "RATE = -2 but the model defines no infusion duration for this compartment",
                        rec->time);
        ds->infusion = 1;
        ds->dur = slot_get(ws, at->dur_slot);
        if (!(ds->dur.v > 0.0) || !isfinite(ds->dur.v)) {
            describe_source(ws, at->dur_slot, src, sizeof src);
            snprintf(msg, sizeof msg, "modelled infusion duration is %g (must be > 0)%s",
                     ds->dur.v, src);
            return fail(ws, err, POPK_ERR_NUMERIC, msg, rec->time);
        }
        ds->rate = pd_div(ds->amount, ds->dur, nd);
    }
    if (ds->infusion && ds->amount.v == 0.0 && isfinite(ds->dur.v))
        ds->infusion = 0; /* a zero-amount infusion does nothing */
    return POPK_OK;
}

static popk_status do_dose(popk_pred_ws *ws, const popk_record *rec, popk_error *err)
{
    int nd = ws->nd;
    dose_spec ds;
    popk_status st = resolve_dose(ws, rec, &ds, err);
    if (st != POPK_OK)
        return st;
    if (rec->ss == 1 || rec->ss == 2) {
        if (rec->ss == 1)
            reset_system(ws);
        st = apply_steady_state(ws, &ds, err);
        if (st != POPK_OK || (ds.infusion && ds.ii <= 0.0))
            return st;
    }
    pend_event e = {0};
    e.kind = EV_DOSE;
    e.time = pd_add(ws->t, ds.lag, nd);
    e.cmt = ds.cmt;
    e.repeats = rec->addl > 0 ? rec->addl : 0;
    e.ii = rec->ii;
    e.infusion = ds.infusion;
    e.amount = ds.amount;
    e.rate = ds.rate;
    e.dur = ds.dur;
    if (ds.lag.v > 0.0)
        return push_event(ws, &e, err);
    e.time = ws->t;
    return fire_dose(ws, &e, err);
}

static popk_status grow_results(popk_pred_ws *ws, size_t nrec, int nd, popk_error *err)
{
    const popk_model *m = ws->m;
    size_t per_out = (size_t)(m->nout > 0 ? m->nout : 1) * (size_t)(1 + POPK_DUAL_MAX);
    size_t per_amt = (size_t)(m->ncmt > 0 ? m->ncmt : 1) * (size_t)(1 + POPK_DUAL_MAX);
    (void)nd;
    if (nrec <= ws->cap_rec)
        return POPK_OK;
    double *o = realloc(ws->out, sizeof(double) * per_out * nrec);
    if (o)
        ws->out = o;
    double *a = realloc(ws->amt, sizeof(double) * per_amt * nrec);
    if (a)
        ws->amt = a;
    double *ind = realloc(ws->ind, sizeof(double) * (size_t)(m->nind > 0 ? m->nind : 1) * nrec);
    if (ind)
        ws->ind = ind;
    if (!o || !a || !ind)
        return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    ws->cap_rec = nrec;
    return POPK_OK;
}

popk_status popk_pred_subject(popk_pred_ws *ws, const popk_model *m, const popk_data *d,
                              const popk_binding *b, size_t s, const double *theta,
                              const double *eta, const popk_pred_dirs *dirs,
                              popk_pred_result *res, popk_error *err)
{
    int nd = dirs ? dirs->nd : 0;
    if (nd < 0 || nd > POPK_DUAL_MAX || (m->kind == POPK_STRUCT_ODE && !popk_model_uses_expm(m) &&
                                         nd + m->ncmt > POPK_DUAL_MAX))
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                              "too many derivative directions (%d)", nd);
    const popk_subject *sub = &d->sub[s];
    popk_status st = grow_results(ws, sub->n, nd, err);
    if (st != POPK_OK)
        return st;
    ws->nd = nd;
    ws->id = sub->id;
    ws->bind = b;
    ws->data = d;
    int stride = 1 + nd;
    memset(ws->slots, 0, sizeof(double) * (size_t)m->nslots * stride);
    for (int k = 0; k < m->ntheta; k++)
        slot_ptr(ws, m->theta_slot + k)[0] = theta ? theta[k] : m->theta[k].init;
    for (int k = 0; k < m->neta; k++)
        slot_ptr(ws, m->eta_slot + k)[0] = eta ? eta[k] : 0.0;
    for (int j = 0; j < nd; j++) {
        int slot = dirs->dir_is_eta[j] ? m->eta_slot + dirs->dir_index[j]
                                       : m->theta_slot + dirs->dir_index[j];
        slot_ptr(ws, slot)[1 + j] = 1.0;
    }
    if (m->kind == POPK_STRUCT_LINEAR)
        ws->lin.nd = nd;
    ws->lin_valid = 0;
    ws->ode_live = 0;
    ws->sub = s;
    ws->disc_rec = 0;
    /* auto and adams start with Adams (BDF takes over when it stalls); bdf is BDF only */
    ws->ode_method = m->ode_method == POPK_ODE_BDF ? POPK_CVODE_BDF : POPK_CVODE_ADAMS;
    ws->smooth_until = -INFINITY;
    reset_system(ws);
    ws->t = pd_const(sub->n ? d->rec[sub->first].time : 0.0, nd);
    int nout = m->nout, ncmt = m->ncmt;
    for (size_t r = 0; r < sub->n; r++) {
        size_t ri = sub->first + r;
        const popk_record *rec = &d->rec[ri];
        ws->rec = ri;
        /* The individual block reads thetas, etas and covariates only (the model refuses
         * time there), so a record with the previous record's covariates leaves it, the
         * structural parameters and the dosing attributes as they were. */
        int same_cov = r > 0;
        for (int k = 0; k < m->ncov; k++) {
            double *p = slot_ptr(ws, m->cov[k].slot);
            double c = b->cov[(size_t)k * b->nrec + ri];
            same_cov = same_cov && !memcmp(&p[0], &c, sizeof c);
            p[0] = c;
        }
        slot_ptr(ws, m->time_slot)[0] = rec->time;
        if (same_cov && m->nind > 0)
            memcpy(ws->ind + r * (size_t)m->nind, ws->ind + (r - 1) * (size_t)m->nind,
                   sizeof(double) * (size_t)m->nind);
        if (!same_cov)
            run_prog(ws, m->prog_pk);
        for (int k = 0; k < m->nind && !same_cov; k++) {
            double v = slot_ptr(ws, m->ind_slot + k)[0];
            ws->ind[r * (size_t)m->nind + k] = v;
            if (!isfinite(v)) {
                char msg[600];
                snprintf(msg, sizeof msg,
                         "individual parameter '%s' = %s is %g (record at line %d)",
                         m->ind_name[k], m->ind_text[k], v, rec->line);
                return fail(ws, err, POPK_ERR_NUMERIC, msg, rec->time);
            }
        }
        if (!same_cov && m->kind == POPK_STRUCT_LINEAR && (st = linear_setup(ws, err)) != POPK_OK)
            return st;
        if (rec->evid == 3 || rec->evid == 4) {
            ws->t = pd_const(rec->time, nd);
            reset_system(ws);
        } else if ((st = advance_to(ws, rec->time, err)) != POPK_OK) {
            return st;
        }
        if ((rec->evid == 1 || rec->evid == 4) && m->kind != POPK_STRUCT_NONE &&
            (st = do_dose(ws, rec, err)) != POPK_OK)
            return st;
        /* Outputs at this record. */
        for (int c = 0; c < ncmt; c++)
            slot_put(ws, m->amt_slot + c, &ws->A[c]);
        double *ts = slot_ptr(ws, m->time_slot);
        ts[0] = rec->time;
        for (int k = 0; k < nd; k++)
            ts[1 + k] = 0.0;
        run_prog(ws, m->prog_out);
        double *o = ws->out + r * (size_t)nout * stride;
        for (int k = 0; k < nout; k++) {
            const double *src = slot_ptr(ws, m->out[k].slot);
            for (int j = 0; j < stride; j++)
                o[(size_t)k * stride + j] = src[j];
            if (!isfinite(o[(size_t)k * stride])) {
                char msg[300];
                snprintf(msg, sizeof msg, "output '%s' is not finite", m->out[k].name);
                return fail(ws, err, POPK_ERR_NUMERIC, msg, rec->time);
            }
        }
        double *a = ws->amt + r * (size_t)ncmt * stride;
        for (int c = 0; c < ncmt; c++)
            put_dual(a + (size_t)c * stride, &ws->A[c], nd);
    }
    res->nrec = sub->n;
    res->nout = nout;
    res->ncmt = ncmt;
    res->nd = nd;
    res->out = ws->out;
    res->amt = ws->amt;
    res->nind = m->nind;
    res->ind = ws->ind;
    return POPK_OK;
}
