/* chat_prompt.h — a chat request's prompt text from its messages and the model's chat
 * template (server/chat_prompt.c), on the HTTP thread before tokenizing. */
#ifndef OSPREY_CHAT_PROMPT_H
#define OSPREY_CHAT_PROMPT_H

#include <stddef.h>

#include "server/openai_parse.h"

struct chat_template;

/* Renders r's messages with tools, documents and chat_template_kwargs as the template's
 * variables; with continue_final_message the text ends right after the last message's
 * content. *out malloc'd and NUL-terminated, *len bytes. Returns 0, -EINVAL with err
 * (ERR_LEN bytes) filled (a template error, or a final message the template does not write
 * verbatim), or -ENOMEM. */
int chat_prompt_render(const struct chat_template *t, const struct oai_request *r, char **out,
                       size_t *len, char *err);

#endif
