/* pred/ode.h — a thin wrapper over SUNDIALS CVODES for stiff compartment ODEs with forward
 * sensitivities: BDF, Newton, dense linear solver, user Jacobian; one solver per thread.
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
 * partial d f_i / d q_k for k < ns. */
typedef int (*popk_ode_rhs)(double t, const double *y, double *ydot, double *jac, double *dfdq,
                            void *user);

typedef struct popk_ode popk_ode;

/* Create a solver for n states and ns sensitivity directions (ns may be 0). */
popk_ode *popk_ode_new(int n, int ns, popk_ode_rhs rhs, void *user, popk_error *err);
void popk_ode_free(popk_ode *o);

/* Tolerances: relative, absolute (states and sensitivities), and maximum steps per call. */
void popk_ode_set_tolerances(popk_ode *o, double rtol, double atol, long max_steps);

/* (Re)start the integration at t0 with states y0[n] and sensitivities s0[ns*n] (NULL: zero).
 * Call after every discontinuity (dose, infusion start or stop). */
popk_status popk_ode_reset(popk_ode *o, double t0, const double *y0, const double *s0,
                           popk_error *err);

/* Integrate to tout (>= current time, never past tout), write y[n] and s[ns*n] (s may be
 * NULL). On failure sets err with the time and SUNDIALS' reason (too much work, error test
 * failures, convergence failures, a callback failure, NaN in the right-hand side). */
popk_status popk_ode_advance(popk_ode *o, double tout, double *y, double *s, popk_error *err);

#endif
