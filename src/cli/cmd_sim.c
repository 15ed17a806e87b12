/* cli/cmd_sim.c — 'popk sim' (placeholder until its module lands). */
#include "cli/cli.h"

#include <stdio.h>

int popk_cmd_sim(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "popk sim: not available in this build yet\n");
    return POPK_EXIT_INPUT;
}
