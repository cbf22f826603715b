/* test_stress_models.c — broken model folders, each made from a copy of the tiny generated
 * model by one edit (weights truncated or corrupted, a tensor of the wrong dtype or shape or
 * missing, the tokenizer missing or broken, config.json wrong, a chat template that cannot
 * render; a FIFO, a device or a folder in place of a file; a JSON file past its size limit).
 * `osprey serve` and, where the part is one it reads, `osprey generate` must exit 1 with one
 * error line naming the file and the field: never a crash, never a hang. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/base/util.h"
#include "tests/stress/stress_util.h"

static const char *const files[] = {
    "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
};

static char dir[600];

static void write_or_fail(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_msg(f && fwrite(data, 1, len, f) == len && fclose(f) == 0, "cannot write %s", path);
}

/* A fresh copy of the tiny model under a name of its own. */
static void copy_model(const char *name)
{
    const char *tmp = getenv("OSPREY_TEST_TMP");
    char cmd[1400];

    snprintf(dir, sizeof dir, "%s/broken-%d-%s", tmp && tmp[0] ? tmp : "/tmp", (int)getpid(), name);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char from[700], to[700], *data = NULL, err[ERR_LEN];
        size_t len;

        snprintf(from, sizeof from, "%s/%s", daemon_model_dir(), files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        ck_assert_msg(read_file(from, &data, &len, err) == 0, "%s", err);
        write_or_fail(to, data, len);
        free(data);
    }
}

static void remove_copy(void)
{
    char cmd[700];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
}

static char *read_copy(const char *file, size_t *len)
{
    char path[700], *data = NULL, err[ERR_LEN];

    snprintf(path, sizeof path, "%s/%s", dir, file);
    ck_assert_msg(read_file(path, &data, len, err) == 0, "%s", err);
    return data;
}

static void write_copy(const char *file, const char *data, size_t len)
{
    char path[700];

    snprintf(path, sizeof path, "%s/%s", dir, file);
    write_or_fail(path, data, len);
}

/* ---- the edits ---- */

static void truncate_weights(size_t keep)
{
    size_t len;
    char *data = read_copy("model.safetensors", &len);

    write_copy("model.safetensors", data, MIN(keep, len));
    free(data);
}

/* Rewrites the safetensors header (8-byte little-endian length, then JSON) through edit,
 * padded with spaces to its old length so that every data offset stays right. */
static void edit_header(void (*edit)(cJSON *header))
{
    size_t len;
    char *data = read_copy("model.safetensors", &len), *text;
    uint64_t n = 0;
    cJSON *h;

    for (int i = 7; i >= 0; i--)
        n = n << 8 | (unsigned char)data[i];
    ck_assert(n + 8 <= len);
    ck_assert_ptr_nonnull(h = cJSON_ParseWithLength(data + 8, n));
    edit(h);
    text = cJSON_PrintUnformatted(h);
    ck_assert_uint_le(strlen(text), n);
    memset(data + 8, ' ', n);
    memcpy(data + 8, text, strlen(text));
    write_copy("model.safetensors", data, len);
    free(text);
    cJSON_Delete(h);
    free(data);
}

static void set_tensor(cJSON *h, const char *name, const char *key, cJSON *value)
{
    ck_assert(cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(h, name), key, value));
}

static void dtype_i8(cJSON *h)
{
    set_tensor(h, "model.norm.weight", "dtype", cJSON_CreateString("I8"));
}

static void dtype_f32(cJSON *h)
{
    set_tensor(h, "model.norm.weight", "dtype", cJSON_CreateString("F32"));
}

static void shape_transposed(cJSON *h)
{
    static const int shape[] = { 64, 512 };

    set_tensor(h, "lm_head.weight", "shape", cJSON_CreateIntArray(shape, 2));
}

static void tensor_renamed(cJSON *h)
{
    cJSON *t = cJSON_DetachItemFromObjectCaseSensitive(h, "model.layers.1.mlp.down_proj.weight");

    cJSON_AddItemToObject(h, "model.layers.1.mlp.down_proj.weigth", t);
}

/* Sets key of a JSON file of the copy to value (JSON text). */
static void set_json(const char *file, const char *key, const char *value)
{
    size_t len;
    char *data = read_copy(file, &len), *text;
    cJSON *j = cJSON_ParseWithLength(data, len), *v = cJSON_Parse(value);

    ck_assert(j && v);
    cJSON_DeleteItemFromObjectCaseSensitive(j, key);
    cJSON_AddItemToObject(j, key, v);
    text = cJSON_Print(j);
    write_copy(file, text, strlen(text));
    free(text);
    cJSON_Delete(j);
    free(data);
}

static void remove_file(const char *file)
{
    char path[700];

    snprintf(path, sizeof path, "%s/%s", dir, file);
    ck_assert_int_eq(unlink(path), 0);
}

/* ---- running osprey ---- */

struct outcome {
    int status;                      /* exit status, 128 + signal, or -1: killed after the timeout */
    char *log;                       /* stderr */
};

static void run(const char *const *args, struct outcome *o)
{
    char log[700], err[ERR_LEN];
    size_t len;
    pid_t pid;
    int status = 0;
    double end = stress_now() + 30;

    snprintf(log, sizeof log, "%s.log", dir);
    if ((pid = fork()) == 0) {
        int out = open("/dev/null", O_WRONLY), fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (out < 0 || fd < 0 || dup2(out, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    ck_assert_int_gt(pid, 0);
    o->status = -1;
    while (stress_now() < end) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            o->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        usleep(10000);
    }
    if (o->status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    o->log = NULL;
    ck_assert_msg(read_file(log, &o->log, &len, err) == 0, "%s", err);
    unlink(log);
}

/* Lines of text that start with prefix; the last is copied to line. */
static int lines_starting(const char *text, const char *prefix, char *line, size_t cap)
{
    int n = 0;

    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix))) {
            const char *end = strchr(p, '\n');

            snprintf(line, cap, "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
            n++;
        }
    return n;
}

/* The command fails with exit 1 and one error line naming the file and field. */
static void assert_refused(const char *what, const char *const *args, const char *prefix,
                           const char *file, const char *field)
{
    struct outcome o;
    char line[1024] = "";
    int n;

    run(args, &o);
    ck_assert_msg(!daemon_tool_report(o.log), "%s: osprey %s: a sanitizer report:\n%s", what, args[1], o.log);
    n = lines_starting(o.log, prefix, line, sizeof line);
    if (o.status != 1 || n != 1 || !strstr(line, file) || !strstr(line, field))
        fprintf(stderr, "---- %s %s ----\n%s---- end ----\n", what, args[1], o.log ? o.log : "");
    ck_assert_msg(o.status == 1, "%s: osprey %s exited %d (want 1; >128 is a signal, -1 a hang)", what,
                  args[1], o.status);
    ck_assert_msg(n == 1, "%s: %d lines start with '%s'", what, n, prefix);
    ck_assert_msg(strstr(line, file) && strstr(line, field), "%s: '%s' names not %s and %s", what, line,
                  file, field);
    printf("bad model folder, %-28s osprey %-8s exit %d: %s\n", what, args[1], o.status,
           strstr(line, dir) ? strstr(line, dir) + strlen(dir) + 1 : line);
    free(o.log);
}

static void assert_both_refuse(const char *what, const char *file, const char *field, bool generate)
{
    const char *serve[] = { daemon_bin(), "serve", "--model", dir, "--port", "0", "--backend", "cpu",
                            "--kv-cache-memory", "32MiB", "--threads", "1", NULL };
    const char *gen[] = { daemon_bin(), "generate", "--model", dir, "--prompt", "hello", "--max-tokens", "2",
                          "--backend", "cpu", "--threads", "1", "--kv-cache-memory", "32MiB", NULL };

    assert_refused(what, serve, "<3>", file, field);
    if (generate)
        assert_refused(what, gen, "osprey generate: ", file, field);
}

/* ---- the folders ---- */

START_TEST(truncated_or_corrupt_weights_are_named)
{
    copy_model("truncated");
    truncate_weights(100000);            /* past the header, inside the data */
    assert_both_refuse("truncated weights", "model.safetensors", "data_offsets", true);
    copy_model("truncated-header");
    truncate_weights(1000);              /* inside the header */
    assert_both_refuse("truncated header", "model.safetensors", "header length", true);
    copy_model("empty-weights");
    truncate_weights(0);
    assert_both_refuse("empty weights", "model.safetensors", "length", true);
    copy_model("corrupt-header");
    {
        size_t len;
        char *data = read_copy("model.safetensors", &len);

        memcpy(data + 20, "\x01\xff{]", 4);      /* bytes that no JSON holds there */
        write_copy("model.safetensors", data, len);
        free(data);
    }
    assert_both_refuse("corrupt header", "model.safetensors", "JSON", true);
    remove_copy();
}
END_TEST

START_TEST(a_tensor_of_the_wrong_dtype_or_shape_or_missing_is_named)
{
    copy_model("dtype-i8");
    edit_header(dtype_i8);
    assert_both_refuse("unsupported dtype", "model.safetensors", "model.norm.weight: unsupported dtype I8", true);
    copy_model("dtype-f32");
    edit_header(dtype_f32);              /* F32 needs twice the bytes the offsets give */
    assert_both_refuse("dtype against its bytes", "model.safetensors", "model.norm.weight", true);
    copy_model("shape");
    edit_header(shape_transposed);
    assert_both_refuse("transposed shape", "model.safetensors", "lm_head.weight: expected [512, 64]", true);
    copy_model("renamed");
    edit_header(tensor_renamed);
    assert_both_refuse("missing tensor", "model.safetensors", "model.layers.1.mlp.down_proj.weight", true);
    remove_copy();
}
END_TEST

START_TEST(a_missing_or_broken_tokenizer_or_config_is_named)
{
    copy_model("no-tokenizer");
    remove_file("tokenizer.json");
    assert_both_refuse("missing tokenizer", "tokenizer.json", "No such file", true);
    copy_model("broken-tokenizer");
    write_copy("tokenizer.json", "{\"model\":{", 10);
    assert_both_refuse("broken tokenizer", "tokenizer.json", "JSON", true);
    copy_model("no-config");
    remove_file("config.json");
    assert_both_refuse("missing config", "config.json", "No such file", true);
    copy_model("heads");
    set_json("config.json", "num_attention_heads", "5");
    assert_both_refuse("bad head count", "config.json", "num_attention_heads", true);
    copy_model("arch");
    set_json("config.json", "architectures", "[\"GPT2LMHeadModel\"]");
    assert_both_refuse("unknown architecture", "config.json", "architectures", true);
    copy_model("generation-config");
    set_json("generation_config.json", "temperature", "\"hot\"");
    assert_both_refuse("bad generation config", "generation_config.json", "temperature", true);
    remove_copy();
}
END_TEST

START_TEST(a_chat_template_that_cannot_render_is_named)
{
    /* osprey generate completes text and never reads the template: serve only. */
    copy_model("tpl-syntax");
    set_json("tokenizer_config.json", "chat_template", "\"{% for m in messages %}{{ m.content \"");
    assert_both_refuse("template syntax error", "tokenizer_config.json", "chat_template: line 1", false);
    copy_model("tpl-filter");
    set_json("tokenizer_config.json", "chat_template", "\"{{ messages | no_such_filter }}\"");
    assert_both_refuse("template unknown filter", "tokenizer_config.json", "chat_template", false);
    copy_model("tpl-runtime");
    set_json("tokenizer_config.json", "chat_template", "\"{% for m in messages %}{{ m.content + 1 }}{% endfor %}\"");
    assert_both_refuse("template type error", "tokenizer_config.json", "chat_template", false);
    remove_copy();
}
END_TEST

/* Puts something that is not a regular file where a file of the folder was. */
static void replace_with_fifo(const char *file)
{
    char path[700];

    snprintf(path, sizeof path, "%s/%s", dir, file);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(mkfifo(path, 0644), 0);
}

static void replace_with_symlink(const char *file, const char *target)
{
    char path[700];

    snprintf(path, sizeof path, "%s/%s", dir, file);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(symlink(target, path), 0);
}

START_TEST(a_fifo_or_a_device_in_the_folder_is_refused_at_once)
{
    /* A FIFO used to block the open (then the read) forever, so that only SIGKILL ended the
     * load; a symlink to /dev/zero was read until memory ran out. */
    static const char *const fifos[] = { "config.json", "generation_config.json", "model.safetensors",
                                         "tokenizer.json", "tokenizer_config.json" };

    for (size_t i = 0; i < sizeof fifos / sizeof fifos[0]; i++) {
        char what[64];

        snprintf(what, sizeof what, "%s a FIFO", fifos[i]);
        copy_model("fifo");
        replace_with_fifo(fifos[i]);
        assert_both_refuse(what, fifos[i], "is a FIFO, not a regular file", true);
    }
    copy_model("zero-config");
    replace_with_symlink("config.json", "/dev/zero");
    assert_both_refuse("config.json -> /dev/zero", "config.json", "is a character device", true);
    copy_model("zero-tokenizer");
    replace_with_symlink("tokenizer.json", "/dev/zero");
    assert_both_refuse("tokenizer.json -> /dev/zero", "tokenizer.json", "is a character device", true);
    copy_model("dir-tokenizer-config");
    remove_file("tokenizer_config.json");
    {
        char path[700];

        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        ck_assert_int_eq(mkdir(path, 0755), 0);
    }
    assert_both_refuse("tokenizer_config.json a folder", "tokenizer_config.json", "is a directory", true);
    remove_copy();
}
END_TEST

START_TEST(a_json_file_past_its_size_limit_is_refused_before_it_is_read)
{
    /* 17 MiB of spaces around an object: valid JSON, but no config.json is that large (the
     * limit is 16 MiB). */
    size_t len = (size_t)17 << 20;
    char *big = malloc(len);

    ck_assert_ptr_nonnull(big);
    memset(big, ' ', len);
    big[0] = '{';
    big[len - 1] = '}';
    copy_model("big-config");
    write_copy("config.json", big, len);
    assert_both_refuse("config.json of 17 MiB", "config.json", "more than the 16777216", true);
    copy_model("big-generation-config");
    write_copy("generation_config.json", big, len);
    assert_both_refuse("generation_config.json 17 MiB", "generation_config.json", "more than the", true);
    free(big);
    remove_copy();
}
END_TEST

Suite *stress_models_suite(void)
{
    Suite *s = suite_create("stress_models");
    TCase *tc = tcase_create("models");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, truncated_or_corrupt_weights_are_named);
    tcase_add_test(tc, a_tensor_of_the_wrong_dtype_or_shape_or_missing_is_named);
    tcase_add_test(tc, a_missing_or_broken_tokenizer_or_config_is_named);
    tcase_add_test(tc, a_chat_template_that_cannot_render_is_named);
    tcase_add_test(tc, a_fifo_or_a_device_in_the_folder_is_refused_at_once);
    tcase_add_test(tc, a_json_file_past_its_size_limit_is_refused_before_it_is_read);
    suite_add_tcase(s, tc);
    return s;
}
