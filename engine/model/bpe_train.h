/* bpe_train.h — trains the byte-level BPE that gen-model ships with its random models:
 * ordinary BPE training over a small built-in English text (pre-tokenized with Llama 3's
 * regex), then, when a larger vocabulary is asked for, random merges of existing tokens
 * drawn from the seed. Every merge joins two earlier tokens into a new one, so the result
 * is a valid BPE whatever its size. engine/model/gen_tokenizer.c writes it as tokenizer.json. */
#ifndef OSPREY_BPE_TRAIN_H
#define OSPREY_BPE_TRAIN_H

#include <stdint.h>

#define BPE_NUM_BYTES   256
#define BPE_MAX_TOKEN_BYTES 16  /* random merges stop growing tokens here */

/* Llama 3's pre-tokenizer pattern (tokenizer.json "Split" regex). */
extern const char bpe_llama3_pattern[];

struct bpe_token {
    uint8_t *bytes;            /* raw bytes, not NUL-terminated */
    int len;                   /* bytes */
};

struct bpe_train {
    struct bpe_token *tokens;  /* [num_tokens]; ids 0..255 are the single bytes in GPT-2's
                                * byte-to-unicode order, id 256 + i is merge i's result */
    int num_tokens;
    int (*merges)[2];          /* [num_merges] ids of the left and right part */
    int num_merges;            /* num_tokens - 256 */
    int num_trained;           /* merges learned from the text; the rest are random */
};

/* Trains a vocabulary of exactly num_tokens (>= 256) tokens. Deterministic for a seed.
 * Returns 0 or a negative errno (message in err); b needs bpe_train_fini either way. */
int bpe_train_init(struct bpe_train *b, int num_tokens, uint64_t seed, char *err);
void bpe_train_fini(struct bpe_train *b);

/* Writes token `id` in the byte-level alphabet (each byte one printable code point, as
 * tokenizer.json spells it) into out, NUL-terminated. out needs 2 * len + 1 bytes. */
void bpe_train_token_text(const struct bpe_train *b, int id, char *out);

#endif
