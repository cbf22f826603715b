/* commands.h — the subcommands of the osprey binary. Each takes the arguments after its
 * name (argv[0] is the subcommand) and returns the process exit status. Every one answers
 * --help; a wrong flag or a missing file is a one-line error and a non-zero exit. */
#ifndef OSPREY_COMMANDS_H
#define OSPREY_COMMANDS_H

int cmd_serve(int argc, char **argv);          /* server/cmd_serve.c */
int cmd_gen_model(int argc, char **argv);      /* server/cmd_gen_model.c */
int cmd_bench(int argc, char **argv);          /* server/cmd_bench.c */
int cmd_generate(int argc, char **argv);       /* server/cmd_generate.c */
int cmd_tokenize(int argc, char **argv);       /* server/cmd_tokenize.c */
int cmd_detokenize(int argc, char **argv);     /* server/cmd_tokenize.c */
int cmd_chat_template(int argc, char **argv);  /* server/cmd_chat_template.c */

#endif
