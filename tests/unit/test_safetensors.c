/* test_safetensors.c — the safetensors reader and writer on files whose bytes the tests
 * write by hand: names, shapes, dtypes and data pointers; every kind of corruption gives a
 * message naming the file and tensor; sharded folders; st_write → st_open round trips. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/safetensors.h"
#include "fixtures.h"

/* A whole file in memory: 8-byte little-endian header length, the header padded with
 * spaces to a multiple of 8 bytes (as writers do, so data is aligned), data. */
struct blob {
    uint8_t *bytes;
    size_t size;
    size_t data_off;       /* where the data area starts */
};

static struct blob make_blob(const char *header, const void *data, size_t data_len)
{
    size_t len = strlen(header), hlen = (len + 7) / 8 * 8;
    struct blob b = { malloc(8 + hlen + data_len + 1), 8 + hlen + data_len, 8 + hlen };

    ck_assert_ptr_nonnull(b.bytes);
    for (int i = 0; i < 8; i++)
        b.bytes[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(b.bytes + 8, header, len);
    memset(b.bytes + 8 + len, ' ', hlen - len);
    if (data_len)
        memcpy(b.bytes + 8 + hlen, data, data_len);
    return b;
}

/* Parses a header over 32 bytes of data; returns rc, err filled. */
static int parse(const char *header, char *err)
{
    uint8_t data[32] = { 0 };
    struct blob b = make_blob(header, data, sizeof data);
    struct st_file f;
    int rc = st_parse_header(b.bytes, b.size, "dir/x.safetensors", &f, err);

    if (rc == 0)
        st_file_fini(&f);
    free(b.bytes);
    return rc;
}

/* The parse fails and err names the file and every given fragment. */
#define ck_parse_fails(header, ...) do { \
        char err_[ERR_LEN] = ""; \
        const char *want_[] = { "dir/x.safetensors", __VA_ARGS__ }; \
        ck_assert_int_eq(parse(header, err_), -EINVAL); \
        for (size_t i_ = 0; i_ < sizeof want_ / sizeof want_[0]; i_++) \
            ck_assert_msg(strstr(err_, want_[i_]), "'%s' lacks '%s'", err_, want_[i_]); \
    } while (0)

START_TEST(hand_built_file_gives_names_shapes_dtypes_and_pointers)
{
    float a[6] = { 1, 2, 3, 4, 5, 6 };
    uint16_t bvals[4] = { 0x3f80, 0x4000, 0xbf80, 0 };   /* bf16 1, 2, -1, 0 */
    uint8_t data[32];
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                      "\"b.weight\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]}}";
    struct blob blob;
    struct st_file f;
    char err[ERR_LEN] = "";

    memcpy(data, a, 24);
    memcpy(data + 24, bvals, 8);
    blob = make_blob(hdr, data, sizeof data);
    ck_assert_int_eq(st_parse_header(blob.bytes, blob.size, "m.safetensors", &f, err), 0);
    ck_assert_int_eq(f.num_tensors, 2);
    ck_assert_str_eq(f.tensors[0].name, "a");
    ck_assert_int_eq(f.tensors[0].dtype, DT_F32);
    ck_assert_int_eq(f.tensors[0].ndim, 2);
    ck_assert_int_eq(f.tensors[0].shape[0], 2);
    ck_assert_int_eq(f.tensors[0].shape[1], 3);
    ck_assert_uint_eq(f.tensors[0].nbytes, 24);
    ck_assert_ptr_eq(f.tensors[0].data, blob.bytes + blob.data_off);
    ck_assert_float_eq(((const float *)f.tensors[0].data)[5], 6.0f);
    ck_assert_str_eq(f.tensors[1].name, "b.weight");
    ck_assert_int_eq(f.tensors[1].dtype, DT_BF16);
    ck_assert_int_eq(f.tensors[1].ndim, 1);
    ck_assert_int_eq(f.tensors[1].shape[0], 4);
    ck_assert_uint_eq(f.tensors[1].nbytes, 8);
    ck_assert_ptr_eq(f.tensors[1].data, blob.bytes + blob.data_off + 24);
    ck_assert_uint_eq(((const uint16_t *)f.tensors[1].data)[2], 0xbf80);
    st_file_fini(&f);
    free(blob.bytes);
}
END_TEST

START_TEST(scalars_and_empty_tensors_are_valid)
{
    char err[ERR_LEN] = "";

    ck_assert_int_eq(parse("{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                           "\"e\":{\"dtype\":\"F16\",\"shape\":[0,7],\"data_offsets\":[4,4]}}",
                           err), 0);
}
END_TEST

START_TEST(file_shorter_than_the_length_field_is_refused)
{
    uint8_t five[5] = { 1, 0, 0, 0, 0 };
    struct st_file f;
    char err[ERR_LEN] = "";

    ck_assert_int_eq(st_parse_header(five, sizeof five, "dir/x.safetensors", &f, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "dir/x.safetensors"));
    ck_assert_ptr_nonnull(strstr(err, "truncated"));
}
END_TEST

START_TEST(header_length_beyond_the_file_is_refused)
{
    struct blob b = make_blob("{}", NULL, 0);
    struct st_file f;
    char err[ERR_LEN] = "";

    b.bytes[0] = 200;   /* claims 200 header bytes in a 16-byte file */
    ck_assert_int_eq(st_parse_header(b.bytes, b.size, "dir/x.safetensors", &f, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "dir/x.safetensors"));
    ck_assert_ptr_nonnull(strstr(err, "past the end"));
    free(b.bytes);
}
END_TEST

START_TEST(absurd_header_length_is_refused)
{
    struct blob b = make_blob("{}", NULL, 0);
    struct st_file f;
    char err[ERR_LEN] = "";

    b.bytes[5] = 1;     /* 2^40 + 8 */
    ck_assert_int_eq(st_parse_header(b.bytes, b.size, "dir/x.safetensors", &f, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "absurd"));
    b.bytes[5] = 0;
    b.bytes[7] = 0xff;  /* would wrap a signed or 8 + n computation */
    ck_assert_int_eq(st_parse_header(b.bytes, b.size, "dir/x.safetensors", &f, err), -EINVAL);
    free(b.bytes);
}
END_TEST

START_TEST(header_that_is_not_json_is_refused)
{
    ck_parse_fails("{\"a\":{\"dtype\":", "not valid JSON");
    ck_parse_fails("hello", "not valid JSON");
    ck_parse_fails("[1,2]", "not a JSON object");
    ck_parse_fails("{} xx", "after its JSON");
    ck_parse_fails("{\"__metadata__\":3}", "__metadata__");
}
END_TEST

START_TEST(offsets_outside_the_data_area_are_refused)
{
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}}",
                   "w", "outside the data area");
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}",
                   "w", "outside");
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
                   "w", "data_offsets");
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}",
                   "w", "data_offsets");
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", "w", "data_offsets");
}
END_TEST

START_TEST(length_that_disagrees_with_the_shape_is_refused)
{
    ck_parse_fails("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,16]}}",
                   "w", "16 bytes", "needs 12");
}
END_TEST

START_TEST(unsupported_and_unknown_dtypes_are_named)
{
    ck_parse_fails("{\"q.weight\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                   "q.weight", "unsupported dtype I8");
    ck_parse_fails("{\"q.weight\":{\"dtype\":\"F8_E5M2\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                   "q.weight", "unsupported dtype F8_E5M2");
    ck_parse_fails("{\"q.weight\":{\"dtype\":\"U16\",\"shape\":[4],\"data_offsets\":[0,8]}}",
                   "unsupported dtype U16");
    ck_parse_fails("{\"q.weight\":{\"dtype\":\"Q4_K\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                   "q.weight", "unknown dtype Q4_K");
    ck_parse_fails("{\"q.weight\":{\"dtype\":7,\"shape\":[4],\"data_offsets\":[0,4]}}",
                   "q.weight", "dtype");
}
END_TEST

START_TEST(bad_shapes_are_refused)
{
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                   "\"data_offsets\":[0,4]}}", "w", "overflows");
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
                   "\"data_offsets\":[0,4]}}", "w", "overflows");
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
                   "w", "shape[0]");
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
                   "w", "shape[0]");
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}",
                   "w", "5 dimensions");
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":\"4\",\"data_offsets\":[0,4]}}",
                   "w", "shape");
    ck_parse_fails("{\"w\":[1,2]}", "w", "not an object");
}
END_TEST

START_TEST(duplicate_names_are_refused)
{
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   "w", "twice");
}
END_TEST

START_TEST(misaligned_data_is_refused)
{
    /* The data area starts 8-aligned, so an F32 two bytes into it is misaligned. */
    ck_parse_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
                   "w", "aligned");
}
END_TEST

/* Every prefix of a valid file, and every single-byte change of its header, is either
 * accepted or refused with a message: never a crash or an out-of-bounds read (valgrind). */
START_TEST(every_truncation_and_byte_flip_is_handled)
{
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]}}";
    uint8_t data[32] = { 0 };
    struct blob b = make_blob(hdr, data, sizeof data);
    static const uint8_t flips[] = { 0x00, '"', '}', '9', '-', 0xff, ' ' };
    struct st_file f;
    char err[ERR_LEN];
    int ok = 0;

    for (size_t n = 0; n <= b.size; n++) {
        uint8_t *copy = malloc(n + (n == 0));   /* exact size: valgrind sees any overread */

        memcpy(copy, b.bytes, n);
        err[0] = '\0';
        if (st_parse_header(copy, n, "t.safetensors", &f, err) == 0) {
            ok++;
            st_file_fini(&f);
        } else {
            ck_assert_ptr_nonnull(strstr(err, "t.safetensors"));
        }
        free(copy);
    }
    ck_assert_int_eq(ok, 1);  /* only the whole file parses */
    for (size_t i = 0; i < b.data_off; i++)
        for (size_t k = 0; k < sizeof flips; k++) {
            uint8_t *copy = malloc(b.size);

            memcpy(copy, b.bytes, b.size);
            copy[i] = flips[k];
            err[0] = '\0';
            if (st_parse_header(copy, b.size, "t.safetensors", &f, err) == 0)
                st_file_fini(&f);
            else
                ck_assert_ptr_nonnull(strstr(err, "t.safetensors"));
            free(copy);
        }
    free(b.bytes);
}
END_TEST

/* Writes a one-file safetensors by hand into dir/name. */
static void write_shard(const char *dir, const char *name, const char *header, const void *data,
                        size_t len)
{
    struct blob b = make_blob(header, data, len);

    ck_assert_int_eq(fixture_write(dir, name, b.bytes, b.size), 0);
    free(b.bytes);
}

START_TEST(sharded_index_opens_both_shards)
{
    char dir[FIXTURE_PATH], err[ERR_LEN] = "";
    float one[2] = { 1, 2 }, two[4] = { 3, 4, 5, 6 };
    const char *index = "{\"metadata\":{\"total_size\":24},\"weight_map\":{"
                        "\"x.weight\":\"model-00001-of-00002.safetensors\","
                        "\"y.weight\":\"model-00002-of-00002.safetensors\","
                        "\"z.weight\":\"model-00002-of-00002.safetensors\"}}";
    struct st_set *set;
    const struct tensor_ref *t;
    int seen = 0;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    write_shard(dir, "model-00001-of-00002.safetensors",
                "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                one, sizeof one);
    write_shard(dir, "model-00002-of-00002.safetensors",
                "{\"y.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"z.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]}}",
                two, sizeof two);
    ck_assert_int_eq(fixture_write(dir, "model.safetensors.index.json", index, strlen(index)), 0);
    ck_assert_int_eq(st_open(&set, dir, err), 0);
    ck_assert_int_eq(set->num_files, 2);
    ck_assert_int_eq(st_num_tensors(set), 3);
    ck_assert_ptr_nonnull(t = st_find(set, "z.weight"));
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_float_eq(((const float *)t->data)[1], 6.0f);
    ck_assert_ptr_nonnull(strstr(st_file_of(set, t), "model-00002-of-00002.safetensors"));
    ck_assert_ptr_nonnull(t = st_find(set, "x.weight"));
    ck_assert_float_eq(((const float *)t->data)[0], 1.0f);
    ck_assert_ptr_nonnull(strstr(st_file_of(set, t), "model-00001-of-00002.safetensors"));
    ck_assert_ptr_null(st_find(set, "w.weight"));
    for (int i = 0; i < st_num_tensors(set); i++)
        seen |= 1 << (st_tensor(set, i)->name[0] - 'x');
    ck_assert_int_eq(seen, 7);
    st_close(set);
    fixture_rmtree(dir);
}
END_TEST

START_TEST(broken_indexes_are_refused_with_the_file_named)
{
    char dir[FIXTURE_PATH], err[ERR_LEN] = "";
    float one[2] = { 1, 2 };
    struct st_set *set;
    static const struct { const char *index, *want; } cases[] = {
        { "{\"weight_map\":{\"x.weight\":\"a.safetensors\",\"q.weight\":\"a.safetensors\"}}",
          "q.weight" },
        { "{\"weight_map\":{\"x.weight\":\"../a.safetensors\"}}", "not a file name" },
        { "{\"weight_map\":{\"x.weight\":\"b.safetensors\"}}", "b.safetensors" },
        { "{\"weight_map\":[]}", "weight_map" },
        { "{\"weight_map\":", "not valid JSON" },
    };

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    write_shard(dir, "a.safetensors",
                "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                one, sizeof one);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(fixture_write(dir, "model.safetensors.index.json", cases[i].index,
                                       strlen(cases[i].index)), 0);
        err[0] = '\0';
        ck_assert_int_lt(st_open(&set, dir, err), 0);
        ck_assert_ptr_null(set);
        ck_assert_msg(strstr(err, cases[i].want), "case %zu: '%s'", i, err);
    }
    fixture_rmtree(dir);
}
END_TEST

START_TEST(tensor_in_two_shards_is_refused)
{
    char dir[FIXTURE_PATH], err[ERR_LEN] = "";
    float one[2] = { 1, 2 };
    const char *hdr = "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}      ";
    const char *index = "{\"weight_map\":{\"x.weight\":\"a.safetensors\",\"y\":\"b.safetensors\"}}";
    struct st_set *set;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    write_shard(dir, "a.safetensors", hdr, one, sizeof one);
    write_shard(dir, "b.safetensors", hdr, one, sizeof one);
    ck_assert_int_eq(fixture_write(dir, "model.safetensors.index.json", index, strlen(index)), 0);
    ck_assert_int_eq(st_open(&set, dir, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "x.weight"));
    ck_assert_ptr_nonnull(strstr(err, "a.safetensors"));
    ck_assert_ptr_nonnull(strstr(err, "b.safetensors"));
    fixture_rmtree(dir);
}
END_TEST

START_TEST(folder_without_weights_and_truncated_file_are_refused)
{
    char dir[FIXTURE_PATH], err[ERR_LEN] = "";
    struct st_set *set;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(st_open(&set, dir, err), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "no model.safetensors"));
    ck_assert_int_eq(fixture_write(dir, "model.safetensors", "\x10\0\0", 3), 0);
    ck_assert_int_eq(st_open(&set, dir, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "model.safetensors"));
    ck_assert_ptr_nonnull(strstr(err, "truncated"));
    st_close(NULL);
    fixture_rmtree(dir);
}
END_TEST

/* Element i of the streamed tensor: a value the reader can recompute. */
static int fill_index_cb(void *ctx, const struct st_write_tensor *t, void *buf, size_t off,
                         size_t n)
{
    (void)ctx; (void)t;
    for (size_t i = 0; i < n / 4; i++)
        ((float *)buf)[i] = (float)(off / 4 + i);
    return 0;
}

START_TEST(written_file_reads_back_with_padding_and_streamed_data)
{
    char dir[FIXTURE_PATH], path[FIXTURE_PATH + 32], err[ERR_LEN] = "";
    uint16_t small[3] = { 0x3f80, 0x4000, 0x4040 };
    const int64_t big = 2500000;   /* 10 MB of F32: more than one write chunk */
    struct st_write_tensor w[2] = {
        { .name = "small \"quoted\"", .dtype = DT_BF16, .ndim = 1, .shape = { 3 }, .data = small },
        { .name = "big", .dtype = DT_F32, .ndim = 2, .shape = { 2, big / 2 },
          .fill = fill_index_cb },
    };
    struct st_set *set;
    const struct tensor_ref *t;
    char *raw;
    size_t len;
    uint64_t hlen = 0;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_int_eq(st_write(path, w, 2, err), 0);
    ck_assert_int_eq(read_file(path, &raw, &len, err), 0);
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | (uint8_t)raw[i];
    ck_assert_uint_eq(hlen % 8, 0);
    ck_assert_int_eq(raw[8 + hlen - 1], ' ');
    ck_assert_uint_eq(len, 8 + hlen + 6 + 4 * big);
    ck_assert_ptr_nonnull(strstr(raw + 8, "\"__metadata__\":{\"format\":\"pt\"}"));
    free(raw);

    ck_assert_msg(st_open(&set, dir, err) == 0, "%s", err);
    ck_assert_ptr_nonnull(t = st_find(set, "small \"quoted\""));
    ck_assert_int_eq(t->dtype, DT_BF16);
    ck_assert_int_eq(memcmp(t->data, small, sizeof small), 0);
    ck_assert_ptr_nonnull(t = st_find(set, "big"));
    ck_assert_int_eq(t->shape[1], big / 2);
    for (int64_t i = 0; i < big; i += 997)
        ck_assert_float_eq(((const float *)t->data)[i], (float)i);
    ck_assert_float_eq(((const float *)t->data)[big - 1], (float)(big - 1));
    st_close(set);
    fixture_rmtree(dir);
}
END_TEST

START_TEST(write_to_a_missing_folder_fails_with_the_path)
{
    float x = 1;
    struct st_write_tensor w = { .name = "x", .dtype = DT_F32, .ndim = 1, .shape = { 1 }, .data = &x };
    char err[ERR_LEN] = "";

    ck_assert_int_lt(st_write("/nonexistent-osprey/dir/m.safetensors", &w, 1, err), 0);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent-osprey/dir/m.safetensors"));
}
END_TEST

Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, hand_built_file_gives_names_shapes_dtypes_and_pointers);
    tcase_add_test(tc, scalars_and_empty_tensors_are_valid);
    tcase_add_test(tc, file_shorter_than_the_length_field_is_refused);
    tcase_add_test(tc, header_length_beyond_the_file_is_refused);
    tcase_add_test(tc, absurd_header_length_is_refused);
    tcase_add_test(tc, header_that_is_not_json_is_refused);
    tcase_add_test(tc, offsets_outside_the_data_area_are_refused);
    tcase_add_test(tc, length_that_disagrees_with_the_shape_is_refused);
    tcase_add_test(tc, unsupported_and_unknown_dtypes_are_named);
    tcase_add_test(tc, bad_shapes_are_refused);
    tcase_add_test(tc, duplicate_names_are_refused);
    tcase_add_test(tc, misaligned_data_is_refused);
    tcase_add_test(tc, every_truncation_and_byte_flip_is_handled);
    tcase_add_test(tc, sharded_index_opens_both_shards);
    tcase_add_test(tc, broken_indexes_are_refused_with_the_file_named);
    tcase_add_test(tc, tensor_in_two_shards_is_refused);
    tcase_add_test(tc, folder_without_weights_and_truncated_file_are_refused);
    tcase_add_test(tc, written_file_reads_back_with_padding_and_streamed_data);
    tcase_add_test(tc, write_to_a_missing_folder_fails_with_the_path);
    suite_add_tcase(s, tc);
    return s;
}
