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
} popk_problem;

#endif
