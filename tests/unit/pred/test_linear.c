/* Tests for pred/linear: closed forms against a long-double matrix exponential, semigroup,
 * mass balance, textbook formulas, dual derivatives against finite differences, bad input,
 * the propagator cache against the uncached advance. */
#include "pred/linear.h"

#include "common/popk_test.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define NMAX 4

/* Deterministic generator so every run tests the same systems. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}
static double log_uniform(double lo, double hi) { return lo * pow(hi / lo, uniform()); }

static popk_linsys make_system(int ncmt, int depot, double k10, double k12, double k21,
                               double k13, double k31, double ka)
{
    popk_linsys s;
    memset(&s, 0, sizeof s);
    s.ncmt = ncmt;
    s.depot = depot;
    s.nd = 0;
    s.k10.v = k10;
    s.k12.v = k12;
    s.k21.v = k21;
    s.k13.v = k13;
    s.k31.v = k31;
    s.ka.v = ka;
    return s;
}

/* Full rate matrix K (n x n) of the system, in long double. */
static void rate_matrix(const popk_linsys *s, long double K[NMAX][NMAX])
{
    int n = popk_linsys_n(s), c = s->depot ? 1 : 0;
    for (int i = 0; i < NMAX; i++)
        for (int j = 0; j < NMAX; j++)
            K[i][j] = 0;
    (void)n;
    if (s->depot) {
        K[0][0] = -(long double)s->ka.v;
        K[c][0] = s->ka.v;
    }
    K[c][c] = -((long double)s->k10.v + (s->ncmt >= 2 ? s->k12.v : 0) +
                (s->ncmt >= 3 ? s->k13.v : 0));
    if (s->ncmt >= 2) {
        K[c][c + 1] = s->k21.v;
        K[c + 1][c] = s->k12.v;
        K[c + 1][c + 1] = -(long double)s->k21.v;
    }
    if (s->ncmt >= 3) {
        K[c][c + 2] = s->k31.v;
        K[c + 2][c] = s->k13.v;
        K[c + 2][c + 2] = -(long double)s->k31.v;
    }
}

/* Reference: exp of the augmented matrix [[K dt, R dt], [0, 0]] applied to [A0; 1], by
 * scaling and squaring of a Taylor series in long double. */
static void reference(const popk_linsys *s, const double *A0, const double *R, double dt,
                      double *out)
{
    enum { M = NMAX + 1 };
    int n = popk_linsys_n(s), m = n + 1;
    long double K[NMAX][NMAX], X[M][M] = {{0}}, E[M][M] = {{0}}, T[M][M], P[M][M];
    rate_matrix(s, K);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++)
            X[i][j] = K[i][j] * dt;
        X[i][n] = R ? (long double)R[i] * dt : 0;
    }
    long double norm = 0;
    for (int i = 0; i < m; i++) {
        long double row = 0;
        for (int j = 0; j < m; j++)
            row += fabsl(X[i][j]);
        norm = row > norm ? row : norm;
    }
    int squarings = 0;
    while (norm > 0.0625L) {
        norm /= 2;
        squarings++;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++)
            X[i][j] = ldexpl(X[i][j], -squarings);
    /* E = I + X + X^2/2! + ... */
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < m; j++)
            T[i][j] = i == j;
        E[i][i] = 1;
    }
    for (int k = 1; k <= 30; k++) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                long double acc = 0;
                for (int l = 0; l < m; l++)
                    acc += T[i][l] * X[l][j];
                P[i][j] = acc / k;
            }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                T[i][j] = P[i][j];
                E[i][j] += P[i][j];
            }
    }
    for (int q = 0; q < squarings; q++) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                long double acc = 0;
                for (int l = 0; l < m; l++)
                    acc += E[i][l] * E[l][j];
                P[i][j] = acc;
            }
        memcpy(E, P, sizeof E);
    }
    for (int i = 0; i < n; i++) {
        long double acc = E[i][n];
        for (int j = 0; j < n; j++)
            acc += E[i][j] * A0[j];
        out[i] = (double)acc;
    }
}

static double rel_err(double got, double want)
{
    double den = fabs(want);
    return got == want ? 0.0 : fabs(got - want) / (den > 0 ? den : DBL_MIN);
}

/* A random system of the given shape; ka optionally placed on a disposition eigenvalue. */
static popk_linsys random_system(int ncmt, int depot)
{
    return make_system(ncmt, depot, log_uniform(0.01, 5), log_uniform(0.01, 5),
                       log_uniform(0.01, 5), log_uniform(0.01, 5), log_uniform(0.01, 5),
                       log_uniform(0.01, 10));
}

static void random_state(int n, double *A, double *R)
{
    for (int i = 0; i < n; i++) {
        A[i] = uniform() < 0.3 ? 0.0 : 100 * uniform();
        R[i] = uniform() < 0.5 ? 0.0 : 10 * uniform();
    }
}

/* Disposition eigenvalue magnitudes by bisection on the characteristic polynomial of the
 * disposition block (independent of the closed forms), used to place ka on them. */
static double char_poly(const popk_linsys *s, double r)
{
    double k10 = s->k10.v, k12 = s->k12.v, k21 = s->k21.v, k13 = s->k13.v, k31 = s->k31.v;
    if (s->ncmt == 1)
        return k10 - r;
    if (s->ncmt == 2)
        return (k10 + k12 - r) * (k21 - r) - k12 * k21;
    /* det(Kd + r I) expanded along the central row */
    return (k10 + k12 + k13 - r) * (k21 - r) * (k31 - r) - k12 * k21 * (k31 - r) -
           k13 * k31 * (k21 - r);
}

static double eigen_by_bisection(const popk_linsys *s, int which)
{
    /* roots interlace with the peripheral rates; bracket by scanning a fine log grid */
    double grid_lo = 1e-6, grid_hi = 100.0, prev_r = 0.0, prev_f = char_poly(s, 0.0);
    int found = 0;
    for (int g = 0; g <= 4000; g++) {
        double r = grid_lo * pow(grid_hi / grid_lo, g / 4000.0), f = char_poly(s, r);
        if ((f > 0) != (prev_f > 0)) {
            if (found++ == which) {
                double a = prev_r, b = r, fa = prev_f;
                for (int it = 0; it < 200; it++) {
                    double mid = 0.5 * (a + b), fm = char_poly(s, mid);
                    if ((fm > 0) == (fa > 0)) {
                        a = mid;
                        fa = fm;
                    } else {
                        b = mid;
                    }
                }
                return 0.5 * (a + b);
            }
        }
        prev_r = r;
        prev_f = f;
    }
    return NAN;
}

static double worst_vs_reference(const popk_linsys *s, const double *A0, const double *R,
                                 double dt)
{
    int n = popk_linsys_n(s);
    double A[NMAX], want[NMAX], worst = 0;
    memcpy(A, A0, sizeof(double) * (size_t)n);
    CU_ASSERT_EQUAL_FATAL(popk_linsys_advance_d(s, A, R, dt), 0);
    reference(s, A0, R, dt, want);
    for (int i = 0; i < n; i++) {
        double e = rel_err(A[i], want[i]);
        worst = e > worst ? e : worst;
    }
    return worst;
}

static void test_against_matrix_exponential(void)
{
    double worst = 0;
    for (int ncmt = 1; ncmt <= 3; ncmt++)
        for (int depot = 0; depot <= 1; depot++)
            for (int rep = 0; rep < 200; rep++) {
                popk_linsys s = random_system(ncmt, depot);
                double A0[NMAX], R[NMAX], dt = log_uniform(1e-3, 20);
                random_state(popk_linsys_n(&s), A0, R);
                double e = worst_vs_reference(&s, A0, R, dt);
                if (e > 1e-10)
                    printf("\n ncmt %d depot %d rep %d dt %g: rel err %.3g", ncmt, depot, rep,
                           dt, e);
                worst = e > worst ? e : worst;
            }
    printf("worst %.2g ", worst);
    CU_ASSERT(worst < 1e-10);
}

/* ka on, and within 1e-14 .. 1e-3 relative of, each disposition eigenvalue. */
static void test_confluent_absorption(void)
{
    const double offsets[] = {0.0, 1e-15, -1e-13, 1e-10, 1e-8, -1e-6, 1e-4, 1e-2};
    double worst = 0;
    for (int ncmt = 1; ncmt <= 3; ncmt++)
        for (int rep = 0; rep < 20; rep++) {
            popk_linsys s = random_system(ncmt, 1);
            for (int which = 0; which < ncmt; which++) {
                double r = eigen_by_bisection(&s, which);
                CU_ASSERT_FATAL(isfinite(r));
                for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
                    s.ka.v = r * (1 + offsets[o]);
                    double A0[NMAX], R[NMAX], dt = log_uniform(0.01, 20);
                    random_state(popk_linsys_n(&s), A0, R);
                    A0[0] = 50; /* always exercise the depot */
                    double e = worst_vs_reference(&s, A0, R, dt);
                    worst = e > worst ? e : worst;
                }
            }
        }
    printf("worst %.2g ", worst);
    CU_ASSERT(worst < 1e-10);
}

/* Two disposition eigenvalues close together or equal (k21 = k31, reducible Jordan case). */
static void test_repeated_disposition_eigenvalues(void)
{
    double A0[NMAX] = {10, 20, 30, 40}, R[NMAX] = {1, 2, 3, 4};
    popk_linsys s = make_system(3, 1, 0.3, 0.5, 0.7, 0.2, 0.7, 1.1); /* k21 == k31 */
    CU_ASSERT(worst_vs_reference(&s, A0, R, 3.0) < 1e-10);
    s.k31.v = 0.7 * (1 + 1e-9);
    CU_ASSERT(worst_vs_reference(&s, A0, R, 3.0) < 1e-10);
    /* k12 = 0 and k10 = k21: a defective (Jordan) disposition block */
    s = make_system(2, 0, 0.4, 0.0, 0.4, 0, 0, 0);
    CU_ASSERT(worst_vs_reference(&s, A0, R, 5.0) < 1e-10);
    s = make_system(2, 1, 0.4, 0.0, 0.4, 0, 0, 0.4); /* triple confluence with ka */
    CU_ASSERT(worst_vs_reference(&s, A0, R, 5.0) < 1e-10);
    s = make_system(3, 1, 0, 0, 0, 0, 0, 0); /* nothing moves: A + R dt */
    double A[NMAX];
    memcpy(A, A0, sizeof A);
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, 2.5), 0);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(A[i], A0[i] + R[i] * 2.5);
}

static void test_semigroup(void)
{
    double worst = 0;
    for (int ncmt = 1; ncmt <= 3; ncmt++)
        for (int depot = 0; depot <= 1; depot++)
            for (int rep = 0; rep < 50; rep++) {
                popk_linsys s = random_system(ncmt, depot);
                int n = popk_linsys_n(&s);
                double A0[NMAX], R[NMAX], A1[NMAX], A2[NMAX];
                double t1 = log_uniform(1e-3, 10), t2 = log_uniform(1e-3, 10);
                random_state(n, A0, R);
                memcpy(A1, A0, sizeof A1);
                memcpy(A2, A0, sizeof A2);
                CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A1, R, t1), 0);
                CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A1, R, t2), 0);
                CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A2, R, t1 + t2), 0);
                for (int i = 0; i < n; i++) {
                    double e = rel_err(A1[i], A2[i]);
                    worst = e > worst ? e : worst;
                }
            }
    printf("worst %.2g ", worst);
    CU_ASSERT(worst < 1e-12);
}

/* Gauss-Legendre 5-point nodes and weights on [-1, 1]. */
static const double gl_x[5] = {0.0, -0.5384693101056831, 0.5384693101056831,
                               -0.9061798459386640, 0.9061798459386640};
static const double gl_w[5] = {0.5688888888888889, 0.4786286704993665, 0.4786286704993665,
                               0.2369268850561891, 0.2369268850561891};

static void test_mass_balance(void)
{
    for (int ncmt = 1; ncmt <= 3; ncmt++)
        for (int depot = 0; depot <= 1; depot++) {
            popk_linsys s = random_system(ncmt, depot);
            int n = popk_linsys_n(&s), c = depot;
            double A0[NMAX], R[NMAX], A[NMAX], dt = 24.0;
            random_state(n, A0, R);
            double initial = 0, input = 0;
            for (int i = 0; i < n; i++) {
                initial += A0[i];
                input += R[i] * dt;
            }
            /* k10 = 0: the amount is conserved exactly */
            s.k10.v = 0;
            memcpy(A, A0, sizeof A);
            CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, dt), 0);
            double total = 0;
            for (int i = 0; i < n; i++)
                total += A[i];
            CU_ASSERT(rel_err(total, initial + input) < 1e-13);
            /* k10 small: add what was eliminated, k10 * integral of the central amount */
            s.k10.v = 1e-3;
            double eliminated = 0;
            const int panels = 48;
            for (int p = 0; p < panels; p++)
                for (int g = 0; g < 5; g++) {
                    double h = dt / panels, t = h * (p + 0.5 + 0.5 * gl_x[g]);
                    memcpy(A, A0, sizeof A);
                    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, t), 0);
                    eliminated += 0.5 * h * gl_w[g] * s.k10.v * A[c];
                }
            memcpy(A, A0, sizeof A);
            CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, dt), 0);
            total = eliminated;
            for (int i = 0; i < n; i++)
                total += A[i];
            CU_ASSERT(rel_err(total, initial + input) < 1e-13);
        }
}

static void test_textbook(void)
{
    /* 1-cmt oral (Bateman), dose D in the depot */
    const double D = 100, ka = 1.3, k = 0.2, t = 3.7;
    popk_linsys s = make_system(1, 1, k, 0, 0, 0, 0, ka);
    double A[4] = {D, 0};
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, NULL, t), 0);
    CU_ASSERT(rel_err(A[0], D * exp(-ka * t)) < 1e-14);
    CU_ASSERT(rel_err(A[1], D * ka / (ka - k) * (exp(-k * t) - exp(-ka * t))) < 1e-13);
    /* ka = k: D k t exp(-k t) */
    s.ka.v = k;
    A[0] = D;
    A[1] = 0;
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, NULL, t), 0);
    CU_ASSERT(rel_err(A[1], D * k * t * exp(-k * t)) < 1e-14);
    /* 1-cmt infusion: R/k (1 - exp(-k t)) */
    s = make_system(1, 0, k, 0, 0, 0, 0, 0);
    double R[1] = {7.0};
    A[0] = 0;
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, t), 0);
    CU_ASSERT(rel_err(A[0], R[0] / k * (1 - exp(-k * t))) < 1e-14);
    /* 2-cmt bolus: central A exp(-alpha t) + B exp(-beta t), peripheral k12 D/(alpha-beta)
     * (exp(-beta t) - exp(-alpha t)) */
    const double k10 = 0.25, k12 = 0.6, k21 = 0.15;
    s = make_system(2, 0, k10, k12, k21, 0, 0, 0);
    double sum = k10 + k12 + k21, disc = sqrt(sum * sum - 4 * k10 * k21);
    double alpha = 0.5 * (sum + disc), beta = 0.5 * (sum - disc);
    double a = D * (alpha - k21) / (alpha - beta), b = D * (k21 - beta) / (alpha - beta);
    for (double tt = 0.5; tt < 100; tt *= 3) {
        A[0] = D;
        A[1] = 0;
        CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, NULL, tt), 0);
        CU_ASSERT(rel_err(A[0], a * exp(-alpha * tt) + b * exp(-beta * tt)) < 1e-12);
        CU_ASSERT(rel_err(A[1], k12 * D / (alpha - beta) * (exp(-beta * tt) - exp(-alpha * tt))) <
                  1e-12);
    }
}

static void test_extreme_steps(void)
{
    popk_linsys s = make_system(3, 1, 0.2, 0.5, 0.3, 0.1, 0.05, 1.5);
    double A0[4] = {100, 10, 5, 1}, R[4] = {1, 2, 0, 0}, A[4];
    /* dt = 0: unchanged, bit for bit */
    memcpy(A, A0, sizeof A);
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, 0.0), 0);
    CU_ASSERT(memcmp(A, A0, sizeof A) == 0);
    /* tiny dt: A0 + dt (K A0 + R) + dt^2/2 K (K A0 + R) */
    long double K[NMAX][NMAX];
    rate_matrix(&s, K);
    double dt = 1e-9, slope[4], curve[4];
    for (int i = 0; i < 4; i++) {
        long double acc = R[i];
        for (int j = 0; j < 4; j++)
            acc += K[i][j] * A0[j];
        slope[i] = (double)acc;
    }
    for (int i = 0; i < 4; i++) {
        long double acc = 0;
        for (int j = 0; j < 4; j++)
            acc += K[i][j] * slope[j];
        curve[i] = (double)acc;
    }
    memcpy(A, A0, sizeof A);
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, dt), 0);
    for (int i = 0; i < 4; i++)
        CU_ASSERT(fabs(A[i] - (A0[i] + dt * slope[i] + 0.5 * dt * dt * curve[i])) <=
                  2 * DBL_EPSILON * fabs(A0[i]));
    /* huge dt: the steady state of the infusion, -K^-1 R, reached without overflow;
     * for this mammillary system: depot R0/ka, central (R0 + Rc)/k10, peripheral j
     * central k1j/kj1 */
    memcpy(A, A0, sizeof A);
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, 1e7), 0);
    double central = (R[0] + R[1]) / 0.2;
    CU_ASSERT(rel_err(A[0], R[0] / 1.5) < 1e-13);
    CU_ASSERT(rel_err(A[1], central) < 1e-12);
    CU_ASSERT(rel_err(A[2], central * 0.5 / 0.3) < 1e-12);
    CU_ASSERT(rel_err(A[3], central * 0.1 / 0.05) < 1e-12);
    /* very fast rates over a long step: depot and central empty, no NaN */
    s = make_system(2, 1, 1e6, 1e5, 1e3, 0, 0, 1e7);
    memcpy(A, A0, sizeof A);
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, NULL, 1e4), 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT(A[i] == 0.0);
    /* k10 = 0 with an input into the depot: everything accumulates, linearly in the limit */
    s = make_system(2, 1, 0, 0.5, 0.3, 0, 0, 1.5);
    double Rd[3] = {2, 0, 0};
    memset(A, 0, sizeof A);
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, Rd, 1e6), 0);
    CU_ASSERT(rel_err(A[0] + A[1] + A[2], 2e6) < 1e-14);
    CU_ASSERT(rel_err(A[0], 2 / 1.5) < 1e-12);
}

/* Seeds of every quantity a dual advance can be differentiated with respect to. */
enum { P_K10, P_K12, P_K21, P_K13, P_K31, P_KA, P_A0, P_R0 = P_A0 + NMAX, P_DT = P_R0 + NMAX,
       P_COUNT };

static double *param_slot(popk_linsys *s, double *A, double *R, double *dt, int p)
{
    switch (p) {
    case P_K10: return &s->k10.v;
    case P_K12: return &s->k12.v;
    case P_K21: return &s->k21.v;
    case P_K13: return &s->k13.v;
    case P_K31: return &s->k31.v;
    case P_KA: return &s->ka.v;
    case P_DT: return dt;
    default: return p < P_R0 ? &A[p - P_A0] : &R[p - P_R0];
    }
}

static int param_used(const popk_linsys *s, int p)
{
    int n = popk_linsys_n(s);
    if (p == P_K12 || p == P_K21)
        return s->ncmt >= 2;
    if (p == P_K13 || p == P_K31)
        return s->ncmt >= 3;
    if (p == P_KA)
        return s->depot;
    if (p >= P_A0 && p < P_R0)
        return p - P_A0 < n;
    if (p >= P_R0 && p < P_DT)
        return p - P_R0 < n;
    return 1;
}

/* Fourth-order central difference of the double advance w.r.t. parameter p. */
static void finite_difference(const popk_linsys *s0, const double *A0, const double *R0,
                              double dt0, int p, double *deriv)
{
    int n = popk_linsys_n(s0);
    double base = *param_slot((popk_linsys *)s0, (double *)A0, (double *)R0, &dt0, p);
    /* relative steps keep rate constants positive; amounts and inputs may go negative */
    double h = base != 0 ? 1e-3 * fabs(base) : 1e-3;
    double f[4][NMAX];
    const double steps[4] = {-2, -1, 1, 2};
    for (int k = 0; k < 4; k++) {
        popk_linsys s = *s0;
        double A[NMAX], R[NMAX], dt = dt0;
        memcpy(A, A0, sizeof A);
        memcpy(R, R0, sizeof R);
        *param_slot(&s, A, R, &dt, p) = base + steps[k] * h;
        CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, dt), 0);
        memcpy(f[k], A, sizeof A);
    }
    for (int i = 0; i < n; i++)
        deriv[i] = (8 * (f[2][i] - f[1][i]) - (f[3][i] - f[0][i])) / (12 * h);
}

/* Dual advance with every used parameter seeded; returns the worst relative discrepancy
 * with the finite differences (relative to the largest partial of the same output). */
static double dual_vs_fd(popk_linsys s, const double *A0, const double *R0, double dt0,
                         double *value_err)
{
    int n = popk_linsys_n(&s), nd = P_COUNT;
    popk_dual A[NMAX], R[NMAX], dt = pd_const(dt0, nd);
    s.nd = nd;
    popk_dual *k[6] = {&s.k10, &s.k12, &s.k21, &s.k13, &s.k31, &s.ka};
    for (int p = 0; p < 6; p++) {
        *k[p] = pd_const(k[p]->v, nd);
        k[p]->d[p] = 1;
    }
    for (int i = 0; i < n; i++) {
        A[i] = pd_const(A0[i], nd);
        A[i].d[P_A0 + i] = 1;
        R[i] = pd_const(R0[i], nd);
        R[i].d[P_R0 + i] = 1;
    }
    dt.d[P_DT] = 1;
    CU_ASSERT_EQUAL_FATAL(popk_linsys_advance(&s, A, R, dt), 0);

    /* fewer directions (the fast path specialises small counts) give the same partials */
    for (int few = 1; few <= 9; few++) {
        popk_linsys sf = s;
        sf.nd = few;
        popk_dual Af[NMAX], Rf[NMAX], dtf = dt;
        for (int i = 0; i < n; i++) {
            Af[i] = pd_const(A0[i], nd);
            Af[i].d[P_A0 + i] = 1;
            Rf[i] = R[i];
        }
        CU_ASSERT_EQUAL_FATAL(popk_linsys_advance(&sf, Af, Rf, dtf), 0);
        for (int i = 0; i < n; i++) {
            CU_ASSERT(Af[i].v == A[i].v);
            for (int p = 0; p < few; p++)
                CU_ASSERT(rel_err(Af[i].d[p], A[i].d[p]) < 1e-13 ||
                          fabs(Af[i].d[p] - A[i].d[p]) < 1e-13 * fabs(A[i].v));
        }
    }

    double Ad[NMAX];
    memcpy(Ad, A0, sizeof Ad);
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, Ad, R0, dt0), 0);
    *value_err = 0;
    for (int i = 0; i < n; i++) {
        double e = rel_err(A[i].v, Ad[i]);
        *value_err = e > *value_err ? e : *value_err;
    }

    double fd[P_COUNT][NMAX], scale[NMAX] = {0}, worst = 0;
    for (int p = 0; p < P_COUNT; p++) {
        if (!param_used(&s, p))
            continue;
        finite_difference(&s, A0, R0, dt0, p, fd[p]);
        for (int i = 0; i < n; i++)
            scale[i] = fmax(scale[i], fabs(fd[p][i]));
    }
    for (int p = 0; p < P_COUNT; p++) {
        if (!param_used(&s, p))
            continue;
        for (int i = 0; i < n; i++) {
            double e = fabs(A[i].d[p] - fd[p][i]) / fmax(fabs(fd[p][i]), 1e-3 * scale[i]);
            worst = e > worst ? e : worst;
        }
    }
    return worst;
}

static void test_dual_derivatives(void)
{
    double worst = 0, worst_value = 0;
    for (int ncmt = 1; ncmt <= 3; ncmt++)
        for (int depot = 0; depot <= 1; depot++)
            for (int rep = 0; rep < 12; rep++) {
                popk_linsys s = random_system(ncmt, depot);
                double A0[NMAX], R[NMAX], dt = log_uniform(0.05, 10), verr;
                random_state(popk_linsys_n(&s), A0, R);
                if (depot && rep % 3 == 0) /* on or next to a disposition eigenvalue */
                    s.ka.v = eigen_by_bisection(&s, rep % ncmt) * (rep % 2 ? 1 + 1e-9 : 1);
                double e = dual_vs_fd(s, A0, R, dt, &verr);
                if (e > 1e-7)
                    printf("\n ncmt %d depot %d rep %d: derivative rel err %.3g", ncmt, depot,
                           rep, e);
                worst = e > worst ? e : worst;
                worst_value = verr > worst_value ? verr : worst_value;
            }
    printf("worst %.2g (values %.2g) ", worst, worst_value);
    CU_ASSERT(worst < 1e-7);
    CU_ASSERT(worst_value < 1e-14);
}

/* Two disposition eigenvalues 1e-5 apart (k12 tiny, k10 = k21): derivatives w.r.t. each
 * rate constant against fourth-order differences of the long-double reference, whose
 * steps may cross k12 = 0 (the reference does not care); 1e-7 apart: refused. */
static void test_dual_near_repeated_eigenvalues(void)
{
    double A0[NMAX] = {10, 20, 30, 40}, R0[NMAX] = {1, 2, 3, 4}, dt0 = 3.0, worst = 0;
    for (int depot = 0; depot <= 1; depot++) {
        popk_linsys s = make_system(2, depot, 0.4, 1e-11, 0.4, 0, 0, 0.9);
        int n = popk_linsys_n(&s), nd = 4;
        s.nd = nd;
        popk_dual *k[4] = {&s.k10, &s.k12, &s.k21, &s.ka};
        for (int p = 0; p < 4; p++) {
            *k[p] = pd_const(k[p]->v, nd);
            k[p]->d[p] = 1;
        }
        popk_dual A[NMAX], R[NMAX];
        for (int i = 0; i < n; i++) {
            A[i] = pd_const(A0[i], nd);
            R[i] = pd_const(R0[i], nd);
        }
        CU_ASSERT_EQUAL_FATAL(popk_linsys_advance(&s, A, R, pd_const(dt0, nd)), 0);
        double fd[4][NMAX], scale[NMAX] = {0};
        const int np = depot ? 4 : 3;
        for (int p = 0; p < np; p++) {
            const double h = 1e-4, steps[4] = {-2, -1, 1, 2};
            double f[4][NMAX];
            for (int j = 0; j < 4; j++) {
                popk_linsys t = s;
                popk_dual *kt[4] = {&t.k10, &t.k12, &t.k21, &t.ka};
                kt[p]->v += steps[j] * h;
                reference(&t, A0, R0, dt0, f[j]);
            }
            for (int i = 0; i < n; i++) {
                fd[p][i] = (8 * (f[2][i] - f[1][i]) - (f[3][i] - f[0][i])) / (12 * h);
                scale[i] = fmax(scale[i], fabs(fd[p][i]));
            }
        }
        /* relative to the partial itself, or to 1e-3 of the largest partial of the same
         * output (a peripheral barely coupled has partials 1e-11 of its others) */
        for (int p = 0; p < np; p++)
            for (int i = 0; i < n; i++) {
                double e = fabs(A[i].d[p] - fd[p][i]) / fmax(fabs(fd[p][i]), 1e-3 * scale[i]);
                worst = e > worst ? e : worst;
            }
        s.k12.v = 1e-15;
        for (int i = 0; i < n; i++)
            A[i] = pd_const(A0[i], nd);
        CU_ASSERT_EQUAL(popk_linsys_advance(&s, A, R, pd_const(dt0, nd)), -1);
        CU_ASSERT_PTR_NOT_NULL(popk_linsys_why(&s, dt0));
        s.nd = 0; /* values alone are fine */
        CU_ASSERT_PTR_NULL(popk_linsys_why(&s, dt0));
        CU_ASSERT(worst_vs_reference(&s, A0, R0, dt0) < 1e-12);
    }
    printf("worst %.2g ", worst);
    CU_ASSERT(worst < 1e-9);
}

/* d/d(dt) at dt = 0 is K A0 + R (a one-sided point, so checked against the matrix). */
static void test_dual_at_zero_step(void)
{
    for (int ncmt = 1; ncmt <= 3; ncmt++)
        for (int depot = 0; depot <= 1; depot++) {
            popk_linsys s = make_system(ncmt, depot, 0.2, 0.5, 0.3, 0.1, 0.05, 1.5);
            int nd = 1, n = popk_linsys_n(&s);
            s.nd = nd;
            double A0[4] = {100, 10, 5, 1}, R0[4] = {1, 2, 3, 4};
            popk_dual A[4], R[4], dt = pd_const(0.0, nd);
            dt.d[0] = 1;
            popk_dual *k[6] = {&s.k10, &s.k12, &s.k21, &s.k13, &s.k31, &s.ka};
            for (int p = 0; p < 6; p++)
                *k[p] = pd_const(k[p]->v, nd);
            for (int i = 0; i < n; i++) {
                A[i] = pd_const(A0[i], nd);
                R[i] = pd_const(R0[i], nd);
            }
            CU_ASSERT_EQUAL(popk_linsys_advance(&s, A, R, dt), 0);
            long double K[NMAX][NMAX];
            rate_matrix(&s, K);
            for (int i = 0; i < n; i++) {
                long double slope = R0[i];
                for (int j = 0; j < n; j++)
                    slope += K[i][j] * A0[j];
                CU_ASSERT_EQUAL(A[i].v, A0[i]);
                CU_ASSERT(rel_err(A[i].d[0], (double)slope) < 1e-14);
            }
        }
}

static void test_from_clearances(void)
{
    int nd = 2;
    popk_linsys s;
    memset(&s, 0, sizeof s);
    s.nd = nd;
    popk_dual cl = pd_const(3.0, nd), v = pd_const(20.0, nd), q2 = pd_const(5.0, nd),
              v2 = pd_const(40.0, nd), ka = pd_const(1.2, nd);
    cl.d[0] = 1;
    v.d[1] = 1;
    popk_linsys_from_clearances(&s, &cl, &v, &q2, &v2, NULL, NULL, &ka);
    CU_ASSERT_EQUAL(s.ncmt, 2);
    CU_ASSERT_EQUAL(s.depot, 1);
    CU_ASSERT_EQUAL(popk_linsys_n(&s), 3);
    CU_ASSERT(rel_err(s.k10.v, 0.15) < 1e-15);
    CU_ASSERT(rel_err(s.k12.v, 0.25) < 1e-15);
    CU_ASSERT(rel_err(s.k21.v, 0.125) < 1e-15);
    CU_ASSERT_EQUAL(s.k13.v, 0.0);
    CU_ASSERT(rel_err(s.k10.d[0], 1.0 / 20) < 1e-15);      /* d(CL/V)/dCL */
    CU_ASSERT(rel_err(s.k10.d[1], -3.0 / 400) < 1e-15);    /* d(CL/V)/dV */
    CU_ASSERT(rel_err(s.k12.d[1], -5.0 / 400) < 1e-15);    /* d(Q/V)/dV */
    CU_ASSERT_EQUAL(s.k21.d[1], 0.0);
    CU_ASSERT_EQUAL(s.ka.v, 1.2);
    popk_linsys_from_clearances(&s, &cl, &v, NULL, NULL, NULL, NULL, NULL);
    CU_ASSERT_EQUAL(s.ncmt, 1);
    CU_ASSERT_EQUAL(s.depot, 0);
}

static void test_invalid(void)
{
    double A[4] = {1, 2, 3, 4}, R[4] = {0};
    popk_linsys good = make_system(3, 1, 0.2, 0.5, 0.3, 0.1, 0.05, 1.5);
    CU_ASSERT_PTR_NULL(popk_linsys_why(&good, 1.0));
    const double bad[] = {-1e-300, -1.0, NAN, INFINITY};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        for (int p = 0; p < 6; p++) {
            popk_linsys s = good;
            popk_dual *k[6] = {&s.k10, &s.k12, &s.k21, &s.k13, &s.k31, &s.ka};
            k[p]->v = bad[b];
            CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, 1.0), -1);
            CU_ASSERT_PTR_NOT_NULL(popk_linsys_why(&s, 1.0));
        }
        CU_ASSERT_EQUAL(popk_linsys_advance_d(&good, A, R, bad[b]), -1);
        CU_ASSERT_PTR_NOT_NULL(popk_linsys_why(&good, bad[b]));
        popk_dual Ad[4];
        for (int i = 0; i < 4; i++)
            Ad[i] = pd_const(A[i], 0);
        CU_ASSERT_EQUAL(popk_linsys_advance(&good, Ad, NULL, pd_const(bad[b], 0)), -1);
    }
    /* unused constants are ignored */
    popk_linsys s = make_system(1, 0, 0.2, -1, NAN, -1, NAN, -5);
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, 1.0), 0);
    s.ncmt = 4;
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, 1.0), -1);
    s.ncmt = 0;
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, A, R, 1.0), -1);
    CU_ASSERT_STRING_EQUAL(popk_linsys_why(&s, 1.0), "number of compartments must be 1, 2 or 3");
    /* the amounts are untouched on failure */
    double before[4];
    memcpy(before, A, sizeof A);
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&good, A, R, -1.0), -1);
    CU_ASSERT(memcmp(before, A, sizeof A) == 0);
    /* derivatives at a repeated (here defective) disposition eigenvalue are refused */
    s = make_system(2, 0, 0.4, 0.0, 0.4, 0, 0, 0);
    s.nd = 1;
    s.k10.d[0] = 1;
    popk_dual Ad[2] = {pd_const(1, 1), pd_const(0, 1)};
    CU_ASSERT_EQUAL(popk_linsys_advance(&s, Ad, NULL, pd_const(1.0, 1)), -1);
    CU_ASSERT_PTR_NOT_NULL(popk_linsys_why(&s, 1.0));
    /* ... but values are fine there */
    double Av[2] = {1, 0};
    CU_ASSERT_EQUAL(popk_linsys_advance_d(&s, Av, NULL, 1.0), 0);
    CU_ASSERT(rel_err(Av[0], exp(-0.4)) < 1e-15);
}

/* The cache is transparent: a sequence of advances through popk_linprop (repeated steps,
 * fresh steps beyond its capacity, the same step length with other partials, inputs
 * switching on for a cached step, a change of system) gives bit for bit what the uncached
 * advance gives, for direction counts with a specialised path and without one. */
static void test_cache_matches_uncached(void)
{
    const int counts[] = {0, 3, 7, 11};
    popk_linprop *cache = popk_linprop_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(cache);
    int mismatches = 0, advances = 0;
    for (int ncmt = 1; ncmt <= 3; ncmt++)
        for (int depot = 0; depot <= 1; depot++)
            for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
                const int nd = counts[c];
                popk_linsys s = random_system(ncmt, depot);
                s.nd = nd;
                popk_dual *k[6] = {&s.k10, &s.k12, &s.k21, &s.k13, &s.k31, &s.ka};
                for (int p = 0; p < 6; p++) {
                    *k[p] = pd_const(k[p]->v, nd);
                    for (int q = 0; q < nd; q++)
                        k[p]->d[q] = uniform() - 0.5;
                }
                const int n = popk_linsys_n(&s);
                popk_dual cached[NMAX], plain[NMAX], R[NMAX];
                for (int i = 0; i < n; i++) {
                    cached[i] = pd_const(100 * uniform(), nd);
                    R[i] = pd_const(0.0, nd);
                }
                popk_linprop_set(cache, &s);
                const double pool[4] = {0.25, 1.0, 12.0, 24.0};
                for (int step = 0; step < 80; step++) {
                    if (step == 50) { /* another system: nothing cached may be reused */
                        s.k10.v *= 1.5;
                        popk_linprop_set(cache, &s);
                    }
                    popk_dual dt = pd_const(step % 3 ? pool[step % 4] : log_uniform(0.01, 30), nd);
                    if (nd > 0 && step % 7 == 0)
                        dt.d[step % nd] = 1.0; /* a known length with partials: a new step */
                    const popk_dual *input = step % 5 == 0 ? NULL : R;
                    for (int i = 0; i < n; i++) {
                        R[i] = pd_const(step % 4 == 1 && uniform() < 0.5 ? 10 * uniform() : 0.0, nd);
                        if (i == 0 && step % 3 == 0)
                            cached[i].v += 50; /* a dose */
                        plain[i] = cached[i];
                    }
                    CU_ASSERT_EQUAL_FATAL(popk_linprop_advance(cache, cached, input, &dt), 0);
                    CU_ASSERT_EQUAL_FATAL(popk_linsys_advance(&s, plain, input, dt), 0);
                    for (int i = 0; i < n; i++)
                        if (cached[i].v != plain[i].v ||
                            memcmp(cached[i].d, plain[i].d, sizeof(double) * (size_t)nd))
                            mismatches++;
                    advances++;
                }
            }
    printf("%d advances ", advances);
    CU_ASSERT_EQUAL(mismatches, 0);

    /* refusals: no system yet, an invalid system, a bad step; amounts untouched */
    popk_linprop *fresh = popk_linprop_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(fresh);
    popk_dual A[4] = {pd_const(1, 1), pd_const(2, 1), pd_const(3, 1), pd_const(4, 1)};
    popk_dual dt = pd_const(1.0, 1), bad_dt = pd_const(-1.0, 1);
    CU_ASSERT_EQUAL(popk_linprop_advance(fresh, A, NULL, &dt), -1);
    popk_linsys s = make_system(2, 0, 0.4, 0.0, 0.4, 0, 0, 0); /* repeated eigenvalue */
    s.nd = 1;
    s.k10.d[0] = 1;
    popk_linprop_set(fresh, &s);
    CU_ASSERT_EQUAL(popk_linprop_advance(fresh, A, NULL, &dt), -1);
    s.k10.v = -1;
    popk_linprop_set(fresh, &s);
    CU_ASSERT_EQUAL(popk_linprop_advance(fresh, A, NULL, &dt), -1);
    s = make_system(2, 1, 0.2, 0.5, 0.3, 0, 0, 1.5);
    s.nd = 1;
    popk_linprop_set(fresh, &s);
    CU_ASSERT_EQUAL(popk_linprop_advance(fresh, A, NULL, &bad_dt), -1);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(A[i].v, i + 1.0);
    CU_ASSERT_EQUAL(popk_linprop_advance(fresh, A, NULL, &dt), 0);
    CU_ASSERT(A[0].v < 1.0);
    popk_linprop_free(fresh);
    popk_linprop_free(cache);
    popk_linprop_free(NULL);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("linear", NULL, NULL);
    CU_add_test(s, "against matrix exponential", test_against_matrix_exponential);
    CU_add_test(s, "confluent absorption", test_confluent_absorption);
    CU_add_test(s, "repeated disposition eigenvalues", test_repeated_disposition_eigenvalues);
    CU_add_test(s, "semigroup", test_semigroup);
    CU_add_test(s, "mass balance", test_mass_balance);
    CU_add_test(s, "textbook closed forms", test_textbook);
    CU_add_test(s, "extreme steps", test_extreme_steps);
    CU_add_test(s, "dual vs finite differences", test_dual_derivatives);
    CU_add_test(s, "dual near repeated eigenvalues", test_dual_near_repeated_eigenvalues);
    CU_add_test(s, "dual at zero step", test_dual_at_zero_step);
    CU_add_test(s, "from clearances", test_from_clearances);
    CU_add_test(s, "invalid input", test_invalid);
    CU_add_test(s, "cache matches uncached", test_cache_matches_uncached);
    return popk_test_run();
}
