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
 * PRED = f(eta = 0), IPRED = f(eta_hat), RES = y - PRED,
 * WRES = C0^-1/2 (y - PRED) with C0 = G0 Omega G0' + V0 (FO linearisation at eta = 0; with
 *   interaction, V0_j gains dV_j' Omega dV_j / (4 V_j), the variance of the eta*eps term, as
 *   NONMEM's WRES under INTERACTION),
 * CWRES (Hooker et al. 2007) = C^-1/2 (y - f(eta_hat) + G eta_hat) with
 *   C = G Omega G' + diag(V(eta_hat)),
 * IWRES = (y - IPRED) / sqrt(V(eta_hat)), IRES = y - IPRED.
 * C^-1/2 is the symmetric inverse square root (as Hooker et al.'s reference code and NONMEM),
 * not a Cholesky factor. */
typedef struct {
    double dv, pred, ipred, res, wres, cwres, iwres, ires;
} popk_fit_resid;

/* Fill res[j] for subject i's observations; WRES has the interaction term when method is
 * FOCE-I or Laplace. */
popk_status popk_fit_residuals_method(popk_fit_problem *fp, popk_method method, int i,
                                      const double *theta, const double *omega,
                                      const double *sigma, const double *eta,
                                      popk_fit_resid *res, popk_error *err);
/* The same without interaction (FO, FOCE). */
popk_status popk_fit_residuals(popk_fit_problem *fp, int i, const double *theta,
                               const double *omega, const double *sigma, const double *eta,
                               popk_fit_resid *res, popk_error *err);

/* Population OFV of method at the given full parameters, EBEs from 0 (e.g. the FOCE-I
 * objective at FO estimates, which nlmixr2 reports for its FO fits). */
popk_status popk_fit_ofv_at(const popk_fit_problem *fp, popk_method method,
                            const double *theta, const double *omega, const double *sigma,
                            double *ofv, popk_error *err);

#endif
