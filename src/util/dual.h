/* util/dual.h — forward-mode dual numbers with a run-time number of directions.
 *
 * Layout used across module boundaries: a "strided dual" is 1 + nd consecutive doubles,
 * value first, then the nd partial derivatives; arrays of them have stride 1 + nd.
 * Inside a module, popk_dual (fixed capacity, nd used at run time) is convenient for
 * closed-form algebra; POPK_DUAL_MAX bounds the number of directions everywhere.
 */
#ifndef POPK_UTIL_DUAL_H
#define POPK_UTIL_DUAL_H

#include <math.h>
#include <string.h>

#define POPK_DUAL_MAX 16

typedef struct {
    double v;
    double d[POPK_DUAL_MAX];
} popk_dual;

static inline popk_dual pd_const(double v, int nd)
{
    (void)nd;
    popk_dual r = {0};  /* whole struct: copies of it never read uninitialised memory */
    r.v = v;
    return r;
}

static inline popk_dual pd_load(const double *strided, int nd)
{
    popk_dual r;
    r.v = strided[0];
    memcpy(r.d, strided + 1, sizeof(double) * (size_t)nd);
    return r;
}

static inline void pd_store(double *strided, const popk_dual *a, int nd)
{
    strided[0] = a->v;
    memcpy(strided + 1, a->d, sizeof(double) * (size_t)nd);
}

static inline popk_dual pd_add(popk_dual a, popk_dual b, int nd)
{
    a.v += b.v;
    for (int i = 0; i < nd; i++)
        a.d[i] += b.d[i];
    return a;
}

static inline popk_dual pd_sub(popk_dual a, popk_dual b, int nd)
{
    a.v -= b.v;
    for (int i = 0; i < nd; i++)
        a.d[i] -= b.d[i];
    return a;
}

static inline popk_dual pd_mul(popk_dual a, popk_dual b, int nd)
{
    popk_dual r;
    r.v = a.v * b.v;
    for (int i = 0; i < nd; i++)
        r.d[i] = a.d[i] * b.v + a.v * b.d[i];
    return r;
}

static inline popk_dual pd_div(popk_dual a, popk_dual b, int nd)
{
    popk_dual r;
    r.v = a.v / b.v;
    for (int i = 0; i < nd; i++)
        r.d[i] = (a.d[i] - r.v * b.d[i]) / b.v;
    return r;
}

static inline popk_dual pd_scale(popk_dual a, double s, int nd)
{
    a.v *= s;
    for (int i = 0; i < nd; i++)
        a.d[i] *= s;
    return a;
}

static inline popk_dual pd_neg(popk_dual a, int nd)
{
    return pd_scale(a, -1.0, nd);
}

static inline popk_dual pd_exp(popk_dual a, int nd)
{
    popk_dual r;
    r.v = exp(a.v);
    for (int i = 0; i < nd; i++)
        r.d[i] = r.v * a.d[i];
    return r;
}

static inline popk_dual pd_log(popk_dual a, int nd)
{
    popk_dual r;
    r.v = log(a.v);
    for (int i = 0; i < nd; i++)
        r.d[i] = a.d[i] / a.v;
    return r;
}

static inline popk_dual pd_sqrt(popk_dual a, int nd)
{
    popk_dual r;
    r.v = sqrt(a.v);
    for (int i = 0; i < nd; i++)
        r.d[i] = a.d[i] / (2.0 * r.v);
    return r;
}

#endif
