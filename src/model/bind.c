/* model/bind.c — a dataset checked against a model: covariate columns in model codes,
 * compartments that exist, and the output each observation record answers. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static void list_levels(const popk_covdef *cv, char *buf, size_t size)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (int i = 0; i < cv->nlevels && pos < size; i++)
        pos += (size_t)snprintf(buf + pos, size - pos, "%s%s=%g", i ? ", " : "", cv->levels[i],
                                cv->codes[i]);
}

static popk_status bind_covariate(const popk_model *m, const popk_data *d, int k, double *out,
                                  popk_error *err)
{
    const popk_covdef *cv = &m->cov[k];
    int col = popk_data_find_cov(d, cv->name);
    if (col < 0) {
        if (cv->used && !cv->has_default)
            return popk_error_set(err, POPK_ERR_DATA, d->path, 1, 0,
                                  "covariate '%s' used by the model is not a column of the "
                                  "dataset", cv->name);
        for (size_t r = 0; r < d->nrec; r++)
            out[r] = cv->has_default ? cv->default_value : NAN;
        return POPK_OK;
    }
    const popk_covariate *dc = &d->cov[col];
    char levels[256];
    for (size_t r = 0; r < d->nrec; r++) {
        double v = dc->values[r];
        int line = d->rec[r].line;
        if (isnan(v)) {
            if (!cv->has_default)
                return popk_error_set(err, POPK_ERR_DATA, d->path, line, 0,
                                      "missing value of covariate '%s' (the model declares no "
                                      "default)", cv->name);
            out[r] = cv->default_value;
            continue;
        }
        if (cv->kind == POPK_COVDEF_CONTINUOUS) {
            if (dc->kind == POPK_COV_CATEGORICAL)
                return popk_error_set(err, POPK_ERR_DATA, d->path, line, 0,
                                      "covariate '%s' must be a number, found '%s'", cv->name,
                                      dc->levels[(int)v]);
            out[r] = v;
            continue;
        }
        int found = -1;
        if (dc->kind == POPK_COV_CATEGORICAL) {
            const char *text = dc->levels[(int)v];
            for (int i = 0; i < cv->nlevels && found < 0; i++)
                if (!strcmp(cv->levels[i], text))
                    found = i;
            if (found < 0) {
                list_levels(cv, levels, sizeof levels);
                return popk_error_set(err, POPK_ERR_DATA, d->path, line, 0,
                                      "unknown level '%s' of covariate '%s' (levels: %s)", text,
                                      cv->name, levels);
            }
        } else {
            for (int i = 0; i < cv->nlevels && found < 0; i++)
                if (cv->codes[i] == v)
                    found = i;
            if (found < 0) {
                list_levels(cv, levels, sizeof levels);
                return popk_error_set(err, POPK_ERR_DATA, d->path, line, 0,
                                      "value %g of covariate '%s' is not the code of a level "
                                      "(levels: %s)", v, cv->name, levels);
            }
        }
        out[r] = cv->codes[found];
    }
    return POPK_OK;
}

static void list_cmts(const popk_model *m, char *buf, size_t size)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (int i = 0; i < m->ncmt && pos < size; i++)
        pos += (size_t)snprintf(buf + pos, size - pos, "%s%d %s", i ? ", " : "", i + 1,
                                m->cmt_name[i]);
    if (m->ncmt == 0)
        snprintf(buf, size, "none");
}

/* The output an observation answers: by DVID when the data and outputs carry it, else by
 * compartment (outputs without a compartment answer any), or -1. */
static int output_of(const popk_model *m, const popk_record *rec, int by_dvid)
{
    if (by_dvid) {
        for (int o = 0; o < m->nout; o++)
            if (m->out[o].dvid == rec->dvid)
                return o;
        return -1;
    }
    int cmt = rec->cmt ? abs(rec->cmt) : m->default_obs_cmt;
    for (int o = 0; o < m->nout; o++)
        if (m->out[o].cmt == cmt)
            return o;
    for (int o = 0; o < m->nout; o++)
        if (m->out[o].cmt == 0)
            return o;
    return -1;
}

popk_binding *popk_model_bind(const popk_model *m, const popk_data *d, popk_error *err)
{
    popk_error_clear(err);
    if (!m || !d) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "popk_model_bind: NULL model or data");
        return NULL;
    }
    popk_binding *b = calloc(1, sizeof *b);
    if (!b || !(b->cov = malloc(((size_t)m->ncov * d->nrec + 1) * sizeof *b->cov)) ||
        !(b->out_of_rec = malloc((d->nrec + 1) * sizeof *b->out_of_rec))) {
        popk_binding_free(b);
        popk_error_set(err, POPK_ERR_NOMEM, d->path, 0, 0, "out of memory");
        return NULL;
    }
    b->nrec = d->nrec;
    b->ncov = m->ncov;
    popk_status st = POPK_OK;
    for (int k = 0; k < m->ncov && !st; k++)
        st = bind_covariate(m, d, k, b->cov + (size_t)k * d->nrec, err);

    int by_dvid = 0;
    if (d->has_col[POPK_ITEM_DVID])
        for (int o = 0; o < m->nout; o++)
            by_dvid |= m->out[o].dvid > 0;
    char list[512];
    for (size_t r = 0; r < d->nrec && !st; r++) {
        const popk_record *rec = &d->rec[r];
        b->out_of_rec[r] = -1;
        if (rec->cmt != 0 && abs(rec->cmt) > m->ncmt) {
            list_cmts(m, list, sizeof list);
            st = popk_error_set(err, POPK_ERR_DATA, d->path, rec->line, 0,
                                "CMT %d is not a compartment of model '%s' (compartments: %s)",
                                rec->cmt, m->name, list);
            break;
        }
        if (rec->evid != 0 || rec->mdv != 0)
            continue;
        int o = output_of(m, rec, by_dvid);
        if (o < 0) {
            if (by_dvid)
                st = popk_error_set(err, POPK_ERR_DATA, d->path, rec->line, 0,
                                    "observation with DVID %d matches no output of the model",
                                    rec->dvid);
            else
                st = popk_error_set(err, POPK_ERR_DATA, d->path, rec->line, 0,
                                    "observation in CMT %d matches no output of the model (give "
                                    "an output 'cmt: %d')",
                                    rec->cmt ? rec->cmt : m->default_obs_cmt,
                                    rec->cmt ? rec->cmt : m->default_obs_cmt);
            break;
        }
        b->out_of_rec[r] = o;
    }
    if (st) {
        popk_binding_free(b);
        return NULL;
    }
    return b;
}

void popk_binding_free(popk_binding *b)
{
    if (!b)
        return;
    free(b->cov);
    free(b->out_of_rec);
    free(b);
}
