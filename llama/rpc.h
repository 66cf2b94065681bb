#ifndef MATSTEER_LLAMA_RPC_H
#define MATSTEER_LLAMA_RPC_H
#include <stdbool.h>
#include "ggml-backend.h"
#include "llama.h"

struct matsteer_rand_cfg;

// matsteer_model_load, matsteer_rand_model_load and matsteer_init_from_model
// call llama_model_load_from_file, matsteer_rand_model and
// llama_init_from_model with SIGPIPE blocked, so the threads ggml's RPC
// client starts meanwhile get EPIPE, not a fatal SIGPIPE, from a dropped
// connection (see rpc.c).
struct llama_model * matsteer_model_load(const char * path, struct llama_model_params params);
struct llama_model * matsteer_rand_model_load(const struct matsteer_rand_cfg * cfg, struct llama_model_params params);
struct llama_context * matsteer_init_from_model(struct llama_model * model, struct llama_context_params params);

// matsteer_rpc_supported reports whether ggml's RPC backend is linked in
// (a build with GGML_RPC=ON). It is looked up by name, as llama.cpp's own
// tools do, so this file links against builds without it.
bool matsteer_rpc_supported(void);

// matsteer_rpc_devices connects to the rpc-server at endpoint (HOST:PORT),
// and writes its devices to out (at most max). Returns the number written,
// -1 when the build has no RPC backend, -2 when the server has no device.
// A server that cannot be reached makes ggml abort: check it first.
int matsteer_rpc_devices(const char * endpoint, ggml_backend_dev_t * out, int max);

// matsteer_local_gpus writes the local GPU devices llama.cpp would use by
// default to out (at most max): discrete GPUs, one per device id, or the
// integrated ones when there is no discrete GPU. RPC devices are left out.
int matsteer_local_gpus(ggml_backend_dev_t * out, int max);

// matsteer_abort_install routes ggml_abort (GGML_ABORT, GGML_ASSERT) through
// Go before the process aborts.
void matsteer_abort_install(void);

// matsteer_capture_placement switches forwarding of llama.cpp's per-layer
// device assignment log lines ("load_tensors: layer N assigned to device
// D") to Go on (1) or off (0), whatever the log level.
void matsteer_capture_placement(int on);
#endif
