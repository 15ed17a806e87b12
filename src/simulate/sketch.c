/* simulate/sketch.c — the percentile sketch of large simulations: a fixed-bin histogram,
 * log-scale in |x| (relative bin width <= 2^-10) with a linear band around zero; bins are
 * integer counts, so per-thread histograms add up to the same result in any order. */
#include <math.h>
#include <stdlib.h>

#include "simulate/sim_impl.h"

void popk_sketch_init(popk_sketch *s, double typical_peak)
{
    double peak = fabs(typical_peak);
    if (!(peak > 0) || !isfinite(peak))
        peak = 1;
    int e;
    frexp(peak, &e); /* peak in [2^(e-1), 2^e) */
    s->xmin = ldexp(1.0, e - 1 - 20);
    memcpy(&s->abits_min, &s->xmin, sizeof s->abits_min);
    s->kmin = s->abits_min >> (52 - POPK_SK_MBITS);
    s->inv_w = (double)(1u << POPK_SK_MBITS) / s->xmin;
}

/* Lower and upper end of bin i. */
static void bin_range(const popk_sketch *s, uint32_t i, double *lo, double *hi)
{
    if (i < POPK_SK_NLOG || i >= POPK_SK_NLOG + POPK_SK_NLIN) {
        uint64_t k = i < POPK_SK_NLOG ? POPK_SK_NLOG - 1 - i : i - POPK_SK_NLOG - POPK_SK_NLIN;
        uint64_t a = (s->kmin + k) << (52 - POPK_SK_MBITS), b = (s->kmin + k + 1) << (52 - POPK_SK_MBITS);
        double x, y;
        memcpy(&x, &a, sizeof x);
        memcpy(&y, &b, sizeof y);
        if (i < POPK_SK_NLOG) {
            *lo = -y;
            *hi = -x;
        } else {
            *lo = x;
            *hi = y;
        }
        return;
    }
    double w = 1.0 / s->inv_w;
    *lo = -s->xmin + (double)(i - POPK_SK_NLOG) * w;
    *hi = *lo + w;
}

void popk_sketch_quantiles(const popk_sketch *s, const uint32_t *h, long n, const double *p,
                           int np, double *q, int stride)
{
    /* visit the quantiles in increasing order in one pass over the bins */
    int ord[64];
    int m = np < 64 ? np : 64;
    for (int j = 0; j < m; j++)
        ord[j] = j;
    for (int a = 1; a < m; a++)
        for (int b = a; b > 0 && p[ord[b - 1]] > p[ord[b]]; b--) {
            int t = ord[b];
            ord[b] = ord[b - 1];
            ord[b - 1] = t;
        }
    for (int j = 0; j < np; j++)
        q[(size_t)j * (size_t)stride] = NAN;
    if (n <= 0)
        return;
    int next = 0;
    double cum = 0;
    for (uint32_t i = 0; i < POPK_SK_NBINS && next < m; i++) {
        if (!h[i])
            continue;
        double c = h[i];
        while (next < m) {
            double rank = p[ord[next]] * (double)(n - 1); /* type 7 position */
            if (!(cum + c > rank))
                break;
            /* the rank-th value lies in bin i: spread its values evenly */
            double lo, hi;
            bin_range(s, i, &lo, &hi);
            double frac = fmin((rank - cum + 0.5) / c, 1.0);
            q[(size_t)ord[next] * (size_t)stride] = lo + frac * (hi - lo);
            next++;
        }
        cum += c;
    }
}
