/* cli/cmd_map.c — 'popk map' (placeholder until its module lands). */
#include "cli/cli.h"

#include <stdio.h>

int popk_cmd_map(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "popk map: not available in this build yet\n");
    return POPK_EXIT_INPUT;
}
