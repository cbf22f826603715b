/* fuzz_tool_parser.c — model outputs through the tool-call parsers (server/tool_parser.c)
 * and the streaming hold-back (server/openai_tools.c). The first byte picks the parser
 * (low 2 bits) and the stream's piece size (the rest); the other bytes are the output.
 * Checked beyond "no crash": the content is a prefix of the output; every call has a
 * non-empty name and arguments that parse back as a JSON object; parallel_tool_calls false
 * keeps at most one call; and the output fed to a stream in pieces sends exactly the
 * content the whole parse finds, and never a byte past it. */
#include "tests/fuzz/fuzz.h"

#include <cjson/cJSON.h>

#include "server/openai_parse.h"
#include "server/openai_render.h"
#include "server/tool_parser.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum tool_parser_kind kinds[] = { TOOL_PARSER_HERMES, TOOL_PARSER_LLAMA3_JSON,
                                                   TOOL_PARSER_MISTRAL, TOOL_PARSER_NONE };
    struct oai_request r = { .kind = OAI_CHAT, .tool_choice = OAI_TOOLS_AUTO, .parallel_tool_calls = true };
    struct tool_parse whole, streamed, one;
    struct tool_stream ts;
    const char *text, *piece;
    size_t len, n, sent = 0, step;
    char *sent_text;

    if (size < 1)
        return 0;
    r.tool_parser = kinds[data[0] & 3];
    step = 1 + (data[0] >> 2);
    text = (const char *)data + 1;
    len = size - 1;

    if (tool_parser_parse(r.tool_parser, text, len, 0, &whole))
        abort();
    FUZZ_CHECK(whole.content_len <= len, "content %zu of %zu", whole.content_len, len);
    FUZZ_CHECK(whole.num_calls == 0 || r.tool_parser != TOOL_PARSER_NONE, "calls without a parser");
    for (int i = 0; i < whole.num_calls; i++) {
        cJSON *args = cJSON_Parse(whole.calls[i].arguments);

        FUZZ_CHECK(whole.calls[i].name[0] && whole.calls[i].id[0], "call %d", i);
        FUZZ_CHECK(cJSON_IsObject(args), "call %d arguments %s", i, whole.calls[i].arguments);
        cJSON_Delete(args);
    }
    if (tool_parser_parse(r.tool_parser, text, len, 1, &one))
        abort();
    FUZZ_CHECK(one.num_calls <= 1 && one.num_calls == (whole.num_calls > 0), "max_calls 1: %d", one.num_calls);
    tool_parse_fini(&one);

    /* the stream: pieces of step bytes, then the end */
    if (!(sent_text = malloc(len + 1)))
        abort();
    tool_stream_init(&ts);
    for (size_t at = 0; at < len; at += step) {
        if (tool_stream_feed(&ts, r.tool_parser, text + at, MIN(step, len - at), &piece, &n))
            abort();
        memcpy(sent_text + sent, piece, n);
        sent += n;
        FUZZ_CHECK(sent <= whole.content_len || !whole.num_calls, "sent %zu past content %zu", sent,
                   whole.content_len);
    }
    if (tool_stream_finish(&ts, &r, &streamed, &piece, &n))
        abort();
    memcpy(sent_text + sent, piece, n);
    sent += n;
    FUZZ_CHECK(streamed.num_calls == whole.num_calls, "calls %d vs %d", streamed.num_calls, whole.num_calls);
    FUZZ_CHECK(sent == (whole.num_calls ? whole.content_len : len) && !memcmp(sent_text, text, sent),
               "streamed %zu bytes of content, the whole parse %zu", sent, whole.content_len);
    tool_stream_fini(&ts);
    tool_parse_fini(&streamed);
    tool_parse_fini(&whole);
    free(sent_text);
    return 0;
}
