/* api.h — the daemon's routes and the state they share: the engine, the tokenizer, the chat
 * template, the metrics and the request limits. server/api.c holds the route table, the
 * small endpoints (/v1/models, /health, /metrics, /tokenize, /detokenize) and prompt
 * preparation; server/openai.c the generation endpoints (/v1/completions and
 * /v1/chat/completions). */
#ifndef OSPREY_API_H
#define OSPREY_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/http.h"
#include "server/openai_parse.h"   /* struct oai_config, oai_request, oai_error */

#define API_MAX_SERVED_NAMES 16
#define OSPREY_VERSION "0.1.0"   /* what GET /version answers */

struct engine;
struct tokenizer;
struct chat_template;
struct metrics;

struct api {
    struct engine *engine;             /* borrowed */
    const struct tokenizer *tok;       /* borrowed */
    const struct chat_template *tpl;   /* borrowed; NULL: the model has none (chat is 400) */
    struct metrics *metrics;           /* borrowed */
    struct oai_config cfg;             /* limits; cfg.served_model borrowed */
    const char *model_dir;             /* borrowed, shown as the model's root */
    int64_t started;                   /* unix seconds, the model's "created" */
    size_t stream_buffer_bytes;        /* output a stream may hold for a slow client */
    size_t max_response_bytes;         /* a non-streamed answer's body; 0: no bound */
    bool log_prompts;                  /* prompts and outputs at DEBUG */
    /* --served-model-name "a,b": every name a request may give (cfg.served_model is the
     * first); the names point into served_buf (owned, api_served_names_fini frees it) */
    char *served_buf;
    const char *served_names[API_MAX_SERVED_NAMES];
    int num_served_names;
    struct grammar_cache *grammars;    /* borrowed; compiled grammars by source; NULL: grammar
                                          requests are refused */
};

/* Splits list ("name" or "a,b,c", blanks around names dropped) into a's served names and
 * points a->cfg.served_model and a->cfg.served_names at them. Returns 0, -EINVAL (an empty
 * name, or more than API_MAX_SERVED_NAMES) with err filled, or -ENOMEM. */
int api_served_names(struct api *a, const char *list, char *err);
void api_served_names_fini(struct api *a);

/* The route table (static, for http_options.routes). */
const struct http_route *api_routes(int *num_routes);

/* Renders a chat request's messages through the template into prompts[0], then tokenizes
 * every text prompt (add_special_tokens as the request says) into its ids, all in the
 * request's arena. Returns 0, or a negative errno with e filled (400 for a template error
 * or a chat request on a model without template, 500 otherwise). HTTP threads. */
int api_prepare_prompts(const struct api *a, struct oai_request *req, struct oai_error *e);

#endif
