/* test_sse.c — the stream byte queue (framing, the limit, [DONE] past it, partial reads,
 * compaction) and per-choice pending output (appends, byte counts, take). */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "server/sse.h"

static char out[4096];

START_TEST(events_are_framed_as_data_lines)
{
    struct sse_buf b;

    sse_buf_init(&b, 1024);
    ck_assert_int_eq(sse_buf_event(&b, "{\"a\":1}", 7), 0);
    ck_assert_int_eq(sse_buf_done(&b), 0);
    ck_assert_uint_eq(sse_buf_waiting(&b), 15 + 14);
    ck_assert_uint_eq(sse_buf_read(&b, out, sizeof out), 29);
    out[29] = '\0';
    ck_assert_str_eq(out, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    ck_assert_uint_eq(sse_buf_waiting(&b), 0);
    ck_assert_uint_eq(sse_buf_read(&b, out, sizeof out), 0);
    sse_buf_fini(&b);
}
END_TEST

START_TEST(the_limit_refuses_an_event_and_keeps_the_queue)
{
    struct sse_buf b;
    char json[40];

    memset(json, 'x', sizeof json);
    sse_buf_init(&b, 100);                      /* one event takes 6 + 40 + 2 = 48 bytes */
    ck_assert_int_eq(sse_buf_event(&b, json, 40), 0);
    ck_assert_int_eq(sse_buf_event(&b, json, 40), 0);
    ck_assert_int_eq(sse_buf_event(&b, json, 40), -ENOBUFS);
    ck_assert_uint_eq(sse_buf_waiting(&b), 96);
    ck_assert_int_eq(sse_buf_event(&b, json, 2), -ENOBUFS);   /* 96 + 10 > 100 */
    ck_assert_int_eq(sse_buf_done(&b), 0);                    /* the end always fits */
    ck_assert_uint_eq(sse_buf_waiting(&b), 110);
    /* Reading makes room again. */
    ck_assert_uint_eq(sse_buf_read(&b, out, 60), 60);
    ck_assert_int_eq(sse_buf_event(&b, json, 2), 0);
    sse_buf_fini(&b);
}
END_TEST

START_TEST(an_event_larger_than_the_limit_is_refused_on_an_empty_queue)
{
    struct sse_buf b;
    char json[200];

    memset(json, 'y', sizeof json);
    sse_buf_init(&b, 100);
    ck_assert_int_eq(sse_buf_event(&b, json, sizeof json), -ENOBUFS);
    ck_assert_uint_eq(sse_buf_waiting(&b), 0);
    sse_buf_fini(&b);
}
END_TEST

START_TEST(partial_reads_return_bytes_in_order)
{
    struct sse_buf b;
    char all[64] = "";
    size_t got = 0, n;

    sse_buf_init(&b, 1 << 20);
    ck_assert_int_eq(sse_buf_event(&b, "one", 3), 0);
    ck_assert_int_eq(sse_buf_event(&b, "two", 3), 0);
    while ((n = sse_buf_read(&b, all + got, 5)) > 0)
        got += n;
    ck_assert_uint_eq(got, 22);
    all[got] = '\0';
    ck_assert_str_eq(all, "data: one\n\ndata: two\n\n");
    sse_buf_fini(&b);
}
END_TEST

START_TEST(a_queue_read_as_fast_as_written_does_not_grow)
{
    struct sse_buf b;
    char json[500];
    size_t cap;

    memset(json, 'z', sizeof json);
    sse_buf_init(&b, 1 << 20);
    ck_assert_int_eq(sse_buf_event(&b, json, sizeof json), 0);
    cap = b.q.cap;
    for (int i = 0; i < 1000; i++) {
        /* Leave a few bytes unread each time: compaction, not growth, makes the room. */
        size_t w = sse_buf_waiting(&b);

        ck_assert_uint_eq(sse_buf_read(&b, out, w - 3), w - 3);
        ck_assert_int_eq(sse_buf_event(&b, json, sizeof json), 0);
    }
    ck_assert_uint_eq(b.q.cap, cap);
    sse_buf_fini(&b);
}
END_TEST

START_TEST(pending_output_accumulates_text_tokens_and_samples)
{
    struct sse_pending p, taken;
    const int32_t ids[3] = { 7, 8, 9 };
    struct sample_result s[3] = { { .token = 7, .logprob = -1 }, { .token = 8 }, { .token = 9 } };
    const size_t offsets[3] = { 0, 2, 2 };

    sse_pending_init(&p);
    sse_pending_init(&taken);
    ck_assert_int_eq(sse_pending_append(&p, "ab", 2, ids, s, offsets, 1), 0);
    ck_assert_int_eq(sse_pending_append(&p, "", 0, ids + 1, s + 1, offsets + 1, 2), 0);
    ck_assert_int_eq(sse_pending_append(&p, "cde", 3, NULL, NULL, NULL, 0), 0);
    ck_assert_str_eq(p.text, "abcde");
    ck_assert_uint_eq(p.text_len, 5);
    ck_assert_int_eq(p.num_tokens, 3);
    ck_assert_int_eq(p.ids[2], 9);
    ck_assert_int_eq(p.samples[0].token, 7);
    ck_assert_float_eq(p.samples[0].logprob, -1.0f);
    ck_assert_uint_eq(p.offsets[1], 2);
    ck_assert_uint_eq(sse_pending_bytes(&p), 5 + 3 * (sizeof(int32_t) + sizeof(struct sample_result) +
                                                      sizeof(size_t)));
    /* A stream sends the text and the first token; the other two wait, in order. */
    sse_pending_drop(&p, 1);
    ck_assert_uint_eq(p.text_len, 0);
    ck_assert_int_eq(p.num_tokens, 2);
    ck_assert_int_eq(p.ids[0], 8);
    ck_assert_int_eq(p.samples[1].token, 9);
    ck_assert_uint_eq(p.offsets[0], 2);
    ck_assert_int_eq(sse_pending_append(&p, "cde", 3, ids, s, offsets, 1), 0);
    ck_assert_str_eq(p.text, "cde");
    ck_assert_int_eq(p.ids[2], 7);
    sse_pending_take(&p, &taken);
    ck_assert_uint_eq(sse_pending_bytes(&p), 0);
    ck_assert_ptr_null(p.text);
    ck_assert_str_eq(taken.text, "cde");
    ck_assert_int_eq(taken.num_tokens, 3);
    sse_pending_fini(&p);
    sse_pending_fini(&taken);
}
END_TEST

START_TEST(pending_output_without_logprobs_counts_ids_only)
{
    struct sse_pending p;
    int32_t ids[100];

    for (int i = 0; i < 100; i++)
        ids[i] = i;
    sse_pending_init(&p);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(sse_pending_append(&p, "x", 1, ids + 10 * i, NULL, NULL, 10), 0);
    ck_assert_ptr_null(p.samples);
    ck_assert_int_eq(p.num_tokens, 100);
    ck_assert_int_eq(p.ids[99], 99);
    ck_assert_uint_eq(sse_pending_bytes(&p), 10 + 100 * sizeof(int32_t));
    sse_pending_fini(&p);
}
END_TEST

Suite *sse_suite(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("sse");

    tcase_add_test(tc, events_are_framed_as_data_lines);
    tcase_add_test(tc, the_limit_refuses_an_event_and_keeps_the_queue);
    tcase_add_test(tc, an_event_larger_than_the_limit_is_refused_on_an_empty_queue);
    tcase_add_test(tc, partial_reads_return_bytes_in_order);
    tcase_add_test(tc, a_queue_read_as_fast_as_written_does_not_grow);
    tcase_add_test(tc, pending_output_accumulates_text_tokens_and_samples);
    tcase_add_test(tc, pending_output_without_logprobs_counts_ids_only);
    suite_add_tcase(s, tc);
    return s;
}
