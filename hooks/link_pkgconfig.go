//go:build matsteer_pkgconfig

package hooks

// With -tags matsteer_pkgconfig, llama.cpp's headers are found through
// pkg-config (see package llama's link_pkgconfig.go).

// #cgo pkg-config: matsteer-llama
import "C"
