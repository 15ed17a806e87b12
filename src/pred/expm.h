/* pred/expm.h — exact propagation of linear constant-coefficient ODE systems by the matrix
 * exponential (NONMEM's ADVAN5/ADVAN7 territory), carried out on dual numbers.
 *
 * Between events an odes: model that the model loader found affine (popk_model.ode_affine)
 * is dA/dt = K A + c + R: K and c come from the right-hand sides (individual parameters and
 * covariates only), R are the running infusion rates. Over a step dt,
 *
 *     [A(t0 + dt); g] = exp(M dt) [A(t0); g],   M = [[K, (c + R) / g], [0, 0]],
 *
 * with g a power of two that brings the input column to the size of K (exact in exact
 * arithmetic for any g; it keeps the scaling below from being driven by the input size).
 * With no input at all (c + R = 0, values and partials) exp(K dt) A(t0) is used instead.
 *
 * exp() is Higham's (2005) scaling and squaring with diagonal Pade approximants of degree
 * 3, 5, 7, 9 or 13 chosen from the 1-norm, backward error at most the unit roundoff (2^-53)
 * in exact arithmetic. Everything runs on dual numbers (value + nd partials, every matrix
 * kept as 1 + nd "planes"), so the partials are the exact derivatives of the computed
 * approximant: the Frechet derivative of exp along dX approximated as in Al-Mohy & Higham
 * (2009, SIAM J Matrix Anal Appl 30:1639), with the same degree and scaling as the value.
 * A dual dt (lag times, modelled durations with partials) enters through M dt, which gives
 * the time-shift terms of an autonomous system: d A(t1) = ... + (K A(t1) + c + R) d dt.
 */
#ifndef POPK_PRED_EXPM_H
#define POPK_PRED_EXPM_H

#include <stddef.h>

#include "model/model.h"
#include "util/dual.h"

/* Largest system (compartments); the augmented matrix has one more row and column. */
#define POPK_EXPM_MAX_STATES 8

/* exp(X) of an N x N matrix with nd partials (1 <= N <= POPK_EXPM_MAX_STATES + 1,
 * 0 <= nd <= POPK_DUAL_MAX), in "planes" layout: X[p * N * N + i * N + j] is entry (i, j)
 * of plane p, plane 0 the values and plane 1 + k the partials in direction k; E has the
 * same layout. work holds popk_expm_work_size(N, nd) doubles. Returns 0, or -1 when the
 * values of X are not finite or the Pade denominator is singular (E is then undefined). */
int popk_expm_dense(int N, int nd, const double *X, double *E, double *work);
size_t popk_expm_work_size(int N, int nd);

/* Per-thread state of the matrix exponential path of one model: the system K, c of the
 * current individual parameters, and a small cache of exp(M dt) for repeated steps. */
typedef struct popk_expm popk_expm;

/* For an affine odes: model (m->ode_affine); NULL (err set) on allocation failure or when
 * the model has more than POPK_EXPM_MAX_STATES compartments. m must outlive the result. */
popk_expm *popk_expm_new(const popk_model *m, popk_error *err);
void popk_expm_free(popk_expm *x);

/* Make the system that of the frame `slots` (strided duals, 1 + nd per slot, the layout of
 * pred's frame; slots [0, m->time_slot) are read: the right-hand sides read no amount or
 * time through their coefficients). Evaluates the right-hand sides at A = 0 (c) and at each
 * unit vector (columns of K, partials included) on a private copy of the frame. Nothing is
 * recomputed when the frame and nd are those of the previous call (the cache of exponentials
 * stays valid then). Returns 0, or 1 + i when compartment i's right-hand side is not finite
 * at these parameters (*bad gets the value found). */
int popk_expm_set_frame(popk_expm *x, int nd, const double *slots, double *bad);

/* A (n duals) <- A dt later under the current system with the inputs R (n duals) added to
 * c. dt.v > 0. Returns 0, or -1 when the exponential or the result is not finite. */
int popk_expm_advance(popk_expm *x, popk_dual *A, const popk_dual *R, popk_dual dt);

/* Work counters since popk_expm_new (benchmarks, tests). */
typedef struct {
    long systems;   /* systems built (frames that changed) */
    long steps;     /* popk_expm_advance calls */
    long exps;      /* exponentials computed (steps minus cache hits) */
} popk_expm_stats;

void popk_expm_get_stats(const popk_expm *x, popk_expm_stats *stats);

#endif
