package llama

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func randomModel(t testing.TB) *Model {
	t.Helper()
	m, err := NewRandomModel(DefaultRandomModelConfig(), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func newContext(t testing.TB, m *Model, p ContextParams) *Context {
	t.Helper()
	if p.Threads == 0 {
		p.Threads = 2
	}
	c, err := NewContext(m, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestRandomModelInfo(t *testing.T) {
	m := randomModel(t)
	if m.Arch() != "llama" || m.NLayer() != 4 || m.NEmbd() != 64 || m.NVocab() != 268 {
		t.Fatalf("info: arch=%q layers=%d embd=%d vocab=%d", m.Arch(), m.NLayer(), m.NEmbd(), m.NVocab())
	}
	if sp := m.Special(); sp.BOS != 1 || sp.EOS != 2 {
		t.Fatalf("special tokens %+v", sp)
	}
	if m.ChatTemplate() != "chatml" {
		t.Fatalf("chat template %q", m.ChatTemplate())
	}
}

func TestTokenizeRoundTrip(t *testing.T) {
	m := randomModel(t)
	text := "the cat is in it, héllo!"
	toks, err := m.Tokenize(text, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if toks[0] != m.Special().BOS {
		t.Fatalf("first token %d, want BOS", toks[0])
	}
	got := m.Detokenize(toks, true, false)
	if strings.TrimSpace(got) != text {
		t.Fatalf("round trip %q != %q", got, text)
	}
}

func TestChatTemplate(t *testing.T) {
	m := randomModel(t)
	s, err := m.ApplyChatTemplate("", []ChatMessage{{Role: "user", Content: "hi"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
	if s != want {
		t.Fatalf("template output %q, want %q", s, want)
	}
	// The same turn as tokens, control tokens parsed and BOS first (the
	// byte-level test vocabulary has no control tokens to parse; the
	// default-model test TestSmolLM2ChatReplies has).
	toks, err := m.UserTurnTokens("hi")
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := m.Tokenize(want, true, true)
	if !slices.Equal(toks, parsed) || toks[0] != m.Special().BOS {
		t.Fatalf("user turn %v, want %v", toks, parsed)
	}
	cfg := DefaultRandomModelConfig()
	cfg.ChatTemplate = ""
	bare, err := NewRandomModel(cfg, ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if _, err := bare.UserTurnTokens("hi"); err == nil || !strings.Contains(err.Error(), "no chat template") {
		t.Fatalf("a model without a template: %v", err)
	}
}

func TestLoadModelErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadModel(filepath.Join(dir, "missing.gguf"), ModelParams{}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.gguf")
	os.WriteFile(bad, []byte("not a model at all"), 0o644)
	if _, err := LoadModel(bad, ModelParams{}); !errors.Is(err, ErrNotGGUF) {
		t.Fatalf("non-GGUF file: %v", err)
	}
	// A real model file, truncated.
	m := randomModel(t)
	good := filepath.Join(dir, "good.gguf")
	if err := m.SaveToFile(good); err != nil {
		t.Fatal(err)
	}
	m2, err := LoadModel(good, ModelParams{})
	if err != nil {
		t.Fatalf("load saved model: %v", err)
	}
	if m2.NLayer() != 4 || m2.ChatTemplate() != "chatml" {
		t.Fatalf("saved model has %d layers, chat template %q", m2.NLayer(), m2.ChatTemplate())
	}
	m2.Close()
	data, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.gguf")
	os.WriteFile(trunc, data[:len(data)/2], 0o644)
	if _, err := LoadModel(trunc, ModelParams{}); err == nil {
		t.Fatal("truncated model loaded without error")
	} else if !strings.Contains(err.Error(), "trunc.gguf") {
		t.Fatalf("error does not name the file: %v", err)
	}
}

// The continuation log-prob equals the sum of per-token log-softmax values
// from a separate token-by-token run.
func TestContinuationLogProbMatchesTokenByToken(t *testing.T) {
	m := randomModel(t)
	ctx := newContext(t, m, ContextParams{NCtx: 128})
	prefix, _ := m.Tokenize("the a is of", true, false)
	cont, _ := m.Tokenize(" and to in it the", false, false)
	got, err := ctx.ContinuationLogProb(context.Background(), prefix, cont)
	if err != nil {
		t.Fatal(err)
	}
	ref := newContext(t, m, ContextParams{NCtx: 128})
	all := append(append([]Token{}, prefix...), cont...)
	b := NewBatch(1, 1)
	defer b.Close()
	var want float64
	var lsm []float64
	for i := 0; i < len(all)-1; i++ {
		b.Clear()
		b.Add(all[i], i, []int{0}, true)
		if err := ref.Decode(b); err != nil {
			t.Fatal(err)
		}
		if i >= len(prefix)-1 {
			lg, _ := ref.Logits(-1)
			lsm = LogSoftmax(lg, lsm)
			want += lsm[all[i+1]]
		}
	}
	if math.Abs(got.Sum-want) > 1e-3 || len(got.PerToken) != len(cont) {
		t.Fatalf("log-prob %v (%d tokens), token-by-token %v", got.Sum, len(got.PerToken), want)
	}
	if got.Sum >= 0 {
		t.Fatalf("log-prob %v should be negative", got.Sum)
	}
}

func TestScorerReusesPrefix(t *testing.T) {
	m := randomModel(t)
	ctx := newContext(t, m, ContextParams{NCtx: 128})
	s := ctx.NewScorer(0)
	defer s.Close()
	prefix, _ := m.Tokenize("the cat", true, false)
	if err := s.SetPrefix(context.Background(), prefix); err != nil {
		t.Fatal(err)
	}
	a, _ := m.Tokenize(" is in it", false, false)
	bb, _ := m.Tokenize(" of the a", false, false)
	sa1, err := s.Score(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Score(context.Background(), bb); err != nil {
		t.Fatal(err)
	}
	sa2, _ := s.Score(context.Background(), a)
	if sa1.Sum != sa2.Sum {
		t.Fatalf("scoring the same continuation twice: %v vs %v", sa1.Sum, sa2.Sum)
	}
	fresh, _ := ctx.ContinuationLogProb(context.Background(), prefix, a)
	if math.Abs(fresh.Sum-sa1.Sum) > 1e-4 {
		t.Fatalf("scorer %v vs fresh %v", sa1.Sum, fresh.Sum)
	}
}

func TestGenerateGreedyDeterministicAndCancellable(t *testing.T) {
	m := randomModel(t)
	ctx := newContext(t, m, ContextParams{NCtx: 128})
	prompt, _ := m.Tokenize("the", true, false)
	run := func() []Token {
		var out []Token
		_, err := ctx.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 12}, func(tok Token, _ string) error {
			out = append(out, tok)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b := run(), run()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("runs differ in length: %v vs %v", a, b)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("greedy runs differ: %v vs %v", a, b)
		}
	}
	cctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := ctx.Generate(cctx, prompt, GenerateOptions{MaxTokens: 50}, func(Token, string) error {
		n++
		if n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Fatalf("cancel: err=%v after %d tokens", err, n)
	}
}

func TestPromptLongerThanContext(t *testing.T) {
	m := randomModel(t)
	ctx := newContext(t, m, ContextParams{NCtx: 32})
	long := make([]Token, ctx.NCtx()+5)
	for i := range long {
		long[i] = 100
	}
	if _, err := ctx.Generate(context.Background(), long, GenerateOptions{MaxTokens: 1}, nil); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("want a context-length error, got %v", err)
	}
}

func TestSamplerValidation(t *testing.T) {
	m := randomModel(t)
	for _, p := range []SamplerParams{{Temperature: -1}, {TopP: 2}, {Temperature: math.NaN()}, {MinP: -0.1}} {
		if _, err := NewSampler(m, p); err == nil {
			t.Errorf("params %+v accepted", p)
		}
	}
	s, err := NewSampler(m, SamplerParams{Temperature: 0.8, TopK: 40, TopP: 0.9, MinP: 0.05, RepeatPenalty: 1.1, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestScoreAllMatchesScore(t *testing.T) {
	m := randomModel(t)
	ctx := newContext(t, m, ContextParams{NCtx: 256, NBatch: 32, NSeqMax: 3})
	s := ctx.NewScorer(0)
	defer s.Close()
	prefix, _ := m.Tokenize("the cat is", true, false)
	var conts [][]Token
	for _, text := range []string{" in it", " of the a and to", " a", " it is the cat of a dog in the", " x", " the"} {
		toks, _ := m.Tokenize(text, false, false)
		conts = append(conts, toks)
	}
	if err := s.SetPrefix(context.Background(), prefix); err != nil {
		t.Fatal(err)
	}
	all, err := s.ScoreAll(context.Background(), conts)
	if err != nil {
		t.Fatal(err)
	}
	for k, cont := range conts {
		one, err := s.Score(context.Background(), cont)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(one.Sum-all[k].Sum) > 1e-4 || len(all[k].PerToken) != len(cont) {
			t.Errorf("continuation %d: ScoreAll %v, Score %v", k, all[k].Sum, one.Sum)
		}
	}
	// The prefix is intact: scoring again gives the same numbers.
	again, _ := s.ScoreAll(context.Background(), conts)
	for k := range conts {
		if again[k].Sum != all[k].Sum {
			t.Errorf("continuation %d: second ScoreAll %v vs %v", k, again[k].Sum, all[k].Sum)
		}
	}
}

// More sequences than a micro-batch holds is an error, not an abort inside
// cpp.
func TestNewContextRefusesMoreSequencesThanAMicroBatch(t *testing.T) {
	m, err := NewRandomModel(DefaultRandomModelConfig(), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = NewContext(m, ContextParams{NCtx: 256, NBatch: 8, NSeqMax: 16, Threads: 1})
	if err == nil || !strings.Contains(err.Error(), "16 sequences do not fit a micro-batch of 8 tokens") {
		t.Fatalf("got %v", err)
	}
	c, err := NewContext(m, ContextParams{NCtx: 256, NBatch: 16, NSeqMax: 16, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
