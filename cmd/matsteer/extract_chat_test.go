package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/llama"
)

// openActs opens an activation file for the test.
func openActs(t *testing.T, path string) *acts.File {
	t.Helper()
	af, err := acts.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { af.Close() })
	return af
}

// extract --chat formats prompts as user turns; --chat-replies extracts
// the unsteered model's own replies, which train --neutral-acts takes.
func TestExtractChat(t *testing.T) {
	f := newEvalFixture(t)
	dir := f.dir
	data := filepath.Join(dir, "tone.jsonl")
	if err := os.WriteFile(data, []byte(`{"attribute": "tone", "label": 1, "prompt": "Say hello.", "response": " Hello there, friend."}
{"attribute": "tone", "label": 0, "prompt": "Say hello.", "response": " Go away."}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	extractTo := func(out string, args ...string) (string, error) {
		_, stderr, err := runCommand(t, "extract", append([]string{"-m", f.model, "--layer", "1", "--out", out}, args...)...)
		return stderr, err
	}
	rows := map[string]int{}
	for _, tc := range []struct{ name, tokens, chat string }{
		{"plain-all", "all", ""}, {"chat-all", "all", "--chat"}, {"plain-resp", "response", ""}, {"chat-resp", "response", "--chat"},
	} {
		out := filepath.Join(dir, tc.name+".safetensors")
		args := []string{"--data", data, "--tokens", tc.tokens}
		if tc.chat != "" {
			args = append(args, tc.chat)
		}
		if stderr, err := extractTo(out, args...); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, stderr)
		}
		af := openActs(t, out)
		rows[tc.name] = af.Len()
		if got := af.Meta.Extra["chat"]; (got != "") != (tc.chat != "") {
			t.Errorf("%s: chat metadata %q", tc.name, got)
		}
	}
	// The same responses, more prompt rows: the turn's text and the
	// assistant's header (control tokens and role names are dropped).
	if rows["chat-resp"] != rows["plain-resp"] || rows["chat-all"] <= rows["plain-all"] {
		t.Errorf("rows %v: want the same response rows and more rows in all with --chat", rows)
	}

	neutral := filepath.Join(dir, "neutral-chat.safetensors")
	stderr, err := extractTo(neutral, "--chat-replies", f.text, "--reply-tokens", "5", "--tokens", "response")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	af := openActs(t, neutral)
	if n := af.Len(); n < 2 || n > 2*5+2 || len(af.Meta.Attributes) != 1 || af.Meta.Attributes[0] != "neutral" ||
		!strings.Contains(af.Meta.Source, "chat replies") {
		t.Errorf("chat replies: %d rows, attributes %v, source %q", n, af.Meta.Attributes, af.Meta.Source)
	}
	// The replies as neutral rows of a gated training run.
	_, stderr, err = runCommand(t, "train", "--acts", filepath.Join(dir, "plain-all.safetensors"), "--neutral-acts", neutral,
		"--lambda-neutral", "1", "--epochs", "2", "--out", filepath.Join(dir, "s-neutral.gguf"), "-q")
	if err != nil {
		t.Fatalf("train --neutral-acts: %v\n%s", err, stderr)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "needs --data FILE (labelled texts) or --chat-replies FILE"},
		{[]string{"--data", data, "--chat-replies", f.text}, "do not mix"},
		{[]string{"--data", data, "--reply-tokens", "5"}, "--reply-tokens needs --chat-replies"},
		{[]string{"--chat-replies", f.text, "--reply-tokens", "0"}, "--reply-tokens 0"},
		{[]string{"--chat-replies", filepath.Join(dir, "missing.txt")}, "missing.txt"},
		{[]string{"--chat-replies", dir}, "--chat-replies"},
		{[]string{"--chat-replies", "/dev/null"}, "--chat-replies"},
		{[]string{"--chat-replies", empty}, "no texts"},
		{[]string{"--chat-replies", f.text, "--reply-tokens", "100000"}, "--reply-tokens 100000"},
		{[]string{"--chat-replies", f.text, "--reply-tokens", "4000"}, "does not fit the context"},
	} {
		if _, err := extractTo(filepath.Join(dir, "bad.safetensors"), tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
	cfg := llama.DefaultRandomModelConfig()
	cfg.ChatTemplate = ""
	bare := randomModelFileWith(t, cfg)
	if _, _, err := runCommand(t, "extract", "-m", bare, "--layer", "1", "--chat", "--data", data, "--out", filepath.Join(dir, "bare.safetensors")); err == nil || !strings.Contains(err.Error(), "no chat template") {
		t.Errorf("--chat on a model without a template: %v", err)
	}
	if _, err := extractTo(f.text, "--chat-replies", f.text); err == nil {
		t.Error("--out over the --chat-replies input was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.safetensors")); !os.IsNotExist(err) {
		t.Errorf("a failed extraction left its output: %v", err)
	}
}
