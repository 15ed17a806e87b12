/* Tests for report/stats: quantiles against hand computations, the normal quantile against
 * published values and erfc, natural breaks on separated clusters, LOESS on a straight line. */
#include "common/popk_test.h"

#include <math.h>

#include "report/stats.h"

static void test_quantile(void)
{
    double x[] = {1, 2, 4, 8, 16};
    /* Type 7: h = (n-1)p; 0.1 -> h = 0.4 -> 1 + 0.4*(2-1). */
    CU_ASSERT_DOUBLE_EQUAL(popk_quantile_sorted(x, 5, 0.1), 1.4, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(popk_quantile_sorted(x, 5, 0.5), 4.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(popk_quantile_sorted(x, 5, 0.9), 8 + 0.6 * 8, 1e-13);
    CU_ASSERT_DOUBLE_EQUAL(popk_quantile_sorted(x, 5, 1.0), 16.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(popk_quantile_sorted(x, 1, 0.3), 1.0, 0);
    CU_ASSERT(isnan(popk_quantile_sorted(x, 0, 0.5)));
    double y[] = {3, -1, 2, 2, 0};
    popk_sort(y, 5);
    CU_ASSERT(y[0] == -1 && y[1] == 0 && y[2] == 2 && y[3] == 2 && y[4] == 3);
}

static void test_norm_quantile(void)
{
    /* Published values (Abramowitz & Stegun 26.2; Wichura 1988 AS241 test values). */
    CU_ASSERT_DOUBLE_EQUAL(popk_norm_quantile(0.975), 1.959963984540054, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(popk_norm_quantile(0.05), -1.644853626951472, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(popk_norm_quantile(0.5), 0.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(popk_norm_quantile(0.25), -0.6744897501960817, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(popk_norm_quantile(1e-10), -6.361340902404056, 1e-11);
    /* Round trip through erfc over the tails and the centre. */
    for (double p = 1e-12; p < 1; p = p < 0.01 ? p * 10 : p + 0.0625) {
        double z = popk_norm_quantile(p), back = 0.5 * erfc(-z / sqrt(2.0));
        CU_ASSERT(fabs(back - p) <= 1e-13 * p + 1e-16);
        /* Upper tail: 1 - q is exact in floating point for q = 1 - p. */
        double q = 1 - p, zu = popk_norm_quantile(q);
        CU_ASSERT(fabs(0.5 * erfc(zu / sqrt(2.0)) - (1 - q)) <= 1e-12 * (1 - q));
    }
    CU_ASSERT(isinf(popk_norm_quantile(0)) && popk_norm_quantile(0) < 0);
    CU_ASSERT(isinf(popk_norm_quantile(1)) && popk_norm_quantile(1) > 0);
    CU_ASSERT(isnan(popk_norm_quantile(1.5)));
    CU_ASSERT_DOUBLE_EQUAL(popk_norm_cdf(1.959963984540054), 0.975, 1e-15);
}

static void test_natural_breaks(void)
{
    /* Three clusters of sampling times around 1, 4 and 24 h (jittered): the automatic
     * choice among up to 10 bins finds exactly three, with edges in the gaps. */
    double t[60], edges[11];
    for (int i = 0; i < 60; i++) {
        double jitter = 0.01 * ((i * 7) % 11 - 5);
        t[i] = (i % 3 == 0 ? 1.0 : i % 3 == 1 ? 4.0 : 24.0) + jitter;
    }
    int nb = popk_natural_breaks(t, 60, 0, 10, edges);
    CU_ASSERT_EQUAL(nb, 3);
    CU_ASSERT(edges[1] > 1.05 && edges[1] < 3.95);
    CU_ASSERT(edges[2] > 4.05 && edges[2] < 23.95);
    CU_ASSERT_DOUBLE_EQUAL(edges[0], 0.95, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(edges[3], 24.05, 1e-12);
    for (int i = 0; i < 60; i++) {
        int expect = i % 3;
        CU_ASSERT_EQUAL(popk_bin_index(edges, nb, t[i]), expect);
    }
    /* Asking for 2 bins: the optimal split puts the largest gap between 4 and 24. */
    nb = popk_natural_breaks(t, 60, 2, 10, edges);
    CU_ASSERT_EQUAL(nb, 2);
    CU_ASSERT(edges[1] > 4.05 && edges[1] < 23.95);
    /* Few well-separated distinct values: one bin each, edges midway. */
    double u[] = {0, 0, 1, 1, 3, 3, 3};
    nb = popk_natural_breaks(u, 7, 0, 10, edges);
    CU_ASSERT_EQUAL(nb, 3);
    CU_ASSERT_DOUBLE_EQUAL(edges[1], 0.5, 0);
    CU_ASSERT_DOUBLE_EQUAL(edges[2], 2.0, 0);
    /* Brute force over all two-edge splits of 12 values: the DP's 3-bin SSW (on the scale
     * log(x + 0.15), 0.15 half the smallest value) is the least. */
    double w[12] = {0.3, 0.5, 0.9, 1.4, 2.2, 2.3, 5.0, 5.5, 6.1, 9.0, 9.8, 12.0}, lw[12];
    for (int i = 0; i < 12; i++)
        lw[i] = log(w[i] + 0.15);
    nb = popk_natural_breaks(w, 12, 3, 10, edges);
    CU_ASSERT_EQUAL(nb, 3);
    double best = INFINITY, got = 0;
    for (int a = 1; a < 11; a++)
        for (int b = a + 1; b < 12; b++) {
            double ss = 0;
            int lim[4] = {0, a, b, 12};
            for (int g = 0; g < 3; g++) {
                double m = 0;
                for (int i = lim[g]; i < lim[g + 1]; i++)
                    m += lw[i];
                m /= lim[g + 1] - lim[g];
                for (int i = lim[g]; i < lim[g + 1]; i++)
                    ss += (lw[i] - m) * (lw[i] - m);
            }
            best = fmin(best, ss);
        }
    for (int g = 0; g < 3; g++) {
        double m = 0;
        int c = 0;
        for (int i = 0; i < 12; i++)
            if (popk_bin_index(edges, 3, w[i]) == g)
                m += lw[i], c++;
        m /= c;
        for (int i = 0; i < 12; i++)
            if (popk_bin_index(edges, 3, w[i]) == g)
                got += (lw[i] - m) * (lw[i] - m);
    }
    CU_ASSERT_DOUBLE_EQUAL(got, best, 1e-12);
}

static void test_loess(void)
{
    /* A local linear smoother reproduces a straight line exactly. */
    double x[40], y[40], gx[20], gy[20];
    for (int i = 0; i < 40; i++) {
        x[i] = 0.37 * i * i / 40.0;
        y[i] = 2.5 - 0.75 * x[i];
    }
    CU_ASSERT_EQUAL(popk_loess(x, y, 40, 0.5, 20, gx, gy), 20);
    for (int g = 0; g < 20; g++)
        CU_ASSERT_DOUBLE_EQUAL(gy[g], 2.5 - 0.75 * gx[g], 1e-10);
    CU_ASSERT_DOUBLE_EQUAL(gx[0], 0.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(gx[19], x[39], 1e-12);
    CU_ASSERT_EQUAL(popk_loess(x, y, 2, 0.5, 20, gx, gy), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("report_stats", NULL, NULL);
    CU_add_test(s, "quantiles (type 7)", test_quantile);
    CU_add_test(s, "normal quantile", test_norm_quantile);
    CU_add_test(s, "natural breaks", test_natural_breaks);
    CU_add_test(s, "loess", test_loess);
    return popk_test_run();
}
