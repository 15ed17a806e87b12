/* estimate/fit.c — the outer search (NLopt over the unconstrained vector) and the fit driver
 * that collects the outputs of a fit (EBEs, shrinkage, covariance). */
#include "estimate/estimate_impl.h"
#include "estimate/linalg.h"
#include "util/error.h"

#include <math.h>
#include <nlopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Finite-difference step in the unconstrained vector. The committed passes converge the inner
 * problems to a Newton decrement of 1e-18 (OFV smooth to about 1e-11, the rounding of the
 * sum), the difference passes to 1e-16 (each OFV_i within ~1e-8, see estimator.c): h = 1e-4
 * gives a gradient error of ~1e-4 per subject from that, and ~1e-9 * F''' from truncation
 * (central differences). */
#define OUTER_FD_STEP 1e-4

/* After the quasi-Newton search has found the optimum's basin it creeps: on ACOP Oral_2CPT
 * the last 4 of 16 iterations gain 3e-5 in OFV together, against NLopt's relative tolerance
 * of 1e-10 (2e-6 there). It stops when the best OFV improved by less than OUTER_STALL_OFV
 * in each of the last OUTER_STALL_ITERATIONS iterations and the gradient promises no more:
 * the decrease a diagonal Newton step would make, sum g_k^2 / (2 d_k) with d_k the second
 * differences, is below OUTER_STALL_OFV too (a stall far from the optimum, e.g. a line search
 * that failed, does not stop it). */
#define OUTER_STALL_ITERATIONS 2
/* Forward differences (half the passes) until a diagonal Newton step promises less than this
 * decrease of the OFV; then central differences. */
#define OUTER_CENTRAL_PROMISE 0.01
#define OUTER_STALL_OFV 1e-4
/* The same when the OFV is noisy (an ODE solver's tolerance, estimator.c): on ACOP
 * Oral_1CPTMM the committed OFVs scatter by ~1e-4, and with 1e-4 the last 14 of 36 iterations
 * gained 4e-4 together. NONMEM's reference runs of the ODE models asked for NSIG=2. */
#define OUTER_STALL_OFV_NOISY 1e-3

void popk_estimate_options_default(popk_estimate_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->method = POPK_METHOD_FOCEI;
    /* Measured with the tests' fits (OFV passes to convergence, FOCE-I; theo_sd, ACOP
     * Bolus_1CPT, Oral_1CPT; then from +-30% starts: Bolus, Oral), with central-difference
     * gradients in the unscaled vector:
     *   LD_SLSQP  365 / 202 / 392, 223 / 407, each at the optimum to 1e-4
     *   LD_LBFGS  376 / 232 / 466, 243 / 436, same optima
     *   LN_BOBYQA 412 / 118 / 228, 133 / 322, OFV up to 5e-4 above the optimum
     * and in the curvature-scaled vector, forward differences far from the optimum and the
     * stall rule (tests/unit/estimate/test_fit.c):
     *   LD_SLSQP  126 /  99 / 149,  102 / 172, same optima
     *   LD_LBFGS  101 / 104 / 164,  162 / 172, same optima
     * (popk fit on the ACOP sets, single dose: SLSQP 87 / 133 and Oral_2CPT 248, LBFGS 81 /
     * 109 / 212). SLSQP needs the fewest passes overall among the methods that converge fully,
     * which the covariance step needs.
     * AUTO takes BHHH instead when the first pass finds the OFV noisy (an ODE solver's
     * tolerance): the quasi-Newton searches learn curvature from differences of gradients
     * between points, which that noise corrupts, while BHHH's comes from the subjects'
     * gradients at one point. ACOP Oral_1CPTMM: SLSQP 22 to 36 iterations from run to run
     * (46 s), BHHH 13 (26 s). On noise-free models BHHH was no better (Oral_1CPT 25 against 14
     * iterations, theo_sd 19 against 19 with 60% more predictions). */
    opt->optimizer = POPK_OPT_AUTO;
    opt->covariance = POPK_COV_SANDWICH;
}

static const char *const method_names[] = {"fo", "foce", "focei", "laplace"};
static const char *const optimizer_names[] = {"lbfgs", "slsqp", "bobyqa", "bhhh", "auto"};
static const char *const cov_names[] = {"none", "sandwich", "r", "s"};

#define NAMES(a) ((int)(sizeof a / sizeof *a))

static int lookup(const char *const *names, int n, const char *name)
{
    for (int k = 0; name && k < n; k++)
        if (strcmp(names[k], name) == 0)
            return k;
    return -1;
}

const char *popk_method_name(popk_method method)
{
    return method >= 0 && method < NAMES(method_names) ? method_names[method] : "unknown";
}

int popk_method_parse(const char *name, popk_method *method)
{
    int k = lookup(method_names, NAMES(method_names), name);
    if (k >= 0)
        *method = (popk_method)k;
    return k >= 0 ? 0 : -1;
}

const char *popk_optimizer_name(popk_optimizer optimizer)
{
    return optimizer >= 0 && optimizer < NAMES(optimizer_names) ? optimizer_names[optimizer]
                                                                 : "unknown";
}

int popk_optimizer_parse(const char *name, popk_optimizer *optimizer)
{
    int k = lookup(optimizer_names, NAMES(optimizer_names), name);
    if (k >= 0)
        *optimizer = (popk_optimizer)k;
    return k >= 0 ? 0 : -1;
}

const char *popk_covstep_name(popk_covstep_kind kind)
{
    return kind >= 0 && kind < NAMES(cov_names) ? cov_names[kind] : "unknown";
}

int popk_covstep_parse(const char *name, popk_covstep_kind *kind)
{
    int k = lookup(cov_names, NAMES(cov_names), name);
    if (k >= 0)
        *kind = (popk_covstep_kind)k;
    return k >= 0 ? 0 : -1;
}

typedef struct {
    popk_estimator *est;
    const popk_param_map *map;
    popk_method method;
    double *theta, *omega, *sigma, *xt;
    int npar, iterations, evaluations, user_stop, gradient_alg;
    double scale;             /* NLopt sees OFV / scale */
    double best;              /* lowest OFV so far, and its EBEs: the warm starts */
    double *eta_best, *x_best;
    /* NLopt's vector y maps to x = centre + y / xscale (gradient algorithms: y = 0.1 at the
     * start point, and a unit of y_k is one curvature-scaled unit of x_k; BOBYQA: y = x) */
    double *centre, *xscale, *xs;
    double *g, *curv;         /* gradient and diagonal second differences in x at the last
                                 gradient point */
    /* the start point's OFV and gradient (in y), computed for the scaling before NLopt
     * starts: its first call there is answered from them */
    int cached;
    double cache_f, *cache_y, *cache_g;
    int central, last_central;  /* central differences at the next, the last gradient */
    int refresh;                /* the next gradient central (once): curv_ref is unknown */
    double *curv_ref;           /* second differences of the last central gradient */
    /* converged by OUTER_STALL_* (NLopt forced to stop) */
    double best_at_iter[OUTER_STALL_ITERATIONS + 1];
    int stalled;
    size_t eta_size;
    int calls;                /* objective calls from NLopt */
    popk_status fatal;
    popk_error err;
    popk_iter_fn iter;
    void *iter_user;
    nlopt_opt opt;
} outer_ctx;

/* OFV at x; commit keeps the EBEs as the next warm starts. Soft failures give +inf. */
static double outer_ofv(outer_ctx *c, const double *x, int commit)
{
    double f;
    popk_param_map_unpack(c->map, x, c->theta, c->omega, c->sigma);
    c->evaluations++;
    popk_error e;
    popk_error_clear(&e);
    if (popk_estimator_pass(c->est, c->method, c->theta, c->omega, c->sigma, commit, &f, &e) !=
        POPK_OK) {
        if (popk_estimator_last_fatal(c->est) && c->fatal == POPK_OK) {
            c->fatal = e.code;
            c->err = e;
            nlopt_force_stop(c->opt);
        }
        return HUGE_VAL;
    }
    return f;
}

/* Differences of the OFV about x (f = OFV(x), EBEs of x committed) for the gradient g in x.
 * Central: also the diagonal second differences curv (NAN where a side is not
 * finite), kept in c->curv_ref. Forward: half the passes; the truncation error h/2 f''_kk is
 * taken off with c->curv_ref, which leaves h/2 times the change of f''_kk since the last
 * central gradient (and h^2 f'''/6): the quasi-Newton step is off by about h/2 = 5e-5 in x
 * times the relative change of the curvature, nothing while the steps are long. curv is then
 * c->curv_ref. */
static void outer_gradient(outer_ctx *c, const double *x, double f, double *g, double *curv,
                           int central)
{
    int n = c->npar;
    memcpy(c->xt, x, (size_t)n * sizeof *x);
    /* the differences' base: the subjects' quadratic models at x when the passes use them
     * (FOCE-I, estimator.c), consistent with their values to O(h^2) */
    double base;
    if (isfinite(f) && popk_estimator_taylor_base(c->est, &base))
        f = base;
    popk_estimator_outer_differences(c->est, 1);
    for (int k = 0; k < n; k++) {
        c->xt[k] = x[k] + OUTER_FD_STEP;
        double fp = isfinite(f) ? outer_ofv(c, c->xt, 0) : HUGE_VAL, fm = HUGE_VAL;
        if (central || !isfinite(fp)) {
            c->xt[k] = x[k] - OUTER_FD_STEP;
            fm = isfinite(f) ? outer_ofv(c, c->xt, 0) : HUGE_VAL;
        }
        c->xt[k] = x[k];
        double half_curv = isfinite(c->curv_ref[k]) ? 0.5 * OUTER_FD_STEP * c->curv_ref[k] : 0.0;
        curv[k] = central ? NAN : c->curv_ref[k];
        if (isfinite(fp) && isfinite(fm)) {
            g[k] = (fp - fm) / (2.0 * OUTER_FD_STEP);
            curv[k] = (fp - 2.0 * f + fm) / (OUTER_FD_STEP * OUTER_FD_STEP);
        } else if (isfinite(fp))
            g[k] = (fp - f) / OUTER_FD_STEP - half_curv;
        else if (isfinite(fm))
            g[k] = (f - fm) / OUTER_FD_STEP + half_curv;
        else
            g[k] = 0.0;
    }
    popk_estimator_outer_differences(c->est, 0);
    if (central)
        memcpy(c->curv_ref, curv, (size_t)n * sizeof *curv);
    /* central differences for good once a diagonal Newton step promises less than
     * OUTER_CENTRAL_PROMISE: the end game, where the gradient must be accurate */
    double promise = 0.0;
    int unknown = 0;
    for (int k = 0; k < n; k++) {
        promise += c->curv_ref[k] > 0.0 ? 0.5 * g[k] * g[k] / c->curv_ref[k] : HUGE_VAL;
        unknown |= !(c->curv_ref[k] > 0.0);
    }
    c->last_central = central;
    if (promise < OUTER_CENTRAL_PROMISE)
        c->central = 1;
    /* A curvature that was not positive where it was last measured (the start point of ACOP
     * Oral_1CPTMM) would keep the promise infinite, the differences forward and the stall
     * rule idle for the whole search: measure it again at the next gradient. */
    c->refresh = unknown && !central;
}

/* x of NLopt's y */
static void outer_x(const outer_ctx *c, const double *y, double *x)
{
    for (int k = 0; k < c->npar; k++)
        x[k] = c->centre[k] + y[k] / c->xscale[k];
}

/* OFV and gradient at x, committed (with the Hessians the finite-difference passes use). */
/* Committed OFV at x, the pass keeping each subject's Hessian and model (how: as
 * popk_estimator_want_hessians) for the differences that follow. */
static double outer_commit(outer_ctx *c, const double *x, int how)
{
    popk_estimator_want_hessians(c->est, how);
    double f = outer_ofv(c, x, 1);
    popk_estimator_want_hessians(c->est, 0);
    return f;
}

static double outer_ofv_gradient(outer_ctx *c, const double *x, double *g, double *curv,
                                 int central)
{
    double f = outer_commit(c, x, 1);
    outer_gradient(c, x, f, g, curv, central);
    return f;
}

/* Keep (f, x) as the best point if it is, else put the best point's EBEs back as the warm
 * starts (a trial point worse than the best must not move them away from it). */
static void outer_keep_best(outer_ctx *c, const double *x, double f)
{
    if (f < c->best) {
        c->best = f;
        memcpy(c->eta_best, popk_estimator_eta(c->est), c->eta_size * sizeof *c->eta_best);
        memcpy(c->x_best, x, (size_t)c->npar * sizeof *x);
    } else
        popk_estimator_restore(c->est, c->eta_best, c->x_best);
}

/* The stopping rule above at an iteration with gradient g and second differences curv. */
static int outer_stalled(outer_ctx *c, const double *g, const double *curv)
{
    int k = c->iterations, m = OUTER_STALL_ITERATIONS;
    double tol = popk_estimator_noisy(c->est) ? OUTER_STALL_OFV_NOISY : OUTER_STALL_OFV;
    for (int j = 0; j < m; j++)
        c->best_at_iter[j] = c->best_at_iter[j + 1];
    c->best_at_iter[m] = c->best;
    if (k <= m)
        return 0;
    for (int j = 0; j < m; j++)
        if (!(c->best_at_iter[j] - c->best_at_iter[j + 1] < tol))
            return 0;
    double promise = 0.0;
    for (int l = 0; l < c->npar; l++) {
        if (!(curv[l] > 0.0))
            return 0;
        promise += 0.5 * g[l] * g[l] / curv[l];
    }
    return promise < tol;
}

static double outer_objective(unsigned n, const double *y, double *grad, void *data)
{
    outer_ctx *c = data;
    c->calls++;
    outer_x(c, y, c->xs);
    double f;
    if (grad && c->cached && memcmp(y, c->cache_y, n * sizeof *y) == 0) {
        f = c->cache_f;
        memcpy(grad, c->cache_g, n * sizeof *grad);
    } else {
        c->cached = 0;
        if (grad) {
            f = outer_ofv_gradient(c, c->xs, c->g, c->curv, c->central || c->refresh);
            for (unsigned k = 0; k < n; k++)
                grad[k] = c->g[k] / (c->xscale[k] * c->scale);
        } else
            f = outer_ofv(c, c->xs, 1);
        outer_keep_best(c, c->xs, f);
    }
    if (isfinite(f) && (grad || !c->gradient_alg)) {
        c->iterations++;
        if (grad && c->last_central && outer_stalled(c, c->g, c->curv)) {
            c->stalled = 1;
            nlopt_force_stop(c->opt);
        }
        if (c->iter) {
            popk_param_map_unpack(c->map, c->xs, c->theta, c->omega, c->sigma);
            if (c->iter(c->iterations, f, c->theta, c->omega, c->sigma, c->iter_user)) {
                c->user_stop = 1;
                nlopt_force_stop(c->opt);
            }
        }
    }
    return f / c->scale;
}

/* BHHH (Berndt-Hall-Hall-Hausman) with Levenberg-Marquardt damping, --optimizer bhhh: the
 * Hessian of the OFV approximated by B = 1/2 sum_i g_i g_i' of the subjects' gradients g_i
 * (the outer information matrix of -2 log-likelihood terms), which the outer differences give
 * at no extra cost (forward differences of each subject's term). Step: (B + lambda diag B) d =
 * -g; a trial that does not lower the OFV is rejected and retried from the same point and
 * gradient with more damping (below); an accepted one lowers lambda tenfold if it gained a
 * tenth of the model's promise, else raises it tenfold.
 * Unlike the quasi-Newton searches it has a full curvature model from the first iteration,
 * which helps strongly correlated parameters (ACOP Oral_1CPTMM's VM and KM). */
#define BHHH_MAX_TRIES 12
/* Least damping after a rejected step. Accepted steps lower lambda to as little as 1e-8,
 * where ten times more leaves the step as it was: ACOP Oral_1CPTMM retried the same rejected
 * step eight times over (a quarter of the fit's predictions). With lambda 1 the diagonal of
 * B is doubled, about halving the step, the usual first backtrack: 26k predictions instead of
 * 34k, the same OFV to 1e-3. */
#define BHHH_REJECTED_LAMBDA 1.0
#define BHHH_MAX_STEP 1.0 /* longest step per scaled parameter */

/* Forward differences of the OFV about x (committed with models): gradient g and the
 * subjects' gradients gi (nsub x n). */
static void bhhh_gradient(outer_ctx *c, const double *x, double *g, double *gi, double *base)
{
    int n = c->npar, ns = popk_estimator_problem(c->est)->nsub;
    popk_estimator_base_terms(c->est, base);
    memcpy(c->xt, x, (size_t)n * sizeof *x);
    popk_estimator_outer_differences(c->est, 1);
    for (int k = 0; k < n; k++) {
        c->xt[k] = x[k] + OUTER_FD_STEP;
        double fp = outer_ofv(c, c->xt, 0);
        c->xt[k] = x[k];
        g[k] = 0.0;
        const double *t = popk_estimator_trial_terms(c->est);
        for (int i = 0; i < ns; i++) {
            double v = isfinite(fp) ? (t[i] - base[i]) / OUTER_FD_STEP : 0.0;
            gi[(size_t)i * n + k] = v;
            g[k] += v;
        }
    }
    popk_estimator_outer_differences(c->est, 0);
}

/* The search from x (its OFV f committed with models); x is left at the best point. Returns
 * 0 converged, 1 not converged (evaluations or damping exhausted), -1 fatal. */
static int outer_bhhh(outer_ctx *c, double *x, double f, int maxeval)
{
    int n = c->npar, ns = popk_estimator_problem(c->est)->nsub;
    size_t q_eta = c->eta_size;
    double *mem = calloc((size_t)n * (size_t)ns + 2 * (size_t)n * n + 3 * (size_t)n +
                             (size_t)ns + q_eta + 1, sizeof *mem);
    if (!mem)
        return -1;
    double *gi = mem, *B = gi + (size_t)n * ns, *A = B + (size_t)n * n, *g = A + (size_t)n * n;
    double *d = g + n, *xn = d + n, *base = xn + n, *eta = base + ns;
    double lambda = 1e-3, last_gain = HUGE_VAL;
    int status = 1;
    while (c->evaluations < maxeval) {
        bhhh_gradient(c, x, g, gi, base);
        if (c->fatal != POPK_OK)
            break;
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++) {
                double v = 0.0;
                for (int i = 0; i < ns; i++)
                    v += gi[(size_t)i * n + a] * gi[(size_t)i * n + b];
                B[a * n + b] = 0.5 * v;
            }
        c->iterations++;
        if (c->iter) {
            popk_param_map_unpack(c->map, x, c->theta, c->omega, c->sigma);
            if (c->iter(c->iterations, f, c->theta, c->omega, c->sigma, c->iter_user)) {
                c->user_stop = 1;
                break;
            }
        }
        double tol = popk_estimator_noisy(c->est) ? OUTER_STALL_OFV_NOISY : OUTER_STALL_OFV;
        memcpy(eta, popk_estimator_eta(c->est), q_eta * sizeof *eta);
        int accepted = 0;
        double promise = 0.0;
        for (int tries = 0; tries < BHHH_MAX_TRIES && !accepted; tries++) {
            for (int k = 0; k < n * n; k++)
                A[k] = B[k];
            for (int k = 0; k < n; k++)
                A[k * n + k] += lambda * (B[k * n + k] > 0.0 ? B[k * n + k] : 1.0);
            if (popk_chol(n, A) != 0) {
                lambda *= 10.0;
                continue;
            }
            for (int k = 0; k < n; k++)
                d[k] = -g[k];
            popk_chol_solve(n, A, d);
            double longest = 0.0;
            for (int k = 0; k < n; k++)
                longest = fmax(longest, fabs(d[k]));
            if (longest > BHHH_MAX_STEP)
                for (int k = 0; k < n; k++)
                    d[k] *= BHHH_MAX_STEP / longest;
            promise = 0.0;
            for (int k = 0; k < n; k++)
                promise -= 0.5 * g[k] * d[k];
            if (promise < tol && last_gain < tol) {
                status = 0; /* the model promises nothing more and the last step gained little */
                goto done;
            }
            for (int k = 0; k < n; k++)
                xn[k] = x[k] + d[k];
            double fn = outer_commit(c, xn, 1);
            if (c->fatal != POPK_OK)
                goto done;
            if (isfinite(fn) && fn < f) {
                /* lower: taken; the damping falls if the step gave a tenth of its promise,
                 * else rises */
                lambda = fn < f - 0.1 * promise ? fmax(lambda / 10.0, 1e-8) : 10.0 * lambda;
                accepted = 1;
                last_gain = f - fn;
                f = fn;
                memcpy(x, xn, (size_t)n * sizeof *x);
                c->best = f;
                memcpy(c->eta_best, popk_estimator_eta(c->est), q_eta * sizeof *eta);
                memcpy(c->x_best, x, (size_t)n * sizeof *x);
            } else {
                popk_estimator_restore(c->est, eta, x);
                lambda = fmax(10.0 * lambda, BHHH_REJECTED_LAMBDA);
            }
        }
        if (!accepted) {
            /* no step lowers the OFV: the optimum within the OFV's smoothness, or a failure */
            status = promise < 10.0 * tol ? 0 : 1;
            break;
        }
    }
done:
    if (c->fatal != POPK_OK)
        status = -1;
    free(mem);
    return status;
}

/* BHHH's B = 1/2 sum_i g_i g_i' is the OFV's Hessian only near the optimum; away from it B
 * can exceed the curvature along the gradient so far that the steps, and the promise that
 * ends the search, shrink geometrically: ACOP Bolus_2CPTMM stopped 192 OFV units above the
 * optimum while omega(KM) crawled to 0 by a factor 7 per iteration. So a stop is checked: the
 * diagonal Newton step from a central gradient and the OFV's own diagonal second differences
 * must promise less than BHHH_CHECK_OFV. The second differences are the covariance step's
 * (FOCE-I: each subject's model re-expanded about its predicted EBE, covariance.c): the outer
 * differences' models are exact in the gradient but not in the curvature (on ACOP
 * Oral_1CPTMM they gave -3.6e5 for log VM, whose curvature is about +2.6e4). Per theta or
 * sigma four predictions per subject, per omega two. The tolerance is the OFV change that
 * matters (0.01: a parameter within 0.1 of its SE in the worst direction), not the stall
 * tolerance: BHHH's last steps gain that little, and the check only catches a false stop.
 * Returns 1 if confirmed; 0 if not, or on a failure (then c->fatal may be set). */
#define BHHH_CHECK_STEP 1e-3
#define BHHH_CHECK_OFV 1e-2
static int bhhh_confirmed(outer_ctx *c, const double *x)
{
    int n = c->npar;
    double f = outer_commit(c, x, 2);
    if (c->fatal != POPK_OK || !isfinite(f))
        return 0;
    outer_keep_best(c, x, f);
    double base = f, promise = 0.0, h = BHHH_CHECK_STEP;
    popk_estimator_taylor_base(c->est, &base);
    memcpy(c->xt, x, (size_t)n * sizeof *x);
    for (int k = 0; k < n; k++) {
        /* J's column k from the outer differences' model steps at -+OUTER_FD_STEP (where
         * those models are accurate), then the model passes at -+h */
        double v[4];
        popk_estimator_forget_direction(c->est, k);
        for (int j = 0; j < 4; j++) {
            popk_estimator_outer_differences(c->est, j < 2);
            popk_estimator_model_passes(c->est, j >= 2);
            c->xt[k] = x[k] + (j % 2 ? 1.0 : -1.0) * (j < 2 ? OUTER_FD_STEP : h);
            v[j] = outer_ofv(c, c->xt, 0);
        }
        popk_estimator_outer_differences(c->est, 0);
        popk_estimator_model_passes(c->est, 0);
        c->xt[k] = x[k];
        double g = (v[3] - v[2]) / (2.0 * h), curv = (v[3] - 2.0 * base + v[2]) / (h * h);
        if (c->fatal != POPK_OK || !(curv > 0.0) || !isfinite(g))
            return 0;
        promise += 0.5 * g * g / curv;
    }
    return promise < BHHH_CHECK_OFV;
}

/* Longest first step of the quasi-Newton search in x, per parameter. x holds a free theta
 * divided by |its initial value|, so 0.1 is a tenth of it: 0.7 on ACOP Oral_1CPTMM's log VM
 * of 7 (a factor 2 on VM). With 1.0 (a factor e^7) or 0.25 the first trial points of that
 * fit made the ODE stiff and every inner problem fail, and the search took minutes to
 * recover or did not; theo_sd takes 19 iterations instead of 14 (5 ms). */
#define OUTER_FIRST_STEP 0.1

/* Scale NLopt's vector at the best point x_best (its OFV and gradient evaluated here, and
 * cached for NLopt's first call) so that the quasi-Newton search starts with the diagonal of
 * the OFV's Hessian, which the central differences give for free, instead of the identity:
 * y_k = 0.1 + s_k (x_k - x_best,k) with s_k^2 = d_k / scale, d_k = the second difference,
 * at least |g_k| / OUTER_FIRST_STEP (a negative or tiny curvature far from the optimum must
 * not give a long first step) and 1e-6 of the largest (an insensitive parameter must not
 * make the problem singular). The parameters of an ODE model, of a log-scale theta and of an
 * omega's Cholesky factor differ in curvature by orders of magnitude; with the identity the
 * search spends its iterations learning that (NONMEM scales its parameters for the same
 * reason). Fills y; returns the OFV at x_best. */
static double outer_scale(outer_ctx *c, double *y)
{
    int n = c->npar;
    double f = outer_ofv_gradient(c, c->x_best, c->g, c->curv, 1);
    double top = 0.0;
    for (int k = 0; k < n; k++)
        if (isfinite(c->curv[k]) && c->curv[k] > top)
            top = c->curv[k];
    for (int k = 0; k < n; k++) {
        double d = isfinite(c->curv[k]) ? c->curv[k] : 0.0;
        if (d < fabs(c->g[k]) / OUTER_FIRST_STEP)
            d = fabs(c->g[k]) / OUTER_FIRST_STEP;
        if (d < 1e-6 * top)
            d = 1e-6 * top;
        if (!(d > 0.0) || !isfinite(d))
            d = c->scale; /* flat in every direction: unit scaling */
        c->xscale[k] = sqrt(d / c->scale);
        c->centre[k] = c->x_best[k] - 0.1 / c->xscale[k];
        y[k] = 0.1;
    }
    c->cached = isfinite(f);
    c->cache_f = f;
    memcpy(c->cache_y, y, (size_t)n * sizeof *y);
    for (int k = 0; k < n; k++)
        c->cache_g[k] = c->g[k] / (c->xscale[k] * c->scale);
    outer_keep_best(c, c->x_best, f);
    return f;
}

static nlopt_algorithm nlopt_algo(popk_optimizer o);

/* The NLopt search (algo) from x, restarted as below; x is left at the best point. Returns 0,
 * or -1 on a fatal error (err set). */
static int outer_nlopt(outer_ctx *c, double *x, popk_optimizer algo,
                       const popk_estimate_options *opt, int maxeval, nlopt_result *res,
                       popk_error *err)
{
    int n = c->npar;
    *res = NLOPT_FAILURE;
    /* A quasi-Newton search can stop early on a finite-difference gradient that fails to give
     * descent (NLopt's FAILURE / ROUNDOFF_LIMITED), often far from the optimum after a bad
     * start; a restart from the best point with fresh curvature continues it. Restarts stop
     * once one gains less than 1e-6 in OFV. */
    for (int restart = 0; restart < 5; restart++) {
        double best_before = c->best;
        c->opt = nlopt_create(nlopt_algo(algo), (unsigned)n);
        if (!c->opt) {
            popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "cannot create the optimiser");
            return -1;
        }
        nlopt_set_min_objective(c->opt, outer_objective, c);
        nlopt_set_ftol_rel(c->opt, opt->ftol_rel > 0 ? opt->ftol_rel : 1e-10);
        nlopt_set_xtol_rel(c->opt, opt->xtol_rel > 0 ? opt->xtol_rel : 1e-7);
        nlopt_set_maxeval(c->opt, maxeval - c->calls > 1 ? maxeval - c->calls : 1);
        if (algo == POPK_OPT_BOBYQA)
            nlopt_set_initial_step1(c->opt, 0.1);
        if (c->gradient_alg) {
            outer_scale(c, x);
            if (c->fatal != POPK_OK) {
                nlopt_destroy(c->opt);
                if (err)
                    *err = c->err;
                return -1;
            }
        } else
            for (int k = 0; k < n; k++) {
                c->centre[k] = 0.0;
                c->xscale[k] = 1.0;
            }
        double fmin = HUGE_VAL;
        *res = nlopt_optimize(c->opt, x, &fmin);
        nlopt_destroy(c->opt);
        if (c->fatal != POPK_OK) {
            if (err)
                *err = c->err;
            return -1;
        }
        memcpy(x, c->x_best, (size_t)n * sizeof *x);
        popk_estimator_restore(c->est, c->eta_best, c->x_best);
        if (c->user_stop || c->stalled || c->calls >= maxeval ||
            (*res != NLOPT_FAILURE && *res != NLOPT_ROUNDOFF_LIMITED) ||
            !(c->best < best_before - 1e-6))
            break;
    }
    return 0;
}

/* Whether an NLopt search that ended with res converged. ROUNDOFF_LIMITED after the
 * restarts: no finite-difference descent is left, i.e. the optimum to within the OFV's
 * smoothness. */
static int nlopt_converged(const outer_ctx *c, nlopt_result res)
{
    return !(c->user_stop || res == NLOPT_MAXEVAL_REACHED || res == NLOPT_MAXTIME_REACHED ||
             (res < 0 && res != NLOPT_ROUNDOFF_LIMITED && !c->stalled) || !isfinite(c->best));
}

void popk_estimate_result_free(popk_estimate_result *res)
{
    if (!res)
        return;
    double *bufs[] = {res->theta,   res->omega, res->sigma, res->p,   res->ofv_terms,
                      res->eta,     res->eta_cov, res->eta_shrinkage, res->cov, res->R,
                      res->S,       res->se,    res->corr,  res->eigenvalues};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++)
        free(bufs[k]);
    free(res);
}

static popk_estimate_result *result_new(const popk_problem *prob, int npar)
{
    popk_estimate_result *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    size_t ns = (size_t)prob->nsub, q = (size_t)prob->neta, n = (size_t)npar;
    r->nsub = prob->nsub;
    r->ntheta = prob->ntheta;
    r->neta = prob->neta;
    r->nsigma = prob->nsigma;
    r->npar = npar;
    r->theta = calloc((size_t)prob->ntheta + 1, sizeof(double));
    r->omega = calloc(q * q + 1, sizeof(double));
    r->sigma = calloc((size_t)prob->nsigma + 1, sizeof(double));
    r->p = calloc(n + 1, sizeof(double));
    r->ofv_terms = calloc(ns, sizeof(double));
    r->eta = calloc(ns * q + 1, sizeof(double));
    r->eta_cov = calloc(ns * q * q + 1, sizeof(double));
    r->eta_shrinkage = calloc(q + 1, sizeof(double));
    r->cov_status = POPK_ERR_ARG;
    if (!r->theta || !r->omega || !r->sigma || !r->p || !r->ofv_terms || !r->eta ||
        !r->eta_cov || !r->eta_shrinkage) {
        popk_estimate_result_free(r);
        return NULL;
    }
    return r;
}

/* Eta shrinkage from the EBEs and epsilon shrinkage from the IWRES at them (MATH.md). */
static popk_status shrinkage(popk_estimator *est, popk_estimate_result *r, popk_error *err)
{
    const popk_problem *prob = popk_estimator_problem(est);
    int q = r->neta, ns = r->nsub;
    for (int k = 0; k < q; k++) {
        double mean = 0.0, ss = 0.0;
        for (int i = 0; i < ns; i++)
            mean += r->eta[i * q + k];
        mean /= ns;
        for (int i = 0; i < ns; i++)
            ss += (r->eta[i * q + k] - mean) * (r->eta[i * q + k] - mean);
        double sd = ns > 1 ? sqrt(ss / (ns - 1)) : 0.0;
        r->eta_shrinkage[k] = 1.0 - sd / sqrt(r->omega[k * q + k]);
    }
    int maxobs = 0;
    for (int i = 0; i < ns; i++)
        if (prob->nobs[i] > maxobs)
            maxobs = prob->nobs[i];
    double *f = calloc((size_t)maxobs + 1, sizeof *f), *V = calloc((size_t)maxobs + 1, sizeof *V);
    if (!f || !V) {
        free(f);
        free(V);
        return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    }
    double sum = 0.0, sum2 = 0.0;
    long count = 0;
    popk_status rc = POPK_OK;
    for (int i = 0; i < ns && rc == POPK_OK; i++) {
        int st = prob->pred(i, 0, r->theta, r->sigma, r->eta + (size_t)i * q, f, V, NULL, NULL,
                            prob->user, err);
        if (st != 0) {
            rc = st < 0 && err && err->code != POPK_OK
                     ? err->code
                     : popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                                      "subject %d: no prediction at the EBE", i + 1);
            break;
        }
        for (int j = 0; j < prob->nobs[i]; j++) {
            double iwres = (prob->y[i][j] - f[j]) / sqrt(V[j]);
            sum += iwres;
            sum2 += iwres * iwres;
            count++;
        }
    }
    free(f);
    free(V);
    if (rc == POPK_OK && count > 1) {
        double mean = sum / count;
        r->eps_shrinkage = 1.0 - sqrt((sum2 - count * mean * mean) / (count - 1));
    }
    return rc;
}

static nlopt_algorithm nlopt_algo(popk_optimizer o)
{
    switch (o) {
    case POPK_OPT_SLSQP: return NLOPT_LD_SLSQP;
    case POPK_OPT_BOBYQA: return NLOPT_LN_BOBYQA;
    case POPK_OPT_LBFGS:
    case POPK_OPT_BHHH: /* popk's own (outer_bhhh) */
    case POPK_OPT_AUTO: break; /* resolved before */
    }
    return NLOPT_LD_LBFGS;
}

popk_estimate_result *popk_estimate(const popk_problem *prob, const popk_estimate_options *opt,
                                    popk_error *err)
{
    popk_estimate_options defaults;
    if (!opt) {
        popk_estimate_options_default(&defaults);
        opt = &defaults;
    }
    popk_estimator *est = popk_estimator_create(prob, opt->nthreads, err);
    if (!est)
        return NULL;
    const popk_param_map *map = popk_estimator_map(est);
    int n = popk_param_map_npar(map);
    popk_estimate_result *r = result_new(prob, n);
    double *x = calloc((size_t)n + 1, sizeof *x), *xt = calloc((size_t)n + 1, sizeof *xt);
    double *vecs = calloc(8 * ((size_t)n + 1), sizeof *vecs);
    outer_ctx c = {0};
    if (!r || !x || !xt || !vecs) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto fail;
    }
    if (popk_param_map_pack(map, prob->theta0, prob->omega0, prob->sigma0, x, err) != POPK_OK)
        goto fail;
    c = (outer_ctx){.est = est, .map = map, .method = opt->method, .theta = r->theta,
                    .omega = r->omega, .sigma = r->sigma, .xt = xt, .npar = n,
                    .centre = vecs, .xscale = vecs + (n + 1), .xs = vecs + 2 * (n + 1),
                    .g = vecs + 3 * (n + 1), .curv = vecs + 4 * (n + 1),
                    .curv_ref = vecs + 5 * (n + 1), .cache_y = vecs + 6 * (n + 1),
                    .cache_g = vecs + 7 * (n + 1),
                    .gradient_alg = opt->optimizer != POPK_OPT_BOBYQA, .iter = opt->iter,
                    .iter_user = opt->iter_user};
    popk_error_clear(&c.err);
    /* the initial values exactly (not through x and back) must give a finite OFV: report
     * why not */
    if (prob->ntheta)
        memcpy(r->theta, prob->theta0, (size_t)prob->ntheta * sizeof *r->theta);
    if (prob->neta)
        memcpy(r->omega, prob->omega0, (size_t)(prob->neta * prob->neta) * sizeof *r->omega);
    if (prob->nsigma)
        memcpy(r->sigma, prob->sigma0, (size_t)prob->nsigma * sizeof *r->sigma);
    if (popk_estimator_pass(est, opt->method, r->theta, r->omega, r->sigma, 1, &r->ofv, err) !=
        POPK_OK)
        goto fail;
    r->status = POPK_OK;
    c.best = r->ofv;
    c.eta_size = (size_t)prob->nsub * (size_t)prob->neta;
    c.eta_best = malloc((c.eta_size + 1) * sizeof *c.eta_best);
    c.x_best = malloc(((size_t)n + 1) * sizeof *c.x_best);
    if (!c.eta_best || !c.x_best) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto fail;
    }
    memcpy(c.eta_best, popk_estimator_eta(est), c.eta_size * sizeof *c.eta_best);
    memcpy(c.x_best, x, (size_t)n * sizeof *x);
    /* The OFV grows with the number of observations; per observation its gradient is O(1)
     * in x, which keeps the quasi-Newton's first trial step (of the size of the gradient)
     * from leaving the region where the model predicts. */
    c.scale = 0.0;
    for (int i = 0; i < prob->nsub; i++)
        c.scale += prob->nobs[i];
    if (c.scale < 1.0)
        c.scale = 1.0;
    popk_optimizer algo = opt->optimizer;
    if (algo == POPK_OPT_AUTO)
        algo = popk_estimator_noisy(est) ? POPK_OPT_BHHH : POPK_OPT_SLSQP;
    r->optimizer = algo;
    if (!opt->evaluate_only && n > 0) {
        int maxeval = opt->maxeval > 0 ? opt->maxeval : 2000, converged;
        if (algo == POPK_OPT_BHHH) {
            double f = outer_commit(&c, x, 1);
            int st = c.fatal == POPK_OK && isfinite(f) ? outer_bhhh(&c, x, f, maxeval) : -1;
            if (c.fatal != POPK_OK) {
                if (err)
                    *err = c.err;
                goto fail;
            }
            converged = st == 0;
            memcpy(x, c.x_best, (size_t)n * sizeof *x);
            popk_estimator_restore(est, c.eta_best, c.x_best);
            if (converged && !c.user_stop && !bhhh_confirmed(&c, x)) {
                if (c.fatal != POPK_OK) {
                    if (err)
                        *err = c.err;
                    goto fail;
                }
                /* SLSQP from BHHH's point, within what is left of the budget */
                nlopt_result res = NLOPT_MAXEVAL_REACHED;
                int left = maxeval - c.evaluations;
                r->continued = 1;
                if (left > 1 && outer_nlopt(&c, x, POPK_OPT_SLSQP, opt, left, &res, err) != 0)
                    goto fail;
                r->nlopt_code = (int)res;
                converged = nlopt_converged(&c, res);
            }
        } else {
            nlopt_result res = NLOPT_FAILURE;
            if (outer_nlopt(&c, x, algo, opt, maxeval, &res, err) != 0)
                goto fail;
            r->nlopt_code = (int)res;
            converged = nlopt_converged(&c, res);
        }
        if (!converged || c.user_stop)
            r->status = POPK_ERR_NOCONV;
        popk_param_map_unpack(map, x, r->theta, r->omega, r->sigma);
        if (popk_estimator_pass(est, opt->method, r->theta, r->omega, r->sigma, 1, &r->ofv,
                                err) != POPK_OK)
            goto fail;
    }
    r->iterations = c.iterations;
    r->evaluations = c.evaluations + 1;
    popk_param_map_get_natural(map, r->theta, r->omega, r->sigma, r->p);
    memcpy(r->ofv_terms, popk_estimator_ofv_terms(est), (size_t)prob->nsub * sizeof(double));
    r->predictions = popk_estimator_predictions(est);
    if (opt->covariance != POPK_COV_NONE && n > 0) {
        popk_error cov_err;
        popk_error_clear(&cov_err);
        double t0 = omp_get_wtime();
        popk_estimate_covariance(est, opt->method, opt->covariance, r, &cov_err);
        r->cov_seconds = omp_get_wtime() - t0;
        r->cov_predictions = popk_estimator_predictions(est) - r->predictions;
    }
    /* FO's EBEs are 0: the tables want the conditional modes (NONMEM's POSTHOC) */
    if (opt->method == POPK_METHOD_FO &&
        popk_estimator_posthoc(est, 0, r->theta, r->omega, r->sigma, err) != POPK_OK)
        goto fail;
    size_t q = (size_t)prob->neta, ns = (size_t)prob->nsub;
    memcpy(r->eta, popk_estimator_eta(est), ns * q * sizeof(double));
    memcpy(r->eta_cov, popk_estimator_eta_cov(est), ns * q * q * sizeof(double));
    if (shrinkage(est, r, err) != POPK_OK)
        goto fail;
    free(x);
    free(xt);
    free(vecs);
    free(c.eta_best);
    free(c.x_best);
    popk_estimator_free(est);
    return r;
fail:
    free(x);
    free(xt);
    free(vecs);
    free(c.eta_best);
    free(c.x_best);
    popk_estimate_result_free(r);
    popk_estimator_free(est);
    return NULL;
}
