/* chat_template.h — renders a Hugging Face chat template (the Jinja in tokenizer_config.json)
 * into the prompt text, byte for byte as transformers' apply_chat_template does. The server
 * calls it on the HTTP side before tokenizing; the engine thread never sees a template. */
#ifndef OSPREY_CHAT_TEMPLATE_H
#define OSPREY_CHAT_TEMPLATE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

struct chat_template;

/* Parses the template source; a syntax error is reported here (line/column, what was
 * expected). Then renders a sample conversation (system, user, assistant, user, with and
 * without add_generation_prompt) so that a template osprey cannot render fails at load
 * time, not at request time. A template that rejects the sample through its own
 * raise_exception() loads (Gemma refuses system messages, for one). bos_token and
 * eos_token may be NULL: the template then sees them undefined, as transformers leaves a
 * special token the tokenizer lacks. Returns 0, -EINVAL with err (ERR_LEN bytes) filled,
 * or -ENOMEM. */
int chat_template_create(struct chat_template **out, const char *source, const char *bos_token,
                         const char *eos_token, char *err);
void chat_template_destroy(struct chat_template *t);   /* NULL-safe */

/* messages: a cJSON array of OpenAI-style message objects (role, content as a string or a
 * list of {type:"text",text}, optional name, tool_calls, reasoning_content …), passed to the
 * template as `messages`. extra: a cJSON object of further variables (tools, documents,
 * enable_thinking, date_string, …) or NULL; `tools` and `documents` are None when absent,
 * as transformers passes them. Output malloc'd and NUL-terminated, *len without the NUL.
 * Read-only on t: concurrent calls from many threads on one template are safe.
 * Returns 0, or -EINVAL with err filled: a template error ("line 12: …"), a limit, or the
 * template's own raise_exception(msg), whose msg is err verbatim. */
int chat_template_render(const struct chat_template *t, const cJSON *messages, const cJSON *extra,
                         bool add_generation_prompt, char **out, size_t *len, char *err);

#endif
