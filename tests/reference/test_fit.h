/* tests/reference/test_fit.h — shared helpers of the fit gates: a model file and a dataset as
 * an estimation problem, running the popk executable, and reading its CSV/TSV outputs. */
#ifndef POPK_TEST_FIT_H
#define POPK_TEST_FIT_H

#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/popk_test.h"
#include "fit/fit.h"

extern char **environ;

typedef struct {
    popk_model *m;
    popk_data *d;
    popk_binding *b;
    popk_fit_problem *fp;
} fit_case;

/* Load model and data (paths under the source tree), drop records matching ignore (NULL:
 * none), and let edit change the model's initial values before the problem is built. */
static inline int fit_case_load(fit_case *c, const char *model, const char *data,
                                const char *ignore, void (*edit)(popk_model *, void *),
                                void *edit_user, int nthreads)
{
    popk_error err;
    popk_error_clear(&err);
    memset(c, 0, sizeof *c);
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s", popk_test_src(model));
    c->m = popk_model_load(mpath, &err);
    if (c->m)
        c->d = popk_data_read(popk_test_src(data), &err);
    if (c->d && ignore) {
        popk_data *s = popk_data_filter(c->d, ignore, 0, &err);
        popk_data_free(c->d);
        c->d = s;
    }
    if (c->d && edit)
        edit(c->m, edit_user);
    if (c->d)
        c->b = popk_model_bind(c->m, c->d, &err);
    if (c->b)
        c->fp = popk_fit_problem_new(c->m, c->d, c->b, nthreads, &err);
    if (!c->fp)
        fprintf(stderr, "%s:%d:%d: %s\n", err.file, err.line, err.column, err.message);
    return c->fp ? 0 : -1;
}

static inline void fit_case_free(fit_case *c)
{
    popk_fit_problem_free(c->fp);
    popk_binding_free(c->b);
    popk_data_free(c->d);
    popk_model_free(c->m);
    memset(c, 0, sizeof *c);
}

static inline popk_estimate_result *fit_case_run(fit_case *c, popk_method method, int evaluate,
                                                 int nthreads)
{
    popk_estimate_options opt;
    popk_estimate_options_default(&opt);
    opt.method = method;
    opt.evaluate_only = evaluate;
    opt.nthreads = nthreads;
    popk_error err;
    popk_error_clear(&err);
    popk_estimate_result *r = popk_estimate(popk_fit_problem_get(c->fp), &opt, &err);
    if (!r)
        fprintf(stderr, "popk_estimate: %s\n", err.message);
    return r;
}

/* Run the popk executable with args (NULL-terminated); stdout and stderr go to the files
 * given (NULL: /dev/null). Returns the exit status, -1 if popk did not exit normally. */
static inline int run_popk(const char *const *args, const char *out, const char *errf)
{
    const char *exe = getenv("POPK_EXE");
    if (!exe)
        return -1;
    const char *argv[64] = {exe};
    int n = 1;
    for (; args[n - 1] && n < 63; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out ? out : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, errf ? errf : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* Size of a file in bytes (-1 if missing): a clean run leaves stderr empty (sanitizer
 * reports from the child land there too). */
static inline long file_size(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* A table of numbers with a header row (CSV or TSV). */
typedef struct {
    int ncol, nrow;
    char names[64][32];
    double *v; /* nrow * ncol */
} num_table;

static inline int table_read(num_table *t, const char *path, char sep)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[8192];
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return -1;
    }
    char *save, seps[3] = {sep, '\n', 0};
    for (char *tok = strtok_r(line, seps, &save); tok && t->ncol < 64;
         tok = strtok_r(NULL, seps, &save))
        snprintf(t->names[t->ncol++], sizeof t->names[0], "%s", tok);
    int cap = 0;
    while (fgets(line, sizeof line, f)) {
        if (t->nrow == cap) {
            cap = cap ? 2 * cap : 64;
            t->v = realloc(t->v, sizeof(double) * (size_t)cap * (size_t)t->ncol);
        }
        char *p = line;
        for (int k = 0; k < t->ncol; k++) {
            char *end;
            t->v[(size_t)t->nrow * t->ncol + k] = strtod(p, &end);
            p = *end ? end + 1 : end;
        }
        t->nrow++;
    }
    fclose(f);
    return 0;
}

static inline int table_col(const num_table *t, const char *name)
{
    for (int k = 0; k < t->ncol; k++)
        if (!strcmp(t->names[k], name))
            return k;
    return -1;
}

static inline double table_get(const num_table *t, int row, const char *name)
{
    int k = table_col(t, name);
    return k < 0 ? NAN : t->v[(size_t)row * t->ncol + k];
}

static inline void table_free(num_table *t)
{
    free(t->v);
    t->v = NULL;
}

/* Half a unit in the last of 5 significant digits (how NONMEM's tables print). */
static inline double five_digits(double x)
{
    return x == 0.0 ? 5e-6 : 0.5 * pow(10.0, floor(log10(fabs(x))) - 4.0) * 1.0001;
}

#endif
