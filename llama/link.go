package llama

// How this package finds llama.cpp.
//
// Inside this repository, `make` (scripts/llama-cpp.sh setup) builds the
// pinned llama.cpp into the cache, links third_party/llama.cpp (the source,
// for the headers below) and third_party/build to it, and writes
// link_build.go: the #cgo LDFLAGS of that build, read from llama.cpp's own
// installed CMake package, so every backend the build has (CPU, RPC, Vulkan,
// CUDA, Metal) links with the system libraries it needs and no Go file is
// edited by hand. link_build.go is generated, never committed.
//
// Outside this repository (a module that requires
// github.com/matsteer/matsteer), there is no third_party/ and no
// link_build.go: `make install PREFIX=...` installs the static build and
// either
//   - set CGO_CFLAGS and CGO_LDFLAGS as it prints (PREFIX/lib/matsteer/cgo.env), or
//   - build with -tags matsteer_pkgconfig and PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
//     (link_pkgconfig.go).
// See README.md, "Use from another module".

/*
#cgo CFLAGS: -I${SRCDIR}/../third_party/llama.cpp/include -I${SRCDIR}/../third_party/llama.cpp/ggml/include -O2
*/
import "C"
