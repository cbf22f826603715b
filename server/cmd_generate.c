/* cmd_generate.c — placeholder until its owner lands it (see server/commands.h). */
#include <stdio.h>

#include "server/commands.h"

int cmd_generate(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "osprey generate: not built yet\n");
    return 1;
}
