/* schema_check.h — an independent JSON Schema validator and a random schema generator for the
 * property tests (grammar engine, tool calls under tool_choice required). */
#ifndef OSPREY_TEST_SCHEMA_CHECK_H
#define OSPREY_TEST_SCHEMA_CHECK_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether v validates against s (type, const, enum, anyOf, numeric bounds, string lengths,
 * pattern (PCRE2), uuid and date-time formats, arrays with items/prefixItems/min/maxItems,
 * objects with properties/required/additionalProperties false). */
bool schema_check_valid(const cJSON *s, const cJSON *v);
/* Whether pattern (PCRE2, UTF) matches s[0, len) somewhere. */
bool schema_check_re_match(const char *pattern, const char *s, size_t len);
/* The generator's state: one sequence per seed (not thread-safe). */
void schema_check_seed(uint64_t seed);
int schema_check_rnd(int n);        /* uniform in [0, n) */
/* A random schema of the subset above; depth 0 at the top (deeper ones nest less). */
cJSON *schema_check_gen(int depth);

#endif
