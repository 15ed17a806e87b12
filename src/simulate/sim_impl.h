/* simulate/sim_impl.h — module-private helpers shared by the simulate sources. */
#ifndef POPK_SIM_IMPL_H
#define POPK_SIM_IMPL_H

#include "simulate/sim.h"
#include "util/rng.h"

/* Subject s's covariates (model codes) drawn from its stream r. */
void popk_sim_draw_covariates(const popk_population *pop, const popk_model *m, popk_rng *r,
                              long s, double *cov);
/* 1 when value v meets target t. */
int popk_target_pass(const popk_target *t, double v);

#endif
