/* report/report.h — the HTML report of a fit (docs/diagnostics.md): one self-contained
 * report.html with the run summary, parameter table, goodness-of-fit plots, NPDE, eta
 * distributions, individual fits and VPCs, built from the files 'popk fit' writes. */
#ifndef POPK_REPORT_H
#define POPK_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "popk.h"

typedef struct {
    const char *data_path;   /* NULL: the dataset named in fit.yaml's first line */
    const char *out_path;    /* NULL: FITDIR/report.html */
    int nsim;                /* replicates for the VPC and NPDE; 0: 500; < 0: none */
    uint64_t seed;
    int nthreads;            /* 0: OpenMP default */
} popk_report_options;

void popk_report_options_default(popk_report_options *opt);

/* Write the report of the fit in fitdir (fit.yaml, tab.csv, summary.txt). The dataset is
 * matched to tab.csv record by record, so a fit run with --ignore/--accept filters reports
 * the records it used. Also writes npde.csv and vpc.csv beside the report when simulating. */
popk_status popk_report_write(const char *fitdir, const popk_report_options *opt,
                              popk_error *err);

/* The page frame shared with 'popk vpc': a complete HTML document head with the report's
 * style sheet, and its end. */
void popk_report_html_begin(FILE *f, const char *title);
void popk_report_html_end(FILE *f);
/* Text with HTML special characters escaped. */
void popk_report_html_text(FILE *f, const char *s);

#endif
