/* data/data.h — NONMEM-format datasets in memory: subjects as contiguous blocks of
 * time-ordered event records, covariates in a column store. One allocation per array,
 * none per record. See docs/dataset-format.md for the file rules. */
#ifndef POPK_DATA_H
#define POPK_DATA_H

#include <stddef.h>

#include "popk.h"

/* Standard NONMEM items. Absent columns take NONMEM's defaults (0, except EVID/MDV derived
 * and CMT 0 = "the model's default compartment"). */
typedef struct {
    double time;
    double dv;      /* NaN when missing ('.') on a record that is not a dose (EVID 0, 2, 3) */
    double amt;
    double rate;
    double ii;
    int evid;       /* 0 obs, 1 dose, 2 other, 3 reset, 4 reset and dose */
    int mdv;
    int cmt;        /* 0 = default compartment; negative = turn off (NONMEM) */
    int ss;         /* 0, 1, 2 */
    int addl;
    int dvid;       /* 0 when absent */
    int line;       /* 1-based line in the source file */
} popk_record;

typedef struct {
    double id;
    size_t first;   /* index of the subject's first record */
    size_t n;       /* number of records */
    size_t nobs;    /* records with EVID 0 and MDV 0 */
} popk_subject;

typedef enum { POPK_COV_NUMERIC, POPK_COV_CATEGORICAL } popk_cov_kind;

typedef struct {
    char *name;              /* as in the header (original case) */
    popk_cov_kind kind;
    int nlevels;             /* categorical: text levels in order of first appearance */
    char **levels;           /* values hold the level index 0..nlevels-1 as a double;
                              * pointers and texts are one allocation (free(levels)) */
    double *values;          /* nrec values; NaN = missing */
} popk_covariate;

typedef struct popk_data {
    char *path;
    size_t nrec, nsub, ncov;
    popk_record *rec;        /* nrec records in file order (subjects contiguous) */
    popk_subject *sub;       /* nsub subjects */
    popk_covariate *cov;     /* ncov covariates (every column that is not a NONMEM item) */
    int has_col[16];         /* which standard items were present (popk_item index) */
} popk_data;

/* Indices into has_col. */
enum {
    POPK_ITEM_ID, POPK_ITEM_TIME, POPK_ITEM_DV, POPK_ITEM_AMT, POPK_ITEM_EVID, POPK_ITEM_MDV,
    POPK_ITEM_CMT, POPK_ITEM_RATE, POPK_ITEM_II, POPK_ITEM_ADDL, POPK_ITEM_SS, POPK_ITEM_DVID,
    POPK_ITEM_N
};

/* Read a dataset. On any problem returns NULL and sets err to FILE:LINE:COLUMN: message
 * (code POPK_ERR_DATA for a malformed file, POPK_ERR_LIMIT past a size limit, POPK_ERR_IO when
 * the file cannot be read, POPK_ERR_NOMEM). err->context is left empty so that a report is
 * one line; binary input must not reach a terminal. */
popk_data *popk_data_read(const char *path, popk_error *err);
/* Same from memory (name is used in messages; buf need not be NUL-terminated, it is copied). */
popk_data *popk_data_parse(const char *name, const char *buf, size_t len, popk_error *err);
void popk_data_free(popk_data *d);

/* A new dataset holding the records r with keep[r] != 0 (subjects left without records are
 * dropped). The source is unchanged. */
popk_data *popk_data_subset(const popk_data *d, const unsigned char *keep, popk_error *err);

/* NONMEM's IGNORE=(COL.EQ.VALUE) (accept == 0) or ACCEPT=(COL.EQ.VALUE) (accept != 0):
 * cond is "COL=VALUE", "COL==VALUE" or "COL.EQ.VALUE"; COL is a NONMEM item or any column. */
popk_data *popk_data_filter(const popk_data *d, const char *cond, int accept, popk_error *err);

/* Building a dataset in memory (simulation designs, dosing candidates): records are added
 * in order, subject by subject (a new id starts a new subject); covariates are numeric (for
 * a model's categorical covariate give its numeric code). The record's line field is set to
 * its 1-based index. */
typedef struct popk_data_builder popk_data_builder;
popk_data_builder *popk_data_builder_new(int ncov, const char *const *cov_names,
                                         popk_error *err);
popk_status popk_data_builder_add(popk_data_builder *b, double id, const popk_record *rec,
                                  const double *cov, popk_error *err);
/* The dataset (the builder is freed). */
popk_data *popk_data_builder_finish(popk_data_builder *b);
void popk_data_builder_free(popk_data_builder *b);

/* Index of a covariate by case-insensitive name, or -1. */
int popk_data_find_cov(const popk_data *d, const char *name);

#endif
