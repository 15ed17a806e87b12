/* fit/fit.h — a population model and dataset as an estimation problem (the bridge between
 * pred/ and estimate/), and the diagnostics that need both: PRED, IPRED, residuals. */
#ifndef POPK_FIT_H
#define POPK_FIT_H

#include "data/data.h"
#include "estimate/estimate.h"
#include "model/model.h"

typedef struct popk_fit_problem popk_fit_problem;

/* Build the problem: observations (EVID 0, MDV 0, DV present) per subject on the scale of
 * their error model, parameters, bounds and the prediction callback with one prediction
 * workspace per thread (nthreads <= 0: OpenMP's maximum). */
popk_fit_problem *popk_fit_problem_new(const popk_model *m, const popk_data *d,
                                       const popk_binding *b, int nthreads, popk_error *err);
void popk_fit_problem_free(popk_fit_problem *fp);
const popk_problem *popk_fit_problem_get(const popk_fit_problem *fp);
/* Record index (in d) of observation j of subject i. */
size_t popk_fit_obs_record(const popk_fit_problem *fp, int i, int j);
/* Total number of observations. */
int popk_fit_nobs(const popk_fit_problem *fp);

/* Residual diagnostics for observation j of subject i (NONMEM definitions; MATH.md):
 * PRED = f(eta = 0), IPRED = f(eta_hat), RES = y - PRED, WRES (FO: C = G0 Omega G0' + V0,
 * Cholesky-whitened y - PRED), CWRES (Hooker et al. 2007: y - f(eta_hat) + G eta_hat with
 * C = G Omega G' + V(eta_hat)), IWRES = (y - IPRED) / sqrt(V(eta_hat)). */
typedef struct {
    double dv, pred, ipred, res, wres, cwres, iwres, ires;
} popk_fit_resid;

/* Fill res[j] for subject i's observations. */
popk_status popk_fit_residuals(popk_fit_problem *fp, int i, const double *theta,
                               const double *omega, const double *sigma, const double *eta,
                               popk_fit_resid *res, popk_error *err);

#endif
