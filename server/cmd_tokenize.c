/* cmd_tokenize.c — placeholder until its owner lands it (see server/commands.h). */
#include <stdio.h>

#include "server/commands.h"

int cmd_tokenize(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "osprey tokenize: not built yet\n");
    return 1;
}

int cmd_detokenize(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "osprey detokenize: not built yet\n");
    return 1;
}
