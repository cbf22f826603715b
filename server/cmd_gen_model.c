/* cmd_gen_model.c — `osprey gen-model`: flags in, engine/model/gen_model.c does the work, one line
 * out (what was written and how fast), or a one-line error and exit status 1 (2 for usage). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/gen_model.h"
#include "engine/base/util.h"
#include "server/commands.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: osprey gen-model --config <preset|config.json> --out DIR [--seed N]\n"
        "                        [--tokenizer DIR] [--dtype bf16|f16|f32]\n"
        "                        [--quantize fp8-block|fp8-channel|mxfp4 [--quant-block N]]\n"
        "                        [--no-weights]\n\n"
        "Writes a random-weight Hugging Face model folder: config.json, generation_config.json,\n"
        "model.safetensors, tokenizer.json, tokenizer_config.json. The same seed gives the\n"
        "same bytes.\n\n"
        "  --config     a preset or a config.json-shaped file (either transformers style)\n"
        "  --out        the folder to write (created when missing)\n"
        "  --seed       weights and tokenizer seed (default 0)\n"
        "  --tokenizer  copy this folder's tokenizer.json and tokenizer_config.json instead of\n"
        "               generating a byte-level BPE\n"
        "  --dtype      weight dtype (default: the config's torch_dtype, else bf16)\n"
        "  --quantize   write the linear weights as an FP8 checkpoint: fp8-block (quant_method\n"
        "               fp8, weight_scale_inv per N x N block) or fp8-channel\n"
        "               (compressed-tensors, weight_scale per output row); mxfp4 writes a\n"
        "               gpt-oss model's experts as OpenAI publishes them (*_blocks, *_scales)\n"
        "  --quant-block  fp8-block's weight_block_size N (default 128)\n"
        "  --no-weights write config.json and the tokenizer only, for --load-format dummy\n"
        "               (benchmarks of shapes too large to write)\n\n"
        "presets:");
    for (int i = 0; gen_model_preset_name(i); i++)
        fprintf(f, " %s", gen_model_preset_name(i));
    fprintf(f, "\n");
}

/* "--name value" or "--name=value": the value, advancing *i; NULL when this is not --name. */
static const char *flag_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n))
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

int cmd_gen_model(int argc, char **argv)
{
    struct gen_model_opts o = { 0 };
    struct gen_model_stats st;
    char err[ERR_LEN] = "", *end;
    const char *seed = NULL, *block = NULL;

    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;

        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--no-weights")) {
            o.no_weights = true;
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--config", &missing)))
            o.config = v;
        else if ((v = flag_value(argc, argv, &i, "--out", &missing)))
            o.out_dir = v;
        else if ((v = flag_value(argc, argv, &i, "--seed", &missing)))
            seed = v;
        else if ((v = flag_value(argc, argv, &i, "--tokenizer", &missing)))
            o.tokenizer_dir = v;
        else if ((v = flag_value(argc, argv, &i, "--dtype", &missing)))
            o.dtype = v;
        else if ((v = flag_value(argc, argv, &i, "--quantize", &missing)))
            o.quantize = v;
        else if ((v = flag_value(argc, argv, &i, "--quant-block", &missing)))
            block = v;
        else {
            fprintf(stderr, "osprey gen-model: %s '%s' (--help lists the options)\n",
                    missing ? "missing value for" : "unknown option", argv[i]);
            return 2;
        }
    }
    if (!o.config || !o.out_dir) {
        fprintf(stderr, "osprey gen-model: --config and --out are required (--help)\n");
        return 2;
    }
    if (seed) {
        errno = 0;
        o.seed = strtoull(seed, &end, 0);
        if (errno || end == seed || *end || seed[0] == '-') {
            fprintf(stderr, "osprey gen-model: --seed %s: expected a non-negative integer\n", seed);
            return 2;
        }
    }
    if (block) {
        long b = strtol(block, &end, 10);

        if (end == block || *end || b < 1 || b > 65536) {
            fprintf(stderr, "osprey gen-model: --quant-block %s: expected an integer in [1, 65536]\n",
                    block);
            return 2;
        }
        o.quant_block = (int)b;
    }
    if (gen_model_write(&o, &st, err) != 0) {
        fprintf(stderr, "osprey gen-model: %s\n", err);
        return 1;
    }
    if (o.no_weights) {
        printf("wrote %s: config.json and the tokenizer, no weights (--load-format dummy)\n",
               o.out_dir);
        return 0;
    }
    printf("wrote %s: %d tensors, %.2f GB of weights in %.2f s (%.2f GB/s)\n", o.out_dir,
           st.num_tensors, st.weight_bytes / 1e9, st.seconds,
           st.seconds > 0 ? st.weight_bytes / 1e9 / st.seconds : 0.0);
    return 0;
}
