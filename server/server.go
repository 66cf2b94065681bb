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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matsteer/matsteer/engine"
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

// Ranges of the Config fields (New refuses values outside them).
const (
	MaxParallel     = 256     // Parallel in [1, MaxParallel]
	MinNCtx         = 256     // NCtx: a multiple of MinNCtx up to the model's training context
	MaxQueue        = 1 << 16 // QueueSize in [-1, MaxQueue]
	MaxThreads      = 1024    // Threads in [0, MaxThreads]
	MinMaxBodyBytes = 1 << 10 // MaxBodyBytes in [MinMaxBodyBytes, MaxMaxBodyBytes]
	MaxMaxBodyBytes = 1 << 28
	// MaxSteerFileBytes bounds the steering files loaded over HTTP.
	MaxSteerFileBytes = 64 << 20
	// shutdownDrain bounds how long Serve waits, after the grace period,
	// for the requests it stopped to send their last bytes.
	shutdownDrain = 5 * time.Second
)

// Config configures a Server.
type Config struct {
	// Model is the loaded model (required).
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
	// Parallel is the number of requests generated together: the sequences
	// of the one context that decodes them all in a shared batch (see
	// package engine). The KV memory holds Parallel × NCtx tokens
	// (0: DefaultParallel).
	Parallel int
	// QueueSize bounds the requests waiting for a free sequence; when it is
	// full new requests get 503 (0: DefaultQueuePerSlot × Parallel; < 0: no
	// waiting at all).
	QueueSize int
	// NCtx is each request's context length in tokens, prompt plus
	// completion (0: DefaultNCtx, or the model's training length when that
	// is shorter; otherwise a multiple of MinNCtx up to the model's training
	// length).
	NCtx int
	// Threads is the total CPU thread budget of the decode; a lone request
	// gets all of it (0: all cores).
	Threads int
	// NoPromptCache switches off the reuse of cached prompt prefixes.
	NoPromptCache bool
	// MaxBodyBytes limits request bodies (0: DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// AuditLog, when set, receives one JSON line per steered row of every
	// steered request (see the package documentation).
	AuditLog io.Writer
	// SteerDir enables POST and DELETE /v1/steering, for files inside this
	// directory only: paths are taken relative to it and may not leave it,
	// also through symbolic links. It must be an existing directory. Without
	// it the steering files are fixed once the server starts (LoadSteering
	// from Go still works).
	SteerDir string
	// ReadOnlySteering disables POST and DELETE /v1/steering even with a
	// SteerDir.
	ReadOnlySteering bool
	// APIKey, when set, is required as "Authorization: Bearer KEY" on every
	// /v1 endpoint.
	APIKey string
	// Logger receives one line per request and steering change (default:
	// discard).
	Logger *slog.Logger
}

// Stats are the server's counters (also reported by GET /health).
type Stats struct {
	Slots      int   `json:"slots"`
	SlotsBusy  int64 `json:"slots_busy"`
	Queued     int64 `json:"queued"`
	QueueLimit int   `json:"queue_limit"`
	// Admitted counts the valid generation requests that went on to wait for
	// a slot; each ends as exactly one of the four below, so once the server
	// is idle Admitted == Completed + Cancelled + Rejected + Failed.
	Admitted  int64 `json:"requests_admitted"`
	Completed int64 `json:"requests_completed"` // generations that finished (stop or length)
	Cancelled int64 `json:"requests_cancelled"` // stopped by a disconnected client or by shutdown (queued or running)
	Rejected  int64 `json:"requests_rejected"`  // refused because the queue was full
	Failed    int64 `json:"requests_failed"`    // generations that failed with a server error
	// CachedTokens counts the prompt tokens served from the prompt cache.
	CachedTokens int64 `json:"cached_prompt_tokens"`
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

	eng       *engine.Engine
	reg       registry
	steerRoot *os.Root // SteerDir, opened; nil: no runtime loads

	// stopping is cancelled when the shutdown grace period is over (or by
	// Close): running generations end, queued requests get 503.
	stopping context.Context
	stop     context.CancelFunc

	admitted  atomic.Int64
	loadSeq   atomic.Uint64 // numbers steering loads (prompt-cache identity)
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
	if err := checkConfig(&cfg); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.ModelID == "" {
		cfg.ModelID = defaultModelID(cfg.Model)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, model: cfg.Model, cat: cfg.Catalog, modelID: cfg.ModelID, created: time.Now().Unix(),
		log: cfg.Logger, reg: registry{m: map[string]*steerEntry{}},
	}
	if cfg.AuditLog != nil {
		s.audit = &auditLog{w: cfg.AuditLog, log: cfg.Logger}
	}
	if err := s.checkChatTemplate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.SteerDir != "" && !cfg.ReadOnlySteering {
		root, err := openSteerDir(cfg.SteerDir)
		if err != nil {
			return nil, fmt.Errorf("server: steering directory: %w", err)
		}
		s.steerRoot = root
	}
	s.stopping, s.stop = context.WithCancel(context.Background())
	queue := cfg.QueueSize
	if queue == 0 {
		queue = -1 // engine: no waiting at all
	}
	eng, err := engine.New(engine.Config{Model: cfg.Model, Catalog: cfg.Catalog, Parallel: cfg.Parallel, NCtx: cfg.NCtx,
		Threads: cfg.Threads, QueueSize: queue, NoPromptCache: cfg.NoPromptCache})
	if err != nil {
		s.closeSteerRoot()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.eng = eng
	s.nCtx = eng.NCtx()
	return s, nil
}

// Close stops the generations still running and queued (their requests end
// as after a shutdown), then frees the engine's context. Stop serving HTTP
// first (Serve does this on its own).
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.stop()
		s.eng.Close()
		s.closeSteerRoot()
	})
}

func (s *Server) closeSteerRoot() {
	if s.steerRoot != nil {
		s.steerRoot.Close()
	}
}

// checkConfig applies the defaults and checks every numeric field's range.
func checkConfig(cfg *Config) error {
	if cfg.Parallel == 0 {
		cfg.Parallel = DefaultParallel
	}
	if cfg.Parallel < 1 || cfg.Parallel > MaxParallel {
		return fmt.Errorf("%d slots is out of range [1, %d]", cfg.Parallel, MaxParallel)
	}
	switch {
	case cfg.QueueSize < -1 || cfg.QueueSize > MaxQueue:
		return fmt.Errorf("queue size %d is out of range [-1 (no queue), %d]", cfg.QueueSize, MaxQueue)
	case cfg.QueueSize == 0:
		cfg.QueueSize = DefaultQueuePerSlot * cfg.Parallel
	case cfg.QueueSize == -1:
		cfg.QueueSize = 0
	}
	train := cfg.Model.NCtxTrain()
	switch {
	case cfg.NCtx == 0:
		cfg.NCtx = DefaultNCtx
		if train > 0 && train < cfg.NCtx {
			cfg.NCtx = train
		}
	case cfg.NCtx < MinNCtx:
		return fmt.Errorf("context length %d is out of range: at least %d tokens", cfg.NCtx, MinNCtx)
	case cfg.NCtx%MinNCtx != 0:
		return fmt.Errorf("context length %d is not a multiple of %d (llama.cpp would round it up)", cfg.NCtx, MinNCtx)
	case train > 0 && cfg.NCtx > train:
		return fmt.Errorf("context length %d is longer than the model's training context of %d tokens", cfg.NCtx, train)
	}
	if cfg.Threads < 0 || cfg.Threads > MaxThreads {
		return fmt.Errorf("%d threads is out of range [1, %d] (0: all cores)", cfg.Threads, MaxThreads)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBodyBytes < MinMaxBodyBytes || cfg.MaxBodyBytes > MaxMaxBodyBytes {
		return fmt.Errorf("request body limit %d is out of range [%d, %d] bytes", cfg.MaxBodyBytes, MinMaxBodyBytes, MaxMaxBodyBytes)
	}
	return nil
}

// sampleConversation is what New applies the chat template to, to refuse a
// broken template at start-up rather than on every chat request.
var sampleConversation = []llama.ChatMessage{
	{Role: "system", Content: "matsteer-check-system"},
	{Role: "user", Content: "matsteer-check-user"},
	{Role: "assistant", Content: "matsteer-check-assistant"},
	{Role: "user", Content: "matsteer-check-again"},
}

// checkChatTemplate applies Config.ChatTemplate to a sample conversation: a
// template that fails, or that drops the messages, is a start-up error. A
// model's own template that fails only disables chat (with a warning).
func (s *Server) checkChatTemplate() error {
	tmpl := s.cfg.ChatTemplate
	if tmpl == "" && s.model.ChatTemplate() == "" {
		return nil
	}
	out, err := s.model.ApplyChatTemplate(tmpl, sampleConversation, true)
	if err == nil {
		for _, m := range sampleConversation {
			if !strings.Contains(out, m.Content) {
				err = fmt.Errorf("its output leaves out the %s message", m.Role)
				break
			}
		}
	}
	if err == nil {
		return nil
	}
	if tmpl == "" {
		s.log.Warn("the model's chat template does not work: /v1/chat/completions will fail; set a chat template", "error", err)
		return nil
	}
	shown := tmpl
	if len(shown) > 60 {
		shown = shown[:60] + "..."
	}
	return fmt.Errorf("chat template %q does not work on a sample conversation: %v (use a llama.cpp template name such as chatml, or a template llama.cpp supports)", shown, err)
}

// NCtx is each slot's context length in tokens.
func (s *Server) NCtx() int { return s.nCtx }

// ModelID is the model's id in responses.
func (s *Server) ModelID() string { return s.modelID }

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := s.eng.Stats()
	return Stats{Slots: st.Parallel, SlotsBusy: int64(st.Running), Queued: int64(st.Queued), QueueLimit: s.cfg.QueueSize,
		CachedTokens: st.CachedTokens,
		Admitted:     s.admitted.Load(), Completed: s.completed.Load(), Cancelled: s.cancelled.Load(), Rejected: s.rejected.Load(), Failed: s.failed.Load()}
}

// Serve serves HTTP on ln until ctx is cancelled, then shuts down:
//
//   - it stops accepting connections and lets running and queued requests
//     finish for up to grace;
//   - then it stops the server for good (as Close does): running generations
//     end, a started stream with a final chunk (finish_reason "length") and
//     "data: [DONE]", any other request with a complete 503 JSON error (code
//     "server_shutting_down"), and so do the requests still queued;
//   - it waits a few seconds for those responses to be sent, then closes the
//     connections that remain.
//
// It returns nil after a shutdown, once no handler is running.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	if grace < 0 {
		return fmt.Errorf("serve: negative shutdown grace period %v", grace)
	}
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
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
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	st := s.eng.Stats()
	s.log.Info("shutting down", "grace", grace.String(), "busy", st.Running, "queued", st.Queued)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		st := s.eng.Stats()
		s.log.Warn("grace period over: stopping running and queued requests", "busy", st.Running, "queued", st.Queued)
		s.stop()
		// Shutdown again: it returns once every stopped request has sent its
		// last bytes and its connection closed.
		dctx, dcancel := context.WithTimeout(context.Background(), shutdownDrain)
		if err := hs.Shutdown(dctx); err != nil && dctx.Err() != nil {
			s.log.Warn("closing the connections of requests that did not end in time")
		}
		dcancel()
		cancelBase()
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
