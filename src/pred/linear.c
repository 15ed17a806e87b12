/* pred/linear.c — exact closed-form advance of linear 1-3 compartment systems (± depot).
 *
 * dA/dt = K A + R over a step dt gives A(dt) = exp(K dt) A + phi(K) R with
 * phi(z) = (exp(z dt) - 1)/z, an entire function, so no inverse of K appears and k10 = 0 is
 * exact. K is block triangular (the depot only feeds the central compartment), so with the
 * disposition block Kd:
 *   depot:        exp(-ka dt) Ad + E(-ka, 0) Rd
 *   disposition:  E(Kd) Ac + E(Kd, 0) Rc + ka [Ad E(Kd, -ka) + Rd E(Kd, -ka, 0)] e_central
 * where E(x1..xk) is the divided difference of x -> exp(x dt) (E(z, a) is the response of
 * Kd to an input decaying like exp(a t), E(z, a, 0) its integral). Each E(Kd, ...) is
 * evaluated in Newton form over the disposition eigenvalues ordered fastest first: then
 * (Kd + r1 I) is entrywise nonnegative and (Kd + r1 I)(Kd + r2 I) is a positive multiple of
 * the slowest spectral projector (Perron-Frobenius), so for nonnegative amounts every term is
 * nonnegative and small compartments keep their relative accuracy. The depot is kept out of
 * that interpolation for the same reason (a fast-eliminating central compartment next to a
 * slow depot would otherwise be computed as a difference of much larger numbers).
 *
 * Two renderings of these formulas: linear_impl.h (any ncmt, memoised divided differences,
 * instantiated on doubles and duals; used for 3 compartments) and straight-line code below
 * for 1-2 compartments, the hot path (its dual version carries partials of divided
 * differences as divided differences with a repeated node). Tests hold both to the same
 * independent references. */
#include "pred/linear.h"

#include <math.h>
#include <string.h>

/* nodes: 3 disposition eigenvalues, -ka, 0 */
#define LINEAR_NODES 5
/* Scaled spread above which divided differences are taken by recursion (which then loses
 * at most a factor (count-1)/DD_SPREAD per level), below by series. */
#define DD_SPREAD 0.5
#define DD_TERMS 13
/* relative gap between disposition eigenvalues below which derivatives are refused */
#define LINEAR_MIN_EIGEN_GAP 1e-6

static const double inv_factorial[] = {
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362880.0,
    1.0 / 3628800.0,
    1.0 / 39916800.0,
    1.0 / 479001600.0,
    1.0 / 6227020800.0,
    1.0 / 87178291200.0,
    1.0 / 1307674368000.0,
    1.0 / 20922789888000.0,
    1.0 / 355687428096000.0,
    1.0 / 6402373705728000.0,
    1.0 / 121645100408832000.0,
    1.0 / 2432902008176640000.0,
};
_Static_assert(sizeof inv_factorial / sizeof inv_factorial[0] >= DD_TERMS + 6,
               "factorial table too short for the series");

/* ---- plain doubles (nd ignored) ---- */
static inline double dbl_val(const double *a) { return *a; }
static inline void dbl_set(double *r, double v, int nd) { (void)nd; *r = v; }
static inline void dbl_load(double *r, const popk_dual *a, int nd) { (void)nd; *r = a->v; }
static inline void dbl_add(double *r, const double *a, const double *b, int nd)
{
    (void)nd;
    *r = *a + *b;
}
static inline void dbl_addc(double *r, const double *a, double c, int nd)
{
    (void)nd;
    *r = *a + c;
}
static inline void dbl_sub(double *r, const double *a, const double *b, int nd)
{
    (void)nd;
    *r = *a - *b;
}
static inline void dbl_mul(double *r, const double *a, const double *b, int nd)
{
    (void)nd;
    *r = *a * *b;
}
static inline void dbl_div(double *r, const double *a, const double *b, int nd)
{
    (void)nd;
    *r = *a / *b;
}
static inline void dbl_scale(double *r, const double *a, double c, int nd)
{
    (void)nd;
    *r = *a * c;
}
static inline void dbl_exp(double *r, const double *a, int nd)
{
    (void)nd;
    *r = exp(*a);
}
static inline void dbl_axpy(double *y, const double *a, const double *x, int nd)
{
    (void)nd;
    *y += *a * *x;
}
static inline int dbl_nonzero(const double *a, int nd)
{
    (void)nd;
    return *a != 0;
}

/* ---- dual numbers (results may alias operands) ---- */
static inline double dl_val(const popk_dual *a) { return a->v; }
static inline void dl_set(popk_dual *r, double v, int nd)
{
    r->v = v;
    memset(r->d, 0, sizeof(double) * (size_t)nd);
}
static inline void dl_load(popk_dual *r, const popk_dual *a, int nd)
{
    r->v = a->v;
    memcpy(r->d, a->d, sizeof(double) * (size_t)nd);
}
static inline void dl_add(popk_dual *r, const popk_dual *a, const popk_dual *b, int nd)
{
    r->v = a->v + b->v;
    for (int i = 0; i < nd; i++)
        r->d[i] = a->d[i] + b->d[i];
}
static inline void dl_addc(popk_dual *r, const popk_dual *a, double c, int nd)
{
    r->v = a->v + c;
    if (r != a)
        memcpy(r->d, a->d, sizeof(double) * (size_t)nd);
}
static inline void dl_sub(popk_dual *r, const popk_dual *a, const popk_dual *b, int nd)
{
    r->v = a->v - b->v;
    for (int i = 0; i < nd; i++)
        r->d[i] = a->d[i] - b->d[i];
}
static inline void dl_mul(popk_dual *r, const popk_dual *a, const popk_dual *b, int nd)
{
    double av = a->v, bv = b->v;
    for (int i = 0; i < nd; i++)
        r->d[i] = a->d[i] * bv + av * b->d[i];
    r->v = av * bv;
}
static inline void dl_div(popk_dual *r, const popk_dual *a, const popk_dual *b, int nd)
{
    double bv = b->v, q = a->v / bv;
    for (int i = 0; i < nd; i++)
        r->d[i] = (a->d[i] - q * b->d[i]) / bv;
    r->v = q;
}
static inline void dl_scale(popk_dual *r, const popk_dual *a, double c, int nd)
{
    r->v = a->v * c;
    for (int i = 0; i < nd; i++)
        r->d[i] = a->d[i] * c;
}
static inline void dl_exp(popk_dual *r, const popk_dual *a, int nd)
{
    double e = exp(a->v);
    for (int i = 0; i < nd; i++)
        r->d[i] = e * a->d[i];
    r->v = e;
}
static inline void dl_axpy(popk_dual *y, const popk_dual *a, const popk_dual *x, int nd)
{
    double av = a->v, xv = x->v;
    for (int i = 0; i < nd; i++)
        y->d[i] += a->d[i] * xv + av * x->d[i];
    y->v += av * xv;
}
static inline int dl_nonzero(const popk_dual *a, int nd)
{
    if (a->v != 0)
        return 1;
    for (int i = 0; i < nd; i++)
        if (a->d[i] != 0)
            return 1;
    return 0;
}

#define NUM double
#define N(name) dbl_##name
#define LINEAR_DUAL 0
#include "pred/linear_impl.h"
#undef NUM
#undef N
#undef LINEAR_DUAL

#define NUM popk_dual
#define N(name) dl_##name
#define LINEAR_DUAL 1
#include "pred/linear_impl.h"
#undef NUM
#undef N
#undef LINEAR_DUAL

/* ---- straight-line double path for 1 and 2 compartments (the common, hot case) ----
 * Same formulas as the template (Newton form, fastest eigenvalue first, depot kept apart),
 * with the divided differences taken from sorted node lists instead of a memo table. */

/* Divided difference of exp over k <= 6 ascending scaled nodes y with e = exp(y). */
static double dd_sorted(const double *y, const double *e, int k)
{
    if (k == 1)
        return e[0];
    double spread = y[k - 1] - y[0];
    if (spread > DD_SPREAD)
        return (dd_sorted(y + 1, e + 1, k - 1) - dd_sorted(y, e, k - 1)) / spread;
    if (k == 2)
        return spread > 0 ? e[1] * (expm1(-spread) / -spread) : e[1];
    double center = 0.5 * (y[0] + y[k - 1]), h[DD_TERMS + 1];
    int terms = 0;
    for (double bound = 1.0; bound > 1e-17 && terms < DD_TERMS; bound *= 0.5 * spread / terms)
        terms++;
    h[0] = 1.0;
    for (int j = 1; j <= terms; j++)
        h[j] = 0.0;
    for (int i = 0; i < k; i++) {
        double z = y[i] - center;
        for (int j = 1; j <= terms; j++)
            h[j] += z * h[j - 1];
    }
    double sum = 0.0;
    for (int j = terms; j >= 0; j--)
        sum += h[j] * inv_factorial[j + k - 1];
    return sum * exp(center);
}

/* Divided difference over k <= 6 unsorted nodes (sorts a copy). */
static double dd_nodes(int k, const double *y_in, const double *e_in)
{
    double y[6], e[6];
    for (int i = 0; i < k; i++) {
        int j = i;
        while (j > 0 && y[j - 1] > y_in[i]) {
            y[j] = y[j - 1];
            e[j] = e[j - 1];
            j--;
        }
        y[j] = y_in[i];
        e[j] = e_in[i];
    }
    return dd_sorted(y, e, k);
}

static void fast_advance_d(const popk_linsys *s, double *A, const double *R, double t)
{
    const int two = s->ncmt == 2, dep = s->depot ? 1 : 0;
    const double k10 = s->k10.v, k12 = two ? s->k12.v : 0.0, k21 = two ? s->k21.v : 0.0;
    const double ka = dep ? s->ka.v : 0.0;
    double r1 = k10, r2 = 0.0;
    if (two) {
        double diff = k10 + k12 - k21;
        r1 = 0.5 * (k10 + k12 + k21 + sqrt(diff * diff + 4.0 * k12 * k21));
        r2 = r1 > 0 ? k10 * k21 / r1 : 0.0;
    }
    const double Ad = dep ? A[0] : 0.0, Rd = dep && R ? R[0] : 0.0;
    const double x0 = A[dep], x1 = two ? A[dep + 1] : 0.0;
    const double w0 = R ? R[dep] : 0.0, w1 = R && two ? R[dep + 1] : 0.0;
    const int input = w0 != 0 || w1 != 0, from_depot = Ad != 0 || Rd != 0;

    /* nodes: a = fast eigenvalue, b = slow one, c = depot, z = zero */
    double y[4] = {-r1 * t, -r2 * t, -ka * t, 0.0};
    double e[4] = {exp(y[0]), two ? exp(y[1]) : 0.0, dep ? exp(y[2]) : 0.0, 1.0};
    /* (Kd + r1 I) applied to a vector, 2-compartment form (k12 = k21 = 0 for one) */
    const double d0 = r1 - k10 - k12, d1 = r1 - k21;

    double out0 = e[0] * x0, out1 = e[0] * x1;
    if (two) {
        double c = t * dd_nodes(2, y, e);
        out0 += c * (d0 * x0 + k21 * x1);
        out1 += c * (k12 * x0 + d1 * x1);
    }
    if (input) { /* sets {a, 0} and {a, 0, b} */
        double yz[3] = {y[0], 0.0, y[1]}, ez[3] = {e[0], 1.0, e[1]};
        double c = t * dd_nodes(2, yz, ez);
        out0 += c * w0;
        out1 += c * w1;
        if (two) {
            c = t * t * dd_nodes(3, yz, ez);
            out0 += c * (d0 * w0 + k21 * w1);
            out1 += c * (k12 * w0 + d1 * w1);
        }
    }
    if (from_depot) { /* sets {a, c}, {a, c, b} and with an input {a, c, 0}, {a, c, 0, b} */
        double yc[4] = {y[0], y[2], y[1], 0.0}, ec[4] = {e[0], e[2], e[1], 1.0};
        double yz[3] = {y[0], y[2], 0.0}, ez[3] = {e[0], e[2], 1.0};
        double g0 = t * Ad * dd_nodes(2, yc, ec), g1 = 0.0;
        if (two)
            g1 = t * t * Ad * dd_nodes(3, yc, ec);
        if (Rd != 0) {
            g0 += t * t * Rd * dd_nodes(3, yz, ez);
            if (two)
                g1 += t * t * t * Rd * dd_nodes(4, yc, ec);
        }
        out0 += ka * (g0 + g1 * d0);
        out1 += ka * g1 * k12;
    }
    if (dep) {
        A[0] = e[2] * Ad;
        if (Rd != 0)
            A[0] += t * Rd * dd_nodes(2, y + 2, e + 2); /* {c, 0} */
    }
    A[dep] = out0;
    if (two)
        A[dep + 1] = out1;
}

/* Dual version of the straight-line path. Each divided difference carries its partials by
 * the identity d E(y1..yk)/d yi = E(y1..yk, yi) (node i repeated), evaluated in doubles by
 * the same stable routine, so no series runs on dual numbers. */
enum { NODE_A, NODE_B, NODE_C, NODE_ZERO };

/* coef = dt^(k-1) E(nodes idx[0..k-1]) with partials. */
static inline __attribute__((always_inline)) void
coef_dual(popk_dual *coef, int k, const int *idx, const popk_dual *Y, const double *E,
          const popk_dual *tpow, int nd)
{
    if (k == 1) { /* d e^y = e^y dy */
        dl_scale(coef, &Y[idx[0]], E[idx[0]], nd);
        coef->v = E[idx[0]];
        return;
    }
    double y[6], e[6];
    for (int i = 0; i < k; i++) {
        y[i] = Y[idx[i]].v;
        e[i] = E[idx[i]];
    }
    dl_set(coef, dd_nodes(k, y, e), nd);
    for (int i = 0; i < k; i++) {
        if (idx[i] == NODE_ZERO)
            continue;
        y[k] = y[i];
        e[k] = e[i];
        double slope = dd_nodes(k + 1, y, e);
        for (int j = 0; j < nd; j++)
            coef->d[j] += slope * Y[idx[i]].d[j];
    }
    dl_mul(coef, coef, &tpow[k - 1], nd);
}

static inline __attribute__((always_inline)) int
fast_advance_dual(const popk_linsys *s, popk_dual *A, const popk_dual *R, const popk_dual *dt,
                  int nd)
{
    const int two = s->ncmt == 2, dep = s->depot ? 1 : 0;
    popk_dual zero, k12, k21, r[2], Y[4], tpow[4];
    dl_set(&zero, 0.0, nd);
    const popk_dual *k10 = &s->k10, *ka = dep ? &s->ka : &zero;
    if (two) {
        dl_load(&k12, &s->k12, nd);
        dl_load(&k21, &s->k21, nd);
    } else {
        dl_set(&k12, 0.0, nd);
        dl_set(&k21, 0.0, nd);
    }
    if (dl_eigen(r, two ? 2 : 1, k10, &k12, &k21, &zero, &zero, nd) != 0)
        return -1;
    if (!two)
        dl_set(&r[1], 0.0, nd);
    const popk_dual *Ad = dep ? &A[0] : &zero, *Rd = dep && R ? &R[0] : &zero;
    const popk_dual *x0 = &A[dep], *x1 = two ? &A[dep + 1] : &zero;
    const popk_dual *w0 = R ? &R[dep] : &zero, *w1 = R && two ? &R[dep + 1] : &zero;
    const int input = dl_nonzero(w0, nd) || dl_nonzero(w1, nd);
    const int depot_amount = dl_nonzero(Ad, nd), depot_input = dl_nonzero(Rd, nd);

    dl_mul(&Y[NODE_A], &r[0], dt, nd);
    dl_scale(&Y[NODE_A], &Y[NODE_A], -1.0, nd);
    dl_mul(&Y[NODE_B], &r[1], dt, nd);
    dl_scale(&Y[NODE_B], &Y[NODE_B], -1.0, nd);
    dl_mul(&Y[NODE_C], ka, dt, nd);
    dl_scale(&Y[NODE_C], &Y[NODE_C], -1.0, nd);
    dl_set(&Y[NODE_ZERO], 0.0, nd);
    const double E[4] = {exp(Y[NODE_A].v), two ? exp(Y[NODE_B].v) : 0.0,
                         dep ? exp(Y[NODE_C].v) : 0.0, 1.0};
    dl_set(&tpow[0], 1.0, nd);
    for (int k = 1; k < 4; k++)
        dl_mul(&tpow[k], &tpow[k - 1], dt, nd);

    /* (Kd + r1 I) = [[d0, k21], [k12, d1]] */
    popk_dual d0, d1;
    dl_sub(&d0, &r[0], k10, nd);
    dl_sub(&d0, &d0, &k12, nd);
    dl_sub(&d1, &r[0], &k21, nd);

    popk_dual out0, out1, c, kv0, kv1;
    static const int set_a[] = {NODE_A}, set_ab[] = {NODE_A, NODE_B};
    static const int set_az[] = {NODE_A, NODE_ZERO}, set_abz[] = {NODE_A, NODE_B, NODE_ZERO};
    static const int set_ac[] = {NODE_A, NODE_C}, set_abc[] = {NODE_A, NODE_B, NODE_C};
    static const int set_acz[] = {NODE_A, NODE_C, NODE_ZERO};
    static const int set_abcz[] = {NODE_A, NODE_B, NODE_C, NODE_ZERO};
    static const int set_c[] = {NODE_C}, set_cz[] = {NODE_C, NODE_ZERO};

    coef_dual(&c, 1, set_a, Y, E, tpow, nd);
    dl_mul(&out0, &c, x0, nd);
    dl_mul(&out1, &c, x1, nd);
    if (two) {
        coef_dual(&c, 2, set_ab, Y, E, tpow, nd);
        dl_mul(&kv0, &d0, x0, nd);
        dl_axpy(&kv0, &k21, x1, nd);
        dl_mul(&kv1, &k12, x0, nd);
        dl_axpy(&kv1, &d1, x1, nd);
        dl_axpy(&out0, &c, &kv0, nd);
        dl_axpy(&out1, &c, &kv1, nd);
    }
    if (input) {
        coef_dual(&c, 2, set_az, Y, E, tpow, nd);
        dl_axpy(&out0, &c, w0, nd);
        dl_axpy(&out1, &c, w1, nd);
        if (two) {
            coef_dual(&c, 3, set_abz, Y, E, tpow, nd);
            dl_mul(&kv0, &d0, w0, nd);
            dl_axpy(&kv0, &k21, w1, nd);
            dl_mul(&kv1, &k12, w0, nd);
            dl_axpy(&kv1, &d1, w1, nd);
            dl_axpy(&out0, &c, &kv0, nd);
            dl_axpy(&out1, &c, &kv1, nd);
        }
    }
    if (depot_amount || depot_input) {
        popk_dual g0, g1;
        dl_set(&g0, 0.0, nd);
        dl_set(&g1, 0.0, nd);
        if (depot_amount) {
            coef_dual(&c, 2, set_ac, Y, E, tpow, nd);
            dl_axpy(&g0, &c, Ad, nd);
            if (two) {
                coef_dual(&c, 3, set_abc, Y, E, tpow, nd);
                dl_axpy(&g1, &c, Ad, nd);
            }
        }
        if (depot_input) {
            coef_dual(&c, 3, set_acz, Y, E, tpow, nd);
            dl_axpy(&g0, &c, Rd, nd);
            if (two) {
                coef_dual(&c, 4, set_abcz, Y, E, tpow, nd);
                dl_axpy(&g1, &c, Rd, nd);
            }
        }
        dl_mul(&g0, &g0, ka, nd);
        dl_mul(&g1, &g1, ka, nd);
        dl_add(&out0, &out0, &g0, nd);
        dl_axpy(&out0, &g1, &d0, nd);
        dl_axpy(&out1, &g1, &k12, nd);
    }
    if (dep) {
        popk_dual depot;
        coef_dual(&c, 1, set_c, Y, E, tpow, nd);
        dl_mul(&depot, &c, Ad, nd);
        if (depot_input) {
            coef_dual(&c, 2, set_cz, Y, E, tpow, nd);
            dl_axpy(&depot, &c, Rd, nd);
        }
        dl_load(&A[0], &depot, nd);
    }
    dl_load(&A[dep], &out0, nd);
    if (two)
        dl_load(&A[dep + 1], &out1, nd);
    return 0;
}

/* A rate constant must be finite and >= 0 (this rejects NaN too). */
static inline int bad_rate(double k) { return !(k >= 0 && k < INFINITY); }

static const char *problem(const popk_linsys *s, double dt)
{
    if (s->ncmt < 1 || s->ncmt > 3)
        return "number of compartments must be 1, 2 or 3";
    if (bad_rate(s->k10.v))
        return "k10 (CL/V) is negative, infinite or NaN";
    if (s->ncmt >= 2 && (bad_rate(s->k12.v) || bad_rate(s->k21.v)))
        return "k12 or k21 (Q2/V, Q2/V2) is negative, infinite or NaN";
    if (s->ncmt >= 3 && (bad_rate(s->k13.v) || bad_rate(s->k31.v)))
        return "k13 or k31 (Q3/V, Q3/V3) is negative, infinite or NaN";
    if (s->depot && bad_rate(s->ka.v))
        return "ka is negative, infinite or NaN";
    if (bad_rate(dt))
        return "time step is negative, infinite or NaN";
    return NULL;
}

const char *popk_linsys_why(const popk_linsys *s, double dt)
{
    const char *why = problem(s, dt);
    if (why)
        return why;
    if (s->nd < 0 || s->nd > POPK_DUAL_MAX)
        return "number of derivative directions out of range";
    if (s->nd > 0 && s->ncmt > 1) {
        popk_dual r[3], k[5];
        const popk_dual *src[5] = {&s->k10, &s->k12, &s->k21, &s->k13, &s->k31};
        for (int i = 0; i < 5; i++) {
            if (i >= 1 + 2 * (s->ncmt - 1))
                dl_set(&k[i], 0.0, s->nd);
            else
                dl_load(&k[i], src[i], s->nd);
        }
        if (dl_eigen(r, s->ncmt, &k[0], &k[1], &k[2], &k[3], &k[4], s->nd) != 0)
            return "disposition eigenvalues within 1e-6 (relative) of each other (tiny "
                   "intercompartmental rates): their derivatives would be inaccurate";
    }
    return NULL;
}

void popk_linsys_from_clearances(popk_linsys *s, const popk_dual *cl, const popk_dual *v,
                                 const popk_dual *q2, const popk_dual *v2,
                                 const popk_dual *q3, const popk_dual *v3,
                                 const popk_dual *ka)
{
    int nd = s->nd;
    dl_set(&s->k12, 0.0, nd);
    dl_set(&s->k21, 0.0, nd);
    dl_set(&s->k13, 0.0, nd);
    dl_set(&s->k31, 0.0, nd);
    dl_set(&s->ka, 0.0, nd);
    dl_div(&s->k10, cl, v, nd);
    s->ncmt = 1;
    if (q2 && v2) {
        dl_div(&s->k12, q2, v, nd);
        dl_div(&s->k21, q2, v2, nd);
        s->ncmt = 2;
    }
    if (q3 && v3) {
        dl_div(&s->k13, q3, v, nd);
        dl_div(&s->k31, q3, v3, nd);
        s->ncmt = 3;
    }
    s->depot = ka != NULL;
    if (ka)
        dl_load(&s->ka, ka, nd);
}

int popk_linsys_advance(const popk_linsys *s, popk_dual *A, const popk_dual *R, popk_dual dt)
{
    if (problem(s, dt.v) || s->nd < 0 || s->nd > POPK_DUAL_MAX)
        return -1;
    if (s->ncmt <= 2) {
        /* constant nd for the usual small counts lets the compiler unroll every dual loop */
        switch (s->nd) {
        case 1: return fast_advance_dual(s, A, R, &dt, 1);
        case 2: return fast_advance_dual(s, A, R, &dt, 2);
        case 3: return fast_advance_dual(s, A, R, &dt, 3);
        case 4: return fast_advance_dual(s, A, R, &dt, 4);
        case 5: return fast_advance_dual(s, A, R, &dt, 5);
        case 6: return fast_advance_dual(s, A, R, &dt, 6);
        case 7: return fast_advance_dual(s, A, R, &dt, 7);
        case 8: return fast_advance_dual(s, A, R, &dt, 8);
        default: return fast_advance_dual(s, A, R, &dt, s->nd);
        }
    }
    return dl_advance(s, A, R, &dt, s->nd);
}

int popk_linsys_advance_d(const popk_linsys *s, double *A, const double *R, double dt)
{
    if (problem(s, dt))
        return -1;
    if (s->ncmt <= 2) {
        fast_advance_d(s, A, R, dt);
        return 0;
    }
    return dbl_advance(s, A, R, &dt, 0);
}
