#ifndef MATSTEER_RANDMODEL_H
#define MATSTEER_RANDMODEL_H
#include <stdint.h>
#include "llama.h"

struct matsteer_rand_cfg {
    uint32_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx;
    uint64_t seed;
    float weight_scale;  // std of matrix weights
    const char * chat_template; // may be NULL
};

// matsteer_rand_model builds a llama-architecture model with random weights
// and a byte-level SentencePiece vocabulary (<unk>, <s>, </s>, <0x00>..<0xFF>,
// plus a few word pieces), entirely in memory.
struct llama_model * matsteer_rand_model(const struct matsteer_rand_cfg * cfg, struct llama_model_params params);
#endif
