/* test_tool_report.c — daemon_tool_report (tests/integration/daemon.c), the check that fails a
 * test whose daemon printed a sanitizer's or valgrind's report: it must see each tool's real
 * report lines, and nothing in a clean daemon log. Without this the sanitized pass of
 * make test could go green on a report it never noticed. */
#include <check.h>

#include "tests/integration/daemon.h"

START_TEST(each_tools_report_is_seen)
{
    static const char *const reports[] = {
        /* ASan, LSan and UBSan, as their runtimes print them */
        "<6>osprey[serve] cmd_serve: stopped\n=================================================================\n"
        "==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010\n",
        "<6>osprey[serve] cmd_serve: stopped\n\n=================================================================\n"
        "==4242==ERROR: LeakSanitizer: detected memory leaks\n\nDirect leak of 100 byte(s)\n",
        "engine/sampler.c:120:17: runtime error: signed integer overflow: 2147483647 + 1\n",
        /* valgrind -q: only its reports, each line "==PID== " */
        "<6>osprey[serve] cmd_serve: stopped\n==31337== 64 bytes in 1 blocks are definitely lost\n",
        "==31337== Invalid read of size 4\n==31337==    at 0x4012AB: main (main.c:10)\n",
    };

    for (size_t i = 0; i < sizeof reports / sizeof reports[0]; i++)
        ck_assert_msg(daemon_tool_report(reports[i]) != NULL, "report %zu not seen", i);
}
END_TEST

START_TEST(a_clean_daemon_log_has_none)
{
    /* "==" inside a line (a prompt logged at debug, a comparison) is not valgrind's */
    const char *log = "<6>osprey[serve] cmd_serve: listening on http://127.0.0.1:8000\n"
                      "<7>osprey[http] access: POST /v1/completions 200 prompt 'a == b' 5 tokens\n"
                      "<6>osprey[serve] cmd_serve: SIGTERM: draining (up to 10s for running requests)\n"
                      "==\n<6>osprey[serve] cmd_serve: stopped\n";

    ck_assert_ptr_null(daemon_tool_report(log));
    ck_assert_ptr_null(daemon_tool_report(""));
}
END_TEST

Suite *tool_report_suite(void)
{
    Suite *s = suite_create("tool_report");
    TCase *tc = tcase_create("report");

    tcase_add_test(tc, each_tools_report_is_seen);
    tcase_add_test(tc, a_clean_daemon_log_has_none);
    suite_add_tcase(s, tc);
    return s;
}
