/* cli/cmd_data.c — 'popk data FILE [--json]': read a dataset and summarise it. */
#include "cli/cli.h"

#include "data/data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Levels listed in the text summary before "... and N more" (JSON lists them all). */
#define TEXT_LEVELS_SHOWN 20

typedef struct {
    int key;
    size_t obs, doses;
} key_count;

typedef struct {
    double min, max;
    size_t missing;
    size_t *level_count; /* categorical: nlevels counts */
} cov_summary;

typedef struct {
    size_t obs, doses, addl_doses, evid2, resets, excluded_obs, dv_missing;
    size_t cov_missing;
    double tmin, tmax;
    size_t rec_min, rec_max, obs_min, obs_max;
    key_count *cmt;
    size_t ncmt;
    key_count *dvid;
    size_t ndvid;
    cov_summary *cov;
} summary;

static void usage(FILE *out)
{
    fprintf(out, "usage: popk data FILE [--json]\n\n"
                 "Read a NONMEM-format dataset (see docs/dataset-format.md) and print a summary:\n"
                 "subjects, records, observations, doses, per-compartment counts, each\n"
                 "covariate's range or levels, and missing values.\n\n"
                 "  --json   print the same summary as one JSON object\n"
                 "  --help   print this help\n\n"
                 "On a malformed file prints FILE:LINE:COLUMN: message and exits with status 2.\n");
}

static int cmp_key(const void *a, const void *b)
{
    int x = ((const key_count *)a)->key, y = ((const key_count *)b)->key;
    return (x > y) - (x < y);
}

/* Sort the (key, obs, doses) rows and merge equal keys; returns the number of distinct keys. */
static size_t merge_keys(key_count *k, size_t n)
{
    if (!n)
        return 0;
    qsort(k, n, sizeof *k, cmp_key);
    size_t m = 0;
    for (size_t i = 1; i < n; i++) {
        if (k[i].key == k[m].key) {
            k[m].obs += k[i].obs;
            k[m].doses += k[i].doses;
        } else {
            k[++m] = k[i];
        }
    }
    return m + 1;
}

/* Count into the distinct keys seen so far while they are few (the usual case); past that,
 * append and let merge_keys sort. */
static void add_key(key_count *k, size_t *n, int key, size_t obs, size_t doses)
{
    if (*n <= 16)
        for (size_t i = 0; i < *n; i++)
            if (k[i].key == key) {
                k[i].obs += obs;
                k[i].doses += doses;
                return;
            }
    k[(*n)++] = (key_count){key, obs, doses};
}

static void summary_free(summary *s, const popk_data *d)
{
    free(s->cmt);
    free(s->dvid);
    if (s->cov)
        for (size_t j = 0; j < d->ncov; j++)
            free(s->cov[j].level_count);
    free(s->cov);
}

static int summarise(const popk_data *d, summary *s)
{
    memset(s, 0, sizeof *s);
    s->cmt = malloc(d->nrec * sizeof *s->cmt);
    s->dvid = malloc(d->nrec * sizeof *s->dvid);
    s->cov = calloc(d->ncov ? d->ncov : 1, sizeof *s->cov);
    if (!s->cmt || !s->dvid || !s->cov)
        return -1;
    s->tmin = INFINITY;
    s->tmax = -INFINITY;
    for (size_t i = 0; i < d->nrec; i++) {
        const popk_record *r = &d->rec[i];
        int obs = r->evid == 0 && r->mdv == 0;
        int dose = r->evid == 1 || r->evid == 4;
        s->obs += obs;
        s->doses += dose;
        s->addl_doses += dose ? (size_t)r->addl : 0;
        s->evid2 += r->evid == 2;
        s->resets += r->evid == 3 || r->evid == 4;
        s->excluded_obs += r->evid == 0 && r->mdv == 1;
        s->dv_missing += isnan(r->dv);
        s->tmin = fmin(s->tmin, r->time);
        s->tmax = fmax(s->tmax, r->time);
        if (obs || dose)
            add_key(s->cmt, &s->ncmt, r->cmt, (size_t)obs, (size_t)dose);
        if (obs)
            add_key(s->dvid, &s->ndvid, r->dvid, 1, 0);
    }
    s->ncmt = merge_keys(s->cmt, s->ncmt);
    s->ndvid = merge_keys(s->dvid, s->ndvid);
    s->rec_min = s->obs_min = (size_t)-1;
    for (size_t k = 0; k < d->nsub; k++) {
        const popk_subject *sub = &d->sub[k];
        s->rec_min = sub->n < s->rec_min ? sub->n : s->rec_min;
        s->rec_max = sub->n > s->rec_max ? sub->n : s->rec_max;
        s->obs_min = sub->nobs < s->obs_min ? sub->nobs : s->obs_min;
        s->obs_max = sub->nobs > s->obs_max ? sub->nobs : s->obs_max;
    }
    for (size_t j = 0; j < d->ncov; j++) {
        const popk_covariate *c = &d->cov[j];
        cov_summary *cs = &s->cov[j];
        cs->min = INFINITY;
        cs->max = -INFINITY;
        if (c->kind == POPK_COV_CATEGORICAL) {
            cs->level_count = calloc(c->nlevels ? (size_t)c->nlevels : 1, sizeof *cs->level_count);
            if (!cs->level_count)
                return -1;
        }
        for (size_t i = 0; i < d->nrec; i++) {
            double v = c->values[i];
            if (isnan(v)) {
                cs->missing++;
            } else if (cs->level_count) {
                cs->level_count[(int)v]++;
            } else {
                cs->min = fmin(cs->min, v);
                cs->max = fmax(cs->max, v);
            }
        }
        s->cov_missing += cs->missing;
    }
    return 0;
}

/* Shortest %g form that reads back as the same double. */
static const char *num(double v, char *buf, size_t size)
{
    snprintf(buf, size, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, size, "%.17g", v);
    return buf;
}

static void print_text(const popk_data *d, const summary *s)
{
    char a[40], b[40];
    printf("file:           %s\n", d->path);
    printf("subjects:       %zu\n", d->nsub);
    printf("records:        %zu\n", d->nrec);
    printf("observations:   %zu\n", s->obs);
    printf("doses:          %zu (EVID 1 or 4 records), plus %zu implied by ADDL\n", s->doses,
           s->addl_doses);
    printf("other records:  %zu EVID 2, %zu resets (EVID 3 or 4), %zu observations with MDV 1\n",
           s->evid2, s->resets, s->excluded_obs);
    printf("time:           from %s to %s\n", num(s->tmin, a, sizeof a), num(s->tmax, b, sizeof b));
    printf("per subject:    %zu to %zu records, %zu to %zu observations\n", s->rec_min, s->rec_max,
           s->obs_min, s->obs_max);
    printf("compartments:   CMT  observations  doses\n");
    for (size_t k = 0; k < s->ncmt; k++)
        printf("                %3d  %12zu  %5zu\n", s->cmt[k].key, s->cmt[k].obs, s->cmt[k].doses);
    if (d->has_col[POPK_ITEM_DVID]) {
        printf("observations by DVID:");
        for (size_t k = 0; k < s->ndvid; k++)
            printf("%s DVID %d: %zu", k ? "," : "", s->dvid[k].key, s->dvid[k].obs);
        printf("\n");
    }
    printf("covariates:     %zu\n", d->ncov);
    for (size_t j = 0; j < d->ncov; j++) {
        const popk_covariate *c = &d->cov[j];
        const cov_summary *cs = &s->cov[j];
        if (c->kind == POPK_COV_NUMERIC && cs->missing == d->nrec) {
            printf("  %s: numeric, all missing\n", c->name);
        } else if (c->kind == POPK_COV_NUMERIC) {
            printf("  %s: numeric, from %s to %s, %zu missing\n", c->name,
                   num(cs->min, a, sizeof a), num(cs->max, b, sizeof b), cs->missing);
        } else {
            printf("  %s: categorical, %d level%s:", c->name, c->nlevels,
                   c->nlevels == 1 ? "" : "s");
            for (int l = 0; l < c->nlevels && l < TEXT_LEVELS_SHOWN; l++)
                printf("%s %s %zu", l ? "," : "", c->levels[l], cs->level_count[l]);
            if (c->nlevels > TEXT_LEVELS_SHOWN)
                printf(", ... and %d more", c->nlevels - TEXT_LEVELS_SHOWN);
            printf("; %zu missing\n", cs->missing);
        }
    }
    printf("missing values: %zu (%zu DV, %zu covariate values)\n",
           s->dv_missing + s->cov_missing, s->dv_missing, s->cov_missing);
}

static void json_string(const char *str)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void json_number(double v)
{
    char buf[40];
    if (isfinite(v))
        fputs(num(v, buf, sizeof buf), stdout);
    else
        fputs("null", stdout);
}

static void print_json(const popk_data *d, const summary *s)
{
    printf("{\"file\": ");
    json_string(d->path);
    printf(", \"subjects\": %zu, \"records\": %zu, \"observations\": %zu, \"doses\": %zu, "
           "\"addl_doses\": %zu, \"evid2_records\": %zu, \"resets\": %zu, "
           "\"excluded_observations\": %zu,\n",
           d->nsub, d->nrec, s->obs, s->doses, s->addl_doses, s->evid2, s->resets, s->excluded_obs);
    printf(" \"time\": {\"min\": ");
    json_number(s->tmin);
    printf(", \"max\": ");
    json_number(s->tmax);
    printf("}, \"records_per_subject\": {\"min\": %zu, \"max\": %zu}, "
           "\"observations_per_subject\": {\"min\": %zu, \"max\": %zu},\n",
           s->rec_min, s->rec_max, s->obs_min, s->obs_max);
    printf(" \"compartments\": [");
    for (size_t k = 0; k < s->ncmt; k++)
        printf("%s{\"cmt\": %d, \"observations\": %zu, \"doses\": %zu}", k ? ", " : "",
               s->cmt[k].key, s->cmt[k].obs, s->cmt[k].doses);
    printf("],\n \"observations_by_dvid\": [");
    for (size_t k = 0; d->has_col[POPK_ITEM_DVID] && k < s->ndvid; k++)
        printf("%s{\"dvid\": %d, \"observations\": %zu}", k ? ", " : "", s->dvid[k].key,
               s->dvid[k].obs);
    printf("],\n \"covariates\": [");
    for (size_t j = 0; j < d->ncov; j++) {
        const popk_covariate *c = &d->cov[j];
        const cov_summary *cs = &s->cov[j];
        printf("%s\n  {\"name\": ", j ? "," : "");
        json_string(c->name);
        if (c->kind == POPK_COV_NUMERIC) {
            printf(", \"kind\": \"numeric\", \"min\": ");
            json_number(cs->min);
            printf(", \"max\": ");
            json_number(cs->max);
        } else {
            printf(", \"kind\": \"categorical\", \"levels\": [");
            for (int l = 0; l < c->nlevels; l++) {
                printf("%s{\"level\": ", l ? ", " : "");
                json_string(c->levels[l]);
                printf(", \"count\": %zu}", cs->level_count[l]);
            }
            printf("]");
        }
        printf(", \"missing\": %zu}", cs->missing);
    }
    printf("],\n \"missing\": {\"total\": %zu, \"dv\": %zu, \"covariates\": %zu}}\n",
           s->dv_missing + s->cov_missing, s->dv_missing, s->cov_missing);
}

int popk_cmd_data(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0, options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            usage(stdout);
            return POPK_EXIT_OK;
        } else if (!options_done && !strcmp(a, "--json")) {
            json = 1;
        } else if (!options_done && !strcmp(a, "--")) {
            options_done = 1;
        } else if (!options_done && a[0] == '-' && a[1]) {
            fprintf(stderr, "popk data: unknown option '%s' (try 'popk data --help')\n", a);
            return POPK_EXIT_INPUT;
        } else if (path) {
            fprintf(stderr, "popk data: one dataset at a time ('%s' and '%s' given)\n", path, a);
            return POPK_EXIT_INPUT;
        } else {
            path = a;
        }
    }
    if (!path) {
        usage(stderr);
        return POPK_EXIT_INPUT;
    }
    popk_error err;
    popk_data *d = popk_data_read(path, &err);
    if (!d) {
        popk_cli_report(&err);
        return err.code == POPK_ERR_NOMEM ? POPK_EXIT_FAILURE : POPK_EXIT_INPUT;
    }
    summary s;
    if (summarise(d, &s)) {
        summary_free(&s, d);
        popk_data_free(d);
        fprintf(stderr, "popk data: out of memory\n");
        return POPK_EXIT_FAILURE;
    }
    if (json)
        print_json(d, &s);
    else
        print_text(d, &s);
    summary_free(&s, d);
    popk_data_free(d);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "popk data: error writing the summary\n");
        return POPK_EXIT_FAILURE;
    }
    return POPK_EXIT_OK;
}
