/* report/vpc.h — visual predictive checks (docs/diagnostics.md): observed against simulated
 * percentiles per time bin with confidence intervals, prediction correction (Bergstrand et
 * al. 2011), stratification, and censoring below the limit of quantification. */
#ifndef POPK_REPORT_VPC_H
#define POPK_REPORT_VPC_H

#include <stdint.h>
#include <stdio.h>

#include "data/data.h"
#include "model/model.h"
#include "popk.h"
#include "report/svgplot.h"
#include "simulate/simulate.h"

typedef struct {
    int nsim;               /* replicates (>= 2); 0: 500 */
    uint64_t seed;
    int nthreads;           /* 0: OpenMP default */
    int pred_corrected;     /* 1: prediction-corrected VPC */
    int nbins;              /* 0: automatic (natural breaks, docs/diagnostics.md) */
    int max_auto_bins;      /* 0: 10 */
    int time_after_dose;    /* 1: x axis is the time since the subject's last dose */
    const char *stratify;   /* a column of the dataset, or NULL */
    double pi_lo, pi_hi;    /* outer percentiles (fractions); 0, 0: 0.05, 0.95 */
    double ci;              /* width of the confidence intervals; 0: 0.90 */
    double lloq;            /* NaN: from an LLOQ column when there is one, else none */
} popk_vpc_options;

void popk_vpc_options_default(popk_vpc_options *opt);

enum { POPK_VPC_LO, POPK_VPC_MED, POPK_VPC_HI };

typedef struct {
    double t_lo, t_hi, t_mid;   /* bin edges and the median time of its observations */
    int nobs;
    double lloq;                /* NaN when no limit applies */
    double obs[3];              /* observed percentiles lo/median/hi (NaN when censored) */
    double sim[3][3];           /* [percentile][CI low, median, CI high] over replicates */
    double blq_obs;             /* fraction of observations below LLOQ (NaN without LLOQ) */
    double blq_sim[3];          /* its simulated CI low, median, high */
} popk_vpc_bin;

typedef struct {
    char label[160];            /* output name, and the stratum value when stratified */
    int output;
    int nbins;
    popk_vpc_bin *bin;
    size_t nobs;                /* observed points (for plotting) */
    double *x, *y;              /* time (or time after dose) and (corrected) DV */
    unsigned char *censored;
} popk_vpc_stratum;

typedef struct {
    popk_vpc_options opt;
    int has_lloq;
    int nstrata;
    popk_vpc_stratum *strata;
    char stratify[64];
} popk_vpc;

/* VPC of d with the model m as it stands (its parameter values: load a fit.yaml), simulating
 * opt->nsim replicates of d's design. NULL on error. */
popk_vpc *popk_vpc_run(const popk_model *m, const popk_data *d, const popk_binding *b,
                       const popk_vpc_options *opt, popk_error *err);
/* The same from replicates already simulated (with residual error) by popk_sim_design. */
popk_vpc *popk_vpc_compute(const popk_model *m, const popk_data *d, const popk_binding *b,
                           const popk_sim_replicates *sims, const popk_vpc_options *opt,
                           popk_error *err);
void popk_vpc_free(popk_vpc *v);

/* Fraction of the observed percentiles (over all strata, bins and the three percentiles,
 * censored ones left out) inside their simulated confidence interval; *n receives how many
 * were compared (may be NULL). */
double popk_vpc_coverage(const popk_vpc *v, int *n);

/* Table of every stratum and bin (CSV with a header). */
popk_status popk_vpc_write_csv(const popk_vpc *v, const char *path, popk_error *err);

/* The plot of stratum s (ylog: logarithmic concentration axis); NULL when out of memory. */
popk_plot *popk_vpc_plot(const popk_vpc *v, int s, int ylog, int width, int height);
/* The fraction below LLOQ per bin, observed against simulated (only when has_lloq). */
popk_plot *popk_vpc_blq_plot(const popk_vpc *v, int s, int width, int height);

#endif
