/* cli/cmd_vpc.c — 'popk vpc' (placeholder until its module lands). */
#include "cli/cli.h"

#include <stdio.h>

int popk_cmd_vpc(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "popk vpc: not available in this build yet\n");
    return POPK_EXIT_INPUT;
}
