/* simulate/design.c — replicates of a dataset's design: eta and residual draws per
 * subject stream, predictions through the engine, parallel over subjects. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pred/obs.h"
#include "pred/pred.h"
#include "simulate/simulate.h"
#include "util/error.h"

int popk_sim_cholesky(int n, const double *C, double *L)
{
    memset(L, 0, sizeof(double) * (size_t)n * (size_t)n);
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < j; i++)
            if (fabs(C[i * n + j] - C[j * n + i]) > 1e-12 * (fabs(C[i * n + j]) + 1e-300))
                return -1;
        double d = C[j * n + j];
        for (int k = 0; k < j; k++)
            d -= L[j * n + k] * L[j * n + k];
        /* A variance that is zero up to rounding: the eta is fixed at zero. */
        double scale = C[j * n + j] > 0.0 ? C[j * n + j] : 1.0;
        if (d < -1e-12 * scale || !isfinite(d))
            return -1;
        if (d <= 1e-14 * scale) {
            for (int i = j + 1; i < n; i++) {
                double r = C[i * n + j];
                for (int k = 0; k < j; k++)
                    r -= L[i * n + k] * L[j * n + k];
                if (fabs(r) > 1e-10 * sqrt(fabs(C[i * n + i]) * scale))
                    return -1;
            }
            continue;
        }
        double ljj = sqrt(d);
        L[j * n + j] = ljj;
        for (int i = j + 1; i < n; i++) {
            double r = C[i * n + j];
            for (int k = 0; k < j; k++)
                r -= L[i * n + k] * L[j * n + k];
            L[i * n + j] = r / ljj;
        }
    }
    return 0;
}

double popk_sim_residual(const popk_output *o, const double *sigma, double f, double eps)
{
    double fl, V;
    if (popk_obs_eval(o, sigma, &f, 0, &fl, &V, NULL, NULL) != 0) {
        /* V = 0 (a zero SD) is a valid simulation without error; an unusable f is not. */
        if (o->err == POPK_ERRM_LOG)
            return f > 0.0 ? f : NAN;
        return isfinite(f) ? f : NAN;
    }
    if (o->err == POPK_ERRM_LOG)
        return exp(fl + sqrt(V) * eps);
    return f + sqrt(V) * eps;
}

void popk_sim_replicates_free(popk_sim_replicates *r)
{
    if (!r)
        return;
    free(r->dv);
    free(r->ipred);
    free(r->pred);
    free(r->eta);
    free(r);
}

popk_sim_replicates *popk_sim_design(const popk_model *m, const popk_data *d,
                                     const popk_binding *b, const popk_sim_design_opts *opts,
                                     popk_error *err)
{
    if (!opts || opts->nrep < 1) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "the number of replicates must be >= 1");
        return NULL;
    }
    int neta = m->neta, nrep = opts->nrep;
    size_t nsub = d->nsub, nrec = d->nrec;
    double *theta = malloc(sizeof(double) * (size_t)(m->ntheta + 1));
    double *sigma = malloc(sizeof(double) * (size_t)(m->nsigma + 1));
    double *L = malloc(sizeof(double) * (size_t)(neta * neta + 1));
    popk_sim_replicates *out = calloc(1, sizeof *out);
    if (!theta || !sigma || !L || !out)
        goto nomem;
    for (int k = 0; k < m->ntheta; k++)
        theta[k] = opts->theta ? opts->theta[k] : m->theta[k].init;
    for (int k = 0; k < m->nsigma; k++)
        sigma[k] = opts->sigma ? opts->sigma[k] : m->sigma[k].init;
    if (neta > 64) {
        popk_error_set(err, POPK_ERR_LIMIT, m->path, 0, 0, "at most 64 etas can be simulated");
        goto fail;
    }
    if (popk_sim_cholesky(neta, opts->omega ? opts->omega : m->omega, L) != 0) {
        popk_error_set(err, POPK_ERR_ARG, m->path, 0, 0,
                       "omega is not symmetric positive semi-definite");
        goto fail;
    }
    out->nrep = nrep;
    out->neta = neta;
    out->nrec = nrec;
    out->nsub = nsub;
    out->dv = malloc(sizeof(double) * (size_t)nrep * nrec + 1);
    out->ipred = malloc(sizeof(double) * (size_t)nrep * nrec + 1);
    out->pred = malloc(sizeof(double) * nrec + 1);
    out->eta = malloc(sizeof(double) * (size_t)nrep * nsub * (size_t)neta + 1);
    if (!out->dv || !out->ipred || !out->pred || !out->eta)
        goto nomem;

    int nthreads = opts->nthreads > 0 ? opts->nthreads : omp_get_max_threads();
    long ntask = (long)nsub * (nrep + 1); /* task t < nsub: PRED of subject t */
    long fail_task = ntask;               /* lowest failing task, so the report is stable */
    popk_error fail_err;
    popk_error_clear(&fail_err);
    popk_pred_ws **ws = calloc((size_t)nthreads, sizeof *ws);
    if (!ws)
        goto nomem;
    for (int t = 0; t < nthreads; t++)
        if (!(ws[t] = popk_pred_ws_new(m, err))) {
            for (int u = 0; u < t; u++)
                popk_pred_ws_free(ws[u]);
            free(ws);
            goto fail;
        }
    popk_pred_dirs nodirs = {0};
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 16)
    for (long t = 0; t < ntask; t++) {
        long failed;
#pragma omp atomic read
        failed = fail_task;
        if (t > failed)
            continue;
        size_t s = (size_t)(t % (long)nsub);
        int rep = (int)(t / (long)nsub) - 1; /* -1: PRED */
        const popk_subject *sub = &d->sub[s];
        double eta[64] = {0};
        popk_rng rng;
        if (rep >= 0) {
            popk_rng_init(&rng, opts->seed, (uint64_t)rep * nsub + s);
            popk_rng_mvnormal(&rng, neta, L, eta);
            memcpy(out->eta + ((size_t)rep * nsub + s) * (size_t)neta, eta,
                   sizeof(double) * (size_t)neta);
        }
        popk_pred_result res;
        popk_error e;
        if (popk_pred_subject(ws[omp_get_thread_num()], m, d, b, s, theta, eta, &nodirs, &res,
                              &e) != POPK_OK) {
#pragma omp critical(popk_sim_fail)
            if (t < fail_task) {
                fail_err = e;
                if (rep >= 0) {
                    size_t len = strlen(fail_err.message);
                    if (len + 40 < sizeof fail_err.message)
                        snprintf(fail_err.message + len, sizeof fail_err.message - len,
                                 " (replicate %d)", rep + 1);
                }
#pragma omp atomic write
                fail_task = t;
            }
            continue;
        }
        double *dst = rep < 0 ? out->pred : out->ipred + (size_t)rep * nrec;
        double *dv = rep < 0 ? NULL : out->dv + (size_t)rep * nrec;
        for (size_t r = 0; r < sub->n; r++) {
            size_t g = sub->first + r;
            int k = b->out_of_rec[g];
            if (k < 0) {
                dst[g] = NAN;
                if (dv)
                    dv[g] = NAN;
                continue;
            }
            double f = res.out[r * (size_t)res.nout + (size_t)k];
            dst[g] = f;
            if (dv)
                dv[g] = opts->residual
                            ? popk_sim_residual(&m->out[k], sigma, f, popk_rng_normal(&rng))
                            : f;
        }
    }
    for (int t = 0; t < nthreads; t++)
        popk_pred_ws_free(ws[t]);
    free(ws);
    if (fail_task < ntask) {
        if (err)
            *err = fail_err;
        goto fail;
    }
    free(theta);
    free(sigma);
    free(L);
    return out;
nomem:
    popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
fail:
    free(theta);
    free(sigma);
    free(L);
    popk_sim_replicates_free(out);
    return NULL;
}
