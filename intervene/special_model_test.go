package intervene

import (
	"strings"
	"testing"

	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/llama"
)

// On SmolLM2 (ChatML), the chat template's markers and role headers are
// skipped and the message text is not.
func TestScaffoldOnDefaultModelChat(t *testing.T) {
	m, err := llama.LoadModel(testenv.DefaultModel(t), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s := SpecialTokensOf(m)
	text, err := m.ApplyChatTemplate("", []llama.ChatMessage{
		{Role: "user", Content: "Tell me about the weather today."},
		{Role: "assistant", Content: "It is sunny and warm."},
		{Role: "user", Content: "And tomorrow?"},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := m.Tokenize(text, true, true)
	if err != nil {
		t.Fatal(err)
	}
	var sc Scaffold
	var kept, skipped strings.Builder
	for pos, tok := range toks {
		if sc.Skip(s, tok, pos) {
			skipped.WriteString(m.TokenPiece(tok))
		} else {
			kept.WriteString(m.TokenPiece(tok))
		}
	}
	for _, marker := range []string{"<|im_start|>", "<|im_end|>"} {
		if !s.IsControl(mustOne(t, m, marker)) {
			t.Errorf("%s is not a control token", marker)
		}
	}
	if strings.Contains(kept.String(), "<|im_") || strings.Contains(kept.String(), "user") || strings.Contains(kept.String(), "assistant") {
		t.Errorf("scaffolding kept: %q", kept.String())
	}
	for _, content := range []string{"Tell me about the weather today.", "It is sunny and warm.", "And tomorrow?"} {
		if !strings.Contains(kept.String(), content) {
			t.Errorf("message text %q not kept: kept %q", content, kept.String())
		}
		if strings.Contains(skipped.String(), content) {
			t.Errorf("message text %q skipped", content)
		}
	}
	// Plain text (a dataset prompt) loses nothing but a BOS.
	plain, err := m.Tokenize("Q: What is the capital of France?\nA: Paris", true, false)
	if err != nil {
		t.Fatal(err)
	}
	sc = Scaffold{}
	n := 0
	for pos, tok := range plain {
		if sc.Skip(s, tok, pos) {
			n++
			if !s.IsControl(tok) {
				t.Errorf("plain text: token %q at %d skipped", m.TokenPiece(tok), pos)
			}
		}
	}
	if n > 1 {
		t.Errorf("plain text: %d tokens skipped", n)
	}
}

func mustOne(t *testing.T, m *llama.Model, special string) llama.Token {
	t.Helper()
	toks, err := m.Tokenize(special, false, true)
	if err != nil || len(toks) != 1 {
		t.Fatalf("%s: tokens %v, %v", special, toks, err)
	}
	return toks[0]
}
