/* estimate/covariance.c — the covariance step: R (Hessian of the OFV in the natural
 * parameters), S (cross-products of the individual OFV gradients) and their sandwich. */
#include "estimate/estimate_impl.h"
#include "estimate/linalg.h"
#include "util/error.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Relative finite-difference step in the natural parameters: the OFV is smooth to ~1e-11
 * (tight inner problems), so second differences with h = 1e-3 |p| lose ~1e-5 to noise and
 * ~1e-6 relative to truncation. */
#define COV_REL_STEP 1e-3
/* Smallest OFV change of a diagonal step when the OFV is noisy (estimator.c: some subject's l
 * has shown its ODE solver's noise): 1e-2, against noise of ~1e-6, leaves R ~1e-4 of noise;
 * the step is then about a tenth of the parameter's conditional SE, where the OFV is still
 * quadratic to that order. ACOP Oral_1CPTMM's log KA of -0.001 got steps of 1e-5 from the
 * relative rule, and a non-positive-definite R from the noise. */
#define COV_NOISY_DOFV 1e-2
#define COV_NOISY_WIDENINGS 4

typedef struct {
    popk_estimator *est;
    popk_method method;
    const popk_param_map *map;
    double *theta, *omega, *sigma, *pt;
    int n;
    double rel_step;
    char where[160];                /* the point of the pass under way, for a failure */
} cov_ctx;

static popk_status ofv_at(cov_ctx *c, const double *p, int commit, double *f, popk_error *err)
{
    popk_param_map_set_natural(c->map, p, c->theta, c->omega, c->sigma);
    return popk_estimator_pass(c->est, c->method, c->theta, c->omega, c->sigma, commit, f, err);
}

/* Step for parameter k: relative to its size (omega covariances: to the SDs). */
static double step_for(const cov_ctx *c, const double *p, int k)
{
    popk_param_kind kind;
    int row, col;
    popk_param_map_info(c->map, k, &kind, &row, &col);
    const popk_problem *prob = popk_estimator_problem(c->est);
    if (kind == POPK_PARAM_OMEGA && row != col) {
        int q = prob->neta;
        popk_param_map_set_natural(c->map, p, c->theta, c->omega, c->sigma);
        return c->rel_step * sqrt(c->omega[row * q + row] * c->omega[col * q + col]);
    }
    double scale = fabs(p[k]);
    if (kind == POPK_PARAM_THETA && scale < 1e-2)
        scale = 1e-2;
    return c->rel_step * scale;
}

/* Largest step for parameter k that keeps p +- h inside its domain with room to spare: half
 * the distance to a theta's bounds, half an omega variance or a sigma SD (a widened step on a
 * variance estimated near 0, ACOP Bolus_2CPTMM's omega(KM) of 1e-8, would cross 0). */
static double room_for(const cov_ctx *c, const double *p, int k)
{
    popk_param_kind kind;
    int row, col;
    popk_param_map_info(c->map, k, &kind, &row, &col);
    const popk_problem *prob = popk_estimator_problem(c->est);
    if (kind == POPK_PARAM_THETA) {
        double room = HUGE_VAL;
        if (prob->theta_lo && isfinite(prob->theta_lo[row]))
            room = fmin(room, p[k] - prob->theta_lo[row]);
        if (prob->theta_hi && isfinite(prob->theta_hi[row]))
            room = fmin(room, prob->theta_hi[row] - p[k]);
        return 0.5 * room;
    }
    if (kind == POPK_PARAM_OMEGA && row != col)
        return HUGE_VAL; /* positive definiteness is the pass's to check */
    return 0.5 * fabs(p[k]);
}

static popk_status fail(popk_estimate_result *res, popk_status code, const char *msg,
                        popk_error *err)
{
    res->cov_status = code;
    snprintf(res->cov_message, sizeof res->cov_message, "%s", msg);
    return popk_error_set(err, code, NULL, 0, 0, "covariance step: %s", msg);
}

/* Covariance, SE, correlation and its eigenvalues from R and S. */
static popk_status finish(popk_estimate_result *res, popk_covstep_kind kind, double *work,
                          popk_error *err)
{
    int n = res->npar;
    size_t nn = (size_t)n * n;
    double *Rinv = work, *L = work + nn, *col = work + 2 * nn;
    if (kind == POPK_COV_S) {
        memcpy(L, res->S, nn * sizeof *L);
        if (popk_chol(n, L) != 0)
            return fail(res, POPK_ERR_NUMERIC, "S matrix is singular", err);
        popk_chol_inverse(n, L, res->cov, col);
        for (size_t k = 0; k < nn; k++)
            res->cov[k] *= 4.0;
    } else {
        memcpy(L, res->R, nn * sizeof *L);
        if (popk_chol(n, L) != 0)
            return fail(res, POPK_ERR_NUMERIC, "R matrix is not positive definite", err);
        popk_chol_inverse(n, L, Rinv, col);
        if (kind == POPK_COV_R)
            for (size_t k = 0; k < nn; k++)
                res->cov[k] = 2.0 * Rinv[k];
        else {
            /* NONMEM's default R^-1 S R^-1 (OFV = -2LL: the factors 2 cancel) */
            for (int a = 0; a < n; a++)
                for (int b = 0; b < n; b++) {
                    double s = 0.0;
                    for (int k = 0; k < n; k++)
                        s += res->S[a * n + k] * Rinv[k * n + b];
                    L[a * n + b] = s;
                }
            for (int a = 0; a < n; a++)
                for (int b = 0; b < n; b++) {
                    double s = 0.0;
                    for (int k = 0; k < n; k++)
                        s += Rinv[a * n + k] * L[k * n + b];
                    res->cov[a * n + b] = s;
                }
        }
    }
    for (int a = 0; a < n; a++) {
        double v = res->cov[a * n + a];
        if (!(v > 0.0) || !isfinite(v))
            return fail(res, POPK_ERR_NUMERIC, "non-positive variance of an estimate", err);
        res->se[a] = sqrt(v);
    }
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            res->corr[a * n + b] = res->cov[a * n + b] / (res->se[a] * res->se[b]);
    memcpy(L, res->corr, nn * sizeof *L);
    if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', n, L, n, res->eigenvalues) != 0)
        return fail(res, POPK_ERR_NUMERIC, "eigenvalues of the correlation matrix failed", err);
    res->condition = res->eigenvalues[n - 1] / res->eigenvalues[0];
    res->cov_status = POPK_OK;
    res->cov_message[0] = '\0';
    return POPK_OK;
}

/* Name the point p + sk h_k e_k (+ sl h_l e_l when l >= 0) in c->where. */
static void name_point(cov_ctx *c, int k, int sk, int l, int sl)
{
    char a[64], b[64];
    popk_param_map_label(c->map, k, a, sizeof a);
    if (l < 0)
        snprintf(c->where, sizeof c->where, "%s %c h", a, sk > 0 ? '+' : '-');
    else
        snprintf(c->where, sizeof c->where, "%s %c h, %s %c h", a, sk > 0 ? '+' : '-',
                 popk_param_map_label(c->map, l, b, sizeof b), sl > 0 ? '+' : '-');
}

/* J's column k (popk_estimator_model_passes) from the quadratic models' Newton steps at p +-
 * h e_k. */
static popk_status learn_direction(cov_ctx *c, const double *p, int k, double h, popk_error *err)
{
    popk_status rc = POPK_OK;
    popk_estimator_model_passes(c->est, 0);
    popk_estimator_outer_differences(c->est, 1);
    popk_estimator_forget_direction(c->est, k);
    for (int side = -1; side <= 1 && rc == POPK_OK; side += 2) {
        double unused;
        memcpy(c->pt, p, (size_t)c->n * sizeof *c->pt);
        c->pt[k] = p[k] + side * h;
        name_point(c, k, side, -1, 0);
        rc = ofv_at(c, c->pt, 0, &unused, err);
    }
    popk_estimator_outer_differences(c->est, 0);
    popk_estimator_model_passes(c->est, 1);
    return rc;
}

popk_status popk_estimate_covariance(popk_estimator *est, popk_method method,
                                     popk_covstep_kind kind, popk_estimate_result *res,
                                     popk_error *err)
{
    return popk_estimate_covariance_ex(est, method, kind, 0, 1.0, res, err);
}

popk_status popk_estimate_covariance_ex(popk_estimator *est, popk_method method,
                                        popk_covstep_kind kind, int solve_all,
                                        double step_scale, popk_estimate_result *res,
                                        popk_error *err)
{
    const popk_problem *prob = popk_estimator_problem(est);
    cov_ctx c = {est, method, popk_estimator_map(est), NULL, NULL, NULL, NULL,
                 popk_param_map_npar(popk_estimator_map(est)), COV_REL_STEP * step_scale, ""};
    int n = c.n, ns = prob->nsub, q = prob->neta;
    if (kind == POPK_COV_NONE || n == 0)
        return fail(res, POPK_ERR_ARG, "not requested", err);
    size_t nn = (size_t)n * n;
    free(res->cov);
    free(res->R);
    free(res->S);
    free(res->se);
    free(res->corr);
    free(res->eigenvalues);
    res->cov = calloc(nn, sizeof(double));
    res->R = calloc(nn, sizeof(double));
    res->S = calloc(nn, sizeof(double));
    res->se = calloc((size_t)n, sizeof(double));
    res->corr = calloc(nn, sizeof(double));
    res->eigenvalues = calloc((size_t)n, sizeof(double));
    c.theta = calloc((size_t)prob->ntheta + 1, sizeof(double));
    c.omega = calloc((size_t)(q * q) + 1, sizeof(double));
    c.sigma = calloc((size_t)prob->nsigma + 1, sizeof(double));
    c.pt = calloc((size_t)n, sizeof(double));
    double *h = calloc((size_t)n, sizeof(double));
    double *fplus = calloc((size_t)n, sizeof(double)), *fminus = calloc((size_t)n, sizeof(double));
    double *gi = calloc((size_t)ns * n, sizeof(double));
    double *tplus = calloc((size_t)ns, sizeof(double));
    double *work = calloc(3 * nn + (size_t)n, sizeof(double));
    popk_status rc = POPK_OK;
    if (!res->cov || !res->R || !res->S || !res->se || !res->corr || !res->eigenvalues ||
        !c.theta || !c.omega || !c.sigma || !c.pt || !h || !fplus || !fminus || !gi || !tplus ||
        !work) {
        rc = fail(res, POPK_ERR_NOMEM, "out of memory", err);
        goto out;
    }
    double f0;
    /* the base pass leaves the EBEs at the estimates as the warm start of every other pass,
     * with each subject's Hessian of l there as the metric of their first Newton steps (the
     * passes also learn and use the EBEs' move with the parameters, estimator.c) */
    popk_estimator_want_hessians(c.est, 2);
    rc = ofv_at(&c, res->p, 1, &f0, err);
    popk_estimator_want_hessians(c.est, 0);
    if (rc != POPK_OK) {
        fail(res, rc, "OFV failed at the estimates", NULL);
        goto out;
    }
    /* FOCE-I: the other passes take each subject's term from its quadratic model about the
     * base pass's EBE re-expanded about the EBE's first-order prediction eta + J (x - x0)
     * (estimator.c): one prediction per subject and point instead of a re-solved inner
     * problem. Its departure from the re-solved term is O(|x - x0|^3) and, J being fixed, a
     * smooth function of x, so the second differences see the same Hessian at x0. J's column
     * k comes from the models' Newton steps at the axis points' own step either way (central:
     * the steps' O(h^2) error cancels; on a noisy OFV a narrower step would leave noise in J
     * that the wider one carries into the terms): two predictions per subject for a theta or
     * sigma, none for an omega. The base is the models' own sum. */
    int models = !solve_all && method == POPK_METHOD_FOCEI &&
                 popk_estimator_taylor_base(c.est, &f0);
    for (int k = 0; k < n; k++) {
        h[k] = step_for(&c, res->p, k);
        for (int attempt = 0; attempt < COV_NOISY_WIDENINGS + 1; attempt++) {
            if (models && (rc = learn_direction(&c, res->p, k, h[k], err)) != POPK_OK)
                break;
            memcpy(c.pt, res->p, (size_t)n * sizeof *c.pt);
            c.pt[k] = res->p[k] + h[k];
            name_point(&c, k, 1, -1, 0);
            if ((rc = ofv_at(&c, c.pt, 0, &fplus[k], err)) != POPK_OK)
                break;
            memcpy(tplus, popk_estimator_trial_terms(est), (size_t)ns * sizeof *tplus);
            c.pt[k] = res->p[k] - h[k];
            name_point(&c, k, -1, -1, 0);
            if ((rc = ofv_at(&c, c.pt, 0, &fminus[k], err)) != POPK_OK)
                break;
            const double *tminus = popk_estimator_trial_terms(est);
            for (int i = 0; i < ns; i++)
                gi[(size_t)i * n + k] = (tplus[i] - tminus[i]) / (2.0 * h[k]);
            double d = (fplus[k] - 2.0 * f0 + fminus[k]) / (h[k] * h[k]);
            res->R[k * n + k] = d;
            /* A noisy OFV (an ODE solver's tolerance: ~1e-6 over the subjects) needs steps
             * that move it by more than its noise: widen the step until it changes the OFV by
             * about COV_NOISY_DOFV (a tenth of the parameter's conditional SE); a
             * non-positive second difference (noise) widens it tenfold. */
            if (!popk_estimator_noisy(est) || (d > 0.0 && 0.5 * d * h[k] * h[k] >=
                                                              0.25 * COV_NOISY_DOFV))
                break;
            double wide = d > 0.0 ? sqrt(2.0 * COV_NOISY_DOFV / d) : 10.0 * h[k];
            if (!(wide > h[k]) || !isfinite(wide))
                break;
            double widest = fmin(100.0 * h[k], room_for(&c, res->p, k));
            if (!(widest > h[k]))
                break;
            h[k] = fmin(wide, widest);
        }
        if (rc != POPK_OK)
            break;
    }
    /* off-diagonal: F(+k+l) and F(-k-l) with the axis values (O(h^2), n(n-1) passes) */
    for (int k = 0; k < n && rc == POPK_OK; k++)
        for (int l = 0; l < k && rc == POPK_OK; l++) {
            double fpp, fmm;
            memcpy(c.pt, res->p, (size_t)n * sizeof *c.pt);
            c.pt[k] += h[k];
            c.pt[l] += h[l];
            name_point(&c, k, 1, l, 1);
            if ((rc = ofv_at(&c, c.pt, 0, &fpp, err)) != POPK_OK)
                break;
            c.pt[k] = res->p[k] - h[k];
            c.pt[l] = res->p[l] - h[l];
            name_point(&c, k, -1, l, -1);
            if ((rc = ofv_at(&c, c.pt, 0, &fmm, err)) != POPK_OK)
                break;
            double v = (fpp - fplus[k] - fplus[l] + 2.0 * f0 - fminus[k] - fminus[l] + fmm) /
                       (2.0 * h[k] * h[l]);
            res->R[k * n + l] = res->R[l * n + k] = v;
        }
    if (rc != POPK_OK) {
        /* which point, and why (an estimate on a boundary: an omega block with a
         * correlation of +-1 is not positive definite a step away) */
        char msg[sizeof res->cov_message];
        if (snprintf(msg, sizeof msg, "OFV failed at the finite-difference point %s: %s",
                     c.where, err && err->message[0] ? err->message : "no reason given") >=
            (int)sizeof msg)
            memcpy(msg + sizeof msg - 4, "...", 4); /* truncated */
        fail(res, rc, msg, NULL);
        goto out;
    }
    for (int i = 0; i < ns; i++)
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++)
                res->S[a * n + b] += gi[(size_t)i * n + a] * gi[(size_t)i * n + b];
    rc = finish(res, kind, work, err);
out:
    popk_estimator_model_passes(c.est, 0);
    free(c.theta);
    free(c.omega);
    free(c.sigma);
    free(c.pt);
    free(h);
    free(fplus);
    free(fminus);
    free(gi);
    free(tplus);
    free(work);
    if (res->cov_status != POPK_OK) {
        free(res->cov);
        res->cov = NULL;
    }
    return rc;
}
