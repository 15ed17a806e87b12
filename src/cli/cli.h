/* cli/cli.h — subcommands of the popk executable and their shared helpers. */
#ifndef POPK_CLI_H
#define POPK_CLI_H

#include "model/model.h"
#include "popk.h"

/* Exit codes (documented in docs/cli.md). */
enum {
    POPK_EXIT_OK = 0,
    POPK_EXIT_FAILURE = 1,   /* run-time failure (solver, numerical, I/O on output) */
    POPK_EXIT_INPUT = 2,     /* bad input: usage, malformed model or dataset */
    POPK_EXIT_NOCONV = 3     /* estimation ran but did not converge (outputs written) */
};

typedef int (*popk_cli_fn)(int argc, char **argv);

int popk_cmd_data(int argc, char **argv);
int popk_cmd_check(int argc, char **argv);
int popk_cmd_predict(int argc, char **argv);
int popk_cmd_fit(int argc, char **argv);
int popk_cmd_sim(int argc, char **argv);
int popk_cmd_map(int argc, char **argv);
int popk_cmd_vpc(int argc, char **argv);
int popk_cmd_report(int argc, char **argv);

/* Load a model and a dataset, apply the record filters (--ignore/--accept, in order) and
 * bind them. On failure prints the error and returns -1; whatever was loaded is still
 * returned in *m, *d, *b for the caller to free (NULL otherwise). */
int popk_cli_load(const char *model_path, const char *data_path, int nfilter,
                  const char *const *filters, const int *accept, popk_model **m, popk_data **d,
                  popk_binding **b);

/* Print an error to stderr as "FILE:LINE:COLUMN: message", then, when the error carries
 * the source line, that line and a caret under the column. */
void popk_cli_report(const popk_error *err);

#endif
