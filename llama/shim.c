#include "shim.h"
#include "rpc.h"
#include <string.h>

extern void matsteerGoLog(int level, char * text);
extern void matsteerGoPlacement(char * text);

static int matsteer_min_level = GGML_LOG_LEVEL_ERROR;
static int matsteer_placement = 0;

void matsteer_capture_placement(int on) {
    __atomic_store_n(&matsteer_placement, on, __ATOMIC_RELAXED);
}

static void matsteer_log_cb(enum ggml_log_level level, const char * text, void * ud) {
    (void) ud;
    if (level == GGML_LOG_LEVEL_DEBUG && __atomic_load_n(&matsteer_placement, __ATOMIC_RELAXED) &&
        strncmp(text, "load_tensors: layer", 19) == 0) {
        matsteerGoPlacement((char *) text);
    }
    // CONT lines continue the previous message; keep them at its level.
    if (level != GGML_LOG_LEVEL_CONT && (int) level < matsteer_min_level) {
        return;
    }
    if (level == GGML_LOG_LEVEL_CONT && matsteer_min_level > GGML_LOG_LEVEL_INFO) {
        return;
    }
    matsteerGoLog((int) level, (char *) text);
}

void matsteer_log_install(int min_level) {
    matsteer_min_level = min_level;
    llama_log_set(matsteer_log_cb, NULL);
}

void matsteer_batch_set(struct llama_batch * b, int i, llama_token tok, llama_pos pos,
                        const llama_seq_id * seqs, int n_seqs, bool logits) {
    b->token[i] = tok;
    b->pos[i] = pos;
    b->n_seq_id[i] = n_seqs;
    for (int s = 0; s < n_seqs; s++) {
        b->seq_id[i][s] = seqs[s];
    }
    b->logits[i] = logits;
}

bool matsteer_abort_cb(void * data) {
    return data != NULL && __atomic_load_n((int *) data, __ATOMIC_RELAXED) != 0;
}

struct ggml_threadpool * matsteer_threadpool_new(int n_threads) {
    struct ggml_threadpool_params p = ggml_threadpool_params_default(n_threads);
    return ggml_threadpool_new(&p);
}
