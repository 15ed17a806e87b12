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
 * evaluated in Newton form over the disposition eigenvalues -r1 <= -r2 <= -r3 ordered
 * fastest first, f(Kd) = sum_j f[-r1..-rj] B_(j-1) with the Newton basis
 * B_0 = I, B_j = (Kd + r1 I)...(Kd + rj I) (Cayley-Hamilton makes it exact, also for
 * repeated eigenvalues): (Kd + r1 I) is entrywise nonnegative and (Kd + r1 I)(Kd + r2 I) is
 * a positive multiple of the slowest spectral projector (Perron-Frobenius), so for
 * nonnegative amounts every term is nonnegative and small compartments keep their relative
 * accuracy. The depot is kept out of that interpolation for the same reason (a
 * fast-eliminating central compartment next to a slow depot would otherwise be computed as
 * a difference of much larger numbers).
 *
 * The work splits by what it depends on. Per system: eigenvalues (closed forms) with
 * partials by implicit differentiation, and the basis B_j with partials. Per step length:
 * the divided differences (memoised over node multisets: the sets needed share most of
 * their sub-tables) and from them the propagator, a few small matrices of duals. Per
 * advance: a matrix-vector product. The partials of a divided difference come from the
 * identity d E(y1..yk)/d yi = E(y1..yk, yi) (node i repeated), evaluated in doubles by the
 * same stable routine, so no series runs on dual numbers. popk_linprop keeps the system
 * and the propagators of recent step lengths; popk_linsys_advance runs the same code once. */
#include "pred/linear.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
/* up to 6 nodes (three eigenvalues, depot, zero, one repeated) */
_Static_assert(sizeof inv_factorial / sizeof inv_factorial[0] >= DD_TERMS + 6,
               "factorial table too short for the series");

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ---- dual numbers with nd directions (results may alias operands) ---- */
static inline void dl_set(popk_dual *r, double v, int nd)
{
    r->v = v;
    for (int i = 0; i < nd; i++)
        r->d[i] = 0.0;
}
static inline void dl_load(popk_dual *r, const popk_dual *a, int nd)
{
    r->v = a->v;
    for (int i = 0; i < nd; i++)
        r->d[i] = a->d[i];
}
static inline void dl_add(popk_dual *r, const popk_dual *a, const popk_dual *b, int nd)
{
    r->v = a->v + b->v;
    for (int i = 0; i < nd; i++)
        r->d[i] = a->d[i] + b->d[i];
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

/* ---- per system ---- */

/* Disposition eigenvalues as magnitudes r[0] >= r[1] >= r[2] >= 0 (eigenvalue = -r).
 * Values from the closed forms (quadratic; cubic by the trigonometric formula, then the two
 * smaller roots by deflation so a tiny terminal rate keeps its relative accuracy); partial
 * derivatives by implicit differentiation of the characteristic polynomial
 * r^m - b1 r^(m-1) + b2 r^(m-2) - b3 = 0. Returns -1 when derivatives are asked for and two
 * eigenvalues are within LINEAR_MIN_EIGEN_GAP (relative) of each other. */
static int eigen(popk_dual *r, int m, const popk_dual *k10, const popk_dual *k12,
                 const popk_dual *k21, const popk_dual *k13, const popk_dual *k31, int nd)
{
    if (m == 1) {
        dl_load(&r[0], k10, nd);
        return 0;
    }
    double root[3];
    popk_dual b1, b2, b3, tmp;
    if (m == 2) {
        dl_add(&b1, k10, k12, nd);
        dl_add(&b1, &b1, k21, nd);
        dl_mul(&b2, k10, k21, nd);
        dl_set(&b3, 0.0, nd);
        /* discriminant as a sum of squares: no cancellation */
        double diff = k10->v + k12->v - k21->v;
        double disc = diff * diff + 4.0 * k12->v * k21->v;
        root[0] = 0.5 * (b1.v + sqrt(disc));
        root[1] = root[0] > 0 ? b2.v / root[0] : 0.0;
    } else {
        dl_add(&b1, k10, k12, nd);
        dl_add(&b1, &b1, k13, nd);
        dl_add(&b1, &b1, k21, nd);
        dl_add(&b1, &b1, k31, nd);
        dl_add(&tmp, k21, k31, nd); /* b2 = k10 (k21 + k31) + k12 k31 + k13 k21 + k21 k31 */
        dl_mul(&b2, k10, &tmp, nd);
        dl_axpy(&b2, k12, k31, nd);
        dl_axpy(&b2, k13, k21, nd);
        dl_axpy(&b2, k21, k31, nd);
        dl_mul(&b3, k10, k21, nd);
        dl_mul(&b3, &b3, k31, nd);
        double s1 = b1.v, s2 = b2.v, s3 = b3.v;
        double p = s2 - s1 * s1 / 3.0;
        double q = -2.0 * s1 * s1 * s1 / 27.0 + s1 * s2 / 3.0 - s3;
        double largest;
        if (p < 0) {
            double arg = 1.5 * q / p * sqrt(-3.0 / p);
            arg = arg > 1.0 ? 1.0 : arg < -1.0 ? -1.0 : arg;
            largest = s1 / 3.0 + 2.0 * sqrt(-p / 3.0) * cos(acos(arg) / 3.0);
        } else {
            largest = s1 / 3.0 + cbrt(-q);
        }
        root[0] = largest;
        if (largest > 0) {
            /* remaining roots solve r^2 - sum r + prod = 0 with prod = b3/r1 and
             * sum = (b2 - prod)/r1, where b2 - prod = r1 (r2 + r3) >= b2/2 */
            double prod = s3 / largest;
            double sum = (s2 - prod) / largest;
            double disc = sum * sum - 4.0 * prod;
            root[1] = 0.5 * (sum + sqrt(disc > 0 ? disc : 0.0));
            root[2] = root[1] > 0 ? prod / root[1] : 0.0;
        } else {
            root[1] = root[2] = 0.0;
        }
    }
    for (int i = 0; i < m; i++)
        dl_set(&r[i], root[i], nd);
    if (nd > 0) {
        /* Near a repeated eigenvalue the eigenvalue partials grow like 1/gap and their
         * contributions cancel in the result; measured loss: 1e-10 relative at a relative
         * gap of 1e-6, growing like 1/gap^2 below. Refuse there rather than mislead. */
        double min_gap = INFINITY;
        for (int i = 0; i + 1 < m; i++)
            min_gap = fmin(min_gap, root[i] - root[i + 1]);
        if (!(min_gap >= LINEAR_MIN_EIGEN_GAP * root[0]) || root[0] == 0)
            for (int k = 0; k < nd; k++)
                if (b1.d[k] != 0 || b2.d[k] != 0 || b3.d[k] != 0)
                    return -1;
        for (int i = 0; i < m; i++) {
            double slope = 1.0; /* P'(r_i) = prod over j != i of (r_i - r_j) */
            for (int j = 0; j < m; j++)
                if (j != i)
                    slope *= root[i] - root[j];
            double w1 = m == 2 ? root[i] : root[i] * root[i];
            double w2 = m == 2 ? 1.0 : root[i];
            double w3 = m == 2 ? 0.0 : 1.0;
            for (int k = 0; k < nd; k++) {
                double num = w1 * b1.d[k] - w2 * b2.d[k] + w3 * b3.d[k];
                r[i].d[k] = slope != 0 ? num / slope : 0.0;
            }
        }
    }
    return 0;
}

/* What a step needs from the system, computed once per system. */
typedef struct {
    int m, dep, nd;
    int status;             /* 0, or -1: every advance is refused */
    popk_dual r[3];         /* disposition eigenvalue magnitudes, fastest first */
    popk_dual ka;
    popk_dual basis[3][3][3]; /* basis[j] = B_j for j = 1 .. m-1 (B_0 = I is implicit) */
} lin_system;

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

/* The micro-constants of s the system uses (the others zero), as [k10 k12 k21 k13 k31]. */
static void used_constants(const popk_linsys *s, popk_dual k[5])
{
    const popk_dual *src[5] = {&s->k10, &s->k12, &s->k21, &s->k13, &s->k31};
    for (int i = 0; i < 5; i++) {
        if (i >= 1 + 2 * (s->ncmt - 1))
            dl_set(&k[i], 0.0, s->nd);
        else
            dl_load(&k[i], src[i], s->nd);
    }
}

/* Two compartments: the values of the diagonal of Kd + r1 I, r1 - k10 - k12 and r1 - k21,
 * from the quadratic without cancellation (as differences they lose digits when r1 is
 * close to k10 + k12, i.e. a weakly coupled peripheral next to a fast elimination). With
 * diff = k10 + k12 - k21 and s = sqrt(diff^2 + 4 k12 k21): r1 - k10 - k12 = (s - diff)/2 and
 * r1 - k21 = (s + diff)/2, one of them rewritten as 2 k12 k21/(s +- diff). The partials stay
 * those of the differences: they must match the eigenvalue partials, with which they cancel
 * near a repeated eigenvalue. */
static void accurate_shift_2(popk_dual shift[3][3], double k10, double k12, double k21)
{
    const double diff = k10 + k12 - k21, root = sqrt(diff * diff + 4.0 * k12 * k21);
    if (!(root > 0)) /* repeated eigenvalue: the differences are exact (zero) */
        return;
    if (diff >= 0) {
        shift[0][0].v = 2.0 * k12 * k21 / (root + diff);
        shift[1][1].v = 0.5 * (root + diff);
    } else {
        shift[0][0].v = 0.5 * (root - diff);
        shift[1][1].v = 2.0 * k12 * k21 / (root - diff);
    }
}

static void system_init(lin_system *sys, const popk_linsys *s)
{
    sys->status = -1;
    if (problem(s, 0.0) || s->nd < 0 || s->nd > POPK_DUAL_MAX)
        return;
    const int m = s->ncmt, nd = s->nd;
    sys->m = m;
    sys->dep = s->depot ? 1 : 0;
    sys->nd = nd;
    popk_dual k[5];
    used_constants(s, k);
    if (eigen(sys->r, m, &k[0], &k[1], &k[2], &k[3], &k[4], nd) != 0)
        return;
    if (sys->dep)
        dl_load(&sys->ka, &s->ka, nd);
    else
        dl_set(&sys->ka, 0.0, nd);
    /* shift[j] = Kd + r_j I; its off-diagonal entries are the intercompartmental rates */
    popk_dual diag[3], shift[2][3][3];
    dl_add(&diag[0], &k[0], &k[1], nd);
    dl_add(&diag[0], &diag[0], &k[3], nd);
    dl_load(&diag[1], &k[2], nd);
    dl_load(&diag[2], &k[4], nd);
    for (int j = 0; j + 1 < m; j++)
        for (int a = 0; a < m; a++)
            for (int b = 0; b < m; b++) {
                popk_dual *e = &shift[j][a][b];
                if (a == b)
                    dl_sub(e, &sys->r[j], &diag[a], nd);
                else if (a == 0)
                    dl_load(e, &k[b == 1 ? 2 : 4], nd); /* k21, k31 */
                else if (b == 0)
                    dl_load(e, &k[a == 1 ? 1 : 3], nd); /* k12, k13 */
                else
                    dl_set(e, 0.0, nd);
            }
    if (m == 2)
        accurate_shift_2(shift[0], k[0].v, k[1].v, k[2].v);
    if (m >= 2)
        memcpy(sys->basis[1], shift[0], sizeof shift[0]);
    if (m >= 3)
        for (int a = 0; a < m; a++)
            for (int b = 0; b < m; b++) {
                popk_dual *e = &sys->basis[2][a][b];
                dl_mul(e, &shift[1][a][0], &sys->basis[1][0][b], nd);
                for (int c = 1; c < m; c++)
                    dl_axpy(e, &shift[1][a][c], &sys->basis[1][c][b], nd);
            }
    sys->status = 0;
}

/* ---- per step length ---- */

/* The propagator of one step: amounts after = P A + Q R (Q computed when first needed). */
typedef struct {
    popk_dual dt;
    int has_inputs;
    popk_dual p_depot, p_from_depot[3], p_disp[3][3];
    popk_dual q_depot, q_from_depot[3], q_disp[3][3];
} lin_prop;

/* Nodes of the divided differences: the disposition eigenvalues, the depot, zero. */
enum { NODE_E0, NODE_E1, NODE_E2, NODE_DEPOT, NODE_ZERO, NODE_TYPES };
/* A multiset of nodes is indexed by the multiplicities (0-2) of the nodes in ascending
 * order of value, two bits each, so its extreme nodes are its lowest and highest set bits.
 * Zero is the largest node and never repeats: indices stay below 2 * 4^4. */
#define MULTISETS 512

/* Divided differences of exp over node multisets for one step, with what their partials
 * need. */
typedef struct {
    int ntypes;                    /* nodes present */
    int unit[NODE_TYPES];          /* the index of {node} */
    double y[NODE_TYPES];          /* by position: scaled nodes (-rate dt, 0), ascending */
    double e[NODE_TYPES];          /* by position: exp(y) */
    uint64_t have[MULTISETS / 64]; /* memo bit set */
    unsigned center_have;          /* center_exp bit set, by (lo, hi) */
    double memo[MULTISETS];
    double center_exp[NODE_TYPES * NODE_TYPES];
    popk_dual dy[NODE_TYPES];      /* by node: partials of y */
    popk_dual tpow[5];             /* dt^k */
} dd_table;

/* Divided difference of exp over multiset `set` of k nodes. Both sub-differences of the
 * recursion are positive and increasing in every node, and the divisor is the full spread
 * (> DD_SPREAD), so the subtraction loses at most a few bits; at smaller spreads a series is
 * exact. */
static double dd(dd_table *t, unsigned set, int k)
{
    if (t->have[set >> 6] >> (set & 63) & 1)
        return t->memo[set];
    const int lo = __builtin_ctz(set) >> 1, hi = (31 - __builtin_clz(set)) >> 1;
    const double spread = t->y[hi] - t->y[lo];
    double out;
    if (k == 1) {
        out = t->e[lo];
    } else if (spread > DD_SPREAD) {
        out = (dd(t, set - (1u << 2 * lo), k - 1) - dd(t, set - (1u << 2 * hi), k - 1)) / spread;
    } else if (k == 2) {
        /* (e^a - e^b)/(a - b) = e^b expm1(a - b)/(a - b), exact to rounding at small spread */
        out = spread > 0 ? t->e[hi] * (expm1(-spread) / -spread) : t->e[hi];
    } else {
        /* exp(y) = e^c sum_k (y-c)^k/k!; the divided difference of (y-c)^k over k nodes is
         * the complete homogeneous polynomial h_(k-count+1)(y-c), and |y-c| <= DD_SPREAD/2
         * makes DD_TERMS terms exact to rounding */
        const double center = 0.5 * (t->y[lo] + t->y[hi]);
        /* truncation error <= rho^(J+1)/(J+1)! relative, rho = spread/2 */
        int terms = 0;
        for (double bound = 1.0; bound > 1e-17 && terms < DD_TERMS; bound *= 0.5 * spread / terms)
            terms++;
        double h[DD_TERMS + 1];
        h[0] = 1.0;
        for (int j = 1; j <= terms; j++)
            h[j] = 0.0;
        for (int i = lo; i <= hi; i++) {
            const double z = t->y[i] - center;
            for (unsigned rep = set >> 2 * i & 3; rep > 0; rep--)
                for (int j = 1; j <= terms; j++)
                    h[j] += z * h[j - 1];
        }
        double sum = 0.0;
        for (int j = terms; j >= 0; j--)
            sum += h[j] * inv_factorial[j + k - 1];
        /* sets with the same extremes share the center */
        const int pair = lo * NODE_TYPES + hi;
        if (!(t->center_have >> pair & 1)) {
            t->center_exp[pair] = exp(center);
            t->center_have |= 1u << pair;
        }
        out = sum * t->center_exp[pair];
    }
    t->have[set >> 6] |= (uint64_t)1 << (set & 63);
    t->memo[set] = out;
    return out;
}

static ALWAYS_INLINE void dd_init(dd_table *t, const lin_system *sys, const popk_dual *dt,
                                  int nd)
{
    memset(t->have, 0, sizeof t->have);
    t->center_have = 0;
    int order[NODE_TYPES], n = 0;
    double y[NODE_TYPES];
    for (int node = 0; node < NODE_TYPES; node++) {
        const popk_dual *rate;
        if (node < NODE_DEPOT)
            rate = node < sys->m ? &sys->r[node] : NULL;
        else
            rate = node == NODE_DEPOT && sys->dep ? &sys->ka : NULL;
        if (node == NODE_ZERO) {
            y[node] = 0.0;
        } else if (rate) {
            y[node] = -(rate->v * dt->v);
            for (int q = 0; q < nd; q++)
                t->dy[node].d[q] = -(rate->d[q] * dt->v + rate->v * dt->d[q]);
        } else {
            continue;
        }
        /* insertion keeps equal nodes in node order, so zero stays last */
        int i = n++;
        while (i > 0 && y[order[i - 1]] > y[node]) {
            order[i] = order[i - 1];
            i--;
        }
        order[i] = node;
    }
    t->ntypes = n;
    for (int i = 0; i < n; i++) {
        const int node = order[i];
        t->unit[node] = 1 << 2 * i;
        t->y[i] = y[node];
        t->e[i] = node == NODE_ZERO ? 1.0 : exp(y[node]);
    }
    dl_set(&t->tpow[0], 1.0, nd);
    for (int j = 1; j < 5; j++)
        dl_mul(&t->tpow[j], &t->tpow[j - 1], dt, nd);
}

/* c = dt^(k-1) E(nodes of `set`, a set of k distinct nodes given as a bit mask), with
 * partials: d E = sum over nodes i of E(set, i) dy_i. */
static ALWAYS_INLINE void coef(popk_dual *c, dd_table *t, unsigned set, int nd)
{
    unsigned index = 0;
    int k = 0;
    for (int node = 0; node < NODE_TYPES; node++)
        if (set >> node & 1) {
            index += t->unit[node];
            k++;
        }
    const double value = dd(t, index, k);
    const popk_dual *tp = &t->tpow[k - 1];
    c->v = value * tp->v;
    if (nd == 0)
        return;
    double slope[POPK_DUAL_MAX];
    for (int q = 0; q < nd; q++)
        slope[q] = 0.0;
    for (int node = 0; node < NODE_ZERO; node++)
        if (set >> node & 1) {
            const double s = dd(t, index + t->unit[node], k + 1);
            for (int q = 0; q < nd; q++)
                slope[q] += s * t->dy[node].d[q];
        }
    for (int q = 0; q < nd; q++)
        c->d[q] = slope[q] * tp->v + value * tp->d[q];
}

/* The propagator's amount part (extra = 0: P) or input part (extra = the zero node: Q). */
static ALWAYS_INLINE void fill(const lin_system *sys, dd_table *t, unsigned extra,
                               popk_dual *depot, popk_dual *from_depot, popk_dual (*disp)[3],
                               int nd)
{
    const int m = sys->m;
    unsigned eig = 0;
    popk_dual c;
    for (int j = 0; j < m; j++) {
        eig |= 1u << j;
        coef(&c, t, eig | extra, nd);
        for (int a = 0; a < m; a++)
            for (int b = 0; b < m; b++) {
                if (j > 0)
                    dl_axpy(&disp[a][b], &c, &sys->basis[j][a][b], nd);
                else if (a == b)
                    dl_load(&disp[a][b], &c, nd);
                else
                    dl_set(&disp[a][b], 0.0, nd);
            }
        if (!sys->dep)
            continue;
        /* the depot feeds the central compartment: column 0 of the basis */
        coef(&c, t, eig | extra | 1u << NODE_DEPOT, nd);
        for (int a = 0; a < m; a++) {
            if (j > 0)
                dl_axpy(&from_depot[a], &c, &sys->basis[j][a][0], nd);
            else if (a == 0)
                dl_load(&from_depot[a], &c, nd);
            else
                dl_set(&from_depot[a], 0.0, nd);
        }
    }
    if (sys->dep) {
        for (int a = 0; a < m; a++)
            dl_mul(&from_depot[a], &from_depot[a], &sys->ka, nd);
        coef(depot, t, extra | 1u << NODE_DEPOT, nd);
    }
}

/* Compute the amount part (amounts = 1) and/or the input part (inputs = 1) of p for dt. */
static ALWAYS_INLINE void prop_build(const lin_system *sys, lin_prop *p, const popk_dual *dt,
                                     int amounts, int inputs, int nd)
{
    dd_table t;
    dd_init(&t, sys, dt, nd);
    if (amounts) {
        dl_load(&p->dt, dt, nd);
        fill(sys, &t, 0u, &p->p_depot, p->p_from_depot, p->p_disp, nd);
        p->has_inputs = 0;
    }
    if (inputs) {
        fill(sys, &t, 1u << NODE_ZERO, &p->q_depot, p->q_from_depot, p->q_disp, nd);
        p->has_inputs = 1;
    }
}

/* ---- per advance ---- */

static ALWAYS_INLINE int any_input(const lin_system *sys, const popk_dual *R, int nd)
{
    if (R)
        for (int i = 0; i < sys->m + sys->dep; i++)
            if (dl_nonzero(&R[i], nd))
                return 1;
    return 0;
}

/* A <- P A (+ Q R when inputs). */
static ALWAYS_INLINE void prop_apply(const lin_system *sys, const lin_prop *p, popk_dual *A,
                                     const popk_dual *R, int inputs, int nd)
{
    const int m = sys->m, dep = sys->dep;
    popk_dual out[4];
    if (dep) {
        dl_mul(&out[0], &p->p_depot, &A[0], nd);
        if (inputs)
            dl_axpy(&out[0], &p->q_depot, &R[0], nd);
    }
    for (int a = 0; a < m; a++) {
        popk_dual *o = &out[dep + a];
        dl_mul(o, &p->p_disp[a][0], &A[dep], nd);
        for (int b = 1; b < m; b++)
            dl_axpy(o, &p->p_disp[a][b], &A[dep + b], nd);
        if (dep)
            dl_axpy(o, &p->p_from_depot[a], &A[0], nd);
        if (inputs) {
            for (int b = 0; b < m; b++)
                dl_axpy(o, &p->q_disp[a][b], &R[dep + b], nd);
            if (dep)
                dl_axpy(o, &p->q_from_depot[a], &R[0], nd);
        }
    }
    for (int i = 0; i < m + dep; i++)
        dl_load(&A[i], &out[i], nd);
}

/* The advance without a cache (popk_linsys_advance). */
static ALWAYS_INLINE void advance_once(const lin_system *sys, popk_dual *A, const popk_dual *R,
                                       const popk_dual *dt, int nd)
{
    lin_prop p;
    const int inputs = any_input(sys, R, nd);
    prop_build(sys, &p, dt, 1, inputs, nd);
    prop_apply(sys, &p, A, R, inputs, nd);
}

struct popk_linprop {
    lin_system sys;
    int count, next;                /* cached steps; the slot to overwrite next */
    double key[POPK_LINPROP_STEPS]; /* their lengths (values; partials in step[i].dt) */
    lin_prop step[POPK_LINPROP_STEPS];
};

static ALWAYS_INLINE void advance_cached(popk_linprop *c, popk_dual *A, const popk_dual *R,
                                         const popk_dual *dt, int nd)
{
    lin_prop *p = NULL;
    /* newest first: a step length tends to repeat the last ones */
    for (int i = 0, slot = c->next; i < c->count; i++) {
        slot = slot == 0 ? POPK_LINPROP_STEPS - 1 : slot - 1;
        if (c->key[slot] == dt->v &&
            !memcmp(c->step[slot].dt.d, dt->d, sizeof(double) * (size_t)nd)) {
            p = &c->step[slot];
            break;
        }
    }
    const int inputs = any_input(&c->sys, R, nd);
    if (!p) {
        int slot = c->next;
        c->next = (c->next + 1) % POPK_LINPROP_STEPS;
        if (c->count < POPK_LINPROP_STEPS)
            c->count++;
        c->key[slot] = dt->v;
        p = &c->step[slot];
        prop_build(&c->sys, p, dt, 1, inputs, nd);
    } else if (inputs && !p->has_inputs) {
        prop_build(&c->sys, p, dt, 0, 1, nd);
    }
    prop_apply(&c->sys, p, A, R, inputs, nd);
}

/* Constant direction counts for the usual small numbers let the compiler unroll every dual
 * loop; ADVANCE_BY_ND(call) expands call(nd) with nd a constant where it can. */
#define ADVANCE_BY_ND(call, nd)                                                              \
    switch (nd) {                                                                            \
    case 0: call(0); break;                                                                  \
    case 1: call(1); break;                                                                  \
    case 2: call(2); break;                                                                  \
    case 3: call(3); break;                                                                  \
    case 4: call(4); break;                                                                  \
    case 5: call(5); break;                                                                  \
    case 6: call(6); break;                                                                  \
    case 7: call(7); break;                                                                  \
    case 8: call(8); break;                                                                  \
    default: call(nd); break;                                                                \
    }

/* ---- public ---- */

const char *popk_linsys_why(const popk_linsys *s, double dt)
{
    const char *why = problem(s, dt);
    if (why)
        return why;
    if (s->nd < 0 || s->nd > POPK_DUAL_MAX)
        return "number of derivative directions out of range";
    if (s->nd > 0 && s->ncmt > 1) {
        popk_dual r[3], k[5];
        used_constants(s, k);
        if (eigen(r, s->ncmt, &k[0], &k[1], &k[2], &k[3], &k[4], s->nd) != 0)
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
    if (problem(s, dt.v))
        return -1;
    lin_system sys;
    system_init(&sys, s);
    if (sys.status != 0)
        return -1;
#define ONCE(nd) advance_once(&sys, A, R, &dt, nd)
    ADVANCE_BY_ND(ONCE, sys.nd)
#undef ONCE
    return 0;
}

int popk_linsys_advance_d(const popk_linsys *s, double *A, const double *R, double dt)
{
    if (problem(s, dt))
        return -1;
    popk_linsys plain = *s;
    plain.nd = 0;
    lin_system sys;
    system_init(&sys, &plain);
    const int n = popk_linsys_n(s);
    popk_dual a[4], r[4], step;
    for (int i = 0; i < n; i++) {
        a[i].v = A[i];
        r[i].v = R ? R[i] : 0.0;
    }
    step.v = dt;
    advance_once(&sys, a, R ? r : NULL, &step, 0);
    for (int i = 0; i < n; i++)
        A[i] = a[i].v;
    return 0;
}

popk_linprop *popk_linprop_new(void)
{
    popk_linprop *p = calloc(1, sizeof *p);
    if (p)
        p->sys.status = -1;
    return p;
}

void popk_linprop_free(popk_linprop *p) { free(p); }

void popk_linprop_set(popk_linprop *p, const popk_linsys *s)
{
    system_init(&p->sys, s);
    p->count = 0;
    p->next = 0;
}

int popk_linprop_advance(popk_linprop *p, popk_dual *A, const popk_dual *R, const popk_dual *dt)
{
    if (p->sys.status != 0 || bad_rate(dt->v))
        return -1;
#define CACHED(nd) advance_cached(p, A, R, dt, nd)
    ADVANCE_BY_ND(CACHED, p->sys.nd)
#undef CACHED
    return 0;
}
