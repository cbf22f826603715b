/* test_read_file.c — whole-file reads (engine/base/util.c, into a struct buf): every byte
 * and the NUL at sizes around the buffer's doublings, the max_bytes bound on both sides,
 * files whose size says nothing (procfs) read by growing up to the bound, and what is not
 * a regular file refused at once. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/util.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/osprey-read-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char path[128];

    snprintf(path, sizeof path, "%s/f", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/fifo", dir);
    unlink(path);
    rmdir(dir);
}

/* Writes n bytes i % 251 to dir/f and returns its path. */
static const char *write_bytes(size_t n)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof path, "%s/f", dir);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < n; i++)
        fputc((int)(i % 251), f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

START_TEST(every_byte_comes_back_with_a_nul_at_any_size)
{
    static const size_t sizes[] = { 0, 1, 62, 63, 64, 65, 65535, 65536, 65537, 300000 };
    char err[ERR_LEN];

    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        const char *path = write_bytes(sizes[k]);

        for (int bounded = 0; bounded < 2; bounded++) {
            char *data;
            size_t len = 12345;

            ck_assert_int_eq(bounded ? read_file_bounded(path, sizes[k], &data, &len, err)
                                     : read_file(path, &data, &len, err), 0);
            ck_assert_uint_eq(len, sizes[k]);
            ck_assert_uint_eq((unsigned char)data[len], 0);
            for (size_t i = 0; i < len; i++)
                ck_assert_uint_eq((unsigned char)data[i], i % 251);
            free(data);
        }
    }
}
END_TEST

START_TEST(a_file_past_max_bytes_is_refused_by_its_size)
{
    const char *path = write_bytes(1000);
    char err[ERR_LEN], *data = (char *)1;

    ck_assert_int_eq(read_file_bounded(path, 999, &data, NULL, err), -EFBIG);
    ck_assert_ptr_null(data);
    ck_assert_msg(strstr(err, path) && strstr(err, "1000 bytes"), "%s", err);
}
END_TEST

/* procfs reports size 0: the read grows the buffer as it goes and stops one byte past
 * the bound. */
START_TEST(a_file_without_a_size_is_read_to_its_end_or_refused_past_the_bound)
{
    char err[ERR_LEN], *data, *want;
    size_t len, want_len;
    FILE *f;

    ck_assert_int_eq(read_file_bounded("/proc/self/maps", 1 << 20, &data, &len, err), 0);
    ck_assert_uint_gt(len, 200);                  /* more than the first reservation */
    ck_assert_uint_eq(strlen(data), len);
    ck_assert_ptr_nonnull(strstr(data, "[stack]"));
    free(data);
    /* /proc/self/cmdline is the same for every read: compare with stdio's. */
    f = fopen("/proc/self/cmdline", "rb");
    ck_assert_ptr_nonnull(f);
    want = malloc(1 << 16);
    want_len = fread(want, 1, 1 << 16, f);
    fclose(f);
    ck_assert_int_eq(read_file_bounded("/proc/self/cmdline", 1 << 16, &data, &len, err), 0);
    ck_assert_uint_eq(len, want_len);
    ck_assert_mem_eq(data, want, len);
    free(data);
    free(want);
    ck_assert_int_eq(read_file_bounded("/proc/self/maps", 100, &data, &len, err), -EFBIG);
    ck_assert_ptr_null(data);
    ck_assert_msg(strstr(err, "grew past the 100 bytes"), "%s", err);
}
END_TEST

START_TEST(what_is_not_a_regular_file_is_refused_at_once)
{
    char err[ERR_LEN], path[128], *data;

    ck_assert_int_eq(read_file_bounded(dir, 1 << 20, &data, NULL, err), -EINVAL);
    ck_assert_msg(strstr(err, "a directory"), "%s", err);
    snprintf(path, sizeof path, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_int_eq(read_file_bounded(path, 1 << 20, &data, NULL, err), -EINVAL);   /* no hang */
    ck_assert_msg(strstr(err, "FIFO"), "%s", err);
    snprintf(path, sizeof path, "%s/missing", dir);
    ck_assert_int_eq(read_file_bounded(path, 1 << 20, &data, NULL, err), -ENOENT);
    ck_assert_int_eq(read_file(path, &data, NULL, err), -ENOENT);
    ck_assert_msg(strstr(err, path), "%s", err);
}
END_TEST

Suite *read_file_suite(void)
{
    Suite *s = suite_create("read_file");
    TCase *tc = tcase_create("read_file");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, every_byte_comes_back_with_a_nul_at_any_size);
    tcase_add_test(tc, a_file_past_max_bytes_is_refused_by_its_size);
    tcase_add_test(tc, a_file_without_a_size_is_read_to_its_end_or_refused_past_the_bound);
    tcase_add_test(tc, what_is_not_a_regular_file_is_refused_at_once);
    suite_add_tcase(s, tc);
    return s;
}
