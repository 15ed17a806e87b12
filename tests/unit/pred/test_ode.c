/* Tests for pred/ode: CVODES integration and sensitivities against closed forms, finite
 * differences, the Lambert-W solution of Michaelis-Menten elimination, and fault cases. */
#include "pred/ode.h"

#include "common/popk_test.h"
#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"
#include "unit/pred/ode_models.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define DOSE 100.0

/* ---- references ---------------------------------------------------------------------- */

/* |got - want| <= rel |want| + abs_floor, reported with context on failure. */
static int close_enough(double got, double want, double rel, double abs_floor, const char *what,
                        double t)
{
    double tol = rel * fabs(want) + abs_floor;
    if (fabs(got - want) <= tol && isfinite(got))
        return 1;
    fprintf(stderr, "\n  %s at t = %g: got %.15g, want %.15g (diff %.3g, tol %.3g)\n", what, t,
            got, want, got - want, tol);
    return 0;
}

/* Bateman: depot and central amounts after a bolus D into the depot at t = 0, and their
 * derivatives with respect to ka and ke. */
typedef struct {
    double ad, ac;
    double dad_dka, dac_dka, dac_dke;
} bateman_t;

static bateman_t bateman(double d, double ka, double ke, double t)
{
    bateman_t b;
    double eka = exp(-ka * t), eke = exp(-ke * t);
    double g = ka / (ka - ke), h = eke - eka;
    b.ad = d * eka;
    b.ac = d * g * h;
    b.dad_dka = -d * t * eka;
    b.dac_dka = d * (-ke / ((ka - ke) * (ka - ke)) * h + g * t * eka);
    b.dac_dke = d * (ka / ((ka - ke) * (ka - ke)) * h - g * t * eke);
    return b;
}

/* Bolus D into the central compartment: A1 = A e^{-alpha t} + B e^{-beta t}. */
static void two_cmt_bolus(double d, double k10, double k12, double k21, double t, double *a1,
                          double *a2)
{
    double al, be;
    two_cmt_rates(k10, k12, k21, &al, &be);
    double ea = exp(-al * t), eb = exp(-be * t);
    *a1 = d * ((al - k21) / (al - be) * ea + (k21 - be) / (al - be) * eb);
    *a2 = d * k12 / (al - be) * (eb - ea);
}

/* Lambert W (principal branch, z >= 0) by Halley's iteration. */
static double lambert_w(double z)
{
    double w = log1p(z);
    for (int i = 0; i < 100; i++) {
        double ew = exp(w);
        double f = w * ew - z;
        double step = f / (ew * (w + 1.0) - (w + 2.0) * f / (2.0 * w + 2.0));
        w -= step;
        if (fabs(step) <= 1e-16 * fabs(w))
            break;
    }
    return w;
}

/* One-compartment Michaelis-Menten bolus: C(t) = Km W((C0/Km) exp((C0 - Vm t / V) / Km)). */
static double mm_conc(double c0, double vm, double km, double v, double t)
{
    return km * lambert_w(c0 / km * exp((c0 - vm * t / v) / km));
}

/* ---- models ------------------------------------------------------------------------- */

/* One-compartment oral: states depot, central; p = {ka, ke}. */
typedef struct {
    double ka, ke;
    int ns;
} oral1_model;

static int oral1_rhs(double t, const double *y, double *ydot, double *jac, double *dfdq,
                     void *user)
{
    (void)t;
    const oral1_model *m = user;
    ydot[0] = -m->ka * y[0];
    ydot[1] = m->ka * y[0] - m->ke * y[1];
    if (jac) {
        jac[0] = -m->ka;
        jac[2] = m->ka;
        jac[3] = -m->ke;
    }
    if (dfdq) {
        if (m->ns > 0) {
            dfdq[0] = -y[0];
            dfdq[1] = y[0];
        }
        if (m->ns > 1)
            dfdq[2 + 1] = -y[1];
    }
    return 0;
}

/* One-compartment Michaelis-Menten elimination: dA/dt = -Vm C / (Km + C), C = A / V;
 * directions: Vm, Km. */
typedef struct {
    double vm, km, v;
    int ns;
} mm_model;

static int mm_rhs(double t, const double *y, double *ydot, double *jac, double *dfdq, void *user)
{
    (void)t;
    const mm_model *m = user;
    double c = y[0] / m->v, den = m->km + c;
    ydot[0] = -m->vm * c / den;
    if (jac)
        jac[0] = -m->vm * m->km / (m->v * den * den);
    if (dfdq) {
        if (m->ns > 0)
            dfdq[0] = -c / den;
        if (m->ns > 1)
            dfdq[1] = m->vm * c / (den * den);
    }
    return 0;
}

/* Robertson's stiff chemical kinetics. */
static int robertson_rhs(double t, const double *y, double *ydot, double *jac, double *dfdq,
                         void *user)
{
    (void)t;
    (void)dfdq;
    (void)user;
    ydot[0] = -0.04 * y[0] + 1e4 * y[1] * y[2];
    ydot[2] = 3e7 * y[1] * y[1];
    ydot[1] = -ydot[0] - ydot[2];
    if (jac) {
        jac[0] = -0.04;
        jac[1] = 1e4 * y[2];
        jac[2] = 1e4 * y[1];
        jac[6] = 0.0;
        jac[7] = 6e7 * y[1];
        jac[8] = 0.0;
        jac[3] = 0.04;
        jac[4] = -1e4 * y[2] - 6e7 * y[1];
        jac[5] = -1e4 * y[1];
    }
    return 0;
}

/* A decay model that misbehaves on purpose (field = INFINITY or 0: never). */
typedef struct {
    double k;
    double nan_after;     /* right-hand side NaN for t > nan_after */
    double jac_nan_after; /* Jacobian NaN for t > jac_nan_after */
    double dfdq_inf_after; /* df/dk infinite for t > dfdq_inf_after */
    long nan_at_call;     /* right-hand side NaN on this evaluation only (0: never) */
    int status_after;     /* returned for t > fail_after when non-zero */
    double fail_after;
    long calls;
    double max_t_seen;
} faulty_model;

static faulty_model faulty_well_behaved(void)
{
    faulty_model m = {.k = 0.3,
                      .nan_after = INFINITY,
                      .jac_nan_after = INFINITY,
                      .dfdq_inf_after = INFINITY,
                      .max_t_seen = -1.0};
    return m;
}

static int faulty_rhs(double t, const double *y, double *ydot, double *jac, double *dfdq,
                      void *user)
{
    faulty_model *m = user;
    m->calls++;
    if (t > m->max_t_seen)
        m->max_t_seen = t;
    if (m->status_after != 0 && t > m->fail_after)
        return m->status_after;
    ydot[0] = -m->k * y[0] * y[0];
    if (jac)
        jac[0] = t > m->jac_nan_after ? NAN : -2.0 * m->k * y[0];
    if (dfdq)
        dfdq[0] = t > m->dfdq_inf_after ? INFINITY : -y[0] * y[0];
    if (t > m->nan_after || m->calls == m->nan_at_call)
        ydot[0] = NAN;
    return 0;
}

/* Solution of y' = -k y^2, y(t0) = y0. */
static double faulty_exact(double k, double y0, double dt)
{
    return y0 / (1.0 + k * y0 * dt);
}

static double time_in_message(const char *msg)
{
    const char *p = strstr(msg, "at t = ");
    return p ? strtod(p + 7, NULL) : NAN;
}

/* ---- tests: closed forms ------------------------------------------------------------ */

static const double obs_times[] = {0.0,  0.05, 0.25, 0.5,  1.0,  2.0,  3.0,  4.5, 6.0,
                                   8.0,  12.0, 16.0, 24.0, 30.0, 36.0, 48.0, 60.0, 72.0};
#define N_OBS (sizeof obs_times / sizeof obs_times[0])

static void test_one_cmt_oral_bateman(void)
{
    oral1_model m = {1.3, 0.11, 0};
    popk_error err;
    popk_ode *o = popk_ode_new(2, 0, oral1_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 100000);
    double y0[2] = {DOSE, 0.0}, y[2];
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
    for (size_t i = 0; i < N_OBS; i++) {
        double t = obs_times[i];
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, t, y, NULL, &err), POPK_OK);
        bateman_t b = bateman(DOSE, m.ka, m.ke, t);
        CU_ASSERT(close_enough(y[0], b.ad, 1e-7, 1e-10, "depot", t));
        CU_ASSERT(close_enough(y[1], b.ac, 1e-7, 1e-10, "central", t));
    }
    popk_ode_free(o);
}

static void test_two_cmt_bolus(void)
{
    oral2_model m = {{0.9, 0.15, 0.4, 0.08}, 0};
    popk_error err;
    popk_ode *o = popk_ode_new(3, 0, oral2_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 100000);
    double y0[3] = {0.0, DOSE, 0.0}, y[3];
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
    for (size_t i = 0; i < N_OBS; i++) {
        double t = obs_times[i], a1, a2;
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, t, y, NULL, &err), POPK_OK);
        two_cmt_bolus(DOSE, m.p[1], m.p[2], m.p[3], t, &a1, &a2);
        CU_ASSERT(close_enough(y[0], 0.0, 0.0, 0.0, "depot", t));
        CU_ASSERT(close_enough(y[1], a1, 1e-7, 1e-10, "central", t));
        CU_ASSERT(close_enough(y[2], a2, 1e-7, 1e-10, "peripheral", t));
    }
    popk_ode_free(o);
}

static void test_two_cmt_oral(void)
{
    oral2_model m = {{1.1, 0.12, 0.35, 0.07}, 0};
    popk_error err;
    popk_ode *o = popk_ode_new(3, 0, oral2_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 100000);
    double y0[3] = {DOSE, 0.0, 0.0}, y[3], ref[3];
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
    for (size_t i = 0; i < N_OBS; i++) {
        double t = obs_times[i];
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, t, y, NULL, &err), POPK_OK);
        two_cmt_oral(m.p, DOSE, t, ref);
        for (int k = 0; k < 3; k++)
            CU_ASSERT(close_enough(y[k], ref[k], 1e-7, 1e-10, "2-cmt oral state", t));
    }
    popk_ode_free(o);
}

/* ---- tests: methods ------------------------------------------------------------------ */

/* One-compartment oral dose with sensitivities at the default tolerances (rtol 1e-8),
 * Bateman's closed form as reference; returns the largest relative error of the states and
 * of the sensitivities (relative to the dose), and the steps taken. */
static void bateman_errors(popk_ode *o, const oral1_model *m, double *err_y, double *err_s,
                           long *steps)
{
    popk_error err;
    popk_ode_stats st0, st1;
    popk_ode_get_stats(o, &st0);
    double y0[2] = {DOSE, 0.0}, y[2], s[4];
    *err_y = *err_s = 0.0;
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
    for (size_t i = 1; i < N_OBS; i++) {
        double t = obs_times[i];
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance_smooth(o, t, INFINITY, y, s, &err), POPK_OK);
        bateman_t b = bateman(DOSE, m->ka, m->ke, t);
        *err_y = fmax(*err_y, fabs(y[0] - b.ad) / DOSE);
        *err_y = fmax(*err_y, fabs(y[1] - b.ac) / fmax(b.ac, 1e-3 * DOSE));
        *err_s = fmax(*err_s, fabs(s[0] - b.dad_dka) / DOSE);
        *err_s = fmax(*err_s, fabs(s[1] - b.dac_dka) / DOSE);
        *err_s = fmax(*err_s, fabs(s[3] - b.dac_dke) / DOSE);
    }
    popk_ode_get_stats(o, &st1);
    *steps = st1.steps - st0.steps;
}

static void test_adams_and_bdf(void)
{
    oral1_model m = {1.3, 0.11, 2};
    popk_error err;
    popk_ode *o = popk_ode_new(2, 2, oral1_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    CU_ASSERT_EQUAL(popk_ode_get_method(o), POPK_CVODE_BDF);
    double ey[4], es[4];
    long steps[4];
    /* BDF, Adams, BDF again, Adams again: switching reuses each method's memory and gives
     * the same numbers as the first use. */
    for (int r = 0; r < 4; r++) {
        popk_ode_set_method(o, r % 2 ? POPK_CVODE_ADAMS : POPK_CVODE_BDF);
        CU_ASSERT_EQUAL(popk_ode_get_method(o), r % 2 ? POPK_CVODE_ADAMS : POPK_CVODE_BDF);
        bateman_errors(o, &m, &ey[r], &es[r], &steps[r]);
        fprintf(stderr, "\n  %s: %ld steps, state error %.2e, sensitivity error %.2e",
                r % 2 ? "Adams" : "BDF", steps[r], ey[r], es[r]);
        CU_ASSERT(ey[r] < 2e-7);
        CU_ASSERT(es[r] < 2e-6);
    }
    CU_ASSERT_EQUAL(ey[0], ey[2]);
    CU_ASSERT_EQUAL(es[1], es[3]);
    CU_ASSERT_EQUAL(steps[1], steps[3]);
    /* The point of Adams on a non-stiff model: fewer steps. */
    CU_ASSERT(steps[1] < steps[0]);
    popk_ode_set_method(o, 7); /* anything else is BDF */
    CU_ASSERT_EQUAL(popk_ode_get_method(o), POPK_CVODE_BDF);
    popk_ode_free(o);
    CU_ASSERT_EQUAL(popk_ode_get_method(NULL), POPK_CVODE_BDF);
    popk_ode_set_method(NULL, POPK_CVODE_ADAMS);
}

/* The prediction engine integrates ODE models with Adams and redoes a segment with BDF when
 * Adams stalls: a stiff oral model (ka = 2000/h, ke = 0.1/h; Adams would need ~1e6 steps
 * over 400 h) must still match Bateman, values and d/dke, and so must a mild one (Adams
 * throughout). Both after one another in the same workspace: the method is chosen anew for
 * every prediction. */
static void test_pred_adams_falls_back_to_bdf(void)
{
    static const char text[] = "name: stiff\n"
                               "theta:\n  tka: 2000\n  tke: 0.1\n"
                               "sigma:\n  sd: 0.1\n"
                               "individual:\n  ka: tka\n  ke: tke\n"
                               "odes:\n  depot: -ka * depot\n  central: ka * depot - ke * central\n"
                               "observe:\n  ac: {value: central, cmt: central,\n"
                               "    error: {additive: sd}}\n";
    static const char csv[] = "ID,TIME,AMT,CMT,EVID,DV\n"
                              "1,0,100,1,1,0\n1,0.5,0,2,0,1\n1,10,0,2,0,1\n1,100,0,2,0,1\n"
                              "1,400,0,2,0,1\n";
    popk_error err;
    popk_model *m = popk_model_parse("stiff.yaml", text, strlen(text), &err);
    popk_data *d = popk_data_parse("stiff.csv", csv, strlen(csv), &err);
    CU_ASSERT_FATAL(m && d);
    popk_binding *b = popk_model_bind(m, d, &err);
    popk_pred_ws *ws = popk_pred_ws_new(m, &err);
    CU_ASSERT_FATAL(b && ws);
    popk_pred_dirs dirs = {0};
    dirs.nd = 1;
    dirs.dir_is_eta[0] = 0;
    dirs.dir_index[0] = 1; /* tke */
    const double ka_values[] = {2000.0, 1.3, 2000.0};
    for (int run = 0; run < 3; run++) {
        double theta[2] = {ka_values[run], 0.1};
        popk_pred_result res;
        popk_status st = popk_pred_subject(ws, m, d, b, 0, theta, NULL, &dirs, &res, &err);
        CU_ASSERT_EQUAL_FATAL(st, POPK_OK);
        for (size_t r = 1; r < res.nrec; r++) {
            double t = d->rec[r].time;
            bateman_t want = bateman(DOSE, theta[0], theta[1], t);
            const double *got = res.out + r * (size_t)res.nout * 2;
            CU_ASSERT(close_enough(got[0], want.ac, 1e-6, 1e-9, "central (Bateman)", t));
            CU_ASSERT(close_enough(got[1], want.dac_dke, 1e-5, 1e-8, "d central / d ke", t));
        }
    }
    popk_pred_ws_free(ws);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
}

/* ---- tests: sensitivities ----------------------------------------------------------- */

/* Central finite difference of the ODE solution (no sensitivities) for oral1 at times. */
static void oral1_fd(const oral1_model *base, int dir, double rel_step, double *dy /* N_OBS*2 */)
{
    double h = rel_step * (dir == 0 ? base->ka : base->ke);
    double yp[N_OBS][2], ym[N_OBS][2];
    for (int side = 0; side < 2; side++) {
        oral1_model m = *base;
        m.ns = 0;
        double sign = side == 0 ? 1.0 : -1.0;
        if (dir == 0)
            m.ka += sign * h;
        else
            m.ke += sign * h;
        popk_error err;
        popk_ode *o = popk_ode_new(2, 0, oral1_rhs, &m, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        popk_ode_set_tolerances(o, 1e-12, 1e-14, 200000);
        double y0[2] = {DOSE, 0.0};
        CU_ASSERT_EQUAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
        for (size_t i = 0; i < N_OBS; i++)
            CU_ASSERT_EQUAL(popk_ode_advance(o, obs_times[i], side == 0 ? yp[i] : ym[i], NULL,
                                             &err),
                            POPK_OK);
        popk_ode_free(o);
    }
    for (size_t i = 0; i < N_OBS; i++)
        for (int k = 0; k < 2; k++)
            dy[i * 2 + k] = (yp[i][k] - ym[i][k]) / (2.0 * h);
}

static void test_sens_one_cmt(void)
{
    oral1_model m = {1.3, 0.11, 2};
    popk_error err;
    popk_ode *o = popk_ode_new(2, 2, oral1_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 100000);
    double y0[2] = {DOSE, 0.0}, y[2], s[4];
    double fd_ka[N_OBS * 2], fd_ke[N_OBS * 2];
    oral1_fd(&m, 0, 1e-4, fd_ka);
    oral1_fd(&m, 1, 1e-4, fd_ke);
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
    for (size_t i = 0; i < N_OBS; i++) {
        double t = obs_times[i];
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, t, y, s, &err), POPK_OK);
        bateman_t b = bateman(DOSE, m.ka, m.ke, t);
        /* s[k*n + i] = d y_i / d q_k */
        CU_ASSERT(close_enough(s[0], b.dad_dka, 1e-5, 1e-8, "dAd/dka (closed form)", t));
        CU_ASSERT(close_enough(s[1], b.dac_dka, 1e-5, 1e-8, "dAc/dka (closed form)", t));
        CU_ASSERT(close_enough(s[2], 0.0, 0.0, 0.0, "dAd/dke", t));
        CU_ASSERT(close_enough(s[3], b.dac_dke, 1e-5, 1e-8, "dAc/dke (closed form)", t));
        CU_ASSERT(close_enough(s[0], fd_ka[i * 2], 1e-5, 1e-8, "dAd/dka (FD)", t));
        CU_ASSERT(close_enough(s[1], fd_ka[i * 2 + 1], 1e-5, 1e-8, "dAc/dka (FD)", t));
        CU_ASSERT(close_enough(s[3], fd_ke[i * 2 + 1], 1e-5, 1e-8, "dAc/dke (FD)", t));
    }
    popk_ode_free(o);
}

static void test_sens_two_cmt(void)
{
    oral2_model m = {{1.1, 0.12, 0.35, 0.07}, 4};
    const double rel_step = 1e-4;
    /* FD of the ODE solution for every direction and time: [dir][time][state]. */
    static double fd_ode[4][N_OBS][3];
    for (int k = 0; k < 4; k++) {
        double h = rel_step * m.p[k];
        double yp[N_OBS][3], ym[N_OBS][3];
        for (int side = 0; side < 2; side++) {
            oral2_model mp = m;
            mp.ns = 0;
            mp.p[k] += side == 0 ? h : -h;
            popk_error err;
            popk_ode *o = popk_ode_new(3, 0, oral2_rhs, &mp, &err);
            CU_ASSERT_PTR_NOT_NULL_FATAL(o);
            popk_ode_set_tolerances(o, 1e-12, 1e-14, 200000);
            double y0[3] = {DOSE, 0.0, 0.0};
            CU_ASSERT_EQUAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
            for (size_t i = 0; i < N_OBS; i++)
                CU_ASSERT_EQUAL(
                    popk_ode_advance(o, obs_times[i], side == 0 ? yp[i] : ym[i], NULL, &err),
                    POPK_OK);
            popk_ode_free(o);
        }
        for (size_t i = 0; i < N_OBS; i++)
            for (int j = 0; j < 3; j++)
                fd_ode[k][i][j] = (yp[i][j] - ym[i][j]) / (2.0 * h);
    }

    popk_error err;
    popk_ode *o = popk_ode_new(3, 4, oral2_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 100000);
    double y0[3] = {DOSE, 0.0, 0.0}, y[3], s[12];
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
    for (size_t i = 0; i < N_OBS; i++) {
        double t = obs_times[i];
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, t, y, s, &err), POPK_OK);
        for (int k = 0; k < 4; k++) {
            /* FD of the closed form: independent of the solver. */
            double pp[4], pm[4], rp[3], rm[3];
            memcpy(pp, m.p, sizeof pp);
            memcpy(pm, m.p, sizeof pm);
            double h = rel_step * m.p[k];
            pp[k] += h;
            pm[k] -= h;
            two_cmt_oral(pp, DOSE, t, rp);
            two_cmt_oral(pm, DOSE, t, rm);
            for (int j = 0; j < 3; j++) {
                double fd_closed = (rp[j] - rm[j]) / (2.0 * h);
                CU_ASSERT(close_enough(s[k * 3 + j], fd_closed, 1e-5, 1e-7,
                                       "2-cmt sensitivity vs FD of closed form", t));
                /* The FD of solver output carries the solver's own error divided by
                 * 2h: about 1e-10 / 2.4e-5 = 4e-6 absolute, hence the floor. */
                CU_ASSERT(close_enough(s[k * 3 + j], fd_ode[k][i][j], 1e-5, 2e-5,
                                       "2-cmt sensitivity vs FD of ODE", t));
            }
        }
    }
    popk_ode_free(o);
}

/* ---- tests: Michaelis-Menten -------------------------------------------------------- */

static void test_michaelis_menten(void)
{
    mm_model m = {12.0, 4.0, 50.0, 2};
    double c0 = 20.0, a0 = c0 * m.v;
    popk_error err;
    popk_ode *o = popk_ode_new(1, 2, mm_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 100000);
    double y[1], s[2];
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, &a0, NULL, &err), POPK_OK);
    for (size_t i = 0; i < N_OBS; i++) {
        double t = obs_times[i];
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, t, y, s, &err), POPK_OK);
        double c = mm_conc(c0, m.vm, m.km, m.v, t);
        /* The reference satisfies its implicit equation Km ln(C/C0) + C - C0 = -Vm t / V. */
        CU_ASSERT(close_enough(m.km * log(c / c0) + c - c0, -m.vm * t / m.v, 1e-12, 1e-12,
                               "Lambert-W reference self-check", t));
        CU_ASSERT(close_enough(y[0] / m.v, c, 1e-7, 1e-12, "MM concentration", t));
        double hv = 1e-5 * m.vm, hk = 1e-5 * m.km;
        double dvm = m.v * (mm_conc(c0, m.vm + hv, m.km, m.v, t) -
                            mm_conc(c0, m.vm - hv, m.km, m.v, t)) / (2 * hv);
        double dkm = m.v * (mm_conc(c0, m.vm, m.km + hk, m.v, t) -
                            mm_conc(c0, m.vm, m.km - hk, m.v, t)) / (2 * hk);
        CU_ASSERT(close_enough(s[0], dvm, 1e-5, 1e-7, "dA/dVm vs FD of Lambert W", t));
        CU_ASSERT(close_enough(s[1], dkm, 1e-5, 1e-7, "dA/dKm vs FD of Lambert W", t));
    }
    popk_ode_free(o);
}

/* ---- tests: resets ------------------------------------------------------------------ */

/* Seven reset/advance cycles that carry the state and sensitivities over unchanged must
 * reproduce one uninterrupted integration (the right-hand side is smooth). */
static void test_reset_cycles_match_uninterrupted(void)
{
    oral2_model m = {{1.1, 0.12, 0.35, 0.07}, 3};
    popk_error err;
    popk_ode *whole = popk_ode_new(3, 3, oral2_rhs, &m, &err);
    popk_ode *cycled = popk_ode_new(3, 3, oral2_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(whole);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cycled);
    popk_ode_set_tolerances(whole, 1e-10, 1e-12, 100000);
    popk_ode_set_tolerances(cycled, 1e-10, 1e-12, 100000);
    double y0[3] = {DOSE, 0.0, 0.0};
    double yw[3], sw[9], yc[3], sc[9];
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(whole, 0.0, y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(cycled, 0.0, y0, NULL, &err), POPK_OK);
    for (int cycle = 0; cycle < 7; cycle++) {
        double t0 = 24.0 * cycle;
        if (cycle > 0)
            CU_ASSERT_EQUAL_FATAL(popk_ode_reset(cycled, t0, yc, sc, &err), POPK_OK);
        const double offsets[] = {1.0, 6.5, 12.0, 17.5, 24.0};
        for (int i = 0; i < 5; i++) {
            double t = t0 + offsets[i];
            CU_ASSERT_EQUAL_FATAL(popk_ode_advance(whole, t, yw, sw, &err), POPK_OK);
            CU_ASSERT_EQUAL_FATAL(popk_ode_advance(cycled, t, yc, sc, &err), POPK_OK);
            for (int j = 0; j < 3; j++)
                CU_ASSERT(close_enough(yc[j], yw[j], 1e-7, 1e-10, "cycled state", t));
            for (int j = 0; j < 9; j++)
                CU_ASSERT(close_enough(sc[j], sw[j], 1e-6, 1e-8, "cycled sensitivity", t));
        }
    }
    popk_ode_stats st;
    popk_ode_get_stats(cycled, &st);
    CU_ASSERT_EQUAL(st.resets, 7);
    CU_ASSERT(st.steps > 0 && st.rhs_evals > 0 && st.jac_evals > 0 && st.sens_rhs_evals > 0);
    popk_ode_free(whole);
    popk_ode_free(cycled);
}

/* Seven daily doses, each a reset with the dose added to the depot, against the closed-form
 * superposition of seven single doses (the system is linear). */
static void test_seven_doses_superposition(void)
{
    oral2_model m = {{1.1, 0.12, 0.35, 0.07}, 0};
    popk_error err;
    popk_ode *o = popk_ode_new(3, 0, oral2_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 100000);
    double y[3] = {0.0, 0.0, 0.0};
    for (int dose = 0; dose < 7; dose++) {
        double t0 = 24.0 * dose;
        y[0] += DOSE;
        CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, t0, y, NULL, &err), POPK_OK);
        double span = dose == 6 ? 72.0 : 24.0;
        for (double dt = 0.5; dt <= span; dt *= 1.7) {
            CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, t0 + dt, y, NULL, &err), POPK_OK);
            double ref[3] = {0, 0, 0};
            for (int j = 0; j <= dose; j++) {
                double one[3];
                two_cmt_oral(m.p, DOSE, t0 + dt - 24.0 * j, one);
                for (int k = 0; k < 3; k++)
                    ref[k] += one[k];
            }
            for (int k = 0; k < 3; k++)
                CU_ASSERT(close_enough(y[k], ref[k], 1e-7, 1e-10, "multiple-dose state", t0 + dt));
        }
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, t0 + (dose == 6 ? 72.0 : 24.0), y, NULL, &err),
                              POPK_OK);
    }
    popk_ode_free(o);
}

/* The right-hand side must never be evaluated past the requested output time. */
static void test_never_past_tout(void)
{
    faulty_model m = faulty_well_behaved();
    popk_error err;
    popk_ode *o = popk_ode_new(1, 0, faulty_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    double y0 = 5.0, y;
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 1.0, &y0, NULL, &err), POPK_OK);
    const double touts[] = {1.7, 2.0, 9.5, 10.0, 30.0};
    for (size_t i = 0; i < sizeof touts / sizeof touts[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, touts[i], &y, NULL, &err), POPK_OK);
        CU_ASSERT(m.max_t_seen <= touts[i]);
        CU_ASSERT(close_enough(y, faulty_exact(m.k, 5.0, touts[i] - 1.0), 1e-6, 1e-12, "decay",
                               touts[i]));
    }
    popk_ode_free(o);
}

/* With a smooth-until time the solver may step beyond the outputs but never beyond it, and
 * the interpolated outputs keep the accuracy of stopping at each output. */
static void test_advance_smooth(void)
{
    faulty_model m = faulty_well_behaved();
    popk_error err;
    popk_ode *o = popk_ode_new(1, 1, faulty_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 100000);
    double y0 = 5.0, y, s;
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, &y0, NULL, &err), POPK_OK);
    for (double t = 0.5; t <= 12.0; t += 0.5) {
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance_smooth(o, t, 12.0, &y, &s, &err), POPK_OK);
        CU_ASSERT(m.max_t_seen <= 12.0);
        CU_ASSERT(close_enough(y, faulty_exact(m.k, 5.0, t), 1e-7, 0.0, "smooth advance", t));
        double dydk = -25.0 * t / ((1.0 + m.k * 5.0 * t) * (1.0 + m.k * 5.0 * t));
        CU_ASSERT(close_enough(s, dydk, 1e-5, 0.0, "smooth advance dy/dk", t));
    }
    /* Steps do not aim at 6 when smoothness extends to 12, so the solver ends past 6 + 1e-9
     * and a smooth-until time of 6 + 1e-9 is refused. */
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, &y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_advance_smooth(o, 6.0, 12.0, &y, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_advance_smooth(o, 6.0 + 1e-9, 6.0 + 1e-9, &y, NULL, &err),
                    POPK_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "already reached"));
    CU_ASSERT_EQUAL(popk_ode_advance_smooth(o, 3.0, 2.0, &y, NULL, &err), POPK_ERR_ARG);
    /* Unbounded smoothness. */
    CU_ASSERT_EQUAL(popk_ode_advance_smooth(o, 20.0, INFINITY, &y, NULL, &err), POPK_OK);
    CU_ASSERT(close_enough(y, faulty_exact(m.k, 5.0, 20.0), 1e-7, 0.0, "smooth advance", 20.0));
    popk_ode_free(o);
}

static void test_same_time_and_backwards(void)
{
    oral1_model m = {1.3, 0.11, 2};
    popk_error err;
    popk_ode *o = popk_ode_new(2, 2, oral1_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    double y0[2] = {DOSE, 3.0}, s0[4] = {1.0, 2.0, 3.0, 4.0}, y[2], s[4];
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 5.0, y0, s0, &err), POPK_OK);
    /* Output at the reset time is the initial state and sensitivities, exactly. */
    CU_ASSERT_EQUAL(popk_ode_advance(o, 5.0, y, s, &err), POPK_OK);
    CU_ASSERT(y[0] == y0[0] && y[1] == y0[1]);
    CU_ASSERT(memcmp(s, s0, sizeof s) == 0);
    CU_ASSERT_EQUAL(popk_ode_advance(o, 6.0, y, s, &err), POPK_OK);
    double y6[2] = {y[0], y[1]};
    CU_ASSERT_EQUAL(popk_ode_advance(o, 6.0, y, NULL, &err), POPK_OK);
    CU_ASSERT(y[0] == y6[0] && y[1] == y6[1]);
    CU_ASSERT_EQUAL(popk_ode_advance(o, 5.5, y, NULL, &err), POPK_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "before the current time"));
    popk_ode_free(o);
}

/* Two solvers used alternately give bit-identical results to each used alone: no state is
 * shared between handles. */
static void test_independent_solvers(void)
{
    oral2_model ma = {{1.1, 0.12, 0.35, 0.07}, 3}, mb = {{0.5, 0.3, 0.1, 0.2}, 3};
    double alone[2][10][3], y0[3] = {DOSE, 0.0, 0.0};
    popk_error err;
    oral2_model *models[2] = {&ma, &mb};
    for (int w = 0; w < 2; w++) {
        popk_ode *o = popk_ode_new(3, 3, oral2_rhs, models[w], &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        CU_ASSERT_EQUAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
        for (int i = 0; i < 10; i++)
            CU_ASSERT_EQUAL(popk_ode_advance(o, 2.5 * (i + 1), alone[w][i], NULL, &err), POPK_OK);
        popk_ode_free(o);
    }
    popk_ode *a = popk_ode_new(3, 3, oral2_rhs, &ma, &err);
    popk_ode *b = popk_ode_new(3, 3, oral2_rhs, &mb, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(popk_ode_reset(a, 0.0, y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_reset(b, 0.0, y0, NULL, &err), POPK_OK);
    for (int i = 0; i < 10; i++) {
        double ya[3], yb[3];
        CU_ASSERT_EQUAL(popk_ode_advance(a, 2.5 * (i + 1), ya, NULL, &err), POPK_OK);
        CU_ASSERT_EQUAL(popk_ode_advance(b, 2.5 * (i + 1), yb, NULL, &err), POPK_OK);
        CU_ASSERT(memcmp(ya, alone[0][i], sizeof ya) == 0);
        CU_ASSERT(memcmp(yb, alone[1][i], sizeof yb) == 0);
    }
    popk_ode_free(a);
    popk_ode_free(b);
}

/* A solver made with directions can run without them, then with them again. */
/* Sensitivities off, then on again, with either method (Adams switches between its plain and
 * its augmented system). */
static void test_sensitivities_toggle(void)
{
    oral1_model m = {1.3, 0.11, 2};
    for (int method = POPK_CVODE_BDF; method <= POPK_CVODE_ADAMS; method++) {
        popk_error err;
        popk_ode *o = popk_ode_new(2, 2, oral1_rhs, &m, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        popk_ode_set_method(o, method);
        popk_ode_set_tolerances(o, 1e-10, 1e-12, 100000);
        double y0[2] = {DOSE, 0.0}, y[2], s[4] = {-7.0, -7.0, -7.0, -7.0};
        popk_ode_set_sensitivities(o, 0);
        CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, 5.0, y, s, &err), POPK_OK);
        bateman_t b = bateman(DOSE, m.ka, m.ke, 5.0);
        CU_ASSERT(close_enough(y[1], b.ac, 1e-7, 0.0, "central, no sensitivities", 5.0));
        CU_ASSERT(s[0] == -7.0 && s[3] == -7.0);
        popk_ode_stats st;
        popk_ode_get_stats(o, &st);
        CU_ASSERT_EQUAL(st.sens_rhs_evals, 0);
        popk_ode_set_sensitivities(o, 1);
        CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, 5.0, y, s, &err), POPK_OK);
        CU_ASSERT(close_enough(y[1], b.ac, 1e-7, 0.0, "central, sensitivities on", 5.0));
        CU_ASSERT(close_enough(s[1], b.dac_dka, 1e-5, 0.0, "dAc/dka after toggling", 5.0));
        CU_ASSERT(close_enough(s[3], b.dac_dke, 1e-5, 0.0, "dAc/dke after toggling", 5.0));
        /* and off again: the plain system restarts from the new state */
        popk_ode_set_sensitivities(o, 0);
        CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
        CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, 5.0, y, NULL, &err), POPK_OK);
        CU_ASSERT(close_enough(y[1], b.ac, 1e-7, 0.0, "central, off again", 5.0));
        popk_ode_free(o);
    }
}

/* One solver per thread: subjects integrated in parallel give bit-identical results to the
 * same subjects integrated serially. */
static void test_threads(void)
{
    enum { NSUB = 8 };
    double serial[NSUB][3], parallel[NSUB][3];
    int failures = 0;
    for (int pass = 0; pass < 2; pass++) {
        double (*out)[3] = pass == 0 ? serial : parallel;
#pragma omp parallel for num_threads(2) schedule(dynamic) reduction(+ : failures) if (pass == 1)
        for (int i = 0; i < NSUB; i++) {
            oral2_model m = {{0.5 + 0.1 * i, 0.12, 0.35, 0.07}, 3};
            popk_error err;
            popk_ode *o = popk_ode_new(3, 3, oral2_rhs, &m, &err);
            double y0[3] = {DOSE, 0.0, 0.0};
            if (!o || popk_ode_reset(o, 0.0, y0, NULL, &err) != POPK_OK ||
                popk_ode_advance(o, 30.0, out[i], NULL, &err) != POPK_OK)
                failures++;
            popk_ode_free(o);
        }
    }
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT(memcmp(serial, parallel, sizeof serial) == 0);
    double ref[3];
    oral2_model m0 = {{0.5, 0.12, 0.35, 0.07}, 0};
    two_cmt_oral(m0.p, DOSE, 30.0, ref);
    CU_ASSERT(close_enough(parallel[0][1], ref[1], 1e-6, 0.0, "threaded central", 30.0));
}

/* ---- tests: stiffness and faults ---------------------------------------------------- */

static void test_robertson_stiff(void)
{
    popk_error err;
    popk_ode *o = popk_ode_new(3, 0, robertson_rhs, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-16, 20000);
    double y0[3] = {1.0, 0.0, 0.0}, y[3];
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
    /* Reference at t = 40 (Hairer & Wanner, Solving ODEs II; CVODE's cvRoberts_dns). */
    CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, 40.0, y, NULL, &err), POPK_OK);
    CU_ASSERT(close_enough(y[0], 0.7158271, 1e-6, 0.0, "Robertson y1", 40.0));
    CU_ASSERT(close_enough(y[1], 9.185535e-6, 1e-5, 0.0, "Robertson y2", 40.0));
    CU_ASSERT(close_enough(y[2], 0.2841637, 1e-6, 0.0, "Robertson y3", 40.0));
    /* To t = 1e11 (reference from the IVP test set, Mazzia & Magherini): far beyond what
     * an explicit method could reach with this step budget. */
    CU_ASSERT_EQUAL_FATAL(popk_ode_advance(o, 1e11, y, NULL, &err), POPK_OK);
    CU_ASSERT(close_enough(y[0], 0.2083340149701255e-7, 1e-4, 0.0, "Robertson y1", 1e11));
    CU_ASSERT(close_enough(y[2], 0.9999999791665050, 1e-9, 0.0, "Robertson y3", 1e11));
    CU_ASSERT(close_enough(y[0] + y[1] + y[2], 1.0, 1e-9, 0.0, "Robertson mass", 1e11));
    popk_ode_stats st;
    popk_ode_get_stats(o, &st);
    CU_ASSERT(st.steps < 20000);
    popk_ode_free(o);
}

static void test_fault_nan_rhs(void)
{
    faulty_model m = faulty_well_behaved();
    m.nan_after = 2.0;
    popk_error err;
    popk_ode *o = popk_ode_new(1, 0, faulty_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    double y0 = 5.0, y = 0.0;
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, &y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_advance(o, 1.5, &y, NULL, &err), POPK_OK);
    popk_error_clear(&err);
    CU_ASSERT_EQUAL(popk_ode_advance(o, 10.0, &y, NULL, &err), POPK_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "right-hand side of state 1 is nan"));
    double t_bad = time_in_message(err.message);
    CU_ASSERT(t_bad > 2.0 && t_bad < 10.0);
    /* Output untouched by the failure; the solver refuses to continue until reset. */
    CU_ASSERT(isfinite(y));
    CU_ASSERT_EQUAL(popk_ode_advance(o, 10.0, &y, NULL, &err), POPK_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "popk_ode_reset"));
    CU_ASSERT_EQUAL(popk_ode_reset(o, 0.0, &y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_advance(o, 1.0, &y, NULL, &err), POPK_OK);
    CU_ASSERT(close_enough(y, faulty_exact(m.k, 5.0, 1.0), 1e-6, 0.0, "after recovery", 1.0));
    popk_ode_free(o);
}

/* One NaN evaluation is answered "recoverable": the solver retries and the result is still
 * accurate. */
static void test_fault_transient_nan_recovers(void)
{
    faulty_model m = faulty_well_behaved();
    m.nan_at_call = 25;
    popk_error err;
    popk_ode *o = popk_ode_new(1, 0, faulty_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 10000);
    double y0 = 5.0, y;
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, &y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_advance(o, 20.0, &y, NULL, &err), POPK_OK);
    CU_ASSERT(m.calls > 25);
    CU_ASSERT(close_enough(y, faulty_exact(m.k, 5.0, 20.0), 1e-7, 0.0, "decay after a NaN", 20.0));
    popk_ode_free(o);
}

static void test_fault_nan_jacobian(void)
{
    faulty_model m = faulty_well_behaved();
    m.jac_nan_after = 2.0;
    popk_error err;
    popk_ode *o = popk_ode_new(1, 0, faulty_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    double y0 = 5.0, y;
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, &y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_advance(o, 50.0, &y, NULL, &err), POPK_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "Jacobian entry (1, 1) is nan"));
    double t_bad = time_in_message(err.message);
    CU_ASSERT(t_bad > 2.0 && t_bad < 50.0);
    popk_ode_free(o);
}

static void test_fault_inf_sensitivity(void)
{
    faulty_model m = faulty_well_behaved();
    m.dfdq_inf_after = 2.0;
    popk_error err;
    popk_ode *o = popk_ode_new(1, 1, faulty_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    double y0 = 5.0, y, s;
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, &y0, NULL, &err), POPK_OK);
    /* Before the fault: dy/dk = -y0^2 dt / (1 + k y0 dt)^2. */
    CU_ASSERT_EQUAL(popk_ode_advance(o, 1.0, &y, &s, &err), POPK_OK);
    CU_ASSERT(close_enough(s, -25.0 / ((1.0 + 1.5) * (1.0 + 1.5)), 1e-5, 0.0, "dy/dk", 1.0));
    CU_ASSERT_EQUAL(popk_ode_advance(o, 10.0, &y, &s, &err), POPK_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "sensitivity right-hand side of state 1 in "
                                               "direction 1 is inf"));
    double t_bad = time_in_message(err.message);
    CU_ASSERT(t_bad > 2.0 && t_bad < 2.5);
    popk_ode_free(o);
}

static void test_fault_max_steps(void)
{
    oral1_model m = {1.3, 0.11, 0};
    popk_error err;
    popk_ode *o = popk_ode_new(2, 0, oral1_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    popk_ode_set_tolerances(o, 1e-10, 1e-12, 5);
    double y0[2] = {DOSE, 0.0}, y[2];
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_advance(o, 100.0, y, NULL, &err), POPK_ERR_SOLVER);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "too much work"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "5 steps"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "before reaching t = 100"));
    double t_stop = strtod(strstr(err.message, "stopped at t = ") + 15, NULL);
    CU_ASSERT(t_stop > 0.0 && t_stop < 100.0);
    popk_ode_free(o);
}

static void test_fault_callback_status(void)
{
    faulty_model m = faulty_well_behaved();
    m.status_after = -1;
    m.fail_after = 3.0;
    popk_error err;
    popk_ode *o = popk_ode_new(1, 0, faulty_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    double y0 = 5.0, y;
    CU_ASSERT_EQUAL_FATAL(popk_ode_reset(o, 0.0, &y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_advance(o, 10.0, &y, NULL, &err), POPK_ERR_SOLVER);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "failed (status -1)"));
    double t_bad = time_in_message(err.message);
    CU_ASSERT(t_bad > 3.0 && t_bad <= 10.0);
    popk_ode_free(o);
}

static void test_fault_bad_input(void)
{
    popk_error err;
    oral1_model m = {1.3, 0.11, 0};
    CU_ASSERT_PTR_NULL(popk_ode_new(0, 0, oral1_rhs, &m, &err));
    CU_ASSERT_EQUAL(err.code, POPK_ERR_ARG);
    CU_ASSERT_PTR_NULL(popk_ode_new(2, -1, oral1_rhs, &m, &err));
    CU_ASSERT_PTR_NULL(popk_ode_new(2, 0, NULL, &m, &err));
    popk_ode_free(NULL);
    popk_ode_set_tolerances(NULL, 1e-6, 1e-6, 10);
    popk_ode_stats st;
    popk_ode_get_stats(NULL, &st);
    CU_ASSERT_EQUAL(st.steps, 0);
    CU_ASSERT_EQUAL(popk_ode_reset(NULL, 0.0, NULL, NULL, &err), POPK_ERR_ARG);
    CU_ASSERT_EQUAL(popk_ode_advance(NULL, 1.0, NULL, NULL, &err), POPK_ERR_ARG);

    popk_ode *o = popk_ode_new(2, 0, oral1_rhs, &m, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    double y[2], y0[2] = {DOSE, 0.0}, bad[2] = {DOSE, NAN};
    CU_ASSERT_EQUAL(popk_ode_advance(o, 1.0, y, NULL, &err), POPK_ERR_ARG);
    CU_ASSERT_EQUAL(popk_ode_reset(o, 0.0, NULL, NULL, &err), POPK_ERR_ARG);
    CU_ASSERT_EQUAL(popk_ode_reset(o, 0.0, bad, NULL, &err), POPK_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "initial state 2 is nan"));
    CU_ASSERT_EQUAL(popk_ode_reset(o, NAN, y0, NULL, &err), POPK_ERR_NUMERIC);
    popk_ode_set_tolerances(o, -1.0, 1e-6, 100);
    CU_ASSERT_EQUAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "rtol = -1"));
    popk_ode_set_tolerances(o, 1e-8, 1e-10, 1000);
    CU_ASSERT_EQUAL(popk_ode_reset(o, 0.0, y0, NULL, &err), POPK_OK);
    CU_ASSERT_EQUAL(popk_ode_advance(o, NAN, y, NULL, &err), POPK_ERR_ARG);
    popk_ode_free(o);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("ode", NULL, NULL);
    CU_add_test(s, "one_cmt_oral_bateman", test_one_cmt_oral_bateman);
    CU_add_test(s, "two_cmt_bolus", test_two_cmt_bolus);
    CU_add_test(s, "two_cmt_oral", test_two_cmt_oral);
    CU_add_test(s, "sens_one_cmt", test_sens_one_cmt);
    CU_add_test(s, "adams_and_bdf", test_adams_and_bdf);
    CU_add_test(s, "pred_adams_falls_back_to_bdf", test_pred_adams_falls_back_to_bdf);
    CU_add_test(s, "sens_two_cmt", test_sens_two_cmt);
    CU_add_test(s, "michaelis_menten", test_michaelis_menten);
    CU_add_test(s, "reset_cycles_match_uninterrupted", test_reset_cycles_match_uninterrupted);
    CU_add_test(s, "seven_doses_superposition", test_seven_doses_superposition);
    CU_add_test(s, "never_past_tout", test_never_past_tout);
    CU_add_test(s, "advance_smooth", test_advance_smooth);
    CU_add_test(s, "same_time_and_backwards", test_same_time_and_backwards);
    CU_add_test(s, "independent_solvers", test_independent_solvers);
    CU_add_test(s, "sensitivities_toggle", test_sensitivities_toggle);
    CU_add_test(s, "threads", test_threads);
    CU_add_test(s, "robertson_stiff", test_robertson_stiff);
    CU_add_test(s, "fault_nan_rhs", test_fault_nan_rhs);
    CU_add_test(s, "fault_transient_nan_recovers", test_fault_transient_nan_recovers);
    CU_add_test(s, "fault_nan_jacobian", test_fault_nan_jacobian);
    CU_add_test(s, "fault_inf_sensitivity", test_fault_inf_sensitivity);
    CU_add_test(s, "fault_max_steps", test_fault_max_steps);
    CU_add_test(s, "fault_callback_status", test_fault_callback_status);
    CU_add_test(s, "fault_bad_input", test_fault_bad_input);
    return popk_test_run();
}
