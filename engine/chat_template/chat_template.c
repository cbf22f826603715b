/* chat_template.c — a chat template as transformers runs it: the variables apply_chat_template
 * passes (messages, add_generation_prompt, bos_token, eos_token, tools and documents None
 * unless given, the extras), the limits that keep a hostile template or conversation bounded,
 * and the load-time check that renders a sample conversation. The Jinja itself is
 * engine/jinja_*.c. */
#include "engine/chat_template/chat_template.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat_template/jinja.h"
#include "engine/base/log.h"
#include "engine/base/util.h"

#define MAX_TEMPLATE_BYTES (1u << 20)

struct chat_template {
    struct jinja_template *tpl;
    char *bos, *eos;             /* special token texts, NULL when the tokenizer has none */
    struct jinja_limits lim;
};

/* Per render. A real template on a long conversation stays far below each. */
static const struct jinja_limits default_limits = {
    .max_output_bytes = 32u << 20,
    .max_memory_bytes = 256u << 20,
    .max_loop_iterations = 1000000,
    .max_work = 50000000,
    .max_depth = 256,
};

static int render(const struct chat_template *t, const cJSON *messages, const cJSON *extra,
                  bool add_generation_prompt, char **out, size_t *len, char *err, bool *raised)
{
    cJSON *vars = cJSON_CreateObject();
    int rc = -ENOMEM;

    *out = NULL;
    *len = 0;
    if (raised)
        *raised = false;
    if (!vars) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    if (!cJSON_IsArray(messages)) {
        errf(err, "messages must be an array");
        rc = -EINVAL;
        goto out;
    }
    if (extra && !cJSON_IsObject(extra)) {
        errf(err, "the extra template variables must be an object");
        rc = -EINVAL;
        goto out;
    }
    /* Order matters only for shadowing: the extras override the special tokens, as
     * apply_chat_template's {**special_tokens_map, **kwargs} does. */
    if ((t->bos && !cJSON_AddStringToObject(vars, "bos_token", t->bos)) ||
        (t->eos && !cJSON_AddStringToObject(vars, "eos_token", t->eos)) ||
        !cJSON_AddNullToObject(vars, "tools") || !cJSON_AddNullToObject(vars, "documents"))
        goto nomem;
    for (const cJSON *e = extra ? extra->child : NULL; e; e = e->next) {
        if (!e->string)
            continue;
        if (!strcmp(e->string, "messages") || !strcmp(e->string, "add_generation_prompt")) {
            errf(err, "template variable '%s' cannot be set as an extra", e->string);
            rc = -EINVAL;
            goto out;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(vars, e->string);
        if (!cJSON_AddItemReferenceToObject(vars, e->string, (cJSON *)e))
            goto nomem;
    }
    if (!cJSON_AddItemReferenceToObject(vars, "messages", (cJSON *)messages) ||
        !cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt))
        goto nomem;
    rc = jinja_render(t->tpl, vars, &t->lim, out, len, err, raised);
    goto out;
nomem:
    errf(err, "out of memory");
    rc = -ENOMEM;
out:
    cJSON_Delete(vars);
    return rc;
}

int chat_template_render(const struct chat_template *t, const cJSON *messages, const cJSON *extra,
                         bool add_generation_prompt, char **out, size_t *len, char *err)
{
    return render(t, messages, extra, add_generation_prompt, out, len, err, NULL);
}

/* The sample conversations tried at load time, the most complete first. A template may
 * refuse one by raise_exception (no system role, strict alternation); any other error
 * means osprey cannot run it. */
static const char *const samples[] = {
    "[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},"
    "{\"role\":\"user\",\"content\":\"Hello!\"},"
    "{\"role\":\"assistant\",\"content\":\"Hi! How can I help?\"},"
    "{\"role\":\"user\",\"content\":\"Tell me a joke.\"}]",
    "[{\"role\":\"user\",\"content\":\"Hello!\"},"
    "{\"role\":\"assistant\",\"content\":\"Hi! How can I help?\"},"
    "{\"role\":\"user\",\"content\":\"Tell me a joke.\"}]",
    "[{\"role\":\"user\",\"content\":\"Hello!\"}]",
};

static int check_samples(const struct chat_template *t, char *err)
{
    char msg[ERR_LEN];

    for (size_t i = 0; i < ARRAY_LEN(samples); i++) {
        cJSON *m = cJSON_Parse(samples[i]);
        bool raised = false;
        int rc = m ? 0 : -ENOMEM;

        for (int gen = 0; gen < 2 && !rc; gen++) {
            char *out = NULL;
            size_t len;

            rc = render(t, m, NULL, gen, &out, &len, msg, &raised);
            free(out);
        }
        cJSON_Delete(m);
        if (!rc)
            return 0;
        if (!raised) {
            errf(err, "renders no sample conversation: %s", msg);
            return rc;
        }
    }
    LOG(LL_WARN, "chat", "the template raised on every sample conversation: %s", msg);
    return 0;
}

int chat_template_create(struct chat_template **out, const char *source, const char *bos_token,
                         const char *eos_token, char *err)
{
    struct chat_template *t;
    size_t len;
    int rc;

    *out = NULL;
    if (!source) {
        errf(err, "no chat template");
        return -EINVAL;
    }
    len = strlen(source);
    if (len > MAX_TEMPLATE_BYTES) {
        errf(err, "chat template is %zu bytes, over the %u limit", len, MAX_TEMPLATE_BYTES);
        return -EINVAL;
    }
    if (!(t = calloc(1, sizeof *t))) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    t->lim = default_limits;
    if ((bos_token && !(t->bos = strdup(bos_token))) || (eos_token && !(t->eos = strdup(eos_token)))) {
        errf(err, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = jinja_parse(&t->tpl, source, len, err)) || (rc = check_samples(t, err)))
        goto fail;
    *out = t;
    return 0;
fail:
    chat_template_destroy(t);
    return rc;
}

void chat_template_destroy(struct chat_template *t)
{
    if (!t)
        return;
    jinja_template_destroy(t->tpl);
    free(t->bos);
    free(t->eos);
    free(t);
}
