/* Residual definitions of src/fit against closed forms: the Wang (2007) model at two
 * observation times (t = 1, 2), where C = G Omega G' + diag(V) is a full 2 x 2 matrix, so the
 * symmetric inverse square root that WRES/CWRES use differs from a Cholesky factor. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "common/popk_test.h"
#include "fit/fit.h"

static const double y_obs[2] = {6.5, 3.1}, t_obs[2] = {1.0, 2.0};
static const double theta = 0.5, omega = 0.04, sigma2 = 0.1;

/* Solve S w = r with S = C^1/2 the symmetric root of the 2 x 2 SPD matrix C:
 * S = (C + s I) / t, s = sqrt(det C), t = sqrt(tr C + 2 s). */
static void sym_whiten(const double C[4], const double r[2], double w[2])
{
    double s = sqrt(C[0] * C[3] - C[1] * C[2]), t = sqrt(C[0] + C[3] + 2.0 * s);
    double S[4] = {(C[0] + s) / t, C[1] / t, C[2] / t, (C[3] + s) / t};
    double det = S[0] * S[3] - S[1] * S[2];
    w[0] = (S[3] * r[0] - S[1] * r[1]) / det;
    w[1] = (-S[2] * r[0] + S[0] * r[1]) / det;
}

static void chol_whiten(const double C[4], const double r[2], double w[2])
{
    double l11 = sqrt(C[0]), l21 = C[2] / l11, l22 = sqrt(C[3] - l21 * l21);
    w[0] = r[0] / l11;
    w[1] = (r[1] - l21 * w[0]) / l22;
}

/* Prediction, df/deta and variance of Wang's model at eta. */
static void wang(double eta, double f[2], double G[2], double V[2])
{
    double ke = theta * exp(eta);
    for (int j = 0; j < 2; j++) {
        f[j] = 10.0 * exp(-ke * t_obs[j]);
        G[j] = -ke * t_obs[j] * f[j];
        V[j] = sigma2 * f[j] * f[j];
    }
}

static void expected(double eta, int interaction, double wres[2], double cwres[2],
                     double chol_wres[2])
{
    double f[2], G[2], V[2], C[4], r[2];
    wang(0.0, f, G, V);
    for (int a = 0; a < 2; a++) {
        r[a] = y_obs[a] - f[a];
        for (int b = 0; b < 2; b++)
            C[a * 2 + b] = G[a] * omega * G[b] + (a == b ? V[a] : 0.0);
        /* y = f + f eps linearised at eta = 0 keeps G eta eps: variance G^2 omega sigma^2 */
        if (interaction)
            C[a * 2 + a] += G[a] * G[a] * omega * sigma2;
    }
    sym_whiten(C, r, wres);
    chol_whiten(C, r, chol_wres);
    wang(eta, f, G, V);
    for (int a = 0; a < 2; a++) {
        r[a] = y_obs[a] - f[a] + G[a] * eta;
        for (int b = 0; b < 2; b++)
            C[a * 2 + b] = G[a] * omega * G[b] + (a == b ? V[a] : 0.0);
    }
    sym_whiten(C, r, cwres);
}

static void test_residuals(void)
{
    char dpath[] = "/tmp/popk-resid-XXXXXX";
    int fd = mkstemp(dpath);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "ID,TIME,DV\n1,%g,%g\n1,%g,%g\n", t_obs[0], y_obs[0], t_obs[1], y_obs[1]);
    fclose(f);
    popk_error err;
    popk_error_clear(&err);
    popk_model *m = popk_model_load(popk_test_src("models/wang2007_prop.yaml"), &err);
    CU_ASSERT_FATAL(m != NULL);
    popk_data *d = popk_data_read(dpath, &err);
    CU_ASSERT_FATAL(d != NULL);
    popk_binding *b = popk_model_bind(m, d, &err);
    CU_ASSERT_FATAL(b != NULL);
    popk_fit_problem *fp = popk_fit_problem_new(m, d, b, 1, &err);
    CU_ASSERT_FATAL(fp != NULL);
    double th = theta, om = omega, sg = sqrt(sigma2), eta = 0.1;
    for (int inter = 0; inter < 2; inter++) {
        popk_fit_resid res[2];
        CU_ASSERT_EQUAL_FATAL(popk_fit_residuals_method(fp,
                                                        inter ? POPK_METHOD_FOCEI
                                                              : POPK_METHOD_FOCE,
                                                        0, &th, &om, &sg, &eta, res, &err),
                              POPK_OK);
        double wres[2], cwres[2], chol[2], fe[2], Ge[2], Ve[2];
        expected(eta, inter, wres, cwres, chol);
        wang(eta, fe, Ge, Ve);
        for (int j = 0; j < 2; j++) {
            CU_ASSERT(fabs(res[j].wres - wres[j]) <= 1e-10 * fabs(wres[j]));
            CU_ASSERT(fabs(res[j].cwres - cwres[j]) <= 1e-10 * fabs(cwres[j]));
            CU_ASSERT(fabs(res[j].iwres - (y_obs[j] - fe[j]) / sqrt(Ve[j])) <= 1e-12);
            CU_ASSERT(fabs(res[j].ipred - fe[j]) <= 1e-12 * fe[j]);
        }
        /* the data discriminate: a Cholesky factor would give another WRES */
        CU_ASSERT(fabs(chol[0] - wres[0]) > 1e-3);
    }
    /* the FO/FOCE variant through the short name */
    popk_fit_resid res[2];
    double wres[2], cwres[2], chol[2];
    expected(eta, 0, wres, cwres, chol);
    CU_ASSERT_EQUAL(popk_fit_residuals(fp, 0, &th, &om, &sg, &eta, res, &err), POPK_OK);
    CU_ASSERT(fabs(res[1].wres - wres[1]) <= 1e-10 * fabs(wres[1]));
    popk_fit_problem_free(fp);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
    unlink(dpath);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("fit_residuals", NULL, NULL);
    CU_add_test(s, "WRES/CWRES/IWRES vs closed forms (symmetric root, interaction)",
                test_residuals);
    return popk_test_run();
}
