/* openai_harmony.c — gpt-oss on /v1/chat/completions (and /v1/responses, served as chat):
 * its harmony output read by server/harmony.c into the choice's reasoning, content and
 * tool calls. Calls are read only when the request has tools (tool_choice not "none"); a
 * call the model writes anyway is then content, as written. The reader is given the token
 * ids, so that only gpt-oss's special tokens are structure (a marker spelled with ordinary
 * tokens is text) and the analysis channel's tokens are counted for usage. */
#include "server/openai_render.h"

#include <errno.h>

#include "engine/base/finish_reason.h"
#include "engine/tokenizer/tokenizer.h"

bool openai_harmony_active(const struct oai_request *r)
{
    return r->kind == OAI_CHAT && r->tool_parser == TOOL_PARSER_OPENAI;
}

void openai_harmony_init(const struct oai_request *r, const struct tokenizer *tok, struct harmony_stream *hs)
{
    harmony_stream_init(hs, r->tool_choice != OAI_TOOLS_NONE && r->tools, openai_tools_max_calls(r));
    if (tok) {
        int32_t ids[HARMONY_NUM_MARKERS];

        /* the markers' own tokens (gpt-oss's special tokens): only they are structure */
        for (int m = 0; m < HARMONY_NUM_MARKERS; m++)
            ids[m] = tokenizer_token_to_id(tok, harmony_markers[m]);
        harmony_stream_use_ids(hs, ids);
    }
}

int openai_harmony_feed(struct harmony_stream *hs, const char *text, size_t len, const int32_t *ids,
                        const size_t *offsets, int num_tokens, bool finished, struct harmony_delta *d)
{
    if (harmony_stream_tokens(hs, ids, offsets, num_tokens))
        return -ENOMEM;
    return harmony_stream_feed(hs, text, len, finished, d);
}

int openai_harmony_apply(const struct oai_request *r, const struct tokenizer *tok, struct oai_choice *oc,
                         struct harmony_stream *hs)
{
    struct harmony_delta d;

    openai_harmony_init(r, tok, hs);
    if (openai_harmony_feed(hs, oc->text, oc->text_len, oc->ids, oc->offsets, oc->num_tokens, true, &d))
        return -ENOMEM;
    oc->text = d.content;
    oc->text_len = d.content_len;
    oc->reasoning = d.reasoning;
    oc->reasoning_len = d.reasoning_len;
    oc->tool_calls = d.calls;
    oc->num_tool_calls = d.num_calls;
    if (d.num_calls)
        oc->finish_reason = finish_reason_name(FINISH_TOOL_CALLS);
    return 0;
}
