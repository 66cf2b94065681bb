#include "shim.h"
#include <string.h>
#include "ggml-backend.h"

extern bool matsteerHooksEval(uintptr_t handle, int idx, struct ggml_tensor * t);
extern void matsteerHooksProbe(uintptr_t handle, char * name, bool matrix);

static int find(const struct matsteer_hooks * h, const char * name) {
    for (int i = 0; i < h->n; i++) {
        if (strcmp(h->names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

bool matsteer_hooks_cb(struct ggml_tensor * t, bool ask, void * user_data) {
    struct matsteer_hooks * h = user_data;
    if (ask) {
        if (h->probe) {
            matsteerHooksProbe(h->handle, t->name, t->type == GGML_TYPE_F32 && t->ne[2] == 1 && t->ne[3] == 1);
            return false;
        }
        return h->n > 0 && find(h, t->name) >= 0;
    }
    const int idx = find(h, t->name);
    if (idx < 0) {
        return true;
    }
    return matsteerHooksEval(h->handle, idx, t);
}

bool matsteer_tensor_is_host(const struct ggml_tensor * t) {
    return t->buffer != NULL && ggml_backend_buffer_is_host(t->buffer);
}
