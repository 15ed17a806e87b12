/* Benchmark of pred/ode: integrate the 2-compartment oral model over every subject of ACOP
 * Oral_2CPT (120 subjects x 66 records) with 0 and 3 sensitivity directions; also with the
 * solver recreated at every dose, to show what reusing it saves; BDF and Adams. Prints
 * milliseconds.
 * Usage: bench_ode PATH/Oral_2CPT.csv [repeats [case]] */
#include "pred/ode.h"

#include "unit/pred/ode_models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    double time, amt;
    int evid, cmt;
} record;

typedef struct {
    int nrec;
    record *rec;
    double p[4]; /* ka, k10, k12, k21 */
    double v1;
} subject;

typedef struct {
    int nsub;
    subject *sub;
    int nrec_total;
} dataset;

static int column_index(char *header, const char *name)
{
    int idx = 0;
    for (char *tok = strtok(header, ",\r\n"); tok; tok = strtok(NULL, ",\r\n"), idx++)
        if (strcmp(tok, name) == 0)
            return idx;
    return -1;
}

static int read_dataset(const char *path, dataset *d)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_ode: cannot open %s\n", path);
        return -1;
    }
    char line[4096], hdr[4096];
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return -1;
    }
    const char *names[] = {"ID", "TIME", "AMT", "EVID", "CMT", "V1", "CL", "Q", "V2", "KA"};
    int col[10];
    for (int i = 0; i < 10; i++) {
        strcpy(hdr, line);
        col[i] = column_index(hdr, names[i]);
        if (col[i] < 0) {
            fprintf(stderr, "bench_ode: column %s missing in %s\n", names[i], path);
            fclose(f);
            return -1;
        }
    }
    memset(d, 0, sizeof *d);
    int cap_sub = 0, last_id = -1;
    while (fgets(line, sizeof line, f)) {
        double v[64];
        int nv = 0;
        for (char *tok = strtok(line, ",\r\n"); tok && nv < 64; tok = strtok(NULL, ",\r\n"))
            v[nv++] = strtod(tok, NULL);
        int id = (int)v[col[0]];
        if (id != last_id) {
            if (d->nsub == cap_sub) {
                cap_sub = cap_sub ? 2 * cap_sub : 64;
                d->sub = realloc(d->sub, sizeof(subject) * (size_t)cap_sub);
            }
            subject *s = &d->sub[d->nsub++];
            memset(s, 0, sizeof *s);
            double v1 = v[col[5]], cl = v[col[6]], q = v[col[7]], v2 = v[col[8]];
            s->v1 = v1;
            s->p[0] = v[col[9]];
            s->p[1] = cl / v1;
            s->p[2] = q / v1;
            s->p[3] = q / v2;
            s->rec = malloc(sizeof(record) * 128);
            last_id = id;
        }
        subject *s = &d->sub[d->nsub - 1];
        if (s->nrec == 128) {
            fprintf(stderr, "bench_ode: more than 128 records for ID %d\n", id);
            fclose(f);
            return -1;
        }
        record *r = &s->rec[s->nrec++];
        r->time = v[col[1]];
        r->amt = v[col[2]];
        r->evid = (int)v[col[3]];
        r->cmt = (int)v[col[4]];
        d->nrec_total++;
    }
    fclose(f);
    return 0;
}

/* Method of the case being run (POPK_CVODE_BDF or POPK_CVODE_ADAMS). */
static int bench_method = POPK_CVODE_BDF;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

typedef struct {
    double ms;
    double max_rel_err; /* central amount vs closed-form superposition, where > 1e-3 max */
    popk_ode_stats stats;
} run_result;

/* Event loop over one subject: a dose is a reset with the amount added; other records are
 * outputs. recreate: build a fresh solver at every dose instead of resetting. smooth: 0 =
 * stop at every record, 1 = step past records up to the next dose, 2 = also reset (restart
 * the integrator) at every record. */
static int run_subject(const subject *s, int ns, double rtol, double atol, int recreate,
                       int smooth, popk_ode **solver, oral2_model *model, double *max_rel_err,
                       popk_ode_stats *acc)
{
    popk_error err;
    double y[3] = {0, 0, 0}, sens[12] = {0};
    memcpy(model->p, s->p, sizeof s->p);
    model->ns = ns;
    int started = 0;
    for (int i = 0; i < s->nrec; i++) {
        const record *r = &s->rec[i];
        double tsmooth = r->time;
        if (smooth == 1) {
            tsmooth = INFINITY;
            for (int j = i; j < s->nrec; j++)
                if (s->rec[j].evid == 1) {
                    tsmooth = s->rec[j].time;
                    break;
                }
        }
        if (started &&
            popk_ode_advance_smooth(*solver, r->time, tsmooth, y, ns ? sens : NULL, &err) !=
                POPK_OK) {
            fprintf(stderr, "bench_ode: %s\n", err.message);
            return -1;
        }
        if (smooth == 2 && started && r->evid != 1 &&
            popk_ode_reset(*solver, r->time, y, ns ? sens : NULL, &err) != POPK_OK) {
            fprintf(stderr, "bench_ode: %s\n", err.message);
            return -1;
        }
        if (r->evid == 1) {
            y[r->cmt - 1] += r->amt;
            if (recreate) {
                if (*solver) {
                    popk_ode_stats st;
                    popk_ode_get_stats(*solver, &st);
                    acc->steps += st.steps;
                    acc->rhs_evals += st.rhs_evals;
                    acc->jac_evals += st.jac_evals;
                    acc->sens_rhs_evals += st.sens_rhs_evals;
                    acc->resets += st.resets;
                }
                popk_ode_free(*solver);
                *solver = popk_ode_new(3, ns, oral2_rhs, model, &err);
                if (!*solver)
                    return -1;
                popk_ode_set_tolerances(*solver, rtol, atol, 100000);
                popk_ode_set_method(*solver, bench_method);
            }
            if (popk_ode_reset(*solver, r->time, y, ns ? sens : NULL, &err) != POPK_OK) {
                fprintf(stderr, "bench_ode: %s\n", err.message);
                return -1;
            }
            started = 1;
        } else if (max_rel_err && started) {
            double ref = 0.0, peak = 0.0;
            for (int j = 0; j < s->nrec && s->rec[j].time <= r->time; j++) {
                if (s->rec[j].evid != 1)
                    continue;
                double one[3];
                two_cmt_oral(s->p, s->rec[j].amt, r->time - s->rec[j].time, one);
                ref += one[1];
                peak += s->rec[j].amt;
            }
            if (fabs(ref) > 1e-3 * peak) {
                double e = fabs(y[1] - ref) / fabs(ref);
                if (e > *max_rel_err)
                    *max_rel_err = e;
            }
        }
    }
    return 0;
}

static int run_all(const dataset *d, int ns, double rtol, double atol, int recreate,
                   int smooth, int check, run_result *res)
{
    oral2_model model;
    popk_error err;
    popk_ode *solver = NULL;
    memset(res, 0, sizeof *res);
    double t0 = now_ms();
    if (!recreate) {
        solver = popk_ode_new(3, ns, oral2_rhs, &model, &err);
        if (!solver)
            return -1;
        popk_ode_set_tolerances(solver, rtol, atol, 100000);
        popk_ode_set_method(solver, bench_method);
    }
    for (int i = 0; i < d->nsub; i++)
        if (run_subject(&d->sub[i], ns, rtol, atol, recreate, smooth, &solver, &model,
                        check ? &res->max_rel_err : NULL, &res->stats) != 0) {
            popk_ode_free(solver);
            return -1;
        }
    popk_ode_stats st;
    popk_ode_get_stats(solver, &st);
    res->stats.steps += st.steps;
    res->stats.rhs_evals += st.rhs_evals;
    res->stats.jac_evals += st.jac_evals;
    res->stats.sens_rhs_evals += st.sens_rhs_evals;
    res->stats.resets += st.resets;
    popk_ode_free(solver);
    res->ms = now_ms() - t0;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_ode PATH/Oral_2CPT.csv [repeats]\n");
        return 2;
    }
    int repeats = argc > 2 ? atoi(argv[2]) : 5;
    int only = argc > 3 ? atoi(argv[3]) : -1; /* run one case (index from 0) */
    if (repeats < 1)
        repeats = 1;
    dataset d;
    if (read_dataset(argv[1], &d) != 0)
        return 1;
    printf("ACOP Oral_2CPT: %d subjects, %d records; 2-cmt oral ODE (3 states), "
           "BDF or Adams/Newton/dense; best of %d runs\n",
           d.nsub, d.nrec_total, repeats);
    printf("%-38s %9s %10s %9s %9s %9s %8s %10s\n", "case (rtol, atol)", "ms", "us/record", "steps",
           "f evals", "J evals", "fS evals", "max relerr");
    struct {
        const char *name;
        int ns;
        double rtol, atol;
        int recreate, smooth, adams;
    } cases[] = {
        {"reset at each record, 1e-6, ns=0", 0, 1e-6, 1e-6, 0, 2, 0},
        {"reset at each record, 1e-6, ns=3", 3, 1e-6, 1e-6, 0, 2, 0},
        {"stop at each record, 1e-6, ns=0", 0, 1e-6, 1e-6, 0, 0, 0},
        {"stop at each record, 1e-6, ns=3", 3, 1e-6, 1e-6, 0, 0, 0},
        {"stop at doses only, 1e-6, ns=0", 0, 1e-6, 1e-6, 0, 1, 0},
        {"stop at doses only, 1e-6, ns=3", 3, 1e-6, 1e-6, 0, 1, 0},
        {"stop at doses only, 1e-8, ns=0", 0, 1e-8, 1e-8, 0, 1, 0},
        {"stop at doses only, 1e-8, ns=3", 3, 1e-8, 1e-8, 0, 1, 0},
        {"doses only, rtol 1e-6 atol 1e-2", 0, 1e-6, 1e-2, 0, 1, 0},
        {"doses only, rtol 1e-6 atol 1e-2, ns=3", 3, 1e-6, 1e-2, 0, 1, 0},
        {"doses only, rtol 1e-4 atol 1e-2", 0, 1e-4, 1e-2, 0, 1, 0},
        {"doses only, rtol 1e-4 atol 1e-2, ns=3", 3, 1e-4, 1e-2, 0, 1, 0},
        {"as above 1e-8, ns=0, new per dose", 0, 1e-8, 1e-8, 1, 1, 0},
        {"as above 1e-8, ns=3, new per dose", 3, 1e-8, 1e-8, 1, 1, 0},
        {"Adams, doses only, 1e-6, ns=0", 0, 1e-6, 1e-6, 0, 1, 1},
        {"Adams, doses only, 1e-6, ns=3", 3, 1e-6, 1e-6, 0, 1, 1},
        {"Adams, doses only, 1e-8, ns=0", 0, 1e-8, 1e-8, 0, 1, 1},
        {"Adams, doses only, 1e-8, ns=3", 3, 1e-8, 1e-8, 0, 1, 1},
        {"Adams, stop at each record, 1e-8, ns=3", 3, 1e-8, 1e-8, 0, 0, 1},
    };
    int status = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (only >= 0 && (size_t)only != c)
            continue;
        run_result best = {0}, r;
        bench_method = cases[c].adams ? POPK_CVODE_ADAMS : POPK_CVODE_BDF;
        for (int rep = 0; rep < repeats; rep++) {
            if (run_all(&d, cases[c].ns, cases[c].rtol, cases[c].atol, cases[c].recreate,
                        cases[c].smooth, 0, &r) != 0) {
                status = 1;
                break;
            }
            if (rep == 0 || r.ms < best.ms)
                best = r;
        }
        /* Accuracy from one extra run (the reference sum is not part of the timing). */
        if (run_all(&d, cases[c].ns, cases[c].rtol, cases[c].atol, cases[c].recreate,
                    cases[c].smooth, 1, &r) != 0)
            status = 1;
        printf("%-38s %9.2f %10.2f %9ld %9ld %9ld %8ld %10.2e\n", cases[c].name, best.ms,
               1e3 * best.ms / d.nrec_total, best.stats.steps, best.stats.rhs_evals,
               best.stats.jac_evals, best.stats.sens_rhs_evals, r.max_rel_err);
    }
    /* Cost of a reset (reused solver) against building a new solver, per call. */
    for (int ns = 0; ns <= 3; ns += 3) {
        oral2_model model = {{1.0, 0.04, 0.07, 0.08}, ns};
        double y0[3] = {1000.0, 10.0, 5.0};
        popk_error err;
        const int calls = 2000;
        popk_ode *o = popk_ode_new(3, ns, oral2_rhs, &model, &err);
        if (!o)
            return 1;
        double t0 = now_ms();
        for (int i = 0; i < calls; i++)
            if (popk_ode_reset(o, (double)i, y0, NULL, &err) != POPK_OK)
                status = 1;
        double reset_us = 1e3 * (now_ms() - t0) / calls;
        popk_ode_free(o);
        t0 = now_ms();
        for (int i = 0; i < calls; i++) {
            o = popk_ode_new(3, ns, oral2_rhs, &model, &err);
            if (!o || popk_ode_reset(o, (double)i, y0, NULL, &err) != POPK_OK)
                status = 1;
            popk_ode_free(o);
        }
        double new_us = 1e3 * (now_ms() - t0) / calls;
        printf("ns = %d: reset %.2f us; new + reset + free %.2f us\n", ns, reset_us, new_us);
    }
    for (int i = 0; i < d.nsub; i++)
        free(d.sub[i].rec);
    free(d.sub);
    return status;
}
