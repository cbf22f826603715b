/* openai_harmony.c — gpt-oss on /v1/chat/completions (and /v1/responses, served as chat):
 * its harmony output read by server/harmony.c into the choice's reasoning, content and
 * tool calls. Calls are read only when the request has tools (tool_choice not "none"); a
 * call the model writes anyway is then content, as written. */
#include "server/openai_render.h"

#include <errno.h>

#include "engine/base/finish_reason.h"

bool openai_harmony_active(const struct oai_request *r)
{
    return r->kind == OAI_CHAT && r->tool_parser == TOOL_PARSER_OPENAI;
}

void openai_harmony_init(const struct oai_request *r, struct harmony_stream *hs)
{
    harmony_stream_init(hs, r->tool_choice != OAI_TOOLS_NONE && r->tools, openai_tools_max_calls(r));
}

int openai_harmony_apply(const struct oai_request *r, struct oai_choice *oc, struct harmony_stream *hs)
{
    struct harmony_delta d;

    openai_harmony_init(r, hs);
    if (harmony_stream_feed(hs, oc->text, oc->text_len, true, &d))
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
