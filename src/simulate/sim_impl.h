/* simulate/sim_impl.h — module-private helpers shared by the simulate sources: covariate
 * draws, targets, the percentile sketch and the fast path for linear time-invariant models. */
#ifndef POPK_SIM_IMPL_H
#define POPK_SIM_IMPL_H

#include <stdint.h>
#include <string.h>

#include "simulate/sim.h"
#include "util/rng.h"

/* Subject s's covariates (model codes) drawn from its stream r. */
void popk_sim_draw_covariates(const popk_population *pop, const popk_model *m, popk_rng *r,
                              long s, double *cov);
/* 1 when value v meets target t. */
int popk_target_pass(const popk_target *t, double v);

/* A sample point of the design: the output grid plus the points the metrics need. */
typedef struct {
    double time;
    int pre;                 /* 1: before the doses at this time */
    long grid;               /* index in the output grid, or -1 */
} popk_sim_sample;

/* ---------------------------------------------------------------------------------------
 * The percentile sketch: a fixed-bin histogram, log-scale in |x| above xmin (a power of two
 * near 2^-20 x the typical peak), with 2^POPK_SK_MBITS bins per octave (each bin spans a
 * relative width of at most 2^-10 < 0.1%) over POPK_SK_OCT octaves on either sign, and
 * 2^(POPK_SK_MBITS+1) bins of equal width xmin / 2^POPK_SK_MBITS on (-xmin, xmin). The bin
 * of a value is a shift of its bits: a few nanoseconds, no transcendental function. */
#define POPK_SK_MBITS 10
#define POPK_SK_OCT 40
#define POPK_SK_NLOG ((uint32_t)POPK_SK_OCT << POPK_SK_MBITS)
#define POPK_SK_NLIN (2u << POPK_SK_MBITS)
#define POPK_SK_NBINS (2 * POPK_SK_NLOG + POPK_SK_NLIN)
#define POPK_SK_NONE UINT32_MAX /* NaN: not counted */

typedef struct {
    double xmin;
    uint64_t abits_min;      /* bits of xmin */
    uint64_t kmin;           /* bits of xmin >> (52 - MBITS) */
    double inv_w;            /* 1 / linear bin width */
} popk_sketch;

/* The sketch for a typical peak (|peak| > 0; otherwise 1 is used). */
void popk_sketch_init(popk_sketch *s, double typical_peak);

static inline uint32_t popk_sketch_bin(const popk_sketch *s, double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    uint64_t a = u & 0x7fffffffffffffffULL;
    if (a > 0x7ff0000000000000ULL)
        return POPK_SK_NONE;
    if (a >= s->abits_min) {
        uint64_t k = (a >> (52 - POPK_SK_MBITS)) - s->kmin;
        if (k >= POPK_SK_NLOG)
            k = POPK_SK_NLOG - 1;
        return u >> 63 ? POPK_SK_NLOG - 1 - (uint32_t)k : POPK_SK_NLOG + POPK_SK_NLIN + (uint32_t)k;
    }
    double f = (x + s->xmin) * s->inv_w;
    uint32_t j = f > 0 ? (uint32_t)f : 0;
    return POPK_SK_NLOG + (j < POPK_SK_NLIN ? j : POPK_SK_NLIN - 1);
}

/* Type-7 quantiles p[0..np) (any order) of the n values counted in h (POPK_SK_NBINS
 * counts), each interpolated inside its bin as if the bin's values were evenly spread. */
void popk_sketch_quantiles(const popk_sketch *s, const uint32_t *h, long n, const double *p,
                           int np, double *q, int stride);

/* ---------------------------------------------------------------------------------------
 * The fast path for linear time-invariant models (lti.c). */

/* 1 when output `output`'s expression is affine in the compartment amounts with
 * coefficients free of time (a conservative reading of its text). */
int popk_sim_output_affine(const popk_model *m, int output);

typedef struct popk_sim_lti popk_sim_lti;
typedef struct popk_sim_lti_ws popk_sim_lti_ws;

/* The plan for regimen reg sampled at pt[0..npt) (sorted as the design's records) in *plan,
 * or NULL there when the model or the regimen does not qualify: closed-form linear models whose output is affine in the amounts, no lag times,
 * doses with RATE >= 0 (no bioavailability on infused compartments), and a probe run much
 * shorter than the design's engine_nrec records. drift = 1 also probes a constant input
 * (dA/dt = K A + c: affine ODE systems, which take it always); 0 for closed-form models,
 * whose input is zero. */
popk_status popk_sim_lti_plan(const popk_model *m, const popk_regimen *reg,
                              const popk_sim_sample *pt, size_t npt, size_t engine_nrec,
                              int output, int drift, popk_sim_lti **plan, popk_error *err);
void popk_sim_lti_free(popk_sim_lti *p);
popk_sim_lti_ws *popk_sim_lti_ws_new(const popk_sim_lti *p, popk_error *err);
void popk_sim_lti_ws_free(popk_sim_lti_ws *w);
/* One subject's output at every sample point into c[0..npt) (c[npt] is scratch: c holds
 * npt + 1 values). Returns 0, or 1 when the probe run
 * fails or gives something the recurrence cannot use (then run the engine on the design,
 * which reports the error). */
int popk_sim_lti_subject(const popk_sim_lti *p, popk_sim_lti_ws *w, const double *cov,
                         const double *theta, const double *eta, double *c);

#endif
