/* test_openai_render.c — responses, stream chunks, usage chunks and error objects, byte for
 * byte against JSON written by hand from OpenAI's API reference (field order included), with
 * a four-token vocabulary whose pieces are known. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/openai_render.h"

static const char *const pieces[] = { "<s>", "Hello", " world", "!", "\xc3\xa9", "a\"b\n" };

static char *piece(void *ctx, int32_t id, size_t *len)
{
    (void)ctx;
    *len = strlen(pieces[id]);
    return strdup(pieces[id]);
}

static const struct oai_vocab vocab = { piece, NULL };

/* Pieces from a table in ctx. */
static char *byte_piece(void *ctx, int32_t id, size_t *len)
{
    const char *const *t = ctx;

    *len = strlen(t[id]);
    return strdup(t[id]);
}

static const struct oai_head compl_head = { OAI_COMPLETION, "cmpl-1", 1700000000, "tiny", NULL };
static const struct oai_head chat_head = { OAI_CHAT, "chatcmpl-1", 1700000000, "tiny", NULL };
static const struct oai_usage usage = { 3, 2, 1, 0 };

#define USAGE "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5," \
              "\"prompt_tokens_details\":{\"cached_tokens\":1}," \
              "\"completion_tokens_details\":{\"reasoning_tokens\":0}}"

static void expect(char *got, const size_t *len, const char *want)
{
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, want);
    ck_assert_uint_eq(*len, strlen(want));
    free(got);
}

/* A whole response without a size bound; it must render. */
static char *response(const struct oai_head *h, const struct oai_choice *c, int n, const struct oai_usage *u,
                      bool logprobs, int top_n, size_t *len)
{
    char *out = (char *)1;

    ck_assert_int_eq(openai_render_response(h, c, n, u, logprobs, top_n, &vocab, 0, &out, len), 0);
    return out;
}

/* Two tokens (Hello, " world"), each with two top logprobs. */
static const int32_t ids[] = { 1, 2 };
static const size_t offsets[] = { 0, 5 };
static struct sample_result samples[2];

static void setup(void)
{
    memset(samples, 0, sizeof samples);
    samples[0] = (struct sample_result){ .token = 1, .logprob = -0.5f, .num_top = 2,
                                         .top_ids = { 1, 2 }, .top_logprobs = { -0.5f, -1.25f } };
    samples[1] = (struct sample_result){ .token = 2, .logprob = -2.0f, .num_top = 2,
                                         .top_ids = { 3, 1 }, .top_logprobs = { -0.25f, -1.5f } };
}

START_TEST(completion_response_is_openais_shape)
{
    struct oai_choice c = { .index = 0, .text = "Hello world", .text_len = 11, .ids = ids,
                            .num_tokens = 2, .finish_reason = "length" };
    size_t len;
    char *s = response(&compl_head, &c, 1, &usage, false, 0, &len);

    expect(s, &len, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"tiny\","
                   "\"choices\":[{\"text\":\"Hello world\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}],"
                   USAGE "}");
}
END_TEST

START_TEST(system_fingerprint_follows_the_model_when_set)
{
    struct oai_head h = compl_head;
    struct oai_choice c = { .index = 0, .text = "", .finish_reason = "stop" };
    size_t len;

    h.system_fingerprint = "fp_1";
    expect(response(&h, &c, 1, &usage, false, 0, &len), &len,
           "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"tiny\","
           "\"system_fingerprint\":\"fp_1\",\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,"
           "\"finish_reason\":\"stop\"}]," USAGE "}");
}
END_TEST

START_TEST(completion_logprobs_list_tokens_offsets_and_top_dicts)
{
    struct oai_choice c = { .index = 1, .text = "Hello world", .text_len = 11, .ids = ids,
                            .samples = samples, .offsets = offsets, .num_tokens = 2, .offset_end = 11,
                            .finish_reason = "length" };
    size_t len;
    char *s = response(&compl_head, &c, 1, &usage, true, 2, &len);

    /* The second token's dict: its top two, then the chosen " world" (not among them). */
    expect(s, &len, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"tiny\","
                   "\"choices\":[{\"text\":\"Hello world\",\"index\":1,\"logprobs\":{"
                   "\"tokens\":[\"Hello\",\" world\"],\"token_logprobs\":[-0.5,-2],"
                   "\"top_logprobs\":[{\"Hello\":-0.5,\" world\":-1.25},{\"!\":-0.25,\"Hello\":-1.5,\" world\":-2}],"
                   "\"text_offset\":[0,5]},\"finish_reason\":\"length\"}]," USAGE "}");
}
END_TEST

START_TEST(completion_logprobs_zero_reports_the_chosen_token_only)
{
    struct oai_choice c = { .index = 0, .text = "Hello world", .text_len = 11, .ids = ids,
                            .samples = samples, .offsets = offsets, .num_tokens = 2, .offset_base = 7,
                            .offset_end = 11 };
    size_t len;
    char *s = openai_render_chunk(&compl_head, &c, true, 0, false, &vocab, &len);

    expect(s, &len, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"tiny\","
                   "\"choices\":[{\"text\":\"Hello world\",\"index\":0,\"logprobs\":{"
                   "\"tokens\":[\"Hello\",\" world\"],\"token_logprobs\":[-0.5,-2],"
                   "\"top_logprobs\":[{\"Hello\":-0.5},{\" world\":-2}],"
                   "\"text_offset\":[7,12]},\"finish_reason\":null}]}");
}
END_TEST

/* text_offset: where each token's text starts in the choice's text, the echoed prompt
 * first; never past the end of the text the answer (or the stream so far) holds. */
START_TEST(text_offsets_follow_the_echoed_prompt_and_stay_within_the_text)
{
    static const size_t cut[] = { 0, 9 };   /* the second token began in text a stop string cut */
    struct oai_choice c = { .index = 0, .prefix = "Say:", .prefix_len = 4, .text = "Hello", .text_len = 5,
                            .ids = ids, .samples = samples, .offsets = cut, .num_tokens = 2,
                            .offset_base = 4, .offset_end = 5, .finish_reason = "stop" };
    size_t len;
    char *s = response(&compl_head, &c, 1, &usage, true, 0, &len);

    ck_assert_msg(strstr(s, "\"text\":\"Say:Hello\"") && strstr(s, "\"text_offset\":[4,9]}"), "%s", s);
    free(s);
}
END_TEST

/* Two byte pieces render as the same key (U+FFFD): one entry, as a JSON reader sees them. */
START_TEST(completion_top_dicts_never_repeat_a_key)
{
    static const char *const bytes[] = { "\xe2", "\x82", "\xe2" };
    struct sample_result s = { .token = 0, .logprob = -0.5f, .num_top = 2, .top_ids = { 1, 2 },
                               .top_logprobs = { -0.5f, -1.0f } };
    static const int32_t id[] = { 0 };
    static const size_t off[] = { 0 };
    struct oai_vocab bv = { NULL, (void *)bytes };
    struct oai_choice c = { .index = 0, .text = "", .ids = id, .samples = &s, .offsets = off, .num_tokens = 1 };
    char *out = NULL;
    size_t len;

    bv.piece = byte_piece;
    ck_assert_int_eq(openai_render_response(&compl_head, &c, 1, &usage, true, 2, &bv, 0, &out, &len), 0);
    ck_assert_msg(strstr(out, "\"top_logprobs\":[{\"\xef\xbf\xbd\":-0.5}]"), "%s", out);
    ck_assert_msg(strstr(out, "\"tokens\":[\"\xef\xbf\xbd\"]"), "%s", out);
    free(out);
}
END_TEST

/* A response stops at max_bytes: -E2BIG and nothing, rather than a body past the bound. */
START_TEST(a_response_past_max_bytes_is_refused_whole)
{
    struct oai_choice c = { .index = 1, .text = "Hello world", .text_len = 11, .ids = ids,
                            .samples = samples, .offsets = offsets, .num_tokens = 2, .offset_end = 11,
                            .finish_reason = "length" };
    char *out = NULL;
    size_t len = 0, full;

    ck_assert_int_eq(openai_render_response(&compl_head, &c, 1, &usage, true, 2, &vocab, 0, &out, &full), 0);
    free(out);
    ck_assert_int_eq(openai_render_response(&compl_head, &c, 1, &usage, true, 2, &vocab, full, &out, &len), 0);
    ck_assert_uint_eq(len, full);                 /* exactly at the bound: fine */
    free(out);
    out = (char *)1;
    ck_assert_int_eq(openai_render_response(&compl_head, &c, 1, &usage, true, 2, &vocab, full - 1, &out, &len),
                     -E2BIG);
    ck_assert_ptr_null(out);
    for (size_t max = 1; max < full; max += 7) {   /* cut anywhere: never a partial body */
        out = (char *)1;
        ck_assert_int_eq(openai_render_response(&compl_head, &c, 1, &usage, true, 2, &vocab, max, &out, &len),
                         -E2BIG);
        ck_assert_ptr_null(out);
    }
}
END_TEST

START_TEST(echo_puts_the_prompt_before_the_text)
{
    struct oai_choice c = { .index = 0, .prefix = "Say:", .prefix_len = 4, .text = " hi",
                            .text_len = 3, .finish_reason = "stop" };
    size_t len;
    char *s = response(&compl_head, &c, 1, &usage, false, 0, &len);

    ck_assert_ptr_nonnull(strstr(s, "\"text\":\"Say: hi\""));
    free(s);
}
END_TEST

START_TEST(several_choices_keep_their_indices)
{
    struct oai_choice c[2] = {
        { .index = 0, .text = "a", .text_len = 1, .finish_reason = "stop" },
        { .index = 1, .text = "b", .text_len = 1, .finish_reason = "length" },
    };
    size_t len;

    expect(response(&compl_head, c, 2, &usage, false, 0, &len), &len,
           "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"tiny\","
           "\"choices\":[{\"text\":\"a\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"},"
           "{\"text\":\"b\",\"index\":1,\"logprobs\":null,\"finish_reason\":\"length\"}]," USAGE "}");
}
END_TEST

START_TEST(chat_response_is_openais_shape)
{
    struct oai_choice c = { .index = 0, .text = "a\"b\n\xc3\xa9", .text_len = 6, .finish_reason = "stop" };
    size_t len;

    expect(response(&chat_head, &c, 1, &usage, false, 0, &len), &len,
           "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"tiny\","
           "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"a\\\"b\\n\xc3\xa9\"},"
           "\"logprobs\":null,\"finish_reason\":\"stop\"}]," USAGE "}");
}
END_TEST

START_TEST(chat_logprobs_carry_bytes_and_top_logprobs)
{
    static const int32_t eid[] = { 4 };
    struct sample_result s = { .token = 4, .logprob = -0.75f, .num_top = 2, .top_ids = { 4, 3 },
                               .top_logprobs = { -0.75f, -1.0f } };
    struct oai_choice c = { .index = 0, .text = "\xc3\xa9", .text_len = 2, .ids = eid, .samples = &s,
                            .num_tokens = 1, .finish_reason = "length" };
    size_t len;

    expect(response(&chat_head, &c, 1, &usage, true, 1, &len), &len,
           "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"tiny\","
           "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"\xc3\xa9\"},"
           "\"logprobs\":{\"content\":[{\"token\":\"\xc3\xa9\",\"logprob\":-0.75,\"bytes\":[195,169],"
           "\"top_logprobs\":[{\"token\":\"\xc3\xa9\",\"logprob\":-0.75,\"bytes\":[195,169]}]}]},"
           "\"finish_reason\":\"length\"}]," USAGE "}");
}
END_TEST

START_TEST(chat_top_logprobs_zero_is_an_empty_list)
{
    struct oai_choice c = { .index = 0, .text = "Hello", .text_len = 5, .ids = ids, .samples = samples,
                            .num_tokens = 1 };
    size_t len;

    expect(openai_render_chunk(&chat_head, &c, true, 0, false, &vocab, &len), &len,
           "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"tiny\","
           "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":{\"content\":["
           "{\"token\":\"Hello\",\"logprob\":-0.5,\"bytes\":[72,101,108,108,111],\"top_logprobs\":[]}]},"
           "\"finish_reason\":null}]}");
}
END_TEST

START_TEST(chat_stream_opens_with_the_role)
{
    struct oai_choice c = { .index = 2, .role = true };
    size_t len;

    expect(openai_render_chunk(&chat_head, &c, false, 0, false, &vocab, &len), &len,
           "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"tiny\","
           "\"choices\":[{\"index\":2,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
           "\"logprobs\":null,\"finish_reason\":null}]}");
}
END_TEST

START_TEST(chat_stream_ends_with_an_empty_delta_and_the_reason)
{
    struct oai_choice c = { .index = 0, .finish_reason = "stop" };
    size_t len;

    expect(openai_render_chunk(&chat_head, &c, false, 0, true, &vocab, &len), &len,
           "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"tiny\","
           "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
           "\"usage\":null}");
}
END_TEST

START_TEST(completion_chunk_is_a_text_completion)
{
    struct oai_choice c = { .index = 1, .text = " world", .text_len = 6 };
    size_t len;

    expect(openai_render_chunk(&compl_head, &c, false, 0, false, &vocab, &len), &len,
           "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"tiny\","
           "\"choices\":[{\"text\":\" world\",\"index\":1,\"logprobs\":null,\"finish_reason\":null}]}");
}
END_TEST

START_TEST(usage_chunk_has_empty_choices)
{
    size_t len;

    expect(openai_render_usage_chunk(&chat_head, &usage, &len), &len,
           "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"tiny\","
           "\"choices\":[]," USAGE "}");
}
END_TEST

START_TEST(error_object_has_message_type_param_code)
{
    struct oai_error e = { .status = 400, .type = "invalid_request_error", .code = "invalid_value",
                           .param = "n", .message = "Invalid 'n': \"0\"" };
    size_t len;

    expect(openai_render_error(&e, &len), &len,
           "{\"error\":{\"message\":\"Invalid 'n': \\\"0\\\"\",\"type\":\"invalid_request_error\","
           "\"param\":\"n\",\"code\":\"invalid_value\"}}");
    e.param[0] = '\0';
    e.code = NULL;
    expect(openai_render_error(&e, &len), &len,
           "{\"error\":{\"message\":\"Invalid 'n': \\\"0\\\"\",\"type\":\"invalid_request_error\","
           "\"param\":null,\"code\":null}}");
}
END_TEST

START_TEST(rendered_json_parses_back_to_the_same_text)
{
    /* Control characters and non-ASCII survive a round trip through a JSON parser. */
    static const char text[] = "tab\there \x01 \xe2\x82\xac \\ end";
    struct oai_choice c = { .index = 0, .text = text, .text_len = sizeof text - 1 };
    size_t len;
    char *s = openai_render_chunk(&compl_head, &c, false, 0, false, &vocab, &len);
    cJSON *o = cJSON_Parse(s);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(o, "choices"), 0), "text");

    ck_assert(cJSON_IsString(t));
    ck_assert_str_eq(t->valuestring, text);
    cJSON_Delete(o);
    free(s);
}
END_TEST

START_TEST(nul_bytes_and_controls_survive_as_escapes)
{
    struct oai_choice c = { .index = 0, .text = "a\0b\x1f\"\\\t", .text_len = 7 };
    size_t len;
    char *s = openai_render_chunk(&compl_head, &c, false, 0, false, &vocab, &len);

    ck_assert_ptr_nonnull(strstr(s, "\"text\":\"a\\u0000b\\u001f\\\"\\\\\\t\""));
    free(s);
}
END_TEST

/* JSON text is UTF-8 (RFC 8259 §8.1): each byte that does not start a well-formed
 * character becomes U+FFFD (EF BF BD); whole characters pass as they are. */
START_TEST(bytes_that_are_not_utf8_become_replacement_characters)
{
    struct oai_choice c = { .index = 0, .text = "a\xff\xc3\xa9\xc3(\xed\xa0\x80", .text_len = 9 };
    size_t len;
    char *s = openai_render_chunk(&compl_head, &c, false, 0, false, &vocab, &len);

    ck_assert_ptr_nonnull(strstr(s, "\"text\":\"a\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""));
    free(s);
}
END_TEST

/* An error message cut inside a character (a path, a name) still renders as UTF-8. */
START_TEST(an_error_message_cut_inside_a_character_renders_as_utf8)
{
    struct oai_error e;
    size_t len;
    char *s;

    openai_error(&e, 404, "not_found", NULL, "Not found: /caf\xc3");
    s = openai_render_error(&e, &len);
    ck_assert_ptr_nonnull(strstr(s, "\"message\":\"Not found: /caf\xef\xbf\xbd\""));
    free(s);
}
END_TEST

Suite *openai_render_suite(void)
{
    Suite *s = suite_create("openai_render");
    TCase *tc = tcase_create("render");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, completion_response_is_openais_shape);
    tcase_add_test(tc, system_fingerprint_follows_the_model_when_set);
    tcase_add_test(tc, completion_logprobs_list_tokens_offsets_and_top_dicts);
    tcase_add_test(tc, completion_logprobs_zero_reports_the_chosen_token_only);
    tcase_add_test(tc, text_offsets_follow_the_echoed_prompt_and_stay_within_the_text);
    tcase_add_test(tc, completion_top_dicts_never_repeat_a_key);
    tcase_add_test(tc, a_response_past_max_bytes_is_refused_whole);
    tcase_add_test(tc, echo_puts_the_prompt_before_the_text);
    tcase_add_test(tc, several_choices_keep_their_indices);
    tcase_add_test(tc, chat_response_is_openais_shape);
    tcase_add_test(tc, chat_logprobs_carry_bytes_and_top_logprobs);
    tcase_add_test(tc, chat_top_logprobs_zero_is_an_empty_list);
    tcase_add_test(tc, chat_stream_opens_with_the_role);
    tcase_add_test(tc, chat_stream_ends_with_an_empty_delta_and_the_reason);
    tcase_add_test(tc, completion_chunk_is_a_text_completion);
    tcase_add_test(tc, usage_chunk_has_empty_choices);
    tcase_add_test(tc, error_object_has_message_type_param_code);
    tcase_add_test(tc, rendered_json_parses_back_to_the_same_text);
    tcase_add_test(tc, nul_bytes_and_controls_survive_as_escapes);
    tcase_add_test(tc, bytes_that_are_not_utf8_become_replacement_characters);
    tcase_add_test(tc, an_error_message_cut_inside_a_character_renders_as_utf8);
    suite_add_tcase(s, tc);
    return s;
}
