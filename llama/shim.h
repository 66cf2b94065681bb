#ifndef MATSTEER_LLAMA_SHIM_H
#define MATSTEER_LLAMA_SHIM_H
#include <stdbool.h>
#include "llama.h"
#include "ggml-cpu.h"

// matsteer_log_install routes llama.cpp/ggml log lines to Go: levels below
// min_level are dropped in C without crossing into Go.
void matsteer_log_install(int min_level);

// matsteer_batch_set writes one token into a llama_batch allocated by
// llama_batch_init (Go cannot index C arrays without pointer arithmetic).
void matsteer_batch_set(struct llama_batch * b, int i, llama_token tok, llama_pos pos,
                        const llama_seq_id * seqs, int n_seqs, bool logits);

// matsteer_abort_cb is the abort callback: user data points at an int that Go
// sets to 1 to cancel a running decode.
bool matsteer_abort_cb(void * data);

// matsteer_threadpool_new makes a CPU threadpool of n_threads workers with
// ggml's default polling (as llama-bench uses); NULL on failure.
struct ggml_threadpool * matsteer_threadpool_new(int n_threads);
#endif
