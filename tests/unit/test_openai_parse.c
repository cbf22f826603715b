/* test_openai_parse.c — request bodies → struct oai_request: every parameter's happy path,
 * every type and range error with its status, param and message, the limits from the
 * configuration, and the context-length check. Expectations are written from OpenAI's API
 * reference, not from osprey's output. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "server/openai_parse.h"

static const struct oai_config config = {
    .served_model = "tiny", .max_model_len = 128, .vocab_size = 512, .max_prompt_tokens = 0,
    .max_tokens_limit = 64, .max_n = 4, .max_stop_strings = 4, .max_stop_length = 16,
    .max_logprobs = 20, .default_temperature = -1, .default_top_p = -1, .default_top_k = 0,
};

typedef int (*parse_fn)(struct oai_request *, const char *, size_t, const struct oai_config *,
                        struct oai_error *);

static struct oai_request req;
static struct oai_error err;

static void setup(void)
{
    openai_request_init(&req);
    memset(&err, 0, sizeof err);
}

static void teardown(void)
{
    openai_request_fini(&req);
}

static void ok(parse_fn fn, const char *body)
{
    openai_request_fini(&req);
    openai_request_init(&req);
    ck_assert_msg(fn(&req, body, strlen(body), &config, &err) == 0, "%s: %s", body, err.message);
}

/* Parses a body that must fail with status and param; returns the message. */
static const char *fails(parse_fn fn, const char *body, int status, const char *param)
{
    openai_request_fini(&req);
    openai_request_init(&req);
    memset(&err, 0, sizeof err);
    ck_assert_msg(fn(&req, body, strlen(body), &config, &err) < 0, "accepted: %s", body);
    ck_assert_msg(err.status == status, "%s: status %d, want %d (%s)", body, err.status, status, err.message);
    ck_assert_str_eq(err.param, param);
    ck_assert_str_eq(err.type, status >= 500 ? "server_error" : "invalid_request_error");
    return err.message;
}

#define COMPL openai_parse_completion
#define CHAT  openai_parse_chat

START_TEST(completion_defaults_are_openais)
{
    ok(COMPL, "{\"prompt\": \"hi\"}");
    ck_assert_int_eq(req.kind, OAI_COMPLETION);
    ck_assert_int_eq(req.num_prompts, 1);
    ck_assert_str_eq(req.prompts[0].text, "hi");
    ck_assert_int_eq(req.prompts[0].text_len, 2);
    ck_assert_ptr_null(req.prompts[0].ids);
    ck_assert_int_eq(req.n, 1);
    ck_assert(!req.max_tokens_set && !req.stream && !req.include_usage && !req.echo && !req.logprobs);
    ck_assert(req.add_special_tokens);
    ck_assert_float_eq(req.params.temperature, 1.0f);
    ck_assert_float_eq(req.params.top_p, 1.0f);
    ck_assert_int_eq(req.params.top_k, 0);
    ck_assert_int_eq(req.params.logprobs, -1);
    ck_assert(req.params.skip_special_tokens && !req.params.has_seed && !req.params.ignore_eos);
    ck_assert_ptr_null(req.model);
}
END_TEST

START_TEST(generation_config_defaults_apply_when_the_request_is_silent)
{
    struct oai_config c = config;

    c.default_temperature = 0.6f;
    c.default_top_p = 0.9f;
    c.default_top_k = 40;
    openai_request_fini(&req);
    openai_request_init(&req);
    ck_assert_int_eq(openai_parse_completion(&req, "{\"prompt\":\"x\"}", 14, &c, &err), 0);
    ck_assert_float_eq(req.params.temperature, 0.6f);
    ck_assert_float_eq(req.params.top_p, 0.9f);
    ck_assert_int_eq(req.params.top_k, 40);
    openai_request_fini(&req);
    openai_request_init(&req);
    ck_assert_int_eq(openai_parse_completion(&req, "{\"prompt\":\"x\",\"temperature\":0}", 30, &c, &err), 0);
    ck_assert_float_eq(req.params.temperature, 0.0f);
}
END_TEST

START_TEST(every_sampling_parameter_reaches_gen_params)
{
    ok(COMPL, "{\"model\":\"tiny\",\"prompt\":\"a\",\"max_tokens\":7,\"temperature\":0.5,\"top_p\":0.25,"
              "\"top_k\":3,\"min_p\":0.125,\"n\":2,\"stop\":[\"x\",\"yz\"],\"seed\":42,"
              "\"presence_penalty\":-1.5,\"frequency_penalty\":0.75,\"repetition_penalty\":1.25,"
              "\"logprobs\":2,\"echo\":false,\"ignore_eos\":true,\"min_tokens\":3,\"user\":\"u1\","
              "\"stop_token_ids\":[5,511],\"skip_special_tokens\":false,\"stream\":true,"
              "\"stream_options\":{\"include_usage\":true}}");
    ck_assert_str_eq(req.model, "tiny");
    ck_assert(req.max_tokens_set);
    ck_assert_int_eq(req.params.max_tokens, 7);
    ck_assert_float_eq(req.params.temperature, 0.5f);
    ck_assert_float_eq(req.params.top_p, 0.25f);
    ck_assert_int_eq(req.params.top_k, 3);
    ck_assert_float_eq(req.params.min_p, 0.125f);
    ck_assert_int_eq(req.n, 2);
    ck_assert_int_eq(req.params.num_stop, 2);
    ck_assert_str_eq(req.params.stop[0], "x");
    ck_assert_str_eq(req.params.stop[1], "yz");
    ck_assert(req.params.has_seed);
    ck_assert_uint_eq(req.params.seed, 42);
    ck_assert_float_eq(req.params.presence_penalty, -1.5f);
    ck_assert_float_eq(req.params.frequency_penalty, 0.75f);
    ck_assert_float_eq(req.params.repetition_penalty, 1.25f);
    ck_assert(req.logprobs);
    ck_assert_int_eq(req.top_logprobs, 2);
    ck_assert_int_eq(req.params.logprobs, 2);
    ck_assert(req.params.ignore_eos && !req.params.skip_special_tokens);
    ck_assert_int_eq(req.params.min_tokens, 3);
    ck_assert_str_eq(req.user, "u1");
    ck_assert_int_eq(req.params.num_stop_token_ids, 2);
    ck_assert_int_eq(req.params.stop_token_ids[0], 5);
    ck_assert_int_eq(req.params.stop_token_ids[1], 511);
    ck_assert(req.stream && req.include_usage);
}
END_TEST

START_TEST(prompt_takes_all_four_openai_forms)
{
    ok(COMPL, "{\"prompt\": [\"ab\", \"c\"]}");
    ck_assert_int_eq(req.num_prompts, 2);
    ck_assert_str_eq(req.prompts[1].text, "c");
    ok(COMPL, "{\"prompt\": [1, 2, 3]}");
    ck_assert_int_eq(req.num_prompts, 1);
    ck_assert_ptr_null(req.prompts[0].text);
    ck_assert_int_eq(req.prompts[0].num_ids, 3);
    ck_assert_int_eq(req.prompts[0].ids[2], 3);
    ok(COMPL, "{\"prompt\": [[1, 2], [3], [4.0, 5, 6]]}");
    ck_assert_int_eq(req.num_prompts, 3);
    ck_assert_int_eq(req.prompts[1].num_ids, 1);
    ck_assert_int_eq(req.prompts[2].num_ids, 3);
    ck_assert_int_eq(req.prompts[2].ids[0], 4);
}
END_TEST

START_TEST(bad_prompts_are_400_naming_prompt)
{
    fails(COMPL, "{}", 400, "prompt");
    fails(COMPL, "{\"prompt\": null}", 400, "prompt");
    fails(COMPL, "{\"prompt\": 5}", 400, "prompt");
    fails(COMPL, "{\"prompt\": []}", 400, "prompt");
    fails(COMPL, "{\"prompt\": [[1], []]}", 400, "prompt");
    fails(COMPL, "{\"prompt\": [\"a\", 1]}", 400, "prompt");
    fails(COMPL, "{\"prompt\": [[1], \"a\"]}", 400, "prompt");
    fails(COMPL, "{\"prompt\": [1, \"a\"]}", 400, "prompt");
    fails(COMPL, "{\"prompt\": [1, 2.5]}", 400, "prompt");
    fails(COMPL, "{\"prompt\": [true]}", 400, "prompt");
    ck_assert_ptr_nonnull(strstr(fails(COMPL, "{\"prompt\": [1, 512]}", 400, "prompt"), "[0, 512)"));
    fails(COMPL, "{\"prompt\": [[-1]]}", 400, "prompt");
}
END_TEST

START_TEST(malformed_json_is_400_without_param)
{
    const char *m = fails(COMPL, "{\"prompt\": \"a\"", 400, "");

    ck_assert_ptr_nonnull(strstr(m, "could not parse the JSON body"));
    ck_assert_str_eq(err.code, "invalid_json");
    fails(COMPL, "", 400, "");
    fails(COMPL, "{\"prompt\": \"a\"} x", 400, "");
    fails(COMPL, "[1, 2]", 400, "");
    fails(COMPL, "\"prompt\"", 400, "");
    fails(CHAT, "{\"messages\": [}", 400, "");
    ok(COMPL, " {\"prompt\": \"a\"} \r\n");
}
END_TEST

START_TEST(body_needs_no_terminating_nul)
{
    const char body[] = "{\"prompt\": \"abc\"}GARBAGE";

    openai_request_fini(&req);
    openai_request_init(&req);
    ck_assert_int_eq(openai_parse_completion(&req, body, 17, &config, &err), 0);
    ck_assert_str_eq(req.prompts[0].text, "abc");
}
END_TEST

/* What cJSON would let through changed: bytes that are not UTF-8 (RFC 3629's table of
 * well-formed sequences), NUL, repeated keys; and what it refuses without saying why. */
START_TEST(bodies_cjson_would_change_or_refuse_silently_are_400_saying_why)
{
    static const char *const not_utf8[] = {
        "{\"prompt\":\"a\xff b\"}",             /* a byte that never appears in UTF-8 */
        "{\"prompt\":\"a\xc3\"}",                /* a lead byte without its continuation */
        "{\"prompt\":\"\xc0\x80\"}",             /* an overlong NUL */
        "{\"prompt\":\"\xed\xa0\x80\"}",         /* a UTF-16 surrogate, encoded */
        "{\"prompt\":\"\xf4\x90\x80\x80\"}",     /* past U+10FFFF */
        "{\"prompt\":\"a\",\"stop\":[\"\x80\"]}",  /* a stray continuation, in a stop string */
    };
    char deep[2100];
    int n = 0;

    for (size_t i = 0; i < sizeof not_utf8 / sizeof *not_utf8; i++) {
        ck_assert_ptr_nonnull(strstr(fails(COMPL, not_utf8[i], 400, ""), "not valid UTF-8"));
        ck_assert_str_eq(err.code, "invalid_json");
    }
    ok(COMPL, "{\"prompt\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}");   /* é € 😀 */
    ck_assert_ptr_nonnull(strstr(fails(COMPL, "{\"prompt\":\"ab\\u0000cd\"}", 400, ""), "NUL"));
    ck_assert_ptr_nonnull(strstr(fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\\u0000\"}]}",
                                       400, ""), "NUL"));
    ok(COMPL, "{\"prompt\":\"a\\\\u0000\"}");        /* an escaped backslash, then text */
    ck_assert_str_eq(req.prompts[0].text, "a\\u0000");
    {
        const char raw[] = "{\"prompt\":\"a\0b\"}";

        openai_request_fini(&req);
        openai_request_init(&req);
        ck_assert_int_lt(openai_parse_completion(&req, raw, sizeof raw - 1, &config, &err), 0);
        ck_assert_ptr_nonnull(strstr(err.message, "NUL"));
    }
    ck_assert_ptr_nonnull(strstr(fails(COMPL, "{\"prompt\":\"a\",\"max_tokens\":2,\"max_tokens\":3}", 400, ""),
                                 "'max_tokens' twice"));
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"role\":\"system\"}]}", 400, "");
    fails(COMPL, "{\"prompt\":\"a\",\"stream\":true,\"stream_options\":{\"include_usage\":true,"
                 "\"include_usage\":false}}", 400, "");
    ok(COMPL, "{\"prompt\":\"a\",\"x\":{\"k\":1},\"y\":{\"k\":2}}");   /* the same key in two objects */
    n += snprintf(deep + n, sizeof deep - (size_t)n, "{\"prompt\":\"a\",\"x\":");
    for (int i = 0; i < 1000; i++)
        deep[n++] = '[';
    for (int i = 0; i < 1000; i++)
        deep[n++] = ']';
    snprintf(deep + n, sizeof deep - (size_t)n, "}");
    ck_assert_ptr_nonnull(strstr(fails(COMPL, deep, 400, ""), "nested deeper than 1000 levels"));
    ck_assert_str_eq(fails(COMPL, "{\"prompt\":\"a\",\"max_tokens\":1e999}", 400, "max_tokens"),
                     "Invalid 'max_tokens': the number is too large to represent.");
    ck_assert_str_eq(err.code, "invalid_value");
    fails(COMPL, "{\"prompt\":\"a\",\"temperature\":-1e999}", 400, "temperature");
    fails(COMPL, "{\"prompt\":\"a\",\"seed\":1e999}", 400, "seed");
    ck_assert_ptr_nonnull(strstr(fails(COMPL, "{\"prompt\":[1e999]}", 400, "prompt"), "too large"));
    fails(COMPL, "{\"prompt\":\"a\",\"temperature\":NaN}", 400, "");
    fails(COMPL, "{\"prompt\":\"a\",\"temperature\":Infinity}", 400, "");
    ck_assert_ptr_nonnull(strstr(fails(COMPL, " \r\n", 400, ""), "empty"));
}
END_TEST

START_TEST(wrong_types_name_the_param_like_openai)
{
    ck_assert_str_eq(fails(COMPL, "{\"prompt\":\"a\",\"max_tokens\":\"5\"}", 400, "max_tokens"),
                     "Invalid type for 'max_tokens': expected an integer, but got a string instead.");
    ck_assert_str_eq(err.code, "invalid_type");
    ck_assert_str_eq(fails(COMPL, "{\"prompt\":\"a\",\"max_tokens\":5.5}", 400, "max_tokens"),
                     "Invalid type for 'max_tokens': expected an integer, but got a number instead.");
    ck_assert_str_eq(fails(COMPL, "{\"prompt\":\"a\",\"temperature\":\"hot\"}", 400, "temperature"),
                     "Invalid type for 'temperature': expected a number, but got a string instead.");
    ck_assert_str_eq(fails(COMPL, "{\"prompt\":\"a\",\"stream\":1}", 400, "stream"),
                     "Invalid type for 'stream': expected a boolean, but got an integer instead.");
    fails(COMPL, "{\"prompt\":\"a\",\"echo\":\"yes\"}", 400, "echo");
    fails(COMPL, "{\"prompt\":\"a\",\"n\":[1]}", 400, "n");
    fails(COMPL, "{\"prompt\":\"a\",\"top_k\":1.5}", 400, "top_k");
    fails(COMPL, "{\"prompt\":\"a\",\"seed\":\"1\"}", 400, "seed");
    fails(COMPL, "{\"prompt\":\"a\",\"seed\":1.5}", 400, "seed");
    fails(COMPL, "{\"prompt\":\"a\",\"user\":7}", 400, "user");
    fails(COMPL, "{\"prompt\":\"a\",\"model\":7}", 400, "model");
    fails(COMPL, "{\"prompt\":\"a\",\"ignore_eos\":0}", 400, "ignore_eos");
    fails(COMPL, "{\"prompt\":\"a\",\"skip_special_tokens\":\"no\"}", 400, "skip_special_tokens");
    fails(COMPL, "{\"prompt\":\"a\",\"stop_token_ids\":3}", 400, "stop_token_ids");
    fails(COMPL, "{\"prompt\":\"a\",\"stop_token_ids\":[\"3\"]}", 400, "stop_token_ids");
    fails(COMPL, "{\"prompt\":\"a\",\"logprobs\":true}", 400, "logprobs");
    fails(COMPL, "{\"prompt\":\"a\",\"min_tokens\":\"1\"}", 400, "min_tokens");
    fails(COMPL, "{\"prompt\":\"a\",\"stream\":true,\"stream_options\":true}", 400, "stream_options");
    fails(COMPL, "{\"prompt\":\"a\",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", 400,
          "stream_options.include_usage");
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"logprobs\":1}", 400, "logprobs");
}
END_TEST

START_TEST(integral_numbers_count_as_integers)
{
    ok(COMPL, "{\"prompt\":\"a\",\"max_tokens\":5.0,\"n\":2.0}");
    ck_assert_int_eq(req.params.max_tokens, 5);
    ck_assert_int_eq(req.n, 2);
}
END_TEST

START_TEST(out_of_range_values_are_400)
{
    ck_assert_str_eq(fails(COMPL, "{\"prompt\":\"a\",\"temperature\":2.5}", 400, "temperature"),
                     "Invalid 'temperature': expected a value <= 2, but got 2.5 instead.");
    ck_assert_str_eq(err.code, "invalid_value");
    fails(COMPL, "{\"prompt\":\"a\",\"temperature\":-0.5}", 400, "temperature");
    fails(COMPL, "{\"prompt\":\"a\",\"top_p\":0}", 400, "top_p");
    fails(COMPL, "{\"prompt\":\"a\",\"top_p\":1.5}", 400, "top_p");
    fails(COMPL, "{\"prompt\":\"a\",\"min_p\":-0.5}", 400, "min_p");
    fails(COMPL, "{\"prompt\":\"a\",\"presence_penalty\":2.5}", 400, "presence_penalty");
    fails(COMPL, "{\"prompt\":\"a\",\"frequency_penalty\":-3}", 400, "frequency_penalty");
    fails(COMPL, "{\"prompt\":\"a\",\"repetition_penalty\":0}", 400, "repetition_penalty");
    fails(COMPL, "{\"prompt\":\"a\",\"top_k\":-2}", 400, "top_k");
    ck_assert_str_eq(fails(COMPL, "{\"prompt\":\"a\",\"max_tokens\":0}", 400, "max_tokens"),
                     "Invalid 'max_tokens': expected a value >= 1, but got 0 instead.");
    fails(COMPL, "{\"prompt\":\"a\",\"n\":0}", 400, "n");
    fails(COMPL, "{\"prompt\":\"a\",\"min_tokens\":-1}", 400, "min_tokens");
    fails(COMPL, "{\"prompt\":\"a\",\"logprobs\":-1}", 400, "logprobs");
    fails(COMPL, "{\"prompt\":\"a\",\"logprobs\":21}", 400, "logprobs");   /* --max-logprobs 20, as vLLM */
    fails(COMPL, "{\"prompt\":\"a\",\"max_tokens\":4,\"min_tokens\":5}", 400, "min_tokens");
    fails(COMPL, "{\"prompt\":\"a\",\"stop_token_ids\":[512]}", 400, "stop_token_ids");
    ok(COMPL, "{\"prompt\":\"a\",\"temperature\":2,\"top_p\":1,\"min_p\":1,\"top_k\":-1,"
              "\"presence_penalty\":-2,\"frequency_penalty\":2,\"logprobs\":20}");
    ck_assert_int_eq(req.params.top_k, 0);        /* -1 is vLLM's "off" */
}
END_TEST

START_TEST(configured_limits_bound_the_request)
{
    ck_assert_str_eq(fails(COMPL, "{\"prompt\":\"a\",\"max_tokens\":65}", 400, "max_tokens"),
                     "Invalid 'max_tokens': expected a value <= 64, but got 65 instead.");
    fails(COMPL, "{\"prompt\":\"a\",\"n\":5}", 400, "n");
    ok(COMPL, "{\"prompt\":[\"a\",\"b\"],\"n\":2}");
    ck_assert_ptr_nonnull(strstr(fails(COMPL, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":2}", 400, "n"),
                                 "6 choices"));
    fails(COMPL, "{\"prompt\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "n");
    fails(COMPL, "{\"prompt\":\"a\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop");
    fails(COMPL, "{\"prompt\":\"a\",\"stop\":\"0123456789abcdefg\"}", 400, "stop");
    ok(COMPL, "{\"prompt\":\"a\",\"stop\":\"0123456789abcdef\"}");
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"logprobs\":true,\"top_logprobs\":21}",
          400, "top_logprobs");
}
END_TEST

START_TEST(stop_is_a_string_or_a_list_of_nonempty_strings)
{
    ok(COMPL, "{\"prompt\":\"a\",\"stop\":\"\\n\"}");
    ck_assert_int_eq(req.params.num_stop, 1);
    ck_assert_str_eq(req.params.stop[0], "\n");
    ok(COMPL, "{\"prompt\":\"a\",\"stop\":[]}");
    ck_assert_int_eq(req.params.num_stop, 0);
    fails(COMPL, "{\"prompt\":\"a\",\"stop\":\"\"}", 400, "stop");
    fails(COMPL, "{\"prompt\":\"a\",\"stop\":[\"a\", 3]}", 400, "stop");
    fails(COMPL, "{\"prompt\":\"a\",\"stop\":3}", 400, "stop");
}
END_TEST

/* Every bit of the seed counts: integers above 2^53 would collapse through a double. A
 * negative seed is its 64-bit two's complement. */
START_TEST(seed_is_any_64_bit_integer_exactly)
{
    const char *msg;

    ok(COMPL, "{\"prompt\":\"a\",\"seed\":0}");
    ck_assert(req.params.has_seed);
    ck_assert_uint_eq(req.params.seed, 0);
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":4294967296}");
    ck_assert_uint_eq(req.params.seed, 4294967296ull);
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":9007199254740993}");          /* 2^53 + 1 */
    ck_assert_uint_eq(req.params.seed, 9007199254740993ull);
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":9007199254740992}");          /* 2^53 */
    ck_assert_uint_eq(req.params.seed, 9007199254740992ull);
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":18446744073709551615}");      /* 2^64 - 1 */
    ck_assert_uint_eq(req.params.seed, UINT64_MAX);
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":18446744073709551614}");
    ck_assert_uint_eq(req.params.seed, UINT64_MAX - 1);
    /* Found however the body is laid out: nested "seed" keys and escaped key names. */
    ok(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\\\"seed\\\":1\"}],"
             "\"chat_template_kwargs\":{\"seed\":2},\"se\\u0065d\" : 12345678901234567891 }");
    ck_assert_uint_eq(req.params.seed, 12345678901234567891ull);
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":5.0}");                      /* integral, below 2^53 */
    ck_assert_uint_eq(req.params.seed, 5);

    msg = fails(COMPL, "{\"prompt\":\"a\",\"seed\":18446744073709551616}", 400, "seed");   /* 2^64 */
    ck_assert_msg(strstr(msg, "18446744073709551615") && strstr(msg, "got 18446744073709551616"), "%s", msg);
    ck_assert_str_eq(err.code, "invalid_value");
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":-1}");
    ck_assert_uint_eq(req.params.seed, UINT64_MAX);
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":-9223372036854775808}");      /* -2^63 */
    ck_assert_uint_eq(req.params.seed, (uint64_t)1 << 63);
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":-9007199254740993}");         /* -(2^53 + 1) */
    ck_assert_uint_eq(req.params.seed, (uint64_t)0 - 9007199254740993ull);
    ok(COMPL, "{\"prompt\":\"a\",\"seed\":-2.0}");
    ck_assert_uint_eq(req.params.seed, UINT64_MAX - 1);
    msg = fails(COMPL, "{\"prompt\":\"a\",\"seed\":-9223372036854775809}", 400, "seed");   /* -2^63 - 1 */
    ck_assert_msg(strstr(msg, "from -9223372036854775808") && strstr(msg, "got -9223372036854775809"), "%s", msg);
    fails(COMPL, "{\"prompt\":\"a\",\"seed\":1e30}", 400, "seed");
    msg = fails(COMPL, "{\"prompt\":\"a\",\"seed\":1e19}", 400, "seed");
    ck_assert_msg(strstr(msg, "without fraction or exponent"), "%s", msg);
    fails(COMPL, "{\"prompt\":\"a\",\"seed\":123456789012345678901234567890}", 400, "seed");
}
END_TEST

START_TEST(stream_options_need_stream)
{
    fails(COMPL, "{\"prompt\":\"a\",\"stream_options\":{\"include_usage\":true}}", 400, "stream_options");
    ok(COMPL, "{\"prompt\":\"a\",\"stream\":true,\"stream_options\":{}}");
    ck_assert(req.stream && !req.include_usage);
    ok(COMPL, "{\"prompt\":\"a\",\"stream\":false,\"stream_options\":null}");
}
END_TEST

START_TEST(another_model_is_404)
{
    const char *m = fails(COMPL, "{\"model\":\"gpt-4\",\"prompt\":\"a\"}", 404, "model");

    ck_assert_str_eq(m, "The model 'gpt-4' does not exist.");
    ck_assert_str_eq(err.code, "model_not_found");
    fails(CHAT, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", 404, "model");
    fails(openai_parse_tokenize, "{\"model\":\"x\",\"prompt\":\"a\"}", 404, "model");
}
END_TEST

/* A long name is shown cut at 200 bytes, but never inside a character: 150 × "é" (2 bytes
 * each) is cut after 100 of them, and 1 + 150 × "é" after 1 + 99 (byte 200 would split one). */
START_TEST(a_long_model_name_is_cut_between_characters)
{
    char body[512], want[512];
    int n = snprintf(body, sizeof body, "{\"model\":\"");

    for (int i = 0; i < 150; i++)
        n += snprintf(body + n, sizeof body - n, "\xc3\xa9");
    snprintf(body + n, sizeof body - n, "\",\"prompt\":\"a\"}");
    n = snprintf(want, sizeof want, "The model '");
    for (int i = 0; i < 100; i++)
        n += snprintf(want + n, sizeof want - n, "\xc3\xa9");
    snprintf(want + n, sizeof want - n, "' does not exist.");
    ck_assert_str_eq(fails(COMPL, body, 404, "model"), want);

    memmove(body + 11, body + 10, strlen(body + 10) + 1);
    body[10] = 'x';                                   /* {"model":"xéé… */
    n = snprintf(want, sizeof want, "The model 'x");
    for (int i = 0; i < 99; i++)
        n += snprintf(want + n, sizeof want - n, "\xc3\xa9");
    snprintf(want + n, sizeof want - n, "' does not exist.");
    ck_assert_str_eq(fails(COMPL, body, 404, "model"), want);
}
END_TEST

START_TEST(null_fields_count_as_absent)
{
    ok(COMPL, "{\"prompt\":\"a\",\"max_tokens\":null,\"temperature\":null,\"stop\":null,\"seed\":null,"
              "\"logprobs\":null,\"n\":null,\"model\":null}");
    ck_assert(!req.max_tokens_set && !req.params.has_seed && !req.logprobs);
    ck_assert_float_eq(req.params.temperature, 1.0f);
    ck_assert_int_eq(req.n, 1);
}
END_TEST

START_TEST(unknown_fields_are_ignored)
{
    ok(COMPL, "{\"prompt\":\"a\",\"foo\":{\"bar\":[1,{\"x\":null}]},\"metadata\":{\"k\":\"v\"},"
              "\"store\":true,\"logit_bias\":{},\"suffix\":\"\",\"best_of\":1}");
    ok(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"parallel_tool_calls\":false,"
             "\"tools\":[],\"tool_choice\":\"none\",\"response_format\":{\"type\":\"text\"}}");
}
END_TEST

START_TEST(fields_osprey_cannot_honour_are_refused)
{
    fails(COMPL, "{\"prompt\":\"a\",\"logit_bias\":{\"5\":101}}", 400, "logit_bias");
    fails(COMPL, "{\"prompt\":\"a\",\"logit_bias\":{\"x5\":1}}", 400, "logit_bias");
    fails(COMPL, "{\"prompt\":\"a\",\"logit_bias\":{\"512\":1}}", 400, "logit_bias");
    ck_assert_str_eq(err.code, "invalid_value");
    fails(COMPL, "{\"prompt\":\"a\",\"suffix\":\"end\"}", 400, "suffix");
    fails(COMPL, "{\"prompt\":\"a\",\"best_of\":3}", 400, "best_of");
    fails(COMPL, "{\"prompt\":\"a\",\"response_format\":{\"type\":\"xml\"}}", 400, "response_format.type");
    fails(COMPL, "{\"prompt\":\"a\",\"logprobs\":1,\"echo\":true}", 400, "echo");
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"tools\":[{\"type\":\"function\"}]}",
          400, "tools");
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"tool_choice\":\"auto\"}", 400,
          "tool_choice");
}
END_TEST

START_TEST(chat_messages_are_checked_and_parts_joined)
{
    const cJSON *m, *content;

    ok(CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":"
             "[{\"type\":\"text\",\"text\":\"one\"},{\"type\":\"text\",\"text\":\"two\"}]}]}");
    ck_assert_int_eq(req.kind, OAI_CHAT);
    ck_assert(!req.add_special_tokens && req.add_generation_prompt);
    ck_assert_int_eq(req.num_prompts, 0);
    ck_assert_int_eq(cJSON_GetArraySize(req.messages), 2);
    m = cJSON_GetArrayItem(req.messages, 1);
    content = cJSON_GetObjectItemCaseSensitive(m, "content");
    ck_assert(cJSON_IsString(content));
    ck_assert_str_eq(content->valuestring, "one\ntwo");
    ck_assert_int_eq(req.params.logprobs, -1);

    ck_assert_str_eq(fails(CHAT, "{}", 400, "messages"), "Missing required parameter: 'messages'.");
    fails(CHAT, "{\"messages\":\"hi\"}", 400, "messages");
    fails(CHAT, "{\"messages\":[]}", 400, "messages");
    fails(CHAT, "{\"messages\":[\"hi\"]}", 400, "messages");
    fails(CHAT, "{\"messages\":[{\"content\":\"hi\"}]}", 400, "messages");
    fails(CHAT, "{\"messages\":[{\"role\":\"\",\"content\":\"hi\"}]}", 400, "messages");
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages");
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}",
          400, "messages");
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", 400, "messages");
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"chat_template_kwargs\":[]}", 400,
          "chat_template_kwargs");
    ok(CHAT, "{\"messages\":[{\"role\":\"assistant\",\"content\":null}],\"add_generation_prompt\":false,"
             "\"chat_template_kwargs\":{\"enable_thinking\":false}}");
    ck_assert(!req.add_generation_prompt);
    ck_assert(cJSON_IsObject(req.template_kwargs));
}
END_TEST

START_TEST(chat_logprobs_is_a_boolean_with_top_logprobs)
{
    const char *msgs = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]";
    char body[256];

    snprintf(body, sizeof body, "%s,\"logprobs\":true,\"top_logprobs\":3}", msgs);
    ok(CHAT, body);
    ck_assert(req.logprobs);
    ck_assert_int_eq(req.params.logprobs, 3);
    snprintf(body, sizeof body, "%s,\"logprobs\":true}", msgs);
    ok(CHAT, body);
    ck_assert_int_eq(req.params.logprobs, 0);
    snprintf(body, sizeof body, "%s,\"top_logprobs\":2}", msgs);
    fails(CHAT, body, 400, "top_logprobs");
    snprintf(body, sizeof body, "%s,\"logprobs\":false,\"top_logprobs\":2}", msgs);
    fails(CHAT, body, 400, "top_logprobs");
}
END_TEST

START_TEST(both_routes_take_max_completion_tokens_before_max_tokens)
{
    ok(COMPL, "{\"prompt\":\"a\",\"max_completion_tokens\":5}");
    ck_assert(req.max_tokens_set);
    ck_assert_int_eq(req.params.max_tokens, 5);
    ok(COMPL, "{\"prompt\":\"a\",\"max_tokens\":9,\"max_completion_tokens\":3}");
    ck_assert_int_eq(req.params.max_tokens, 3);
    ok(COMPL, "{\"prompt\":\"a\",\"max_tokens\":9}");
    ck_assert_int_eq(req.params.max_tokens, 9);
    fails(COMPL, "{\"prompt\":\"a\",\"max_completion_tokens\":0}", 400, "max_completion_tokens");
    fails(COMPL, "{\"prompt\":\"a\",\"max_completion_tokens\":65}", 400, "max_completion_tokens");  /* limit 64 */
    fails(COMPL, "{\"prompt\":\"a\",\"max_completion_tokens\":\"5\"}", 400, "max_completion_tokens");

    ok(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"max_tokens\":9,\"max_completion_tokens\":3}");
    ck_assert(req.max_tokens_set);
    ck_assert_int_eq(req.params.max_tokens, 3);
    ok(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"max_tokens\":9}");
    ck_assert_int_eq(req.params.max_tokens, 9);
    fails(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"max_completion_tokens\":0}", 400,
          "max_completion_tokens");
}
END_TEST

START_TEST(tokenize_takes_a_prompt_or_messages)
{
    ok(openai_parse_tokenize, "{\"prompt\":\"hello\"}");
    ck_assert_int_eq(req.kind, OAI_TOKENIZE);
    ck_assert(req.add_special_tokens);
    ck_assert_str_eq(req.prompts[0].text, "hello");
    ok(openai_parse_tokenize, "{\"prompt\":\"hello\",\"add_special_tokens\":false}");
    ck_assert(!req.add_special_tokens);
    ok(openai_parse_tokenize, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}");
    ck_assert(!req.add_special_tokens && req.add_generation_prompt);
    ck_assert_ptr_nonnull(req.messages);
    fails(openai_parse_tokenize, "{}", 400, "prompt");
    fails(openai_parse_tokenize, "{\"prompt\":[1,2]}", 400, "prompt");
}
END_TEST

START_TEST(detokenize_takes_token_ids_in_the_vocabulary)
{
    ok(openai_parse_detokenize, "{\"tokens\":[3, 1, 4]}");
    ck_assert_int_eq(req.kind, OAI_DETOKENIZE);
    ck_assert_int_eq(req.prompts[0].num_ids, 3);
    ck_assert_int_eq(req.prompts[0].ids[2], 4);
    ok(openai_parse_detokenize, "{\"tokens\":[]}");
    ck_assert_int_eq(req.prompts[0].num_ids, 0);
    fails(openai_parse_detokenize, "{}", 400, "tokens");
    fails(openai_parse_detokenize, "{\"tokens\":\"abc\"}", 400, "tokens");
    fails(openai_parse_detokenize, "{\"tokens\":[600]}", 400, "tokens");
}
END_TEST

START_TEST(fit_context_defaults_max_tokens_and_reports_both_lengths)
{
    int mt = 0;
    const char *m;

    ok(COMPL, "{\"prompt\":\"a\"}");
    ck_assert_int_eq(openai_fit_context(&req, 10, &config, &mt, &err), 0);
    ck_assert_int_eq(mt, 16);
    ck_assert_int_eq(openai_fit_context(&req, 120, &config, &mt, &err), 0);
    ck_assert_int_eq(mt, 8);                  /* only 8 left of 128 */
    ck_assert_int_lt(openai_fit_context(&req, 128, &config, &mt, &err), 0);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.code, "context_length_exceeded");
    ck_assert_ptr_nonnull(strstr(err.message, "128 tokens"));
    ck_assert_int_lt(openai_fit_context(&req, 0, &config, &mt, &err), 0);

    ok(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}");
    ck_assert_int_eq(openai_fit_context(&req, 100, &config, &mt, &err), 0);
    ck_assert_int_eq(mt, 28);                 /* the rest of the context */
    ck_assert_int_eq(openai_fit_context(&req, 10, &config, &mt, &err), 0);
    ck_assert_int_eq(mt, 64);                 /* capped by max_tokens_limit */

    ok(COMPL, "{\"prompt\":\"a\",\"max_tokens\":40}");
    ck_assert_int_eq(openai_fit_context(&req, 88, &config, &mt, &err), 0);
    ck_assert_int_eq(mt, 40);
    ck_assert_int_lt(openai_fit_context(&req, 89, &config, &mt, &err), 0);
    m = err.message;
    ck_assert_str_eq(err.param, "max_tokens");
    ck_assert_ptr_nonnull(strstr(m, "maximum context length is 128 tokens"));
    ck_assert_ptr_nonnull(strstr(m, "129 tokens (89 in the prompt, 40 in the completion)"));

    ok(COMPL, "{\"prompt\":\"a\",\"min_tokens\":20}");
    ck_assert_int_lt(openai_fit_context(&req, 120, &config, &mt, &err), 0);
    ck_assert_str_eq(err.param, "min_tokens");
}
END_TEST

/* A KV cache that holds fewer tokens for one request than the context binds instead, and
 * the message says so (the engine could never run the request). */
START_TEST(a_kv_cache_smaller_than_the_context_binds_instead)
{
    struct oai_config c = config;
    int max_tokens = 0;

    c.max_cache_tokens = 50;              /* the context is 128 */
    c.max_tokens_limit = 0;
    ok(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}");
    ck_assert_int_eq(openai_fit_context(&req, 10, &c, &max_tokens, &err), 0);
    ck_assert_int_eq(max_tokens, 40);      /* the rest of what the cache holds */
    ok(COMPL, "{\"prompt\":\"a\",\"max_tokens\":41}");
    ck_assert_int_eq(openai_fit_context(&req, 10, &c, &max_tokens, &err), -EINVAL);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.param, "max_tokens");
    ck_assert_str_eq(err.code, "context_length_exceeded");
    ck_assert_msg(strstr(err.message, "KV cache holds 50 tokens for one request") &&
                  strstr(err.message, "128 tokens") && strstr(err.message, "you requested 51 tokens"),
                  "%s", err.message);
    ok(COMPL, "{\"prompt\":\"a\",\"max_tokens\":40}");
    ck_assert_int_eq(openai_fit_context(&req, 10, &c, &max_tokens, &err), 0);
    ck_assert_int_eq(openai_fit_context(&req, 50, &c, &max_tokens, &err), -EINVAL);
    ck_assert_str_eq(err.param, "prompt");
    /* A cache that holds the whole context changes nothing. */
    c.max_cache_tokens = 128;
    ok(COMPL, "{\"prompt\":\"a\",\"max_tokens\":60}");
    ck_assert_int_eq(openai_fit_context(&req, 10, &c, &max_tokens, &err), 0);
}
END_TEST

START_TEST(max_prompt_tokens_refuses_longer_prompts)
{
    struct oai_config c = config;
    int mt;

    c.max_prompt_tokens = 50;
    ok(COMPL, "{\"prompt\":\"a\"}");
    ck_assert_int_eq(openai_fit_context(&req, 50, &c, &mt, &err), 0);
    ck_assert_int_lt(openai_fit_context(&req, 51, &c, &mt, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.message, "51 tokens"));
    ck_assert_ptr_nonnull(strstr(err.message, "at most 50"));
}
END_TEST

START_TEST(error_helper_picks_the_type_by_status)
{
    struct oai_error e;

    ck_assert_int_eq(openai_error(&e, 503, "overloaded", NULL, "busy %d", 1), -EIO);
    ck_assert_str_eq(e.type, "server_error");
    ck_assert_str_eq(e.param, "");
    ck_assert_str_eq(e.message, "busy 1");
    ck_assert_int_eq(openai_error(&e, 401, "invalid_api_key", NULL, "no"), -EINVAL);
    ck_assert_str_eq(e.type, "invalid_request_error");
}
END_TEST

/* xorshift64*: a fixed stream of mutations, the same on every run. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

START_TEST(mutated_bodies_never_crash_and_fail_with_a_status)
{
    static const char *seeds[] = {
        "{\"prompt\":[\"a\",\"b\"],\"n\":2,\"stop\":[\"x\"],\"logprobs\":2,\"seed\":-3,\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"stop_token_ids\":[1,2],\"echo\":false}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
        "\"logprobs\":true,\"top_logprobs\":3,\"max_completion_tokens\":5,\"chat_template_kwargs\":{}}",
        "{\"prompt\":[[1,2],[3]],\"temperature\":0.5,\"top_p\":0.9,\"top_k\":5,\"min_p\":0.1}",
        "{\"tokens\":[1,2,3],\"prompt\":\"x\",\"add_special_tokens\":false}",
    };
    static const parse_fn fns[] = { openai_parse_completion, openai_parse_chat, openai_parse_tokenize,
                                    openai_parse_detokenize };
    char buf[512];

    for (int iter = 0; iter < 20000; iter++) {
        const char *seed = seeds[iter % 4];
        size_t len = strlen(seed);
        int edits = 1 + (int)(rng() % 4);

        memcpy(buf, seed, len);
        for (int k = 0; k < edits; k++) {
            size_t at = rng() % len;

            switch (rng() % 3) {
            case 0: buf[at] = (char)(rng() & 0xff); break;                   /* any byte */
            case 1: buf[at] = "{}[],:\"0-9.e tfn\\"[rng() % 18]; break;      /* a JSON-ish one */
            default: len = at + 1; break;                                     /* truncate */
            }
        }
        for (int f = 0; f < 4; f++) {
            openai_request_fini(&req);
            openai_request_init(&req);
            memset(&err, 0, sizeof err);
            if (fns[f](&req, buf, len, &config, &err) != 0)
                ck_assert_msg(err.status == 400 || err.status == 404, "status %d for %.*s", err.status,
                              (int)len, buf);
            else if (req.kind == OAI_COMPLETION || req.kind == OAI_DETOKENIZE)
                ck_assert_int_ge(req.num_prompts, 1);
        }
    }
}
END_TEST

Suite *openai_parse_suite(void)
{
    Suite *s = suite_create("openai_parse");
    TCase *tc = tcase_create("parse");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, completion_defaults_are_openais);
    tcase_add_test(tc, generation_config_defaults_apply_when_the_request_is_silent);
    tcase_add_test(tc, every_sampling_parameter_reaches_gen_params);
    tcase_add_test(tc, prompt_takes_all_four_openai_forms);
    tcase_add_test(tc, bad_prompts_are_400_naming_prompt);
    tcase_add_test(tc, malformed_json_is_400_without_param);
    tcase_add_test(tc, body_needs_no_terminating_nul);
    tcase_add_test(tc, bodies_cjson_would_change_or_refuse_silently_are_400_saying_why);
    tcase_add_test(tc, wrong_types_name_the_param_like_openai);
    tcase_add_test(tc, integral_numbers_count_as_integers);
    tcase_add_test(tc, out_of_range_values_are_400);
    tcase_add_test(tc, configured_limits_bound_the_request);
    tcase_add_test(tc, stop_is_a_string_or_a_list_of_nonempty_strings);
    tcase_add_test(tc, seed_is_any_64_bit_integer_exactly);
    tcase_add_test(tc, stream_options_need_stream);
    tcase_add_test(tc, another_model_is_404);
    tcase_add_test(tc, a_long_model_name_is_cut_between_characters);
    tcase_add_test(tc, null_fields_count_as_absent);
    tcase_add_test(tc, unknown_fields_are_ignored);
    tcase_add_test(tc, fields_osprey_cannot_honour_are_refused);
    tcase_add_test(tc, chat_messages_are_checked_and_parts_joined);
    tcase_add_test(tc, chat_logprobs_is_a_boolean_with_top_logprobs);
    tcase_add_test(tc, both_routes_take_max_completion_tokens_before_max_tokens);
    tcase_add_test(tc, tokenize_takes_a_prompt_or_messages);
    tcase_add_test(tc, detokenize_takes_token_ids_in_the_vocabulary);
    tcase_add_test(tc, fit_context_defaults_max_tokens_and_reports_both_lengths);
    tcase_add_test(tc, max_prompt_tokens_refuses_longer_prompts);
    tcase_add_test(tc, a_kv_cache_smaller_than_the_context_binds_instead);
    tcase_add_test(tc, error_helper_picks_the_type_by_status);
    tcase_add_test(tc, mutated_bodies_never_crash_and_fail_with_a_status);
    suite_add_tcase(s, tc);
    return s;
}
