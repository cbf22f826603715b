/* cmd_chat_template.c — placeholder until its owner lands it (see server/commands.h). */
#include <stdio.h>

#include "server/commands.h"

int cmd_chat_template(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "osprey chat-template: not built yet\n");
    return 1;
}
