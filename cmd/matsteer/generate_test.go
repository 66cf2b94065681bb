package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/internal/testenv"
)

// `matsteer generate` (one stream through the batched engine) prints the
// same greedy text as llama.cpp's own llama-completion, built from the same
// source, with the same thread count.
func TestGenerateMatchesLlamaCompletion(t *testing.T) {
	model := testenv.DefaultModel(t)
	tool := testenv.LlamaBin(t, "llama-completion")
	for _, prompt := range []string{"The capital of France is", "def fibonacci(n):"} {
		want, err := exec.Command(tool, "-m", model, "-n", "32", "-t", "2", "--temp", "0", "-no-cnv",
			"--no-display-prompt", "--simple-io", "-p", prompt).Output()
		if err != nil {
			t.Fatalf("llama-completion: %v", err)
		}
		got, _, err := runCLI(t, "generate", "--model", model, "-t", "2", "-q", "-n", "32", "--chat=false", "--prompt", prompt)
		if err != nil {
			t.Fatal(err)
		}
		// llama-completion ends with " [end of text]\n" when the model
		// ended the text, then "\n\n"; generate ends with one "\n".
		w := strings.TrimSuffix(strings.TrimSuffix(string(want), "\n\n"), " [end of text]\n")
		if g := strings.TrimSuffix(got, "\n"); g != w || g == "" {
			t.Errorf("prompt %q:\n generate:         %q\n llama-completion: %q", prompt, g, w)
		}
	}
}
