/* chat_prompt.c — a chat request's messages through the chat template into the prompt text:
 * the template's variables as transformers' apply_chat_template gets them from vLLM (tools,
 * documents and the chat_template_kwargs), and continue_final_message, which cuts the
 * rendered text right after the last message's content so that the model continues it. */
#include "server/chat_prompt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat_template/chat_template.h"
#include "engine/base/util.h"

/* chat_template_kwargs plus tools, documents and reasoning_effort, as references into the request (NULL when
 * there is nothing to add: the kwargs themselves, or none). *made tells the caller to
 * delete the object (references only: the request keeps its items). */
static int extras_of(const struct oai_request *r, const cJSON **out, cJSON **made, char *err)
{
    const cJSON *docs = cJSON_GetObjectItemCaseSensitive(r->root, "documents");
    cJSON *x;

    *made = NULL;
    *out = r->template_kwargs;
    if (!r->tools && !cJSON_IsArray(docs) && !r->reasoning_effort)
        return 0;
    if (!(x = cJSON_CreateObject()))
        goto nomem;
    for (const cJSON *k = r->template_kwargs ? r->template_kwargs->child : NULL; k; k = k->next)
        if (k->string && !cJSON_AddItemReferenceToObject(x, k->string, (cJSON *)k))
            goto nomem;
    /* The request's own fields win over kwargs of the same name, as vLLM's do. */
    if (r->tools) {
        cJSON_DeleteItemFromObjectCaseSensitive(x, "tools");
        if (!cJSON_AddItemReferenceToObject(x, "tools", (cJSON *)r->tools))
            goto nomem;
    }
    if (cJSON_IsArray(docs)) {
        cJSON_DeleteItemFromObjectCaseSensitive(x, "documents");
        if (!cJSON_AddItemReferenceToObject(x, "documents", (cJSON *)docs))
            goto nomem;
    }
    if (r->reasoning_effort) {
        cJSON_DeleteItemFromObjectCaseSensitive(x, "reasoning_effort");
        if (!cJSON_AddItemReferenceToObject(x, "reasoning_effort", (cJSON *)r->reasoning_effort))
            goto nomem;
    }
    *out = *made = x;
    return 0;
nomem:
    cJSON_Delete(x);
    errf(err, "out of memory");
    return -ENOMEM;
}

/* Where the last occurrence of needle (n bytes) ends in s[0..len), or 0 when it is not there. */
static size_t end_of_last(const char *s, size_t len, const char *needle, size_t n)
{
    if (!n || n > len)
        return 0;
    for (size_t i = len - n + 1; i-- > 0;)
        if (!memcmp(s + i, needle, n))
            return i + n;
    return 0;
}

/* transformers' continue_final_message: the rendered text ends with the final message's
 * content (stripped of blanks when the template trims it); what the template wrote after it
 * (end of turn, EOS) goes. */
static int cut_after_final(const struct oai_request *r, char *text, size_t *len, char *err)
{
    const cJSON *last = cJSON_GetArrayItem(r->messages, cJSON_GetArraySize(r->messages) - 1);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
    const char *c;
    size_t n, end;

    if (!cJSON_IsString(content) || !content->valuestring[0]) {
        errf(err, "continue_final_message: the last message has no content to continue");
        return -EINVAL;
    }
    c = content->valuestring;
    n = strlen(c);
    if (!(end = end_of_last(text, *len, c, n))) {
        while (n && strchr(" \t\r\n", c[n - 1]))
            n--;
        while (n && strchr(" \t\r\n", *c)) {
            c++;
            n--;
        }
        end = end_of_last(text, *len, c, n);
    }
    if (!end) {
        errf(err, "continue_final_message: the template does not write the last message's content "
             "as given, so the prompt cannot end inside it");
        return -EINVAL;
    }
    text[end] = '\0';
    *len = end;
    return 0;
}

int chat_prompt_render(const struct chat_template *t, const struct oai_request *r, char **out,
                       size_t *len, char *err)
{
    const cJSON *extra;
    cJSON *made;
    int rc;

    *out = NULL;
    *len = 0;
    if ((rc = extras_of(r, &extra, &made, err)))
        return rc;
    rc = chat_template_render(t, r->messages, extra, r->add_generation_prompt, out, len, err);
    cJSON_Delete(made);
    if (!rc && r->continue_final_message && (rc = cut_after_final(r, *out, len, err))) {
        free(*out);
        *out = NULL;
        *len = 0;
    }
    return rc;
}
