/* pred/linear_impl.h — the closed-form advance, written once over a number type and included
 * twice by linear.c: NUM = double (fast path) and NUM = popk_dual (derivatives).
 *
 * The includer defines NUM, N(name) (prefixes every function defined here), LINEAR_DUAL (0/1)
 * and the arithmetic N(set) N(load) N(add) N(sub) N(mul) N(div) N(exp) N(scale) N(axpy)
 * N(nonzero) with the signatures used below; nd is ignored by the double versions.
 *
 * Method (see linear.c for the derivation): with disposition eigenvalues -r1 <= -r2 <= -r3,
 * every block of the propagator and of the input response is f(Kd) applied to a vector, and
 * f(Kd) v = sum_j f[l1..lj] (Kd - l1)...(Kd - l(j-1)) v  (Newton form of the interpolating
 * polynomial; Cayley-Hamilton makes it exact, also for repeated eigenvalues). The divided
 * differences f[...] are divided differences of exp(x dt) over the eigenvalues plus, as
 * needed, -ka (depot) and 0 (zero-order input), computed by DD_SPREAD-guarded recursion or a
 * Taylor series, so confluent nodes cost no accuracy. */

/* Divided differences of exp over subsets (bit masks) of up to LINEAR_NODES scaled nodes
 * y = x dt, kept in ascending order of value so a subset's extremes are its lowest and
 * highest bits; memoised because the subsets needed share most of their sub-tables. */
typedef struct {
    int n;
    NUM y[LINEAR_NODES];
    unsigned have; /* bit `mask` set when memo[mask] is computed */
    NUM memo[1 << LINEAR_NODES];
} N(dd_table);

static const NUM *N(dd)(N(dd_table) *tab, unsigned mask, int nd)
{
    NUM *out = &tab->memo[mask];
    if (tab->have & (1u << mask))
        return out;
    const int lo = __builtin_ctz(mask), hi = 31 - __builtin_clz(mask);
    int count = 0;
    for (unsigned rest = mask; rest; rest &= rest - 1)
        count++;

    const NUM *ylo = &tab->y[lo], *yhi = &tab->y[hi];
    const double spread = N(val)(yhi) - N(val)(ylo);
    if (count == 1) {
        N(exp)(out, ylo, nd);
    } else if (spread > DD_SPREAD) {
        /* Both sub-differences are positive and increasing in every node, and the divisor
         * is the full spread (> DD_SPREAD), so the subtraction loses at most a few bits. */
        const NUM *without_lo = N(dd)(tab, mask & ~(1u << lo), nd);
        const NUM *without_hi = N(dd)(tab, mask & ~(1u << hi), nd);
        NUM num, den;
        N(sub)(&num, without_lo, without_hi, nd);
        N(sub)(&den, yhi, ylo, nd);
        N(div)(out, &num, &den, nd);
#if !LINEAR_DUAL
    } else if (count == 2) {
        /* (e^a - e^b)/(a - b) = e^b expm1(a - b)/(a - b), exact to rounding at small spread
         * (the dual path uses the series, whose derivatives stay accurate too) */
        const NUM *top = N(dd)(tab, 1u << hi, nd);
        *out = spread > 0 ? *top * (expm1(-spread) / -spread) : *top;
#endif
    } else {
        /* exp(y) = e^c sum_k (y-c)^k/k!; the divided difference of (y-c)^k over `count`
         * nodes is the complete homogeneous polynomial h_(k-count+1)(y-c), and
         * |y-c| <= DD_SPREAD/2 makes DD_TERMS terms exact to rounding. */
        double center = 0.5 * (N(val)(ylo) + N(val)(yhi));
        /* truncation error <= rho^(J+1)/(J+1)! relative, rho = spread/2 */
        int terms = 0;
        for (double bound = 1.0; bound > 1e-17 && terms < DD_TERMS; bound *= 0.5 * spread / terms)
            terms++;
        NUM h[DD_TERMS + 1];
        N(set)(&h[0], 1.0, nd);
        for (int j = 1; j <= terms; j++)
            N(set)(&h[j], 0.0, nd);
        for (int i = lo; i <= hi; i++) {
            if (!(mask & (1u << i)))
                continue;
            NUM z;
            N(addc)(&z, &tab->y[i], -center, nd);
            for (int j = 1; j <= terms; j++)
                N(axpy)(&h[j], &z, &h[j - 1], nd);
        }
        NUM sum;
        N(scale)(&sum, &h[terms], inv_factorial[terms + count - 1], nd);
        for (int j = terms - 1; j >= 0; j--) {
            NUM term;
            N(scale)(&term, &h[j], inv_factorial[j + count - 1], nd);
            N(add)(&sum, &sum, &term, nd);
        }
        N(scale)(out, &sum, exp(center), nd);
    }
    tab->have |= 1u << mask;
    return out;
}

/* Disposition eigenvalues as magnitudes r[0] >= r[1] >= r[2] >= 0 (eigenvalue = -r).
 * Values from the closed forms (quadratic; cubic by the trigonometric formula, then the two
 * smaller roots by deflation so a tiny terminal rate keeps its relative accuracy); partial
 * derivatives by implicit differentiation of the characteristic polynomial
 * r^m - b1 r^(m-1) + b2 r^(m-2) - b3 = 0. Returns -1 when derivatives are asked for and two
 * eigenvalues are within LINEAR_MIN_EIGEN_GAP (relative) of each other. */
static int N(eigen)(NUM *r, int m, const NUM *k10, const NUM *k12, const NUM *k21,
                    const NUM *k13, const NUM *k31, int nd)
{
    if (m == 1) {
        r[0] = *k10;
        return 0;
    }
    double root[3];
    NUM b1, b2, b3, tmp;
    if (m == 2) {
        N(add)(&b1, k10, k12, nd);
        N(add)(&b1, &b1, k21, nd);
        N(mul)(&b2, k10, k21, nd);
        N(set)(&b3, 0.0, nd);
        /* discriminant as a sum of squares: no cancellation */
        double diff = N(val)(k10) + N(val)(k12) - N(val)(k21);
        double disc = diff * diff + 4.0 * N(val)(k12) * N(val)(k21);
        root[0] = 0.5 * (N(val)(&b1) + sqrt(disc));
        root[1] = root[0] > 0 ? N(val)(&b2) / root[0] : 0.0;
    } else {
        N(add)(&b1, k10, k12, nd);
        N(add)(&b1, &b1, k13, nd);
        N(add)(&b1, &b1, k21, nd);
        N(add)(&b1, &b1, k31, nd);
        N(add)(&tmp, k21, k31, nd); /* b2 = k10 (k21 + k31) + k12 k31 + k13 k21 + k21 k31 */
        N(mul)(&b2, k10, &tmp, nd);
        N(axpy)(&b2, k12, k31, nd);
        N(axpy)(&b2, k13, k21, nd);
        N(axpy)(&b2, k21, k31, nd);
        N(mul)(&b3, k10, k21, nd);
        N(mul)(&b3, &b3, k31, nd);
        double s1 = N(val)(&b1), s2 = N(val)(&b2), s3 = N(val)(&b3);
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
        N(set)(&r[i], root[i], nd);
#if LINEAR_DUAL
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
#else
    (void)tmp;
    (void)b3;
#endif
    return 0;
}

/* y = (Kd + r I) x for the mammillary disposition matrix Kd (m compartments). */
static inline void N(shifted_mv)(NUM *y, const NUM *x, const NUM *r, int m, const NUM *diag,
                                 const NUM *k12, const NUM *k21, const NUM *k13,
                                 const NUM *k31, int nd)
{
    NUM t;
    N(sub)(&t, r, &diag[0], nd);
    N(mul)(&y[0], &t, &x[0], nd);
    if (m >= 2) {
        N(axpy)(&y[0], k21, &x[1], nd);
        N(sub)(&t, r, &diag[1], nd);
        N(mul)(&y[1], &t, &x[1], nd);
        N(axpy)(&y[1], k12, &x[0], nd);
    }
    if (m >= 3) {
        N(axpy)(&y[0], k31, &x[2], nd);
        N(sub)(&t, r, &diag[2], nd);
        N(mul)(&y[2], &t, &x[2], nd);
        N(axpy)(&y[2], k13, &x[0], nd);
    }
}

/* The advance itself; the caller has validated s and dt. */
static int N(advance)(const popk_linsys *s, NUM *A, const NUM *R, const NUM *dt, int nd)
{
    const int m = s->ncmt, dep = s->depot ? 1 : 0;
    NUM k10, k12, k21, k13, k31, ka;
    N(load)(&k10, &s->k10, nd);
    N(set)(&k12, 0.0, nd);
    N(set)(&k21, 0.0, nd);
    N(set)(&k13, 0.0, nd);
    N(set)(&k31, 0.0, nd);
    N(set)(&ka, 0.0, nd);
    if (m >= 2) {
        N(load)(&k12, &s->k12, nd);
        N(load)(&k21, &s->k21, nd);
    }
    if (m >= 3) {
        N(load)(&k13, &s->k13, nd);
        N(load)(&k31, &s->k31, nd);
    }
    if (dep)
        N(load)(&ka, &s->ka, nd);

    NUM r[3];
    if (N(eigen)(r, m, &k10, &k12, &k21, &k13, &k31, nd) != 0)
        return -1;

    const NUM *Ad = dep ? &A[0] : NULL;
    const NUM *Rd = dep && R ? &R[0] : NULL;
    int need_disp_input = 0;
    if (R)
        for (int i = 0; i < m; i++)
            need_disp_input |= N(nonzero)(&R[dep + i], nd);
    const int need_depot_amount = dep && N(nonzero)(Ad, nd);
    const int need_depot_input = Rd && N(nonzero)(Rd, nd);
    const int need_zero = need_disp_input || need_depot_input;

    /* Nodes in ascending order of value: disposition eigenvalues are already ascending
     * (-r1 <= -r2 <= -r3), -ka is inserted in place, 0 is the largest possible node. */
    N(dd_table) tab;
    tab.n = 0;
    tab.have = 0;
    int pos_eig[3], pos_ka = -1, pos_zero = -1;
    for (int i = 0; i < m; i++) {
        if (dep && pos_ka < 0 && -N(val)(&ka) <= -N(val)(&r[i])) {
            pos_ka = tab.n;
            N(mul)(&tab.y[tab.n], &ka, dt, nd);
            N(scale)(&tab.y[tab.n], &tab.y[tab.n], -1.0, nd);
            tab.n++;
        }
        pos_eig[i] = tab.n;
        N(mul)(&tab.y[tab.n], &r[i], dt, nd);
        N(scale)(&tab.y[tab.n], &tab.y[tab.n], -1.0, nd);
        tab.n++;
    }
    if (dep && pos_ka < 0) {
        pos_ka = tab.n;
        N(mul)(&tab.y[tab.n], &ka, dt, nd);
        N(scale)(&tab.y[tab.n], &tab.y[tab.n], -1.0, nd);
        tab.n++;
    }
    if (need_zero) {
        pos_zero = tab.n;
        N(set)(&tab.y[tab.n], 0.0, nd);
        tab.n++;
    }
    for (int i = 0; i < tab.n; i++) { /* every single node is needed */
        N(exp)(&tab.memo[1u << i], &tab.y[i], nd);
        tab.have |= 1u << (1u << i);
    }
    const unsigned bit_ka = pos_ka >= 0 ? 1u << pos_ka : 0u;
    const unsigned bit_zero = pos_zero >= 0 ? 1u << pos_zero : 0u;

    /* dt^k: a divided difference over j nodes of exp(x dt) is dt^(j-1) times that of exp
     * over the scaled nodes */
    NUM tpow[LINEAR_NODES];
    N(set)(&tpow[0], 1.0, nd);
    for (int k = 1; k < LINEAR_NODES; k++)
        N(mul)(&tpow[k], &tpow[k - 1], dt, nd);

    NUM diag[3];
    N(add)(&diag[0], &k10, &k12, nd);
    N(add)(&diag[0], &diag[0], &k13, nd);
    diag[1] = k21;
    diag[2] = k31;

    /* Newton terms: v from the initial disposition amounts, w from the disposition inputs,
     * u from the central unit vector (the depot feeds the central compartment only). */
#if LINEAR_DUAL
    const int len = m;
    NUM vbuf[2][3], wbuf[2][3], ubuf[2][3], out[3];
#else
    /* Plain doubles: fixed length 3, zero-padded (the unused rate constants are zero, so
     * the padding stays zero), lets the compiler unroll every vector loop. */
    const int len = 3;
    NUM vbuf[2][3] = {{0}}, wbuf[2][3] = {{0}}, ubuf[2][3] = {{0}}, out[3] = {0};
#endif
    NUM *v = vbuf[0], *w = wbuf[0], *u = ubuf[0];
    for (int i = 0; i < m; i++) {
        v[i] = A[dep + i];
        if (need_disp_input)
            w[i] = R[dep + i];
        N(set)(&u[i], i == 0 ? 1.0 : 0.0, nd);
        N(set)(&out[i], 0.0, nd);
    }
    const int need_depot = need_depot_amount || need_depot_input;
    unsigned eig_mask = 0;
    for (int j = 0; j < m; j++) {
        eig_mask |= 1u << pos_eig[j];
        NUM coef;
        N(mul)(&coef, &tpow[j], N(dd)(&tab, eig_mask, nd), nd);
        for (int i = 0; i < len; i++)
            N(axpy)(&out[i], &coef, &v[i], nd);
        if (need_disp_input) {
            N(mul)(&coef, &tpow[j + 1], N(dd)(&tab, eig_mask | bit_zero, nd), nd);
            for (int i = 0; i < len; i++)
                N(axpy)(&out[i], &coef, &w[i], nd);
        }
        if (need_depot) {
            NUM gain, part;
            N(set)(&gain, 0.0, nd);
            if (need_depot_amount) {
                N(mul)(&part, &tpow[j + 1], N(dd)(&tab, eig_mask | bit_ka, nd), nd);
                N(axpy)(&gain, &part, Ad, nd);
            }
            if (need_depot_input) {
                N(mul)(&part, &tpow[j + 2], N(dd)(&tab, eig_mask | bit_ka | bit_zero, nd), nd);
                N(axpy)(&gain, &part, Rd, nd);
            }
            N(mul)(&gain, &gain, &ka, nd);
            for (int i = 0; i < len; i++)
                N(axpy)(&out[i], &gain, &u[i], nd);
        }
        if (j + 1 < m) {
            const int next = (j + 1) & 1;
            N(shifted_mv)(vbuf[next], v, &r[j], len, diag, &k12, &k21, &k13, &k31, nd);
            v = vbuf[next];
            if (need_disp_input) {
                N(shifted_mv)(wbuf[next], w, &r[j], len, diag, &k12, &k21, &k13, &k31, nd);
                w = wbuf[next];
            }
            if (need_depot) {
                N(shifted_mv)(ubuf[next], u, &r[j], len, diag, &k12, &k21, &k13, &k31, nd);
                u = ubuf[next];
            }
        }
    }

    if (dep) {
        NUM depot;
        N(mul)(&depot, N(dd)(&tab, bit_ka, nd), Ad, nd);
        if (need_depot_input) {
            NUM coef;
            N(mul)(&coef, &tpow[1], N(dd)(&tab, bit_ka | bit_zero, nd), nd);
            N(axpy)(&depot, &coef, Rd, nd);
        }
        A[0] = depot;
    }
    for (int i = 0; i < m; i++)
        A[dep + i] = out[i];
    return 0;
}
