package llama

/*
#include <stdlib.h>
#include "shim.h"
#include "rpc.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// EvalHook is implemented by code that wants llama.cpp's graph-evaluation
// callback (cb_eval) for a context, such as package hooks. Callback must
// return a C function pointer of type ggml_backend_sched_eval_callback and
// its user data; both stay valid until the context is closed.
type EvalHook interface {
	EvalCallback() (fn, userData unsafe.Pointer)
	// BeforeDecode is called with every batch before it is evaluated.
	BeforeDecode(b *Batch, nUBatch int)
	// AfterDecode is called after the batch with llama_decode's error; it
	// returns the error to report (e.g. the hook's own, when it aborted).
	AfterDecode(err error) error
}

// ContextParams configure a context. Zero values mean llama.cpp's defaults,
// except where noted.
type ContextParams struct {
	NCtx    int // context length in tokens (0: 4096, capped at the model's training length)
	NBatch  int // largest batch passed to Decode (0: 512)
	NUBatch int // micro-batch size (0: 512)
	NSeqMax int // sequences decoded together (0: 1)
	// Threads used for generation and for batches (0: all cores).
	Threads, ThreadsBatch int
	// Hook, if set, receives llama.cpp's per-node evaluation callback.
	Hook EvalHook
	// Embeddings also extracts embeddings.
	Embeddings bool
	// NoPerf switches off llama.cpp's internal timing counters.
	NoPerf bool
}

// Context is an inference context: KV memory plus compute buffers. It is not
// safe for concurrent use; use one context per goroutine.
type Context struct {
	c      *C.struct_llama_context
	model  *Model
	nCtx   int
	nBatch int
	nSeq   int
	// abortFlag is C memory polled by llama.cpp's abort callback.
	abortFlag *C.int
	hook      EvalHook
	// pool is the CPU threadpool the context computes with: created once,
	// so a decode neither starts threads nor waits for them to start.
	pool     *C.struct_ggml_threadpool
	poolSize int
}

// ErrNoKVSlot means the KV memory is full: the batch does not fit the context.
var ErrNoKVSlot = errors.New("no KV slot for the batch (context full)")

// ErrAborted means the decode was cancelled.
var ErrAborted = errors.New("decode aborted")

// NewContext creates an inference context for m.
func NewContext(m *Model, p ContextParams) (*Context, error) {
	if m == nil || m.c == nil {
		return nil, errors.New("new context: model is closed")
	}
	cp := C.llama_context_default_params()
	nCtx := p.NCtx
	if nCtx <= 0 {
		nCtx = 4096
		if t := m.NCtxTrain(); t > 0 && t < nCtx {
			nCtx = t
		}
	}
	cp.n_ctx = C.uint32_t(nCtx)
	if p.NBatch > 0 {
		cp.n_batch = C.uint32_t(p.NBatch)
	}
	if p.NUBatch > 0 {
		cp.n_ubatch = C.uint32_t(p.NUBatch)
	}
	if p.NSeqMax > 0 {
		cp.n_seq_max = C.uint32_t(p.NSeqMax)
	}
	// llama.cpp reserves its compute graph for one micro-batch holding every
	// sequence, and asserts (aborting the process) when they do not fit.
	if nUB := min(int(cp.n_batch), int(cp.n_ubatch), nCtx); int(cp.n_seq_max) > nUB {
		return nil, fmt.Errorf("new context: %d sequences do not fit a micro-batch of %d tokens (n_batch %d, n_ubatch %d, n_ctx %d)",
			cp.n_seq_max, nUB, cp.n_batch, cp.n_ubatch, nCtx)
	}
	threads := p.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	tb := p.ThreadsBatch
	if tb <= 0 {
		tb = threads
	}
	cp.n_threads = C.int32_t(threads)
	cp.n_threads_batch = C.int32_t(tb)
	cp.embeddings = C.bool(p.Embeddings)
	// One KV stream for all sequences: micro-batches are then consecutive
	// slices of the submitted batch, which the hook layer relies on to map
	// tensor rows back to tokens, and sequences can share prefix cells.
	cp.kv_unified = true
	cp.no_perf = C.bool(p.NoPerf)
	if p.Hook != nil {
		fn, ud := p.Hook.EvalCallback()
		cp.cb_eval = C.ggml_backend_sched_eval_callback(fn)
		cp.cb_eval_user_data = ud
	}
	flag := (*C.int)(C.calloc(1, C.size_t(unsafe.Sizeof(C.int(0)))))
	cp.abort_callback = C.ggml_abort_callback(C.matsteer_abort_cb)
	cp.abort_callback_data = unsafe.Pointer(flag)
	takeLogErrors()
	c := C.matsteer_init_from_model(m.c, cp)
	if c == nil {
		C.free(unsafe.Pointer(flag))
		msg := takeLogErrors()
		if msg == "" {
			msg = "llama.cpp could not create it"
		}
		return nil, fmt.Errorf("new context (n_ctx=%d): %s", nCtx, msg)
	}
	poolSize := max(threads, tb)
	pool := C.matsteer_threadpool_new(C.int(poolSize))
	if pool == nil {
		C.llama_free(c)
		C.free(unsafe.Pointer(flag))
		return nil, fmt.Errorf("new context: cannot start a pool of %d CPU threads", poolSize)
	}
	C.llama_attach_threadpool(c, pool, nil)
	return &Context{
		c: c, model: m, abortFlag: flag, hook: p.Hook, pool: pool, poolSize: poolSize,
		nCtx:   int(C.llama_n_ctx(c)),
		nBatch: int(C.llama_n_batch(c)),
		nSeq:   int(C.llama_n_seq_max(c)),
	}, nil
}

// Close frees the context. It is safe to call more than once.
func (c *Context) Close() {
	if c == nil || c.c == nil {
		return
	}
	C.llama_free(c.c)
	C.ggml_threadpool_free(c.pool)
	C.free(unsafe.Pointer(c.abortFlag))
	c.c = nil
	c.pool = nil
	c.abortFlag = nil
}

// Model returns the model the context was made from.
func (c *Context) Model() *Model { return c.model }

// NCtx is the context length in tokens.
func (c *Context) NCtx() int { return c.nCtx }

// NBatch is the largest batch Decode accepts.
func (c *Context) NBatch() int { return c.nBatch }

// NUBatch is the micro-batch size.
func (c *Context) NUBatch() int { return int(C.llama_n_ubatch(c.c)) }

// NSeqMax is the number of sequences the context holds.
func (c *Context) NSeqMax() int { return c.nSeq }

// SetThreads changes the thread counts for generation and batches, each
// between 1 and the context's pool size (max(Threads, ThreadsBatch) at
// creation); values outside are clamped.
func (c *Context) SetThreads(gen, batch int) {
	gen, batch = min(max(gen, 1), c.poolSize), min(max(batch, 1), c.poolSize)
	C.llama_set_n_threads(c.c, C.int32_t(gen), C.int32_t(batch))
}

// Abort asks a running Decode on this context to stop. It may be called
// from any goroutine; the flag is cleared at the start of the next Decode.
func (c *Context) Abort() {
	if c.abortFlag != nil {
		atomic.StoreInt32((*int32)(unsafe.Pointer(c.abortFlag)), 1)
	}
}

// Decode evaluates a batch. Positions and sequence ids are taken from b.
func (c *Context) Decode(b *Batch) error {
	if c.c == nil {
		return errors.New("decode: context is closed")
	}
	if b.n == 0 {
		return errors.New("decode: empty batch")
	}
	if b.n > c.nBatch {
		return fmt.Errorf("decode: batch of %d tokens exceeds n_batch=%d", b.n, c.nBatch)
	}
	atomic.StoreInt32((*int32)(unsafe.Pointer(c.abortFlag)), 0)
	b.c.n_tokens = C.int32_t(b.n)
	if c.hook != nil {
		c.hook.BeforeDecode(b, c.NUBatch())
		return c.hook.AfterDecode(c.decode(b))
	}
	return c.decode(b)
}

func (c *Context) decode(b *Batch) error {
	rc := C.llama_decode(c.c, b.c)
	switch {
	case rc == 0:
		return nil
	case rc == 1:
		return fmt.Errorf("decode %d tokens: %w", b.n, ErrNoKVSlot)
	case rc == 2:
		return fmt.Errorf("decode: %w", ErrAborted)
	default:
		msg := takeLogErrors()
		return fmt.Errorf("decode %d tokens: llama_decode returned %d: %s", b.n, int(rc), msg)
	}
}

// Logits returns the logits of the i-th output of the last Decode (i < 0
// counts from the end). The slice aliases llama.cpp's buffer: it is valid
// until the next Decode; copy it to keep it.
func (c *Context) Logits(i int) ([]float32, error) {
	p := C.llama_get_logits_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil, fmt.Errorf("logits: no output at index %d (was logits requested for that token?)", i)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), c.model.NVocab()), nil
}

// Embeddings returns the embedding of the i-th output of the last Decode
// (requires ContextParams.Embeddings). Valid until the next Decode.
func (c *Context) Embeddings(i int) ([]float32, error) {
	p := C.llama_get_embeddings_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil, fmt.Errorf("embeddings: no output at index %d", i)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), c.model.NEmbd()), nil
}

// ClearMemory empties the KV memory of every sequence.
func (c *Context) ClearMemory() { C.llama_memory_clear(C.llama_get_memory(c.c), true) }

// RemoveTokens drops positions [p0, p1) of sequence seq from the KV memory
// (p1 < 0: to the end; seq < 0: every sequence). It reports whether
// llama.cpp could do it.
func (c *Context) RemoveTokens(seq, p0, p1 int) bool {
	return bool(C.llama_memory_seq_rm(C.llama_get_memory(c.c), C.llama_seq_id(seq), C.llama_pos(p0), C.llama_pos(p1)))
}

// CopySequence makes positions [p0, p1) of src visible to dst too (shared
// cells; p1 < 0: to the end).
func (c *Context) CopySequence(src, dst, p0, p1 int) {
	C.llama_memory_seq_cp(C.llama_get_memory(c.c), C.llama_seq_id(src), C.llama_seq_id(dst), C.llama_pos(p0), C.llama_pos(p1))
}

// SequenceMaxPos is the largest position stored for seq (-1 if empty).
func (c *Context) SequenceMaxPos(seq int) int {
	return int(C.llama_memory_seq_pos_max(C.llama_get_memory(c.c), C.llama_seq_id(seq)))
}

// Perf holds llama.cpp's timing counters for a context.
type Perf struct {
	PromptMs, EvalMs float64
	PromptTokens     int
	EvalTokens       int
}

// Perf returns the timing counters since the last ResetPerf.
func (c *Context) Perf() Perf {
	d := C.llama_perf_context(c.c)
	return Perf{PromptMs: float64(d.t_p_eval_ms), EvalMs: float64(d.t_eval_ms), PromptTokens: int(d.n_p_eval), EvalTokens: int(d.n_eval)}
}

// ResetPerf zeroes the timing counters.
func (c *Context) ResetPerf() { C.llama_perf_context_reset(c.c) }

// Batch is a set of tokens submitted to Decode together.
type Batch struct {
	c       C.struct_llama_batch
	cap     int
	nSeqMax int
	n       int
	nOut    int
	seqBuf  *C.llama_seq_id
}

// NewBatch allocates a batch for up to capacity tokens, each in up to
// nSeqMax sequences.
func NewBatch(capacity, nSeqMax int) *Batch {
	if nSeqMax < 1 {
		nSeqMax = 1
	}
	return &Batch{
		c:       C.llama_batch_init(C.int32_t(capacity), 0, C.int32_t(nSeqMax)),
		cap:     capacity,
		nSeqMax: nSeqMax,
		seqBuf:  (*C.llama_seq_id)(C.malloc(C.size_t(nSeqMax) * C.size_t(unsafe.Sizeof(C.llama_seq_id(0))))),
	}
}

// Close frees the batch.
func (b *Batch) Close() {
	if b == nil || b.cap == 0 {
		return
	}
	b.c.n_tokens = C.int32_t(b.cap)
	C.llama_batch_free(b.c)
	C.free(unsafe.Pointer(b.seqBuf))
	b.cap = 0
}

// Clear empties the batch for reuse.
func (b *Batch) Clear() { b.n, b.nOut = 0, 0 }

// Len is the number of tokens in the batch.
func (b *Batch) Len() int { return b.n }

// Outputs is the number of tokens that request logits.
func (b *Batch) Outputs() int { return b.nOut }

// Cap is the batch capacity.
func (b *Batch) Cap() int { return b.cap }

// Add appends a token at position pos belonging to the given sequences;
// logits requests its output.
func (b *Batch) Add(tok Token, pos int, seqs []int, logits bool) error {
	if b.n >= b.cap {
		return fmt.Errorf("batch full (%d tokens)", b.cap)
	}
	if len(seqs) == 0 || len(seqs) > b.nSeqMax {
		return fmt.Errorf("batch add: %d sequence ids, want 1..%d", len(seqs), b.nSeqMax)
	}
	ids := unsafe.Slice(b.seqBuf, b.nSeqMax)
	for i, s := range seqs {
		ids[i] = C.llama_seq_id(s)
	}
	C.matsteer_batch_set(&b.c, C.int(b.n), C.llama_token(tok), C.llama_pos(pos), b.seqBuf, C.int(len(seqs)), C.bool(logits))
	b.n++
	if logits {
		b.nOut++
	}
	return nil
}

// Token returns the i-th token, its position, first sequence id and whether
// it requests logits.
func (b *Batch) Token(i int) (tok Token, pos, seq int, logits bool) {
	toks := unsafe.Slice(b.c.token, b.cap)
	poss := unsafe.Slice(b.c.pos, b.cap)
	seqIDs := unsafe.Slice(b.c.seq_id, b.cap)
	lg := unsafe.Slice(b.c.logits, b.cap)
	return Token(toks[i]), int(poss[i]), int(*seqIDs[i]), lg[i] != 0
}

// SetControlVector applies llama.cpp's own control vector: data holds
// n_embd values per layer starting at layer 1 (llama.cpp has no slot for
// block 0), added to the output of layers ilStart..ilEnd inclusive.
func (c *Context) SetControlVector(data []float32, nEmbd, ilStart, ilEnd int) error {
	if len(data) == 0 || len(data)%nEmbd != 0 {
		return fmt.Errorf("control vector: %d values is not a multiple of n_embd=%d", len(data), nEmbd)
	}
	rc := C.llama_set_adapter_cvec(c.c, (*C.float)(unsafe.Pointer(&data[0])), C.size_t(len(data)), C.int32_t(nEmbd), C.int32_t(ilStart), C.int32_t(ilEnd))
	if rc != 0 {
		return fmt.Errorf("control vector: llama_set_adapter_cvec failed: %s", takeLogErrors())
	}
	return nil
}

// ClearControlVector removes a control vector set by SetControlVector.
func (c *Context) ClearControlVector() {
	C.llama_set_adapter_cvec(c.c, nil, 0, 0, 0, 0)
}
