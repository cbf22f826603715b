/* main.c — the osprey binary: dispatches to a subcommand (server/commands.h). */
#include <stdio.h>
#include <string.h>

#include "server/commands.h"

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    { "serve",         cmd_serve,         "run the OpenAI-compatible HTTP daemon" },
    { "generate",      cmd_generate,      "generate a completion offline" },
    { "bench",         cmd_bench,         "offline throughput benchmark" },
    { "gen-model",     cmd_gen_model,     "write a random-weight Hugging Face model folder" },
    { "tokenize",      cmd_tokenize,      "print the token ids of a text" },
    { "detokenize",    cmd_detokenize,    "print the text of token ids" },
    { "chat-template", cmd_chat_template, "render a chat template" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: osprey <command> [options]   (osprey <command> --help for its options)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "osprey: unknown command '%s' (osprey --help lists them)\n", argv[1]);
    return 2;
}
