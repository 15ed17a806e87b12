/* pred/linear.h — closed-form solutions of linear 1-, 2- and 3-compartment systems with an
 * optional first-order depot (NONMEM ADVAN1-4, 11, 12), on doubles and dual numbers.
 *
 * Compartment order in every amount vector: [depot,] central, peripheral 1, peripheral 2.
 * The system is dA/dt = K A + R with R a vector of constant zero-order inputs (infusions)
 * over the step. The state is advanced over a step in closed form (not by superposition of
 * doses), so event loops can apply doses, resets and rate changes between steps. */
#ifndef POPK_PRED_LINEAR_H
#define POPK_PRED_LINEAR_H

#include "util/dual.h"

typedef struct {
    int ncmt;       /* 1, 2 or 3 (central + peripherals) */
    int depot;      /* 1: a depot precedes the central compartment */
    int nd;         /* number of derivative directions carried (0 = plain values) */
    /* micro-constants (first-order rate constants, 1/time); unused ones are zero */
    popk_dual k10, k12, k21, k13, k31, ka;
} popk_linsys;

/* Number of compartments in the amount vector. */
static inline int popk_linsys_n(const popk_linsys *s) { return s->ncmt + (s->depot ? 1 : 0); }

/* Micro-constants from clearance form: k10 = CL/V, k12 = Q2/V, k21 = Q2/V2, k13 = Q3/V,
 * k31 = Q3/V3 (NULL for absent ones). Uses s->nd (set it first) as the number of
 * directions; sets ncmt from which pairs are given (Q3/V3 make it 3, else Q2/V2 make it 2,
 * else 1) and depot = (ka != NULL). Unused constants are set to zero. */
void popk_linsys_from_clearances(popk_linsys *s, const popk_dual *cl, const popk_dual *v,
                                 const popk_dual *q2, const popk_dual *v2,
                                 const popk_dual *q3, const popk_dual *v3,
                                 const popk_dual *ka);

/* Advance amounts A (popk_linsys_n entries) by dt >= 0 with constant inputs R (same length;
 * NULL = none). Exact for any rate constants, including ka equal to a disposition eigenvalue
 * (confluent case handled without loss of accuracy), k10 = 0, dt = 0 and any dt (no
 * overflow). Returns 0, or -1 when the constants are not a valid system (negative, NaN,
 * infinite), dt is negative/NaN/infinite, or (dual version only) derivatives of the rate
 * constants are asked for while two disposition eigenvalues are within 1e-6 (relative) of
 * each other, which needs degenerate intercompartmental rates (e.g. Q/V below ~1e-12 of
 * CL/V; Q = 0 with CL = 0); popk_linsys_why says which.
 * A, R, dt may all carry partials; A is updated in place. Thread-safe (no shared state).
 * Accuracy: relative to rounding for every compartment when amounts and inputs are
 * nonnegative; derivatives to ~1e-12, ~1e-10 at worst next to the refusal threshold
 * above; ka on or near a disposition eigenvalue costs no accuracy. */
int popk_linsys_advance(const popk_linsys *s, popk_dual *A, const popk_dual *R, popk_dual dt);

/* Plain-double fast path with the same contract (s->nd ignored; uses .v of the constants). */
int popk_linsys_advance_d(const popk_linsys *s, double *A, const double *R, double dt);

/* A propagator cache for event loops. The per-system part of the closed form (eigenvalues
 * with their partials, Newton basis matrices) is computed once by popk_linprop_set; the
 * propagator of a step (amounts and, when inputs are running, inputs to amounts, with
 * partials) is computed the first time that step length (value and partials) is used and
 * kept for the last POPK_LINPROP_STEPS distinct steps, so that repeated steps (regular
 * sampling, dosing intervals, steady-state cycles) cost a matrix-vector product.
 * Results are bit for bit those of popk_linsys_advance (which runs the same code without
 * the cache). One cache per thread: not thread-safe. */
#define POPK_LINPROP_STEPS 16
typedef struct popk_linprop popk_linprop;

/* A new cache with no system (advances fail until popk_linprop_set); NULL when out of
 * memory. popk_linprop_free(NULL) is a no-op. */
popk_linprop *popk_linprop_new(void);
void popk_linprop_free(popk_linprop *p);

/* Use system s (copied; its nd is the number of directions of later advances) and forget
 * the cached steps. A system popk_linsys_advance would refuse for every dt makes every
 * later advance return -1 (popk_linsys_why(s, dt) says why). */
void popk_linprop_set(popk_linprop *p, const popk_linsys *s);

/* popk_linsys_advance with the cache: A (popk_linsys_n entries, nd directions) advanced by
 * dt >= 0 under constant inputs R (NULL = none). Returns 0, or -1 as popk_linsys_advance. */
int popk_linprop_advance(popk_linprop *p, popk_dual *A, const popk_dual *R, const popk_dual *dt);

/* Why popk_linsys_advance (for s->nd directions) or popk_linsys_advance_d returns -1 on
 * (s, dt): a static English message, or NULL when it does not. */
const char *popk_linsys_why(const popk_linsys *s, double dt);

#endif
