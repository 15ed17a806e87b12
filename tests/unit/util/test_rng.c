/* Tests for util/rng: reproducible streams, uniform and normal moments against their exact
 * values within sampling error, and correlated normals against their covariance. */
#include "util/rng.h"

#include <math.h>

#include "common/popk_test.h"

static void test_reproducible(void)
{
    popk_rng a, b, c;
    popk_rng_init(&a, 42, 7);
    popk_rng_init(&b, 42, 7);
    popk_rng_init(&c, 42, 8);
    int same_c = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = popk_rng_next(&a), y = popk_rng_next(&b), z = popk_rng_next(&c);
        CU_ASSERT_EQUAL(x, y);
        same_c += x == z;
    }
    CU_ASSERT_EQUAL(same_c, 0);
}

/* Mean and variance of n draws against the exact values; 5 standard errors. */
static void test_moments(void)
{
    popk_rng r;
    popk_rng_init(&r, 1, 0);
    const int n = 200000;
    double su = 0, suu = 0, sz = 0, szz = 0, sz4 = 0;
    for (int i = 0; i < n; i++) {
        double u = popk_rng_uniform(&r), z = popk_rng_normal(&r);
        CU_ASSERT(u > 0.0 && u < 1.0);
        su += u;
        suu += u * u;
        sz += z;
        szz += z * z;
        sz4 += z * z * z * z;
    }
    double mu = su / n, vu = suu / n - mu * mu;
    CU_ASSERT(fabs(mu - 0.5) < 5 * sqrt(1.0 / 12 / n));
    CU_ASSERT(fabs(vu - 1.0 / 12) < 5 * sqrt(1.0 / 180 / n));
    double mz = sz / n, vz = szz / n;
    CU_ASSERT(fabs(mz) < 5 / sqrt((double)n));
    CU_ASSERT(fabs(vz - 1.0) < 5 * sqrt(2.0 / n));
    CU_ASSERT(fabs(sz4 / n - 3.0) < 5 * sqrt(96.0 / n));
}

static void test_mvnormal(void)
{
    /* Omega = [[0.09, 0.03], [0.03, 0.04]]: L = chol(Omega). */
    double L[4] = {0.3, 0, 0.1, sqrt(0.04 - 0.01)};
    popk_rng r;
    popk_rng_init(&r, 3, 0);
    const int n = 200000;
    double s11 = 0, s12 = 0, s22 = 0;
    for (int i = 0; i < n; i++) {
        double x[2];
        popk_rng_mvnormal(&r, 2, L, x);
        s11 += x[0] * x[0];
        s12 += x[0] * x[1];
        s22 += x[1] * x[1];
    }
    /* SE of a sample covariance: sqrt((s_ii s_jj + s_ij^2) / n). */
    CU_ASSERT(fabs(s11 / n - 0.09) < 5 * sqrt(2 * 0.09 * 0.09 / n));
    CU_ASSERT(fabs(s22 / n - 0.04) < 5 * sqrt(2 * 0.04 * 0.04 / n));
    CU_ASSERT(fabs(s12 / n - 0.03) < 5 * sqrt((0.09 * 0.04 + 0.03 * 0.03) / n));
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("rng", NULL, NULL);
    CU_add_test(s, "reproducible", test_reproducible);
    CU_add_test(s, "moments", test_moments);
    CU_add_test(s, "mvnormal", test_mvnormal);
    return popk_test_run();
}
