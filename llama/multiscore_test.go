package llama

import (
	"context"
	"errors"
	"math"
	"strings"
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

// Requests too large for one batch (more tokens than n_batch, more
// continuations than sequences) are scored prefix first, as Scorer does.
func TestMultiScorerLargeRequests(t *testing.T) {
	m := randomModel(t)
	c := newContext(t, m, ContextParams{NCtx: 512, NBatch: 64, NSeqMax: 4})
	reqs := multiRequests(t, m)
	long, _ := m.Tokenize(strings.Repeat("the cat of a dog ", 20), true, false)
	if len(long) <= 64 {
		t.Fatalf("long prefix has %d tokens", len(long))
	}
	reqs = append(reqs, ScoreRequest{Prefix: long, Conts: reqs[0].Conts})
	many := ScoreRequest{Prefix: reqs[1].Prefix}
	for i := 0; i < 6; i++ {
		many.Conts = append(many.Conts, reqs[i%len(reqs)].Conts[0])
	}
	reqs = append(reqs, many)
	want := scoreOneByOne(t, c, reqs)
	ms, err := c.NewMultiScorer(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	got, err := ms.Score(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		for k := range reqs[i].Conts {
			if d := math.Abs(got[i][k].Sum - want[i][k].Sum); !(d <= 1e-3) {
				t.Errorf("request %d continuation %d: %v, want %v", i, k, got[i][k].Sum, want[i][k].Sum)
			}
		}
	}
}

func TestMultiScorerBadInputs(t *testing.T) {
	m := randomModel(t)
	c := newContext(t, m, ContextParams{NCtx: 256, NBatch: 32, NSeqMax: 4})
	ms, err := c.NewMultiScorer(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	if _, err := c.NewMultiScorer(-1); err == nil {
		t.Error("negative batch budget accepted")
	}
	good := multiRequests(t, m)[0]
	longCont := make([]Token, 40) // 39 tokens to decode > n_batch 32
	for i := range longCont {
		longCont[i] = 5
	}
	longPrefix := make([]Token, 256)
	for i := range longPrefix {
		longPrefix[i] = 5
	}
	cases := []struct {
		name string
		req  ScoreRequest
		want string
	}{
		{"continuation longer than n_batch", ScoreRequest{Prefix: good.Prefix, Conts: [][]Token{longCont}}, "exceeds n_batch"},
		{"prompt longer than the context", ScoreRequest{Prefix: longPrefix, Conts: good.Conts}, "does not fit the context"},
		{"empty prefix", ScoreRequest{Conts: good.Conts}, "empty prefix"},
		{"empty continuation", ScoreRequest{Prefix: good.Prefix, Conts: [][]Token{{}}}, "is empty"},
		{"token out of vocabulary", ScoreRequest{Prefix: good.Prefix, Conts: [][]Token{{Token(m.NVocab())}}}, "out of vocabulary"},
		{"prefix token out of vocabulary", ScoreRequest{Prefix: []Token{-1}, Conts: good.Conts}, "out of vocabulary"},
	}
	for _, tc := range cases {
		_, err := ms.Score(context.Background(), []ScoreRequest{good, tc.req})
		var re *RequestError
		if !errors.As(err, &re) || re.Index != 1 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want request 1: %q", tc.name, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ms.Score(ctx, []ScoreRequest{good}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// Still usable, and nothing is left in the KV memory.
	if _, err := ms.Score(context.Background(), []ScoreRequest{good}); err != nil {
		t.Errorf("after cancel: %v", err)
	}
	if n := c.SequenceMaxPos(0); n != -1 {
		t.Errorf("KV memory not cleared: sequence 0 ends at %d", n)
	}
}

// fastLogSumExp is logSumExp bit for bit, special values included.
func TestFastLogSumExpIdentical(t *testing.T) {
	seed := uint64(1)
	next := func() float32 {
		seed = seed*6364136223846793005 + 1442695040888963407
		return float32(int64(seed>>11)%20000-10000) / 700
	}
	for n := 1; n < 300; n += 37 {
		v := make([]float32, n)
		for i := range v {
			v[i] = next()
		}
		if a, b := fastLogSumExp(v), logSumExp(v); a != b {
			t.Errorf("n=%d: %v != %v", n, a, b)
		}
	}
	inf := float32(math.Inf(1))
	for _, v := range [][]float32{{}, {float32(math.Inf(-1)), 1}, {inf, 1}, {1, float32(math.NaN()), 2}, {float32(math.NaN())}} {
		a, b := fastLogSumExp(v), logSumExp(v)
		if a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
			t.Errorf("%v: %v != %v", v, a, b)
		}
	}
}
