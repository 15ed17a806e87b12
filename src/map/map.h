/* map/map.h — one patient's Bayesian (MAP) estimate under a population model with all its
 * parameters fixed, the posterior uncertainty, predictions with credible bands, and dose
 * recommendation to a target with the probability of target attainment (MATH.md,
 * "Individual Bayesian estimation" and "BLQ").
 *
 * MAP without censored observations runs the estimator's EBE code (popk_estimator_posthoc
 * with laplace = 1: eta_hat = argmin l(eta), posterior covariance (H/2)^-1 with H the exact
 * Hessian of l). With observations below the limit of quantification the joint term gains
 * Beal's M3 terms -2 log Phi((LLOQ - f)/sqrt(V)), which the estimator does not model: this
 * module minimises that joint term itself (NLopt LD_LBFGS with the exact gradient from the
 * prediction engine's dual numbers) and takes the covariance from the Hessian by central
 * differences of that gradient.
 *
 * Posterior draws (credible intervals, bands, sampled target attainment): for closed-form
 * models, sampling-importance-resampling of proposals from the Laplace approximation with
 * the exact joint term as weights; for ODE models, the Laplace approximation itself.
 *
 * Nothing here prints: cautions a pharmacist must see (samples ignored, covariates outside
 * the model's range, unreachable targets, doses outside the studied range) are collected as
 * warnings on the handle. */
#ifndef POPK_MAP_H
#define POPK_MAP_H

#include "data/data.h"
#include "model/model.h"
#include "popk.h"

typedef struct popk_map popk_map;

/* Probability of target attainment: by the posterior draws, or by the delta method (the
 * metric log-normal with log-scale variance g' C g, g its exact gradient in eta from the
 * engine's dual numbers; one prediction per regimen instead of one per draw). AUTO: draws
 * for closed-form models, delta for ODE models (where a steady-state prediction costs
 * milliseconds); time above MIC always uses draws (it is not smooth in eta). */
typedef enum { POPK_PTA_AUTO, POPK_PTA_SAMPLE, POPK_PTA_DELTA } popk_pta_method;

typedef struct {
    double id;              /* subject of the dataset to use; NaN: the first (warning if more) */
    int ncov;               /* covariate values that replace or fill in the patient file's */
    const char *const *cov_name;
    const char *const *cov_value; /* numbers, or level names of categorical covariates */
    double dose_lo, dose_hi;/* dose range the model was built on (mg); NaN: unknown */
    int nsamples;           /* posterior draws for bands and PTA; <= 0: 500 */
    unsigned long long seed;/* RNG seed for those draws */
    popk_pta_method pta;    /* how regimens' target attainment is computed */
} popk_map_options;

void popk_map_options_default(popk_map_options *opt);

/* Read the patient's records from d (one subject), check them against the model and
 * compute the MAP estimate. NULL on bad input (err names the file:line or the covariate).
 * Non-convergence is not an error: popk_map_converged() says so and a warning is added. */
popk_map *popk_map_new(const popk_model *m, const popk_data *d, const popk_map_options *opt,
                       popk_error *err);
void popk_map_free(popk_map *mp);  /* NULL-safe */

int popk_map_converged(const popk_map *mp);
int popk_map_used_m3(const popk_map *mp);    /* 1 when some observation was censored */
const double *popk_map_eta(const popk_map *mp);      /* neta */
const double *popk_map_eta_cov(const popk_map *mp);  /* neta x neta */
double popk_map_objective(const popk_map *mp);       /* l(eta_hat) incl. M3 terms */
double popk_map_patient_id(const popk_map *mp);

/* Warnings collected so far (each a full sentence). */
int popk_map_nwarnings(const popk_map *mp);
const char *popk_map_warning(const popk_map *mp, int k);
/* Add one (printf-style); the CLI adds its own through this so that JSON has them all. */
void popk_map_warn(popk_map *mp, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Observations as fitted: time, DV, LLOQ (NaN unless censored), PRED, IPRED, IWRES (NaN for
 * censored), on the output's natural scale. */
typedef struct {
    double time, dv, lloq, pred, ipred, iwres;
    int line;               /* line in the patient file */
} popk_map_obs;
int popk_map_nobs(const popk_map *mp);
const popk_map_obs *popk_map_observations(const popk_map *mp);

/* Individual variables (the model's individual block) at the patient's last record: value at
 * eta_hat, population value (eta = 0) and the 2.5% and 97.5% posterior quantiles. */
typedef struct {
    const char *name;
    double value, typical, lo95, hi95;
    double lo90, hi90;      /* 5% and 95% quantiles */
} popk_map_param;
int popk_map_nparams(const popk_map *mp);
const popk_map_param *popk_map_params(const popk_map *mp);

/* ---------------------------------------------------------------------------------------
 * Dose recommendation. Each candidate regimen (dose, interval, infusion duration; duration 0
 * = bolus or the model's own absorption) is evaluated at steady state over one interval with
 * the patient's last covariates: trough (end of interval), peak (maximum), AUC24
 * (AUC over the interval x 24/interval), fraction of the interval above the MIC. */
typedef enum { POPK_TARGET_AUC24, POPK_TARGET_TROUGH, POPK_TARGET_PEAK, POPK_TARGET_TMIC }
    popk_target_kind;

typedef struct {
    popk_target_kind kind;
    double lo, hi;          /* range of the metric (TMIC: fraction of the interval, 0..1) */
    double mic;             /* TMIC only */
    int day;                /* 0: at steady state; N > 0: over day N of the new regimen, which
                               starts when the next dose is due after the patient's history
                               (trough = lowest level of that day, AUC24 = AUC of that day) */
} popk_map_target;

/* Parse "auc24=400-600", "trough=10-20", "peak=20-40", "tmic=MIC:FRACTION" (e.g. tmic=1:0.5,
 * range [FRACTION, 1]), or popk sim's form "AUC24 in 400..600" (also trough, peak).
 * 0 ok, -1 malformed. */
int popk_map_target_parse(const char *text, popk_map_target *t);
const char *popk_target_name(popk_target_kind kind);

typedef struct {
    double dose, interval, duration;
    double trough, peak, auc24, tmic;       /* at eta_hat */
    double pta;                             /* posterior probability of target attainment */
    double trough_lo, trough_hi, auc_lo, auc_hi; /* 90% credible intervals */
    int outside_range;                      /* dose outside the model's studied range */
    int delta;                              /* PTA and intervals by the delta method */
} popk_map_regimen;

/* Evaluate every combination (in the given order), rank them by PTA (then by closeness of the
 * point estimate to the middle of the range, then by smaller daily dose) and return a new
 * array of nd*ni*ndur entries in rank order (*n set), or NULL (err set). Adds a warning when
 * no candidate reaches the target at the point estimate or with PTA >= 0.5, and for doses
 * outside the studied range. Loading dose: see popk_map_loading. */
popk_map_regimen *popk_map_recommend(popk_map *mp, const popk_map_target *target, int nd,
                                     const double *doses, int ni, const double *intervals,
                                     int ndur, const double *durations, int *n,
                                     popk_error *err);
/* Loading dose for regimen r: the smallest multiple of `step` (up to 3 x the maintenance
 * dose) whose single dose, given as the first dose of r, brings the concentration at the
 * end of the first interval to at least the steady-state trough of r (point estimate).
 * NaN when none does. */
double popk_map_loading(popk_map *mp, const popk_map_regimen *r, double step, popk_error *err);

/* Predicted curve: the patient's history followed (when r != NULL) by regimen r from time
 * start for `days` days, on n equally spaced times from 0 to the end. Fills t, ipred (at
 * eta_hat), lo, hi (5% and 95% posterior quantiles); arrays of n. */
popk_status popk_map_curve(popk_map *mp, const popk_map_regimen *r, double start, double days,
                           int n, double *t, double *ipred, double *lo, double *hi,
                           popk_error *err);
/* Time the next dose would be given: after the last dose by its interval (II, or the next
 * regimen's when absent) but not before the last record. */
double popk_map_next_dose_time(const popk_map *mp, double interval);
/* Last dose of the history: amount, interval (0 if unknown) and duration; 0 if none. */
int popk_map_last_dose(const popk_map *mp, double *amt, double *interval, double *duration);

#endif
