/* pred/ode.h — a thin wrapper over SUNDIALS CVODES for compartment ODEs with forward
 * sensitivities: BDF (stiff) or Adams, Newton, dense linear solver, user Jacobian; one
 * solver per thread.
 *
 * The system is dy/dt = f(t, y) with n states. With ns > 0 sensitivity directions, the
 * solver also integrates s_k = dy/dq_k (k < ns) for parameters q the caller defines
 * implicitly: the callback returns, for each direction, the explicit partial df/dq_k.
 * Callback contract (SUNDIALS/popk): return 0 ok, > 0 recoverable (the solver retries
 * with a smaller step), < 0 fatal. */
#ifndef POPK_PRED_ODE_H
#define POPK_PRED_ODE_H

#include "popk.h"

/* Right-hand side. ydot[n]. When jac is not NULL, also fill the dense Jacobian
 * jac[i*n + j] = d f_i / d y_j (row-major). When dfdq is not NULL, fill dfdq[k*n + i] =
 * partial d f_i / d q_k for k < ns. jac and dfdq arrive zeroed, so a callback may write only
 * the non-zero entries. Non-finite outputs are caught by the solver (see popk_ode_advance). */
typedef int (*popk_ode_rhs)(double t, const double *y, double *ydot, double *jac, double *dfdq,
                            void *user);

typedef struct popk_ode popk_ode;

/* Size limits checked by popk_ode_new (dense algebra: cost grows as n^3 per Jacobian). */
#define POPK_ODE_MAX_STATES 1000
#define POPK_ODE_MAX_DIRECTIONS 1000

/* Create a solver for n states and ns sensitivity directions (ns may be 0). All memory is
 * allocated here (the other method's at its first use, see popk_ode_set_method) and reused
 * by every reset, so resets at doses allocate nothing. Defaults: rtol 1e-8, atol 1e-10,
 * max_steps 50000, BDF. One solver per thread: a solver must not be used from two threads
 * at once; distinct solvers are independent (no global state). Returns
 * NULL (err set) on invalid sizes or allocation failure. */
popk_ode *popk_ode_new(int n, int ns, popk_ode_rhs rhs, void *user, popk_error *err);
/* Free everything the solver owns. NULL-safe. */
void popk_ode_free(popk_ode *o);

/* Tolerances: relative, absolute (states and sensitivities), and maximum steps per call to
 * popk_ode_advance. Takes effect immediately. Invalid values (rtol <= 0, atol < 0,
 * max_steps < 1, non-finite) are refused: the previous values stay and the next
 * popk_ode_reset fails with POPK_ERR_ARG naming them. */
void popk_ode_set_tolerances(popk_ode *o, double rtol, double atol, long max_steps);

/* (Re)start the integration at t0 with states y0[n] and sensitivities s0[ns*n] (NULL: zero).
 * Call after every discontinuity (dose, infusion start or stop). */
popk_status popk_ode_reset(popk_ode *o, double t0, const double *y0, const double *s0,
                           popk_error *err);

/* Integrate to tout (>= current time, never past tout), write y[n] and s[ns*n] (s may be
 * NULL; s[k*n + i] = d y_i / d q_k, the layout of s0 too). On failure sets err with the time
 * and SUNDIALS' reason (too much work, error test failures, convergence failures, a callback
 * failure, NaN in the right-hand side).
 * Details: the right-hand side is never evaluated past tout (CVODE stop time), so the model
 * may change discontinuously at tout. y may be NULL too. Successive advances continue the
 * same integration (no restart: reset only at discontinuities, a restart costs steps).
 * tout equal to the current time (within time round-off) returns the current state.
 * Outputs are checked finite. Non-finite values from the callback (state, Jacobian or
 * sensitivity right-hand side) are answered "recoverable" the first few times in one
 * advance (the solver retries with a smaller step), then "fatal". Error codes:
 * POPK_ERR_NUMERIC (non-finite values), POPK_ERR_SOLVER (too much work, error-test or
 * convergence failures, callback status), POPK_ERR_ARG (tout in the past, no reset). After
 * a failure the solver needs popk_ode_reset before the next advance. */
popk_status popk_ode_advance(popk_ode *o, double tout, double *y, double *s, popk_error *err);

/* As popk_ode_advance, for a caller who knows the right-hand side stays smooth up to
 * tsmooth (>= tout; the next dose or infusion change; INFINITY if none): the solver may
 * step beyond tout, up to tsmooth, and interpolate at tout. With dense outputs between
 * events this takes far fewer steps than stopping at every tout. tsmooth must not go back
 * before a previous call's tsmooth until the next reset (POPK_ERR_ARG). */
popk_status popk_ode_advance_smooth(popk_ode *o, double tout, double tsmooth, double *y,
                                   double *s, popk_error *err);

/* Integration methods (popk_ode_set_method). */
enum { POPK_CVODE_BDF = 0, POPK_CVODE_ADAMS = 1 };

/* Choose the linear multistep method from the next popk_ode_reset: POPK_CVODE_BDF (default;
 * for stiff systems) or POPK_CVODE_ADAMS (Adams-Moulton, variable order up to 12; on
 * non-stiff systems such as most compartment models about half the steps of BDF at the same
 * tolerances, but on stiff ones it may need orders of magnitude more steps and stop at
 * max_steps). Both use Newton iterations with the dense Jacobian. Any other value means
 * BDF. Each method's solver memory is allocated when the method is first used, then kept:
 * switching back and forth allocates nothing more. */
void popk_ode_set_method(popk_ode *o, int method);
/* The method set by popk_ode_set_method (POPK_CVODE_BDF for NULL). */
int popk_ode_get_method(const popk_ode *o);

/* Turn the sensitivity directions off (enabled = 0) or back on, from the next
 * popk_ode_reset: a solver created with ns > 0 can then also serve evaluations that need no
 * derivatives at the cost of states only. While off, s and s0 are ignored (s is not
 * written). Default: on. */
void popk_ode_set_sensitivities(popk_ode *o, int enabled);

/* Work counters, cumulative since popk_ode_new (for benchmarks and tuning). */
typedef struct {
    long resets;         /* popk_ode_reset calls that succeeded */
    long steps;          /* internal solver steps */
    long rhs_evals;      /* right-hand side evaluations (values only) */
    long jac_evals;      /* Jacobian evaluations */
    long sens_rhs_evals; /* sensitivity right-hand side evaluations (J and df/dq) */
} popk_ode_stats;

/* Fill stats (zeroed when o is NULL). */
void popk_ode_get_stats(const popk_ode *o, popk_ode_stats *stats);

#endif
