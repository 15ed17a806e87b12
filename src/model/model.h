/* model/model.h — a population PK model loaded from a YAML file (docs/model-format.md):
 * parameters (theta, omega, sigma), covariates, the individual block, the structural
 * model (none, linear 1-3 compartments, or ODEs), dosing attributes and outputs with their
 * residual error models, all compiled into expr/ programs over one flat slot frame. */
#ifndef POPK_MODEL_H
#define POPK_MODEL_H

#include "data/data.h"
#include "expr/expr.h"
#include "popk.h"

typedef struct {
    char *name;
    char *label;            /* may be NULL */
    char *unit;             /* may be NULL */
    double init;
    double lower;           /* -INFINITY when absent */
    double upper;           /* +INFINITY when absent */
    int fixed;
    int line;               /* where it is declared in the model file */
} popk_param;

typedef enum {
    POPK_COVDEF_CONTINUOUS,
    POPK_COVDEF_CATEGORICAL
} popk_covdef_kind;

typedef struct {
    char *name;
    popk_covdef_kind kind;
    char *unit;             /* continuous; may be NULL */
    double reference;       /* continuous; NaN when not declared */
    int nlevels;            /* categorical */
    char **levels;          /* level names */
    double *codes;          /* numeric code of each level (as a data file may hold them) */
    int has_default;        /* 1: missing values take default_value; 0: missing is an error */
    double default_value;   /* in model codes for categorical covariates */
    int slot;
    int used;               /* 1 when some expression reads it */
    int line;
} popk_covdef;

typedef enum {
    POPK_ERRM_ADD,          /* var = a^2 */
    POPK_ERRM_PROP,         /* var = (b f)^2 */
    POPK_ERRM_COMB_SD,      /* sd = a + b f   (nlmixr2 combined1) */
    POPK_ERRM_COMB_VAR,     /* var = a^2 + (b f)^2   (NONMEM Y=F+F*EPS1+EPS2; nlmixr2 combined2) */
    POPK_ERRM_POW,          /* sd = b f^c */
    POPK_ERRM_LOG           /* log-transformed: log(y) = log(f) + eps, var = a^2 on log scale */
} popk_errm_kind;

typedef struct {
    char *name;             /* output name, e.g. "cp" */
    int slot;               /* slot holding the output value after prog_out runs */
    int cmt;                /* observation CMT this output answers (0: default/any) */
    int dvid;               /* DVID this output answers (0: not selected by DVID) */
    popk_errm_kind err;
    int sig_a, sig_b, sig_c;/* indices into model->sigma, -1 when unused */
    int line;
    char *text;             /* the value expression as written */
    int affine;             /* value affine in the amounts, coefficients free of time */
} popk_output;

typedef enum { POPK_STRUCT_NONE, POPK_STRUCT_LINEAR, POPK_STRUCT_ODE } popk_struct_kind;

/* Linear model parameters, in slot order of popk_model.lin_slot. "Clearance" form uses
 * CL V Q2 V2 Q3 V3 KA; "rate" form uses K K12 K21 K13 K31 V KA (V scales nothing here:
 * concentrations are written in the outputs). Unused entries hold slot -1. */
enum { POPK_LIN_CL, POPK_LIN_V, POPK_LIN_Q2, POPK_LIN_V2, POPK_LIN_Q3, POPK_LIN_V3, POPK_LIN_KA,
       POPK_LIN_K, POPK_LIN_K12, POPK_LIN_K21, POPK_LIN_K13, POPK_LIN_K31, POPK_LIN_NPAR };

/* How an odes: model is solved (solver: method). AUTO: the matrix exponential when every
 * right-hand side is affine in the amounts with constant coefficients, else CVODES BDF;
 * EXPM: the matrix exponential (the model fails to load when the system is not linear);
 * BDF, ADAMS: CVODES with that method. */
typedef enum { POPK_ODE_AUTO, POPK_ODE_EXPM, POPK_ODE_BDF, POPK_ODE_ADAMS } popk_ode_method;

/* Per-compartment dosing attributes; slot -1 when not defined (F = 1, ALAG = 0, no model
 * rate or duration). */
typedef struct {
    int f_slot, alag_slot, rate_slot, dur_slot;
} popk_dose_attr;

typedef struct popk_model {
    char *path, *name, *description, *reference;

    int ntheta, neta, nsigma, ncov, nind, ncmt, nout;
    popk_param *theta;      /* ntheta */
    char **eta_name;        /* neta */
    double *omega;          /* neta x neta covariance, row-major */
    int *omega_block;       /* block index of each eta (diagonal elements are blocks of 1) */
    int *omega_fixed;       /* per block: 1 when fixed */
    popk_param *sigma;      /* nsigma residual parameters, on the SD scale */
    popk_covdef *cov;       /* ncov declared covariates */
    char **ind_name;        /* nind individual-block variables, in assignment order */
    char **cmt_name;        /* ncmt compartments; CMT numbers are 1..ncmt in this order */
    popk_output *out;       /* nout outputs */
    char **ind_text;        /* nind expressions of the individual block, as written */
    int nomega_block;       /* number of omega blocks (omega_fixed has this many entries) */
    int nderived;           /* derived table outputs (computed by prog_out after outputs) */
    char **derived_name;
    int *derived_slot;
    int cov_slot;           /* slots[cov_slot + k] is covariate k (== cov[k].slot) */

    popk_struct_kind kind;
    int lin_ncmt;           /* linear: 1, 2 or 3 (not counting the depot) */
    int lin_depot;          /* linear: 1 when compartment 1 is a first-order depot */
    int lin_rate_form;      /* linear: 0 clearance form, 1 rate-constant form */
    int lin_slot[POPK_LIN_NPAR];
    int default_dose_cmt;   /* 1-based; 0 when the model has no compartments */
    int default_obs_cmt;    /* 1-based; 0 when the model has no compartments */
    popk_dose_attr *dose;   /* ncmt entries */
    double rtol, atol;      /* ODE solver tolerances */
    long max_steps;
    popk_ode_method ode_method; /* solver: method (default POPK_ODE_AUTO) */
    /* odes: 1 when every right-hand side is affine in the amounts with coefficients that read
     * neither amounts nor time (dA/dt = K A + c between events; found symbolically at load) */
    int ode_affine;
    /* odes that are not affine: why, as "FILE:LINE:COLUMN: the right-hand side of 'x' is not
     * linear in the amounts: <reason>" (the first offending place); NULL otherwise */
    char *ode_nonaffine;

    /* The slot frame: slots[theta_slot + k] is theta k, and so on. */
    int nslots;
    int theta_slot, eta_slot, sigma_slot, ind_slot, amt_slot, time_slot, deriv_slot;
    /* Programs (NULL when empty): prog_pk computes the individual block, then the linear
     * parameters and dose attributes, from thetas, etas and covariates; prog_rhs (ODE)
     * computes deriv slots from amounts, time, individual variables and covariates;
     * prog_out computes every output slot from the same. */
    popk_prog *prog_pk, *prog_rhs, *prog_out;
} popk_model;

/* 1 when the prediction engine solves this model by matrix exponential (pred/expm.h):
 * an affine odes: system whose method is auto or expm. Callers may change ode_method after
 * loading (e.g. to force CVODES in a test); this follows. */
static inline int popk_model_uses_expm(const popk_model *m)
{
    return m->kind == POPK_STRUCT_ODE && m->ode_affine &&
           (m->ode_method == POPK_ODE_AUTO || m->ode_method == POPK_ODE_EXPM);
}

popk_model *popk_model_load(const char *path, popk_error *err);
popk_model *popk_model_parse(const char *name, const char *buf, size_t len, popk_error *err);
void popk_model_free(popk_model *m);

/* A dataset bound to a model: each declared covariate's value at each record, in model
 * codes (categorical text or numeric codes translated), missing values replaced by the
 * declared default (or an error naming the record). Also checks that every CMT in the
 * data is a compartment of the model and that each observation record maps to an output. */
typedef struct {
    size_t nrec;
    int ncov;
    double *cov;            /* ncov x nrec, column k at cov + k*nrec */
    int *out_of_rec;        /* nrec: index of the output an observation record answers, -1 */
} popk_binding;

popk_binding *popk_model_bind(const popk_model *m, const popk_data *d, popk_error *err);
void popk_binding_free(popk_binding *b);

#endif
