/* fit/fit_write.h — output files of a fit (docs/fitting.md describes each). */
#ifndef POPK_FIT_WRITE_H
#define POPK_FIT_WRITE_H

#include <stdio.h>

#include "fit/fit.h"

typedef struct {
    const popk_model *model;
    const popk_data *data;
    const popk_binding *binding;
    popk_fit_problem *problem;
    const popk_param_map *map;
    const popk_estimate_result *result;
    popk_method method;
    popk_covstep_kind covariance;
    int nobs;
    double runtime;         /* seconds */
    const double *ext;      /* ext_rows rows of (iteration, OFV, p[npar]) */
    int ext_rows;
    /* FO fits: the FOCE-I objective at the FO estimates (what nlmixr2 reports as the OFV of
     * its FO fits); NAN when not computed. Written beside the FO objective, never instead. */
    double ofv_focei;
} popk_fit_info;

/* Write fit.yaml, tab.csv, eta.csv, ext.csv and summary.txt into dir (which must exist). */
popk_status popk_fit_write(const char *dir, const popk_fit_info *info, popk_error *err);
/* The summary table (as in summary.txt). */
void popk_fit_summary(FILE *f, const popk_fit_info *info);
double popk_fit_aic(const popk_estimate_result *r, int nobs);
double popk_fit_bic(const popk_estimate_result *r, int nobs);

#endif
