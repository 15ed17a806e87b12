/* simulate/sim.h — dosing regimens, virtual patients and population simulations summarised
 * as percentiles over time, exposure metrics per subject and probability of target
 * attainment (docs/simulation.md). */
#ifndef POPK_SIM_H
#define POPK_SIM_H

#include <stdint.h>

#include "data/data.h"
#include "model/model.h"
#include "popk.h"

/* ---------------------------------------------------------------------------------------
 * Regimens: dose records (EVID 1) in time order, and the last dosing interval, over which
 * steady-state metrics are taken. */
typedef struct {
    size_t ndose;
    popk_record *dose;       /* time, amt, rate (0 bolus, > 0 infusion), cmt (1-based) */
    double tau;              /* interval of the last phase (0: last dose given once) */
    double t_last;           /* time of the last dose */
} popk_regimen;

/* The human form, e.g. "400 mg po q12h x2, then 200 mg po q12h x 26",
 * "1000 mg iv over 1 h q12h x 14", "25 mg iv at 50 mg/h q24h for 7 days", "5 mg po":
 *   phase := ["at" T "h"] AMOUNT [mg|g|ug|mcg] ROUTE [over D (h|min) | at R mg/h]
 *            [q N h | qd | bid | tid | qid | every N h] [x N [doses] | for N days]
 *   ROUTE := po | oral | sc | im | depot | iv | bolus | infusion | "to" COMPARTMENT
 *   phases are separated by ',' or ';' (optionally followed by 'then'); a phase starts
 *   one interval after the previous phase's last dose unless 'at T h' gives its start.
 * Amounts are in mg (g and ug converted). po/sc/im/depot dose the model's default dose
 * compartment, which must not be the observed one; iv doses the default observation
 * compartment. Errors name the position: "regimen:1:COL: ..." with the text as context. */
popk_regimen *popk_regimen_parse(const char *text, const popk_model *m, popk_error *err);
/* A YAML file: either `regimen: "<human form>"` or `doses:` a list of mappings with keys
 * amount, route (as above) or cmt, time (start), every (h), count, duration (h), rate. */
popk_regimen *popk_regimen_load(const char *path, const popk_model *m, popk_error *err);
/* The dose records of one subject of a NONMEM dataset (the first when id is NaN); ADDL
 * doses are expanded. */
popk_regimen *popk_regimen_from_data(const popk_data *d, double id, popk_error *err);
void popk_regimen_free(popk_regimen *r);

/* ---------------------------------------------------------------------------------------
 * Virtual patients: per declared covariate a fixed value, a distribution, or a column of a
 * table of patients. Values are in model codes (categorical levels as their codes). */
typedef enum {
    POPK_COVDIST_UNSET,      /* not given: the declared default, else an error if used */
    POPK_COVDIST_FIXED,      /* a */
    POPK_COVDIST_NORMAL,     /* N(a, b^2) truncated to [lo, hi] */
    POPK_COVDIST_LOGNORMAL,  /* median a, log-scale SD b, truncated to [lo, hi] */
    POPK_COVDIST_UNIFORM,    /* U(lo, hi) */
    POPK_COVDIST_CATEGORICAL /* level codes with probabilities */
} popk_covdist_kind;

typedef struct {
    popk_covdist_kind kind;
    double a, b, lo, hi;
    int ncat;
    double code[32], prob[32];
} popk_covdist;

typedef struct {
    int ncov;                /* == model ncov */
    popk_covdist *dist;      /* ncov */
    size_t nrow;             /* > 0: a table of patients (sampled with replacement unless */
    double *table;           /* sequential); table[row * ncov + k], NaN where not given */
    int sequential;          /* 1: subject i takes row i mod nrow */
} popk_population;

/* Parse "WT=70,CYP2C19=PM" style specifications into pop (pop->dist must hold m->ncov
 * entries; repeated calls override). Forms per covariate: NAME=VALUE (number or level),
 * NAME=N(mean,sd[,lo,hi]), NAME=LN(median,sd_log[,lo,hi]), NAME=U(lo,hi),
 * NAME={LEVEL:p,LEVEL:p,...} (probabilities summing to 1). Errors name the column. */
popk_status popk_population_parse(popk_population *pop, const popk_model *m,
                                  const char *spec, popk_error *err);
/* Read a CSV of patients: a header naming covariates (others are refused), one row each;
 * categorical values as level names or codes. */
popk_status popk_population_read(popk_population *pop, const popk_model *m, const char *path,
                                 popk_error *err);
/* Check that every covariate the model uses has a value, a distribution or a default. */
popk_status popk_population_check(const popk_population *pop, const popk_model *m,
                                  popk_error *err);
/* ---------------------------------------------------------------------------------------
 * Targets: "trough>=10", "AUC24 in 400..600", "Cmax<=40", "T>2 50%" (time above 2 for at
 * least 50% of the last dosing interval; "T>MIC 50%" takes the MIC from mic). */
enum { POPK_MET_CMAX, POPK_MET_TMAX, POPK_MET_TROUGH, POPK_MET_AUCTAU, POPK_MET_AUC0_24,
       POPK_MET_AUC24, POPK_MET_TABOVE, POPK_MET_N };
extern const char *const popk_metric_names[POPK_MET_N];

typedef struct {
    char text[128];
    int metric;
    double lo, hi;           /* pass when lo <= value <= hi (strict ends as parsed) */
    int lo_strict, hi_strict;
    double threshold;        /* POPK_MET_TABOVE: concentration threshold */
} popk_target;

popk_status popk_target_parse(popk_target *t, const char *text, double mic, popk_error *err);

/* ---------------------------------------------------------------------------------------
 * A population simulation. */
typedef int (*popk_sim_progress_fn)(double fraction, void *user);

typedef struct {
    uint64_t seed;
    long n;                  /* subjects, >= 1 */
    int nthreads;            /* 0: OpenMP default */
    int iiv;                 /* 1: etas from Omega; 0: etas zero (typical patient) */
    int residual;            /* 1: add residual error */
    const double *theta_cov; /* ntheta x ntheta: thetas drawn per subject (uncertainty) */
    int output;              /* index of the summarised output */
    int nq;
    const double *quantiles; /* nq probabilities in (0, 1) */
    double threshold;        /* for the time-above metric (NaN: none) */
    int ntarget;
    const popk_target *target;
    int keep_profiles;       /* 1: keep every subject's profile (small n) */
    long exact_limit;        /* n * ntimes up to which quantiles are exact (0: 4e6) */
    popk_sim_progress_fn progress;
    void *progress_user;
    int engine_only;         /* 1: every subject through the engine record by record, never
                              * the linear time-invariant recurrence (comparisons, tests) */
} popk_sim_options;

typedef struct {
    long n;
    size_t ntimes;
    double *times;           /* ntimes */
    int nq;
    double *quantiles;       /* nq */
    double *q;               /* q[t * nq + j]: quantile j at time t */
    double *mean;            /* ntimes */
    int exact;               /* 1: exact sample quantiles; 0: sketch (relative error < 2^-10
                              * above 2^-20 of the typical peak; docs/simulation.md) */
    double *metric;          /* metric[s * POPK_MET_N + k] */
    double *cov;             /* cov[s * ncov + k]: each subject's covariates */
    int ncov;
    int ntarget;
    double *pta;             /* ntarget + 1 (last: all targets jointly) */
    unsigned char *pass;     /* pass[s * ntarget + j] */
    double *profile;         /* keep_profiles: profile[s * ntimes + t] */
    double tau, t_last;      /* of the regimen */
    int lti;                 /* 1: profiles from the linear time-invariant recurrence (a
                              * short engine run per subject; docs/simulation.md) */
} popk_sim_result;

/* Simulate opts->n subjects given the regimen at the (sorted) times; subject s draws its
 * covariates, thetas (uncertainty), etas and residuals from popk_rng stream s of the seed,
 * so the result is identical for any thread count. */
popk_sim_result *popk_sim_run(const popk_model *m, const popk_regimen *reg,
                              const popk_population *pop, const double *times, size_t ntimes,
                              const popk_sim_options *opts, popk_error *err);
void popk_sim_result_free(popk_sim_result *r);

/* The default output grid for a regimen: 0 to the end of the last dosing interval (24 h
 * after a single dose), step 0.25 h up to 48 h of horizon, 1 h beyond. Caller frees. */
double *popk_sim_default_times(const popk_regimen *reg, size_t *ntimes);
/* "0:0.5:336" or "0,1,2,4,8": sorted, unique. NULL with err on bad input. */
double *popk_sim_parse_times(const char *spec, size_t *ntimes, popk_error *err);

#endif
