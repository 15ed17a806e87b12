/* report/stats.h — the small statistics the diagnostics need: sample quantiles, the normal
 * distribution function and its inverse, natural-breaks binning of times, a local smoother. */
#ifndef POPK_REPORT_STATS_H
#define POPK_REPORT_STATS_H

#include <stddef.h>

/* Quantile p (0..1) of n sorted values, R's type 7 (linear interpolation between order
 * statistics). NaN when n == 0. */
double popk_quantile_sorted(const double *x, size_t n, double p);
/* Sort x in place (ascending; NaNs must have been removed). */
void popk_sort(double *x, size_t n);

/* Standard normal distribution function and its inverse (full double precision; the
 * inverse of 0 and 1 is -inf and +inf, NaN outside [0, 1]). */
double popk_norm_cdf(double z);
double popk_norm_quantile(double p);

/* Time bins of n values x (any order). The values are compared on the scale
 * log(x + delta), delta half the smallest positive value (x shifted to start at 0 when
 * negative), because sampling times cluster on a relative scale. nbins == 0 (automatic):
 * neighbouring distinct values less than 25% apart on that scale form one cluster, and the
 * clusters are the bins when there are at most max_auto of them; otherwise, and when
 * nbins > 0 asks for a number, the bins are the natural breaks (Jenks/Fisher: the optimal
 * 1-D k-means over the distinct values, weighted by their counts, on that scale) into
 * max_auto or nbins bins (fewer when there are fewer distinct values). Writes the nb+1 bin
 * edges (edges[0] = min, edges[nb] = max; inner edges midway between the neighbouring
 * values) into edges (size max(nbins, max_auto) + 1) and returns nb, or -1 when out of
 * memory, 0 when n == 0. */
int popk_natural_breaks(const double *x, size_t n, int nbins, int max_auto, double *edges);
/* Index of the bin of value v for edges[0..nb] (values on an inner edge go up; values outside
 * go to the first or last bin). */
int popk_bin_index(const double *edges, int nb, double v);

/* Local linear regression smoother (LOESS degree 1, tricube weights, no robustness
 * iterations) of (x, y) evaluated at ngrid points spanning the range of x: span is the
 * fraction of points in each neighbourhood. Writes gx, gy; returns ngrid, or 0 when fewer
 * than 3 finite points or out of memory. */
int popk_loess(const double *x, const double *y, size_t n, double span, int ngrid, double *gx,
               double *gy);

#endif
