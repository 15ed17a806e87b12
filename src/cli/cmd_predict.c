/* cli/cmd_predict.c — 'popk predict' (placeholder until its module lands). */
#include "cli/cli.h"

#include <stdio.h>

int popk_cmd_predict(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "popk predict: not available in this build yet\n");
    return POPK_EXIT_INPUT;
}
