/* cmd_bench.c — placeholder until its owner lands it (see server/commands.h). */
#include <stdio.h>

#include "server/commands.h"

int cmd_bench(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "osprey bench: not built yet\n");
    return 1;
}
