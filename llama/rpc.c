#include "rpc.h"
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include "ggml.h"
#include "randmodel.h"

// ggml's RPC client writes to its sockets from threads of its own (one per
// server), created by the thread that first needs the connection. A write to
// a connection the server closed raises SIGPIPE on that thread; Go forwards
// SIGPIPE on threads it did not create to the default action, which ends the
// process. Threads inherit the creating thread's signal mask, so the calls
// that may connect block SIGPIPE while they run: the client's threads then
// see EPIPE instead, and the failure is reported through ggml_abort.
static void block_sigpipe(sigset_t * old) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, old);
}

static void restore_sigmask(const sigset_t * old) {
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

struct llama_model * matsteer_model_load(const char * path, struct llama_model_params params) {
    sigset_t old;
    block_sigpipe(&old);
    struct llama_model * m = llama_model_load_from_file(path, params);
    restore_sigmask(&old);
    return m;
}

struct llama_model * matsteer_rand_model_load(const struct matsteer_rand_cfg * cfg, struct llama_model_params params) {
    sigset_t old;
    block_sigpipe(&old);
    struct llama_model * m = matsteer_rand_model(cfg, params);
    restore_sigmask(&old);
    return m;
}

struct llama_context * matsteer_init_from_model(struct llama_model * model, struct llama_context_params params) {
    sigset_t old;
    block_sigpipe(&old);
    struct llama_context * c = llama_init_from_model(model, params);
    restore_sigmask(&old);
    return c;
}

extern void matsteerGoAbort(char * msg);

bool matsteer_rpc_supported(void) {
    return ggml_backend_reg_by_name("RPC") != NULL;
}

typedef ggml_backend_reg_t (*matsteer_rpc_add_server_fn)(const char * endpoint);

int matsteer_rpc_devices(const char * endpoint, ggml_backend_dev_t * out, int max) {
    ggml_backend_reg_t rpc = ggml_backend_reg_by_name("RPC");
    if (rpc == NULL) {
        return -1;
    }
    matsteer_rpc_add_server_fn add =
        (matsteer_rpc_add_server_fn) ggml_backend_reg_get_proc_address(rpc, "ggml_backend_rpc_add_server");
    if (add == NULL) {
        return -1;
    }
    sigset_t old;
    block_sigpipe(&old);
    ggml_backend_reg_t reg = add(endpoint);
    restore_sigmask(&old);
    if (reg == NULL) {
        return -2;
    }
    int n = 0;
    for (size_t i = 0; i < ggml_backend_reg_dev_count(reg) && n < max; i++) {
        out[n++] = ggml_backend_reg_dev_get(reg, i);
    }
    return n;
}

static bool same_device_id(ggml_backend_dev_t a, ggml_backend_dev_t b) {
    struct ggml_backend_dev_props pa, pb;
    ggml_backend_dev_get_props(a, &pa);
    ggml_backend_dev_get_props(b, &pb);
    return pa.device_id != NULL && pb.device_id != NULL && strcmp(pa.device_id, pb.device_id) == 0;
}

int matsteer_local_gpus(ggml_backend_dev_t * out, int max) {
    int n = 0;
    ggml_backend_dev_t igpu[16];
    int ni = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        enum ggml_backend_dev_type type = ggml_backend_dev_type(dev);
        if (strcmp(ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev)), "RPC") == 0) {
            continue;
        }
        if (type == GGML_BACKEND_DEVICE_TYPE_GPU) {
            bool dup = false;
            for (int k = 0; k < n; k++) {
                dup = dup || same_device_id(out[k], dev);
            }
            if (!dup && n < max) {
                out[n++] = dev;
            }
        } else if (type == GGML_BACKEND_DEVICE_TYPE_IGPU && ni < 16) {
            if (ni == 0 || ggml_backend_dev_backend_reg(dev) == ggml_backend_dev_backend_reg(igpu[ni - 1])) {
                igpu[ni++] = dev;
            }
        }
    }
    if (n == 0) {
        for (int k = 0; k < ni && n < max; k++) {
            out[n++] = igpu[k];
        }
    }
    return n;
}

static void matsteer_ggml_abort(const char * msg) {
    matsteerGoAbort((char *) msg);
}

void matsteer_abort_install(void) {
    ggml_set_abort_callback(matsteer_ggml_abort);
}
