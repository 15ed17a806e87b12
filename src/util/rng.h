/* util/rng.h — reproducible random numbers: one independent stream per (seed, stream id),
 * so a simulation gives identical output for any thread count when each subject draws
 * from its own stream. Generator: xoshiro256** seeded through splitmix64 of (seed, stream). */
#ifndef POPK_UTIL_RNG_H
#define POPK_UTIL_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} popk_rng;

/* Start the stream `stream` of `seed` (e.g. stream = subject index). */
void popk_rng_init(popk_rng *r, uint64_t seed, uint64_t stream);
uint64_t popk_rng_next(popk_rng *r);
/* Uniform on the open interval (0, 1). */
double popk_rng_uniform(popk_rng *r);
/* Standard normal (Box-Muller; two uniforms per call, no hidden state). */
double popk_rng_normal(popk_rng *r);
/* n correlated normals x = L z with L the lower Cholesky factor (row-major n x n). */
void popk_rng_mvnormal(popk_rng *r, int n, const double *L, double *x);

#endif
