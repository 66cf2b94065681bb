package llama

/*
#include <stdlib.h>
#include "rpc.h"
#include "ggml-rpc.h"
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// llama.cpp's RPC backend (a build with GGML_RPC=ON, the default of
// scripts/llama-cpp.sh) puts layers on ggml backends in other processes,
// usually on other machines: each runs llama.cpp's rpc-server, and
// ModelParams.RPC lists them. Layers offloaded with GPULayers are split over
// the servers (in proportion to the memory they report) and the local GPUs,
// as llama.cpp's --rpc does; the rest stays on the local CPU.
//
// rpc-server is unauthenticated and unencrypted: anyone who can reach its
// port can run computations on it and read what it holds. Use it on
// loopback or a private network only.
//
// ggml's RPC client cannot recover from a lost connection: it aborts the
// process. LoadModel therefore checks every server first (CheckRPCServer),
// so a server that is down is a plain error naming it; a server that goes
// away while a model is in use still ends the process, but through
// OnRPCFailure (default: a message naming the server that is gone, and exit
// status 1) instead of a crash.

// MaxRPCServers is the most RPC servers one process can use (ggml's
// GGML_RPC_MAX_SERVERS).
const MaxRPCServers = C.GGML_RPC_MAX_SERVERS

// ErrRPCUnavailable is returned (wrapped) when this build has no RPC
// backend.
var ErrRPCUnavailable = errors.New("this llama.cpp build has no RPC backend (build it with GGML_RPC=ON: `make`)")

// SupportsRPC reports whether this build has llama.cpp's RPC backend.
func SupportsRPC() bool {
	initBackend()
	return bool(C.matsteer_rpc_supported())
}

// HasLocalGPU reports whether a local GPU device (CUDA, Vulkan, Metal, ...)
// is available to offload layers to. RPC servers do not count.
func HasLocalGPU() bool {
	initBackend()
	var devs [16]C.ggml_backend_dev_t
	return C.matsteer_local_gpus(&devs[0], C.int(len(devs))) > 0
}

// GPUBackends names the GPU backends compiled into this build (CUDA,
// Vulkan, Metal, ...), whether or not this machine has a device for them;
// the CPU, BLAS and RPC backends are not listed.
func GPUBackends() []string {
	initBackend()
	var names []string
	for i := range int(C.ggml_backend_reg_count()) {
		name := C.GoString(C.ggml_backend_reg_name(C.ggml_backend_reg_get(C.size_t(i))))
		switch name {
		case "CPU", "BLAS", "RPC":
			continue
		}
		names = append(names, name)
	}
	return names
}

// NoLocalGPUError is the error for offloading layers (GPU layers n) when
// HasLocalGPU is false: it says whether the build lacks a GPU backend or
// the machine lacks a device for the one it has. what names the setting
// ("--gpu-layers", "Options.GPULayers"), rpc how to offload to RPC
// servers instead.
func NoLocalGPUError(what string, n int, rpc string) error {
	if b := GPUBackends(); len(b) > 0 {
		return fmt.Errorf("%s %d: no GPU in this build or machine: this build has %s, but found no device for it (MATSTEER_LLAMA_LOG=info shows ggml's reason); run on the CPU (%s 0) or offload to RPC servers with %s", what, n, strings.Join(b, ", "), what, rpc)
	}
	return fmt.Errorf("%s %d: no GPU in this build or machine: this build has no GPU backend; rebuild with `make CUDA=1` (or VULKAN=1), or offload to RPC servers with %s", what, n, rpc)
}

// ParseRPCServers parses a comma-separated list of HOST:PORT endpoints
// (llama.cpp's --rpc spelling). HOST is an IPv4 address or a host name
// (ggml's client speaks IPv4 only), PORT is in 1..65535; an empty list,
// a repeated endpoint or more than MaxRPCServers are errors.
func ParseRPCServers(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no RPC server given (want HOST:PORT[,HOST:PORT...])")
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxRPCServers {
		return nil, fmt.Errorf("%d RPC servers: at most %d are supported", len(parts), MaxRPCServers)
	}
	seen := make(map[string]bool, len(parts))
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		ep := strings.TrimSpace(p)
		if err := checkEndpoint(ep); err != nil {
			return nil, err
		}
		if seen[ep] {
			return nil, fmt.Errorf("RPC server %s is listed twice", ep)
		}
		seen[ep] = true
		out = append(out, ep)
	}
	return out, nil
}

func checkEndpoint(ep string) error {
	if ep == "" {
		return errors.New("empty RPC server in the list (want HOST:PORT[,HOST:PORT...])")
	}
	i := strings.LastIndexByte(ep, ':')
	if i < 0 {
		return fmt.Errorf("RPC server %q: want HOST:PORT", ep)
	}
	host, port := ep[:i], ep[i+1:]
	switch {
	case host == "":
		return fmt.Errorf("RPC server %q: no host (want HOST:PORT)", ep)
	case strings.ContainsAny(host, ":[]"):
		return fmt.Errorf("RPC server %q: IPv6 addresses are not supported by llama.cpp's RPC client; use an IPv4 address or a host name", ep)
	case strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r > '~' || r == '/' || r == '@' }):
		return fmt.Errorf("RPC server %q: the host has characters a host name cannot have", ep)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return fmt.Errorf("RPC server %q: port %q is not a number in 1..65535", ep, port)
	}
	return nil
}

// rpcHelloCmd and the sizes below are ggml's RPC wire format (protocol 6):
// | cmd (1 byte) | size (8 bytes) | request |, answered by | size | response |.
const (
	rpcHelloCmd     = 14 // RPC_CMD_HELLO
	rpcConnCapsSize = 24 // RPC_CONN_CAPS_SIZE
)

// CheckRPCServer connects to an RPC server and runs the protocol's opening
// handshake (HELLO, as llama.cpp's client does first), within timeout. It
// returns an error naming the endpoint when the server cannot be reached,
// does not answer (a program that is not rpc-server, or one busy with
// another client: rpc-server serves one client at a time), or speaks a
// protocol version this build cannot use. The connection is closed again.
func CheckRPCServer(endpoint string, timeout time.Duration) error {
	if err := checkEndpoint(endpoint); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	conn, err := net.DialTimeout("tcp4", endpoint, timeout)
	if err != nil {
		return fmt.Errorf("RPC server %s: cannot connect (is rpc-server running there?): %w", endpoint, err)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	req := make([]byte, 1+8+rpcConnCapsSize)
	req[0] = rpcHelloCmd
	binary.LittleEndian.PutUint64(req[1:], rpcConnCapsSize)
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("RPC server %s: handshake: %w", endpoint, err)
	}
	var rsp [8 + 4 + rpcConnCapsSize]byte
	if _, err := io.ReadFull(conn, rsp[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("RPC server %s: no answer to the handshake within %v (not an rpc-server, or busy with another client: rpc-server serves one at a time)", endpoint, timeout)
		}
		return fmt.Errorf("RPC server %s: handshake: %w (not an rpc-server, or a version that refused this client)", endpoint, err)
	}
	if n := binary.LittleEndian.Uint64(rsp[:8]); n != 4+rpcConnCapsSize {
		return fmt.Errorf("RPC server %s: unexpected handshake answer (%d bytes): not an rpc-server of this llama.cpp version", endpoint, n)
	}
	major, minor, patch := rsp[8], rsp[9], rsp[10]
	if major != C.RPC_PROTO_MAJOR_VERSION || minor > C.RPC_PROTO_MINOR_VERSION {
		return fmt.Errorf("RPC server %s speaks RPC protocol %d.%d.%d; this build needs %d.x with x <= %d (run the rpc-server built with matsteer: bin/rpc-server)",
			endpoint, major, minor, patch, C.RPC_PROTO_MAJOR_VERSION, C.RPC_PROTO_MINOR_VERSION)
	}
	return nil
}

// rpcState tracks the RPC servers that loaded models use, for the
// pre-load check and for naming the server that went away.
var rpcState struct {
	mu      sync.Mutex
	live    map[string]int // endpoint -> models loaded on it
	handler func(error)
}

// rpcCheckTimeout bounds the handshake LoadModel runs with each server.
const rpcCheckTimeout = 5 * time.Second

// rpcAcquire checks the servers a model is about to use and counts them as
// in use. A server this process already holds a connection to (another
// loaded model uses it) is not checked again: rpc-server would hold the new
// connection back until the old one closes.
func rpcAcquire(eps []string) error {
	rpcState.mu.Lock()
	defer rpcState.mu.Unlock()
	for _, ep := range eps {
		if rpcState.live[ep] > 0 {
			continue
		}
		if err := CheckRPCServer(ep, rpcCheckTimeout); err != nil {
			return err
		}
	}
	if rpcState.live == nil {
		rpcState.live = map[string]int{}
	}
	for _, ep := range eps {
		rpcState.live[ep]++
	}
	return nil
}

func rpcRelease(eps []string) {
	rpcState.mu.Lock()
	defer rpcState.mu.Unlock()
	for _, ep := range eps {
		if rpcState.live[ep]--; rpcState.live[ep] <= 0 {
			delete(rpcState.live, ep)
		}
	}
}

// RPCFailure is the error passed to the OnRPCFailure handler.
type RPCFailure struct {
	// Down lists the servers that no longer accept connections; empty when
	// none could be told apart (the connection broke, the server did not).
	Down []string
	// InUse lists the servers loaded models were using.
	InUse []string
	// Detail is ggml's own message.
	Detail string
}

func (e *RPCFailure) Error() string {
	switch {
	case len(e.Down) > 0:
		return fmt.Sprintf("lost RPC server %s (it no longer accepts connections); llama.cpp's RPC client cannot continue without it [ggml: %s]",
			strings.Join(e.Down, ", "), e.Detail)
	case len(e.InUse) > 0:
		return fmt.Sprintf("lost the connection to one of the RPC servers %s; llama.cpp's RPC client cannot continue [ggml: %s]",
			strings.Join(e.InUse, ", "), e.Detail)
	}
	return "RPC failure: " + e.Detail
}

// OnRPCFailure sets the function called when an RPC server in use goes away
// (ggml's RPC client would abort the process). It runs on one of ggml's
// threads while decoding is stuck; it may log, flush or remove temporary
// files, and must not call into llama.cpp. When it returns, the process
// exits with status 1. The default prints the error to stderr.
func OnRPCFailure(f func(err error)) {
	rpcState.mu.Lock()
	defer rpcState.mu.Unlock()
	rpcState.handler = f
}

var abortOnce sync.Once

//export matsteerGoAbort
func matsteerGoAbort(msg *C.char) {
	detail := C.GoString(msg)
	if !strings.Contains(detail, "ggml-rpc") {
		// Not an RPC failure: ggml aborts as usual once this returns.
		fmt.Fprintf(os.Stderr, "llama.cpp: fatal: %s\n", detail)
		return
	}
	abortOnce.Do(func() {
		if i := strings.Index(detail, "ggml-rpc.cpp:"); i >= 0 {
			if j := strings.Index(detail[i:], ": "); j >= 0 {
				detail = detail[i+j+2:]
			}
		}
		detail = strings.TrimSpace(detail)
		rpcState.mu.Lock()
		inUse := make([]string, 0, len(rpcState.live))
		for ep := range rpcState.live {
			inUse = append(inUse, ep)
		}
		h := rpcState.handler
		rpcState.mu.Unlock()
		sortStrings(inUse)
		fail := &RPCFailure{InUse: inUse, Detail: detail}
		for _, ep := range inUse {
			// A server that is alive but busy with this process's own
			// connection still accepts (into its backlog): only a refused
			// or timed-out connection marks it as gone.
			c, err := net.DialTimeout("tcp4", ep, time.Second)
			if err != nil {
				fail.Down = append(fail.Down, ep)
				continue
			}
			c.Close()
		}
		if h != nil {
			h(fail)
		} else {
			fmt.Fprintf(os.Stderr, "matsteer: %v\n", fail)
		}
		os.Exit(1)
	})
	// A second failing thread waits here for the exit above.
	select {}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// deviceList builds the NULL-terminated device list for llama_model_params
// when RPC servers are given: the servers' devices first (as llama.cpp
// orders them, to keep network transfers down), then the local GPUs. It
// returns nil (llama.cpp's default selection) without servers.
func deviceList(eps []string) (devs *C.ggml_backend_dev_t, labels map[string]string, err error) {
	if len(eps) == 0 {
		return nil, nil, nil
	}
	if !bool(C.matsteer_rpc_supported()) {
		return nil, nil, fmt.Errorf("RPC servers %s: %w", strings.Join(eps, ","), ErrRPCUnavailable)
	}
	const maxDevs = 64
	arr := (*[maxDevs + 1]C.ggml_backend_dev_t)(C.calloc(maxDevs+1, C.size_t(unsafe.Sizeof(C.ggml_backend_dev_t(nil)))))
	labels = map[string]string{}
	n := 0
	for _, ep := range eps {
		cep := C.CString(ep)
		k := C.matsteer_rpc_devices(cep, &arr[n], C.int(maxDevs-n))
		C.free(unsafe.Pointer(cep))
		switch {
		case k == -1:
			C.free(unsafe.Pointer(arr))
			return nil, nil, fmt.Errorf("RPC server %s: %w", ep, ErrRPCUnavailable)
		case k <= 0:
			C.free(unsafe.Pointer(arr))
			return nil, nil, fmt.Errorf("RPC server %s reports no device", ep)
		}
		for i := n; i < n+int(k); i++ {
			labels[C.GoString(C.ggml_backend_dev_name(arr[i]))] = fmt.Sprintf("%s (rpc %s)", C.GoString(C.ggml_backend_dev_name(arr[i])), ep)
		}
		n += int(k)
	}
	n += int(C.matsteer_local_gpus(&arr[n], C.int(maxDevs-n)))
	arr[n] = nil
	return &arr[0], labels, nil
}

// Placement says where a model's layers are: for each block (by layer
// index) and for the output layer, the device that holds its weights and
// computes it: "CPU", a local GPU's name (e.g. "CUDA0"), or an RPC device
// with its server ("RPC0 (rpc 10.0.0.2:50052)").
type Placement struct {
	Layers []string
	Output string
}

// String summarizes the placement as runs of layers per device, e.g.
// "layers 0-10 CPU, 11-20 RPC0 (rpc 127.0.0.1:50052), 21-29 + output RPC1 (rpc ...)".
func (p Placement) String() string {
	var b strings.Builder
	b.WriteString("layers ")
	for i := 0; i < len(p.Layers); {
		j := i
		for j+1 < len(p.Layers) && p.Layers[j+1] == p.Layers[i] {
			j++
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if i == j {
			fmt.Fprintf(&b, "%d", i)
		} else {
			fmt.Fprintf(&b, "%d-%d", i, j)
		}
		if j == len(p.Layers)-1 && p.Output == p.Layers[j] {
			b.WriteString(" + output")
		}
		b.WriteString(" " + p.Layers[i])
		i = j + 1
	}
	if len(p.Layers) == 0 || p.Output != p.Layers[len(p.Layers)-1] {
		fmt.Fprintf(&b, ", output %s", p.Output)
	}
	return b.String()
}

// placementCapture collects llama.cpp's per-layer assignment lines during
// one load (loads are serialized by placementMu).
var (
	placementMu  sync.Mutex
	placementBuf map[int]string
)

//export matsteerGoPlacement
func matsteerGoPlacement(text *C.char) {
	var il int
	var dev string
	if n, _ := fmt.Sscanf(C.GoString(text), "load_tensors: layer %d assigned to device %s", &il, &dev); n == 2 && placementBuf != nil {
		placementBuf[il] = strings.TrimSuffix(dev, ",")
	}
}

func capturePlacement() func(nLayer int, labels map[string]string) Placement {
	placementMu.Lock()
	placementBuf = map[int]string{}
	C.matsteer_capture_placement(1)
	return func(nLayer int, labels map[string]string) Placement {
		C.matsteer_capture_placement(0)
		buf := placementBuf
		placementBuf = nil
		placementMu.Unlock()
		if nLayer < 0 {
			return Placement{}
		}
		name := func(il int) string {
			d, ok := buf[il]
			if !ok {
				return "?"
			}
			if l, ok := labels[d]; ok {
				return l
			}
			return d
		}
		p := Placement{Layers: make([]string, nLayer), Output: name(nLayer)}
		for i := range p.Layers {
			p.Layers[i] = name(i)
		}
		return p
	}
}
