/* gen_params.c — the defaults of a request's generation parameters (gen_params.h). */
#include <string.h>

#include "engine/gen_params.h"

void gen_params_init(struct gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_tokens = 16;
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
    p->logprobs = -1;
    p->skip_special_tokens = true;
}
