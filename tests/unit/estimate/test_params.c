/* Tests for the parameter map: round trips, the Jacobian against finite differences, and the
 * refusal of bad initial values. */
#include "common/popk_test.h"
#include "estimate/estimate.h"

#include <math.h>
#include <string.h>

static int dummy_pred(int i, int thread, const double *theta, const double *sigma,
                      const double *eta, double *f, double *V, double *G, double *dV, void *user,
                      popk_error *err)
{
    (void)i, (void)thread, (void)theta, (void)sigma, (void)eta, (void)G, (void)dV, (void)user,
        (void)err;
    f[0] = 1.0;
    V[0] = 1.0;
    return 0;
}

/* Thetas: two bounds, lower only, upper only, free, fixed; etas 0 and 2 in a 2x2 block,
 * eta 1 alone, eta 3 alone and fixed; two sigmas, the second fixed. */
static const double theta0[] = {0.3, 2.0, -1.5, -4.0, 7.0};
static const double lo[] = {0.0, 1.0, -INFINITY, -INFINITY, -INFINITY};
static const double hi[] = {1.0, INFINITY, 0.0, INFINITY, INFINITY};
static const int theta_fixed[] = {0, 0, 0, 0, 1};
static const double omega0[] = {0.2, 0, 0.05, 0, 0, 0.1, 0, 0, 0.05, 0, 0.3, 0, 0, 0, 0, 0.4};
static const int block[] = {0, 1, 0, 2}, block_fixed[] = {0, 0, 1};
static const double sigma0[] = {0.5, 2.0};
static const int sigma_fixed[] = {0, 1};
static const int nobs[] = {1};
static const double y0v[] = {1.0};
static const double *const yv[] = {y0v};

static popk_problem problem(void)
{
    popk_problem p = {1, nobs, yv, 5, 4, 2, theta0, lo, hi, theta_fixed, omega0, block,
                      block_fixed, sigma0, sigma_fixed, dummy_pred, NULL, NULL};
    return p;
}

static void test_layout(void)
{
    popk_problem p = problem();
    popk_error err;
    popk_param_map *m = popk_param_map_create(&p, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    /* 4 thetas, 3 + 1 omega elements, 1 sigma */
    CU_ASSERT_EQUAL(popk_param_map_npar(m), 9);
    const char *labels[] = {"THETA(1)", "THETA(2)", "THETA(3)", "THETA(4)", "OMEGA(1,1)",
                            "OMEGA(3,1)", "OMEGA(3,3)", "OMEGA(2,2)", "SIGMA(1)"};
    char buf[32];
    for (int k = 0; k < 9; k++)
        CU_ASSERT_STRING_EQUAL(popk_param_map_label(m, k, buf, sizeof buf), labels[k]);
    double pnat[9];
    popk_param_map_get_natural(m, theta0, omega0, sigma0, pnat);
    const double expect[] = {0.3, 2.0, -1.5, -4.0, 0.2, 0.05, 0.3, 0.1, 0.5};
    for (int k = 0; k < 9; k++)
        CU_ASSERT_EQUAL(pnat[k], expect[k]);
    popk_param_map_free(m);
}

static void test_round_trip(void)
{
    popk_problem p = problem();
    popk_error err;
    popk_param_map *m = popk_param_map_create(&p, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    double x[9], theta[5], omega[16], sigma[2];
    CU_ASSERT_EQUAL_FATAL(popk_param_map_pack(m, theta0, omega0, sigma0, x, &err), POPK_OK);
    popk_param_map_unpack(m, x, theta, omega, sigma);
    for (int k = 0; k < 5; k++)
        CU_ASSERT_DOUBLE_EQUAL(theta[k], theta0[k], 1e-14);
    for (int k = 0; k < 16; k++)
        CU_ASSERT_DOUBLE_EQUAL(omega[k], omega0[k], 1e-15);
    for (int k = 0; k < 2; k++)
        CU_ASSERT_DOUBLE_EQUAL(sigma[k], sigma0[k], 1e-15);
    /* any x maps inside the bounds and to a positive definite omega */
    double xs[9] = {40, -30, 30, 1.5, -2, 3, 0.5, 1, -1};
    popk_param_map_unpack(m, xs, theta, omega, sigma);
    CU_ASSERT(theta[0] > 0.0 && theta[0] <= 1.0);
    CU_ASSERT(theta[1] > 1.0);
    CU_ASSERT(theta[2] < 0.0);
    CU_ASSERT_DOUBLE_EQUAL(theta[3], 6.0, 1e-14); /* free: x scaled by |theta0| */
    CU_ASSERT_EQUAL(theta[4], 7.0);
    CU_ASSERT_EQUAL(omega[15], 0.4);
    CU_ASSERT_EQUAL(sigma[1], 2.0);
    /* natural set/get */
    double pnat[9], theta2[5], omega2[16], sigma2[2];
    popk_param_map_get_natural(m, theta, omega, sigma, pnat);
    popk_param_map_set_natural(m, pnat, theta2, omega2, sigma2);
    CU_ASSERT(memcmp(theta, theta2, sizeof theta) == 0);
    CU_ASSERT(memcmp(omega, omega2, sizeof omega) == 0);
    CU_ASSERT(memcmp(sigma, sigma2, sizeof sigma) == 0);
    popk_param_map_free(m);
}

static void test_jacobian(void)
{
    popk_problem p = problem();
    popk_error err;
    popk_param_map *m = popk_param_map_create(&p, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    double x[9] = {0.4, -0.3, 0.2, 1.1, -0.7, 0.35, -0.2, 0.1, -0.5}, J[81];
    popk_param_map_jacobian(m, x, J);
    for (int l = 0; l < 9; l++) {
        double xp[9], pp[9], pm[9], theta[5], omega[16], sigma[2], h = 1e-6;
        memcpy(xp, x, sizeof x);
        xp[l] += h;
        popk_param_map_unpack(m, xp, theta, omega, sigma);
        popk_param_map_get_natural(m, theta, omega, sigma, pp);
        xp[l] -= 2 * h;
        popk_param_map_unpack(m, xp, theta, omega, sigma);
        popk_param_map_get_natural(m, theta, omega, sigma, pm);
        for (int k = 0; k < 9; k++)
            CU_ASSERT_DOUBLE_EQUAL(J[k * 9 + l], (pp[k] - pm[k]) / (2 * h), 1e-8);
    }
    popk_param_map_free(m);
}

static void test_bad_values(void)
{
    popk_error err;
    popk_problem p = problem();
    double t[5];
    memcpy(t, theta0, sizeof t);
    t[0] = 1.0; /* on its upper bound */
    p.theta0 = t;
    CU_ASSERT_PTR_NULL(popk_param_map_create(&p, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "THETA(1)"));
    p = problem();
    double om[16];
    memcpy(om, omega0, sizeof om);
    om[2] = om[8] = 0.5; /* covariance larger than the variances allow */
    p.omega0 = om;
    CU_ASSERT_PTR_NULL(popk_param_map_create(&p, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "not positive definite"));
    memcpy(om, omega0, sizeof om);
    om[1] = om[4] = 0.01; /* links etas 1 and 2 of different blocks */
    CU_ASSERT_PTR_NULL(popk_param_map_create(&p, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "different blocks"));
    p = problem();
    double s[2] = {0.0, 1.0};
    p.sigma0 = s;
    CU_ASSERT_PTR_NULL(popk_param_map_create(&p, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "SIGMA(1)"));
    p = problem();
    popk_param_map *m = popk_param_map_create(&p, &err);
    double x[9];
    memcpy(t, theta0, sizeof t);
    t[1] = 0.5; /* below its lower bound 1 */
    CU_ASSERT_EQUAL(popk_param_map_pack(m, t, omega0, sigma0, x, &err), POPK_ERR_ARG);
    popk_param_map_free(m);
    popk_param_map_free(NULL);
}

/* Option names round-trip; unknown names are refused. */
static void test_names(void)
{
    popk_method m;
    popk_optimizer o;
    popk_covstep_kind c;
    for (int k = 0; k < 4; k++) {
        CU_ASSERT_EQUAL(popk_method_parse(popk_method_name((popk_method)k), &m), 0);
        CU_ASSERT_EQUAL(m, k);
        CU_ASSERT_EQUAL(popk_covstep_parse(popk_covstep_name((popk_covstep_kind)k), &c), 0);
        CU_ASSERT_EQUAL(c, k);
    }
    for (int k = 0; k < 5; k++) {
        CU_ASSERT_EQUAL(popk_optimizer_parse(popk_optimizer_name((popk_optimizer)k), &o), 0);
        CU_ASSERT_EQUAL(o, k);
    }
    CU_ASSERT_STRING_EQUAL(popk_method_name(POPK_METHOD_FOCEI), "focei");
    CU_ASSERT_EQUAL(popk_method_parse("FOCEI", &m), -1);
    CU_ASSERT_EQUAL(popk_optimizer_parse(NULL, &o), -1);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("estimate_params", NULL, NULL);
    CU_add_test(s, "layout", test_layout);
    CU_add_test(s, "round_trip", test_round_trip);
    CU_add_test(s, "jacobian", test_jacobian);
    CU_add_test(s, "bad_values", test_bad_values);
    CU_add_test(s, "names", test_names);
    return popk_test_run();
}
