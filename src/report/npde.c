/* report/npde.c — PD, NPD, PDE and NPDE from simulated replicates (see npde.h). */
#include "report/npde.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/stats.h"
#include "util/error.h"

static double clamp_p(double p, int K)
{
    if (p <= 0.0)
        return 0.5 / K;
    if (p >= 1.0)
        return 1.0 - 0.5 / K;
    return p;
}

int popk_npde_subject(int n, const double *y, int K, const double *ysim, double *pd,
                      double *npd, double *pde, double *npde)
{
    if (K < 2)
        return -1;
    if (n == 0)
        return 0;
    size_t nn = (size_t)n;
    double *E = calloc(nn, sizeof(double));
    double *V = calloc(nn * nn, sizeof(double));
    double *L = calloc(nn * nn, sizeof(double));
    double *ys = malloc(sizeof(double) * nn);
    double *zs = malloc(sizeof(double) * nn);
    int *good = malloc(sizeof(int) * nn);
    long *below = calloc(nn, sizeof(long));
    if (!E || !V || !L || !ys || !zs || !good || !below) {
        free(E), free(V), free(L), free(ys), free(zs), free(good), free(below);
        return -1;
    }
    for (int k = 0; k < K; k++)
        for (int j = 0; j < n; j++)
            E[j] += ysim[(size_t)k * nn + j];
    for (int j = 0; j < n; j++)
        E[j] /= K;
    /* Covariance with divisor K - 1, accumulated from centred values for accuracy. */
    for (int k = 0; k < K; k++) {
        const double *r = ysim + (size_t)k * nn;
        for (int a = 0; a < n; a++) {
            double da = r[a] - E[a];
            for (int b = 0; b <= a; b++)
                V[a * nn + b] += da * (r[b] - E[b]);
        }
    }
    for (int a = 0; a < n; a++)
        for (int b = 0; b <= a; b++)
            V[a * nn + b] /= (K - 1);
    /* Cholesky over the non-degenerate directions: an observation whose conditional
     * variance given the earlier ones vanishes is left out (its column of L stays 0). */
    for (int j = 0; j < n; j++) {
        double d = V[j * nn + j];
        for (int k = 0; k < j; k++)
            d -= L[j * nn + k] * L[j * nn + k];
        good[j] = V[j * nn + j] > 0.0 && d > 1e-10 * V[j * nn + j];
        if (!good[j])
            continue;
        double ljj = sqrt(d);
        L[j * nn + j] = ljj;
        for (int i = j + 1; i < n; i++) {
            double r = V[i * nn + j];
            for (int k = 0; k < j; k++)
                r -= L[i * nn + k] * L[j * nn + k];
            L[i * nn + j] = r / ljj;
        }
    }
    /* Decorrelated observation z = L^-1 (y - E), by forward substitution over good rows. */
    for (int j = 0; j < n; j++) {
        if (!good[j]) {
            zs[j] = NAN;
            continue;
        }
        double r = y[j] - E[j];
        for (int k = 0; k < j; k++)
            if (good[k])
                r -= L[j * nn + k] * zs[k];
        zs[j] = r / L[j * nn + j];
    }
    long *below_pd = calloc(nn, sizeof(long));
    if (!below_pd) {
        free(E), free(V), free(L), free(ys), free(zs), free(good), free(below);
        return -1;
    }
    for (int k = 0; k < K; k++) {
        const double *r = ysim + (size_t)k * nn;
        for (int j = 0; j < n; j++) {
            below_pd[j] += r[j] < y[j];
            if (!good[j])
                continue;
            double v = r[j] - E[j];
            for (int i = 0; i < j; i++)
                if (good[i])
                    v -= L[j * nn + i] * ys[i];
            ys[j] = v / L[j * nn + j];
            below[j] += ys[j] < zs[j];
        }
    }
    for (int j = 0; j < n; j++) {
        double p = clamp_p((double)below_pd[j] / K, K);
        if (pd)
            pd[j] = p;
        if (npd)
            npd[j] = popk_norm_quantile(p);
        double q = good[j] ? clamp_p((double)below[j] / K, K) : NAN;
        if (pde)
            pde[j] = q;
        if (npde)
            npde[j] = good[j] ? popk_norm_quantile(q) : NAN;
    }
    free(E), free(V), free(L), free(ys), free(zs), free(good), free(below), free(below_pd);
    return 0;
}

popk_status popk_npde_dataset(const popk_model *m, const popk_data *d, const popk_binding *b,
                              const popk_sim_replicates *sims, double *pd, double *npd,
                              double *pde, double *npde, popk_error *err)
{
    (void)m;
    double *outs[4] = {pd, npd, pde, npde};
    for (int k = 0; k < 4; k++)
        if (outs[k])
            for (size_t r = 0; r < d->nrec; r++)
                outs[k][r] = NAN;
    if (sims->nrec != d->nrec || sims->nsub != d->nsub)
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                              "simulated replicates do not match the dataset");
    size_t maxn = 1;
    for (size_t s = 0; s < d->nsub; s++)
        maxn = d->sub[s].n > maxn ? d->sub[s].n : maxn;
    int K = sims->nrep;
    size_t *idx = malloc(sizeof(size_t) * maxn);
    double *y = malloc(sizeof(double) * maxn);
    double *ysim = malloc(sizeof(double) * maxn * (size_t)K);
    double *res = malloc(sizeof(double) * maxn * 4);
    if (!idx || !y || !ysim || !res) {
        free(idx), free(y), free(ysim), free(res);
        return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    }
    popk_status st = POPK_OK;
    for (size_t s = 0; s < d->nsub && st == POPK_OK; s++) {
        int n = 0;
        for (size_t k = 0; k < d->sub[s].n; k++) {
            size_t r = d->sub[s].first + k;
            const popk_record *rec = &d->rec[r];
            if (rec->evid == 0 && rec->mdv == 0 && isfinite(rec->dv) && b->out_of_rec[r] >= 0 &&
                isfinite(sims->dv[r])) {
                idx[n] = r;
                y[n++] = rec->dv;
            }
        }
        if (n == 0)
            continue;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < n; j++)
                ysim[(size_t)k * n + j] = sims->dv[(size_t)k * sims->nrec + idx[j]];
        double *rpd = res, *rnpd = res + maxn, *rpde = res + 2 * maxn, *rnpde = res + 3 * maxn;
        if (popk_npde_subject(n, y, K, ysim, rpd, rnpd, rpde, rnpde) != 0) {
            st = popk_error_set(err, K < 2 ? POPK_ERR_ARG : POPK_ERR_NOMEM, NULL, 0, 0,
                                K < 2 ? "NPDE need at least 2 simulated replicates"
                                      : "out of memory");
            break;
        }
        for (int j = 0; j < n; j++) {
            if (pd)
                pd[idx[j]] = rpd[j];
            if (npd)
                npd[idx[j]] = rnpd[j];
            if (pde)
                pde[idx[j]] = rpde[j];
            if (npde)
                npde[idx[j]] = rnpde[j];
        }
    }
    free(idx), free(y), free(ysim), free(res);
    return st;
}
