package eval

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

func TestDistinctN(t *testing.T) {
	cases := []struct {
		toks []llama.Token
		n    int
		want float64
	}{
		{[]llama.Token{1, 2, 1, 2}, 1, 0.5},
		{[]llama.Token{1, 2, 1, 2}, 2, 2.0 / 3},
		{[]llama.Token{5, 5, 5, 5, 5}, 2, 0.25},
		{[]llama.Token{1, 2, 3}, 1, 1},
		{[]llama.Token{1, 2, 3}, 3, 1},
		{[]llama.Token{1}, 2, 0},
		{nil, 1, 0},
		// Token ids above 255 must not collide (bytes of the id, not the low one).
		{[]llama.Token{1, 257}, 1, 1},
	}
	for _, c := range cases {
		if got := distinctN(c.toks, c.n); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("distinctN(%v, %d) = %v, want %v", c.toks, c.n, got, c.want)
		}
	}
}

// The generation check's texts are each condition's greedy generations, its
// NLL is the unsteered model's (checked against a separate full-sequence
// decode), a zero-strength file equals no steering, and a strong one
// changes the text.
func TestGenerationCheck(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	f := testFile(e.m.NEmbd(), 1, 0.5)
	methods := []Method{
		Unsteered(),
		e.method(t, "zero", f, steer.ApplyOptions{Global: 0}),
		e.method(t, "strong", f, steer.ApplyOptions{Global: 8}),
	}
	prompts := []string{"the cat sat on", "a b c d e f"}
	const n = 12
	res, err := r.GenerationCheck(context.Background(), prompts, methods, GenerationOptions{MaxTokens: n})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Name != NoneName || res[2].Name != "strong" {
		t.Fatalf("results %+v", res)
	}
	changed := false
	for i, p := range prompts {
		prompt, err := e.m.Tokenize(p, true, false)
		if err != nil {
			t.Fatal(err)
		}
		for k, m := range methods {
			s := res[k].Samples[i]
			// Regenerate independently on a fresh context.
			want := e.generate(t, m, prompt, n)
			var text strings.Builder
			for _, tok := range want {
				text.WriteString(e.m.TokenPiece(tok))
			}
			if s.Tokens != len(want) || s.Prompt != p {
				t.Fatalf("%s, prompt %d: %d tokens, want %d", m.Name, i, s.Tokens, len(want))
			}
			if w := strings.ToValidUTF8(text.String(), "\uFFFD"); s.Text != w {
				t.Errorf("%s, prompt %d: text %q, want %q", m.Name, i, s.Text, w)
			}
			if len(want) > 0 {
				nll := -e.fullSequence(t, Unsteered(), prompt, want) / float64(len(want))
				if math.Abs(s.NLL-nll) > 1e-3*math.Max(1, nll) {
					t.Errorf("%s, prompt %d: NLL %v, full-sequence decode %v", m.Name, i, s.NLL, nll)
				}
			}
			if s.Distinct1 != distinctN(want, 1) || s.Distinct2 != distinctN(want, 2) {
				t.Errorf("%s, prompt %d: distinct %v/%v", m.Name, i, s.Distinct1, s.Distinct2)
			}
		}
		changed = changed || res[2].Samples[i].Text != res[0].Samples[i].Text
		if res[1].Samples[i].Text != res[0].Samples[i].Text {
			t.Errorf("prompt %d: zero strength %q, unsteered %q", i, res[1].Samples[i].Text, res[0].Samples[i].Text)
		}
	}
	if !changed {
		t.Error("strong steering changed no generation")
	}
	if res[1].PPL != res[0].PPL || res[0].PPL <= 1 || math.IsNaN(res[2].PPL) {
		t.Errorf("perplexities %v %v %v", res[0].PPL, res[1].PPL, res[2].PPL)
	}
	// The pooled perplexity is exp of the token-weighted mean NLL.
	sum, tok := 0.0, 0
	for _, s := range res[2].Samples {
		sum += s.NLL * float64(s.Tokens)
		tok += s.Tokens
	}
	if want := math.Exp(sum / float64(tok)); math.Abs(res[2].PPL-want) > 1e-9*want || res[2].Tokens != tok {
		t.Errorf("pooled perplexity %v, want %v", res[2].PPL, want)
	}
}

func TestGenerationCheckErrors(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	bg := context.Background()
	if _, err := r.GenerationCheck(bg, nil, []Method{Unsteered()}, GenerationOptions{}); err == nil || !strings.Contains(err.Error(), "no prompts") {
		t.Errorf("no prompts: %v", err)
	}
	if _, err := r.GenerationCheck(bg, []string{"x"}, []Method{Unsteered()}, GenerationOptions{MaxTokens: 300}); err == nil || !strings.Contains(err.Error(), "does not fit the context") {
		t.Errorf("too long: %v", err)
	}
	if _, err := r.GenerationCheck(bg, []string{"x"}, []Method{Unsteered()}, GenerationOptions{MaxTokens: -1}); err == nil {
		t.Error("negative MaxTokens accepted")
	}
	if e.m.ChatTemplate() != "" {
		if res, err := r.GenerationCheck(bg, []string{"x"}, []Method{Unsteered()}, GenerationOptions{Chat: true, MaxTokens: 4}); err != nil || len(res[0].Samples) != 1 {
			t.Errorf("chat: %v", err)
		}
	} else if _, err := r.GenerationCheck(bg, []string{"x"}, []Method{Unsteered()}, GenerationOptions{Chat: true}); err == nil || !strings.Contains(err.Error(), "chat template") {
		t.Errorf("chat without a template: %v", err)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := r.GenerationCheck(ctx, []string{"x y z"}, []Method{Unsteered()}, GenerationOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// generate is an independent greedy generation of n tokens on a fresh
// context with m installed.
func (e env) generate(t *testing.T, m Method, prompt []llama.Token, n int) []llama.Token {
	t.Helper()
	r := e.runner(t)
	if err := r.install(m); err != nil {
		t.Fatal(err)
	}
	var out []llama.Token
	if _, err := r.Context().Generate(context.Background(), prompt, llama.GenerateOptions{MaxTokens: n},
		func(tok llama.Token, _ string) error { out = append(out, tok); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}
