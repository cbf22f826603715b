/* test_jinja.c — the Jinja interpreter on its own, with expectations worked out by hand from
 * Jinja's and Python's documented behaviour (whitespace control with transformers'
 * trim_blocks + lstrip_blocks, scoping, loops, Python arithmetic and printing, filters,
 * tojson), and its errors and limits. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat_template/jinja.h"
#include "engine/base/util.h"

static const struct jinja_limits test_limits = {
    .max_output_bytes = 1u << 20,
    .max_memory_bytes = 64u << 20,
    .max_loop_iterations = 100000,
    .max_work = 10000000,
    .max_depth = 128,
};

static char err[ERR_LEN];
static bool raised;

/* Renders src with the variables of vars_json (an object, or NULL); NULL on error (err). */
static char *render_lim(const char *src, const char *vars_json, const struct jinja_limits *lim)
{
    struct jinja_template *t;
    cJSON *vars = vars_json ? cJSON_Parse(vars_json) : NULL;
    char *out = NULL;
    size_t len;
    int rc;

    err[0] = '\0';
    raised = false;
    ck_assert_msg(!vars_json || vars, "bad test JSON: %s", vars_json);
    rc = jinja_parse(&t, src, strlen(src), err);
    if (!rc) {
        rc = jinja_render(t, vars, lim, &out, &len, err, &raised);
        jinja_template_destroy(t);
        if (!rc)
            ck_assert_uint_eq(len, strlen(out));
    }
    cJSON_Delete(vars);
    return rc ? NULL : out;
}

static char *render(const char *src, const char *vars_json)
{
    return render_lim(src, vars_json, &test_limits);
}

#define ASSERT_RENDERS(src, vars, want)                                                           \
    do {                                                                                          \
        char *got_ = render((src), (vars));                                                       \
        ck_assert_msg(got_ != NULL, "%s: %s", (src), err);                                        \
        ck_assert_msg(!strcmp(got_, (want)), "%s\n got: [%s]\nwant: [%s]", (src), got_, (want));  \
        free(got_);                                                                               \
    } while (0)

#define ASSERT_FAILS(src, vars, needle)                                                            \
    do {                                                                                          \
        char *got_ = render((src), (vars));                                                       \
        ck_assert_msg(got_ == NULL, "%s: rendered [%s], expected an error", (src), got_);         \
        ck_assert_msg(strstr(err, (needle)) != NULL, "%s: error [%s] lacks [%s]", (src), err, (needle)); \
    } while (0)

/* ---- whitespace ---- */

START_TEST(dash_strips_whitespace_on_its_side)
{
    ASSERT_RENDERS("a  {{- 'b' -}}  c", NULL, "abc");
    ASSERT_RENDERS("a \n {%- if true -%} \n b \n {%- endif -%} \n c", NULL, "abc");
    ASSERT_RENDERS("a  {#- note -#}  b", NULL, "ab");
}
END_TEST

START_TEST(trim_blocks_drops_one_newline_after_a_block_tag)
{
    ASSERT_RENDERS("{% if true %}\nx\n{% endif %}\ny", NULL, "x\ny");
    ASSERT_RENDERS("{% if true %}\n\nx{% endif %}", NULL, "\nx");
    /* not after a variable tag */
    ASSERT_RENDERS("{{ 'v' }}\nx", NULL, "v\nx");
    /* a comment counts as a block */
    ASSERT_RENDERS("{# c #}\nx", NULL, "x");
    /* + after the tag keeps the newline */
    ASSERT_RENDERS("{% if true +%}\nx{% endif %}", NULL, "\nx");
}
END_TEST

START_TEST(lstrip_blocks_drops_indentation_before_a_block_tag)
{
    ASSERT_RENDERS("  {% if true %}\n  x\n  {% endif %}\n", NULL, "  x\n");
    /* only when nothing but spaces precede the tag on its line */
    ASSERT_RENDERS("a  {% if true %}b{% endif %}", NULL, "a  b");
    /* {%+ keeps them; variable tags are never stripped */
    ASSERT_RENDERS("  {%+ if true %}x{% endif %}", NULL, "  x");
    ASSERT_RENDERS("  {{ 'x' }}", NULL, "  x");
    ASSERT_RENDERS("\t {# c #}\nx", NULL, "x");
}
END_TEST

START_TEST(newlines_are_normalised_and_one_trailing_newline_dropped)
{
    ASSERT_RENDERS("a\r\nb\rc", NULL, "a\nb\nc");
    ASSERT_RENDERS("x\n", NULL, "x");
    ASSERT_RENDERS("x\n\n", NULL, "x\n");
    ASSERT_RENDERS("{{ 'a\r\nb' }}", NULL, "a\nb");
}
END_TEST

START_TEST(raw_blocks_are_not_interpreted)
{
    ASSERT_RENDERS("{% raw %}{{ x }}{% if %}{% endraw %}!", NULL, "{{ x }}{% if %}!");
}
END_TEST

/* ---- statements and scopes ---- */

START_TEST(loop_variables_count_as_jinja_does)
{
    ASSERT_RENDERS("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                   "{{ loop.first }}{{ loop.last }}{{ loop.length }} {% endfor %}",
                   NULL, "103TrueFalse3 212FalseFalse3 321FalseTrue3 ");
    ASSERT_RENDERS("{% for x in [1, 2, 3] %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }};{% endfor %}",
                   NULL, "<1>2;1<2>3;2<3>;");
    ASSERT_RENDERS("{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{% endfor %}", NULL, "aba");
}
END_TEST

START_TEST(loop_filters_and_else_branches)
{
    ASSERT_RENDERS("{% for x in [1, 2, 3, 4] if x is even %}{{ loop.index }}:{{ x }}/{{ loop.length }} "
                   "{% else %}none{% endfor %}", NULL, "1:2/2 2:4/2 ");
    ASSERT_RENDERS("{% for x in [] %}x{% else %}empty{% endfor %}", NULL, "empty");
    ASSERT_RENDERS("{% for x in undefined_thing %}x{% else %}empty{% endfor %}", NULL, "empty");
}
END_TEST

START_TEST(break_and_continue_work_in_nested_blocks)
{
    ASSERT_RENDERS("{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}"
                   "{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}", NULL, "023");
    ASSERT_FAILS("{% break %}", NULL, "outside a for loop");
}
END_TEST

START_TEST(tuples_unpack_in_for_and_set)
{
    ASSERT_RENDERS("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", NULL, "a=1;b=2;");
    ASSERT_RENDERS("{% set a, b = 1, 'x' %}{{ b }}{{ a }}", NULL, "x1");
    ASSERT_FAILS("{% for a, b in [[1, 2, 3]] %}{% endfor %}", NULL, "too many values to unpack");
}
END_TEST

START_TEST(set_inside_a_loop_does_not_leak_but_namespace_does)
{
    ASSERT_RENDERS("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}", NULL, "21");
    ASSERT_RENDERS("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}", NULL, "2");
    ASSERT_RENDERS("{% set ns = namespace(total=0, seen=false) %}{% for i in range(5) %}"
                   "{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}{{ ns.seen }}", NULL, "10False");
    ASSERT_FAILS("{% set s = 'x' %}{% set s.a = 1 %}", NULL, "non-namespace");
}
END_TEST

START_TEST(macros_take_defaults_keywords_and_a_caller)
{
    ASSERT_RENDERS("{% macro m(a, b='B') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(1, b=2) }}{{ m(b=3, a=4) }}",
                   NULL, "<1B><12><43>");
    ASSERT_RENDERS("{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}in{% endcall %}", NULL, "[in]");
    ASSERT_FAILS("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, "takes not more than 1");
}
END_TEST

START_TEST(set_blocks_filter_blocks_and_generation_render_their_body)
{
    ASSERT_RENDERS("{% set s %}a{{ 1 }}{% endset %}[{{ s }}]", NULL, "[a1]");
    ASSERT_RENDERS("{% set s | upper %}ab{% endset %}{{ s }}", NULL, "AB");
    ASSERT_RENDERS("{% filter upper %}x{{ 'y' }}{% endfilter %}", NULL, "XY");
    ASSERT_RENDERS("{% generation %}reply{% endgeneration %}", NULL, "reply");
}
END_TEST

/* ---- expressions ---- */

START_TEST(arithmetic_follows_python)
{
    ASSERT_RENDERS("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }}",
                   NULL, "3 -4 2 -2 3.5 2.0 1024");
    ASSERT_RENDERS("{{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 2 + 3 * 4 }} {{ 'ab' * 2 }} {{ [1] + [2] }}", NULL,
                   "64 4 14 abab [1, 2]");
    ASSERT_RENDERS("{{ 'a' ~ 1 ~ none ~ true }}", NULL, "a1NoneTrue");
    ASSERT_FAILS("{{ 1 / 0 }}", NULL, "division by zero");
    ASSERT_FAILS("{{ 'a' + 1 }}", NULL, "can only concatenate str");
}
END_TEST

START_TEST(numbers_print_as_python_prints_them)
{
    ASSERT_RENDERS("{{ 1.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.00001 }} {{ 0.0001 }} {{ 0.1 + 0.2 }} {{ -0.0 }} {{ 1.5e300 * 1e10 }}",
                   NULL, "1.0 1e+16 1000000000000000.0 1e-05 0.0001 0.30000000000000004 -0.0 inf");
    /* JSON integers stay integers */
    ASSERT_RENDERS("{{ n }} {{ f }} {{ n * 2 }} {{ n / 3 }}", "{\"n\": 3, \"f\": 2.5}", "3 2.5 6 1.0");
}
END_TEST

START_TEST(containers_print_as_python_repr)
{
    ASSERT_RENDERS("{{ [1, 'a', none, true, 1.5, (1,), (1, 2), {}] }}", NULL,
                   "[1, 'a', None, True, 1.5, (1,), (1, 2), {}]");
    ASSERT_RENDERS("{{ {'k': \"it's\", 'n': 'a\\nb'} }}", NULL, "{'k': \"it's\", 'n': 'a\\nb'}");
    ASSERT_RENDERS("{{ m.content }}", "{\"m\": {\"content\": [{\"type\": \"text\", \"text\": \"hi\"}]}}",
                   "[{'type': 'text', 'text': 'hi'}]");
}
END_TEST

START_TEST(comparisons_chain_and_membership_tests)
{
    ASSERT_RENDERS("{{ 1 < 2 < 3 }}{{ 1 < 3 < 2 }}{{ 1 == 1.0 }}{{ (1, 2) == [1, 2] }}{{ [1, 2] < [1, 3] }}",
                   NULL, "TrueFalseTrueFalseTrue");
    ASSERT_RENDERS("{{ 'ell' in 'hello' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 3 not in [1] }}", NULL,
                   "TrueTrueTrueTrue");
    ASSERT_RENDERS("{{ 0 or 'x' }}{{ 1 and 'y' }}{{ 'a' if 0 else 'b' }}{{ not none }}", NULL, "xybTrue");
}
END_TEST

START_TEST(subscripts_and_slices_count_code_points)
{
    ASSERT_RENDERS("{{ [1, 2, 3, 4][1:] }}|{{ [1, 2, 3][::-1] }}|{{ [1, 2, 3][-1] }}|{{ (1, 2, 3)[:2] }}", NULL,
                   "[2, 3, 4]|[3, 2, 1]|3|(1, 2)");
    ASSERT_RENDERS("{{ 'abc'[::-1] }}|{{ 'héllo'[1:3] }}|{{ 'héllo'[-1] }}|{{ 'abcdef'[::2] }}", NULL,
                   "cba|él|o|ace");
    ASSERT_RENDERS("{{ [1][5] }}|{{ {'a': 1}['b'] }}|{{ m.x }}", "{\"m\": {}}", "||");
}
END_TEST

START_TEST(undefined_prints_empty_but_fails_when_used)
{
    ASSERT_RENDERS("[{{ nothing }}]{{ nothing is defined }}{{ nothing|length }}{{ nothing|default('d') }}", NULL,
                   "[]False0d");
    ASSERT_FAILS("{{ 'a' }}\n{{ nothing.field }}", NULL, "line 2: 'nothing' is undefined");
    ASSERT_FAILS("{{ m.missing.x }}", "{\"m\": {}}", "'dict object' has no attribute 'missing'");
    ASSERT_FAILS("{{ nothing + 1 }}", NULL, "'nothing' is undefined");
}
END_TEST

/* ---- filters, tests and methods ---- */

START_TEST(string_filters)
{
    ASSERT_RENDERS("{{ '  a b \\n'|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'Ab'|upper }}{{ 'Ab'|lower }}"
                   "|{{ 'hELLO world'|capitalize }}|{{ 'hello big-world(x'|title }}", NULL,
                   "a b|a|ABab|Hello world|Hello Big-World(X");
    ASSERT_RENDERS("{{ 'aaa'|replace('a', 'b', 2) }}|{{ 3|string }}{{ '42'|int + 1 }}{{ 'x'|int(7) }}"
                   "{{ '2.5'|float }}", NULL, "bba|3437" "2.5");
    ASSERT_RENDERS("{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}", NULL, "a\n  b\n\n  c|  a\n  b");
    ASSERT_RENDERS("{{ '<a href=\"x\">&'|e }}|{{ '<b>'|safe|e }}", NULL, "&lt;a href=&#34;x&#34;&gt;&amp;|<b>");
}
END_TEST

START_TEST(sequence_filters)
{
    const char *users = "{\"u\": [{\"n\": \"ann\", \"on\": true, \"role\": \"admin\"},"
                        " {\"n\": \"bob\", \"on\": false, \"role\": \"user\"}, {\"n\": \"cy\", \"on\": true}]}";

    ASSERT_RENDERS("{{ u|selectattr('on')|map(attribute='n')|join(',') }}|{{ u|rejectattr('on')|map(attribute='n')|list }}"
                   "|{{ u|selectattr('role', 'equalto', 'admin')|list|length }}|{{ u|map(attribute='role', default='-')|join }}",
                   users, "ann,cy|['bob']|1|adminuser-");
    ASSERT_RENDERS("{{ [3, 1, 2]|sort }}{{ ['b', 'A', 'a']|sort }}{{ ['a', 'A', 'b']|unique|list }}{{ [1, 2]|first }}"
                   "{{ [1, 2]|last }}{{ [1, 2, 3]|length }}{{ [1, 2, 3, 4]|select('odd')|list }}{{ [1, 2]|reverse|list }}",
                   NULL, "[1, 2, 3]['A', 'a', 'b']['a', 'b']123[1, 3][2, 1]");
    ASSERT_RENDERS("{{ [1, 2]|join(', ') }}|{{ {'b': 1, 'a': 2}|dictsort }}|{{ [2, 5, 1]|max }}{{ [2, 5, 1]|sum }}",
                   NULL, "1, 2|[('a', 2), ('b', 1)]|58");
    /* select and friends give generators: truthy even when empty, no len() */
    ASSERT_RENDERS("{% if [1]|select('none') %}gen{% endif %}", NULL, "gen");
    ASSERT_FAILS("{{ [1]|select('odd')|length }}", NULL, "has no len()");
}
END_TEST

START_TEST(tojson_matches_python_json_dumps)
{
    const char *x = "{\"x\": {\"b\": [1, 2.5, \"é\\n\\u0001\\\"\", null, true, {}, []], \"a\": \"\\u2028\"}}";

    ASSERT_RENDERS("{{ x|tojson }}", x, "{\"b\": [1, 2.5, \"é\\n\\u0001\\\"\", null, true, {}, []], \"a\": \"\xe2\x80\xa8\"}");
    ASSERT_RENDERS("{{ x.b[:2]|tojson(indent=2) }}", x, "[\n  1,\n  2.5\n]");
    ASSERT_RENDERS("{{ {'b': {'c': 1}, 'a': []}|tojson(indent=1, sort_keys=true) }}", NULL,
                   "{\n \"a\": [],\n \"b\": {\n  \"c\": 1\n }\n}");
    ASSERT_RENDERS("{{ 'é'|tojson(ensure_ascii=true) }}{{ [1, 2]|tojson(separators=(',', ':')) }}", NULL,
                   "\"\\u00e9\"[1,2]");
    ASSERT_FAILS("{{ nothing|tojson }}", NULL, "Object of type Undefined is not JSON serializable");
}
END_TEST

START_TEST(tests_say_what_python_types_are)
{
    ASSERT_RENDERS("{{ 1 is odd }}{{ none is none }}{{ 'a' is string }}{{ true is number }}{{ true is integer }}"
                   "{{ 1.0 is float }}{{ {} is mapping }}{{ 'a' is iterable }}{{ 3 is divisibleby 3 }}"
                   "{{ 2 is in [2] }}{{ x is not defined }}{{ 'ab' is lower }}{{ true is sameas true }}",
                   NULL, "TrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrue");
}
END_TEST

START_TEST(python_string_and_dict_methods)
{
    ASSERT_RENDERS("{{ ' a  b '.split() }}{{ 'a,b,,c'.split(',') }}{{ 'a,b,c'.split(',', 1) }}{{ 'a,b,c'.rsplit(',', 1) }}",
                   NULL, "['a', 'b']['a', 'b', '', 'c']['a', 'b,c']['a,b', 'c']");
    ASSERT_RENDERS("{{ '\\n\\nx\\n'.lstrip('\\n') }}|{{ '  x  '.strip() }}|{{ 'ab'.startswith('a') }}"
                   "{{ 'ab'.endswith(('x', 'b')) }}|{{ \"they're\".title() }}|{{ '{} {x}'.format(1, x=2) }}|{{ '-'.join('ab') }}",
                   NULL, "x\n|x|TrueTrue|They'Re|1 2|a-b");
    ASSERT_RENDERS("{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 0) }}{{ d.keys()|list }}{{ d['a'] }}{{ d.a }}",
                   "{\"d\": {\"a\": 1}}", "1None0['a']11");
    ASSERT_RENDERS("{{ d.items() }}{{ d.values() }}|{{ d.keys()[0] }}|", "{\"d\": {\"a\": 1}}",
                   "dict_items([('a', 1)])dict_values([1])||");
    ASSERT_RENDERS("{{ '%s=%d' % ('n', 3) }}|{{ '%-3s|' % 'a' }}", NULL, "n=3|a  |");
    ASSERT_FAILS("{{ [1].append(2) }}", NULL, "unsafe");
}
END_TEST

/* ---- errors and limits ---- */

START_TEST(syntax_errors_name_line_and_column)
{
    ASSERT_FAILS("hello\n{% if %}", NULL, "line 2, column 7: expected an expression");
    ASSERT_FAILS("{% for x in y %}", NULL, "'endfor' is missing");
    ASSERT_FAILS("{{ x|nope }}", NULL, "no filter named 'nope'");
    ASSERT_FAILS("{{ x is nope }}", NULL, "no test named 'nope'");
    ASSERT_FAILS("{% frob %}", NULL, "unknown tag 'frob'");
    ASSERT_FAILS("{{ 'open }}", NULL, "unexpected char");
    ASSERT_FAILS("{# open", NULL, "missing end of comment");
    ASSERT_FAILS("{% if true %}{% endfor %}", NULL, "unexpected tag 'endfor' inside 'if'");
}
END_TEST

START_TEST(raise_exception_gives_its_message_verbatim)
{
    ck_assert_ptr_null(render("x{{ raise_exception('Roles must alternate') }}", NULL));
    ck_assert_str_eq(err, "Roles must alternate");
    ck_assert(raised);
    ck_assert_ptr_null(render("{{ nothing.x }}", NULL));
    ck_assert(!raised);
}
END_TEST

START_TEST(limits_stop_hostile_templates)
{
    struct jinja_limits lim = test_limits;
    char *out;

    lim.max_output_bytes = 1000;
    ck_assert_ptr_null(render_lim("{% for i in range(1000) %}xx{% endfor %}", NULL, &lim));
    ck_assert_msg(strstr(err, "longer than 1000 bytes"), "%s", err);
    lim = test_limits;
    ck_assert_ptr_null(render_lim("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
                                  NULL, &lim));
    ck_assert_msg(strstr(err, "loop iterations"), "%s", err);
    ck_assert_ptr_null(render_lim("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, &lim));
    ck_assert_msg(strstr(err, "nests deeper"), "%s", err);
    ck_assert_ptr_null(render_lim("{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                                  "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", NULL, &lim));
    ck_assert_msg(strstr(err, "bytes of memory"), "%s", err);
    lim.max_work = 5000;
    ck_assert_ptr_null(render_lim("{% for i in range(10000) %}{% endfor %}", NULL, &lim));
    ck_assert_msg(strstr(err, "steps of work"), "%s", err);
    ck_assert_ptr_null(render("{{ range(1000000)|length }}", NULL));
    ck_assert_msg(strstr(err, "Range too big"), "%s", err);
    /* deep nesting is refused when parsing, before any recursion can run out of stack */
    {
        char src[4000];

        memset(src, '(', sizeof src - 1);
        src[sizeof src - 1] = '\0';
        memcpy(src, "{{ ", 3);
        ck_assert_ptr_null(render(src, NULL));
        ck_assert_msg(strstr(err, "nested") != NULL, "%s", err);
    }
    out = render("{% for i in range(10) %}{{ i }}{% endfor %}", NULL);
    ck_assert_str_eq(out, "0123456789");
    free(out);
}
END_TEST

START_TEST(arbitrary_bytes_never_crash_the_parser_or_renderer)
{
    /* A fixed-seed stream of template-ish garbage: every outcome is fine except a crash,
     * a hang or a leak (valgrind and the timeout watch those). */
    static const char *const atoms[] = {
        "{{", "}}", "{%", "%}", "{#", "#}", "-", "+", " ", "\n", "'", "\"", "\\", "(", ")", "[", "]",
        "{", "}", ",", ".", ":", "|", "if ", "for ", "in ", "endif", "endfor", "set ", "=", "x", "1",
        "1.5", "not ", "and ", "is ", "defined", "loop", "range(3)", "tojson", "macro ", "m()", "\xff", "é",
        "raw", "endraw", "~", "**", "//", "%", "ns.a", "namespace()", "call ", "caller()",
    };
    uint64_t s = 42;

    for (int iter = 0; iter < 3000; iter++) {
        char src[256];
        size_t n = 0;
        int k = 1 + (int)((s >> 33) % 24);

        while (k-- > 0) {
            const char *a;

            s = s * 6364136223846793005ull + 1442695040888963407ull;
            a = atoms[(s >> 33) % ARRAY_LEN(atoms)];
            if (n + strlen(a) >= sizeof src)
                break;
            memcpy(src + n, a, strlen(a));
            n += strlen(a);
        }
        src[n] = '\0';
        free(render(src, "{\"x\": [1, {\"a\": \"b\"}], \"messages\": []}"));
    }
}
END_TEST

Suite *jinja_suite(void)
{
    Suite *s = suite_create("jinja");
    TCase *ws = tcase_create("whitespace"), *st = tcase_create("statements"), *ex = tcase_create("expressions");
    TCase *fl = tcase_create("filters"), *er = tcase_create("errors");

    tcase_add_test(ws, dash_strips_whitespace_on_its_side);
    tcase_add_test(ws, trim_blocks_drops_one_newline_after_a_block_tag);
    tcase_add_test(ws, lstrip_blocks_drops_indentation_before_a_block_tag);
    tcase_add_test(ws, newlines_are_normalised_and_one_trailing_newline_dropped);
    tcase_add_test(ws, raw_blocks_are_not_interpreted);
    tcase_add_test(st, loop_variables_count_as_jinja_does);
    tcase_add_test(st, loop_filters_and_else_branches);
    tcase_add_test(st, break_and_continue_work_in_nested_blocks);
    tcase_add_test(st, tuples_unpack_in_for_and_set);
    tcase_add_test(st, set_inside_a_loop_does_not_leak_but_namespace_does);
    tcase_add_test(st, macros_take_defaults_keywords_and_a_caller);
    tcase_add_test(st, set_blocks_filter_blocks_and_generation_render_their_body);
    tcase_add_test(ex, arithmetic_follows_python);
    tcase_add_test(ex, numbers_print_as_python_prints_them);
    tcase_add_test(ex, containers_print_as_python_repr);
    tcase_add_test(ex, comparisons_chain_and_membership_tests);
    tcase_add_test(ex, subscripts_and_slices_count_code_points);
    tcase_add_test(ex, undefined_prints_empty_but_fails_when_used);
    tcase_add_test(fl, string_filters);
    tcase_add_test(fl, sequence_filters);
    tcase_add_test(fl, tojson_matches_python_json_dumps);
    tcase_add_test(fl, tests_say_what_python_types_are);
    tcase_add_test(fl, python_string_and_dict_methods);
    tcase_add_test(er, syntax_errors_name_line_and_column);
    tcase_add_test(er, raise_exception_gives_its_message_verbatim);
    tcase_add_test(er, limits_stop_hostile_templates);
    tcase_add_test(er, arbitrary_bytes_never_crash_the_parser_or_renderer);
    tcase_set_timeout(er, 60);
    suite_add_tcase(s, ws);
    suite_add_tcase(s, st);
    suite_add_tcase(s, ex);
    suite_add_tcase(s, fl);
    suite_add_tcase(s, er);
    return s;
}
