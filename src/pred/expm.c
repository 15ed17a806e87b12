/* pred/expm.c — the matrix exponential on dual numbers (scaling and squaring with Pade
 * approximants) and the step of a linear odes: system built from its right-hand sides. */
#include "pred/expm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"
#include "util/error.h"

enum { NMAX = POPK_EXPM_MAX_STATES + 1, PMAX = 1 + POPK_DUAL_MAX, NCACHE = 4 };

/* Dual matrices in the work area of popk_expm_dense (each 1 + nd planes). */
enum { W_XS, W_A2, W_A4, W_A6, W_A8, W_T, W_U, W_V, W_TMP, W_Q, W_NMAT };

/* ---- dense algebra on dual matrices (planes layout, see expm.h) ------------------------ */

/* C = A B, or C += A B when add, for plain N x N matrices; C is distinct from A and B.
 * Zero entries of A are skipped: compartment matrices are sparse. Inputs are finite. */
static void mat_mul(int N, const double *A, const double *B, double *C, int add)
{
    if (!add)
        memset(C, 0, sizeof(double) * (size_t)(N * N));
    for (int i = 0; i < N; i++) {
        double *c = C + i * N;
        for (int k = 0; k < N; k++) {
            double a = A[i * N + k];
            if (a == 0.0)
                continue;
            const double *b = B + k * N;
            for (int j = 0; j < N; j++)
                c[j] += a * b[j];
        }
    }
}

/* C = A B on dual matrices: C_0 = A_0 B_0, C_p = A_p B_0 + A_0 B_p. */
static void dual_mul(int N, int P, const double *A, const double *B, double *C)
{
    size_t S = (size_t)N * (size_t)N;
    mat_mul(N, A, B, C, 0);
    for (int p = 1; p < P; p++) {
        mat_mul(N, A + p * S, B, C + p * S, 0);
        mat_mul(N, A, B + p * S, C + p * S, 1);
    }
}

/* out = sum_t coef[t] * mats[t] + coef_id * I on dual matrices (the identity is a constant:
 * plane 0 only); out is none of mats. */
static void dual_comb(int N, int P, double *out, double coef_id, int nt, const double *coef,
                      const double *const *mats)
{
    size_t S = (size_t)N * (size_t)N;
    for (size_t e = 0; e < (size_t)P * S; e++) {
        double v = 0.0;
        for (int t = 0; t < nt; t++)
            v += coef[t] * mats[t][e];
        out[e] = v;
    }
    for (int i = 0; i < N; i++)
        out[i * N + i] += coef_id;
}

/* LU factorisation with partial pivoting of the plain matrix a (in place). */
static int lu_factor(int N, double *a, int *piv)
{
    for (int c = 0; c < N; c++) {
        int p = c;
        for (int i = c + 1; i < N; i++)
            if (fabs(a[i * N + c]) > fabs(a[p * N + c]))
                p = i;
        piv[c] = p;
        if (a[p * N + c] == 0.0)
            return -1;
        if (p != c)
            for (int j = 0; j < N; j++) {
                double t = a[c * N + j];
                a[c * N + j] = a[p * N + j];
                a[p * N + j] = t;
            }
        for (int i = c + 1; i < N; i++) {
            double f = a[i * N + c] /= a[c * N + c];
            if (f != 0.0)
                for (int j = c + 1; j < N; j++)
                    a[i * N + j] -= f * a[c * N + j];
        }
    }
    return 0;
}

/* Solve (LU) X = B for the N columns of B (in place). */
static void lu_solve(int N, const double *lu, const int *piv, double *B)
{
    for (int c = 0; c < N; c++)
        if (piv[c] != c)
            for (int j = 0; j < N; j++) {
                double t = B[c * N + j];
                B[c * N + j] = B[piv[c] * N + j];
                B[piv[c] * N + j] = t;
            }
    for (int i = 1; i < N; i++)
        for (int k = 0; k < i; k++) {
            double f = lu[i * N + k];
            if (f != 0.0)
                for (int j = 0; j < N; j++)
                    B[i * N + j] -= f * B[k * N + j];
        }
    for (int i = N - 1; i >= 0; i--) {
        for (int k = i + 1; k < N; k++) {
            double f = lu[i * N + k];
            if (f != 0.0)
                for (int j = 0; j < N; j++)
                    B[i * N + j] -= f * B[k * N + j];
        }
        for (int j = 0; j < N; j++)
            B[i * N + j] /= lu[i * N + i];
    }
}

size_t popk_expm_work_size(int N, int nd)
{
    size_t S = (size_t)N * (size_t)N;
    return W_NMAT * (size_t)(1 + nd) * S + S;
}

/* Higham (2005), "The scaling and squaring method for the matrix exponential revisited",
 * SIAM J Matrix Anal Appl 26:1179, Table 2.3: the largest 1-norm for which the [m/m] Pade
 * approximant has backward error at most 2^-53, m = 3, 5, 7, 9, 13. */
static const double pade_theta[5] = {1.495585217958292e-2, 2.539398330063230e-1,
                                     9.504178996162932e-1, 2.097847961257068e0,
                                     5.371920351148152e0};
static const int pade_degree[5] = {3, 5, 7, 9, 13};

/* Coefficients b_0 .. b_m of the [m/m] Pade numerator p(x) = sum b_j x^j. */
static const double pade_b3[] = {120.0, 60.0, 12.0, 1.0};
static const double pade_b5[] = {30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0};
static const double pade_b7[] = {17297280.0, 8648640.0, 1995840.0, 277200.0,
                                 25200.0,    1512.0,    56.0,      1.0};
static const double pade_b9[] = {17643225600.0, 8821612800.0, 2075673600.0, 302702400.0,
                                 30270240.0,    2162160.0,    110880.0,     3960.0,
                                 90.0,          1.0};
static const double pade_b13[] = {64764752532480000.0, 32382376266240000.0, 7771770303897600.0,
                                   1187353796428800.0,  129060195264000.0,   10559470521600.0,
                                   670442572800.0,      33522128640.0,       1323241920.0,
                                   40840800.0,          960960.0,            16380.0,
                                   182.0,               1.0};

int popk_expm_dense(int N, int nd, const double *X, double *E, double *work)
{
    int P = 1 + nd;
    size_t S = (size_t)N * (size_t)N, M = (size_t)P * S;
    double *w[W_NMAT];
    for (int k = 0; k < W_NMAT; k++)
        w[k] = work + (size_t)k * M;
    double *lu = work + W_NMAT * M;
    double norm = 0.0;
    for (int j = 0; j < N; j++) {
        double col = 0.0;
        for (int i = 0; i < N; i++)
            col += fabs(X[i * N + j]);
        if (!isfinite(col)) /* fmax would drop a NaN */
            return -1;
        norm = fmax(norm, col);
    }
    int level = 0, s = 0;
    while (level < 4 && norm > pade_theta[level])
        level++;
    int m = pade_degree[level];
    if (m == 13 && norm > pade_theta[4]) {
        int e;
        double f = frexp(norm / pade_theta[4], &e); /* norm / theta = f 2^e, f in [0.5, 1) */
        s = f == 0.5 ? e - 1 : e;
    }
    double *Xs = w[W_XS];
    if (s == 0)
        memcpy(Xs, X, sizeof(double) * M);
    else
        for (size_t e = 0; e < M; e++)
            Xs[e] = ldexp(X[e], -s);
    double *A2 = w[W_A2], *A4 = w[W_A4], *A6 = w[W_A6], *A8 = w[W_A8];
    double *T = w[W_T], *U = w[W_U], *V = w[W_V], *tmp = w[W_TMP], *Q = w[W_Q];
    dual_mul(N, P, Xs, Xs, A2);
    if (m >= 5)
        dual_mul(N, P, A2, A2, A4);
    if (m >= 7)
        dual_mul(N, P, A4, A2, A6);
    if (m == 9)
        dual_mul(N, P, A6, A2, A8);
    if (m < 13) {
        /* U = X sum_j b_(2j+1) A^(2j), V = sum_j b_(2j) A^(2j) */
        const double *b = m == 3 ? pade_b3 : m == 5 ? pade_b5 : m == 7 ? pade_b7 : pade_b9;
        const double *pw[4] = {A2, A4, A6, A8};
        double co[4], ce[4];
        int nt = (m - 1) / 2;
        for (int j = 0; j < nt; j++) {
            co[j] = b[2 * j + 3];
            ce[j] = b[2 * j + 2];
        }
        dual_comb(N, P, T, b[1], nt, co, pw);
        dual_mul(N, P, Xs, T, U);
        dual_comb(N, P, V, b[0], nt, ce, pw);
    } else {
        const double *b = pade_b13;
        const double *pw[3] = {A6, A4, A2};
        double c1[3] = {b[13], b[11], b[9]}, c2[3] = {b[7], b[5], b[3]};
        double c3[3] = {b[12], b[10], b[8]}, c4[3] = {b[6], b[4], b[2]};
        dual_comb(N, P, T, 0.0, 3, c1, pw);
        dual_mul(N, P, A6, T, tmp);
        dual_comb(N, P, T, b[1], 3, c2, pw);
        for (size_t e = 0; e < M; e++)
            T[e] += tmp[e];
        dual_mul(N, P, Xs, T, U);
        dual_comb(N, P, T, 0.0, 3, c3, pw);
        dual_mul(N, P, A6, T, tmp);
        dual_comb(N, P, V, b[0], 3, c4, pw);
        for (size_t e = 0; e < M; e++)
            V[e] += tmp[e];
    }
    /* r = (V - U)^-1 (V + U) on duals: Q R = P gives Q_0 R_p = P_p - Q_p R_0. */
    for (size_t e = 0; e < M; e++) {
        Q[e] = V[e] - U[e];
        V[e] += U[e];
    }
    int piv[NMAX];
    memcpy(lu, Q, sizeof(double) * S);
    if (lu_factor(N, lu, piv) != 0)
        return -1;
    double *R = s % 2 == 0 ? E : tmp, *other = s % 2 == 0 ? tmp : E;
    memcpy(R, V, sizeof(double) * M);
    lu_solve(N, lu, piv, R);
    for (int p = 1; p < P; p++) {
        mat_mul(N, Q + p * S, R, R + p * S, 0);
        for (size_t e = 0; e < S; e++)
            R[p * S + e] = V[p * S + e] - R[p * S + e];
        lu_solve(N, lu, piv, R + p * S);
    }
    /* Squaring alternates between E and tmp, starting so that the last lands in E. */
    for (int k = 0; k < s; k++) {
        dual_mul(N, P, R, R, other);
        double *t = R;
        R = other;
        other = t;
    }
    return 0;
}

/* ---- the system of an affine odes: model ---------------------------------------------- */

typedef struct {
    int used, N;
    double g;                   /* scale of the input column */
    double dt[PMAX];            /* dt and its partials */
    double ctot[PMAX * POPK_EXPM_MAX_STATES]; /* c + R, planes (N = n + 1 only) */
    double E[PMAX * NMAX * NMAX];
} exp_entry;

struct popk_expm {
    const popk_model *m;
    int n;
    int nd;                     /* directions of the current system */
    int have;                   /* K and c hold the system of `frame` */
    double *frame;              /* slots [0, time_slot) of that system (stride 1 + nd) */
    double *slots, *stack;      /* private frame for the right-hand sides */
    double K[PMAX * POPK_EXPM_MAX_STATES * POPK_EXPM_MAX_STATES]; /* planes */
    double c[PMAX * POPK_EXPM_MAX_STATES];                         /* planes */
    double knorm;               /* 1-norm of K's values */
    exp_entry cache[NCACHE];
    int next;                   /* cache entry to replace next */
    double X[PMAX * NMAX * NMAX];
    double *work;
    popk_expm_stats stats;
};

popk_expm *popk_expm_new(const popk_model *m, popk_error *err)
{
    if (m->ncmt < 1 || m->ncmt > POPK_EXPM_MAX_STATES) {
        popk_error_set(err, POPK_ERR_MODEL, m->path, 0, 0,
                       "the matrix exponential handles 1 to %d compartments (model has %d)",
                       POPK_EXPM_MAX_STATES, m->ncmt);
        return NULL;
    }
    popk_expm *x = calloc(1, sizeof *x);
    size_t stride = PMAX, stack = (size_t)popk_prog_stack_size(m->prog_rhs) + 1;
    if (x) {
        x->frame = malloc(sizeof(double) * ((size_t)m->time_slot + 1) * stride);
        x->slots = calloc((size_t)m->nslots * stride, sizeof(double));
        x->stack = calloc(stack * stride, sizeof(double));
        x->work = malloc(sizeof(double) * popk_expm_work_size(NMAX, POPK_DUAL_MAX));
    }
    if (!x || !x->frame || !x->slots || !x->stack || !x->work) {
        popk_expm_free(x);
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    x->m = m;
    x->n = m->ncmt;
    return x;
}

void popk_expm_free(popk_expm *x)
{
    if (!x)
        return;
    free(x->frame);
    free(x->slots);
    free(x->stack);
    free(x->work);
    free(x);
}

void popk_expm_get_stats(const popk_expm *x, popk_expm_stats *stats)
{
    if (x)
        *stats = x->stats;
    else
        memset(stats, 0, sizeof *stats);
}

int popk_expm_set_frame(popk_expm *x, int nd, const double *slots, double *bad)
{
    const popk_model *m = x->m;
    int n = x->n, P = 1 + nd;
    size_t stride = (size_t)P, len = (size_t)m->time_slot * stride;
    if (x->have && x->nd == nd && !memcmp(x->frame, slots, sizeof(double) * len))
        return 0;
    x->have = 0;
    for (int k = 0; k < NCACHE; k++)
        x->cache[k].used = 0;
    memcpy(x->slots, slots, sizeof(double) * len);
    /* Time is read by no affine right-hand side; amounts are set below. */
    memset(x->slots + (size_t)m->time_slot * stride, 0, sizeof(double) * stride);
    size_t S = (size_t)n * (size_t)n;
    for (int col = -1; col < n; col++) {
        for (int j = 0; j < n; j++) {
            double *a = x->slots + (size_t)(m->amt_slot + j) * stride;
            memset(a, 0, sizeof(double) * stride);
            a[0] = j == col ? 1.0 : 0.0;
        }
        if (nd == 0)
            popk_prog_eval(m->prog_rhs, x->slots, x->stack);
        else
            popk_prog_eval_dual(m->prog_rhs, nd, x->slots, x->stack);
        for (int i = 0; i < n; i++) {
            const double *d = x->slots + (size_t)(m->deriv_slot + i) * stride;
            if (!isfinite(d[0])) {
                *bad = d[0];
                return 1 + i;
            }
            for (int p = 0; p < P; p++) {
                if (col < 0)
                    x->c[p * n + i] = d[p];
                else
                    x->K[p * S + (size_t)(i * n + col)] = d[p] - x->c[p * n + i];
            }
        }
    }
    x->knorm = 0.0;
    for (int j = 0; j < n; j++) {
        double col = 0.0;
        for (int i = 0; i < n; i++)
            col += fabs(x->K[i * n + j]);
        x->knorm = fmax(x->knorm, col);
    }
    memcpy(x->frame, slots, sizeof(double) * len);
    x->nd = nd;
    x->have = 1;
    x->stats.systems++;
    return 0;
}

/* exp(M dt) for the current system with inputs ctot (planes; NULL: none), from the cache
 * or computed into a cache entry. */
static const exp_entry *step_matrix(popk_expm *x, const double *ctot, const double *dt)
{
    int n = x->n, nd = x->nd, P = 1 + nd, N = ctot ? n + 1 : n;
    size_t sz = sizeof(double) * (size_t)P;
    for (int k = 0; k < NCACHE; k++) {
        const exp_entry *c = &x->cache[k];
        if (c->used && c->N == N && !memcmp(c->dt, dt, sz) &&
            (!ctot || !memcmp(c->ctot, ctot, sz * (size_t)n)))
            return c;
    }
    exp_entry *c = &x->cache[x->next];
    x->next = (x->next + 1) % NCACHE;
    c->used = 0;
    c->N = N;
    c->g = 1.0;
    memcpy(c->dt, dt, sz);
    if (ctot) {
        memcpy(c->ctot, ctot, sz * (size_t)n);
        double cn = 0.0;
        for (int i = 0; i < n; i++)
            cn += fabs(ctot[i]);
        if (cn > 0.0) {
            int e;
            frexp(cn / (x->knorm > 0.0 ? x->knorm : 1.0), &e);
            c->g = ldexp(1.0, e);
        }
    }
    /* X = M dt on duals: X_0 = M_0 dt_0, X_p = M_p dt_0 + M_0 dt_p. */
    size_t S = (size_t)N * (size_t)N, Sk = (size_t)n * (size_t)n;
    double *X = x->X;
    memset(X, 0, sizeof(double) * S * (size_t)P);
    for (int p = 0; p < P; p++) {
        double *Xp = X + p * S;
        const double *Kp = x->K + p * Sk;
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++)
                Xp[i * N + j] = Kp[i * n + j] * dt[0] + (p ? x->K[i * n + j] * dt[p] : 0.0);
            if (ctot)
                Xp[i * N + n] = (ctot[p * n + i] * dt[0] + (p ? ctot[i] * dt[p] : 0.0)) / c->g;
        }
    }
    x->stats.exps++;
    if (popk_expm_dense(N, nd, X, c->E, x->work) != 0)
        return NULL;
    c->used = 1;
    return c;
}

int popk_expm_advance(popk_expm *x, popk_dual *A, const popk_dual *R, popk_dual dt)
{
    int n = x->n, nd = x->nd;
    double ctot[PMAX * POPK_EXPM_MAX_STATES], dtp[PMAX];
    int inputs = 0;
    for (int i = 0; i < n; i++) {
        ctot[i] = x->c[i] + R[i].v;
        inputs |= ctot[i] != 0.0;
        for (int k = 0; k < nd; k++) {
            ctot[(1 + k) * n + i] = x->c[(1 + k) * n + i] + R[i].d[k];
            inputs |= ctot[(1 + k) * n + i] != 0.0;
        }
    }
    dtp[0] = dt.v;
    for (int k = 0; k < nd; k++)
        dtp[1 + k] = dt.d[k];
    x->stats.steps++;
    const exp_entry *c = step_matrix(x, inputs ? ctot : NULL, dtp);
    if (!c)
        return -1;
    int N = c->N;
    size_t S = (size_t)N * (size_t)N;
    popk_dual out[POPK_EXPM_MAX_STATES];
    for (int i = 0; i < n; i++) {
        const double *e0 = c->E + i * N;
        double v = inputs ? c->g * e0[n] : 0.0;
        for (int j = 0; j < n; j++)
            v += e0[j] * A[j].v;
        out[i].v = v;
        for (int k = 0; k < nd; k++) {
            const double *ek = c->E + (size_t)(1 + k) * S + i * N;
            double d = inputs ? c->g * ek[n] : 0.0;
            for (int j = 0; j < n; j++)
                d += e0[j] * A[j].d[k] + ek[j] * A[j].v;
            out[i].d[k] = d;
        }
    }
    for (int i = 0; i < n; i++) {
        if (!isfinite(out[i].v))
            return -1;
        for (int k = 0; k < nd; k++)
            if (!isfinite(out[i].d[k]))
                return -1;
        A[i].v = out[i].v;
        memcpy(A[i].d, out[i].d, sizeof(double) * (size_t)nd);
    }
    return 0;
}
