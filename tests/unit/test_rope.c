/* test_rope.c — inverse frequencies of the rotary embedding against values worked out by
 * hand from Hugging Face's formulas (transformers' _compute_default_rope_parameters,
 * _compute_linear_scaling_rope_parameters and _compute_llama3_parameters), evaluated in
 * double precision outside osprey. */
#include <check.h>
#include <errno.h>
#include <math.h>

#include "engine/rope.h"
#include "engine/base/util.h"

static void assert_rel(float got, double want)
{
    ck_assert_msg(fabs(got - want) <= 2e-7 * fabs(want), "got %.9g, want %.9g", got, want);
}

START_TEST(default_inv_freq_is_theta_to_the_minus_2i_over_head_dim)
{
    struct rope_scaling s = { .type = ROPE_DEFAULT };
    float f[8];

    ck_assert_int_eq(rope_inv_freq(f, 16, 10000.0, &s, NULL), 0);
    assert_rel(f[0], 1.0);
    assert_rel(f[1], 0.31622776601683794);   /* 10000^(-1/8) */
    assert_rel(f[4], 0.01);                  /* 10000^(-1/2) */
    assert_rel(f[7], 0.00031622776601683794);
}
END_TEST

START_TEST(linear_scaling_divides_every_frequency_by_the_factor)
{
    struct rope_scaling s = { .type = ROPE_LINEAR, .factor = 4.0 };
    float f[8];

    ck_assert_int_eq(rope_inv_freq(f, 16, 10000.0, &s, NULL), 0);
    assert_rel(f[0], 0.25);
    assert_rel(f[1], 0.07905694150420949);
    assert_rel(f[7], 7.905694150420948e-05);
}
END_TEST

/* Llama 3.1's scaling: theta 500000, head_dim 128, factor 8, low_freq_factor 1,
 * high_freq_factor 4, original context 8192. Wavelength 2π/f below 8192/4 = 2048 keeps f;
 * above 8192/1 divides it by 8; between, s = (8192/wavelen - 1) / (4 - 1) and
 * f' = (1 - s) f / 8 + s f. Index 28: wavelength 1956.5 (kept); 29: 2401.7, s = 0.803621;
 * 31: 3619.2, s = 0.421151; 34: 6695.1, s = 0.074527; 35: 8218.7 (divided). */
START_TEST(llama3_scaling_matches_the_hand_computed_frequencies)
{
    struct rope_scaling s = { .type = ROPE_LLAMA3, .factor = 8.0, .low_freq_factor = 1.0,
                              .high_freq_factor = 4.0, .original_max_position_embeddings = 8192 };
    float f[64];

    ck_assert_int_eq(rope_inv_freq(f, 128, 500000.0, &s, NULL), 0);
    assert_rel(f[0], 1.0);
    assert_rel(f[10], 0.12868737343265052);
    assert_rel(f[28], 0.0032114459947525913);
    assert_rel(f[29], 0.002166570763503359);   /* unscaled 0.0026160992529250353 */
    assert_rel(f[31], 0.0008567514129196321);  /* unscaled 0.0017360467021768655 */
    assert_rel(f[34], 0.00017850781276799638); /* unscaled 0.0009384738703573801 */
    assert_rel(f[35], 9.556212353964683e-05);  /* 0.0007644969883171747 / 8 */
    assert_rel(f[63], 3.068925988914511e-07);
}
END_TEST

START_TEST(bad_rope_parameters_are_refused_with_a_message)
{
    struct rope_scaling def = { .type = ROPE_DEFAULT };
    struct rope_scaling lin = { .type = ROPE_LINEAR, .factor = 0.0 };
    struct rope_scaling l3 = { .type = ROPE_LLAMA3, .factor = 8.0, .low_freq_factor = 2.0,
                               .high_freq_factor = 2.0, .original_max_position_embeddings = 8192 };
    char err[ERR_LEN] = "";
    float f[64];

    ck_assert_int_eq(rope_inv_freq(f, 15, 10000.0, &def, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "head_dim 15"));
    ck_assert_int_eq(rope_inv_freq(f, 16, 0.0, &def, err), -EINVAL);
    ck_assert_int_eq(rope_inv_freq(f, 16, 10000.0, &lin, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "factor"));
    ck_assert_int_eq(rope_inv_freq(f, 16, 10000.0, &l3, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "high_freq_factor"));
}
END_TEST

Suite *rope_suite(void)
{
    Suite *s = suite_create("rope");
    TCase *tc = tcase_create("rope");

    tcase_add_test(tc, default_inv_freq_is_theta_to_the_minus_2i_over_head_dim);
    tcase_add_test(tc, linear_scaling_divides_every_frequency_by_the_factor);
    tcase_add_test(tc, llama3_scaling_matches_the_hand_computed_frequencies);
    tcase_add_test(tc, bad_rope_parameters_are_refused_with_a_message);
    suite_add_tcase(s, tc);
    return s;
}
