/* finish_reason.c — OpenAI's names of the finish reasons (finish_reason.h). */
#include "engine/base/finish_reason.h"

#include <stddef.h>

const char *finish_reason_name(enum finish_reason why)
{
    switch (why) {
    case FINISH_NONE: return NULL;
    case FINISH_STOP: return "stop";
    case FINISH_LENGTH: return "length";
    case FINISH_ABORT: return "abort";
    case FINISH_ERROR: return "error";
    case FINISH_TOOL_CALLS: return "tool_calls";
    }
    return NULL;
}
