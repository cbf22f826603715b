/* gen_tokenizer.h — the tokenizer files of a gen-model folder: either a byte-level BPE
 * trained here (engine/model/bpe_train.c) and written in Hugging Face's tokenizer.json format with
 * Llama 3's special tokens and a Llama-3-style chat template, or the files of an existing
 * tokenizer folder copied verbatim. */
#ifndef OSPREY_GEN_TOKENIZER_H
#define OSPREY_GEN_TOKENIZER_H

#include <stdint.h>

#include "engine/model/model.h"  /* MODEL_MAX_EOS */

/* Below this vocab_size no byte-level tokenizer with the specials can be generated. */
#define GEN_TOKENIZER_MIN_VOCAB (256 + 16)

struct gen_tokenizer {
    char *tokenizer_json;        /* malloc'd text of tokenizer.json */
    size_t tokenizer_json_len;   /* bytes */
    char *config_json;           /* malloc'd text of tokenizer_config.json */
    size_t config_json_len;      /* bytes */
    int num_tokens;              /* highest token id + 1 */
    int bos_id;                  /* <|begin_of_text|> (or the config's bos_token); -1 = none */
    int eos_ids[MODEL_MAX_EOS];  /* <|eot_id|>, <|end_of_text|> (or the config's eos_token) */
    int num_eos;
};

/* Generates a tokenizer of exactly vocab_size ids: the trained BPE, then the special tokens
 * (<|begin_of_text|>, <|end_of_text|>, <|start_header_id|>, <|end_header_id|>, <|eot_id|>
 * and reserved ones, in Llama 3's order) at the top. model_max_length goes into
 * tokenizer_config.json. Returns 0 or a negative errno (message in err). */
int gen_tokenizer_build(struct gen_tokenizer *t, int vocab_size, int model_max_length,
                        uint64_t seed, char *err);

/* Reads dir/tokenizer.json and dir/tokenizer_config.json for copying; finds the highest id
 * and the bos/eos ids. Returns 0 or a negative errno (message in err). */
int gen_tokenizer_copy(struct gen_tokenizer *t, const char *dir, char *err);

void gen_tokenizer_fini(struct gen_tokenizer *t);

#endif
