/* cli/cmd_report.c — 'popk report' (placeholder until its module lands). */
#include "cli/cli.h"

#include <stdio.h>

int popk_cmd_report(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "popk report: not available in this build yet\n");
    return POPK_EXIT_INPUT;
}
