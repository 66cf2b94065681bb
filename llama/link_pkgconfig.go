//go:build matsteer_pkgconfig

package llama

// With -tags matsteer_pkgconfig, llama.cpp is found through pkg-config:
// `make install PREFIX=...` writes PREFIX/lib/pkgconfig/matsteer-llama.pc;
// set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig.

// #cgo pkg-config: matsteer-llama
import "C"
