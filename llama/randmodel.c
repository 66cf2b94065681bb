#include "randmodel.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "ggml-backend.h"
#include "gguf.h"

struct rand_ud {
    uint64_t seed;
    float scale;
};

static uint64_t splitmix(uint64_t * s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t * s) { return ((splitmix(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static double gauss(uint64_t * s) {
    double u1 = uniform01(s), u2 = uniform01(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_tensor(struct ggml_tensor * t, void * userdata) {
    const struct rand_ud * ud = userdata;
    uint64_t s = ud->seed;
    for (const char * p = t->name; *p; p++) {
        s = (s ^ (uint8_t) *p) * 0x100000001B3ull;
    }
    const int64_t n = ggml_nelements(t);
    float * buf = malloc(sizeof(float) * (size_t) n);
    const int is_norm = strstr(t->name, "norm") != NULL;
    const int is_embd = strstr(t->name, "token_embd") != NULL;
    for (int64_t i = 0; i < n; i++) {
        double g = gauss(&s);
        buf[i] = is_norm ? (float) (1.0 + 0.1 * g) : is_embd ? (float) g : (float) (ud->scale * g);
    }
    if (t->type == GGML_TYPE_F32) {
        ggml_backend_tensor_set(t, buf, 0, ggml_nbytes(t));
    } else if (t->type == GGML_TYPE_F16) {
        ggml_fp16_t * h = malloc(sizeof(ggml_fp16_t) * (size_t) n);
        ggml_fp32_to_fp16_row(buf, h, n);
        ggml_backend_tensor_set(t, h, 0, ggml_nbytes(t));
        free(h);
    }
    free(buf);
}

static const char * words[] = {"\xe2\x96\x81", "\xe2\x96\x81" "the", "\xe2\x96\x81" "a", "\xe2\x96\x81" "is", "\xe2\x96\x81" "of", "\xe2\x96\x81" "and", "\xe2\x96\x81" "to", "\xe2\x96\x81" "in", "\xe2\x96\x81" "it"};

struct llama_model * matsteer_rand_model(const struct matsteer_rand_cfg * cfg, struct llama_model_params params) {
    struct gguf_context * g = gguf_init_empty();
    const int n_words = (int) (sizeof(words) / sizeof(words[0]));
    const int n_vocab = 3 + 256 + n_words;

    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_str(g, "general.name", "matsteer-random-llama");
    gguf_set_val_u32(g, "llama.vocab_size", (uint32_t) n_vocab);
    gguf_set_val_u32(g, "llama.context_length", cfg->n_ctx);
    gguf_set_val_u32(g, "llama.embedding_length", cfg->n_embd);
    gguf_set_val_u32(g, "llama.feed_forward_length", cfg->n_ff);
    gguf_set_val_u32(g, "llama.block_count", cfg->n_layer);
    gguf_set_val_u32(g, "llama.attention.head_count", cfg->n_head);
    gguf_set_val_u32(g, "llama.attention.head_count_kv", cfg->n_head_kv);
    gguf_set_val_u32(g, "llama.rope.dimension_count", cfg->n_embd / cfg->n_head);
    gguf_set_val_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_set_val_str(g, "tokenizer.ggml.model", "llama");
    if (cfg->chat_template != NULL) {
        gguf_set_val_str(g, "tokenizer.chat_template", cfg->chat_template);
    }

    char ** toks = malloc(sizeof(char *) * (size_t) n_vocab);
    float * scores = malloc(sizeof(float) * (size_t) n_vocab);
    int32_t * types = malloc(sizeof(int32_t) * (size_t) n_vocab);
    toks[0] = strdup("<unk>"); types[0] = 2; scores[0] = 0;
    toks[1] = strdup("<s>");   types[1] = 3; scores[1] = 0;
    toks[2] = strdup("</s>");  types[2] = 3; scores[2] = 0;
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof(buf), "<0x%02X>", b);
        toks[3 + b] = strdup(buf);
        types[3 + b] = 6;
        scores[3 + b] = 0;
    }
    for (int w = 0; w < n_words; w++) {
        toks[259 + w] = strdup(words[w]);
        types[259 + w] = 1;
        scores[259 + w] = -1.0f - (float) w;
    }
    gguf_set_arr_str(g, "tokenizer.ggml.tokens", (const char **) toks, (size_t) n_vocab);
    gguf_set_arr_data(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (size_t) n_vocab);
    gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (size_t) n_vocab);
    gguf_set_val_u32(g, "tokenizer.ggml.bos_token_id", 1);
    gguf_set_val_u32(g, "tokenizer.ggml.eos_token_id", 2);
    gguf_set_val_u32(g, "tokenizer.ggml.unknown_token_id", 0);

    struct rand_ud ud = { cfg->seed, cfg->weight_scale };
    struct llama_model * m = llama_model_init_from_user(g, fill_tensor, &ud, params);

    for (int i = 0; i < n_vocab; i++) {
        free(toks[i]);
    }
    free(toks);
    free(scores);
    free(types);
    gguf_free(g);
    return m;
}
