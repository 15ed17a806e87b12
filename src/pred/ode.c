/* pred/ode.c — CVODES wrapper: BDF or Adams + Newton + dense integration with forward
 * sensitivities.
 *
 * Design choices (why):
 * - Two methods: BDF (stiff problems) and Adams-Moulton (popk_ode_set_method; the caller's
 *   default for non-stiff systems, with BDF as its fallback). On the non-stiff compartment
 *   models of ACOP, Adams needs about half the steps of BDF at the same tolerances
 *   (Oral_1CPTMM, rtol 1e-8, 4 directions: 363 against 663 steps per subject) and its
 *   sensitivities are more accurate. Adams integrates the augmented system (see the engines
 *   below); BDF uses CVODES' sensitivity module.
 * - One solver (context, CVODES memory, vectors, matrix, linear solver) is built once in
 *   popk_ode_new and reused: a reset is CVodeReInit/CVodeSensReInit, which only rewrites the
 *   Nordsieck history, so a dose costs no allocation.
 * - Sensitivity right-hand sides use the all-directions form (CVodeSensInit with a
 *   CVSensRhsFn): one model evaluation gives J and every df/dq_k, then s_k' = J s_k + df/dq_k.
 * - BDF: the staggered corrector (CV_STAGGERED): the state Newton iteration converges first, and
 *   only then are the sensitivities corrected (linear equations: about one iteration). The
 *   sensitivity callback (dual numbers in the model, the costly one) thus never runs for a
 *   state iteration that fails or needs more passes; the simultaneous corrector calls it at
 *   every state Newton iteration. Measured on linear 2-cmt and Michaelis-Menten models,
 *   where Newton takes about one iteration, both give the same number of sensitivity calls
 *   and the same instruction count within 1%; staggered adds one plain evaluation per step.
 * - Sensitivities take part in the error test (CVodeSetSensErrCon): estimators need
 *   gradients as accurate as the states. Measured on ACOP Oral_1CPTMM (FOCE-I, one
 *   objective pass): without it 10% fewer steps per prediction but df/deta errors of 2e-5
 *   instead of 2e-6 relative, and 11% more predictions in the inner Newton iterations.
 * - Every advance sets the stop time to tout (or to the caller's smooth-until time), so the
 *   solver never evaluates the right-hand side where the model may be discontinuous.
 * - Non-finite right-hand-side, Jacobian or sensitivity values are caught in the callbacks:
 *   the first few in one advance return "recoverable" (a smaller step may avoid the bad
 *   region), then "fatal"; the failure is reported with its time and component. */
#include "pred/ode.h"

#include "pred/sundials_compat.h"
#include "util/error.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(popk_sunreal) == sizeof(double),
               "popk's ODE layer needs SUNDIALS built in double precision");

#define ODE_DEFAULT_RTOL 1e-8
#define ODE_DEFAULT_ATOL 1e-10
#define ODE_DEFAULT_MAX_STEPS 50000L
/* Non-finite callback outputs answered "recoverable" within one advance before giving up.
 * Counted per advance, not per streak: a model that is NaN beyond some time would otherwise
 * let the solver creep towards that time with ever smaller (successful) steps until
 * max_steps, and report "too much work" instead of the NaN. */
#define ODE_NONFINITE_RETRIES 10

/* CVODES memories, built when first used and kept:
 * - ODE_BDF: BDF with CVODES' staggered forward sensitivities (stiff systems);
 * - ODE_ADAMS_SENS: Adams-Moulton on the augmented system [y; s_1; ...; s_ns] of n (1 + ns)
 *   states, s_k' = J s_k + df/dq_k (non-stiff systems with sensitivities);
 * - ODE_ADAMS_PLAIN: Adams-Moulton on y alone (no directions, or sensitivities off).
 * Why the augmented system for Adams: on the 2-state systems of compartment models CVODES
 * spends most of its time in per-vector bookkeeping (N_Vector operations on vectors of two
 * entries, repeated for the state and for every sensitivity vector, with their own corrector
 * and error test): 85% of an ACOP Oral_1CPTMM objective pass. One vector of n (1 + ns)
 * entries has the bookkeeping of one: that pass went from 3.3 s to 2.1 s CPU, at the same
 * number of steps (the error test covers the sensitivities, as CVodeSetSensErrCon does, with
 * the same rtol and atol). The corrector is Newton with a block-diagonal matrix (J in every
 * block, ode_jac_aug). Fixed-point iteration (no matrix at all) was tried and rejected: its
 * unconverged iteration error in components that have decayed to the atol level (a depot's
 * sensitivity after absorption) enters the local error estimate and pins the step size:
 * 3,013 steps against 408 for one ACOP subject over 72 h. */
enum { ODE_BDF = 0, ODE_ADAMS_SENS = 1, ODE_ADAMS_PLAIN = 2, ODE_ENGINES = 3 };

/* Highest order of the Adams engines (CVODES' default 12). On the ACOP Michaelis-Menten models
 * at rtol 1e-8, all 120 subjects, CPU ms per pass with 4 eta sensitivities at orders 12 / 8 /
 * 6 / 5: Oral_1CPTMM 631 / 557 / 538 / 644, Bolus_2CPTMM 244 / 184 / 180 / 206, Oral_2CPTMM
 * 723 / 681 / 666 / 799, Infusion_1CPTMM 106 / 74 / 75 / 76; without sensitivities
 * Oral_1CPTMM 354 (12) against 220 (6). The high orders' longer steps do not pay for their
 * longer history (13 Nordsieck vectors, rescaled at every step and order change) on these
 * smooth, mildly non-linear systems; the error against a reference solution at rtol 1e-12
 * is the same (predictions 8e-8, sensitivities 2e-7 of their largest value). */
#define ODE_ADAMS_MAX_ORDER 6

/* What went wrong inside a callback, kept for the error message. */
typedef struct {
    int status;        /* user callback status (0: none recorded) */
    int nonfinite;     /* a non-finite output was seen */
    double time;       /* time of the event */
    const char *where; /* "right-hand side", "Jacobian", "sensitivity right-hand side" */
    int row, col;      /* offending entry: state; Jacobian column or sensitivity direction */
    double value;      /* the non-finite value */
} ode_callback_problem;

struct popk_ode {
    int n;
    int ns;
    popk_ode_rhs rhs;
    void *user;

    double rtol;
    double atol;
    long max_steps;
    char settings_error[160]; /* non-empty: last popk_ode_set_tolerances was rejected */

    SUNContext ctx;
    /* The active method's CVODES memory, Newton matrix and linear solver: engine[method]. */
    void *cvode;
    SUNMatrix newton_matrix;
    SUNLinearSolver linear_solver;
    struct {
        void *cvode;
        SUNMatrix newton_matrix;
        SUNLinearSolver linear_solver;
        N_Vector v;             /* Adams engines: [y; s_1; ...; s_ns] or y alone */
    } engine[ODE_ENGINES]; /* NULL until first used */
    int active;        /* engine in use */
    int method;        /* its method */
    int method_wanted; /* popk_ode_set_method; applied at the next reset */
    N_Vector y;   /* state at time t */
    N_Vector *ys; /* sensitivities at time t (ns vectors) */

    double *jac;       /* n*n row-major, filled by the callback */
    double *dfdq;      /* ns*n */
    double *ydot_scratch; /* n */
    double *atol_sens; /* ns copies of atol (CVodeSensSStolerances takes an array) */

    double t;        /* time of y and ys */
    int ready;       /* reset done and no failure since */
    int sens_wanted; /* popk_ode_set_sensitivities; applied at the next reset */
    int sens_active; /* directions integrated since the last reset: ns or 0 */

    popk_sun_message_sink sink;
    int solver_code;
    char solver_message[200];

    ode_callback_problem problem;
    int nonfinite_count; /* in the current advance */

    popk_ode_stats stats; /* cumulative; steps of the current integration are added on read */
};

static const char ode_where_rhs[] = "right-hand side";
static const char ode_where_jacobian[] = "Jacobian";
static const char ode_where_sensitivity[] = "sensitivity right-hand side";

static void ode_capture_message(int code, const char *message, void *user)
{
    popk_ode *o = user;
    o->solver_code = code;
    snprintf(o->solver_message, sizeof o->solver_message, "%s", message);
}

static int ode_user_failure(popk_ode *o, double t, int status, const char *where)
{
    o->problem.status = status;
    o->problem.nonfinite = 0;
    o->problem.time = t;
    o->problem.where = where;
    return status;
}

/* 0 if all of v[rows*cols] is finite; else records the first bad entry and returns 1 (the
 * solver retries with a smaller step) for the first few in this advance, then -1. */
static int ode_check_finite(popk_ode *o, double t, const double *v, int rows, int cols,
                            const char *where)
{
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) {
            double x = v[(size_t)i * (size_t)cols + (size_t)j];
            if (!isfinite(x)) {
                o->problem.status = 0;
                o->problem.nonfinite = 1;
                o->problem.time = t;
                o->problem.where = where;
                o->problem.row = i;
                o->problem.col = j;
                o->problem.value = x;
                o->nonfinite_count++;
                return o->nonfinite_count < ODE_NONFINITE_RETRIES ? 1 : -1;
            }
        }
    }
    return 0;
}

static int ode_f(popk_sunreal t, N_Vector y, N_Vector ydot, void *data)
{
    popk_ode *o = data;
    o->stats.rhs_evals++;
    double *out = N_VGetArrayPointer(ydot);
    int rc = o->rhs(t, N_VGetArrayPointer(y), out, NULL, NULL, o->user);
    if (rc != 0)
        return ode_user_failure(o, t, rc, ode_where_rhs);
    return ode_check_finite(o, t, out, o->n, 1, ode_where_rhs);
}

/* The model's Jacobian at (t, y) into o->jac (n x n, row-major), checked finite; ydot is
 * scratch for the right-hand side. */
static int ode_eval_jacobian(popk_ode *o, popk_sunreal t, const double *y, double *ydot)
{
    int n = o->n;
    o->stats.jac_evals++;
    memset(o->jac, 0, sizeof(double) * (size_t)n * (size_t)n);
    int rc = o->rhs(t, y, ydot, o->jac, NULL, o->user);
    if (rc != 0)
        return ode_user_failure(o, t, rc, ode_where_jacobian);
    return ode_check_finite(o, t, o->jac, n, n, ode_where_jacobian);
}

static int ode_jac(popk_sunreal t, N_Vector y, N_Vector fy, SUNMatrix jm, void *data,
                   N_Vector tmp1, N_Vector tmp2, N_Vector tmp3)
{
    (void)fy;
    (void)tmp2;
    (void)tmp3;
    popk_ode *o = data;
    int n = o->n;
    int rc = ode_eval_jacobian(o, t, N_VGetArrayPointer(y), N_VGetArrayPointer(tmp1));
    if (rc != 0)
        return rc;
    for (int j = 0; j < n; j++) {
        popk_sunreal *column = SUNDenseMatrix_Column(jm, j);
        for (int i = 0; i < n; i++)
            column[i] = o->jac[(size_t)i * (size_t)n + (size_t)j];
    }
    return 0;
}

/* s_k' = J s_k + df/dq_k for direction k from the Jacobian and partials the callback left in
 * o->jac and o->dfdq; checks it is finite (recording the direction). */
static int ode_sens_direction(popk_ode *o, double t, int k, const double *s, double *sdot)
{
    int n = o->n;
    const double *partial = o->dfdq + (size_t)k * (size_t)n;
    for (int i = 0; i < n; i++) {
        const double *jrow = o->jac + (size_t)i * (size_t)n;
        double acc = partial[i];
        for (int j = 0; j < n; j++)
            acc += jrow[j] * s[j];
        sdot[i] = acc;
    }
    int rc = ode_check_finite(o, t, sdot, n, 1, ode_where_sensitivity);
    if (rc != 0)
        o->problem.col = k; /* direction k, state row */
    return rc;
}

static int ode_fs(int ns, popk_sunreal t, N_Vector y, N_Vector ydot, N_Vector *ys,
                  N_Vector *ysdot, void *data, N_Vector tmp1, N_Vector tmp2)
{
    (void)ydot;
    (void)tmp2;
    popk_ode *o = data;
    o->stats.sens_rhs_evals++;
    int n = o->n;
    memset(o->jac, 0, sizeof(double) * (size_t)n * (size_t)n);
    memset(o->dfdq, 0, sizeof(double) * (size_t)ns * (size_t)n);
    int rc = o->rhs(t, N_VGetArrayPointer(y), N_VGetArrayPointer(tmp1), o->jac, o->dfdq,
                    o->user);
    if (rc != 0)
        return ode_user_failure(o, t, rc, ode_where_sensitivity);
    for (int k = 0; k < ns; k++)
        if ((rc = ode_sens_direction(o, t, k, N_VGetArrayPointer(ys[k]),
                                     N_VGetArrayPointer(ysdot[k]))) != 0)
            return rc;
    return 0;
}

/* Right-hand side of the augmented system of ODE_ADAMS_SENS: [f(y); J s_k + df/dq_k]. */
static int ode_f_aug(popk_sunreal t, N_Vector Y, N_Vector Ydot, void *data)
{
    popk_ode *o = data;
    int n = o->n, ns = o->ns;
    const double *y = N_VGetArrayPointer(Y);
    double *ydot = N_VGetArrayPointer(Ydot);
    o->stats.sens_rhs_evals++;
    memset(o->jac, 0, sizeof(double) * (size_t)n * (size_t)n);
    memset(o->dfdq, 0, sizeof(double) * (size_t)ns * (size_t)n);
    int rc = o->rhs(t, y, ydot, o->jac, o->dfdq, o->user);
    if (rc != 0)
        return ode_user_failure(o, t, rc, ode_where_rhs);
    rc = ode_check_finite(o, t, ydot, n, 1, ode_where_rhs);
    if (rc != 0)
        return rc;
    for (int k = 0; k < ns; k++)
        if ((rc = ode_sens_direction(o, t, k, y + (size_t)(k + 1) * (size_t)n,
                                     ydot + (size_t)(k + 1) * (size_t)n)) != 0)
            return rc;
    return 0;
}

/* Newton matrix of the augmented system: block diagonal with J in every block. The exact
 * Jacobian has d(J s_k)/dy below the diagonal; leaving it out only slows the corrector's
 * convergence on the sensitivity rows (they are linear in s), as in CVODES' simultaneous
 * corrector, which makes the same approximation. */
static int ode_jac_aug(popk_sunreal t, N_Vector y, N_Vector fy, SUNMatrix jm, void *data,
                       N_Vector tmp1, N_Vector tmp2, N_Vector tmp3)
{
    (void)fy;
    (void)tmp1;
    (void)tmp2;
    (void)tmp3;
    popk_ode *o = data;
    int n = o->n;
    int rc = ode_eval_jacobian(o, t, N_VGetArrayPointer(y), o->ydot_scratch);
    if (rc != 0)
        return rc;
    SUNMatZero(jm);
    for (int b = 0; b <= o->ns; b++)
        for (int j = 0; j < n; j++) {
            popk_sunreal *column = SUNDenseMatrix_Column(jm, (sunindextype)(b * n + j));
            for (int i = 0; i < n; i++)
                column[b * n + i] = o->jac[(size_t)i * (size_t)n + (size_t)j];
        }
    return 0;
}

static void ode_release(popk_ode *o)
{
    for (int e = 0; e < ODE_ENGINES; e++) {
        if (o->engine[e].cvode)
            CVodeFree(&o->engine[e].cvode);
        if (o->engine[e].linear_solver)
            SUNLinSolFree(o->engine[e].linear_solver);
        if (o->engine[e].newton_matrix)
            SUNMatDestroy(o->engine[e].newton_matrix);
        if (o->engine[e].v)
            N_VDestroy(o->engine[e].v);
    }
    if (o->ys)
        N_VDestroyVectorArray(o->ys, o->ns);
    if (o->y)
        N_VDestroy(o->y);
    if (o->ctx)
        SUNContext_Free(&o->ctx);
    free(o->jac);
    free(o->ydot_scratch);
    free(o->dfdq);
    free(o->atol_sens);
    free(o);
}

void popk_ode_free(popk_ode *o)
{
    if (o)
        ode_release(o);
}

static popk_ode *ode_new_fail(popk_ode *o, popk_error *err, popk_status code, const char *what,
                              int flag)
{
    if (o && o->solver_message[0])
        popk_error_set(err, code, NULL, 0, 0, "ODE solver setup failed: %s (flag %d) [CVODES: %s]",
                       what, flag, o->solver_message);
    else
        popk_error_set(err, code, NULL, 0, 0, "ODE solver setup failed: %s (flag %d)", what, flag);
    if (o)
        ode_release(o);
    return NULL;
}

/* Apply rtol, atol (also to sensitivities) and max_steps to one CVODES memory. */
static int ode_apply_settings_to(popk_ode *o, int e)
{
    void *cvode = o->engine[e].cvode;
    if (CVodeSStolerances(cvode, o->rtol, o->atol) != CV_SUCCESS)
        return -1;
    if (CVodeSetMaxNumSteps(cvode, o->max_steps) != CV_SUCCESS)
        return -1;
    if (e != ODE_BDF && CVodeSetMaxOrd(cvode, ODE_ADAMS_MAX_ORDER) != CV_SUCCESS)
        return -1;
    if (e == ODE_BDF && o->ns > 0) {
        for (int k = 0; k < o->ns; k++)
            o->atol_sens[k] = o->atol;
        if (CVodeSensSStolerances(cvode, o->rtol, o->atol_sens) != CV_SUCCESS)
            return -1;
    }
    return 0;
}

/* ... to every CVODES memory built so far. */
static int ode_apply_settings(popk_ode *o)
{
    for (int e = 0; e < ODE_ENGINES; e++)
        if (o->engine[e].cvode && ode_apply_settings_to(o, e) != 0)
            return -1;
    return 0;
}

/* Build the CVODES memory of engine e (Newton matrix, dense linear solver and Jacobian; ODE_BDF
 * also the staggered sensitivities, the Adams engines their own vector) with the current
 * settings. On failure names the step in *what with its flag, and returns its status
 * (the parts built stay in the engine slot and are freed with the solver). */
static popk_status ode_build_engine(popk_ode *o, int e, const char **what, int *flag)
{
    int n = o->n, ns = o->ns;
    *flag = 0;
    void *cvode = CVodeCreate(e == ODE_BDF ? CV_BDF : CV_ADAMS, o->ctx);
    o->engine[e].cvode = cvode;
    if (!cvode)
        return *what = "CVodeCreate", POPK_ERR_NOMEM;
    if (popk_sun_silence(o->ctx, cvode, &o->sink) != 0)
        return *what = "installing the error handler", POPK_ERR_SOLVER;
    /* the state vector: BDF's is o->y (its sensitivities are o->ys); an Adams engine has its
     * own, [y; s_1; ...; s_ns] or y alone */
    N_Vector v = o->y;
    int len = n;
    if (e != ODE_BDF) {
        len = e == ODE_ADAMS_SENS ? n * (1 + ns) : n;
        v = N_VNew_Serial((sunindextype)len, o->ctx);
        o->engine[e].v = v;
        if (!v)
            return *what = "N_VNew_Serial", POPK_ERR_NOMEM;
        N_VConst(0.0, v);
        if (N_VEnableFusedOps_Serial(v, 1) != 0)
            return *what = "N_VEnableFusedOps_Serial", POPK_ERR_SOLVER;
    }
    if ((*flag = CVodeInit(cvode, e == ODE_ADAMS_SENS ? ode_f_aug : ode_f, 0.0, v)) !=
        CV_SUCCESS)
        return *what = "CVodeInit", POPK_ERR_SOLVER;
    if ((*flag = CVodeSetUserData(cvode, o)) != CV_SUCCESS)
        return *what = "CVodeSetUserData", POPK_ERR_SOLVER;
    SUNMatrix matrix = SUNDenseMatrix((sunindextype)len, (sunindextype)len, o->ctx);
    o->engine[e].newton_matrix = matrix;
    if (!matrix)
        return *what = "SUNDenseMatrix", POPK_ERR_NOMEM;
    SUNLinearSolver solver = SUNLinSol_Dense(v, matrix, o->ctx);
    o->engine[e].linear_solver = solver;
    if (!solver)
        return *what = "SUNLinSol_Dense", POPK_ERR_NOMEM;
    if ((*flag = CVodeSetLinearSolver(cvode, solver, matrix)) != CV_SUCCESS)
        return *what = "CVodeSetLinearSolver", POPK_ERR_SOLVER;
    if ((*flag = CVodeSetJacFn(cvode, e == ODE_ADAMS_SENS ? ode_jac_aug : ode_jac)) !=
        CV_SUCCESS)
        return *what = "CVodeSetJacFn", POPK_ERR_SOLVER;
    if (e == ODE_BDF && ns > 0) {
        if ((*flag = CVodeSensInit(cvode, ns, CV_STAGGERED, ode_fs, o->ys)) != CV_SUCCESS)
            return *what = "CVodeSensInit", POPK_ERR_SOLVER;
        if ((*flag = CVodeSetSensErrCon(cvode, 1)) != CV_SUCCESS)
            return *what = "CVodeSetSensErrCon", POPK_ERR_SOLVER;
    }
    if (ode_apply_settings_to(o, e) != 0)
        return *what = "setting tolerances", POPK_ERR_SOLVER;
    return POPK_OK;
}

/* The engine for a method with sensitivities on or off. */
static int ode_engine_for(const popk_ode *o, int method, int sens)
{
    if (method == POPK_CVODE_BDF)
        return ODE_BDF;
    return sens && o->ns > 0 ? ODE_ADAMS_SENS : ODE_ADAMS_PLAIN;
}

/* Make engine e the active one (building its memory if needed). */
static popk_status ode_activate(popk_ode *o, int e, const char **what, int *flag)
{
    if (!o->engine[e].cvode) {
        popk_status st = ode_build_engine(o, e, what, flag);
        if (st != POPK_OK)
            return st;
    }
    o->active = e;
    o->method = e == ODE_BDF ? POPK_CVODE_BDF : POPK_CVODE_ADAMS;
    o->cvode = o->engine[e].cvode;
    o->newton_matrix = o->engine[e].newton_matrix;
    o->linear_solver = o->engine[e].linear_solver;
    return POPK_OK;
}

popk_ode *popk_ode_new(int n, int ns, popk_ode_rhs rhs, void *user, popk_error *err)
{
    if (n < 1 || ns < 0 || !rhs || n > POPK_ODE_MAX_STATES || ns > POPK_ODE_MAX_DIRECTIONS) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                       "ODE solver: invalid size (n = %d states, ns = %d directions; need "
                       "1 <= n <= %d, 0 <= ns <= %d) or missing right-hand side",
                       n, ns, POPK_ODE_MAX_STATES, POPK_ODE_MAX_DIRECTIONS);
        return NULL;
    }
    popk_ode *o = calloc(1, sizeof *o);
    if (!o)
        return ode_new_fail(NULL, err, POPK_ERR_NOMEM, "out of memory", 0);
    o->n = n;
    o->ns = ns;
    o->rhs = rhs;
    o->user = user;
    o->rtol = ODE_DEFAULT_RTOL;
    o->atol = ODE_DEFAULT_ATOL;
    o->max_steps = ODE_DEFAULT_MAX_STEPS;
    o->sens_wanted = 1;
    o->sink.fn = ode_capture_message;
    o->sink.user = o;

    o->jac = calloc((size_t)n * (size_t)n, sizeof(double));
    o->ydot_scratch = calloc((size_t)n, sizeof(double));
    if (ns > 0) {
        o->dfdq = calloc((size_t)ns * (size_t)n, sizeof(double));
        o->atol_sens = calloc((size_t)ns, sizeof(double));
    }
    if (!o->jac || !o->ydot_scratch || (ns > 0 && (!o->dfdq || !o->atol_sens)))
        return ode_new_fail(o, err, POPK_ERR_NOMEM, "out of memory", 0);

    if (popk_sun_context_create(&o->ctx) != 0)
        return ode_new_fail(o, err, POPK_ERR_SOLVER, "SUNContext_Create", 0);
    o->y = N_VNew_Serial((sunindextype)n, o->ctx);
    if (!o->y)
        return ode_new_fail(o, err, POPK_ERR_NOMEM, "N_VNew_Serial", 0);
    N_VConst(0.0, o->y);
    /* Fused vector kernels (inherited by clones): 3% fewer instructions without
     * sensitivities, 15% fewer with 3 directions (callgrind, bench_ode). */
    if (N_VEnableFusedOps_Serial(o->y, 1) != 0)
        return ode_new_fail(o, err, POPK_ERR_SOLVER, "N_VEnableFusedOps_Serial", 0);
    if (ns > 0) {
        o->ys = N_VCloneVectorArray(ns, o->y);
        if (!o->ys)
            return ode_new_fail(o, err, POPK_ERR_NOMEM, "N_VCloneVectorArray", 0);
        for (int k = 0; k < ns; k++)
            N_VConst(0.0, o->ys[k]);
    }
    const char *what = "";
    int flag = 0;
    popk_status st = ode_activate(o, ODE_BDF, &what, &flag);
    if (st != POPK_OK)
        return ode_new_fail(o, err, st, what, flag);
    o->method_wanted = POPK_CVODE_BDF;
    return o;
}

void popk_ode_set_tolerances(popk_ode *o, double rtol, double atol, long max_steps)
{
    if (!o)
        return;
    if (!(rtol > 0.0) || !isfinite(rtol) || !(atol >= 0.0) || !isfinite(atol) ||
        max_steps < 1) {
        snprintf(o->settings_error, sizeof o->settings_error,
                 "invalid ODE tolerances: rtol = %g (need > 0), atol = %g (need >= 0), "
                 "max_steps = %ld (need >= 1)",
                 rtol, atol, max_steps);
        return;
    }
    o->rtol = rtol;
    o->atol = atol;
    o->max_steps = max_steps;
    if (ode_apply_settings(o) != 0)
        snprintf(o->settings_error, sizeof o->settings_error,
                 "CVODES rejected the tolerances rtol = %g, atol = %g, max_steps = %ld", rtol,
                 atol, max_steps);
    else
        o->settings_error[0] = '\0';
}

static void ode_clear_diagnostics(popk_ode *o)
{
    memset(&o->problem, 0, sizeof o->problem);
    o->nonfinite_count = 0;
    o->solver_code = 0;
    o->solver_message[0] = '\0';
}

popk_status popk_ode_reset(popk_ode *o, double t0, const double *y0, const double *s0,
                           popk_error *err)
{
    if (!o || !y0)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                              "popk_ode_reset: %s is NULL", o ? "y0" : "solver");
    o->ready = 0;
    if (o->settings_error[0])
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "%s", o->settings_error);
    if (!isfinite(t0))
        return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                              "ODE reset: start time is %g", t0);
    for (int i = 0; i < o->n; i++)
        if (!isfinite(y0[i]))
            return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                                  "ODE reset at t = %.10g: initial state %d is %g", t0, i + 1,
                                  y0[i]);
    int sens = o->sens_wanted ? o->ns : 0;
    if (s0)
        for (int k = 0; k < sens; k++)
            for (int i = 0; i < o->n; i++) {
                double v = s0[(size_t)k * (size_t)o->n + (size_t)i];
                if (!isfinite(v))
                    return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                                          "ODE reset at t = %.10g: initial sensitivity of state "
                                          "%d in direction %d is %g",
                                          t0, i + 1, k + 1, v);
            }

    ode_clear_diagnostics(o);
    long steps = 0;
    if (CVodeGetNumSteps(o->cvode, &steps) == CV_SUCCESS)
        o->stats.steps += steps; /* CVodeReInit zeroes the solver's counter */
    int flag = 0;
    int e = ode_engine_for(o, o->method_wanted, sens > 0);
    if (e != o->active) {
        const char *what = "";
        popk_status st = ode_activate(o, e, &what, &flag);
        if (st != POPK_OK)
            return popk_error_set(err, st, NULL, 0, 0,
                                  "ODE reset at t = %.10g: switching the method failed: %s "
                                  "(flag %d) [CVODES: %s]",
                                  t0, what, flag, o->solver_message);
    }
    if (e != ODE_BDF) {
        /* the augmented vector [y0; s0] (zero sensitivities without s0) */
        double *v = N_VGetArrayPointer(o->engine[e].v);
        memcpy(v, y0, sizeof(double) * (size_t)o->n);
        if (e == ODE_ADAMS_SENS) {
            size_t len = (size_t)o->ns * (size_t)o->n;
            if (s0)
                memcpy(v + o->n, s0, sizeof(double) * len);
            else
                memset(v + o->n, 0, sizeof(double) * len);
        }
        memcpy(N_VGetArrayPointer(o->y), y0, sizeof(double) * (size_t)o->n);
        flag = CVodeReInit(o->cvode, t0, o->engine[e].v);
        if (flag != CV_SUCCESS)
            return popk_error_set(err, POPK_ERR_SOLVER, NULL, 0, 0,
                                  "ODE reset at t = %.10g failed: %s [CVODES: %s]", t0,
                                  CVodeGetReturnFlagName(flag), o->solver_message);
        o->sens_active = sens;
        o->t = t0;
        o->ready = 1;
        o->stats.resets++;
        return POPK_OK;
    }
    memcpy(N_VGetArrayPointer(o->y), y0, sizeof(double) * (size_t)o->n);
    flag = CVodeReInit(o->cvode, t0, o->y);
    if (flag != CV_SUCCESS)
        return popk_error_set(err, POPK_ERR_SOLVER, NULL, 0, 0,
                              "ODE reset at t = %.10g failed: %s [CVODES: %s]", t0,
                              CVodeGetReturnFlagName(flag), o->solver_message);
    if (sens > 0) {
        for (int k = 0; k < o->ns; k++) {
            double *s = N_VGetArrayPointer(o->ys[k]);
            if (s0)
                memcpy(s, s0 + (size_t)k * (size_t)o->n, sizeof(double) * (size_t)o->n);
            else
                memset(s, 0, sizeof(double) * (size_t)o->n);
        }
        flag = CVodeSensReInit(o->cvode, CV_STAGGERED, o->ys);
        if (flag != CV_SUCCESS)
            return popk_error_set(err, POPK_ERR_SOLVER, NULL, 0, 0,
                                  "ODE reset at t = %.10g failed (sensitivities): %s "
                                  "[CVODES: %s]",
                                  t0, CVodeGetReturnFlagName(flag), o->solver_message);
    } else if (o->ns > 0) {
        flag = CVodeSensToggleOff(o->cvode);
        if (flag != CV_SUCCESS)
            return popk_error_set(err, POPK_ERR_SOLVER, NULL, 0, 0,
                                  "ODE reset at t = %.10g failed (sensitivities off): %s "
                                  "[CVODES: %s]",
                                  t0, CVodeGetReturnFlagName(flag), o->solver_message);
    }
    o->sens_active = sens;
    o->t = t0;
    o->ready = 1;
    o->stats.resets++;
    return POPK_OK;
}

/* Describe the callback problem recorded during the failed call into buf. */
static void ode_describe_problem(const popk_ode *o, char *buf, size_t size)
{
    const ode_callback_problem *p = &o->problem;
    if (p->nonfinite && p->where == ode_where_jacobian)
        snprintf(buf, size, "the Jacobian entry (%d, %d) is %g at t = %.10g", p->row + 1,
                 p->col + 1, p->value, p->time);
    else if (p->nonfinite && p->where == ode_where_sensitivity)
        snprintf(buf, size, "the %s of state %d in direction %d is %g at t = %.10g", p->where,
                 p->row + 1, p->col + 1, p->value, p->time);
    else if (p->nonfinite)
        snprintf(buf, size, "the %s of state %d is %g at t = %.10g", p->where, p->row + 1,
                 p->value, p->time);
    else if (p->status != 0)
        snprintf(buf, size, "the model's %s failed (status %d) at t = %.10g", p->where,
                 p->status, p->time);
    else
        buf[0] = '\0';
}

static popk_status ode_fail(popk_ode *o, int flag, double tout, popk_error *err)
{
    popk_sunreal tcur = o->t, hcur = 0.0;
    CVodeGetCurrentTime(o->cvode, &tcur);
    CVodeGetCurrentStep(o->cvode, &hcur);
    o->ready = 0;

    char problem[200];
    ode_describe_problem(o, problem, sizeof problem);
    char reason[240];
    switch (flag) {
    case CV_TOO_MUCH_WORK:
        snprintf(reason, sizeof reason,
                 "too much work: %ld steps (max_steps) taken from t = %.10g, stopped at "
                 "t = %.10g before reaching t = %.10g",
                 o->max_steps, o->t, (double)tcur, tout);
        break;
    case CV_TOO_MUCH_ACC:
        snprintf(reason, sizeof reason,
                 "requested accuracy (rtol = %g, atol = %g) beyond machine precision at "
                 "t = %.10g",
                 o->rtol, o->atol, (double)tcur);
        break;
    case CV_ERR_FAILURE:
        snprintf(reason, sizeof reason, "repeated error test failures at t = %.10g (step size %g)",
                 (double)tcur, (double)hcur);
        break;
    case CV_CONV_FAILURE:
        snprintf(reason, sizeof reason,
                 "repeated corrector convergence failures at t = %.10g (step size %g)",
                 (double)tcur, (double)hcur);
        break;
    default:
        if (problem[0]) {
            /* A callback failure is the reason itself (right-hand side, Jacobian or
             * sensitivity failure codes). */
            popk_status code = o->problem.nonfinite ? POPK_ERR_NUMERIC : POPK_ERR_SOLVER;
            return popk_error_set(err, code, NULL, 0, 0, "ODE solver failed: %s [CVODES: %s]",
                                  problem, o->solver_message);
        }
        snprintf(reason, sizeof reason, "%s at t = %.10g", CVodeGetReturnFlagName(flag),
                 (double)tcur);
        break;
    }
    if (problem[0])
        return popk_error_set(err, o->problem.nonfinite ? POPK_ERR_NUMERIC : POPK_ERR_SOLVER,
                              NULL, 0, 0, "ODE solver failed: %s; before that, %s [CVODES: %s]",
                              reason, problem, o->solver_message);
    return popk_error_set(err, POPK_ERR_SOLVER, NULL, 0, 0, "ODE solver failed: %s [CVODES: %s]",
                          reason, o->solver_message);
}

/* Copy the stored state (and sensitivities) out; check they are finite. */
static popk_status ode_output(popk_ode *o, double *y, double *s, popk_error *err)
{
    const double *yv = N_VGetArrayPointer(o->y);
    for (int i = 0; i < o->n; i++) {
        if (!isfinite(yv[i])) {
            o->ready = 0;
            return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                                  "ODE solver produced a non-finite state %d (%g) at t = %.10g",
                                  i + 1, yv[i], o->t);
        }
    }
    if (y)
        memcpy(y, yv, sizeof(double) * (size_t)o->n);
    for (int k = 0; k < o->sens_active; k++) {
        const double *sv = N_VGetArrayPointer(o->ys[k]);
        for (int i = 0; i < o->n; i++) {
            if (!isfinite(sv[i])) {
                o->ready = 0;
                return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                                      "ODE solver produced a non-finite sensitivity of state %d "
                                      "in direction %d (%g) at t = %.10g",
                                      i + 1, k + 1, sv[i], o->t);
            }
        }
        if (s)
            memcpy(s + (size_t)k * (size_t)o->n, sv, sizeof(double) * (size_t)o->n);
    }
    return POPK_OK;
}

popk_status popk_ode_advance_smooth(popk_ode *o, double tout, double tsmooth, double *y,
                                   double *s, popk_error *err)
{
    if (!o)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "popk_ode_advance: solver is NULL");
    if (!o->ready)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                              "popk_ode_advance to t = %.10g: the solver needs popk_ode_reset "
                              "first (never reset, or the previous call failed)",
                              tout);
    if (!isfinite(tout) || tout < o->t)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                              "popk_ode_advance: output time %.10g is before the current time "
                              "%.10g or not finite",
                              tout, o->t);
    if (isnan(tsmooth) || tsmooth < tout)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                              "popk_ode_advance: smooth-until time %.10g is before the output "
                              "time %.10g",
                              tsmooth, tout);
    /* An interval below time round-off moves no state (CVODE would reject it as too close). */
    if (tout - o->t <= 4.0 * DBL_EPSILON * fmax(fabs(tout), fabs(o->t)))
        return ode_output(o, y, s, err);

    popk_sunreal tn = o->t;
    CVodeGetCurrentTime(o->cvode, &tn);
    if (tsmooth < tn)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                              "popk_ode_advance: smooth-until time %.10g is before the time "
                              "%.10g the solver already reached (an earlier call promised a "
                              "smooth right-hand side beyond it)",
                              tsmooth, (double)tn);
    ode_clear_diagnostics(o);
    int flag = CVodeSetStopTime(o->cvode, isinf(tsmooth) ? DBL_MAX : tsmooth);
    if (flag != CV_SUCCESS)
        return ode_fail(o, flag, tout, err);
    popk_sunreal tret = o->t;
    if (o->active != ODE_BDF) {
        N_Vector v = o->engine[o->active].v;
        flag = CVode(o->cvode, tout, v, &tret, CV_NORMAL);
        if (flag < 0)
            return ode_fail(o, flag, tout, err);
        const double *a = N_VGetArrayPointer(v);
        memcpy(N_VGetArrayPointer(o->y), a, sizeof(double) * (size_t)o->n);
        for (int k = 0; k < o->sens_active; k++)
            memcpy(N_VGetArrayPointer(o->ys[k]), a + (size_t)(k + 1) * (size_t)o->n,
                   sizeof(double) * (size_t)o->n);
        o->t = tout;
        return ode_output(o, y, s, err);
    }
    flag = CVode(o->cvode, tout, o->y, &tret, CV_NORMAL);
    if (flag < 0)
        return ode_fail(o, flag, tout, err);
    if (o->sens_active > 0) {
        flag = CVodeGetSens(o->cvode, &tret, o->ys);
        if (flag < 0)
            return ode_fail(o, flag, tout, err);
    }
    o->t = tout;
    return ode_output(o, y, s, err);
}

popk_status popk_ode_advance(popk_ode *o, double tout, double *y, double *s, popk_error *err)
{
    return popk_ode_advance_smooth(o, tout, tout, y, s, err);
}

void popk_ode_set_method(popk_ode *o, int method)
{
    if (o)
        o->method_wanted = method == POPK_CVODE_ADAMS ? POPK_CVODE_ADAMS : POPK_CVODE_BDF;
}

int popk_ode_get_method(const popk_ode *o)
{
    return o ? o->method_wanted : POPK_CVODE_BDF;
}

void popk_ode_set_sensitivities(popk_ode *o, int enabled)
{
    if (o)
        o->sens_wanted = enabled != 0;
}

void popk_ode_get_stats(const popk_ode *o, popk_ode_stats *stats)
{
    if (!stats)
        return;
    memset(stats, 0, sizeof *stats);
    if (!o)
        return;
    *stats = o->stats;
    long steps = 0;
    if (CVodeGetNumSteps(o->cvode, &steps) == CV_SUCCESS)
        stats->steps += steps;
}
