// Package hooks captures and edits activations inside llama.cpp's compute
// graph while a context decodes.
//
// Most programs do not use it directly: package intervene installs steering
// files on a context's hooks, package extract captures activations with
// them, and the root package matsteer wraps both.
//
// A Hooks value belongs to one llama.Context (pass it as
// llama.ContextParams.Hook). For any set of points, a site and layer such
// as l_out-14, it can capture the rows of the tensor (copy them out to Go,
// with the mapping from rows to the tokens of the submitted batch) and run
// an Intervention that edits the rows in place before the rest of the graph
// reads them. Points are validated against the model before any decode
// (see Probe and Catalog). Interventions and captures can be set, swapped or
// removed between decodes without recreating the context; two contexts have
// fully independent Hooks.
//
// The per-node "do we want this tensor?" check runs in C and compares names
// only for active points. Host tensors are edited in place through their
// data pointer; tensors elsewhere (CUDA, Vulkan, RPC servers) are copied with
// ggml_backend_tensor_get/set, one transfer each way per hooked tensor and
// micro-batch.
package hooks

/*
#cgo CFLAGS: -I${SRCDIR}/../third_party/llama.cpp/include -I${SRCDIR}/../third_party/llama.cpp/ggml/include -O2
#include <stdlib.h>
#include "shim.h"
#include "ggml-backend.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/cgo"
	"sync"
	"unsafe"

	"github.com/matsteer/matsteer/llama"
)

// Point names one hookable tensor: a site (e.g. "l_out", "attn_out",
// "ffn_out", "kqv_out") in a layer (block index, 0-based).
type Point struct {
	Site  string
	Layer int
}

// TensorName is the graph tensor name, "<site>-<layer>".
func (p Point) TensorName() string { return fmt.Sprintf("%s-%d", p.Site, p.Layer) }

func (p Point) String() string { return p.TensorName() }

// Rows is one micro-batch's rows of a hooked tensor.
type Rows struct {
	Point Point
	// Data holds N rows of NEmbd float32 values, row-major. Interventions may
	// edit it in place; captures must copy what they keep, since Data is
	// only valid during the callback.
	Data  []float32
	NEmbd int
	N     int

	first       int
	outputsOnly bool
	batch       *llama.Batch
	outputs     []int
}

// OutputsOnly reports whether the tensor holds only the rows of tokens
// that requested logits (llama.cpp drops the other rows in the last layer).
func (r *Rows) OutputsOnly() bool { return r.outputsOnly }

// BatchIndex is the index, in the batch passed to Decode, of row i.
func (r *Rows) BatchIndex(i int) int {
	if r.outputsOnly {
		return r.outputs[r.first+i]
	}
	return r.first + i
}

// Token returns the token, position and (first) sequence id of row i.
func (r *Rows) Token(i int) (tok llama.Token, pos, seq int) {
	tok, pos, seq, _ = r.batch.Token(r.BatchIndex(i))
	return tok, pos, seq
}

// Row returns row i (aliases Data).
func (r *Rows) Row(i int) []float32 { return r.Data[i*r.NEmbd : (i+1)*r.NEmbd] }

// Seq returns the (first) sequence id of row i.
func (r *Rows) Seq(i int) int {
	_, _, seq, _ := r.batch.Token(r.BatchIndex(i))
	return seq
}

// Slice returns rows [i, j) as Rows of their own (Data aliases r.Data), so
// an intervention can be applied to part of a micro-batch, e.g. to the rows
// of one sequence.
func (r *Rows) Slice(i, j int) Rows {
	s := *r
	s.Data = r.Data[i*r.NEmbd : j*r.NEmbd]
	s.N = j - i
	s.first = r.first + i
	return s
}

// Intervention edits activation rows in place. It runs on the goroutine
// that called Decode. Returning an error aborts the decode, and Decode
// returns that error.
type Intervention interface {
	Intervene(r *Rows) error
}

// InterventionFunc adapts a function to Intervention.
type InterventionFunc func(r *Rows) error

// Intervene calls f.
func (f InterventionFunc) Intervene(r *Rows) error { return f(r) }

// CaptureFunc receives rows for reading. It must not keep r.Data.
type CaptureFunc func(r *Rows) error

// ErrStopGraph may be returned by a capture or intervention to stop the
// graph right after the hooked tensor, skipping the remaining layers (for
// example when only activations are wanted). Decode then returns an error
// wrapping ErrStopGraph; llama.cpp drops the micro-batch from the KV memory,
// and later micro-batches of the same batch are not evaluated.
var ErrStopGraph = errors.New("graph stopped by hook")

// CaptureWhen says whether a capture sees the rows before or after the
// point's intervention.
type CaptureWhen int

const (
	// BeforeIntervention captures the unmodified rows (the default).
	BeforeIntervention CaptureWhen = iota
	// AfterIntervention captures the rows as the rest of the graph sees them.
	AfterIntervention
)

type pointState struct {
	point        Point
	intervention Intervention
	capture      CaptureFunc
	captureWhen  CaptureWhen
	// cursors into the current batch: tokens and outputs consumed so far.
	fullCursor, outCursor int
}

// Hooks is the hook state of one context. Set interventions and captures
// only between decodes of that context (not concurrently with Decode).
type Hooks struct {
	c       *C.struct_matsteer_hooks
	handle  cgo.Handle
	catalog *Catalog

	mu      sync.Mutex
	points  []*pointState // index = position in the C name table
	byName  map[string]*pointState
	err     error
	batch   *llama.Batch
	nTok    int
	nUBatch int
	outputs []int
	scratch []float32

	forceCopy bool
	probed    []string
}

// New makes the hook state for one context on the model cat describes.
func New(cat *Catalog) *Hooks {
	h := &Hooks{
		c:       (*C.struct_matsteer_hooks)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_matsteer_hooks{})))),
		catalog: cat,
		byName:  map[string]*pointState{},
	}
	h.handle = cgo.NewHandle(h)
	h.c.handle = C.uintptr_t(h.handle)
	return h
}

// Close frees the hook state. Call it after closing the context.
func (h *Hooks) Close() {
	if h == nil || h.c == nil {
		return
	}
	h.handle.Delete()
	C.free(unsafe.Pointer(h.c))
	h.c = nil
}

// Catalog returns the catalog points are validated against.
func (h *Hooks) Catalog() *Catalog { return h.catalog }

// EvalCallback implements llama.EvalHook.
func (h *Hooks) EvalCallback() (fn, userData unsafe.Pointer) {
	return C.matsteer_hooks_cb, unsafe.Pointer(h.c)
}

// SetForceCopy makes the callback copy rows through
// ggml_backend_tensor_get/set even for host tensors, the path used for GPU
// memory. It exists so that path can be tested on a CPU.
func (h *Hooks) SetForceCopy(on bool) { h.forceCopy = on }

// SetIntervention installs iv at p, replacing any earlier one (nil removes).
func (h *Hooks) SetIntervention(p Point, iv Intervention) error {
	return h.update(p, func(s *pointState) { s.intervention = iv })
}

// SetCapture installs a capture at p (nil removes).
func (h *Hooks) SetCapture(p Point, fn CaptureFunc, when CaptureWhen) error {
	return h.update(p, func(s *pointState) { s.capture, s.captureWhen = fn, when })
}

// Clear removes every intervention and capture.
func (h *Hooks) Clear() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.points = nil
	h.byName = map[string]*pointState{}
	h.c.n = 0
}

// Active lists the points with an intervention or capture.
func (h *Hooks) Active() []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Point, len(h.points))
	for i, s := range h.points {
		out[i] = s.point
	}
	return out
}

func (h *Hooks) update(p Point, set func(*pointState)) error {
	if h.catalog != nil {
		if err := h.catalog.Check(p); err != nil {
			return err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	name := p.TensorName()
	s := h.byName[name]
	if s == nil {
		if len(h.points) >= C.MATSTEER_MAX_POINTS {
			return fmt.Errorf("hooks: at most %d points per context", C.MATSTEER_MAX_POINTS)
		}
		if len(name) >= C.GGML_MAX_NAME {
			return fmt.Errorf("hooks: tensor name %q too long", name)
		}
		s = &pointState{point: p}
	}
	set(s)
	if s.intervention == nil && s.capture == nil {
		delete(h.byName, name)
	} else {
		h.byName[name] = s
	}
	h.rebuild()
	return nil
}

// rebuild rewrites the C name table from byName (h.mu held).
func (h *Hooks) rebuild() {
	h.points = h.points[:0]
	for _, s := range h.byName {
		h.points = append(h.points, s)
	}
	for i, s := range h.points {
		name := s.point.TensorName()
		dst := unsafe.Slice((*byte)(unsafe.Pointer(&h.c.names[i][0])), C.GGML_MAX_NAME)
		n := copy(dst[:C.GGML_MAX_NAME-1], name)
		dst[n] = 0
	}
	h.c.n = C.int(len(h.points))
}

// BeforeDecode implements llama.EvalHook: it records the batch so rows can
// be mapped back to tokens.
func (h *Hooks) BeforeDecode(b *llama.Batch, nUBatch int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err = nil
	h.batch = b
	h.nTok = b.Len()
	h.nUBatch = nUBatch
	h.outputs = h.outputs[:0]
	if len(h.points) == 0 {
		return
	}
	for i := 0; i < h.nTok; i++ {
		if _, _, _, logits := b.Token(i); logits {
			h.outputs = append(h.outputs, i)
		}
	}
	for _, s := range h.points {
		s.fullCursor, s.outCursor = 0, 0
	}
}

// AfterDecode implements llama.EvalHook: an error from an intervention or
// capture replaces llama.cpp's "aborted".
func (h *Hooks) AfterDecode(err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.batch = nil
	if h.err != nil {
		e := h.err
		h.err = nil
		return e
	}
	return err
}

//export matsteerHooksEval
func matsteerHooksEval(handle C.uintptr_t, idx C.int, t *C.struct_ggml_tensor) C.bool {
	h := cgo.Handle(handle).Value().(*Hooks)
	if err := h.eval(int(idx), t); err != nil {
		h.err = err
		return false
	}
	return true
}

//export matsteerHooksProbe
func matsteerHooksProbe(handle C.uintptr_t, name *C.char, matrix C.bool) {
	if !matrix {
		return // only [n_embd, n_tokens] F32 tensors can be hooked
	}
	h := cgo.Handle(handle).Value().(*Hooks)
	h.probed = append(h.probed, C.GoString(name))
}

func (h *Hooks) eval(idx int, t *C.struct_ggml_tensor) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if idx >= len(h.points) {
		return nil
	}
	s := h.points[idx]
	if t._type != C.GGML_TYPE_F32 || !bool(C.ggml_is_contiguous(t)) {
		return fmt.Errorf("hooks: tensor %s is not a contiguous F32 tensor", s.point)
	}
	ne0, ne1 := int(t.ne[0]), int(t.ne[1])
	if t.ne[2] != 1 || t.ne[3] != 1 {
		return fmt.Errorf("hooks: tensor %s has shape [%d %d %d %d], want a matrix", s.point, t.ne[0], t.ne[1], t.ne[2], t.ne[3])
	}
	rows := Rows{Point: s.point, NEmbd: ne0, N: ne1, batch: h.batch, outputs: h.outputs}
	// Map rows to batch tokens: micro-batches are consecutive slices of the
	// batch (one KV stream), and a tensor holds either every token of the
	// micro-batch or only its outputs.
	expected := min(h.nUBatch, h.nTok-s.fullCursor)
	if ne1 == expected {
		rows.first = s.fullCursor
		for _, o := range h.outputs {
			if o >= s.fullCursor && o < s.fullCursor+ne1 {
				s.outCursor++
			}
		}
		s.fullCursor += ne1
	} else {
		if s.outCursor+ne1 > len(h.outputs) {
			return fmt.Errorf("hooks: tensor %s has %d rows; cannot map them to the batch's %d tokens / %d outputs", s.point, ne1, h.nTok, len(h.outputs))
		}
		rows.first = s.outCursor
		rows.outputsOnly = true
		s.outCursor += ne1
		s.fullCursor += expected
	}

	n := ne0 * ne1
	host := !h.forceCopy && bool(C.matsteer_tensor_is_host(t))
	if host {
		rows.Data = unsafe.Slice((*float32)(t.data), n)
	} else {
		if cap(h.scratch) < n {
			h.scratch = make([]float32, n)
		}
		rows.Data = h.scratch[:n]
		C.ggml_backend_tensor_get(t, unsafe.Pointer(&rows.Data[0]), 0, C.size_t(4*n))
	}
	if s.capture != nil && s.captureWhen == BeforeIntervention {
		if err := s.capture(&rows); err != nil {
			return fmt.Errorf("capture %s: %w", s.point, err)
		}
	}
	if s.intervention != nil {
		if err := s.intervention.Intervene(&rows); err != nil {
			return fmt.Errorf("intervention %s: %w", s.point, err)
		}
		if !host {
			C.ggml_backend_tensor_set(t, unsafe.Pointer(&rows.Data[0]), 0, C.size_t(4*n))
		}
	}
	if s.capture != nil && s.captureWhen == AfterIntervention {
		if err := s.capture(&rows); err != nil {
			return fmt.Errorf("capture %s: %w", s.point, err)
		}
	}
	return nil
}
