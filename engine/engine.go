// Package engine generates text for many requests at once on one llama.cpp
// context, with continuous batching, per-sequence steering and a prompt
// cache.
//
// The root package matsteer (Model.Generate) and package server drive it;
// use it directly to submit token-level requests with interventions of
// your own.
//
// An Engine owns one context with Config.Parallel sequences in a single
// (unified) KV memory. One goroutine runs the decode loop: every step
// decodes one batch holding the next token of each generating request and
// prompt chunks of newly admitted ones, then samples every request's next
// token with its own sampler. Requests join and leave between steps; beyond
// Parallel they wait in a bounded queue. Each request may carry its own
// steering (file, strengths, α): a intervene.Router per hook point applies it
// to that request's rows only, so requests with different steering, or
// none, share a batch, and the rows of unsteered requests are not touched.
//
// Prompt cache: when a request finishes, its tokens stay in the KV memory
// of its sequence. A new request reuses the longest prefix it shares with
// any sequence whose steering key is identical (steering changes the KV
// entries, so its identity is part of the key), either in place or by
// sharing the KV cells of a sequence still running; a system prompt shared
// by many requests is then evaluated once.
//
// Memory: the context holds Parallel × NCtx KV cells, the same as Parallel
// separate contexts of NCtx tokens, while compute buffers exist once.
package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
)

// Limits and defaults of Config.
const (
	MaxParallel     = 256 // llama.cpp's LLAMA_MAX_SEQ
	DefaultParallel = 4
	DefaultNCtx     = 2048
	DefaultNBatch   = 512
	// DefaultQueuePerSequence sets the default queue bound: this many
	// waiting requests per sequence.
	DefaultQueuePerSequence = 8
	// minSharedPrompt is the fewest prompt tokens worth waiting a step for:
	// a request shares the prompt of one admitted before it that is still
	// being decoded only when that saves decoding at least this many.
	minSharedPrompt = 16
)

// Config configures an Engine.
type Config struct {
	Model   *llama.Model   // required
	Catalog *hooks.Catalog // required for steering (hooks.Probe(Model))
	// Parallel is the number of requests decoded together (1..MaxParallel;
	// 0: DefaultParallel).
	Parallel int
	// NCtx is each request's context length in tokens: prompt plus
	// generated tokens (0: DefaultNCtx, capped at the model's training
	// length).
	NCtx int
	// NBatch is the most tokens decoded in one step (0: DefaultNBatch).
	NBatch int
	// Threads is the total CPU thread budget of the decode (0: all cores).
	Threads int
	// QueueSize bounds the requests waiting for a free sequence; beyond it
	// Generate fails with ErrQueueFull (0: DefaultQueuePerSequence ×
	// Parallel; < 0: no waiting at all).
	QueueSize int
	// NoPromptCache disables prefix reuse (every prompt is decoded in full).
	NoPromptCache bool
}

// Request is one generation.
type Request struct {
	Prompt    []llama.Token
	MaxTokens int // tokens to generate (<= 0: until end of generation or the context is full)
	Sampler   llama.SamplerParams
	// Steering, if set, steers this request's rows. It belongs to the
	// engine until Generate returns (an Intervention is not safe for
	// concurrent use); its audit callback runs on the engine's goroutine.
	Steering *intervene.Intervention
	// MoreSteering steers further hook points for this request: at most
	// one intervention per point, none at Steering's point. It is owned
	// like Steering, and SteeringKey must cover it too.
	MoreSteering []*intervene.Intervention
	// SteeringKey identifies Steering and MoreSteering for the prompt cache:
	// requests share cached prefixes only when their keys are equal. With
	// steering set and an empty key the request neither uses nor leaves a
	// cached prefix.
	SteeringKey string
	// OnAdmit, if set, is called on the caller's goroutine when the request
	// leaves the queue for a sequence, before its first token (a server
	// sends its response headers there). An error ends the request.
	OnAdmit func() error
	// Inline runs the token callback on the engine's own goroutine, right
	// after each token is sampled, instead of handing the token to the
	// caller's goroutine. It saves a goroutine wake-up per token (about
	// 1 ms/token when the decode uses every core), but the callback then
	// delays every request in the batch: use it only for callbacks that
	// never block (in-memory collection, a buffered write), e.g. a single
	// stream that owns the engine.
	Inline bool
}

// Result summarises a finished request.
type Result struct {
	PromptTokens    int
	CachedTokens    int // prompt tokens whose KV entries were reused
	GeneratedTokens int // tokens passed to the callback
	// StopReason: "eog", "max_tokens", "context_full", "callback" (the
	// callback returned llama.ErrStop), "cancelled".
	StopReason string
	Queued     time.Duration // waiting for a sequence
	FirstToken time.Duration // from Generate's call to the first token
	Duration   time.Duration
}

// Errors returned by Generate.
var (
	ErrQueueFull = errors.New("engine: too many requests waiting")
	ErrClosed    = errors.New("engine: closed")
)

// Stats are the engine's counters.
type Stats struct {
	Parallel     int   `json:"parallel"`
	Running      int   `json:"running"`
	Queued       int   `json:"queued"`
	QueueLimit   int   `json:"queue_limit"`
	Steps        int64 `json:"steps"`
	CachedTokens int64 `json:"cached_prompt_tokens"`
}

// Engine runs generation requests with continuous batching. Its methods
// are safe for concurrent use.
type Engine struct {
	cfg    Config
	model  *llama.Model
	ctx    *llama.Context
	hooks  *hooks.Hooks
	nCtx   int
	nBatch int

	mu      sync.Mutex
	pending []*request
	running int
	closed  bool
	wake    chan struct{}
	done    chan struct{}

	steps  atomic.Int64
	cached atomic.Int64

	// Owned by the loop goroutine.
	seqs    []*sequence
	routers map[hooks.Point]*intervene.Router
	batch   *llama.Batch
	clock   int64
}

// sequence is one KV sequence: what it holds and who uses it.
type sequence struct {
	id       int
	ids      []int         // {id}, for Batch.Add
	tokens   []llama.Token // tokens in the KV memory, positions 0..len-1
	key      string        // steering key of those entries
	reusable bool          // tokens may serve as a cached prefix
	req      *request      // running request, nil when idle
	lastUsed int64
}

// event is one sampled token on its way to the caller, or (admitted) the
// news that the request left the queue.
type event struct {
	tok      llama.Token
	piece    string
	admitted bool
}

// request is a Request in the engine.
type request struct {
	Request
	ctx     context.Context
	start   time.Time
	queued  time.Duration
	stop    atomic.Bool // the caller asked to stop
	events  chan event
	done    chan finish
	smp     *llama.Sampler
	seq     *sequence
	next    int // prompt tokens in KV so far
	cached  int
	pending llama.Token // sampled, not yet decoded
	sampled int
	chunk   int // prompt tokens in the current step's batch
	// inline is the token callback for Request.Inline; delivered, first
	// and inlineErr are its results (read by Generate after done).
	inline    func(llama.Token, string) error
	delivered int
	first     time.Duration
	inlineErr error
	outIdx    int // batch index of this request's output in the current step (-1: none)
	// waitFor, when set, is the sequence of waitReq, a request admitted
	// before this one whose prompt (with the same steering) shares waitLen
	// tokens with this one and is still being decoded: this request copies
	// those entries once they are in the memory (takeShared) instead of
	// decoding the same tokens itself.
	waitFor *sequence
	waitReq *request
	waitLen int
}

type finish struct {
	reason string
	err    error
}

// New creates the engine's context and starts its decode loop.
func New(cfg Config) (*Engine, error) {
	if cfg.Model == nil {
		return nil, errors.New("engine: Config.Model is required")
	}
	switch {
	case cfg.Parallel == 0:
		cfg.Parallel = DefaultParallel
	case cfg.Parallel < 0 || cfg.Parallel > MaxParallel:
		return nil, fmt.Errorf("engine: parallel %d is out of range [1, %d]", cfg.Parallel, MaxParallel)
	}
	if cfg.NCtx < 0 {
		return nil, fmt.Errorf("engine: context length %d is negative", cfg.NCtx)
	}
	if cfg.NCtx == 0 {
		cfg.NCtx = DefaultNCtx
	}
	if t := cfg.Model.NCtxTrain(); t > 0 && cfg.NCtx > t {
		cfg.NCtx = t
	}
	if cfg.NBatch < 0 {
		return nil, fmt.Errorf("engine: batch size %d is negative", cfg.NBatch)
	}
	if cfg.NBatch == 0 {
		cfg.NBatch = DefaultNBatch
	}
	cfg.NBatch = max(cfg.NBatch, cfg.Parallel)
	if cfg.Threads < 0 {
		return nil, fmt.Errorf("engine: thread count %d is negative", cfg.Threads)
	}
	if cfg.Threads == 0 {
		cfg.Threads = runtime.NumCPU()
	}
	switch {
	case cfg.QueueSize == 0:
		cfg.QueueSize = DefaultQueuePerSequence * cfg.Parallel
	case cfg.QueueSize < 0:
		cfg.QueueSize = 0
	}
	e := &Engine{cfg: cfg, model: cfg.Model, nCtx: cfg.NCtx, wake: make(chan struct{}, 1), done: make(chan struct{}),
		routers: map[hooks.Point]*intervene.Router{}}
	var hook llama.EvalHook
	if cfg.Catalog != nil {
		e.hooks = hooks.New(cfg.Catalog)
		hook = e.hooks
	}
	c, err := llama.NewContext(cfg.Model, llama.ContextParams{
		NCtx: cfg.NCtx * cfg.Parallel, NBatch: cfg.NBatch, NUBatch: min(cfg.NBatch, DefaultNBatch), NSeqMax: cfg.Parallel,
		Threads: cfg.Threads, ThreadsBatch: cfg.Threads, Hook: hook,
	})
	if err != nil {
		e.hooks.Close()
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.ctx = c
	e.nBatch = c.NBatch()
	e.batch = llama.NewBatch(e.nBatch, 1)
	for i := 0; i < cfg.Parallel; i++ {
		e.seqs = append(e.seqs, &sequence{id: i, ids: []int{i}})
	}
	go e.loop()
	return e, nil
}

// NCtx is each request's context length in tokens.
func (e *Engine) NCtx() int { return e.nCtx }

// Parallel is the number of requests decoded together.
func (e *Engine) Parallel() int { return e.cfg.Parallel }

// Model is the engine's model.
func (e *Engine) Model() *llama.Model { return e.model }

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{Parallel: e.cfg.Parallel, Running: e.running, Queued: len(e.pending), QueueLimit: e.cfg.QueueSize,
		Steps: e.steps.Load(), CachedTokens: e.cached.Load()}
}

// Close cancels every request (Generate returns ErrClosed), stops the loop
// and frees the context. It is safe to call more than once.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.done
		return
	}
	e.closed = true
	e.mu.Unlock()
	e.ctx.Abort()
	e.signal()
	<-e.done
	e.batch.Close()
	e.ctx.Close()
	e.hooks.Close()
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Generate runs req and calls onToken, on the caller's goroutine, with
// every generated token and its text piece. onToken returning llama.ErrStop
// ends the request normally ("callback"); another error ends it and is
// returned. Cancelling ctx ends it with ctx's error. A slow onToken delays
// only this request: the engine goes on decoding the others.
func (e *Engine) Generate(ctx context.Context, req Request, onToken func(tok llama.Token, piece string) error) (Result, error) {
	res := Result{PromptTokens: len(req.Prompt)}
	if err := e.check(&req); err != nil {
		return res, err
	}
	smp, err := llama.NewSampler(e.model, req.Sampler)
	if err != nil {
		return res, fmt.Errorf("engine: %w", err)
	}
	maxEvents := req.MaxTokens
	if maxEvents <= 0 || maxEvents > e.nCtx {
		maxEvents = e.nCtx
	}
	r := &request{Request: req, ctx: ctx, start: time.Now(), smp: smp,
		events: make(chan event, maxEvents+2), done: make(chan finish, 1), outIdx: -1}
	if req.Inline {
		r.inline = onToken
	}
	if err := e.enqueue(r); err != nil {
		smp.Close()
		return res, err
	}
	stopWatch := context.AfterFunc(ctx, func() { r.stop.Store(true); e.signal() })
	defer stopWatch()

	var cbErr error
	stopped := false
	deliver := func(ev event) {
		if stopped {
			return
		}
		if ev.admitted {
			if req.OnAdmit != nil {
				if err := req.OnAdmit(); err != nil {
					stopped, cbErr = true, err
					r.stop.Store(true)
					e.signal()
				}
			}
			return
		}
		if res.GeneratedTokens == 0 {
			res.FirstToken = time.Since(r.start)
		}
		if err := onToken(ev.tok, ev.piece); err != nil {
			stopped = true
			if !errors.Is(err, llama.ErrStop) {
				cbErr = err
			}
			r.stop.Store(true)
			e.signal()
			return
		}
		res.GeneratedTokens++
	}
	for {
		select {
		case ev := <-r.events:
			if ctx.Err() == nil {
				deliver(ev)
			}
		case fin := <-r.done:
			for len(r.events) > 0 && ctx.Err() == nil {
				deliver(<-r.events)
			}
			if r.inline != nil {
				res.GeneratedTokens, res.FirstToken = r.delivered, r.first
				if r.inlineErr != nil {
					stopped = true
					if !errors.Is(r.inlineErr, llama.ErrStop) {
						cbErr = r.inlineErr
					}
				}
			}
			res.Queued, res.CachedTokens, res.Duration = r.queued, r.cached, time.Since(r.start)
			switch {
			case ctx.Err() != nil:
				res.StopReason = "cancelled"
				return res, ctx.Err()
			case cbErr != nil:
				res.StopReason = "callback"
				return res, cbErr
			case stopped:
				res.StopReason = "callback"
				return res, nil
			case fin.err != nil:
				res.StopReason = fin.reason
				return res, fin.err
			}
			res.StopReason = fin.reason
			return res, nil
		}
	}
}

// check validates a request before it is queued.
func (e *Engine) check(req *Request) error {
	n := len(req.Prompt)
	if n == 0 {
		return errors.New("engine: empty prompt")
	}
	if n >= e.nCtx {
		return fmt.Errorf("engine: prompt of %d tokens does not fit the context of %d tokens", n, e.nCtx)
	}
	nv := e.model.NVocab()
	for i, t := range req.Prompt {
		if t < 0 || int(t) >= nv {
			return fmt.Errorf("engine: prompt token %d at position %d is outside the vocabulary (0..%d)", t, i, nv-1)
		}
	}
	ivs := req.interventions()
	if len(ivs) > 0 && e.hooks == nil {
		return errors.New("engine: steering needs Config.Catalog")
	}
	seen := map[hooks.Point]bool{}
	for i, iv := range req.MoreSteering {
		if iv == nil {
			return fmt.Errorf("engine: MoreSteering[%d] is nil", i)
		}
	}
	for _, iv := range ivs {
		if seen[iv.Point()] {
			return fmt.Errorf("engine: two interventions of one request steer %s", iv.Point())
		}
		seen[iv.Point()] = true
	}
	return nil
}

// interventions lists the request's steering: Steering, then MoreSteering.
func (req *Request) interventions() []*intervene.Intervention {
	if req.Steering == nil {
		return req.MoreSteering
	}
	return append([]*intervene.Intervention{req.Steering}, req.MoreSteering...)
}

func (e *Engine) enqueue(r *request) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	waiting := e.running + len(e.pending) - e.cfg.Parallel
	if waiting >= e.cfg.QueueSize {
		return fmt.Errorf("%w (%d running, %d queued, limit %d)", ErrQueueFull, e.running, max(waiting, 0), e.cfg.QueueSize)
	}
	e.pending = append(e.pending, r)
	e.signal()
	return nil
}

// loop is the decode loop: admit, step, repeat; sleep when idle.
func (e *Engine) loop() {
	defer close(e.done)
	// Keep the decode on one OS thread: llama.cpp's worker threads then
	// always synchronise with the same caller.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		e.mu.Lock()
		closed := e.closed
		e.mu.Unlock()
		if closed {
			e.shutdown()
			return
		}
		e.admit()
		e.reap()
		if !e.step() {
			<-e.wake
		}
	}
}

// shutdown ends every running and pending request with ErrClosed.
func (e *Engine) shutdown() {
	for _, s := range e.seqs {
		if s.req != nil {
			e.end(s.req, "cancelled", ErrClosed)
		}
	}
	e.mu.Lock()
	pending := e.pending
	e.pending = nil
	e.mu.Unlock()
	for _, r := range pending {
		r.smp.Close()
		r.done <- finish{"cancelled", ErrClosed}
	}
}

// admit moves pending requests onto idle sequences, reusing cached
// prefixes.
func (e *Engine) admit() {
	for {
		e.mu.Lock()
		if len(e.pending) == 0 || e.running >= e.cfg.Parallel {
			// Drop cancelled requests that are still waiting.
			kept := e.pending[:0]
			for _, r := range e.pending {
				if r.stop.Load() {
					r.smp.Close()
					r.done <- finish{"cancelled", nil}
					continue
				}
				kept = append(kept, r)
			}
			clear(e.pending[len(kept):])
			e.pending = kept
			e.mu.Unlock()
			return
		}
		r := e.pending[0]
		e.pending = e.pending[1:]
		if r.stop.Load() {
			e.mu.Unlock()
			r.smp.Close()
			r.done <- finish{"cancelled", nil}
			continue
		}
		e.running++
		e.mu.Unlock()
		r.queued = time.Since(r.start)
		e.place(r)
	}
}

// place puts r on an idle sequence, reusing the longest cached prefix.
func (e *Engine) place(r *request) {
	ivs := r.interventions()
	key, reuse := r.SteeringKey, !e.cfg.NoPromptCache && (len(ivs) == 0 || r.SteeringKey != "")
	if len(ivs) == 0 {
		key = ""
	}
	var best *sequence
	bestLen := 0
	if reuse {
		for _, s := range e.seqs {
			if !s.reusable || s.key != key {
				continue
			}
			if n := commonPrefix(s.tokens, r.Prompt); n > bestLen || (n == bestLen && n > 0 && s.req == nil && best.req != nil) {
				best, bestLen = s, n
			}
		}
	}
	// At least the last prompt token is decoded, for its logits.
	bestLen = min(bestLen, len(r.Prompt)-1)
	// A burst of requests with one prompt: wait for the one decoding it.
	src, srcLen := e.decodingPrefix(r, key, reuse)
	if srcLen-bestLen < minSharedPrompt {
		src = nil
	}
	target := best
	if target == nil || target.req != nil || bestLen == 0 || src != nil {
		target = e.idleSequence(best)
	}
	switch {
	case src != nil:
		e.ctx.RemoveTokens(target.id, -1, -1)
		bestLen = 0
		r.waitFor, r.waitReq, r.waitLen = src, src.req, srcLen
	case bestLen > 0 && target == best:
		e.ctx.RemoveTokens(target.id, bestLen, -1)
	case bestLen > 0:
		e.ctx.RemoveTokens(target.id, -1, -1)
		e.ctx.CopySequence(best.id, target.id, 0, bestLen)
	default:
		e.ctx.RemoveTokens(target.id, -1, -1)
	}
	target.tokens = append(target.tokens[:0], r.Prompt[:bestLen]...)
	target.key, target.reusable = key, reuse
	target.req = r
	r.seq, r.next, r.cached = target, bestLen, bestLen
	r.events <- event{admitted: true}
	e.cached.Add(int64(bestLen))
	for _, t := range r.Prompt {
		r.smp.Accept(t)
	}
	for _, iv := range ivs {
		if !iv.Needed() {
			continue
		}
		p := iv.Point()
		rt := e.routers[p]
		if rt == nil {
			rt = intervene.NewRouter(p)
			e.routers[p] = rt
		}
		_ = rt.Set(target.id, iv)
		if rt.Len() == 1 {
			if err := e.hooks.SetIntervention(p, rt); err != nil {
				e.end(r, "error", fmt.Errorf("engine: installing steering at %s: %w", p, err))
				return
			}
		}
	}
}

// decodingPrefix finds the running request, with the same steering key,
// whose prompt is still being decoded and shares the longest prefix with
// r's prompt (at most all but r's last token). Requests that wait for
// another themselves are not candidates, so waits never chain.
func (e *Engine) decodingPrefix(r *request, key string, reuse bool) (*sequence, int) {
	if !reuse {
		return nil, 0
	}
	var src *sequence
	srcLen := 0
	for _, s := range e.seqs {
		q := s.req
		if q == nil || !s.reusable || s.key != key || q.waitFor != nil || q.next >= len(q.Prompt) {
			continue
		}
		if n := commonPrefix(q.Prompt, r.Prompt); n > srcLen {
			src, srcLen = s, n
		}
	}
	return src, min(srcLen, len(r.Prompt)-1)
}

// takeShared copies the prefix r waits for into r's sequence once the
// source sequence holds it, or whatever part of it the source holds once
// it stops decoding that prompt (its request ended, failed or moved on).
// It reports whether r may decode now.
func (e *Engine) takeShared(r *request) bool {
	src, s := r.waitFor, r.seq
	n := 0
	if src.reusable && src.key == s.key {
		n = min(commonPrefix(src.tokens, r.Prompt), r.waitLen)
	}
	if n < r.waitLen && src.req == r.waitReq && r.waitReq.next < len(r.waitReq.Prompt) {
		return false // the source is still decoding it
	}
	r.waitFor, r.waitReq = nil, nil
	if n > 0 {
		e.ctx.CopySequence(src.id, s.id, 0, n)
		s.tokens = append(s.tokens[:0], r.Prompt[:n]...)
		r.next, r.cached = n, n
		e.cached.Add(int64(n))
	}
	return true
}

// idleSequence picks the idle sequence whose cache is the least valuable:
// an empty one, else the least recently used (never keep, if it is idle,
// unless nothing else is).
func (e *Engine) idleSequence(keep *sequence) *sequence {
	var pick *sequence
	for _, s := range e.seqs {
		if s.req != nil {
			continue
		}
		switch {
		case pick == nil:
			pick = s
		case pick == keep && s != keep:
			pick = s
		case s == keep:
		case len(s.tokens) == 0 && len(pick.tokens) > 0:
			pick = s
		case (len(s.tokens) == 0) == (len(pick.tokens) == 0) && s.lastUsed < pick.lastUsed:
			pick = s
		}
	}
	return pick
}

func commonPrefix(a, b []llama.Token) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// reap ends requests whose caller stopped or went away.
func (e *Engine) reap() {
	for _, s := range e.seqs {
		if r := s.req; r != nil && r.stop.Load() {
			e.end(r, "cancelled", nil)
		}
	}
}

// end finishes r: its sequence becomes idle (its KV entries stay as a
// cache), its steering is removed and the caller is told.
func (e *Engine) end(r *request, reason string, err error) {
	s := r.seq
	if s != nil {
		for _, iv := range r.interventions() {
			if !iv.Needed() {
				continue
			}
			p := iv.Point()
			if rt := e.routers[p]; rt != nil {
				_ = rt.Set(s.id, nil)
				if rt.Len() == 0 {
					_ = e.hooks.SetIntervention(p, nil)
					delete(e.routers, p)
				}
			}
		}
		if err != nil {
			// After a failed decode the sequence's KV state is unknown.
			e.ctx.RemoveTokens(s.id, -1, -1)
			s.tokens = s.tokens[:0]
		}
		e.clock++
		s.req, s.lastUsed = nil, e.clock
		r.seq = nil
	}
	r.smp.Close()
	e.mu.Lock()
	e.running--
	e.mu.Unlock()
	r.done <- finish{reason, err}
}

// step decodes one batch: the pending token of every generating request,
// then prompt chunks while room is left. It reports whether there was work.
func (e *Engine) step() bool {
	b := e.batch
	b.Clear()
	var in []*request
	for _, s := range e.seqs {
		r := s.req
		if r == nil || r.next < len(r.Prompt) {
			continue
		}
		r.outIdx = b.Len()
		_ = b.Add(r.pending, len(s.tokens), s.ids, true)
		in = append(in, r)
	}
	for _, s := range e.seqs {
		r := s.req
		if r == nil || r.next >= len(r.Prompt) || b.Len() >= b.Cap() {
			continue
		}
		if r.waitFor != nil && !e.takeShared(r) {
			continue
		}
		n := min(len(r.Prompt)-r.next, b.Cap()-b.Len())
		r.chunk = n
		for i := 0; i < n; i++ {
			last := r.next+i == len(r.Prompt)-1
			if last {
				r.outIdx = b.Len()
			}
			_ = b.Add(r.Prompt[r.next+i], r.next+i, s.ids, last)
		}
		in = append(in, r)
	}
	if b.Len() == 0 {
		return false
	}
	err := e.ctx.Decode(b)
	e.steps.Add(1)
	if err != nil {
		if errors.Is(err, llama.ErrAborted) {
			e.mu.Lock()
			closed := e.closed
			e.mu.Unlock()
			if closed {
				return true // shutdown ends everyone
			}
		}
		for _, r := range in {
			r.outIdx, r.chunk = -1, 0
			e.end(r, "error", fmt.Errorf("engine: decode: %w", err))
		}
		return true
	}
	// Account for what is now in the KV memory, then sample.
	for _, r := range in {
		s := r.seq
		if r.chunk > 0 {
			s.tokens = append(s.tokens, r.Prompt[r.next:r.next+r.chunk]...)
			r.next += r.chunk
			r.chunk = 0
		} else {
			s.tokens = append(s.tokens, r.pending)
		}
		if r.outIdx < 0 {
			continue
		}
		idx := r.outIdx
		r.outIdx = -1
		tok := r.smp.Sample(e.ctx, idx)
		if e.model.IsEOG(tok) {
			e.end(r, "eog", nil)
			continue
		}
		r.sampled++
		if r.inline != nil {
			if r.ctx.Err() != nil {
				e.end(r, "cancelled", nil)
				continue
			}
			if r.delivered == 0 {
				r.first = time.Since(r.start)
			}
			if err := r.inline(tok, e.model.TokenPiece(tok)); err != nil {
				r.inlineErr = err
				e.end(r, "callback", nil)
				continue
			}
			r.delivered++
		} else {
			r.events <- event{tok: tok, piece: e.model.TokenPiece(tok)}
		}
		switch {
		case r.MaxTokens > 0 && r.sampled >= r.MaxTokens:
			e.end(r, "max_tokens", nil)
		case len(s.tokens) >= e.nCtx:
			e.end(r, "context_full", nil)
		case r.sampled >= cap(r.events)-2:
			e.end(r, "context_full", nil)
		default:
			r.pending = tok
		}
	}
	return true
}
