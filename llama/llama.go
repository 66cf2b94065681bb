// Package llama is a thin cgo binding to llama.cpp's C API: models,
// contexts, batches, tokenization, chat templates, sampling, decoding,
// logits and KV memory.
//
// It is the lowest layer. Most programs start with the root package
// matsteer (open a model, generate with steering, score, train) and come
// here only for what that does not cover.
//
// Every C resource has one Go owner with a Close method. No Go pointer is
// kept by C. The package holds no steering logic; package hooks plugs into a
// context's graph through the EvalHook interface.
//
// llama.cpp logs through a process-wide callback. By default only errors are
// kept (and attached to the Go errors returned by LoadModel and NewContext);
// set MATSTEER_LLAMA_LOG=info or =debug to see llama.cpp's own log on stderr.
package llama

/*
#include <stdlib.h>
#include "shim.h"
#include "rpc.h"
#include "ggml-backend.h"
*/
import "C"

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// Token is a vocabulary token id.
type Token = int32

var backendOnce sync.Once

// logState is the process-wide sink for llama.cpp's log callback. llama.cpp
// itself has a single, global log callback, so this cannot be per-context.
var logState struct {
	mu      sync.Mutex
	echo    bool
	lastErr []string
}

// initBackend initializes llama.cpp's backends once per process.
func initBackend() {
	backendOnce.Do(func() {
		level := C.GGML_LOG_LEVEL_ERROR
		switch strings.ToLower(os.Getenv("MATSTEER_LLAMA_LOG")) {
		case "debug":
			level = C.GGML_LOG_LEVEL_DEBUG
			logState.echo = true
		case "info", "1", "true":
			level = C.GGML_LOG_LEVEL_INFO
			logState.echo = true
		case "warn":
			level = C.GGML_LOG_LEVEL_WARN
			logState.echo = true
		}
		C.matsteer_log_install(C.int(level))
		C.matsteer_abort_install()
		C.llama_backend_init()
		C.ggml_backend_load_all()
	})
}

//export matsteerGoLog
func matsteerGoLog(level C.int, text *C.char) {
	s := C.GoString(text)
	logState.mu.Lock()
	defer logState.mu.Unlock()
	if logState.echo {
		fmt.Fprint(os.Stderr, s)
	}
	if level == C.GGML_LOG_LEVEL_ERROR {
		logState.lastErr = append(logState.lastErr, strings.TrimSpace(s))
		if len(logState.lastErr) > 8 {
			logState.lastErr = logState.lastErr[len(logState.lastErr)-8:]
		}
	}
}

// takeLogErrors returns and clears the error lines llama.cpp logged since
// the last call, joined for use in an error message.
func takeLogErrors() string {
	logState.mu.Lock()
	defer logState.mu.Unlock()
	s := strings.Join(logState.lastErr, "; ")
	logState.lastErr = nil
	return s
}

// SystemInfo reports llama.cpp's build and CPU features.
func SystemInfo() string {
	initBackend()
	return C.GoString(C.llama_print_system_info())
}

// SupportsGPUOffload reports whether this build can offload layers at all:
// to a GPU or, in a build with the RPC backend (the default), to RPC servers
// (llama.cpp's llama_supports_gpu_offload). HasLocalGPU says whether a local
// GPU is present.
func SupportsGPUOffload() bool {
	initBackend()
	return bool(C.llama_supports_gpu_offload())
}
