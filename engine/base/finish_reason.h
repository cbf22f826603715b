/* finish_reason.h — why a request ended, and OpenAI's name for it. The scheduler sets it
 * (scheduler/request.h), the engine hands it to the request's callback (engine/engine.h),
 * the server renders and counts it (server/openai.c, server/metrics.c): a leaf, so that
 * all three see one definition without the server seeing the scheduler. */
#ifndef OSPREY_FINISH_REASON_H
#define OSPREY_FINISH_REASON_H

enum finish_reason {
    FINISH_NONE,       /* not finished */
    FINISH_STOP,       /* EOS, a stop token id, or a stop string */
    FINISH_LENGTH,     /* max_tokens or max_model_len reached */
    FINISH_ABORT,      /* aborted (client gone, shutdown past its grace) */
    FINISH_ERROR,      /* the engine failed it */
    FINISH_TOOL_CALLS, /* the output held tool calls: set by the server (server/openai_tools.c)
                        * after reading a finished output, never by the scheduler */
};

/* OpenAI's finish_reason: "stop", "length", "abort", "error", "tool_calls"; NULL for
 * FINISH_NONE or a value outside the enum. */
const char *finish_reason_name(enum finish_reason why);

#endif
