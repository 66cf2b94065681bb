package llama_test

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/llama"
)

func loadDefault(t *testing.T) *llama.Model {
	t.Helper()
	m, err := llama.LoadModel(testenv.DefaultModel(t), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// Greedy generation through the binding is token-for-token identical to
// llama.cpp's own llama-completion built from the same source (with the
// same thread count: llama-simple cannot set one, and its fixed 4 threads
// crawl on a 2-core machine).
func TestGreedyMatchesLlamaCompletion(t *testing.T) {
	m := loadDefault(t)
	tool := testenv.LlamaBin(t, "llama-completion")
	const nPredict = 32
	prompts := []string{"The capital of France is", "def fibonacci(n):", "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n"}
	for _, prompt := range prompts {
		out, err := exec.Command(tool, "-m", m.Path(), "-n", fmt.Sprint(nPredict), "-t", "2", "--temp", "0", "-no-cnv",
			"--no-display-prompt", "--simple-io", "-p", prompt).Output()
		if err != nil {
			t.Fatalf("llama-completion: %v", err)
		}
		toks, err := m.Tokenize(prompt, true, true)
		if err != nil {
			t.Fatal(err)
		}
		ctx, err := llama.NewContext(m, llama.ContextParams{NCtx: 256, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		var gen []llama.Token
		st, err := ctx.Generate(context.Background(), toks, llama.GenerateOptions{MaxTokens: nPredict}, func(tok llama.Token, piece string) error {
			gen = append(gen, tok)
			sb.WriteString(piece)
			return nil
		})
		ctx.Close()
		if err != nil {
			t.Fatal(err)
		}
		// llama-completion prints the generated text, " [end of text]\n"
		// when the model ended it, then "\n\n".
		if st.StopReason == "eog" {
			sb.WriteString(" [end of text]\n")
		}
		sb.WriteString("\n\n")
		if got, want := sb.String(), string(out); got != want {
			t.Errorf("prompt %q:\n ours:             %q\n llama-completion: %q", prompt, got, want)
		}
		if len(gen) == 0 {
			t.Errorf("prompt %q: nothing generated", prompt)
		}
	}
}

// The continuation log-prob equals the sum of per-token log-softmax values
// computed from the logits of a separate token-by-token run.
func TestContinuationLogProbSmolLM2(t *testing.T) {
	m := loadDefault(t)
	prefix, _ := m.Tokenize("Q: What is the capital of France?\nA:", true, false)
	cont, _ := m.Tokenize(" The capital of France is Paris.", false, false)
	ctx, err := llama.NewContext(m, llama.ContextParams{NCtx: 256, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	got, err := ctx.ContinuationLogProb(context.Background(), prefix, cont)
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]llama.Token{}, prefix...), cont...)
	b := llama.NewBatch(1, 1)
	defer b.Close()
	ctx.ClearMemory()
	var want float64
	var lsm []float64
	for i := 0; i < len(all)-1; i++ {
		b.Clear()
		b.Add(all[i], i, []int{0}, true)
		if err := ctx.Decode(b); err != nil {
			t.Fatal(err)
		}
		if i >= len(prefix)-1 {
			lg, _ := ctx.Logits(-1)
			lsm = llama.LogSoftmax(lg, lsm)
			k := i - (len(prefix) - 1)
			if d := math.Abs(lsm[all[i+1]] - got.PerToken[k]); d > 1e-3 {
				t.Errorf("token %d: per-token log-prob %v vs %v", k, got.PerToken[k], lsm[all[i+1]])
			}
			want += lsm[all[i+1]]
		}
	}
	if math.Abs(got.Sum-want) > 1e-3 {
		t.Fatalf("sum %v, token-by-token %v", got.Sum, want)
	}
	t.Logf("log p(continuation) = %.4f over %d tokens", got.Sum, len(cont))
}

// IgnoreEOG keeps generating past the point where greedy decoding ends.
func TestIgnoreEOGRunsToTheLimit(t *testing.T) {
	m := loadDefault(t)
	if len(m.EOGTokens()) == 0 {
		t.Fatal("the default model lists no end-of-generation token")
	}
	toks, err := m.Tokenize("<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n", true, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := llama.NewContext(m, llama.ContextParams{NCtx: 256, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	run := func(ignore bool) llama.GenerateStats {
		st, err := ctx.Generate(context.Background(), toks, llama.GenerateOptions{MaxTokens: 120, Sampler: llama.SamplerParams{IgnoreEOG: ignore}},
			func(tok llama.Token, _ string) error {
				if m.IsEOG(tok) {
					t.Errorf("end-of-generation token %d passed on", tok)
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := run(false); st.StopReason != "eog" {
		t.Fatalf("greedy reply did not end by itself (%s after %d tokens); the test needs a prompt that does", st.StopReason, st.GeneratedTokens)
	}
	if st := run(true); st.StopReason != "max_tokens" || st.GeneratedTokens != 120 {
		t.Fatalf("IgnoreEOG: %s after %d tokens, want max_tokens after 120", st.StopReason, st.GeneratedTokens)
	}
}
