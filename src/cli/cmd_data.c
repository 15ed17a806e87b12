/* cli/cmd_data.c — 'popk data' (placeholder until its module lands). */
#include "cli/cli.h"

#include <stdio.h>

int popk_cmd_data(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "popk data: not available in this build yet\n");
    return POPK_EXIT_INPUT;
}
