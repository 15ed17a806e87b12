/* tests/unit/estimate/models.h — closed-form prediction callbacks (Wang 2007, one-compartment
 * bolus and first-order absorption) and a small NONMEM-style CSV reader for the estimator
 * tests. */
#ifndef POPK_TEST_ESTIMATE_MODELS_H
#define POPK_TEST_ESTIMATE_MODELS_H

#include "estimate/estimate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Subjects of a data file: one dose (amount, at time dose_time) and the observations. */
typedef struct {
    int nsub;
    int *nobs;
    double **t, **y;
    double *dose;
} test_data;

static inline void test_data_free(test_data *d)
{
    for (int i = 0; i < d->nsub; i++) {
        free(d->t[i]);
        free(d->y[i]);
    }
    free(d->t);
    free(d->y);
    free(d->nobs);
    free(d->dose);
    memset(d, 0, sizeof *d);
}

static inline int column_of(char **names, int n, const char *name)
{
    for (int k = 0; k < n; k++)
        if (strcmp(names[k], name) == 0)
            return k;
    return -1;
}

/* Read ID, TIME, DV and (if present) AMT, EVID, SD; rows with SD == 0 are skipped when
 * single_dose. Observation times are relative to the subject's dose. Returns 0 or -1. */
static inline int test_data_read(const char *path, int single_dose, test_data *d)
{
    memset(d, 0, sizeof *d);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    char line[4096];
    char *names[64];
    int ncol = 0;
    if (!fgets(line, sizeof line, fp)) {
        fclose(fp);
        return -1;
    }
    line[strcspn(line, "\r\n")] = '\0';
    for (char *tok = strtok(line, ","); tok && ncol < 64; tok = strtok(NULL, ","))
        names[ncol++] = strdup(tok);
    int cid = column_of(names, ncol, "ID"), ct = column_of(names, ncol, "TIME"),
        cdv = column_of(names, ncol, "DV"), camt = column_of(names, ncol, "AMT"),
        cev = column_of(names, ncol, "EVID"), csd = column_of(names, ncol, "SD");
    int cap = 0, last_id = -1;
    double dose_time = 0.0;
    double v[64];
    while (fgets(line, sizeof line, fp)) {
        int k = 0;
        for (char *tok = strtok(line, ",\r\n"); tok && k < 64; tok = strtok(NULL, ",\r\n"))
            v[k++] = atof(tok);
        if (k < ncol)
            continue;
        if (single_dose && csd >= 0 && v[csd] != 1.0)
            continue;
        int id = (int)v[cid], evid = cev >= 0 ? (int)v[cev] : 0;
        if (id != last_id) {
            if (d->nsub == cap) {
                cap = cap ? 2 * cap : 16;
                d->nobs = realloc(d->nobs, (size_t)cap * sizeof *d->nobs);
                d->t = realloc(d->t, (size_t)cap * sizeof *d->t);
                d->y = realloc(d->y, (size_t)cap * sizeof *d->y);
                d->dose = realloc(d->dose, (size_t)cap * sizeof *d->dose);
            }
            d->nobs[d->nsub] = 0;
            d->t[d->nsub] = malloc(512 * sizeof(double));
            d->y[d->nsub] = malloc(512 * sizeof(double));
            d->dose[d->nsub] = 0.0;
            d->nsub++;
            last_id = id;
            dose_time = 0.0;
        }
        int i = d->nsub - 1;
        if (evid == 1) {
            d->dose[i] = v[camt];
            dose_time = v[ct];
        } else if (evid == 0 && d->nobs[i] < 512) {
            d->t[i][d->nobs[i]] = v[ct] - dose_time;
            d->y[i][d->nobs[i]] = v[cdv];
            d->nobs[i]++;
        }
    }
    for (int k = 0; k < ncol; k++)
        free(names[k]);
    fclose(fp);
    return d->nsub > 0 ? 0 : -1;
}

/* Wang 2007: f = 10 exp(-theta e^eta t); proportional V = sigma^2 f^2 or additive sigma^2. */
typedef struct {
    const test_data *data;
    int proportional;
} wang_user;

static inline int wang_pred(int i, int thread, const double *theta, const double *sigma,
                     const double *eta, double *f, double *V, double *G, double *dV, void *user,
                     popk_error *err)
{
    (void)thread;
    (void)err;
    const wang_user *u = user;
    double ke = theta[0] * exp(eta[0]), s2 = sigma[0] * sigma[0];
    for (int j = 0; j < u->data->nobs[i]; j++) {
        double t = u->data->t[i][j];
        f[j] = 10.0 * exp(-ke * t);
        double g = -t * ke * f[j];
        V[j] = u->proportional ? s2 * f[j] * f[j] : s2;
        if (G)
            G[j] = g;
        if (dV)
            dV[j] = u->proportional ? 2.0 * s2 * f[j] * g : 0.0;
    }
    return 0;
}

/* One-compartment first-order absorption (Bateman) and its log-parameter derivatives:
 * dka = ka dC/dka, dcl = d C/d log cl, dv = dC/d log v. */
static inline void bateman(double dose, double ka, double cl, double v, double t, double *c,
                    double *dka, double *dcl, double *dv)
{
    double k = cl / v, ek = exp(-k * t), ea = exp(-ka * t);
    double a = dose * ka / (v * (ka - k)), b = ek - ea;
    *c = a * b;
    double dc_dka = -dose * k / (v * (ka - k) * (ka - k)) * b + a * t * ea;
    double dc_dk = dose * ka / (v * (ka - k) * (ka - k)) * b - a * t * ek;
    *dka = ka * dc_dka;
    *dcl = k * dc_dk;
    *dv = -*c - k * dc_dk;
}

/* theo_sd (nlmixr2's model): ka, cl, v = exp(theta_k + eta_k), additive SD sigma[0]. */
static inline int theo_pred(int i, int thread, const double *theta, const double *sigma,
                     const double *eta, double *f, double *V, double *G, double *dV, void *user,
                     popk_error *err)
{
    (void)thread;
    (void)err;
    const test_data *d = user;
    double ka = exp(theta[0] + eta[0]), cl = exp(theta[1] + eta[1]), v = exp(theta[2] + eta[2]);
    for (int j = 0; j < d->nobs[i]; j++) {
        double dka, dcl, dvv;
        bateman(d->dose[i], ka, cl, v, d->t[i][j], &f[j], &dka, &dcl, &dvv);
        V[j] = sigma[0] * sigma[0];
        if (G) {
            G[j * 3 + 0] = dka;
            G[j * 3 + 1] = dcl;
            G[j * 3 + 2] = dvv;
        }
        if (dV)
            dV[j * 3 + 0] = dV[j * 3 + 1] = dV[j * 3 + 2] = 0.0;
    }
    return 0;
}

/* ACOP (NONMEM runs N001/N023): CL, V (, KA) = exp(theta + eta); Y = F + F*RSV*EPS with
 * SIGMA 1 FIX, so V = (RSV sigma F)^2; RSV is the last theta. */
typedef struct {
    const test_data *data;
    int oral;
} acop_user;

static inline int acop_pred(int i, int thread, const double *theta, const double *sigma,
                     const double *eta, double *f, double *V, double *G, double *dV, void *user,
                     popk_error *err)
{
    (void)thread;
    (void)err;
    const acop_user *u = user;
    const test_data *d = u->data;
    int q = u->oral ? 3 : 2;
    double cl = exp(theta[0] + eta[0]), v = exp(theta[1] + eta[1]);
    double rsv = theta[q] * sigma[0];
    for (int j = 0; j < d->nobs[i]; j++) {
        double t = d->t[i][j], g[3];
        if (u->oral) {
            double ka = exp(theta[2] + eta[2]);
            bateman(d->dose[i], ka, cl, v, t, &f[j], &g[2], &g[0], &g[1]);
        } else {
            double k = cl / v;
            f[j] = d->dose[i] / v * exp(-k * t);
            g[0] = -f[j] * k * t;
            g[1] = f[j] * (k * t - 1.0);
        }
        V[j] = rsv * rsv * f[j] * f[j];
        for (int a = 0; a < q; a++) {
            if (G)
                G[j * q + a] = g[a];
            if (dV)
                dV[j * q + a] = 2.0 * rsv * rsv * f[j] * g[a];
        }
    }
    return 0;
}

/* A problem over test data with all pointers into caller-owned arrays. */
static inline void test_problem(popk_problem *p, const test_data *d, int ntheta, int neta, int nsigma)
{
    memset(p, 0, sizeof *p);
    p->nsub = d->nsub;
    p->nobs = d->nobs;
    p->y = (const double *const *)d->y;
    p->ntheta = ntheta;
    p->neta = neta;
    p->nsigma = nsigma;
}

static inline double test_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
