/* tests/unit/pred/ode_models.h — a compartment model as a popk_ode_rhs callback, and its closed
 * form (shared by the ode suite and its benchmark). */
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

static inline void two_cmt_rates(double k10, double k12, double k21, double *alpha, double *beta)
{
    double s = k10 + k12 + k21;
    double disc = sqrt(s * s - 4.0 * k10 * k21);
    *alpha = 0.5 * (s + disc);
    *beta = 0.5 * (s - disc);
}

/* Bolus D into the depot: partial fractions of ka D (s + k21) / ((s+ka)(s+alpha)(s+beta)). */
static inline void two_cmt_oral(const double p[4], double d, double t, double y[3])
{
    double ka = p[0], k10 = p[1], k12 = p[2], k21 = p[3];
    double al, be;
    two_cmt_rates(k10, k12, k21, &al, &be);
    double ea = exp(-al * t), eb = exp(-be * t), ek = exp(-ka * t);
    double ca = 1.0 / ((ka - al) * (be - al));
    double cb = 1.0 / ((ka - be) * (al - be));
    double ck = 1.0 / ((al - ka) * (be - ka));
    y[0] = d * ek;
    y[1] = ka * d * ((k21 - al) * ca * ea + (k21 - be) * cb * eb + (k21 - ka) * ck * ek);
    y[2] = ka * d * k12 * (ca * ea + cb * eb + ck * ek);
}

#endif
