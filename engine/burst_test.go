package engine

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/matsteer/matsteer/llama"
)

// burst admits len(reqs) requests in one admission round: an inline
// request holds the engine's goroutine until all of them are queued, in
// order. (The holding request's prompt shares no prefix with prompt(i).)
// It returns each request's tokens and result.
func burst(t *testing.T, e *Engine, reqs []Request) ([][]llama.Token, []Result) {
	t.Helper()
	hold := make(chan struct{})
	held := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		first := true
		_, err := e.Generate(context.Background(), Request{Prompt: []llama.Token{7, 8, 9, 10}, MaxTokens: 4, Inline: true,
			Sampler: llama.SamplerParams{IgnoreEOG: true}},
			func(llama.Token, string) error {
				if first {
					first = false
					close(held)
					<-hold
				}
				return nil
			})
		if err != nil {
			t.Errorf("holding request: %v", err)
		}
	}()
	<-held
	toks := make([][]llama.Token, len(reqs))
	res := make([]Result, len(reqs))
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], res[i] = collect(t, e, context.Background(), req)
		}()
		waitFor(t, func() bool { return e.Stats().Queued == i+1 })
	}
	close(hold)
	wg.Wait()
	return toks, res
}

// A burst of requests with one long prompt evaluates it once: the first
// request decodes it and the others copy its KV entries as soon as they
// are in the memory, instead of each decoding the same prompt in the same
// step. Their text equals solo generation.
func TestBurstSharesAPromptBeingEvaluated(t *testing.T) {
	for _, nBatch := range []int{512, 16} { // 16: the shared prompt takes several steps
		v := newEnv(t)
		e := v.engine(t, Config{Parallel: 5, NCtx: 256, NBatch: nBatch})
		system := prompt(12) // 42 tokens
		var reqs []Request
		for i := 0; i < 4; i++ {
			p := append(slices.Clone(system), prompt(i)[1:]...)
			reqs = append(reqs, Request{Prompt: p, MaxTokens: 6})
		}
		toks, res := burst(t, e, reqs)
		total := 0
		for i, r := range res {
			total += r.CachedTokens
			if want := v.solo(t, reqs[i]); !slices.Equal(toks[i], want) {
				t.Errorf("batch %d, request %d: %v, solo %v", nBatch, i, toks[i], want)
			}
		}
		if want := 3 * len(system); total < want {
			t.Errorf("batch %d: %d prompt tokens came from the cache in all, want at least %d (cached per request: %v)",
				nBatch, total, want, cachedOf(res))
		}
	}
}

// Requests whose steering differs do not wait for each other's prompt:
// steering changes the KV entries, so nothing may be shared.
func TestBurstDoesNotShareAcrossSteering(t *testing.T) {
	v := newEnv(t)
	e := v.engine(t, Config{Parallel: 5, NCtx: 256})
	system := prompt(12)
	f := steerFile(v.m.NEmbd(), 1, 0.7)
	reqs := []Request{
		{Prompt: system, MaxTokens: 6},
		{Prompt: system, MaxTokens: 6, Steering: v.intervention(t, f, 1), SteeringKey: "a"},
		{Prompt: system, MaxTokens: 6, Steering: v.intervention(t, f, 0.5), SteeringKey: "b"},
		{Prompt: system, MaxTokens: 6, Steering: v.intervention(t, f, 1), SteeringKey: "a"},
	}
	toks, res := burst(t, e, reqs)
	if got := cachedOf(res); got[0] != 0 || got[1] != 0 || got[2] != 0 || got[3] != len(system)-1 {
		t.Fatalf("cached tokens per request %v, want [0 0 0 %d]", got, len(system)-1)
	}
	for i, req := range reqs {
		if req.Steering != nil {
			req.Steering = v.intervention(t, f, map[string]float64{"a": 1, "b": 0.5}[req.SteeringKey])
		}
		if want := v.solo(t, req); !slices.Equal(toks[i], want) {
			t.Errorf("request %d: %v, solo %v", i, toks[i], want)
		}
	}
}

func cachedOf(res []Result) []int {
	out := make([]int, len(res))
	for i, r := range res {
		out[i] = r.CachedTokens
	}
	return out
}
