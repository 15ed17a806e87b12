/* pred/obs.h — residual error models: the variance of an observation given its prediction,
 * and the partials the estimator needs (MATH.md: V_ij and dV/deta). */
#ifndef POPK_PRED_OBS_H
#define POPK_PRED_OBS_H

#include "model/model.h"

/* From the prediction fd (strided dual: value then nd partials) of output o and the
 * residual parameters sigma (SD scale), compute the prediction on the scale the data are
 * compared on (*f; log f for log-transformed error), its partials G[nd], the residual
 * variance *V and its partials dV[nd] (G and dV may be NULL). Returns 0, or 1 when the
 * prediction is not usable (non-positive with log-transformed error) or V is not > 0. */
int popk_obs_eval(const popk_output *o, const double *sigma, const double *fd, int nd,
                  double *f, double *V, double *G, double *dV);

/* The observed value on the comparison scale (log for log-transformed error). NaN when the
 * value cannot be used (non-positive with log-transformed error). */
double popk_obs_transform(const popk_output *o, double dv);

#endif
