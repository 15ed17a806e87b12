/* pred/pred.h — the prediction engine: one subject's NONMEM event records run through the
 * model (individual block, dosing attributes, linear closed form or ODEs, outputs), with
 * forward derivatives with respect to chosen thetas and etas.
 *
 * Event semantics follow NONMEM/PREDPP (docs/methods.md, "Events"):
 *  - the individual block runs at every event record with that record's covariates, and its
 *    values govern the advance from the previous event time to this record (and any
 *    additional or lagged doses falling inside that interval);
 *  - EVID 0 observation, 1 dose, 2 other, 3 reset, 4 reset then dose;
 *  - doses: bolus, infusion (RATE > 0: rate given, duration F*AMT/RATE; RATE = -1: rate from
 *    the model; RATE = -2: duration from the model), bioavailability F and lag ALAG of the
 *    dose compartment taken from the dose record; additional doses (ADDL, II) repeat the dose
 *    with the dose record's F, ALAG, rate and duration, and are transient (not steady state);
 *  - SS = 1 resets the system to the periodic steady state of the dose repeated every II
 *    (lag understood for all implied doses), SS = 2 adds that steady state to the current
 *    state; a constant infusion at steady state (SS = 1, AMT = 0, RATE > 0, II = 0);
 *  - events at the same time: pending (lagged, additional) doses and infusion ends that fall
 *    at or before a record's time are applied before the record.
 */
#ifndef POPK_PRED_H
#define POPK_PRED_H

#include "data/data.h"
#include "model/model.h"
#include "popk.h"

/* Per-thread workspace: slot frames, stacks, event queue, ODE solver, result buffers. */
typedef struct popk_pred_ws popk_pred_ws;

popk_pred_ws *popk_pred_ws_new(const popk_model *m, popk_error *err);
void popk_pred_ws_free(popk_pred_ws *ws);

/* What to differentiate with respect to: nd directions, each a theta or an eta. */
typedef struct {
    int nd;                     /* 0 .. POPK_DUAL_MAX */
    int dir_is_eta[32];         /* 1: eta index, 0: theta index */
    int dir_index[32];
} popk_pred_dirs;

/* Results for one subject, owned by the workspace (valid until the next call).
 * out[(r * nout + k) * (1 + nd) + j]: output k at record r (j = 0 value, j > 0 partials);
 * amt[(r * ncmt + c) * (1 + nd) + j]: amount in compartment c after record r. */
typedef struct {
    size_t nrec;
    int nout, ncmt, nd;
    const double *out;
    const double *amt;
    int nind;
    const double *ind;      /* ind[r * nind + k]: individual variable k at record r (values) */
} popk_pred_result;

/* Predict subject s of d (bound to m by b) at the given thetas (NULL: the model's initial
 * values) and etas (NULL: all zero). On failure (solver, non-finite individual parameter, invalid system) returns
 * an error naming the subject ID, time and cause. */
popk_status popk_pred_subject(popk_pred_ws *ws, const popk_model *m, const popk_data *d,
                              const popk_binding *b, size_t s, const double *theta,
                              const double *eta, const popk_pred_dirs *dirs,
                              popk_pred_result *res, popk_error *err);

#endif
