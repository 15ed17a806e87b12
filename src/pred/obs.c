/* pred/obs.c — residual error models (additive, proportional, combined, power, log). */
#include "pred/obs.h"

#include <math.h>

static double sig(const double *sigma, int k)
{
    return k >= 0 ? sigma[k] : 0.0;
}

int popk_obs_eval(const popk_output *o, const double *sigma, const double *fd, int nd,
                  double *f, double *V, double *G, double *dV)
{
    double fv = fd[0];
    const double *g = fd + 1;
    double a = sig(sigma, o->sig_a), b = sig(sigma, o->sig_b), c = sig(sigma, o->sig_c);
    double var, dvdf; /* V and dV/df */
    switch (o->err) {
    case POPK_ERRM_ADD:
        var = a * a;
        dvdf = 0.0;
        break;
    case POPK_ERRM_PROP:
        var = b * b * fv * fv;
        dvdf = 2.0 * b * b * fv;
        break;
    case POPK_ERRM_COMB_SD: {
        double sd = a + b * fv;
        var = sd * sd;
        dvdf = 2.0 * sd * b;
        break;
    }
    case POPK_ERRM_COMB_VAR:
        var = a * a + b * b * fv * fv;
        dvdf = 2.0 * b * b * fv;
        break;
    case POPK_ERRM_POW: {
        double af = fabs(fv);
        var = b * b * pow(af, 2.0 * c);
        dvdf = af > 0.0 ? 2.0 * c * var / fv : 0.0;
        break;
    }
    case POPK_ERRM_LOG:
        if (!(fv > 0.0))
            return 1;
        *f = log(fv);
        *V = a * a;
        for (int k = 0; k < nd; k++) {
            if (G)
                G[k] = g[k] / fv;
            if (dV)
                dV[k] = 0.0;
        }
        return *V > 0.0 ? 0 : 1;
    default:
        return 1;
    }
    *f = fv;
    *V = var;
    for (int k = 0; k < nd; k++) {
        if (G)
            G[k] = g[k];
        if (dV)
            dV[k] = dvdf * g[k];
    }
    return var > 0.0 && isfinite(var) ? 0 : 1;
}

double popk_obs_transform(const popk_output *o, double dv)
{
    if (o->err == POPK_ERRM_LOG)
        return dv > 0.0 ? log(dv) : NAN;
    return dv;
}
