/* estimate/estimate_impl.h — estimator internals shared by the objective, outer and
 * covariance files. */
#ifndef POPK_ESTIMATE_IMPL_H
#define POPK_ESTIMATE_IMPL_H

#include "estimate/estimate.h"

/* One population pass. commit != 0: as popk_estimator_ofv (stored EBEs replaced). commit ==
 * 0: EBEs start from the stored ones, which are kept; the OFV_i terms go to
 * popk_estimator_trial_terms. */
popk_status popk_estimator_pass(popk_estimator *est, popk_method method, const double *theta,
                                const double *omega, const double *sigma, int commit,
                                double *ofv, popk_error *err);
/* how != 0: commit passes also keep each subject's Hessian of l at its EBE (neta
 * predictions), which the inner problems of later passes (above all the finite differences
 * about the committed point) use for their first Newton steps; how == 2: from central
 * differences (2 neta predictions, for the covariance step's models). */
void popk_estimator_want_hessians(popk_estimator *est, int how);
/* on != 0: non-commit passes are the outer search's finite differences, whose inner
 * problems stop at a looser Newton decrement (INNER_TRIAL_DECREMENT_TOL in estimator.c). */
void popk_estimator_outer_differences(popk_estimator *est, int on);
/* FOCE-I: the outer finite-difference passes that follow a commit pass with want_hessians
 * take each subject's term from its quadratic model about the committed EBE (one prediction
 * per subject, none when only Omega changed) instead of solving the inner problem. Returns 1
 * and sets *base to the models' sum at the committed point (the base of forward differences,
 * consistent with them to O(h^2)) when they are in use, else 0. */
int popk_estimator_taylor_base(const popk_estimator *est, double *base);
/* on != 0: FOCE-I non-commit passes after a commit pass with want_hessians take each
 * subject's term from its quadratic model re-expanded about the EBE's prediction eta + J (x -
 * x_commit) at the pass's parameters (one prediction per subject; O(|x - x_commit|^3) from
 * the re-solved term), with J as learnt so far and kept fixed; a subject without a
 * prediction solves its inner problem. For second differences about the committed point. */
void popk_estimator_model_passes(popk_estimator *est, int on);
/* Forget what the EBEs' move with outer coordinate k (J's column) was learnt to be. */
void popk_estimator_forget_direction(popk_estimator *est, int k);
const double *popk_estimator_trial_terms(const popk_estimator *est);
/* Each subject's term at the committed point as the outer differences see it (its quadratic
 * model's value when the models are in use, else the committed term); nsub values. */
void popk_estimator_base_terms(const popk_estimator *est, double *out);
/* popk_estimator_set_eta with EBEs committed at the outer vector x (popk_param_map): the
 * passes that follow may start from the EBEs' first-order prediction about x. */
void popk_estimator_restore(popk_estimator *est, const double *eta, const double *x);
/* Non-zero once some subject's inner objective has shown noise above the expected decrease
 * of a Newton step near its mode (an ODE solver's tolerance). */
int popk_estimator_noisy(const popk_estimator *est);
/* Subject predictions (calls of the problem's pred) so far, all threads. */
long popk_estimator_predictions(const popk_estimator *est);
const popk_problem *popk_estimator_problem(const popk_estimator *est);
/* Non-zero if the last pass failed through a callback's fatal error (not a soft failure of
 * an inner problem, which the outer search treats as an infinite OFV). */
int popk_estimator_last_fatal(const popk_estimator *est);
/* popk_estimate_covariance; solve_all != 0 re-solves every subject's inner problem at every
 * finite-difference point (the definition; the default takes FOCE-I's quadratic models), and
 * the steps are step_scale times the default. */
popk_status popk_estimate_covariance_ex(popk_estimator *est, popk_method method,
                                        popk_covstep_kind kind, int solve_all,
                                        double step_scale, popk_estimate_result *res,
                                        popk_error *err);

#endif
