/* estimate/params.c — the map between model parameters and the unconstrained outer vector. */
#include "estimate/estimate.h"
#include "estimate/linalg.h"
#include "util/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { THETA_FREE, THETA_LOWER, THETA_UPPER, THETA_BOTH } theta_transform;

typedef struct {
    popk_param_kind kind;
    int row, col;             /* theta/sigma index, or omega element */
    int block, a, b;          /* omega: block and local indices (a >= b) */
    theta_transform transform;
    double lo, hi, scale;
} param_entry;

typedef struct {
    int size;
    int *eta;                 /* the block's etas, ascending */
    int fixed;
} omega_block;

struct popk_param_map {
    int ntheta, neta, nsigma, npar, nblock;
    double *theta0, *omega0, *sigma0;
    param_entry *entry;
    omega_block *block;
    double *work;             /* largest block squared */
};

void popk_param_map_free(popk_param_map *map)
{
    if (!map)
        return;
    for (int b = 0; b < map->nblock; b++)
        free(map->block[b].eta);
    free(map->block);
    free(map->entry);
    free(map->theta0);
    free(map->omega0);
    free(map->sigma0);
    free(map->work);
    free(map);
}

static double *copy_or_zero(const double *src, int n)
{
    double *d = calloc(n > 0 ? (size_t)n : 1, sizeof *d);
    if (d && src)
        memcpy(d, src, (size_t)n * sizeof *d);
    return d;
}

/* Gather block b of omega into m (size x size). */
static void block_get(const popk_param_map *map, int b, const double *omega, double *m)
{
    const omega_block *blk = &map->block[b];
    for (int i = 0; i < blk->size; i++)
        for (int j = 0; j < blk->size; j++)
            m[i * blk->size + j] = omega[blk->eta[i] * map->neta + blk->eta[j]];
}

static popk_status check_problem(const popk_problem *prob, popk_error *err)
{
    if (!prob || prob->nsub < 1 || !prob->nobs || !prob->y || !prob->pred)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                              "estimation problem: no subjects, observations or callback");
    if (prob->ntheta < 0 || prob->neta < 0 || prob->nsigma < 0)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "negative parameter count");
    if ((prob->ntheta && !prob->theta0) || (prob->neta && !prob->omega0) ||
        (prob->nsigma && !prob->sigma0))
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "missing initial values");
    for (int i = 0; i < prob->nsub; i++)
        if (prob->nobs[i] < 0 || (prob->nobs[i] > 0 && !prob->y[i]))
            return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                  "subject %d: bad observation count", i + 1);
    for (int k = 0; k < prob->ntheta; k++) {
        double lo = prob->theta_lo ? prob->theta_lo[k] : -INFINITY;
        double hi = prob->theta_hi ? prob->theta_hi[k] : INFINITY;
        double t = prob->theta0[k];
        int fixed = prob->theta_fixed && prob->theta_fixed[k];
        if (!isfinite(t) || isnan(lo) || isnan(hi) || !(lo < hi))
            return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                  "THETA(%d): bad initial value or bounds", k + 1);
        if (!fixed && !(lo < t && t < hi))
            return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                  "THETA(%d): initial value %g not strictly inside its bounds "
                                  "(%g, %g)", k + 1, t, lo, hi);
    }
    for (int k = 0; k < prob->nsigma; k++)
        if (!(prob->sigma0[k] > 0.0) || !isfinite(prob->sigma0[k]))
            return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                  "SIGMA(%d): initial SD %g must be positive", k + 1,
                                  prob->sigma0[k]);
    int q = prob->neta;
    for (int i = 0; i < q; i++) {
        if (prob->omega_block && prob->omega_block[i] < 0)
            return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                  "eta %d: negative omega block id", i + 1);
        for (int j = 0; j < q; j++) {
            double a = prob->omega0[i * q + j], b = prob->omega0[j * q + i];
            int same = prob->omega_block ? prob->omega_block[i] == prob->omega_block[j] : i == j;
            if (!isfinite(a) || fabs(a - b) > 1e-12 * (fabs(a) + fabs(b)))
                return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                      "OMEGA(%d,%d): not finite or not symmetric", i + 1, j + 1);
            if (!same && a != 0.0)
                return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                      "OMEGA(%d,%d) = %g links etas of different blocks", i + 1,
                                      j + 1, a);
        }
    }
    return POPK_OK;
}

popk_param_map *popk_param_map_create(const popk_problem *prob, popk_error *err)
{
    if (check_problem(prob, err) != POPK_OK)
        return NULL;
    popk_param_map *map = calloc(1, sizeof *map);
    if (!map)
        goto nomem;
    int q = prob->neta;
    map->ntheta = prob->ntheta;
    map->neta = q;
    map->nsigma = prob->nsigma;
    map->theta0 = copy_or_zero(prob->theta0, prob->ntheta);
    map->omega0 = copy_or_zero(prob->omega0, q * q);
    map->sigma0 = copy_or_zero(prob->sigma0, prob->nsigma);
    map->work = calloc((size_t)(q * q + 1), sizeof *map->work);
    if (!map->theta0 || !map->omega0 || !map->sigma0 || !map->work)
        goto nomem;
    for (int i = 0; i < q; i++) {
        int id = prob->omega_block ? prob->omega_block[i] : i;
        if (id + 1 > map->nblock)
            map->nblock = id + 1;
    }
    map->block = calloc((size_t)map->nblock + 1, sizeof *map->block);
    if (!map->block)
        goto nomem;
    for (int b = 0; b < map->nblock; b++) {
        omega_block *blk = &map->block[b];
        blk->eta = malloc((size_t)q * sizeof *blk->eta);
        if (!blk->eta)
            goto nomem;
        for (int i = 0; i < q; i++)
            if ((prob->omega_block ? prob->omega_block[i] : i) == b)
                blk->eta[blk->size++] = i;
        blk->fixed = prob->omega_block_fixed ? prob->omega_block_fixed[b] != 0 : 0;
        if (blk->size) {
            block_get(map, b, map->omega0, map->work);
            if (popk_chol(blk->size, map->work) != 0) {
                popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                               "OMEGA block of eta %d is not positive definite", blk->eta[0] + 1);
                popk_param_map_free(map);
                return NULL;
            }
        }
    }
    int n = 0;
    for (int k = 0; k < prob->ntheta; k++)
        n += !(prob->theta_fixed && prob->theta_fixed[k]);
    for (int b = 0; b < map->nblock; b++)
        if (!map->block[b].fixed)
            n += map->block[b].size * (map->block[b].size + 1) / 2;
    for (int k = 0; k < prob->nsigma; k++)
        n += !(prob->sigma_fixed && prob->sigma_fixed[k]);
    map->npar = n;
    map->entry = calloc((size_t)n + 1, sizeof *map->entry);
    if (!map->entry)
        goto nomem;
    n = 0;
    for (int k = 0; k < prob->ntheta; k++) {
        if (prob->theta_fixed && prob->theta_fixed[k])
            continue;
        param_entry *e = &map->entry[n++];
        e->kind = POPK_PARAM_THETA;
        e->row = e->col = k;
        e->lo = prob->theta_lo ? prob->theta_lo[k] : -INFINITY;
        e->hi = prob->theta_hi ? prob->theta_hi[k] : INFINITY;
        int has_lo = isfinite(e->lo), has_hi = isfinite(e->hi);
        e->transform = has_lo && has_hi ? THETA_BOTH
                       : has_lo         ? THETA_LOWER
                       : has_hi         ? THETA_UPPER
                                        : THETA_FREE;
        e->scale = prob->theta0[k] != 0.0 ? fabs(prob->theta0[k]) : 1.0;
    }
    for (int b = 0; b < map->nblock; b++) {
        const omega_block *blk = &map->block[b];
        if (blk->fixed)
            continue;
        for (int a = 0; a < blk->size; a++)
            for (int c = 0; c <= a; c++) {
                param_entry *e = &map->entry[n++];
                e->kind = POPK_PARAM_OMEGA;
                e->row = blk->eta[a];
                e->col = blk->eta[c];
                e->block = b;
                e->a = a;
                e->b = c;
            }
    }
    for (int k = 0; k < prob->nsigma; k++) {
        if (prob->sigma_fixed && prob->sigma_fixed[k])
            continue;
        param_entry *e = &map->entry[n++];
        e->kind = POPK_PARAM_SIGMA;
        e->row = e->col = k;
    }
    return map;
nomem:
    popk_param_map_free(map);
    popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory building the parameter map");
    return NULL;
}

int popk_param_map_npar(const popk_param_map *map) { return map->npar; }

void popk_param_map_info(const popk_param_map *map, int k, popk_param_kind *kind, int *row,
                         int *col)
{
    const param_entry *e = &map->entry[k];
    if (kind)
        *kind = e->kind;
    if (row)
        *row = e->row;
    if (col)
        *col = e->col;
}

char *popk_param_map_label(const popk_param_map *map, int k, char *buf, size_t size)
{
    const param_entry *e = &map->entry[k];
    if (e->kind == POPK_PARAM_THETA)
        snprintf(buf, size, "THETA(%d)", e->row + 1);
    else if (e->kind == POPK_PARAM_OMEGA)
        snprintf(buf, size, "OMEGA(%d,%d)", e->row + 1, e->col + 1);
    else
        snprintf(buf, size, "SIGMA(%d)", e->row + 1);
    return buf;
}

popk_status popk_param_map_pack(const popk_param_map *map, const double *theta,
                                const double *omega, const double *sigma, double *x,
                                popk_error *err)
{
    int q = map->neta;
    for (int k = 0; k < map->npar; k++) {
        const param_entry *e = &map->entry[k];
        if (e->kind == POPK_PARAM_THETA) {
            double t = theta[e->row];
            int inside = e->lo < t && t < e->hi && isfinite(t);
            if (!inside)
                return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                      "THETA(%d) = %g is not strictly inside (%g, %g)",
                                      e->row + 1, t, e->lo, e->hi);
            switch (e->transform) {
            case THETA_FREE: x[k] = t / e->scale; break;
            case THETA_LOWER: x[k] = log(t - e->lo); break;
            case THETA_UPPER: x[k] = log(e->hi - t); break;
            case THETA_BOTH: {
                double u = (t - e->lo) / (e->hi - e->lo);
                x[k] = log(u / (1.0 - u));
                break;
            }
            }
        } else if (e->kind == POPK_PARAM_SIGMA) {
            if (!(sigma[e->row] > 0.0) || !isfinite(sigma[e->row]))
                return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                      "SIGMA(%d) = %g must be positive", e->row + 1,
                                      sigma[e->row]);
            x[k] = log(sigma[e->row]);
        } else if (e->a == 0 && e->b == 0) {
            /* first element of a block: factor the whole block, fill its entries */
            const omega_block *blk = &map->block[e->block];
            int m = blk->size;
            block_get(map, e->block, omega, map->work);
            if (popk_chol(m, map->work) != 0)
                return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                      "OMEGA block of eta %d is not positive definite",
                                      blk->eta[0] + 1);
            int kk = k;
            for (int a = 0; a < m; a++)
                for (int c = 0; c <= a; c++, kk++)
                    x[kk] = a == c ? log(map->work[a * m + a]) : map->work[a * m + c];
        }
    }
    (void)q;
    return POPK_OK;
}

static double theta_from_x(const param_entry *e, double x)
{
    switch (e->transform) {
    case THETA_FREE: return x * e->scale;
    case THETA_LOWER: return e->lo + exp(x);
    case THETA_UPPER: return e->hi - exp(x);
    case THETA_BOTH: break;
    }
    return e->lo + (e->hi - e->lo) / (1.0 + exp(-x));
}

/* Cholesky factor of block b from x (entries starting at k0) into L (m x m). */
static void block_factor(const popk_param_map *map, int b, const double *x, int k0, double *L)
{
    int m = map->block[b].size;
    for (int a = 0; a < m; a++)
        for (int c = 0; c < m; c++)
            L[a * m + c] = 0.0;
    int k = k0;
    for (int a = 0; a < m; a++)
        for (int c = 0; c <= a; c++, k++)
            L[a * m + c] = a == c ? exp(x[k]) : x[k];
}

/* Full parameters at their initial values (fixed entries keep them). */
static void copy_initial(const popk_param_map *map, double *theta, double *omega, double *sigma)
{
    int q = map->neta;
    if (map->ntheta)
        memcpy(theta, map->theta0, (size_t)map->ntheta * sizeof *theta);
    if (q)
        memcpy(omega, map->omega0, (size_t)(q * q) * sizeof *omega);
    if (map->nsigma)
        memcpy(sigma, map->sigma0, (size_t)map->nsigma * sizeof *sigma);
}

void popk_param_map_unpack(const popk_param_map *map, const double *x, double *theta,
                           double *omega, double *sigma)
{
    int q = map->neta;
    copy_initial(map, theta, omega, sigma);
    for (int k = 0; k < map->npar; k++) {
        const param_entry *e = &map->entry[k];
        if (e->kind == POPK_PARAM_THETA)
            theta[e->row] = theta_from_x(e, x[k]);
        else if (e->kind == POPK_PARAM_SIGMA)
            sigma[e->row] = exp(x[k]);
        else if (e->a == 0 && e->b == 0) {
            const omega_block *blk = &map->block[e->block];
            int m = blk->size;
            double *L = map->work;
            block_factor(map, e->block, x, k, L);
            for (int a = 0; a < m; a++)
                for (int c = 0; c <= a; c++) {
                    double s = 0.0;
                    for (int j = 0; j <= c; j++)
                        s += L[a * m + j] * L[c * m + j];
                    omega[blk->eta[a] * q + blk->eta[c]] = s;
                    omega[blk->eta[c] * q + blk->eta[a]] = s;
                }
        }
    }
}

void popk_param_map_get_natural(const popk_param_map *map, const double *theta,
                                const double *omega, const double *sigma, double *p)
{
    for (int k = 0; k < map->npar; k++) {
        const param_entry *e = &map->entry[k];
        p[k] = e->kind == POPK_PARAM_THETA   ? theta[e->row]
               : e->kind == POPK_PARAM_SIGMA ? sigma[e->row]
                                             : omega[e->row * map->neta + e->col];
    }
}

void popk_param_map_set_natural(const popk_param_map *map, const double *p, double *theta,
                                double *omega, double *sigma)
{
    int q = map->neta;
    copy_initial(map, theta, omega, sigma);
    for (int k = 0; k < map->npar; k++) {
        const param_entry *e = &map->entry[k];
        if (e->kind == POPK_PARAM_THETA)
            theta[e->row] = p[k];
        else if (e->kind == POPK_PARAM_SIGMA)
            sigma[e->row] = p[k];
        else {
            omega[e->row * q + e->col] = p[k];
            omega[e->col * q + e->row] = p[k];
        }
    }
}

void popk_param_map_jacobian(const popk_param_map *map, const double *x, double *J)
{
    int n = map->npar;
    for (int k = 0; k < n * n; k++)
        J[k] = 0.0;
    for (int k = 0; k < n; k++) {
        const param_entry *e = &map->entry[k];
        if (e->kind == POPK_PARAM_THETA) {
            double d;
            switch (e->transform) {
            case THETA_FREE: d = e->scale; break;
            case THETA_LOWER: d = exp(x[k]); break;
            case THETA_UPPER: d = -exp(x[k]); break;
            default: {
                double s = 1.0 / (1.0 + exp(-x[k]));
                d = (e->hi - e->lo) * s * (1.0 - s);
            }
            }
            J[k * n + k] = d;
        } else if (e->kind == POPK_PARAM_SIGMA) {
            J[k * n + k] = exp(x[k]);
        } else if (e->a == 0 && e->b == 0) {
            /* Omega_ab = sum_j L_aj L_bj, so dOmega_ab/dL_uv = [a==u] L_bv + [b==u] L_av */
            int m = map->block[e->block].size;
            double *L = map->work;
            block_factor(map, e->block, x, k, L);
            int r = k;
            for (int a = 0; a < m; a++)
                for (int b = 0; b <= a; b++, r++) {
                    int c = k;
                    for (int u = 0; u < m; u++)
                        for (int v = 0; v <= u; v++, c++) {
                            double d = (a == u ? L[b * m + v] : 0.0) + (b == u ? L[a * m + v] : 0.0);
                            J[r * n + c] = u == v ? d * L[u * m + u] : d;
                        }
                }
        }
    }
}
