/* simulate/simulate.h — stochastic simulation with a model: replicates of an existing
 * dataset's design (VPC, NPDE, simulation-estimation), the random-effect and residual draws
 * they are made of, and (sim.h) regimens, virtual populations and their summaries.
 *
 * Reproducibility: replicate rep of subject s draws everything (its etas, then one residual
 * deviate per simulated record, in record order) from popk_rng stream rep * nsub + s of the
 * seed, so the output is bit-identical for any thread count. */
#ifndef POPK_SIMULATE_H
#define POPK_SIMULATE_H

#include <stdint.h>

#include "data/data.h"
#include "model/model.h"
#include "popk.h"
#include "util/rng.h"

/* Lower Cholesky factor L (row-major n x n) of a covariance matrix C, tolerating zero
 * variances (fixed-to-zero etas: their rows and columns of L are zero). Returns 0, or -1
 * when C is not symmetric positive semi-definite. */
int popk_sim_cholesky(int n, const double *C, double *L);

/* Add residual error to a prediction f of output o with residual SDs sigma, using the
 * standard normal deviate eps: f + sqrt(V(f)) eps on the natural scale (additive,
 * proportional, combined, power), exp(log f + a eps) for log-transformed error. NaN when
 * the prediction cannot carry the error model (f <= 0 with log-transformed error). */
double popk_sim_residual(const popk_output *o, const double *sigma, double f, double eps);

typedef struct {
    uint64_t seed;
    int nrep;                /* replicates, >= 1 */
    int residual;            /* 1: DV = IPRED plus residual error; 0: DV = IPRED */
    int nthreads;            /* 0: OpenMP default */
    const double *theta;     /* ntheta values; NULL: the model's initial values */
    const double *omega;     /* neta x neta; NULL: the model's */
    const double *sigma;     /* nsigma SDs; NULL: the model's initial values */
} popk_sim_design_opts;

/* Simulated replicates of a dataset. Arrays are indexed by record r of the dataset
 * (0 .. nrec-1, file order) and replicate rep. A record is simulated when the binding maps
 * it to an output (an observation record, whatever its MDV); other records hold NaN. */
typedef struct {
    int nrep, neta;
    size_t nrec, nsub;
    double *dv;              /* dv[rep * nrec + r]: simulated observation */
    double *ipred;           /* ipred[rep * nrec + r]: prediction with the drawn etas */
    double *pred;            /* pred[r]: prediction with zero etas (same for all replicates) */
    double *eta;             /* eta[(rep * nsub + s) * neta + k]: the drawn etas */
} popk_sim_replicates;

/* Simulate opts->nrep replicates of the design of d (its doses, times and covariates,
 * bound to m by b): per replicate and subject, eta ~ N(0, Omega), predict, then (when
 * opts->residual) draw residual error per simulated record from its output's error model.
 * Parallel over subjects; deterministic for any thread count. Returns NULL on failure
 * (invalid options, Omega not positive semi-definite, a prediction failure naming the
 * subject, replicate and cause). Free the result with popk_sim_replicates_free. */
popk_sim_replicates *popk_sim_design(const popk_model *m, const popk_data *d,
                                     const popk_binding *b, const popk_sim_design_opts *opts,
                                     popk_error *err);
void popk_sim_replicates_free(popk_sim_replicates *r);

#endif
