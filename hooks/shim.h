#ifndef MATSTEER_HOOKS_SHIM_H
#define MATSTEER_HOOKS_SHIM_H
#include <stdbool.h>
#include <stdint.h>
#include "ggml.h"

#define MATSTEER_MAX_POINTS 128

// matsteer_hooks is the per-context state seen by the eval callback. The
// name table is written by Go only between decodes.
struct matsteer_hooks {
    uintptr_t handle;   // runtime/cgo.Handle of the Go *Hooks
    int probe;          // record every node name instead of matching
    int n;              // active entries in names
    char names[MATSTEER_MAX_POINTS][GGML_MAX_NAME];
};

// matsteer_hooks_cb is the ggml_backend_sched_eval_callback. With ask=true
// it only compares names, in C; with ask=false it calls into Go.
bool matsteer_hooks_cb(struct ggml_tensor * t, bool ask, void * user_data);

// matsteer_tensor_is_host reports whether t's data is in host memory.
bool matsteer_tensor_is_host(const struct ggml_tensor * t);
#endif
