/* estimate/estimator.c — per-individual EBEs (inner problem) and the FO, FOCE, FOCE-I and
 * Laplace objectives of MATH.md, summed over individuals in parallel. */
#include "estimate/estimate_impl.h"
#include "estimate/linalg.h"
#include "util/error.h"

#include <math.h>
#include <stdio.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Inner convergence: Newton decrement g' H^-1 g (H the Gauss-Newton Hessian of l) below
 * this. It bounds l(eta) - l(eta_hat) by about half of it, and the EBE error by its square
 * root in units of the posterior SD: 1e-9 SD keeps the outer OFV smooth enough for finite
 * differences with steps of 1e-4. */
#define INNER_DECREMENT_TOL 1e-18
/* The same for the inner problems of the outer search's finite-difference passes (not the
 * covariance step's second differences, which need the tight one): EBE within 1e-8 posterior SD of the perturbed mode. l is stationary there,
 * so only log det M (FOCE-I) or the linearised terms (FOCE) move with that error, by about
 * 1e-8 per subject: with 120 subjects and h = 1e-4 a gradient error of order 1e-2 in OFV per
 * unit of x, against curvatures of 1e2 to 1e4 near the optimum, i.e. parameter errors of
 * 1e-4 to 1e-6 and OFV errors below 1e-6. After one Newton step on the committed metric the
 * decrement is typically 1e-17 to 1e-15, so this saves the third prediction of many
 * subjects (ACOP Oral_1CPT: 15% of the finite-difference predictions; same iterations and
 * OFV). 1e-14 is too loose: theo_sd takes 15 iterations instead of 12. */
#define INNER_TRIAL_DECREMENT_TOL 1e-16
#define INNER_MAXIT 100
/* Gauss-Newton converges linearly when residuals are large; after this many iterations the
 * exact Hessian (central differences of the exact gradient, 2 neta extra predictions) takes
 * over if positive definite. Measured on theo_sd and ACOP: switching after 4 or 6 iterations
 * costs 15-25% more predictions than Gauss-Newton alone, so it is only a late fallback. */
#define INNER_EXACT_AFTER 20
#define INNER_HALVINGS 40
/* Longest Newton step, in prior SDs of each eta: far from the mode (bad initial values) the
 * joint term can be doubly exponential in eta and the Gauss-Newton step absurdly long. */
#define INNER_MAX_STEP 3.0
/* Noise floor of the Newton decrement: once it is below this (eta within 1e-4 posterior SD
 * of the mode, l within 5e-9 of its minimum) a Newton step that fails the descent test has
 * met the noise of l (an ODE solver's tolerance, not only rounding) and eta is converged.
 * With CVODES at rtol 1e-8 the decrement stalls near 1e-9 (ACOP Oral_1CPTMM subject 4:
 * accepted steps of length 1e-12 for 100 iterations, 40 predictions each). */
#define INNER_NOISE_DECREMENT 1e-8
/* A noisier l (CVODES at rtol 1e-8 on ACOP Oral_1CPTMM: decrements stall near 1e-7 to 1e-6)
 * shows as Newton steps that need 10 or more halvings or fail outright; below this decrement
 * (eta within 3e-3 posterior SD of the mode, l within 5e-6 of its minimum) that too is
 * convergence, not failure. */
#define INNER_NOISY_DECREMENT 1e-5
/* Below this decrement (EBE within 0.1 posterior SD of the mode, the quadratic region) a full
 * Newton step that l does not confirm is still accepted if it cuts the decrement by 4: l's
 * noise (an ODE solver's tolerance) can exceed the expected decrease, the gradient keeps the
 * solver's relative accuracy. */
#define INNER_GRADIENT_ACCEPT 1e-2
/* Once l has shown noise (a full Newton step near the mode that l does not confirm), the
 * iterations stop at this decrement: the EBE is then within 1e-7 posterior SD of the mode,
 * which moves log det M by about 1e-7, the size of l's own noise with CVODES at rtol 1e-8;
 * below it the gradient is at its noise too (decrements of 1e-15 to 1e-14 on ACOP
 * Oral_1CPTMM), and chasing it cost two or three predictions per inner problem. */
#define INNER_NOISY_TOL 1e-14
/* Step of the central differences of the exact gradient (Laplace Hessian). */
#define HESSIAN_STEP 1e-4
/* Finite-difference passes (the outer gradient) start each inner problem at the committed
 * EBE, O(h) from the perturbed mode. Gauss-Newton contracts that distance only linearly
 * (about 6 predictions per subject to the decrement tolerance on ACOP); Newton with the
 * Hessian of l at the committed EBE and parameters, which is within O(h) of the one at the
 * perturbed mode, contracts it by O(h) per step: from 1e-4 the decrement falls below
 * INNER_DECREMENT_TOL in two or three predictions. The stopping rule is unchanged, so the
 * perturbed OFVs are as accurate as before. The Hessian costs neta predictions per subject
 * per gradient (forward differences of the exact gradient with step WARM_HESSIAN_STEP: with
 * 1e-4 or 1e-5 its O(step) error costs the finite-difference passes 10-25% more predictions
 * on ACOP), against the npar to 2 npar passes that use it. Commit passes use the last one
 * as well (15-20% fewer predictions than Gauss-Newton from the warm start). Limited to the
 * first few steps (measured: 4 beats 20), and dropped at the first step that needs halving
 * (far from where it was computed it is no guide). */
#define INNER_WARM_HESSIAN_STEPS 4
/* The outer finite differences of FOCE-I take a subject's term from its quadratic model
 * (taylor_value) unless the perturbed EBE lies farther than this Newton decrement from the
 * committed one (1 posterior SD); then the inner problem is solved. What the differences need
 * is the model's first derivative in the outer parameters at the committed point, which is
 * exact (envelope theorem for l, implicit function theorem for the EBE's move), and the model
 * is smooth in them: its O(|d|^2) departure from the re-solved term is an O(h^2) term of the
 * differences (cancels in central ones; the forward ones remove it with the curvature of the
 * last central ones, fit.c). So the bound only keeps the model where it still describes the
 * subject; decrements at the outer steps are 1e-10 to 1e-3 (ACOP Oral_1CPTMM, theta scaled
 * by 7). */
#define TAYLOR_MAX_DECREMENT 1.0
#define WARM_HESSIAN_STEP 1e-6
/* status of a subject a pass skipped after an earlier subject failed (never reported: the
 * failure before it is) */
#define PASS_SKIPPED 4

typedef struct {
    double *f, *V, *G, *dV;         /* at the current eta */
    double *f1, *V1, *G1, *dV1;     /* at a trial eta, or scratch */
    double *V0;                     /* V at eta = 0 (FO, FOCE) */
    double *grad, *grad1, *M, *M1, *L, *step, *eta1, *H, *col;
    long predictions;               /* calls of pred by this thread */
    popk_error err;
} workspace;

/* One subject's quadratic model (see struct popk_estimator). */
typedef struct {
    int ok;
    double base; /* the model's value at the committed point */
} taylor_rec;

struct popk_estimator {
    const popk_problem *prob;
    popk_param_map *map;
    int nthreads, maxobs, q;
    workspace *ws;
    double *eta, *eta_new, *terms, *terms_new, *eta_cov, *eta_cov_new;
    double *Oi;                     /* Omega^-1 of the current pass */
    double *eta_sd;                 /* sqrt(Omega_kk) of the current pass */
    double logdet_omega;
    int *status;
    int *noisy;                     /* per subject: l has shown noise (newton) */
    /* Cholesky factors of half the Hessian of l_i (hess_ok[i]: set and positive definite)
     * at the EBE of the last commit pass that had want_hessians set: the Newton metric of
     * the first inner steps of later passes; *_new as eta_new */
    double *hess_L, *hess_L_new;
    int *hess_ok, *hess_ok_new;
    int want_hessians;
    int outer_differences;          /* non-commit passes are the outer gradient's */
    /* non-commit FOCE-I passes take each subject's term from its quadratic model re-expanded
     * about the EBE's first-order prediction (popk_estimator_model_passes) */
    int model_passes;
    /* The quadratic model of each subject's FOCE-I term about its committed EBE, kept by a
     * commit pass with want_hessians (taylor_valid: the last commit pass was one) for the
     * outer finite differences (taylor_ofv): the gradient of log det M in eta, and f, V, G, dV
     * at the EBE (passes that change only Omega need no prediction); *_new as eta_new. */
    taylor_rec *tay, *tay_new;
    double *tay_vec, *tay_vec_new;  /* per subject: dldm[q], f[n], V[n], G[n q], dV[n q] */
    size_t tay_stride;
    double *tay_theta, *tay_sigma;  /* the parameters of the kept models */
    int taylor_valid;
    /* The EBEs' first-order move with the outer vector x (popk_param_map), from the quadratic
     * models' Newton steps in the outer differences: jac[i][a][k] sums d eta_ia / d x_k over
     * jac_count[k] differences since the last commit with models (jac_bad[i]: a subject's
     * model failed). Passes that solve the inner problem start from eta + J (x - x_commit),
     * O(|x - x_commit|^2) from their EBEs, instead of eta. */
    int npar;
    double *jac, *x_pass, *x_commit;
    int *jac_count, *jac_bad;
    int x_commit_valid;
    int last_fatal;                 /* the last pass failed through a callback error */
    popk_error *sub_err;            /* per subject, so the reported error does not depend on
                                       the thread schedule */
};

/* What one individual's evaluation needs. */
typedef struct {
    const popk_estimator *est;
    int i, thread, nobs;
    const double *y, *theta, *sigma;
    int fixed_var;                  /* FO/FOCE: V := V0, dV := 0 */
    workspace *w;
    int vet_warm_start;             /* compare l at the warm start with l at 0 */
    const double *warm_L;           /* chol(H/2) at the warm start, or NULL */
} indiv;

static void *xcalloc(size_t n, size_t size, int *fail)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        *fail = 1;
    return p;
}

void popk_estimator_free(popk_estimator *est)
{
    if (!est)
        return;
    if (est->ws)
        for (int t = 0; t < est->nthreads; t++) {
            workspace *w = &est->ws[t];
            double *bufs[] = {w->f,  w->V,     w->G,  w->dV, w->f1, w->V1,   w->G1,
                              w->dV1, w->V0,   w->grad, w->grad1, w->M, w->M1, w->L,
                              w->step, w->eta1, w->H, w->col};
            for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++)
                free(bufs[k]);
        }
    free(est->ws);
    free(est->eta);
    free(est->eta_new);
    free(est->terms);
    free(est->terms_new);
    free(est->eta_cov);
    free(est->eta_cov_new);
    free(est->Oi);
    free(est->eta_sd);
    free(est->status);
    free(est->noisy);
    free(est->hess_L);
    free(est->hess_L_new);
    free(est->hess_ok);
    free(est->hess_ok_new);
    free(est->sub_err);
    free(est->tay);
    free(est->tay_new);
    free(est->tay_vec);
    free(est->tay_vec_new);
    free(est->tay_theta);
    free(est->tay_sigma);
    free(est->jac);
    free(est->x_pass);
    free(est->x_commit);
    free(est->jac_count);
    free(est->jac_bad);
    popk_param_map_free(est->map);
    free(est);
}

popk_estimator *popk_estimator_create(const popk_problem *prob, int nthreads, popk_error *err)
{
    popk_param_map *map = popk_param_map_create(prob, err);
    if (!map)
        return NULL;
    popk_estimator *est = calloc(1, sizeof *est);
    if (!est) {
        popk_param_map_free(map);
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    est->prob = prob;
    est->map = map;
    est->nthreads = nthreads > 0 ? nthreads : omp_get_max_threads();
    est->q = prob->neta;
    for (int i = 0; i < prob->nsub; i++)
        if (prob->nobs[i] > est->maxobs)
            est->maxobs = prob->nobs[i];
    size_t n = (size_t)est->maxobs, q = (size_t)est->q, ns = (size_t)prob->nsub;
    int fail = 0;
    est->ws = xcalloc((size_t)est->nthreads, sizeof *est->ws, &fail);
    if (est->ws)
        for (int t = 0; t < est->nthreads; t++) {
            workspace *w = &est->ws[t];
            w->f = xcalloc(n, sizeof(double), &fail);
            w->V = xcalloc(n, sizeof(double), &fail);
            w->G = xcalloc(n * q, sizeof(double), &fail);
            w->dV = xcalloc(n * q, sizeof(double), &fail);
            w->f1 = xcalloc(n, sizeof(double), &fail);
            w->V1 = xcalloc(n, sizeof(double), &fail);
            w->G1 = xcalloc(n * q, sizeof(double), &fail);
            w->dV1 = xcalloc(n * q, sizeof(double), &fail);
            w->V0 = xcalloc(n, sizeof(double), &fail);
            w->grad = xcalloc(q, sizeof(double), &fail);
            w->grad1 = xcalloc(q, sizeof(double), &fail);
            w->M = xcalloc(q * q, sizeof(double), &fail);
            w->M1 = xcalloc(q * q, sizeof(double), &fail);
            w->L = xcalloc(q * q, sizeof(double), &fail);
            w->step = xcalloc(q, sizeof(double), &fail);
            w->eta1 = xcalloc(q, sizeof(double), &fail);
            w->H = xcalloc(q * q + q, sizeof(double), &fail); /* + the minus-side gradient */
            w->col = xcalloc(q, sizeof(double), &fail);
        }
    est->eta = xcalloc(ns * q, sizeof(double), &fail);
    est->eta_new = xcalloc(ns * q, sizeof(double), &fail);
    est->terms = xcalloc(ns, sizeof(double), &fail);
    est->terms_new = xcalloc(ns, sizeof(double), &fail);
    est->eta_cov = xcalloc(ns * q * q, sizeof(double), &fail);
    est->eta_cov_new = xcalloc(ns * q * q, sizeof(double), &fail);
    est->Oi = xcalloc(q * q, sizeof(double), &fail);
    est->eta_sd = xcalloc(q, sizeof(double), &fail);
    est->status = xcalloc(ns, sizeof(int), &fail);
    est->noisy = xcalloc(ns, sizeof(int), &fail);
    est->hess_L = xcalloc(ns * q * q, sizeof(double), &fail);
    est->hess_L_new = xcalloc(ns * q * q, sizeof(double), &fail);
    est->hess_ok = xcalloc(ns, sizeof(int), &fail);
    est->hess_ok_new = xcalloc(ns, sizeof(int), &fail);
    est->sub_err = xcalloc(ns, sizeof(popk_error), &fail);
    est->tay = xcalloc(ns, sizeof(taylor_rec), &fail);
    est->tay_new = xcalloc(ns, sizeof(taylor_rec), &fail);
    est->tay_stride = q + n * (2 + 2 * q);
    est->tay_vec = xcalloc(ns * est->tay_stride, sizeof(double), &fail);
    est->tay_vec_new = xcalloc(ns * est->tay_stride, sizeof(double), &fail);
    est->tay_theta = xcalloc((size_t)prob->ntheta, sizeof(double), &fail);
    est->tay_sigma = xcalloc((size_t)prob->nsigma, sizeof(double), &fail);
    est->npar = popk_param_map_npar(map);
    size_t np = (size_t)est->npar;
    est->jac = xcalloc(ns * q * np, sizeof(double), &fail);
    est->x_pass = xcalloc(np, sizeof(double), &fail);
    est->x_commit = xcalloc(np, sizeof(double), &fail);
    est->jac_count = xcalloc(np, sizeof(int), &fail);
    est->jac_bad = xcalloc(ns, sizeof(int), &fail);
    if (fail || !est->ws) {
        popk_estimator_free(est);
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    return est;
}

const popk_param_map *popk_estimator_map(const popk_estimator *est) { return est->map; }
const popk_problem *popk_estimator_problem(const popk_estimator *est) { return est->prob; }
int popk_estimator_last_fatal(const popk_estimator *est) { return est->last_fatal; }
const double *popk_estimator_ofv_terms(const popk_estimator *est) { return est->terms; }
const double *popk_estimator_trial_terms(const popk_estimator *est) { return est->terms_new; }
const double *popk_estimator_eta(const popk_estimator *est) { return est->eta; }
const double *popk_estimator_eta_cov(const popk_estimator *est) { return est->eta_cov; }

int popk_estimator_noisy(const popk_estimator *est)
{
    for (int i = 0; i < est->prob->nsub; i++)
        if (est->noisy[i])
            return 1;
    return 0;
}

long popk_estimator_predictions(const popk_estimator *est)
{
    long n = 0;
    for (int t = 0; t < est->nthreads; t++)
        n += est->ws[t].predictions;
    return n;
}

/* Subject i's term at the committed point as the outer differences see it. */
static double base_term(const popk_estimator *est, int i)
{
    return est->taylor_valid && est->tay[i].ok ? est->tay[i].base : est->terms[i];
}

void popk_estimator_base_terms(const popk_estimator *est, double *out)
{
    for (int i = 0; i < est->prob->nsub; i++)
        out[i] = base_term(est, i);
}

int popk_estimator_taylor_base(const popk_estimator *est, double *base)
{
    if (!est->taylor_valid)
        return 0;
    double sum = 0.0; /* in subject order, as the passes sum */
    for (int i = 0; i < est->prob->nsub; i++)
        sum += base_term(est, i);
    *base = sum;
    return 1;
}

void popk_estimator_restore(popk_estimator *est, const double *eta, const double *x)
{
    popk_estimator_set_eta(est, eta);
    if (est->npar > 0) {
        memcpy(est->x_commit, x, (size_t)est->npar * sizeof *x);
        est->x_commit_valid = 1;
    }
}

void popk_estimator_set_eta(popk_estimator *est, const double *eta)
{
    est->taylor_valid = 0; /* the kept models are about the EBEs being replaced */
    est->x_commit_valid = 0;
    size_t n = (size_t)est->prob->nsub * (size_t)est->q;
    for (size_t k = 0; k < n; k++)
        est->eta[k] = eta ? eta[k] : 0.0;
}

void popk_estimator_want_hessians(popk_estimator *est, int how) { est->want_hessians = how; }
void popk_estimator_outer_differences(popk_estimator *est, int on)
{
    est->outer_differences = on;
}
void popk_estimator_model_passes(popk_estimator *est, int on) { est->model_passes = on; }
void popk_estimator_forget_direction(popk_estimator *est, int k)
{
    if (k < 0 || k >= est->npar)
        return;
    for (size_t r = 0; r < (size_t)est->prob->nsub * (size_t)est->q; r++)
        est->jac[r * est->npar + k] = 0.0;
    est->jac_count[k] = 0;
}

/* Prepare Omega^-1 and log det Omega for a pass. */
static popk_status set_omega(popk_estimator *est, const double *omega, popk_error *err)
{
    int q = est->q;
    workspace *w = &est->ws[0];
    if (q == 0) {
        est->logdet_omega = 0.0;
        return POPK_OK;
    }
    memcpy(w->L, omega, (size_t)(q * q) * sizeof *w->L);
    if (popk_chol(q, w->L) != 0)
        return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                              "OMEGA is not positive definite");
    est->logdet_omega = popk_chol_logdet(q, w->L);
    for (int k = 0; k < q; k++)
        est->eta_sd[k] = sqrt(omega[k * q + k]);
    popk_chol_inverse(q, w->L, est->Oi, w->col);
    return POPK_OK;
}

static int joint_terms(const indiv *c, const double *eta, const double *f, const double *V,
                       const double *G, const double *dV, double *l, double *grad, double *M);

/* The prediction at eta into (f, V) and, when G is not NULL, (G, dV); counted. Returns the
 * callback's status, or 1 for a non-finite prediction. */
static int predict(const indiv *c, const double *eta, double *f, double *V, double *G,
                   double *dV)
{
    const popk_estimator *est = c->est;
    int q = est->q, n = c->nobs;
    c->w->predictions++;
    int st = est->prob->pred(c->i, c->thread, c->theta, c->sigma, eta, f, V, q ? G : NULL,
                             q ? dV : NULL, est->prob->user, &c->w->err);
    if (st != 0)
        return st < 0 ? st : 1; /* 2 is ours: Hessian not positive definite */
    for (int j = 0; j < n; j++)
        if (!isfinite(f[j]) || !(V[j] > 0.0) || !isfinite(V[j]))
            return 1;
    if (c->fixed_var) {
        memcpy(V, c->w->V0, (size_t)n * sizeof *V);
        if (dV)
            memset(dV, 0, (size_t)(n * q) * sizeof *dV);
    }
    return 0;
}

/* Predict at eta into (f, V, G, dV) and form l, its gradient and the FOCE-I matrix
 * M = Omega^-1 + sum_j [g g'/V + 1/2 dV dV'/V^2] (half the Gauss-Newton Hessian of l).
 * Returns the callback's status, or 1 for a non-finite prediction. */
static int evaluate(const indiv *c, const double *eta, double *f, double *V, double *G,
                    double *dV, double *l, double *grad, double *M)
{
    int st = predict(c, eta, f, V, G, dV);
    return st ? st : joint_terms(c, eta, f, V, G, dV, l, grad, M);
}

/* l alone at eta (a prediction without sensitivities, which costs an ODE model a fraction
 * of one with them). */
static int evaluate_value(const indiv *c, const double *eta, double *f, double *V, double *l)
{
    int st = predict(c, eta, f, V, NULL, NULL);
    return st ? st : joint_terms(c, eta, f, V, NULL, NULL, l, NULL, NULL);
}

/* l, and unless grad is NULL its gradient and M, at eta from the prediction (f, V, G, dV)
 * there. */
static int joint_terms(const indiv *c, const double *eta, const double *f, const double *V,
                       const double *G, const double *dV, double *l, double *grad, double *M)
{
    const popk_estimator *est = c->est;
    int q = est->q, n = c->nobs;
    double s = est->logdet_omega;
    for (int a = 0; a < q; a++) {
        double oe = 0.0;
        for (int b = 0; b < q; b++)
            oe += est->Oi[a * q + b] * eta[b];
        s += eta[a] * oe;
        if (!grad)
            continue;
        grad[a] = 2.0 * oe;
        for (int b = 0; b < q; b++)
            M[a * q + b] = est->Oi[a * q + b];
    }
    for (int j = 0; j < n; j++) {
        double r = c->y[j] - f[j], v = V[j];
        s += r * r / v + log(v);
        if (!grad)
            continue;
        const double *g = G + (size_t)j * q, *dv = dV + (size_t)j * q;
        double wr = -2.0 * r / v, wv = 1.0 / v - r * r / (v * v);
        for (int a = 0; a < q; a++) {
            grad[a] += wr * g[a] + wv * dv[a];
            for (int b = 0; b <= a; b++)
                M[a * q + b] += g[a] * g[b] / v + 0.5 * dv[a] * dv[b] / (v * v);
        }
    }
    for (int a = 0; a < q && grad; a++)
        for (int b = a + 1; b < q; b++)
            M[a * q + b] = M[b * q + a];
    *l = s;
    return isfinite(s) ? 0 : 1;
}

/* Exact Hessian of the current inner objective at eta by central differences of the exact
 * gradient (uses the trial buffers). */
static int exact_hessian(const indiv *c, const double *eta, double *H)
{
    workspace *w = c->w;
    int q = c->est->q;
    double l;
    for (int k = 0; k < q; k++) {
        memcpy(w->eta1, eta, (size_t)q * sizeof *eta);
        w->eta1[k] = eta[k] + HESSIAN_STEP;
        int st = evaluate(c, w->eta1, w->f1, w->V1, w->G1, w->dV1, &l, w->grad1, w->M1);
        if (st)
            return st;
        for (int a = 0; a < q; a++)
            H[a * q + k] = w->grad1[a];
        w->eta1[k] = eta[k] - HESSIAN_STEP;
        st = evaluate(c, w->eta1, w->f1, w->V1, w->G1, w->dV1, &l, w->grad1, w->M1);
        if (st)
            return st;
        for (int a = 0; a < q; a++)
            H[a * q + k] = (H[a * q + k] - w->grad1[a]) / (2.0 * HESSIAN_STEP);
    }
    for (int a = 0; a < q; a++)
        for (int b = 0; b < a; b++)
            H[a * q + b] = H[b * q + a] = 0.5 * (H[a * q + b] + H[b * q + a]);
    return 0;
}

static void swap_ptr(double **a, double **b)
{
    double *t = *a;
    *a = *b;
    *b = t;
}

static void swap_current_trial(workspace *w)
{
    swap_ptr(&w->f, &w->f1);
    swap_ptr(&w->V, &w->V1);
    swap_ptr(&w->G, &w->G1);
    swap_ptr(&w->dV, &w->dV1);
    swap_ptr(&w->grad, &w->grad1);
    swap_ptr(&w->M, &w->M1);
}

/* The Newton decrement at the trial point (its gradient in the trial buffers) in the metric
 * of the current step (w->L). */
static double trial_decrement(const indiv *c)
{
    workspace *w = c->w;
    int q = c->est->q;
    double d = 0.0;
    for (int a = 0; a < q; a++)
        w->col[a] = -0.5 * w->grad1[a];
    popk_chol_solve(q, w->L, w->col);
    for (int a = 0; a < q; a++)
        d -= w->grad1[a] * w->col[a];
    return d;
}

/* Newton iterations from eta (updated in place; evaluated: the current buffers already hold
 * its evaluation and *l its l). On return 0 the current buffers of the
 * workspace hold f, V, G, dV, the gradient and M at eta, and *l is l(eta). */
static int newton(const indiv *c, double *eta, double *l, int evaluated)
{
    workspace *w = c->w;
    int q = c->est->q;
    if (!evaluated) {
        int st = evaluate(c, eta, w->f, w->V, w->G, w->dV, l, w->grad, w->M);
        if (st)
            return st;
    }
    int st;
    double decrement = 0.0;
    int warm_steps = c->warm_L ? INNER_WARM_HESSIAN_STEPS : 0;
    /* l showed noise above the expected decrease of a full step, in this call or an earlier
     * inner problem of the subject (the noise is the model's: its ODE solver) */
    int noisy = c->est->noisy[c->i];
    for (int it = 0; it < INNER_MAXIT; it++) {
        int exact = it < warm_steps;
        if (exact)
            memcpy(w->L, c->warm_L, (size_t)(q * q) * sizeof *w->L);
        else {
            memcpy(w->L, w->M, (size_t)(q * q) * sizeof *w->L);
            if (popk_chol(q, w->L) != 0)
                return 1;
        }
        for (int a = 0; a < q; a++)
            w->step[a] = -0.5 * w->grad[a];
        popk_chol_solve(q, w->L, w->step);
        decrement = 0.0;
        for (int a = 0; a < q; a++)
            decrement -= w->grad[a] * w->step[a];
        if (decrement <= (c->est->outer_differences && !c->vet_warm_start
                              ? INNER_TRIAL_DECREMENT_TOL
                              : INNER_DECREMENT_TOL) ||
            (noisy && decrement <= INNER_NOISY_TOL))
            return 0;
        if (it >= INNER_EXACT_AFTER && exact_hessian(c, eta, w->H) == 0) {
            /* a Newton step with the exact Hessian, when it is positive definite */
            for (int k = 0; k < q * q; k++)
                w->L[k] = 0.5 * w->H[k];
            if (popk_chol(q, w->L) == 0) {
                for (int a = 0; a < q; a++)
                    w->step[a] = -0.5 * w->grad[a];
                popk_chol_solve(q, w->L, w->step);
            }
        }
        double longest = 0.0;
        for (int a = 0; a < q; a++)
            if (fabs(w->step[a]) > longest * c->est->eta_sd[a])
                longest = fabs(w->step[a]) / c->est->eta_sd[a];
        if (longest > INNER_MAX_STEP)
            for (int a = 0; a < q; a++)
                w->step[a] *= INNER_MAX_STEP / longest;
        double slope = 0.0;
        for (int a = 0; a < q; a++)
            slope += w->grad[a] * w->step[a];
        double t = 1.0, l1 = 0.0, t_accepted = 0.0;
        int accepted = 0;
        for (int h = 0; h < INNER_HALVINGS && !accepted; h++, t *= 0.5) {
            for (int a = 0; a < q; a++)
                w->eta1[a] = eta[a] + t * w->step[a];
            st = evaluate(c, w->eta1, w->f1, w->V1, w->G1, w->dV1, &l1, w->grad1, w->M1);
            if (st < 0)
                return st;
            /* l's noise shows: a full step expected to change l by less than 5e-13 changed
             * it by more than 1e-10 of itself, a hundred times its rounding */
            if (st == 0 && t == 1.0 && decrement < 1e-12 && l1 - *l > 1e-10 * (1.0 + fabs(*l)))
                noisy = c->est->noisy[c->i] = 1;
            /* Armijo, with room for rounding in l once the decrease is at that level */
            if (st == 0 && l1 <= *l + 1e-4 * t * slope + 1e-13 * fabs(*l)) {
                accepted = 1;
                t_accepted = t;
            } else if (st == 0 && t == 1.0 && decrement < INNER_GRADIENT_ACCEPT &&
                       trial_decrement(c) < 0.25 * decrement) {
                /* Near the mode the expected decrease (decrement / 2) can be below the noise
                 * of l (an ODE solver's tolerance): l1 says nothing there, but the gradient,
                 * which the sensitivities give to the solver's relative accuracy, does. A
                 * full step that cuts the decrement by 4 is the Newton step converging. */
                accepted = 1;
                t_accepted = t;
            }
            /* At the noise floor halving only buys steps that move eta by nothing, 40
             * predictions each, up to INNER_MAXIT times (Wang 2007 as an ODE: 4400
             * predictions per subject). */
            if (!accepted && decrement < INNER_NOISE_DECREMENT)
                break;
        }
        if (!accepted && decrement < INNER_NOISE_DECREMENT)
            return 0; /* at the noise floor (with either metric) */
        if (!accepted && exact) {
            /* the committed Hessian is no guide here: Gauss-Newton from the same point */
            warm_steps = 0;
            it--;
            continue;
        }
        if (!accepted)
            return decrement < INNER_NOISY_DECREMENT ? 0 : 1;
        if (exact && t_accepted < 1.0)
            warm_steps = 0;
        memcpy(eta, w->eta1, (size_t)q * sizeof *eta);
        *l = l1;
        swap_current_trial(w);
        if (t_accepted < 1e-3 && decrement < INNER_NOISY_DECREMENT)
            return 0;
    }
    if (decrement < INNER_NOISE_DECREMENT)
        return 0;
    return 1;
}

/* EBE from the warm start or from 0, whichever has the lower l (a warm start left in
 * another mode's basin by a distant outer trial point must not trap the subject there), then
 * from 0 if that fails. */
static int inner(const indiv *c, double *eta, double *l)
{
    int q = c->est->q;
    workspace *w = c->w;
    int warm = 0, evaluated = 0;
    for (int a = 0; a < q && c->vet_warm_start; a++)
        warm |= eta[a] != 0.0;
    if (warm) {
        /* l at 0 needs no sensitivities unless 0 wins */
        double l_warm, l_zero;
        for (int a = 0; a < q; a++)
            w->eta1[a] = 0.0;
        int st_warm = evaluate(c, eta, w->f, w->V, w->G, w->dV, &l_warm, w->grad, w->M);
        int st_zero = evaluate_value(c, w->eta1, w->f1, w->V1, &l_zero);
        if (st_warm < 0 || st_zero < 0)
            return st_warm < 0 ? st_warm : st_zero;
        if (st_zero == 0 && (st_warm != 0 || l_zero < l_warm)) {
            for (int a = 0; a < q; a++)
                eta[a] = 0.0;
            st_zero = evaluate(c, eta, w->f, w->V, w->G, w->dV, l, w->grad, w->M);
            if (st_zero < 0)
                return st_zero;
            evaluated = st_zero == 0;
        } else {
            *l = l_warm;
            evaluated = st_warm == 0;
        }
    }
    int st = newton(c, eta, l, evaluated);
    if (st <= 0)
        return st;
    for (int a = 0; a < q; a++)
        eta[a] = 0.0;
    indiv cold = *c;
    cold.warm_L = NULL;
    return newton(&cold, eta, l, 0);
}

/* OFV_i of FO/FOCE: the linearised marginal at eta (Woodbury, so only q x q matrices):
 * log det C = sum log V0 + log det Omega + log det M, r'C^-1 r = r'D^-1 r - b'M^-1 b with
 * D = diag(V0), r = y - f + G eta, b = G'D^-1 r, M = Omega^-1 + G'D^-1 G. */
static int linearised(const indiv *c, const double *eta, double *ofv, double *cov)
{
    workspace *w = c->w;
    int q = c->est->q, n = c->nobs;
    memcpy(w->L, w->M, (size_t)(q * q) * sizeof *w->L);
    if (popk_chol(q, w->L) != 0)
        return 1;
    double s = c->est->logdet_omega + popk_chol_logdet(q, w->L);
    for (int a = 0; a < q; a++)
        w->step[a] = 0.0;
    for (int j = 0; j < n; j++) {
        const double *g = w->G + (size_t)j * q;
        double r = c->y[j] - w->f[j];
        for (int a = 0; a < q; a++)
            r += g[a] * eta[a];
        s += log(w->V0[j]) + r * r / w->V0[j];
        for (int a = 0; a < q; a++)
            w->step[a] += g[a] * r / w->V0[j];
    }
    memcpy(w->col, w->step, (size_t)q * sizeof *w->col);
    popk_chol_solve(q, w->L, w->col);
    for (int a = 0; a < q; a++)
        s -= w->step[a] * w->col[a];
    *ofv = s;
    popk_chol_inverse(q, w->L, cov, w->col);
    return isfinite(s) ? 0 : 1;
}

/* chol(H/2) of the Hessian H of l at eta (into L; 0 if positive definite), for the inner
 * problems of the passes that follow: forward differences of the exact gradient from the one
 * at eta in the current buffers (neta predictions; an error of O(WARM_HESSIAN_STEP) only slows
 * their Newton steps, whose stopping rule is the usual one), or with want_hessians == 2
 * central ones with step HESSIAN_STEP (2 neta predictions: the covariance step's models, whose
 * second differences need H and dldm to more than the ~1e-2 that a noisy gradient leaves in
 * forward ones at 1e-6). dldm (if not NULL): the gradient of log det M the same way. Keeps
 * the current buffers. */
static int warm_hessian(const indiv *c, const double *eta, double *L, double logdet_m,
                        double *dldm)
{
    workspace *w = c->w;
    int q = c->est->q, central = c->est->want_hessians == 2;
    double step = central ? HESSIAN_STEP : WARM_HESSIAN_STEP;
    double l;
    double *gm = w->H + (size_t)q * q, logdet_minus = 0.0; /* central: the minus side's */
    for (int k = 0; k < q; k++) {
        for (int side = central ? -1 : 1; side <= 1; side += 2) {
            memcpy(w->eta1, eta, (size_t)q * sizeof *eta);
            w->eta1[k] = eta[k] + side * step;
            if (evaluate(c, w->eta1, w->f1, w->V1, w->G1, w->dV1, &l, w->grad1, w->M1) != 0)
                return 1;
            if (dldm && popk_chol(q, w->M1) != 0)
                return 1;
            if (side < 0) {
                memcpy(gm, w->grad1, (size_t)q * sizeof *gm);
                if (dldm)
                    logdet_minus = popk_chol_logdet(q, w->M1);
            }
        }
        /* forward: from the values at eta; central: from the minus side */
        const double *g0 = central ? gm : w->grad;
        double l0 = central ? logdet_minus : logdet_m, span = central ? 2.0 * step : step;
        for (int a = 0; a < q; a++)
            w->H[a * q + k] = (w->grad1[a] - g0[a]) / span;
        if (dldm)
            dldm[k] = (popk_chol_logdet(q, w->M1) - l0) / span;
    }
    for (int a = 0; a < q; a++)
        for (int b = 0; b <= a; b++)
            L[a * q + b] = L[b * q + a] = 0.25 * (w->H[a * q + b] + w->H[b * q + a]);
    return popk_chol(q, L) != 0;
}

/* The value at the minimum over eta of the quadratic model about eta0 of a subject's FOCE-I
 * term: l, its gradient g and M at eta0 (M is overwritten), chol(H/2) of the Hessian of l
 * there, and the gradient dldm of log det M. The Newton step d = -H^-1 g moves l by
 * -g'H^-1 g / 2 (the quadratic model's minimum) and log det M by dldm'd: the value is the term
 * at the perturbed EBE to O(|d|^2), i.e. O(h^2) for the outer finite differences' steps h.
 * 1 (not used: the caller solves the inner problem) when the step is too long for that or M
 * is not positive definite. */
static int taylor_value(const indiv *c, double l, const double *g, double *M,
                        const double *hess_L, const double *dldm, double *value)
{
    workspace *w = c->w;
    int q = c->est->q;
    for (int a = 0; a < q; a++)
        w->step[a] = -0.5 * g[a];
    popk_chol_solve(q, hess_L, w->step);
    double decrement = 0.0, shift = 0.0;
    for (int a = 0; a < q; a++) {
        decrement -= g[a] * w->step[a];
        shift += dldm[a] * w->step[a];
    }
    if (!(decrement <= TAYLOR_MAX_DECREMENT) || popk_chol(q, M) != 0)
        return 1;
    *value = l - 0.5 * decrement + popk_chol_logdet(q, M) + shift;
    return isfinite(*value) ? 0 : 1;
}

/* Layout of a subject's kept vectors: dldm[q], f[n], V[n], G[n q], dV[n q]. */
static double *tay_dldm(double *v) { return v; }
static double *tay_f(double *v, int q) { return v + q; }

/* Keep the quadratic model about the EBE of a FOCE-I commit pass (the current buffers hold
 * the evaluation there, l its l; L = chol(H/2) from warm_hessian, dldm filled by it). */
static void taylor_keep(const indiv *c, double l, const double *L, taylor_rec *t, double *v)
{
    workspace *w = c->w;
    int q = c->est->q, n = c->nobs;
    double *f = tay_f(v, q);
    memcpy(f, w->f, (size_t)n * sizeof *v);
    memcpy(f + n, w->V, (size_t)n * sizeof *v);
    memcpy(f + 2 * n, w->G, (size_t)(n * q) * sizeof *v);
    memcpy(f + 2 * n + n * q, w->dV, (size_t)(n * q) * sizeof *v);
    memcpy(w->M1, w->M, (size_t)(q * q) * sizeof *w->M1);
    t->ok = taylor_value(c, l, w->grad, w->M1, L, tay_dldm(v), &t->base) == 0;
}

/* A subject's term from its kept model at eta with the pass's parameters: one prediction (none
 * when only Omega changed and eta is the committed EBE: reuse), then taylor_value. eta is the
 * committed EBE in the outer differences, its first-order prediction in model passes. */
static int taylor_ofv(const indiv *c, const double *eta, const double *L, double *v, int reuse,
                      double *value)
{
    workspace *w = c->w;
    int q = c->est->q, n = c->nobs;
    double l;
    int st;
    if (reuse) {
        const double *f = tay_f(v, q);
        st = joint_terms(c, eta, f, f + n, f + 2 * n, f + 2 * n + n * q, &l, w->grad, w->M);
    } else
        st = evaluate(c, eta, w->f, w->V, w->G, w->dV, &l, w->grad, w->M);
    if (st)
        return st;
    return taylor_value(c, l, w->grad, w->M, L, tay_dldm(v), value);
}

static int individual(const indiv *c0, popk_method method, double *eta, double *ofv, double *cov,
                      double *hess_L, int *hess_ok, taylor_rec *tay, double *tay_v)
{
    indiv c = *c0;
    workspace *w = c.w;
    int q = c.est->q;
    double l;
    int st;
    if (method == POPK_METHOD_FO || method == POPK_METHOD_FOCE) {
        for (int a = 0; a < q; a++)
            w->eta1[a] = 0.0;
        st = evaluate(&c, w->eta1, w->f, w->V0, w->G, w->dV, &l, w->grad, w->M);
        if (st)
            return st;
        c.fixed_var = 1;
        if (method == POPK_METHOD_FO) {
            for (int a = 0; a < q; a++)
                eta[a] = 0.0;
            st = evaluate(&c, eta, w->f, w->V, w->G, w->dV, &l, w->grad, w->M);
        } else
            st = inner(&c, eta, &l);
        if (st)
            return st;
        if (hess_ok && method == POPK_METHOD_FOCE)
            *hess_ok = warm_hessian(&c, eta, hess_L, 0.0, NULL) == 0;
        return linearised(&c, eta, ofv, cov);
    }
    st = inner(&c, eta, &l);
    if (st)
        return st;
    if (method == POPK_METHOD_LAPLACE) {
        st = exact_hessian(&c, eta, w->H);
        if (st)
            return st;
        for (int k = 0; k < q * q; k++)
            w->M[k] = 0.5 * w->H[k];
        if (hess_ok) {
            memcpy(hess_L, w->M, (size_t)(q * q) * sizeof *hess_L);
            *hess_ok = popk_chol(q, hess_L) == 0;
        }
    }
    memcpy(w->L, w->M, (size_t)(q * q) * sizeof *w->L);
    if (popk_chol(q, w->L) != 0)
        return 2; /* Laplace: Hessian at the EBE not positive definite */
    double logdet_m = popk_chol_logdet(q, w->L);
    *ofv = l + logdet_m;
    popk_chol_inverse(q, w->L, cov, w->col);
    if (!isfinite(*ofv))
        return 1;
    if (method == POPK_METHOD_FOCEI && hess_ok) {
        *hess_ok = warm_hessian(&c, eta, hess_L, logdet_m, tay ? tay_dldm(tay_v) : NULL) == 0;
        if (tay) {
            tay->ok = 0;
            if (*hess_ok)
                taylor_keep(&c, l, hess_L, tay, tay_v);
        }
    }
    return 0;
}

/* Subject i's EBE predicted at the pass's x from the committed one (eta, in place): eta +
 * J (x - x_commit), with J the mean of its differences; left alone (returns 0) when the move
 * exceeds INNER_MAX_STEP prior SDs in some eta (far from where J was taken). */
static int predict_eta(const popk_estimator *est, int i, double *eta)
{
    int q = est->q, np = est->npar;
    double move[64];
    if (q > 64)
        return 0;
    for (int a = 0; a < q; a++) {
        const double *row = est->jac + ((size_t)i * q + a) * np;
        double d = 0.0;
        for (int k = 0; k < np; k++)
            if (est->jac_count[k] > 0)
                d += row[k] / est->jac_count[k] * (est->x_pass[k] - est->x_commit[k]);
        if (!(fabs(d) <= INNER_MAX_STEP * est->eta_sd[a]))
            return 0;
        move[a] = d;
    }
    for (int a = 0; a < q; a++)
        eta[a] += move[a];
    return 1;
}

popk_status popk_estimator_pass(popk_estimator *est, popk_method method, const double *theta,
                                const double *omega, const double *sigma, int commit,
                                double *ofv, popk_error *err)
{
    const popk_problem *prob = est->prob;
    est->last_fatal = 0;
    popk_status rc = set_omega(est, omega, err);
    if (rc != POPK_OK)
        return rc;
    int q = est->q, nsub = prob->nsub;
    memcpy(est->eta_new, est->eta, (size_t)nsub * q * sizeof *est->eta);
    /* outer finite differences of FOCE-I about a point whose models are kept */
    int taylor = !commit && (est->outer_differences || est->model_passes) &&
                 est->taylor_valid && method == POPK_METHOD_FOCEI && q > 0;
    int model = taylor && est->model_passes;
    int reuse = taylor &&
                !memcmp(theta, est->tay_theta, (size_t)prob->ntheta * sizeof *theta) &&
                !memcmp(sigma, est->tay_sigma, (size_t)prob->nsigma * sizeof *sigma);
    int keep = commit && est->want_hessians && method == POPK_METHOD_FOCEI && q > 0;
    /* where this pass lies from the committed EBEs' point in x: one coordinate k moved by h
     * (an outer difference: its models' steps give d eta / d x_k), or anywhere (a pass that
     * solves the inner problem: start from the first-order prediction) */
    int moved = -1, nmoved = 0, predict = 0;
    double h = 0.0;
    if (est->npar > 0 && q > 0 && est->x_commit_valid &&
        popk_param_map_pack(est->map, theta, omega, sigma, est->x_pass, NULL) == POPK_OK) {
        predict = 1;
        for (int k = 0; k < est->npar; k++) {
            double d = est->x_pass[k] - est->x_commit[k];
            if (fabs(d) <= 1e-12 * (1.0 + fabs(est->x_commit[k]))) {
                est->x_pass[k] = est->x_commit[k]; /* the round trip through theta */
                d = 0.0;
            }
            if (d != 0.0) {
                nmoved++;
                moved = k;
                h = d;
            }
            predict &= d == 0.0 || est->jac_count[k] > 0;
        }
        /* passes that solve the inner problem start from the prediction, and model passes
         * re-expand about it; the outer differences' models stay about the committed EBE */
        predict &= nmoved > 0 && (!taylor || model);
    }
    /* passes that move one coordinate teach J: the models' Newton steps (outer differences)
     * or the re-solved EBEs' moves; model passes keep it fixed (their values are then one
     * smooth function of x) */
    int learn = nmoved == 1 && !commit && !model;
    /* Any subject that fails fails the pass (the outer search sees an infinite OFV), so the
     * subjects after the first failure are skipped: a trial point far out (ACOP Bolus_1CPTMM:
     * SLSQP's third point had VM 95000, KM 0.16, V 0.5) failed every subject after 144
     * predictions each on a stiff, undefined ODE, 80 s of a 100 s fit. The subjects before
     * the failure still run, so the error reported, the first failing subject's in data
     * order, does not depend on the thread schedule. */
    int first_failed = nsub;
#pragma omp parallel for num_threads(est->nthreads) schedule(dynamic)
    for (int i = 0; i < nsub; i++) {
        int thread = omp_get_thread_num();
        workspace *w = &est->ws[thread];
        int failed_at;
#pragma omp atomic read
        failed_at = first_failed;
        if (i > failed_at) {
            est->status[i] = PASS_SKIPPED;
            continue;
        }
        /* passes that keep the stored EBEs (finite differences around them) start from
         * EBEs already vetted against 0 by the pass that stored them */
        indiv c = {est, i, thread, prob->nobs[i], prob->y[i], theta, sigma, 0, w, commit,
                   est->hess_ok[i] ? est->hess_L + (size_t)i * q * q : NULL};
        popk_error_clear(&w->err);
        int *hess_ok = commit ? &est->hess_ok_new[i] : NULL;
        if (hess_ok) {
            *hess_ok = est->hess_ok[i];
            memcpy(est->hess_L_new + (size_t)i * q * q, est->hess_L + (size_t)i * q * q,
                   (size_t)(q * q) * sizeof *est->hess_L);
        }
        int st = 1, learned = 0;
        double *e1 = est->eta_new + (size_t)i * q;
        int predicted = predict && !est->jac_bad[i] && predict_eta(est, i, e1);
        if (taylor && est->tay[i].ok && (!model || predicted)) {
            /* the model about the committed EBE (outer differences), or re-expanded about the
             * EBE's prediction (model passes) */
            st = taylor_ofv(&c, e1, est->hess_L + (size_t)i * q * q,
                            est->tay_vec + (size_t)i * est->tay_stride, reuse && !model,
                            &est->terms_new[i]);
            if (learn && st == 0) {
                for (int a = 0; a < q; a++)
                    est->jac[((size_t)i * q + a) * est->npar + moved] += w->step[a] / h;
                learned = 1;
            }
        }
        if (st > 0) /* no model, or the model does not reach: solve the inner problem */
            st = individual(&c, method, est->eta_new + (size_t)i * q, &est->terms_new[i],
                            est->eta_cov_new + (size_t)i * q * q,
                            hess_ok && est->want_hessians ? est->hess_L_new + (size_t)i * q * q
                                                          : NULL,
                            hess_ok && est->want_hessians ? hess_ok : NULL,
                            keep ? &est->tay_new[i] : NULL,
                            keep ? est->tay_vec_new + (size_t)i * est->tay_stride : NULL);
        est->status[i] = st;
        if (st != 0) {
#pragma omp critical(popk_first_failed)
            if (i < first_failed)
                first_failed = i;
        }
        if (learn && st == 0 && !learned) {
            const double *e1 = est->eta_new + (size_t)i * q, *e0 = est->eta + (size_t)i * q;
            for (int a = 0; a < q; a++)
                est->jac[((size_t)i * q + a) * est->npar + moved] += (e1[a] - e0[a]) / h;
        } else if (learn && st != 0)
            est->jac_bad[i] = 1;
        if (est->status[i] != 0)
            est->sub_err[i] = w->err;
    }
    double sum = 0.0;
    est->last_fatal = 0;
    if (first_failed < nsub && learn)
        popk_estimator_forget_direction(est, moved); /* summed without its count */
    for (int i = 0; i < nsub; i++) {
        if (est->status[i] < 0) {
            est->last_fatal = 1;
            if (err) {
                *err = est->sub_err[i];
                if (err->code == POPK_OK)
                    err->code = POPK_ERR_NUMERIC;
            }
            return err ? err->code : POPK_ERR_NUMERIC;
        }
        char who[64];
        if (est->prob->subject_id)
            snprintf(who, sizeof who, "subject ID %g", est->prob->subject_id[i]);
        else
            snprintf(who, sizeof who, "subject %d (in data order)", i + 1);
        if (est->status[i] == 2)
            return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                                  "%s: Hessian of the joint term is not positive "
                                  "definite at the EBE", who);
        if (est->status[i] > 0) {
            /* Keep the prediction engine's last complaint (it names the data record), so
             * the user learns why, not only who. */
            const popk_error *why = &est->sub_err[i];
            if (why->message[0])
                return popk_error_set(err, POPK_ERR_NUMERIC, why->file[0] ? why->file : NULL,
                                      why->line, why->column,
                                      "%s: the inner problem (EBE) failed: %s", who,
                                      why->message);
            return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                                  "%s: the inner problem (EBE) failed: no finite prediction "
                                  "or no descent", who);
        }
        sum += est->terms_new[i];
    }
    if (commit) {
        swap_ptr(&est->eta, &est->eta_new);
        swap_ptr(&est->terms, &est->terms_new);
        swap_ptr(&est->eta_cov, &est->eta_cov_new);
        swap_ptr(&est->hess_L, &est->hess_L_new);
        int *t = est->hess_ok;
        est->hess_ok = est->hess_ok_new;
        est->hess_ok_new = t;
        est->taylor_valid = keep;
        if (est->npar > 0 && q > 0)
            est->x_commit_valid = popk_param_map_pack(est->map, theta, omega, sigma,
                                                      est->x_commit, NULL) == POPK_OK;
        if (est->want_hessians && q > 0) {
            /* a new gradient point (any method): J is learnt afresh about it */
            memset(est->jac, 0, (size_t)nsub * q * est->npar * sizeof *est->jac);
            memset(est->jac_count, 0, (size_t)est->npar * sizeof *est->jac_count);
            memset(est->jac_bad, 0, (size_t)nsub * sizeof *est->jac_bad);
        }
        if (keep) {
            taylor_rec *tr = est->tay;
            est->tay = est->tay_new;
            est->tay_new = tr;
            swap_ptr(&est->tay_vec, &est->tay_vec_new);
            memcpy(est->tay_theta, theta, (size_t)prob->ntheta * sizeof *theta);
            memcpy(est->tay_sigma, sigma, (size_t)prob->nsigma * sizeof *sigma);
        }
    }
    if (learn)
        est->jac_count[moved]++;
    *ofv = sum;
    return POPK_OK;
}

popk_status popk_estimator_ofv(popk_estimator *est, popk_method method, const double *theta,
                               const double *omega, const double *sigma, double *ofv,
                               popk_error *err)
{
    return popk_estimator_pass(est, method, theta, omega, sigma, 1, ofv, err);
}

popk_status popk_estimator_posthoc(popk_estimator *est, int laplace, const double *theta,
                                   const double *omega, const double *sigma, popk_error *err)
{
    double ofv;
    return popk_estimator_pass(est, laplace ? POPK_METHOD_LAPLACE : POPK_METHOD_FOCEI, theta,
                               omega, sigma, 1, &ofv, err);
}

static popk_status one_subject(popk_estimator *est, int i, const double *theta,
                               const double *omega, const double *sigma, indiv *c,
                               popk_error *err)
{
    if (i < 0 || i >= est->prob->nsub)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "no subject %d", i + 1);
    popk_status rc = set_omega(est, omega, err);
    if (rc != POPK_OK)
        return rc;
    *c = (indiv){est, i, 0, est->prob->nobs[i], est->prob->y[i], theta, sigma, 0, &est->ws[0], 1,
                 NULL};
    return POPK_OK;
}

static popk_status callback_status(const indiv *c, int st, popk_error *err)
{
    if (st < 0) {
        if (err)
            *err = c->w->err;
        return err && err->code != POPK_OK ? err->code : POPK_ERR_NUMERIC;
    }
    return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                          "subject %d: no finite prediction at this eta", c->i + 1);
}

popk_status popk_estimator_joint(popk_estimator *est, int i, const double *theta,
                                 const double *omega, const double *sigma, const double *eta,
                                 double *l, double *grad, popk_error *err)
{
    indiv c = {0};
    popk_status rc = one_subject(est, i, theta, omega, sigma, &c, err);
    if (rc != POPK_OK)
        return rc;
    workspace *w = c.w;
    int st = evaluate(&c, eta, w->f, w->V, w->G, w->dV, l, w->grad, w->M);
    if (st)
        return callback_status(&c, st, err);
    if (grad)
        memcpy(grad, w->grad, (size_t)est->q * sizeof *grad);
    return POPK_OK;
}

popk_status popk_estimator_joint_hessian(popk_estimator *est, int i, const double *theta,
                                         const double *omega, const double *sigma,
                                         const double *eta, double *H, popk_error *err)
{
    indiv c = {0};
    popk_status rc = one_subject(est, i, theta, omega, sigma, &c, err);
    if (rc != POPK_OK)
        return rc;
    int st = exact_hessian(&c, eta, H);
    return st ? callback_status(&c, st, err) : POPK_OK;
}
