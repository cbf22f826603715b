/* cmd_gen_model.c — placeholder until its owner lands it (see server/commands.h). */
#include <stdio.h>

#include "server/commands.h"

int cmd_gen_model(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "osprey gen-model: not built yet\n");
    return 1;
}
