package llama

// Linking against the static llama.cpp build. `make` creates
// third_party/llama.cpp (the source) and third_party/build (the CMake build
// directory) as links into the cache; see third_party/README.md.

/*
#cgo CFLAGS: -I${SRCDIR}/../third_party/llama.cpp/include -I${SRCDIR}/../third_party/llama.cpp/ggml/include -O2
#cgo LDFLAGS: -L${SRCDIR}/../third_party/build/src -L${SRCDIR}/../third_party/build/ggml/src
#cgo !cuda LDFLAGS: -lllama -lggml -lggml-cpu -lggml-base -lstdc++ -lm -lpthread
#cgo cuda LDFLAGS: -L${SRCDIR}/../third_party/build/ggml/src/ggml-cuda -L/usr/local/cuda/lib64 -L/usr/local/cuda/lib64/stubs
#cgo cuda LDFLAGS: -lllama -lggml -lggml-cpu -lggml-cuda -lggml-base -lcudart -lcublas -lcublasLt -lcuda -lstdc++ -lm -lpthread
*/
import "C"
