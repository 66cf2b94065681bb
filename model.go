package matsteer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/matsteer/matsteer/engine"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/models"
)

// Limits of Options.
const (
	MaxThreads = 1024
	MaxNCtx    = 1 << 20
)

// Options configure Open. The zero value is a good start: every field has
// a default.
type Options struct {
	// Threads is the CPU thread budget of decoding (0: the number of CPUs,
	// at most 8). More threads than CPUs make llama.cpp much slower.
	Threads int
	// NCtx is each generation's context length in tokens, prompt plus
	// generated text (0: 2048, lowered to the model's training context).
	NCtx int
	// GPULayers is the number of layers offloaded to local GPUs and RPC
	// servers (-1: all). Without RPC servers it needs a GPU build (make
	// CUDA=1) and a GPU; with them, 0 means all layers.
	GPULayers int
	// Parallel is the number of generations decoded together in one batch
	// (0: engine.DefaultParallel). Further callers wait in a queue.
	Parallel int
	// Queue bounds the callers waiting for a free sequence; beyond it
	// generation fails with ErrQueueFull (0: 8 per sequence; < 0: none
	// wait).
	Queue int
	// NoPromptCache turns off the reuse of cached prompt prefixes.
	NoPromptCache bool
	// RPC lists llama.cpp rpc-server endpoints ("HOST:PORT", as
	// llama.cpp's --rpc) that hold the offloaded layers, split between
	// them in proportion to the memory they report (see
	// llama.ModelParams.RPC). Each is checked before the model loads.
	// rpc-server is unauthenticated: use it on loopback or a private
	// network only.
	RPC []string
}

// check validates o and fills in the defaults.
func (o *Options) check() error {
	if len(o.RPC) > 0 {
		servers, err := llama.ParseRPCServers(strings.Join(o.RPC, ","))
		if err != nil {
			return fmt.Errorf("Options.RPC: %w", err)
		}
		if !llama.SupportsRPC() {
			return fmt.Errorf("Options.RPC: %w", llama.ErrRPCUnavailable)
		}
		o.RPC = servers
	}
	if o.Threads < 0 || o.Threads > MaxThreads {
		return fmt.Errorf("Options.Threads %d is out of range [0, %d]", o.Threads, MaxThreads)
	}
	if o.Threads == 0 {
		o.Threads = min(runtime.NumCPU(), 8)
	}
	if o.NCtx < 0 || o.NCtx > MaxNCtx {
		return fmt.Errorf("Options.NCtx %d is out of range [0, %d]", o.NCtx, MaxNCtx)
	}
	if o.Parallel < 0 || o.Parallel > engine.MaxParallel {
		return fmt.Errorf("Options.Parallel %d is out of range [0, %d]", o.Parallel, engine.MaxParallel)
	}
	if o.GPULayers < -1 {
		return fmt.Errorf("Options.GPULayers %d: want -1 (all), 0 or a layer count", o.GPULayers)
	}
	switch {
	case len(o.RPC) > 0 && o.GPULayers == 0:
		o.GPULayers = -1
	case len(o.RPC) == 0 && o.GPULayers != 0 && !llama.HasLocalGPU():
		return llama.NoLocalGPUError("Options.GPULayers", o.GPULayers, "Options.RPC")
	}
	if o.Queue > math.MaxInt32 {
		return fmt.Errorf("Options.Queue %d is too large", o.Queue)
	}
	return nil
}

// Model is a loaded model with its generation engine. Its methods are safe
// for concurrent use: generations from any number of goroutines share one
// batch (up to Options.Parallel at a time, the rest wait in the queue),
// scoring calls take turns on a context of their own, and training calls
// each use a context of their own. Close it when done.
type Model struct {
	opts  Options
	llm   *llama.Model
	owned bool // Close frees llm
	cat   *hooks.Catalog
	eng   *engine.Engine

	scoreMu sync.Mutex // guards the scoring context
	scorer  *scorer    // created on first use

	// Every operation holds mu for reading while it uses the model; Close
	// cancels life (which cancels the operations' contexts), then takes mu
	// for writing before it frees anything.
	mu     sync.RWMutex
	closed bool
	life   context.Context
	stop   context.CancelFunc
}

// Open loads the GGUF model at path (the cached default model when path is
// empty; `matsteer model pull` fetches it) and starts its generation
// engine. A missing file gives an error matching ErrModelNotFound.
func Open(path string, opts Options) (*Model, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	isDefault := path == ""
	if isDefault {
		path = models.Default().Path()
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &ModelNotFoundError{Path: path, Default: isDefault, Err: err}
		}
		return nil, fmt.Errorf("matsteer: model %s: %w", path, err)
	}
	llm, err := llama.LoadModel(path, llama.ModelParams{GPULayers: opts.GPULayers, RPC: opts.RPC})
	if err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	m, err := newModel(llm, opts, true)
	if err != nil {
		llm.Close()
		return nil, err
	}
	return m, nil
}

// Wrap builds a Model on a model loaded with package llama (for instance
// llama.NewRandomModel in tests). The caller keeps ownership of llm: close
// it after the Model. Options.GPULayers and RPC are ignored (llm is loaded
// already).
func Wrap(llm *llama.Model, opts Options) (*Model, error) {
	if llm == nil {
		return nil, errors.New("matsteer: Wrap: nil model")
	}
	opts.GPULayers, opts.RPC = 0, nil
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	return newModel(llm, opts, false)
}

func newModel(llm *llama.Model, opts Options, owned bool) (*Model, error) {
	cat, err := hooks.Probe(llm)
	if err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	if opts.NCtx == 0 {
		opts.NCtx = engine.DefaultNCtx
	}
	if t := llm.NCtxTrain(); t > 0 && opts.NCtx > t {
		opts.NCtx = t
	}
	eng, err := engine.New(engine.Config{Model: llm, Catalog: cat, Parallel: opts.Parallel, NCtx: opts.NCtx,
		Threads: opts.Threads, QueueSize: opts.Queue, NoPromptCache: opts.NoPromptCache})
	if err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	opts.NCtx = eng.NCtx()
	life, stop := context.WithCancel(context.Background())
	return &Model{opts: opts, llm: llm, owned: owned, cat: cat, eng: eng, life: life, stop: stop}, nil
}

// use starts an operation on m. It fails with ErrClosed after Close; the
// context it returns is cancelled by ctx and by Close. Call done when the
// operation ends.
func (m *Model) use(ctx context.Context) (opCtx context.Context, done func(), err error) {
	if ctx == nil {
		return nil, nil, errors.New("matsteer: nil context")
	}
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return nil, nil, ErrClosed
	}
	opCtx, cancel := context.WithCancel(ctx)
	unwatch := context.AfterFunc(m.life, cancel)
	return opCtx, func() {
		unwatch()
		cancel()
		m.mu.RUnlock()
	}, nil
}

// Close cancels what is running (generations, scoring and extraction end
// with ErrClosed), waits for it to end, stops the engine and frees the
// model when Open loaded it. It is safe to call more than once, but not
// from a callback of the Model's own calls (it would wait for itself).
func (m *Model) Close() error {
	m.stop()
	m.eng.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.scorer != nil {
		m.scorer.close()
		m.scorer = nil
	}
	if m.owned {
		m.llm.Close()
	}
	return nil
}

// Name is the model's name (general.name, or its file name).
func (m *Model) Name() string { return m.llm.Name() }

// NEmbd is the width of the model's residual stream.
func (m *Model) NEmbd() int { return m.llm.NEmbd() }

// NLayer is the number of transformer blocks.
func (m *Model) NLayer() int { return m.llm.NLayer() }

// NCtx is each generation's context length in tokens.
func (m *Model) NCtx() int { return m.opts.NCtx }

// Llama is the underlying llama.cpp model, for the low-level packages
// (llama, hooks, intervene, extract, eval). Do not close it.
func (m *Model) Llama() *llama.Model { return m.llm }

// Engine is the batched generation engine every Generate call goes
// through, for callers that build engine.Requests themselves.
func (m *Model) Engine() *engine.Engine { return m.eng }

// Stats returns the engine's counters (running and queued generations,
// decode steps, prompt tokens served from the cache).
func (m *Model) Stats() engine.Stats { return m.eng.Stats() }
