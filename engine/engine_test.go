package engine

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

type env struct {
	m   *llama.Model
	cat *hooks.Catalog
}

func newEnv(t *testing.T) env {
	t.Helper()
	m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	cat, err := hooks.Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	return env{m, cat}
}

func (v env) engine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	cfg.Model, cfg.Catalog = v.m, v.cat
	if cfg.Threads == 0 {
		cfg.Threads = 2
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// steerFile is a steering file for the random model with one gated and one
// ungated attribute whose vectors depend on seed.
func steerFile(nEmbd, layer int, seed float64) *steer.File {
	a := steer.Attribute{Name: "tone", Gated: true, Theta: make([]float64, nEmbd), GateW: make([]float64, nEmbd), GateB: 0.3}
	b := steer.Attribute{Name: "style", Theta: make([]float64, nEmbd)}
	for i := 0; i < nEmbd; i++ {
		a.Theta[i] = 2 * math.Sin(seed*float64(i+1))
		a.GateW[i] = 0.05 * math.Cos(3*float64(i))
		b.Theta[i] = 1.5 * math.Cos(seed+float64(i))
	}
	return &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: layer, NEmbd: nEmbd, ModelArch: "llama",
		Method: steer.MethodMATSteer, Attributes: []steer.Attribute{a, b}}
}

func (v env) intervention(t *testing.T, f *steer.File, global float64) *intervene.Intervention {
	t.Helper()
	// Every row is steered here, BOS included: these tests check which
	// rows get which request's steering, not the special-token rule
	// (intervene's tests cover that).
	iv, err := intervene.New(f, steer.ApplyOptions{Global: global, SteerSpecial: true}, v.m, v.cat)
	if err != nil {
		t.Fatal(err)
	}
	return iv
}

func prompt(i int) []llama.Token {
	p := []llama.Token{1}
	for j := 0; j < 5+3*i; j++ {
		p = append(p, llama.Token(3+(i*37+j*11)%250))
	}
	return p
}

func collect(t *testing.T, e *Engine, ctx context.Context, req Request) ([]llama.Token, Result) {
	t.Helper()
	var toks []llama.Token
	res, err := e.Generate(ctx, req, func(tok llama.Token, _ string) error {
		toks = append(toks, tok)
		return nil
	})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	return toks, res
}

// solo generates req alone on a plain context (llama.Context.Generate).
func (v env) solo(t *testing.T, req Request) []llama.Token {
	t.Helper()
	h := hooks.New(v.cat)
	defer h.Close()
	c, err := llama.NewContext(v.m, llama.ContextParams{NCtx: 256, Threads: 2, Hook: h})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if req.Steering != nil {
		if err := intervene.Install(h, req.Steering); err != nil {
			t.Fatal(err)
		}
	}
	var toks []llama.Token
	if _, err := c.Generate(context.Background(), req.Prompt, llama.GenerateOptions{MaxTokens: req.MaxTokens, Sampler: req.Sampler},
		func(tok llama.Token, _ string) error { toks = append(toks, tok); return nil }); err != nil {
		t.Fatal(err)
	}
	return toks
}

func TestConcurrentRequestsMatchSoloGeneration(t *testing.T) {
	v := newEnv(t)
	e := v.engine(t, Config{Parallel: 4, NCtx: 256, QueueSize: 16})
	fA, fB := steerFile(v.m.NEmbd(), 1, 1), steerFile(v.m.NEmbd(), 2, 2)
	const n = 10
	reqs := make([]Request, n)
	want := make([][]llama.Token, n)
	for i := range reqs {
		reqs[i] = Request{Prompt: prompt(i), MaxTokens: 12 + i}
		switch i % 3 {
		case 1:
			reqs[i].Steering, reqs[i].SteeringKey = v.intervention(t, fA, 1), "A"
		case 2:
			reqs[i].Steering, reqs[i].SteeringKey = v.intervention(t, fB, 2), "B@2"
		}
		want[i] = v.solo(t, Request{Prompt: reqs[i].Prompt, MaxTokens: reqs[i].MaxTokens, Steering: reqs[i].Steering})
	}
	if slices.Equal(want[0], want[1]) && slices.Equal(want[1], want[2]) {
		t.Fatal("test is weak: steered and unsteered prompts give the same text")
	}
	got := make([][]llama.Token, n)
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = collect(t, e, context.Background(), reqs[i])
		}()
	}
	wg.Wait()
	for i := range reqs {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("request %d (steering %q): batched %v, solo %v", i, reqs[i].SteeringKey, got[i], want[i])
		}
	}
	if st := e.Stats(); st.Running != 0 || st.Queued != 0 || st.Steps == 0 {
		t.Errorf("stats after the run: %+v", st)
	}
}

// TestMixedBatchSteersOnlyItsOwnRows checks, at the hook level, one batch of
// three sequences: 0 unsteered, 1 and 2 with different files. Rows of
// sequence 0 are bit-identical to the same batch without steering, and each
// steered row is its own file's transform of the unsteered row.
func TestMixedBatchSteersOnlyItsOwnRows(t *testing.T) {
	v := newEnv(t)
	const layer = 1
	p := hooks.Point{Site: "l_out", Layer: layer}
	files := []*steer.File{nil, steerFile(v.m.NEmbd(), layer, 1), steerFile(v.m.NEmbd(), layer, 3)}
	run := func(steered bool) (before, after, logits map[int][][]float32) {
		h := hooks.New(v.cat)
		defer h.Close()
		c, err := llama.NewContext(v.m, llama.ContextParams{NCtx: 256, NSeqMax: 3, Threads: 2, Hook: h})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		before, after, logits = map[int][][]float32{}, map[int][][]float32{}, map[int][][]float32{}
		grab := func(dst map[int][][]float32) hooks.CaptureFunc {
			return func(r *hooks.Rows) error {
				for i := 0; i < r.N; i++ {
					dst[r.Seq(i)] = append(dst[r.Seq(i)], slices.Clone(r.Row(i)))
				}
				return nil
			}
		}
		rt := intervene.NewRouter(p)
		if steered {
			for seq, f := range files {
				if f != nil {
					if err := rt.Set(seq, v.intervention(t, f, 1)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if err := h.SetIntervention(p, rt); err != nil {
			t.Fatal(err)
		}
		if err := h.SetCapture(p, grab(before), hooks.BeforeIntervention); err != nil {
			t.Fatal(err)
		}
		p2 := hooks.Point{Site: "l_out", Layer: layer + 1}
		if err := h.SetCapture(p2, grab(after), hooks.BeforeIntervention); err != nil {
			t.Fatal(err)
		}
		b := llama.NewBatch(64, 1)
		defer b.Close()
		for seq := 0; seq < 3; seq++ {
			for i, tok := range prompt(seq + 2) {
				b.Add(tok, i, []int{seq}, true)
			}
		}
		if err := c.Decode(b); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < b.Len(); i++ {
			_, _, seq, _ := b.Token(i)
			lg, _ := c.Logits(i)
			logits[seq] = append(logits[seq], slices.Clone(lg))
		}
		return before, after, logits
	}
	b0, a0, l0 := run(false)
	b1, a1, l1 := run(true)
	for seq := 0; seq < 3; seq++ {
		if !equalRows(b0[seq], b1[seq]) {
			t.Fatalf("seq %d: rows before the steered point differ", seq)
		}
	}
	if !equalRows(a0[0], a1[0]) || !equalRows(l0[0], l1[0]) {
		t.Error("unsteered sequence 0 is not bit-identical to the batch without steering")
	}
	for seq := 1; seq < 3; seq++ {
		if equalRows(l0[seq], l1[seq]) {
			t.Errorf("steered sequence %d unchanged", seq)
		}
	}
	// Each steered row: capture after the intervention equals applying
	// the sequence's own file to the unsteered row.
	checkOwnVectors(t, v, p, files)
}

func checkOwnVectors(t *testing.T, v env, p hooks.Point, files []*steer.File) {
	t.Helper()
	h := hooks.New(v.cat)
	defer h.Close()
	c, err := llama.NewContext(v.m, llama.ContextParams{NCtx: 256, NSeqMax: 3, Threads: 2, Hook: h})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt := intervene.NewRouter(p)
	for seq, f := range files {
		if f != nil {
			_ = rt.Set(seq, v.intervention(t, f, 1))
		}
	}
	type pair struct{ before, after []float32 }
	rows := map[int][]*pair{}
	var cur []*pair
	h.SetIntervention(p, rt)
	h.SetCapture(p, func(r *hooks.Rows) error {
		cur = cur[:0]
		for i := 0; i < r.N; i++ {
			pr := &pair{before: slices.Clone(r.Row(i))}
			rows[r.Seq(i)] = append(rows[r.Seq(i)], pr)
			cur = append(cur, pr)
		}
		return nil
	}, hooks.BeforeIntervention)
	// A second capture point cannot share p; re-read the rows after the
	// intervention through a wrapper intervention instead.
	h.SetIntervention(p, hooks.InterventionFunc(func(r *hooks.Rows) error {
		if err := rt.Intervene(r); err != nil {
			return err
		}
		for i := 0; i < r.N; i++ {
			cur[i].after = slices.Clone(r.Row(i))
		}
		return nil
	}))
	b := llama.NewBatch(64, 1)
	defer b.Close()
	for i := 0; i < 6; i++ { // interleaved sequences: runs of length 1-2
		for seq := 0; seq < 3; seq++ {
			b.Add(prompt(seq)[i], i, []int{seq}, false)
		}
	}
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	for seq, f := range files {
		for i, pr := range rows[seq] {
			want := slices.Clone(pr.before)
			if f != nil {
				ap, _ := steer.NewApplier(f, steer.ApplyOptions{Global: 1})
				ap.Apply(want, nil, nil)
			}
			if !slices.Equal(want, pr.after) {
				t.Fatalf("seq %d row %d: not its own file's steering (or touched while unsteered)", seq, i)
			}
		}
		if len(rows[seq]) != 6 {
			t.Fatalf("seq %d: %d rows", seq, len(rows[seq]))
		}
	}
}

func equalRows(a, b [][]float32) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i := range a {
		if !slices.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestPromptCache(t *testing.T) {
	v := newEnv(t)
	e := v.engine(t, Config{Parallel: 2, NCtx: 256})
	system := prompt(20) // a long shared prefix
	ask := func(q int, iv *intervene.Intervention, key string) ([]llama.Token, Result) {
		p := append(slices.Clone(system), prompt(q)[1:]...)
		return collect(t, e, context.Background(), Request{Prompt: p, MaxTokens: 8, Steering: iv, SteeringKey: key})
	}
	first, r1 := ask(1, nil, "")
	if r1.CachedTokens != 0 {
		t.Fatalf("first request reused %d tokens", r1.CachedTokens)
	}
	again, r2 := ask(1, nil, "")
	if r2.CachedTokens != r2.PromptTokens-1 || !slices.Equal(first, again) {
		t.Fatalf("repeat: cached %d of %d, text %v vs %v", r2.CachedTokens, r2.PromptTokens, again, first)
	}
	_, r3 := ask(2, nil, "")
	if r3.CachedTokens < len(system) {
		t.Fatalf("shared system prompt: cached %d, want >= %d", r3.CachedTokens, len(system))
	}
	f := steerFile(v.m.NEmbd(), 1, 1)
	s1, r4 := ask(2, v.intervention(t, f, 1), "A")
	if r4.CachedTokens != 0 {
		t.Fatalf("steered request reused %d unsteered tokens", r4.CachedTokens)
	}
	want := v.solo(t, Request{Prompt: append(slices.Clone(system), prompt(2)[1:]...), MaxTokens: 8, Steering: v.intervention(t, f, 1)})
	if !slices.Equal(s1, want) {
		t.Fatalf("steered: %v, solo %v", s1, want)
	}
	s2, r5 := ask(2, v.intervention(t, f, 1), "A")
	if r5.CachedTokens != r5.PromptTokens-1 || !slices.Equal(s1, s2) {
		t.Fatalf("steered repeat: cached %d, %v vs %v", r5.CachedTokens, s2, s1)
	}
	_, r6 := ask(2, v.intervention(t, f, 2), "A@2")
	if r6.CachedTokens != 0 {
		t.Fatalf("other strength reused %d tokens", r6.CachedTokens)
	}
	_, r7 := ask(3, v.intervention(t, f, 1), "")
	if r7.CachedTokens != 0 {
		t.Fatalf("steering without a key reused %d tokens", r7.CachedTokens)
	}
}

// TestPromptCacheSharesARunningSequence: a request whose prefix is held by
// a sequence still generating copies its cells instead of decoding them.
func TestPromptCacheSharesARunningSequence(t *testing.T) {
	v := newEnv(t)
	e := v.engine(t, Config{Parallel: 2, NCtx: 256})
	system := prompt(25)
	started := make(chan struct{})
	release := make(chan struct{})
	go func() {
		n := 0
		e.Generate(context.Background(), Request{Prompt: system, MaxTokens: 200}, func(llama.Token, string) error {
			n++
			if n == 1 {
				close(started)
				<-release
			}
			return nil
		})
	}()
	<-started
	p := append(slices.Clone(system), prompt(4)[1:]...)
	got, res := collect(t, e, context.Background(), Request{Prompt: p, MaxTokens: 6})
	close(release)
	if res.CachedTokens != len(system) {
		t.Fatalf("cached %d tokens, want %d", res.CachedTokens, len(system))
	}
	if want := v.solo(t, Request{Prompt: p, MaxTokens: 6}); !slices.Equal(got, want) {
		t.Fatalf("%v, solo %v", got, want)
	}
}

func TestCancelStopAndQueue(t *testing.T) {
	v := newEnv(t)
	e := v.engine(t, Config{Parallel: 1, NCtx: 256, QueueSize: 1})
	// ErrStop ends a request early without an error.
	n := 0
	res, err := e.Generate(context.Background(), Request{Prompt: prompt(1), MaxTokens: 50}, func(llama.Token, string) error {
		n++
		if n == 3 {
			return llama.ErrStop
		}
		return nil
	})
	if err != nil || res.GeneratedTokens != 2 || res.StopReason != "callback" {
		t.Fatalf("stop: %+v %v", res, err)
	}
	// OnAdmit runs before the first token; its error ends the request.
	refused := errors.New("no headers")
	calls := 0
	if _, err := e.Generate(context.Background(), Request{Prompt: prompt(1), OnAdmit: func() error { return refused }},
		func(llama.Token, string) error { calls++; return nil }); !errors.Is(err, refused) || calls != 0 {
		t.Fatalf("OnAdmit error: %v after %d tokens", err, calls)
	}
	// A callback error is returned.
	boom := errors.New("boom")
	if _, err := e.Generate(context.Background(), Request{Prompt: prompt(1)}, func(llama.Token, string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("callback error: %v", err)
	}
	// One running, one queued, the third is refused.
	hold := make(chan struct{})
	var wg sync.WaitGroup
	running := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		once := sync.Once{}
		e.Generate(context.Background(), Request{Prompt: prompt(2), MaxTokens: 100}, func(llama.Token, string) error {
			once.Do(func() { close(running) })
			<-hold
			return nil
		})
	}()
	<-running
	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	var admittedWhileQueued atomic.Bool
	go func() {
		_, err := e.Generate(ctx, Request{Prompt: prompt(3), MaxTokens: 5, OnAdmit: func() error {
			admittedWhileQueued.Store(true)
			return nil
		}}, func(llama.Token, string) error { return nil })
		queued <- err
	}()
	waitFor(t, func() bool { return e.Stats().Queued == 1 })
	if _, err := e.Generate(context.Background(), Request{Prompt: prompt(4)}, nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third request: %v, want ErrQueueFull", err)
	}
	cancel() // the queued request leaves the queue
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled queued request: %v", err)
	}
	if admittedWhileQueued.Load() {
		t.Fatal("OnAdmit called for a request that never left the queue")
	}
	close(hold)
	wg.Wait()
	waitFor(t, func() bool { st := e.Stats(); return st.Running == 0 && st.Queued == 0 })
}

func TestCloseEndsRequests(t *testing.T) {
	v := newEnv(t)
	m := v.m
	e, err := New(Config{Model: m, Catalog: v.cat, Parallel: 2, NCtx: 256, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	started := make(chan struct{}, 3)
	for i := 0; i < 3; i++ {
		go func() {
			_, err := e.Generate(context.Background(), Request{Prompt: prompt(i)}, func(llama.Token, string) error {
				select {
				case started <- struct{}{}:
				default:
				}
				time.Sleep(time.Millisecond)
				return nil
			})
			errs <- err
		}()
	}
	<-started
	e.Close()
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil && !errors.Is(err, ErrClosed) {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := e.Generate(context.Background(), Request{Prompt: prompt(1)}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestBadRequestsAndConfig(t *testing.T) {
	v := newEnv(t)
	e := v.engine(t, Config{Parallel: 1, NCtx: 64})
	cases := map[string]Request{
		"empty":       {},
		"too long":    {Prompt: make([]llama.Token, 64)},
		"bad token":   {Prompt: []llama.Token{1, llama.Token(v.m.NVocab())}},
		"neg token":   {Prompt: []llama.Token{-1}},
		"bad sampler": {Prompt: prompt(1), Sampler: llama.SamplerParams{Temperature: math.NaN()}},
	}
	for name, req := range cases {
		if _, err := e.Generate(context.Background(), req, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, cfg := range []Config{{Parallel: -1}, {Parallel: MaxParallel + 1}, {NCtx: -5}, {Threads: -1}, {NBatch: -1}} {
		cfg.Model = v.m
		if _, err := New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("no model accepted")
	}
}

// TestNoLeaksUnderMixedLoad runs many short requests, some cancelled at
// random points, and checks that every sequence is free afterwards and the
// goroutine count returns to where it was.
func TestNoLeaksUnderMixedLoad(t *testing.T) {
	v := newEnv(t)
	e := v.engine(t, Config{Parallel: 4, NCtx: 128})
	g0 := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			k := 0
			_, err := e.Generate(ctx, Request{Prompt: prompt(i % 7), MaxTokens: 10}, func(llama.Token, string) error {
				k++
				if i%3 == 0 && k == 1+i%4 {
					cancel()
				}
				return nil
			})
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrQueueFull) {
				t.Errorf("request %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { st := e.Stats(); return st.Running == 0 && st.Queued == 0 })
	for _, s := range e.seqs { // the loop is idle: reading is safe
		if len(s.tokens) > e.nCtx {
			t.Errorf("sequence %d holds %d tokens", s.id, len(s.tokens))
		}
		if maxPos := e.ctx.SequenceMaxPos(s.id); maxPos != len(s.tokens)-1 {
			t.Errorf("sequence %d: KV max pos %d, bookkeeping %d tokens", s.id, maxPos, len(s.tokens))
		}
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= g0+1 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the engine")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Inline callbacks run on the engine's goroutine and give the same tokens,
// stop and error handling as handed-over ones.
func TestInlineCallback(t *testing.T) {
	v := newEnv(t)
	e := v.engine(t, Config{Parallel: 2, NCtx: 256})
	req := Request{Prompt: prompt(3), MaxTokens: 12}
	want, _ := collect(t, e, context.Background(), req)
	req.Inline = true
	got, res := collect(t, e, context.Background(), req)
	if !slices.Equal(got, want) || res.GeneratedTokens != 12 || res.StopReason != "max_tokens" || res.FirstToken <= 0 {
		t.Fatalf("inline: %v (%+v), handed over: %v", got, res, want)
	}
	n := 0
	res, err := e.Generate(context.Background(), Request{Prompt: prompt(3), MaxTokens: 12, Inline: true}, func(llama.Token, string) error {
		n++
		if n == 4 {
			return llama.ErrStop
		}
		return nil
	})
	if err != nil || res.GeneratedTokens != 3 || res.StopReason != "callback" {
		t.Fatalf("inline ErrStop: %+v %v", res, err)
	}
	boom := errors.New("boom")
	if _, err := e.Generate(context.Background(), Request{Prompt: prompt(3), Inline: true}, func(llama.Token, string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("inline error: %v", err)
	}
	// Mixed with handed-over requests in one batch: each gets its solo text.
	var wg sync.WaitGroup
	outs := make([][]llama.Token, 4)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], _ = collect(t, e, context.Background(), Request{Prompt: prompt(i), MaxTokens: 10, Inline: i%2 == 0})
		}()
	}
	wg.Wait()
	for i, o := range outs {
		if solo := v.solo(t, Request{Prompt: prompt(i), MaxTokens: 10}); !slices.Equal(o, solo) {
			t.Errorf("request %d (inline %v): %v, solo %v", i, i%2 == 0, o, solo)
		}
	}
	if st := e.Stats(); st.Running != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// NoPromptCache evaluates every prompt in full and gives the same text.
func TestNoPromptCache(t *testing.T) {
	v := newEnv(t)
	e := v.engine(t, Config{Parallel: 2, NCtx: 256, NoPromptCache: true})
	req := Request{Prompt: prompt(6), MaxTokens: 6}
	a, _ := collect(t, e, context.Background(), req)
	b, res := collect(t, e, context.Background(), req)
	if res.CachedTokens != 0 || e.Stats().CachedTokens != 0 || !slices.Equal(a, b) {
		t.Fatalf("cached %d (stats %+v), %v vs %v", res.CachedTokens, e.Stats(), a, b)
	}
}
