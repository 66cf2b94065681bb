package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/eval"
)

// neutralEval runs eval --task neutral with args on f's model, unsteered
// and with f's steering file at α 0 and 3, and returns the report written
// and the text printed.
func neutralEval(t *testing.T, f evalFixture, args ...string) (*eval.Report, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "neutral.json")
	stdout, stderr, err := evalCLI(t, f.args(append([]string{"--task", "neutral", "--steer", f.steerFile, "--alpha", "0,3", "--out", out}, args...)...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	rep, err := eval.ReadReport(out)
	if err != nil {
		t.Fatal(err)
	}
	return rep, stdout
}

// eval --gen-prompts runs the generation check for every condition and
// writes it to the report; --gen-limit and --gen-tokens bound it.
func TestEvalGenerationCheckCLI(t *testing.T) {
	f := newEvalFixture(t)
	rep, stdout := neutralEval(t, f, "--gen-prompts", f.text, "--gen-tokens", "5", "--gen-limit", "1")
	g := rep.Generation
	if g == nil || len(g.Results) != 3 || g.MaxTokens != 5 || g.Source != f.text {
		t.Fatalf("generation report %+v", g)
	}
	for _, r := range g.Results {
		if len(r.Samples) != 1 || r.Samples[0].Prompt != "A quiet street at dawn." || r.Samples[0].Tokens > 5 {
			t.Errorf("%s: samples %+v", r.Name, r.Samples)
		}
	}
	// α = 0 is no steering: the same text as none.
	if g.Results[1].Samples[0].Text != g.Results[0].Samples[0].Text {
		t.Errorf("α=0 %q, none %q", g.Results[1].Samples[0].Text, g.Results[0].Samples[0].Text)
	}
	if !strings.Contains(stdout, "generation check on") || !strings.Contains(stdout, "distinct-2") {
		t.Errorf("text report:\n%s", stdout)
	}
	if _, _, err := evalCLI(t, f.args("--task", "neutral", "--gen-prompts", filepath.Join(f.dir, "none.txt"))...); err == nil || !strings.Contains(err.Error(), "--gen-prompts") {
		t.Errorf("missing prompts file: %v", err)
	}
	// A prompt that cannot fit fails before the multiple-choice items run.
	_, stderr, err := evalCLI(t, f.args("--task", "truthfulqa", "--data", f.data, "--gen-prompts", f.text, "--gen-tokens", "4000")...)
	if err == nil || !strings.Contains(err.Error(), "does not fit the context") || strings.Contains(stderr, "truthfulqa") {
		t.Errorf("too long for the context: %v\n%s", err, stderr)
	}
	if _, _, err := evalCLI(t, f.args("--task", "neutral", "--gen-prompts", f.text, "--out", f.text)...); err == nil {
		t.Error("--out over the --gen-prompts input was accepted")
	}
}

// eval --kl-chat measures KL along the unsteered model's chat replies to
// the prompts, from their first token on.
func TestEvalChatRetentionCLI(t *testing.T) {
	f := newEvalFixture(t)
	rep, stdout := neutralEval(t, f, "--kl-chat", f.text, "--kl-chat-tokens", "6")
	cr := rep.ChatRetention
	if cr == nil || len(cr.Results) != 3 || cr.MaxTokens != 6 || cr.Source != f.text || rep.Retention != nil {
		t.Fatalf("chat retention report %+v", cr)
	}
	// Two prompts, at most 6 reply tokens each: every compared position
	// predicts a reply token.
	for _, r := range cr.Results {
		if r.Texts != 2 || r.Positions < 2 || r.Positions > 12 {
			t.Errorf("%s: %d replies, %d positions", r.Name, r.Texts, r.Positions)
		}
	}
	if cr.Results[1].KL != 0 || !(cr.Results[2].KL > 0) || cr.Results[2].KLMax < cr.Results[2].KL {
		t.Errorf("α=0 KL %g, α=3 KL %g max %g", cr.Results[1].KL, cr.Results[2].KL, cr.Results[2].KLMax)
	}
	if !strings.Contains(stdout, "KL on chat replies to") {
		t.Errorf("text report:\n%s", stdout)
	}
	empty := filepath.Join(f.dir, "empty.txt")
	if err := os.WriteFile(empty, []byte("\n  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--task", "neutral", "--kl-chat", filepath.Join(f.dir, "none.txt")}, "--kl-chat"},
		{[]string{"--task", "neutral", "--kl-chat", f.text, "--kl-chat-tokens", "300"}, "--kl-chat-tokens 300 leaves no room"},
		{[]string{"--task", "neutral", "--kl-chat", f.text, "--kl-chat-tokens", "-1"}, "--kl-chat-tokens -1"},
		{[]string{"--task", "neutral", "--kl-chat", f.text, "--out", f.text}, "neutral.txt"},
		{[]string{"--task", "neutral", "--kl-chat", f.dir}, "--kl-chat"},
		{[]string{"--task", "neutral", "--kl-chat", "/dev/null"}, "--kl-chat"},
		{[]string{"--task", "neutral", "--kl-chat", empty}, "no texts"},
	} {
		if _, _, err := evalCLI(t, f.args(tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}
