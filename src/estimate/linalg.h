/* estimate/linalg.h — small dense symmetric-matrix kernels for the estimator (row-major). */
#ifndef POPK_ESTIMATE_LINALG_H
#define POPK_ESTIMATE_LINALG_H

#include <math.h>

/* Cholesky A = L L' in place (lower triangle of a; the upper is zeroed). The matrices are
 * tiny (neta x neta), so a plain loop beats a LAPACK call. Returns 0, or -1 if not PD. */
static inline int popk_chol(int n, double *a)
{
    for (int j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (int k = 0; k < j; k++)
            d -= a[j * n + k] * a[j * n + k];
        if (!(d > 0.0) || !isfinite(d))
            return -1;
        d = sqrt(d);
        a[j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double s = a[i * n + j];
            for (int k = 0; k < j; k++)
                s -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = s / d;
        }
        for (int k = j + 1; k < n; k++)
            a[j * n + k] = 0.0;
    }
    return 0;
}

/* Solve L L' x = b in place. */
static inline void popk_chol_solve(int n, const double *L, double *b)
{
    for (int i = 0; i < n; i++) {
        double s = b[i];
        for (int k = 0; k < i; k++)
            s -= L[i * n + k] * b[k];
        b[i] = s / L[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        double s = b[i];
        for (int k = i + 1; k < n; k++)
            s -= L[k * n + i] * b[k];
        b[i] = s / L[i * n + i];
    }
}

static inline double popk_chol_logdet(int n, const double *L)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += log(L[i * n + i]);
    return 2.0 * s;
}

/* inv = (L L')^-1, column by column; work has n entries. */
static inline void popk_chol_inverse(int n, const double *L, double *inv, double *work)
{
    for (int c = 0; c < n; c++) {
        double *col = work;
        for (int i = 0; i < n; i++)
            col[i] = (i == c);
        popk_chol_solve(n, L, col);
        for (int i = 0; i < n; i++)
            inv[i * n + c] = col[i];
    }
}

#endif
