/* util/rng.c — xoshiro256** streams seeded by splitmix64 (Blackman & Vigna). */
#include "util/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void popk_rng_init(popk_rng *r, uint64_t seed, uint64_t stream)
{
    /* Hash seed and stream together so that neighbouring streams are unrelated. */
    uint64_t x = seed;
    uint64_t h = splitmix64(&x);
    x = h ^ (stream * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t popk_rng_next(popk_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double popk_rng_uniform(popk_rng *r)
{
    /* 53 random bits, shifted off zero: (k + 0.5) / 2^53 */
    return ((double)(popk_rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

double popk_rng_normal(popk_rng *r)
{
    double u1 = popk_rng_uniform(r), u2 = popk_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void popk_rng_mvnormal(popk_rng *r, int n, const double *L, double *x)
{
    double z[64];
    for (int i = 0; i < n && i < 64; i++)
        z[i] = popk_rng_normal(r);
    for (int i = 0; i < n && i < 64; i++) {
        double s = 0.0;
        for (int j = 0; j <= i; j++)
            s += L[i * n + j] * z[j];
        x[i] = s;
    }
}
