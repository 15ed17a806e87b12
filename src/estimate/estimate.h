/* estimate/estimate.h — population objective functions (FO, FOCE, FOCE-I, Laplace), the
 * inner EBE problem, the outer NLopt search and the covariance step (MATH.md).
 *
 * The estimator does not know about models or datasets: it sees a problem of nsub
 * individuals, each with nobs[i] observations y, and a callback that predicts them. The
 * prediction engine (pred/) provides the callback for real models; tests provide closed
 * forms. */
#ifndef POPK_ESTIMATE_H
#define POPK_ESTIMATE_H

#include "popk.h"

/* Predict individual i's observations at (theta, sigma, eta):
 *   f[j]  prediction,              V[j]  residual variance (> 0),
 *   G[j*neta + k]  = df_j/deta_k,  dV[j*neta + k] = dV_j/deta_k   (G, dV may be NULL: not wanted).
 * theta has ntheta entries and sigma nsigma (natural scale, the SD-scale residual parameters).
 * Return 0 ok, > 0 recoverable (e.g. a trial eta gives a non-finite prediction: the caller
 * shortens its step), < 0 fatal (the message goes in err). Called concurrently for distinct
 * i from several threads; thread is the OpenMP thread number, for per-thread workspaces. */
typedef int (*popk_indiv_fn)(int i, int thread, const double *theta, const double *sigma,
                             const double *eta, double *f, double *V, double *G, double *dV,
                             void *user, popk_error *err);

typedef enum { POPK_METHOD_FO, POPK_METHOD_FOCE, POPK_METHOD_FOCEI, POPK_METHOD_LAPLACE }
    popk_method;

typedef struct {
    int nsub;
    const int *nobs;            /* nsub */
    const double *const *y;     /* y[i][j] */
    int ntheta, neta, nsigma;
    /* initial values, bounds and fixed flags (lower/upper may be +-INFINITY) */
    const double *theta0, *theta_lo, *theta_hi;
    const int *theta_fixed;
    const double *omega0;       /* neta x neta, row-major */
    const int *omega_block;     /* block id of each eta: etas with the same id form a full
                                   block (contiguous ids need not be contiguous etas) */
    const int *omega_block_fixed; /* per block id */
    const double *sigma0;       /* natural (SD) scale, > 0 */
    const int *sigma_fixed;
    popk_indiv_fn pred;
    void *user;
    const double *subject_id;   /* nsub IDs for messages (NULL: subjects are numbered 1..nsub
                                   in data order) */
} popk_problem;

/* ---------------------------------------------------------------------------------------
 * Parameter vector (MATH.md "Outer problem").
 *
 * The estimated parameters have two vectors of the same length npar:
 *   natural p: estimated thetas (problem order), then for each non-fixed omega block (in
 *     block-id order) its lower triangle, row by row over the block's etas (eta order), then
 *     estimated sigmas (SD scale);
 *   unconstrained x: thetas with two bounds by logit((t - lo)/(hi - lo)), with one bound by
 *     log(t - lo) or log(hi - t), free ones as t/s with s = |theta0| (1 if theta0 == 0);
 *     each omega block by its Cholesky factor with log diagonal (same element order);
 *     sigmas by log.
 * Fixed thetas, fixed omega blocks and fixed sigmas keep their initial values. */
typedef struct popk_param_map popk_param_map;

typedef enum { POPK_PARAM_THETA, POPK_PARAM_OMEGA, POPK_PARAM_SIGMA } popk_param_kind;

/* Checks the problem (sizes, bounds containing theta0 strictly, omega symmetric, zero across
 * blocks and positive definite, sigma0 > 0) and builds the map. NULL on error (err set). */
popk_param_map *popk_param_map_create(const popk_problem *prob, popk_error *err);
void popk_param_map_free(popk_param_map *map);  /* NULL-safe */
int popk_param_map_npar(const popk_param_map *map);
/* Parameter k of p: kind, and (0-based) theta/sigma index in row, or omega element (row, col). */
void popk_param_map_info(const popk_param_map *map, int k, popk_param_kind *kind, int *row,
                         int *col);
/* NONMEM-style label of parameter k: "THETA(2)", "OMEGA(2,1)", "SIGMA(1)". Returns buf. */
char *popk_param_map_label(const popk_param_map *map, int k, char *buf, size_t size);

/* Full model parameters (theta[ntheta], omega[neta*neta] row-major, sigma[nsigma]) <-> x.
 * pack fails (POPK_ERR_ARG) if a theta is not strictly inside its bounds, a block is not
 * positive definite or a sigma is not > 0. */
popk_status popk_param_map_pack(const popk_param_map *map, const double *theta,
                                const double *omega, const double *sigma, double *x,
                                popk_error *err);
void popk_param_map_unpack(const popk_param_map *map, const double *x, double *theta,
                           double *omega, double *sigma);
/* Full model parameters <-> natural p (fixed entries from the problem's initial values). */
void popk_param_map_get_natural(const popk_param_map *map, const double *theta,
                                const double *omega, const double *sigma, double *p);
void popk_param_map_set_natural(const popk_param_map *map, const double *p, double *theta,
                                double *omega, double *sigma);
/* Jacobian dp/dx at x: J[k*npar + l] = dp_k/dx_l (for the delta method). */
void popk_param_map_jacobian(const popk_param_map *map, const double *x, double *J);

/* ---------------------------------------------------------------------------------------
 * Objective functions (MATH.md "Objective function value").
 *
 * An estimator holds the per-thread workspaces and the per-individual state (EBEs used as
 * warm starts). It is not itself thread-safe: one estimator per calling thread. */
typedef struct popk_estimator popk_estimator;

/* nthreads <= 0: OpenMP's default. The problem (and what it points to) must outlive the
 * estimator. NULL on error. */
popk_estimator *popk_estimator_create(const popk_problem *prob, int nthreads,
                                      popk_error *err);
void popk_estimator_free(popk_estimator *est);  /* NULL-safe */
const popk_param_map *popk_estimator_map(const popk_estimator *est);

/* Population OFV (sum of OFV_i in subject order, so independent of the thread count) at the
 * full model parameters. Each EBE starts from the stored one (0 initially) and the stored
 * EBEs, OFV_i terms and EBE posterior covariances are replaced on success. FO: the EBEs are
 * 0 (use popk_estimator_posthoc for tables). A subject whose inner problem fails, or a
 * callback error, gives POPK_ERR_NUMERIC / the callback's status with the subject named. */
popk_status popk_estimator_ofv(popk_estimator *est, popk_method method, const double *theta,
                               const double *omega, const double *sigma, double *ofv,
                               popk_error *err);
/* EBEs by the full joint term (argmin l_i, as FOCE-I) at the given parameters, stored as by
 * popk_estimator_ofv (OFV_i terms become FOCE-I's, or Laplace's when laplace != 0). */
popk_status popk_estimator_posthoc(popk_estimator *est, int laplace, const double *theta,
                                   const double *omega, const double *sigma, popk_error *err);
/* Results of the last successful call: ofv_terms[nsub]; eta[nsub*neta]; eta_cov
 * [nsub*neta*neta] = posterior covariance of each EBE: inverse of the FOCE-I matrix
 * (Laplace: of H_i/2; FO/FOCE: of their Gauss-Newton matrix at their EBE). */
const double *popk_estimator_ofv_terms(const popk_estimator *est);
const double *popk_estimator_eta(const popk_estimator *est);
const double *popk_estimator_eta_cov(const popk_estimator *est);
/* Set the stored EBEs (NULL: all 0), e.g. to restart. */
void popk_estimator_set_eta(popk_estimator *est, const double *eta);

/* Individual joint term l_i(eta) and its exact gradient (grad may be NULL). */
popk_status popk_estimator_joint(popk_estimator *est, int i, const double *theta,
                                 const double *omega, const double *sigma, const double *eta,
                                 double *l, double *grad, popk_error *err);
/* Exact Hessian of l_i at eta (neta*neta) by central differences of the exact gradient (the
 * matrix Laplace uses). */
popk_status popk_estimator_joint_hessian(popk_estimator *est, int i, const double *theta,
                                         const double *omega, const double *sigma,
                                         const double *eta, double *H, popk_error *err);

/* ---------------------------------------------------------------------------------------
 * Fit: outer optimisation, covariance step, per-subject outputs. */
/* POPK_OPT_AUTO (the default): SLSQP, or BHHH when the first pass finds the OFV noisy (an ODE
 * solver's tolerance; fit.c) */
typedef enum {
    POPK_OPT_LBFGS,
    POPK_OPT_SLSQP,
    POPK_OPT_BOBYQA,
    POPK_OPT_BHHH,
    POPK_OPT_AUTO
} popk_optimizer;
typedef enum { POPK_COV_NONE, POPK_COV_SANDWICH, POPK_COV_R, POPK_COV_S } popk_covstep_kind;

/* Called after each outer iteration (gradient algorithms: each evaluation with a gradient;
 * BOBYQA: each evaluation) with the OFV and the full natural-scale parameters. Return
 * non-zero to stop the fit (status POPK_ERR_NOCONV, estimates kept). */
typedef int (*popk_iter_fn)(int iteration, double ofv, const double *theta,
                            const double *omega, const double *sigma, void *user);

typedef struct {
    popk_method method;
    popk_optimizer optimizer;
    popk_covstep_kind covariance;
    int nthreads;        /* <= 0: OpenMP default */
    int maxeval;         /* outer OFV evaluations (gradient ones excluded); <= 0: 2000 */
    double ftol_rel;     /* relative OFV change; <= 0: 1e-10 */
    double xtol_rel;     /* relative change of x; <= 0: 1e-7 */
    int evaluate_only;   /* objective, EBEs and covariance at the initial values only */
    popk_iter_fn iter;
    void *iter_user;
} popk_estimate_options;

/* Names as on the command line ("fo", "foce", "focei", "laplace"; "lbfgs", "slsqp",
 * "bobyqa"; "sandwich", "r", "s", "none") and back; parse returns 0, or -1 if unknown. */
const char *popk_method_name(popk_method method);
int popk_method_parse(const char *name, popk_method *method);
const char *popk_optimizer_name(popk_optimizer optimizer);
int popk_optimizer_parse(const char *name, popk_optimizer *optimizer);
const char *popk_covstep_name(popk_covstep_kind kind);
int popk_covstep_parse(const char *name, popk_covstep_kind *kind);

/* Default options: FOCE-I, LD_SLSQP (chosen by benchmark, see fit.c), sandwich covariance. */
void popk_estimate_options_default(popk_estimate_options *opt);

typedef struct {
    popk_status status;       /* POPK_OK, or POPK_ERR_NOCONV (estimates are the best seen) */
    int nlopt_code;           /* NLopt's result */
    int iterations, evaluations; /* outer iterations; OFV passes including gradients */
    popk_optimizer optimizer; /* the one used (POPK_OPT_AUTO resolved) */
    int continued;            /* BHHH's stop failed its check and SLSQP continued (fit.c) */
    long predictions;         /* subject predictions (calls of pred) of the estimation */
    long cov_predictions;     /* ... of the covariance step */
    double cov_seconds;       /* wall time of the covariance step */
    double ofv;
    int nsub, ntheta, neta, nsigma, npar;
    double *theta, *omega, *sigma; /* final full parameters */
    double *p;                /* npar natural estimated parameters */
    double *ofv_terms;        /* nsub: OFV_i of the method (they sum to ofv) */
    double *eta, *eta_cov;    /* nsub*neta, nsub*neta*neta: EBEs and their posterior
                                 covariances (FO: the posthoc FOCE-I ones, as NONMEM's
                                 POSTHOC) */
    double *eta_shrinkage;    /* neta: 1 - SD(eta_hat_k)/sqrt(omega_kk), SD about the mean
                                 with n-1 (reproduces NONMEM's ETASHRINKSD on ACOP) */
    double eps_shrinkage;     /* 1 - SD(IWRES), IWRES = (y - f(eta_hat))/sqrt(V(eta_hat)) */
    /* covariance step */
    /* Covariances in p, with sigmas on the SD scale (NONMEM reports SIGMA variances).
     * cov: sandwich R^-1 S R^-1 (NONMEM's default), R-only 2 R^-1, S-only 4 S^-1. */
    popk_status cov_status;   /* POPK_OK, not attempted (POPK_ERR_ARG), or failed */
    char cov_message[256];
    double *cov;              /* npar*npar covariance of p (NULL unless cov_status == OK) */
    double *R, *S;            /* npar*npar: Hessian of OFV in p and sum of g_i g_i' */
    double *se, *corr;        /* npar, npar*npar */
    double *eigenvalues;      /* npar, of the correlation matrix, ascending */
    double condition;         /* largest / smallest eigenvalue */
} popk_estimate_result;

/* Fit (or evaluate) the problem. Returns NULL only on fatal errors (bad problem, callback
 * error at the initial values); non-convergence and covariance failure are recorded in the
 * result. */
popk_estimate_result *popk_estimate(const popk_problem *prob, const popk_estimate_options *opt,
                                    popk_error *err);
void popk_estimate_result_free(popk_estimate_result *res);  /* NULL-safe */

/* Covariance step at the full parameters (an estimator with that method's EBEs): fills the
 * covariance fields of res (which must have npar set and p holding the estimates). */
popk_status popk_estimate_covariance(popk_estimator *est, popk_method method,
                                     popk_covstep_kind kind, popk_estimate_result *res,
                                     popk_error *err);

#endif
