/* tests/unit/pred/ode_models.h — compartment models as popk_ode_rhs callbacks (tests, bench). */
#ifndef POPK_TEST_ODE_MODELS_H
#define POPK_TEST_ODE_MODELS_H

#include <math.h>

/* Two-compartment model with a first-order depot. States: depot, central, peripheral
 * amounts. Parameters p = {ka, k10, k12, k21}; sensitivity direction k (k < ns <= 4) is
 * parameter p[k]. */
typedef struct {
    double p[4];
    int ns;
} oral2_model;

static inline int oral2_rhs(double t, const double *y, double *ydot, double *jac, double *dfdq,
                            void *user)
{
    (void)t;
    const oral2_model *m = user;
    double ka = m->p[0], k10 = m->p[1], k12 = m->p[2], k21 = m->p[3];
    ydot[0] = -ka * y[0];
    ydot[1] = ka * y[0] - (k10 + k12) * y[1] + k21 * y[2];
    ydot[2] = k12 * y[1] - k21 * y[2];
    if (jac) {
        jac[0 * 3 + 0] = -ka;
        jac[1 * 3 + 0] = ka;
        jac[1 * 3 + 1] = -(k10 + k12);
        jac[1 * 3 + 2] = k21;
        jac[2 * 3 + 1] = k12;
        jac[2 * 3 + 2] = -k21;
    }
    if (dfdq) {
        double *d = dfdq;
        if (m->ns > 0) { /* ka */
            d[0] = -y[0];
            d[1] = y[0];
        }
        if (m->ns > 1) { /* k10 */
            d[3 + 1] = -y[1];
        }
        if (m->ns > 2) { /* k12 */
            d[6 + 1] = -y[1];
            d[6 + 2] = y[1];
        }
        if (m->ns > 3) { /* k21 */
            d[9 + 1] = y[2];
            d[9 + 2] = -y[2];
        }
    }
    return 0;
}

#endif
