/* cmd_chat_template.c — `osprey chat-template`: renders a model's chat template over a
 * conversation and prints the prompt exactly (no newline added), for checking osprey's
 * rendering against transformers' by hand. Reads the small part of tokenizer_config.json
 * it needs (chat_template, bos_token, eos_token) itself. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat_template/chat_template.h"
#include "engine/base/util.h"
#include "server/commands.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: osprey chat-template --tokenizer DIR --messages FILE.json\n"
            "                            [--add-generation-prompt] [--extra FILE.json] [--template FILE]\n"
            "\n"
            "Renders DIR/tokenizer_config.json's chat_template over the messages (a JSON array of\n"
            "OpenAI-style messages) and prints the prompt exactly, as transformers'\n"
            "apply_chat_template(tokenize=False) would.\n"
            "  --tokenizer DIR            folder with tokenizer_config.json (chat_template, bos/eos)\n"
            "  --messages FILE            the conversation, a JSON array\n"
            "  --add-generation-prompt    end with the assistant's turn header\n"
            "  --extra FILE               a JSON object of further variables (tools, enable_thinking …)\n"
            "  --template FILE            use this Jinja file instead of the config's template\n");
}

static int read_json(const char *path, cJSON **out, char *err)
{
    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, err);

    if (rc)
        return rc;
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*out) {
        errf(err, "%s: not valid JSON", path);
        return -EINVAL;
    }
    return 0;
}

/* A special token in tokenizer_config.json: a string, or an object with "content". */
static const char *token_text(const cJSON *cfg, const char *field)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, field);

    if (cJSON_IsObject(t))
        t = cJSON_GetObjectItemCaseSensitive(t, "content");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* chat_template: a string, or a list of {name, template} of which "default" is taken. */
static const char *config_template(const cJSON *cfg, const char *path, char *err)
{
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *e;

    if (cJSON_IsString(ct))
        return ct->valuestring;
    if (cJSON_IsArray(ct)) {
        cJSON_ArrayForEach(e, ct) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(e, "template");

            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tpl))
                return tpl->valuestring;
        }
        errf(err, "%s: chat_template is a list without a \"default\" entry", path);
        return NULL;
    }
    errf(err, "%s: no chat_template (a string or a list of {name, template})", path);
    return NULL;
}

int cmd_chat_template(int argc, char **argv)
{
    const char *dir = NULL, *messages_path = NULL, *extra_path = NULL, *template_path = NULL;
    char err[ERR_LEN] = "", cfg_path[4096], *tpl_text = NULL, *out = NULL;
    cJSON *cfg = NULL, *messages = NULL, *extra = NULL;
    struct chat_template *t = NULL;
    bool gen = false;
    const char *source;
    size_t len;
    int status = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--tokenizer") ? &dir : !strcmp(a, "--messages") ? &messages_path
                         : !strcmp(a, "--extra") ? &extra_path : !strcmp(a, "--template") ? &template_path
                         : NULL;

        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--add-generation-prompt")) {
            gen = true;
        } else if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "osprey chat-template: %s needs a value\n", a);
                return 2;
            }
            *dst = argv[++i];
        } else {
            fprintf(stderr, "osprey chat-template: unknown option '%s' (--help lists them)\n", a);
            return 2;
        }
    }
    if ((!dir && !template_path) || !messages_path) {
        fprintf(stderr, "osprey chat-template: --tokenizer DIR and --messages FILE are required\n");
        return 2;
    }
    if (dir) {
        snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
        if (read_json(cfg_path, &cfg, err))
            goto out;
    }
    if (template_path) {
        if (read_file(template_path, &tpl_text, &len, err))
            goto out;
        source = tpl_text;
    } else if (!(source = config_template(cfg, cfg_path, err))) {
        goto out;
    }
    if (read_json(messages_path, &messages, err) || (extra_path && read_json(extra_path, &extra, err)))
        goto out;
    if (!cJSON_IsArray(messages)) {
        errf(err, "%s: messages must be a JSON array", messages_path);
        goto out;
    }
    if (extra && !cJSON_IsObject(extra)) {
        errf(err, "%s: extra variables must be a JSON object", extra_path);
        goto out;
    }
    if (chat_template_create(&t, source, token_text(cfg, "bos_token"), token_text(cfg, "eos_token"), err)) {
        fprintf(stderr, "osprey chat-template: %s: %s\n", template_path ? template_path : cfg_path, err);
        err[0] = '\0';
        goto out;
    }
    if (chat_template_render(t, messages, extra, gen, &out, &len, err))
        goto out;
    if (fwrite(out, 1, len, stdout) != len || fflush(stdout)) {
        errf(err, "writing the prompt failed");
        goto out;
    }
    status = 0;
out:
    if (status && err[0])
        fprintf(stderr, "osprey chat-template: %s\n", err);
    free(out);
    free(tpl_text);
    chat_template_destroy(t);
    cJSON_Delete(cfg);
    cJSON_Delete(messages);
    cJSON_Delete(extra);
    return status;
}
