/* cli/cmd_check.c — 'popk check' (placeholder until its module lands). */
#include "cli/cli.h"

#include <stdio.h>

int popk_cmd_check(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "popk check: not available in this build yet\n");
    return POPK_EXIT_INPUT;
}
