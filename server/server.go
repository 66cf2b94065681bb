package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
)

// Defaults for Config fields left zero.
const (
	DefaultParallel     = 4
	DefaultNCtx         = 2048
	DefaultMaxBodyBytes = 1 << 20
	// DefaultQueuePerSlot sets the default queue bound: this many waiting
	// requests per slot.
	DefaultQueuePerSlot = 8
)

// Config configures a Server.
type Config struct {
	// Model is the loaded model, shared by every slot (required).
	Model *llama.Model
	// Catalog is hooks.Probe(Model) (required).
	Catalog *hooks.Catalog
	// ModelID is the model's id in responses and /v1/models (default: the
	// model file's name without ".gguf").
	ModelID string
	// ChatTemplate overrides the model's chat template for
	// /v1/chat/completions (a Jinja template or a llama.cpp template name
	// such as "chatml"; "": the model's own).
	ChatTemplate string
	// Parallel is the number of slots: contexts that generate at the same
	// time, each with its own KV memory and hooks (0: DefaultParallel).
	Parallel int
	// QueueSize bounds the requests waiting for a free slot; when it is full
	// new requests get 503 (0: DefaultQueuePerSlot × Parallel; < 0: no
	// waiting at all).
	QueueSize int
	// NCtx is each slot's context length in tokens (0: DefaultNCtx, capped
	// at the model's training length).
	NCtx int
	// Threads is each slot's CPU thread count (0: all cores).
	Threads int
	// MaxBodyBytes limits request bodies (0: DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// AuditLog, when set, receives one JSON line per steered row of every
	// steered request (see the package documentation).
	AuditLog io.Writer
	// SteerDir, when set, restricts POST /v1/steering to files inside this
	// directory (paths are taken relative to it).
	SteerDir string
	// ReadOnlySteering disables POST and DELETE /v1/steering.
	ReadOnlySteering bool
	// APIKey, when set, is required as "Authorization: Bearer KEY" on every
	// /v1 endpoint.
	APIKey string
	// Logger receives one line per request and steering change (default:
	// discard).
	Logger *slog.Logger
}

// slot is one inference context with its own hooks.
type slot struct {
	id    int
	ctx   *llama.Context
	hooks *hooks.Hooks
}

// Stats are the server's counters (also reported by GET /health).
type Stats struct {
	Slots      int   `json:"slots"`
	SlotsBusy  int64 `json:"slots_busy"`
	Queued     int64 `json:"queued"`
	QueueLimit int   `json:"queue_limit"`
	Completed  int64 `json:"requests_completed"` // generations that finished (stop or length)
	Cancelled  int64 `json:"requests_cancelled"` // generations cancelled by a disconnected client or shutdown
	Rejected   int64 `json:"requests_rejected"`  // refused because the queue was full
	Failed     int64 `json:"requests_failed"`    // generations that failed with a server error
}

// Server serves the OpenAI-compatible API with per-request steering.
// Create it with New, serve Handler (or call Serve), and Close it when done.
type Server struct {
	cfg     Config
	model   *llama.Model
	cat     *hooks.Catalog
	modelID string
	nCtx    int
	created int64
	log     *slog.Logger
	audit   *auditLog

	slots chan *slot
	all   []*slot
	reg   registry

	queued    atomic.Int64
	busy      atomic.Int64
	completed atomic.Int64
	cancelled atomic.Int64
	rejected  atomic.Int64
	failed    atomic.Int64

	closeOnce sync.Once
}

// New creates a server with cfg.Parallel slots: one llama.Context and one
// hooks.Hooks each, all on cfg.Model.
func New(cfg Config) (*Server, error) {
	if cfg.Model == nil || cfg.Catalog == nil {
		return nil, errors.New("server: Config.Model and Config.Catalog are required")
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = DefaultParallel
	}
	if cfg.Parallel < 0 || cfg.Parallel > 256 {
		return nil, fmt.Errorf("server: %d slots is out of range [1, 256]", cfg.Parallel)
	}
	switch {
	case cfg.QueueSize == 0:
		cfg.QueueSize = DefaultQueuePerSlot * cfg.Parallel
	case cfg.QueueSize < 0:
		cfg.QueueSize = 0
	}
	if cfg.NCtx == 0 {
		cfg.NCtx = DefaultNCtx
	}
	if cfg.NCtx < 0 {
		return nil, fmt.Errorf("server: context length %d is negative", cfg.NCtx)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.ModelID == "" {
		cfg.ModelID = defaultModelID(cfg.Model)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, model: cfg.Model, cat: cfg.Catalog, modelID: cfg.ModelID, created: time.Now().Unix(),
		log: cfg.Logger, slots: make(chan *slot, cfg.Parallel), reg: registry{m: map[string]*steerEntry{}},
	}
	if cfg.AuditLog != nil {
		s.audit = &auditLog{w: cfg.AuditLog, log: cfg.Logger}
	}
	for i := 0; i < cfg.Parallel; i++ {
		h := hooks.New(cfg.Catalog)
		c, err := llama.NewContext(cfg.Model, llama.ContextParams{NCtx: cfg.NCtx, Threads: cfg.Threads, ThreadsBatch: cfg.Threads, Hook: h})
		if err != nil {
			h.Close()
			s.freeSlots()
			return nil, fmt.Errorf("server: slot %d: %w", i, err)
		}
		sl := &slot{id: i, ctx: c, hooks: h}
		s.all = append(s.all, sl)
		s.slots <- sl
	}
	s.nCtx = s.all[0].ctx.NCtx()
	return s, nil
}

func (s *Server) freeSlots() {
	for _, sl := range s.all {
		sl.ctx.Close()
		sl.hooks.Close()
	}
	s.all = nil
}

// Close waits for every slot to be free, then frees the contexts. Stop
// serving HTTP first (Serve does this on its own).
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		for range s.all {
			<-s.slots
		}
		s.freeSlots()
	})
}

// NCtx is each slot's context length in tokens.
func (s *Server) NCtx() int { return s.nCtx }

// ModelID is the model's id in responses.
func (s *Server) ModelID() string { return s.modelID }

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{Slots: len(s.all), SlotsBusy: s.busy.Load(), Queued: s.queued.Load(), QueueLimit: s.cfg.QueueSize,
		Completed: s.completed.Load(), Cancelled: s.cancelled.Load(), Rejected: s.rejected.Load(), Failed: s.failed.Load()}
}

// acquire takes a free slot, waiting in the bounded queue when none is free.
func (s *Server) acquire(ctx context.Context) (*slot, error) {
	select {
	case sl := <-s.slots:
		s.busy.Add(1)
		return sl, nil
	default:
	}
	if n := s.queued.Add(1); n > int64(s.cfg.QueueSize) {
		s.queued.Add(-1)
		s.rejected.Add(1)
		return nil, &APIError{Status: http.StatusServiceUnavailable, Type: errOverloaded, Code: "queue_full",
			Message: fmt.Sprintf("server busy: all %d slots are generating and the queue of %d waiting requests is full; retry later", len(s.all), s.cfg.QueueSize)}
	}
	defer s.queued.Add(-1)
	select {
	case sl := <-s.slots:
		s.busy.Add(1)
		return sl, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// release removes whatever the request installed and returns the slot.
func (s *Server) release(sl *slot) {
	sl.hooks.Clear()
	s.busy.Add(-1)
	s.slots <- sl
}

// Serve serves HTTP on ln until ctx is cancelled, then shuts down
// gracefully: it stops accepting connections and lets running requests
// finish for up to grace, then cancels the generations still running.
// It returns nil after a graceful shutdown, once no handler is running.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	genCtx, cancelGen := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelGen()
	var active sync.WaitGroup // handlers still running
	h := s.Handler()
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			active.Add(1)
			defer active.Done()
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return genCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "grace", grace.String(), "busy", s.busy.Load(), "queued", s.queued.Load())
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := hs.Shutdown(sctx)
	if err != nil {
		s.log.Warn("grace period over: cancelling running generations", "busy", s.busy.Load())
		cancelGen()
		_ = hs.Close()
		active.Wait() // cancelled generations end within a token
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serr)
	}
	return nil
}

// defaultModelID is the model file's name without ".gguf", or the model's
// name for in-memory models.
func defaultModelID(m *llama.Model) string {
	if p := m.Path(); p != "" {
		return strings.TrimSuffix(filepath.Base(p), ".gguf")
	}
	return m.Name()
}

// newID returns a random request id with the given prefix.
func newID(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:24])
}
