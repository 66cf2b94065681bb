package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/matsteer/matsteer/llama"
)

// randomModelFile saves the tiny random test model (with its chatml
// template) to a temp GGUF file.
func randomModelFile(t *testing.T) string {
	t.Helper()
	return randomModelFileWith(t, llama.DefaultRandomModelConfig())
}

// randomModelFileWith saves a tiny random model built from cfg.
func randomModelFileWith(t *testing.T, cfg llama.RandomModelConfig) string {
	t.Helper()
	m, err := llama.NewRandomModel(cfg, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := m.SaveToFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGenerateIsDeterministic(t *testing.T) {
	model := randomModelFile(t)
	a, _, err := runCLI(t, "generate", "--model", model, "-t", "2", "-q", "-n", "8", "--prompt", "the cat")
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := runCLI(t, "generate", "--model", model, "-t", "2", "-q", "-n", "8", "--prompt", "the cat")
	if a != b || a == "" {
		t.Fatalf("greedy runs differ or are empty: %q vs %q", a, b)
	}
	// The saved model keeps its chat template; one without must say so.
	if out, _, err := runCLI(t, "generate", "--model", model, "-t", "2", "-q", "-n", "8", "--chat", "--prompt", "the cat"); err != nil || out == "" {
		t.Fatalf("--chat with the saved template: %q, %v", out, err)
	}
	cfg := llama.DefaultRandomModelConfig()
	cfg.ChatTemplate = ""
	bare := randomModelFileWith(t, cfg)
	if _, _, err := runCLI(t, "generate", "--model", bare, "-t", "2", "-q", "-n", "8", "--chat", "--prompt", "the cat"); err == nil || !strings.Contains(err.Error(), "no chat template") {
		t.Fatalf("--chat without a template: %v", err)
	}
}

func TestGenerateErrors(t *testing.T) {
	model := randomModelFile(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"generate", "--model", filepath.Join(t.TempDir(), "none.gguf"), "--prompt", "x"}, "no such file"},
		{[]string{"generate", "--model", model, "--prompt", "x", "--temp", "-1"}, "--temp -1: out of range, want a number in [0, 100]"},
		{[]string{"generate", "--model", model, "--prompt", strings.Repeat("the cat ", 400), "--ctx", "256"}, "longer than the context"},
		{[]string{"generate", "--model", model, "--prompt", "x", "--explain"}, "need --steer"},
		{[]string{"generate", "--model", model, "--prompt", "x", "--steer", filepath.Join(t.TempDir(), "none.gguf")}, "no such file"},
	}
	for _, c := range cases {
		_, _, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want it to mention %q", c.args[:3], err, c.want)
		}
	}
}

func TestDefaultModelMissingIsHelpful(t *testing.T) {
	t.Setenv("MATSTEER_CACHE", t.TempDir())
	_, _, err := runCLI(t, "generate", "--prompt", "x")
	if err == nil || !strings.Contains(err.Error(), "matsteer model pull") {
		t.Fatalf("error %v", err)
	}
}

func TestModelInfoListsHookSites(t *testing.T) {
	out, _, err := runCLI(t, "model", "info", randomModelFile(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"matsteer-random-llama", "l_out[0..3]", "attn_out[0..3]", "chat template"} {
		if !strings.Contains(out, want) {
			t.Errorf("model info lacks %q:\n%s", want, out)
		}
	}
}

// The random model's byte-level vocabulary splits and breaks characters:
// generate's output must still be valid UTF-8 (a cut character at the end
// dropped, invalid bytes shown as U+FFFD), for every prompt tried.
func TestGenerateOutputIsValidUTF8(t *testing.T) {
	model := randomModelFile(t)
	invalidRaw := 0
	for i := 0; i < 12; i++ {
		out, _, err := runCLI(t, "generate", "--model", model, "-t", "2", "-q", "-n", fmt.Sprint(5+i), "--prompt", fmt.Sprintf("word %d é", i))
		if err != nil {
			t.Fatal(err)
		}
		if !utf8.ValidString(out) {
			t.Fatalf("prompt %d: output %q is not valid UTF-8", i, out)
		}
		if strings.ContainsRune(out, utf8.RuneError) {
			invalidRaw++
		}
	}
	if invalidRaw == 0 {
		t.Log("no generation produced invalid bytes; the check was weak this time")
	}
}

// The README tells users to run `matsteer help COMMAND`.
func TestHelpCommand(t *testing.T) {
	out, _, err := runCLI(t, "help", "generate")
	if err != nil || !strings.Contains(out, "matsteer generate") {
		t.Fatalf("help generate: %v\n%s", err, out)
	}
}
