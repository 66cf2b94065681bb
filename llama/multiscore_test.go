package llama

import (
	"context"
	"math"
	"testing"
)

// scoreOneByOne scores every request with Scorer.SetPrefix and
// Scorer.ScoreAll, the reference MultiScorer must agree with.
func scoreOneByOne(t *testing.T, c *Context, reqs []ScoreRequest) [][]ContinuationScore {
	t.Helper()
	s := c.NewScorer(0)
	defer s.Close()
	out := make([][]ContinuationScore, len(reqs))
	for i, r := range reqs {
		if err := s.SetPrefix(context.Background(), r.Prefix); err != nil {
			t.Fatal(err)
		}
		sc, err := s.ScoreAll(context.Background(), r.Conts)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = sc
	}
	c.RemoveTokens(-1, -1, -1)
	return out
}

func multiRequests(t *testing.T, m *Model) []ScoreRequest {
	t.Helper()
	tok := func(s string, bos bool) []Token {
		toks, err := m.Tokenize(s, bos, false)
		if err != nil || len(toks) == 0 {
			t.Fatalf("tokenize %q: %v", s, err)
		}
		return toks
	}
	var reqs []ScoreRequest
	prefixes := []string{"the cat is", "a dog of the", "it", "in the cat and the dog of a", "to be or not"}
	conts := [][]string{
		{" in it", " of the a and to", " a", " it is the cat of a dog in the"},
		{" x", " the"},
		{" a", " b"}, // single-token continuations only
		{" dog", " of a cat in the it", " the the the"},
		{" is it", " of", " and the dog is in a"},
	}
	for i, p := range prefixes {
		r := ScoreRequest{Prefix: tok(p, true)}
		for _, c := range conts[i] {
			r.Conts = append(r.Conts, tok(c, false))
		}
		reqs = append(reqs, r)
	}
	return reqs
}

// The multi-request scorer gives Scorer's numbers (to 1e-4 nats, the float
// rounding of batched kernels on the random model), whatever the batch
// budget: every request in one batch, a few per batch, or one per batch.
func TestMultiScorerMatchesScorer(t *testing.T) {
	m := randomModel(t)
	for _, p := range []ContextParams{{NCtx: 256, NBatch: 64, NSeqMax: 16}, {NCtx: 2048, NSeqMax: 64}} {
		testMultiScorerMatches(t, m, p)
	}
}

func testMultiScorerMatches(t *testing.T, m *Model, p ContextParams) {
	c := newContext(t, m, p)
	reqs := multiRequests(t, m)
	want := scoreOneByOne(t, c, reqs)
	for _, budget := range []int{0, 24, 1} {
		ms, err := c.NewMultiScorer(budget)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ms.Score(context.Background(), reqs)
		ms.Close()
		if err != nil {
			t.Fatalf("budget %d: %v", budget, err)
		}
		for i := range reqs {
			for k, cont := range reqs[i].Conts {
				g, w := got[i][k], want[i][k]
				if len(g.PerToken) != len(cont) {
					t.Fatalf("budget %d: request %d continuation %d: %d per-token scores, want %d", budget, i, k, len(g.PerToken), len(cont))
				}
				for j := range cont {
					if d := math.Abs(g.PerToken[j] - w.PerToken[j]); d > 1e-4 || math.IsNaN(d) {
						t.Errorf("budget %d: request %d continuation %d token %d: %v, want %v", budget, i, k, j, g.PerToken[j], w.PerToken[j])
					}
				}
				if math.Abs(g.Sum-w.Sum) > 1e-3 {
					t.Errorf("budget %d: request %d continuation %d: sum %v, want %v", budget, i, k, g.Sum, w.Sum)
				}
			}
		}
	}
	if n := c.SequenceMaxPos(0); n != -1 {
		t.Errorf("KV memory not cleared: sequence 0 ends at %d", n)
	}
}
