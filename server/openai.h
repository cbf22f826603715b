/* openai.h — the generation endpoints, /v1/completions and /v1/chat/completions
 * (openai.c): a parsed request (openai_parse.h) becomes one engine request per choice, and
 * what the engine delivers becomes a response or a stream (openai_render.h). */
#ifndef OSPREY_OPENAI_H
#define OSPREY_OPENAI_H

struct http_request;

/* Route handlers (struct http_route); app is the struct api. */
void openai_completions(struct http_request *r, void *app);
void openai_chat_completions(struct http_request *r, void *app);

#endif
