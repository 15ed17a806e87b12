/* cli/main.c — the popk executable: dispatch to subcommands. */
#include "cli/cli.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    popk_cli_fn fn;
    const char *summary;
} commands[] = {
    {"data", popk_cmd_data, "read a NONMEM-format dataset and summarise it"},
    {"check", popk_cmd_check, "validate a model file (and a dataset against it)"},
    {"predict", popk_cmd_predict, "predict concentrations and amounts for a dataset"},
    {"fit", popk_cmd_fit, "estimate a population model (FOCE-I, FOCE, FO, Laplace)"},
    {"sim", popk_cmd_sim, "simulate dosing regimens: percentiles, exposure, target attainment"},
    {"map", popk_cmd_map, "individual Bayesian estimates and dose recommendation (TDM)"},
    {"vpc", popk_cmd_vpc, "visual predictive check of a fitted model"},
    {"report", popk_cmd_report, "HTML report of a fit with goodness-of-fit plots"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: popk COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'popk COMMAND --help' describes a command. popk %s\n", POPK_VERSION);
}

void popk_cli_report(const popk_error *err)
{
    char buf[1024];
    fprintf(stderr, "%s\n", popk_error_format(err, buf, sizeof buf));
    if (err && err->context[0]) {
        fprintf(stderr, "  %s\n  ", err->context);
        for (int i = 1; i < err->column && err->context[i - 1]; i++)
            fputc(err->context[i - 1] == '\t' ? '\t' : ' ', stderr);
        fputs("^\n", stderr);
    }
}

int popk_cli_load(const char *model_path, const char *data_path, int nfilter,
                  const char *const *filters, const int *accept, popk_model **m, popk_data **d,
                  popk_binding **b)
{
    popk_error err;
    popk_error_clear(&err);
    *m = NULL;
    *d = NULL;
    *b = NULL;
    if (!(*m = popk_model_load(model_path, &err)) || !(*d = popk_data_read(data_path, &err))) {
        popk_cli_report(&err);
        return -1;
    }
    for (int k = 0; k < nfilter; k++) {
        popk_data *s = popk_data_filter(*d, filters[k], accept[k], &err);
        if (!s) {
            popk_cli_report(&err);
            return -1;
        }
        popk_data_free(*d);
        *d = s;
    }
    if (!(*b = popk_model_bind(*m, *d, &err))) {
        popk_cli_report(&err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* popk parallelises over individuals itself and its matrices are small: OpenBLAS's own
     * threads would only spin (measured: a fifth of a theo_sd fit's CPU time). */
    openblas_set_num_threads(1);
    if (argc < 2) {
        usage(stderr);
        return POPK_EXIT_INPUT;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return POPK_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("popk %s\n", POPK_VERSION);
        return POPK_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "popk: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return POPK_EXIT_INPUT;
}
