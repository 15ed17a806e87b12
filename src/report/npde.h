/* report/npde.h — prediction discrepancies by simulation: PD/NPD (Mentré & Escolano 2006)
 * and their decorrelated forms PDE/NPDE (Brendel et al. 2006; Comets et al. 2008). */
#ifndef POPK_REPORT_NPDE_H
#define POPK_REPORT_NPDE_H

#include "data/data.h"
#include "model/model.h"
#include "popk.h"
#include "simulate/simulate.h"

/* One subject: n observations y, K simulated replicates ysim[k*n + j] of them (from the
 * model, at the same design). With E and V the mean and covariance of the replicates and
 * L the lower Cholesky factor of V:
 *   pd_j   = #{k : ysim_kj < y_j} / K,                          npd = Phi^-1(pd);
 *   pde_j  = #{k : (L^-1 (ysim_k - E))_j < (L^-1 (y - E))_j} / K,  npde = Phi^-1(pde);
 * 0 and 1 become 1/(2K) and 1 - 1/(2K) (the npde package's convention with ties). An
 * observation whose simulated variance is 0 given the earlier ones (a degenerate direction)
 * gets NaN pde/npde; pd/npd are still defined. Any output pointer may be NULL.
 * Returns 0, or -1 when out of memory or K < 2. */
int popk_npde_subject(int n, const double *y, int K, const double *ysim, double *pd,
                      double *npd, double *pde, double *npde);

/* NPDE for every observation of d (records with EVID 0, MDV 0, a finite DV and an output)
 * from simulated replicates of d's design (popk_sim_design with residual error). Outputs
 * are per record (nrec values each, NaN on other records); any may be NULL. */
popk_status popk_npde_dataset(const popk_model *m, const popk_data *d, const popk_binding *b,
                              const popk_sim_replicates *sims, double *pd, double *npd,
                              double *pde, double *npde, popk_error *err);

#endif
