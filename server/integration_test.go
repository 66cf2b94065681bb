package server

import (
	"context"
	"math"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// TestIntegrationDefaultModel serves SmolLM2: unsteered chat equals plain
// llama.cpp generation, streaming agrees, and steering changes the text.
func TestIntegrationDefaultModel(t *testing.T) {
	path := testenv.DefaultModel(t)
	m, err := llama.LoadModel(path, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cat, err := hooks.Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Model: m, Catalog: cat, Parallel: 2, NCtx: 512, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d := m.NEmbd()
	a := steer.Attribute{Name: "shift", Gated: true, Theta: make([]float64, d), GateW: make([]float64, d), GateB: 2}
	for i := range d {
		a.Theta[i] = 4 * math.Sin(float64(7*i))
	}
	sp := filepath.Join(t.TempDir(), "shift.gguf")
	f := &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: 14, NEmbd: d, ModelArch: m.Arch(),
		Method: steer.MethodMATSteer, NormPreserve: true, Attributes: []steer.Attribute{a}}
	if err := f.WriteFile(sp); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.LoadSteering("shift", sp, false); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0))
	ctx := context.Background()
	const user = "What is the capital of France?"

	text, err := m.ApplyChatTemplate("", []llama.ChatMessage{{Role: "user", Content: user}}, true)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := m.Tokenize(text, true, true)
	if err != nil {
		t.Fatal(err)
	}
	c, err := llama.NewContext(m, llama.ContextParams{NCtx: 512, Threads: 1, ThreadsBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var want strings.Builder
	if _, err := c.Generate(ctx, toks, llama.GenerateOptions{MaxTokens: 16}, func(_ llama.Token, p string) error {
		want.WriteString(p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	p := chatParams(user, 16)
	resp, err := client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Choices[0].Message.Content
	if got != want.String() || !strings.Contains(got, "Paris") {
		t.Fatalf("server %q, llama.cpp %q", got, want.String())
	}
	stream, _, _, err := streamChat(ctx, client, p)
	if err != nil || stream != got {
		t.Fatalf("stream %q (%v), non-stream %q", stream, err, got)
	}
	steered, err := client.Chat.Completions.New(ctx, p, steerOpt("shift", 10, nil))
	if err != nil {
		t.Fatal(err)
	}
	if steered.Choices[0].Message.Content == got {
		t.Fatalf("steering changed nothing: %q", got)
	}
	t.Logf("unsteered: %q\nsteered:   %q", got, steered.Choices[0].Message.Content)

	// ignore_eos (llama.cpp's extension): a reply that ends by itself runs
	// on to max_tokens.
	short := chatParams("Say hi.", 100)
	ended, err := client.Chat.Completions.New(ctx, short)
	if err != nil {
		t.Fatal(err)
	}
	if ended.Choices[0].FinishReason != "stop" || ended.Usage.CompletionTokens >= 100 {
		t.Fatalf("the reply to %q did not end by itself (%s, %d tokens); the check needs one that does", "Say hi.", ended.Choices[0].FinishReason, ended.Usage.CompletionTokens)
	}
	long, err := client.Chat.Completions.New(ctx, short, option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatal(err)
	}
	if long.Choices[0].FinishReason != "length" || long.Usage.CompletionTokens != 100 {
		t.Fatalf("ignore_eos: %s after %d tokens, want length after 100", long.Choices[0].FinishReason, long.Usage.CompletionTokens)
	}
}
