/* data/builder.c — build a dataset in memory (simulated designs, dosing candidates). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "util/error.h"

struct popk_data_builder {
    popk_data *d;
    size_t cap;
};

popk_data_builder *popk_data_builder_new(int ncov, const char *const *cov_names,
                                         popk_error *err)
{
    popk_data_builder *b = calloc(1, sizeof *b);
    popk_data *d = calloc(1, sizeof *d);
    if (!b || !d)
        goto nomem;
    b->d = d;
    d->path = strdup("(generated)");
    d->cov = calloc((size_t)(ncov > 0 ? ncov : 1), sizeof *d->cov);
    if (!d->path || !d->cov)
        goto nomem;
    d->ncov = (size_t)ncov;
    for (int k = 0; k < ncov; k++) {
        d->cov[k].kind = POPK_COV_NUMERIC;
        if (!(d->cov[k].name = strdup(cov_names[k])))
            goto nomem;
    }
    for (int i = 0; i < POPK_ITEM_N; i++)
        d->has_col[i] = 1;
    return b;
nomem:
    if (b)
        b->d = d;
    popk_data_builder_free(b);
    if (!b)
        popk_data_free(d);
    popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    return NULL;
}

void popk_data_builder_free(popk_data_builder *b)
{
    if (!b)
        return;
    popk_data_free(b->d);
    free(b);
}

popk_status popk_data_builder_add(popk_data_builder *b, double id, const popk_record *rec,
                                  const double *cov, popk_error *err)
{
    popk_data *d = b->d;
    if (d->nrec == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        popk_record *r = realloc(d->rec, sizeof *r * cap);
        if (r)
            d->rec = r;
        for (size_t k = 0; r && k < d->ncov; k++) {
            double *v = realloc(d->cov[k].values, sizeof(double) * cap);
            if (!v) {
                r = NULL;
                break;
            }
            d->cov[k].values = v;
        }
        popk_subject *s = r ? realloc(d->sub, sizeof *s * cap) : NULL;
        if (!s)
            return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        d->sub = s;
        b->cap = cap;
    }
    if (d->nsub == 0 || d->sub[d->nsub - 1].id != id) {
        popk_subject *s = &d->sub[d->nsub++];
        s->id = id;
        s->first = d->nrec;
        s->n = s->nobs = 0;
    } else {
        const popk_record *prev = &d->rec[d->nrec - 1];
        if (rec->time < prev->time && rec->evid != 3 && rec->evid != 4)
            return popk_error_set(err, POPK_ERR_DATA, NULL, 0, 0,
                                  "generated record of subject %g goes back in time (%g < %g)",
                                  id, rec->time, prev->time);
    }
    popk_subject *s = &d->sub[d->nsub - 1];
    d->rec[d->nrec] = *rec;
    d->rec[d->nrec].line = (int)(d->nrec + 1);
    for (size_t k = 0; k < d->ncov; k++)
        d->cov[k].values[d->nrec] = cov ? cov[k] : NAN;
    s->n++;
    s->nobs += rec->evid == 0 && rec->mdv == 0;
    d->nrec++;
    return POPK_OK;
}

popk_data *popk_data_builder_finish(popk_data_builder *b)
{
    popk_data *d = b->d;
    b->d = NULL;
    popk_data_builder_free(b);
    return d;
}
