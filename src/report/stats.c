/* report/stats.c — quantiles, the normal distribution, natural-breaks binning, LOESS. */
#include "report/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void popk_sort(double *x, size_t n)
{
    if (n > 1)
        qsort(x, n, sizeof *x, cmp_double);
}

double popk_quantile_sorted(const double *x, size_t n, double p)
{
    if (n == 0)
        return NAN;
    double h = (double)(n - 1) * p;
    size_t lo = (size_t)floor(h);
    if (lo >= n - 1)
        return x[n - 1];
    double frac = h - (double)lo;
    return x[lo] + frac * (x[lo + 1] - x[lo]);
}

double popk_norm_cdf(double z)
{
    return 0.5 * erfc(-z / sqrt(2.0));
}

/* Acklam's rational approximation (relative error 1.15e-9), then one Halley step on
 * Phi(z) - p, which brings it to full double precision. */
double popk_norm_quantile(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                               2.445134137142996e+00, 3.754408661907416e+00};
    if (isnan(p) || p < 0.0 || p > 1.0)
        return NAN;
    if (p == 0.0)
        return -INFINITY;
    if (p == 1.0)
        return INFINITY;
    double z;
    if (p < 0.02425) {
        double q = sqrt(-2.0 * log(p));
        z = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    } else if (p <= 1.0 - 0.02425) {
        double q = p - 0.5, r = q * q;
        z = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    } else {
        double q = sqrt(-2.0 * log1p(-p));
        z = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    /* In the upper tail work with the complement, where p carries the information. */
    double e = p > 0.5 ? -(0.5 * erfc(z / sqrt(2.0)) - (1.0 - p)) : popk_norm_cdf(z) - p;
    double u = e * sqrt(2.0 * M_PI) * exp(0.5 * z * z);
    return z - u / (1.0 + 0.5 * z * u);
}

int popk_bin_index(const double *edges, int nb, double v)
{
    int lo = 0, hi = nb - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (v >= edges[mid])
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Within-group sum of squares of the distinct values i..j (inclusive) from prefix sums. */
static double group_ss(const double *sw, const double *swx, const double *swxx, int i, int j)
{
    double w = sw[j + 1] - sw[i], s = swx[j + 1] - swx[i], ss = swxx[j + 1] - swxx[i];
    double v = ss - s * s / w;
    return v > 0.0 ? v : 0.0;
}

int popk_natural_breaks(const double *x, size_t n, int nbins, int max_auto, double *edges)
{
    if (n == 0)
        return 0;
    double *v = malloc(sizeof(double) * n);
    if (!v)
        return -1;
    memcpy(v, x, sizeof(double) * n);
    popk_sort(v, n);
    /* Distinct values with their counts (stored in place). */
    double *w = malloc(sizeof(double) * n);
    if (!w) {
        free(v);
        return -1;
    }
    int u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && v[i] == v[u - 1]) {
            w[u - 1] += 1.0;
        } else {
            v[u] = v[i];
            w[u++] = 1.0;
        }
    }
    int kmax = nbins > 0 ? nbins : max_auto;
    if (kmax < 1)
        kmax = 1;
    /* Sampling times cluster on a relative scale (0.25, 0.5, 1, 2 h ... 24 h): work on
     * log(x + delta), delta half the smallest positive value (after a shift when x < 0). */
    double shift = v[0] < 0 ? -v[0] : 0.0, delta = INFINITY;
    for (int i = 0; i < u; i++)
        if (v[i] + shift > 0)
            delta = fmin(delta, 0.5 * (v[i] + shift));
    if (!isfinite(delta))
        delta = 1.0;
    double *y = malloc(sizeof(double) * (size_t)u);
    if (!y) {
        free(v), free(w);
        return -1;
    }
    for (int i = 0; i < u; i++)
        y[i] = log(v[i] + shift + delta);
    int nb;
    if (nbins <= 0) {
        /* Clusters: neighbours less than 25% apart on that scale belong together. */
        int nclus = 1;
        for (int i = 1; i < u; i++)
            nclus += y[i] - y[i - 1] > log(1.25);
        if (nclus <= kmax) {
            edges[0] = v[0];
            int k = 1;
            for (int i = 1; i < u; i++)
                if (y[i] - y[i - 1] > log(1.25))
                    edges[k++] = 0.5 * (v[i - 1] + v[i]);
            edges[nclus] = v[u - 1];
            free(v), free(w), free(y);
            return nclus;
        }
    }
    if (u <= kmax) {
        nb = u;
        edges[0] = v[0];
        for (int k = 1; k < u; k++)
            edges[k] = 0.5 * (v[k - 1] + v[k]);
        edges[u] = v[u - 1];
        free(v), free(w), free(y);
        return nb;
    }
    size_t cells = (size_t)(kmax + 1) * (size_t)u;
    double *sw = malloc(sizeof(double) * (size_t)(u + 1) * 3);
    double *D = malloc(sizeof(double) * cells);
    int *back = malloc(sizeof(int) * cells);
    if (!sw || !D || !back) {
        free(v), free(w), free(y), free(sw), free(D), free(back);
        return -1;
    }
    double *swx = sw + u + 1, *swxx = swx + u + 1;
    /* Centre the values so the prefix sums of squares do not lose precision. */
    double centre = y[u / 2];
    sw[0] = swx[0] = swxx[0] = 0.0;
    for (int i = 0; i < u; i++) {
        double c = y[i] - centre;
        sw[i + 1] = sw[i] + w[i];
        swx[i + 1] = swx[i] + w[i] * c;
        swxx[i + 1] = swxx[i] + w[i] * c * c;
    }
    /* D[k*u + j]: least within-bin SS of the first j+1 distinct values in k bins. */
    for (int j = 0; j < u; j++) {
        D[u + j] = group_ss(sw, swx, swxx, 0, j);
        back[u + j] = 0;
    }
    for (int k = 2; k <= kmax; k++)
        for (int j = k - 1; j < u; j++) {
            double best = INFINITY;
            int arg = k - 1;
            for (int i = k - 1; i <= j; i++) {
                double c = D[(k - 1) * u + i - 1] + group_ss(sw, swx, swxx, i, j);
                if (c < best) {
                    best = c;
                    arg = i;
                }
            }
            D[k * u + j] = best;
            back[k * u + j] = arg;
        }
    int k_best = kmax;
    nb = k_best;
    int j = u - 1;
    edges[nb] = v[u - 1];
    for (int k = nb; k >= 2; k--) {
        int i = back[k * u + j];
        edges[k - 1] = 0.5 * (v[i - 1] + v[i]);
        j = i - 1;
    }
    edges[0] = v[0];
    free(v), free(w), free(y), free(sw), free(D), free(back);
    return nb;
}

int popk_loess(const double *x, const double *y, size_t n, double span, int ngrid, double *gx,
               double *gy)
{
    size_t m = 0;
    double *px = malloc(sizeof(double) * (n ? n : 1)), *py = malloc(sizeof(double) * (n ? n : 1));
    double *dist = malloc(sizeof(double) * (n ? n : 1));
    if (!px || !py || !dist) {
        free(px), free(py), free(dist);
        return 0;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i])) {
            px[m] = x[i];
            py[m++] = y[i];
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
    if (m < 3 || ngrid < 2 || !(hi > lo)) {
        free(px), free(py), free(dist);
        return 0;
    }
    size_t q = (size_t)ceil(span * (double)m);
    q = q < 3 ? 3 : q > m ? m : q;
    for (int g = 0; g < ngrid; g++) {
        double x0 = lo + (hi - lo) * g / (ngrid - 1);
        for (size_t i = 0; i < m; i++)
            dist[i] = fabs(px[i] - x0);
        popk_sort(dist, m);
        double h = dist[q - 1] * (q == m ? 1.0 + 1e-9 : 1.0);
        if (h <= 0.0)
            h = 1e-12 * (hi - lo);
        double sw = 0, swx = 0, swy = 0, swxx = 0, swxy = 0;
        for (size_t i = 0; i < m; i++) {
            double r = fabs(px[i] - x0) / h;
            if (r >= 1.0)
                continue;
            double t = 1.0 - r * r * r, wt = t * t * t, dx = px[i] - x0;
            sw += wt;
            swx += wt * dx;
            swy += wt * py[i];
            swxx += wt * dx * dx;
            swxy += wt * dx * py[i];
        }
        double det = sw * swxx - swx * swx;
        gx[g] = x0;
        /* Local linear fit evaluated at x0 (intercept); a degenerate neighbourhood falls
         * back to the weighted mean. */
        gy[g] = det > 1e-12 * sw * swxx ? (swxx * swy - swx * swxy) / det
                                        : (sw > 0 ? swy / sw : NAN);
    }
    free(px), free(py), free(dist);
    return ngrid;
}
