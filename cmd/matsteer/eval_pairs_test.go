package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/eval"
	"github.com/matsteer/matsteer/internal/testenv"
)

// writePairs writes a generic JSONL file with n prompts, each with one
// desired and one undesired response, for attributes "tone" and "style".
func writePairs(t *testing.T, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		attr := []string{"tone", "style"}[i%2]
		fmt.Fprintf(&b, `{"attribute": %q, "label": 1, "prompt": "Q: How is day %d?\nA:", "response": " Lovely, thank you."}`+"\n", attr, i)
		fmt.Fprintf(&b, `{"attribute": %q, "label": 0, "prompt": "Q: How is day %d?\nA:", "response": " awful lol"}`+"\n", attr, i)
	}
	p := filepath.Join(dir, "my.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func checkStats(t *testing.T, rep *eval.Report) {
	t.Helper()
	for _, m := range rep.Methods {
		for _, name := range eval.MetricNames(rep.Task) {
			v, ok := m.Metric(name)
			iv, ok2 := m.Interval(name)
			if !ok || !ok2 || !(iv.Lo <= v && v <= iv.Hi) || math.IsNaN(v) {
				t.Errorf("%s %s = %v (%v), interval %+v (%v)", m.Name, name, v, ok, iv, ok2)
			}
		}
	}
	for j, m := range rep.Methods {
		if len(m.Comparisons) != j {
			t.Errorf("%s: %d comparisons, want %d", m.Name, len(m.Comparisons), j)
		}
		for _, c := range m.Comparisons {
			for name, d := range c.Metrics {
				if !(d.P > 0 && d.P <= 1) || !(d.CI.Lo <= d.Diff+1e-12 && d.Diff <= d.CI.Hi+1e-12) {
					t.Errorf("%s vs %s %s: %+v", m.Name, c.Against, name, d)
				}
			}
		}
	}
	if rep.Stats == nil || rep.Stats.Resamples == 0 || rep.Statistics == "" {
		t.Errorf("report has no statistics settings: %+v", rep.Stats)
	}
}

func TestEvalPairsCLI(t *testing.T) {
	f := newEvalFixture(t)
	data := writePairs(t, f.dir, 12)
	out := filepath.Join(f.dir, "pairs.json")
	stdout, stderr, err := evalCLI(t, f.args("--task", "pairs", "--data", data, "--steer", f.steerFile,
		"--gates", "--kl-text", f.text, "--resamples", "300", "--out", out)...)
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr)
	}
	for _, want := range []string{"pairs (all split, 12 items)", "margin", "paired tests", "p=", "gates on"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	rep, err := eval.ReadReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Task != "pairs" || rep.Split != "all" || rep.NItems != 12 || len(rep.Methods) != 2 || rep.Retention == nil {
		t.Fatalf("report %+v", rep)
	}
	checkStats(t, rep)
	// The gate texts are the pairs' responses, under their own attributes.
	attrs := map[string]bool{}
	for _, g := range rep.Gates.Results {
		for _, s := range g.Stats {
			attrs[s.DataAttribute] = true
		}
	}
	if !attrs["tone"] || !attrs["style"] {
		t.Errorf("gate statistics over data attributes %v, want tone and style", attrs)
	}
	// The same seed gives the same statistics; another seed other ones.
	out2 := filepath.Join(f.dir, "pairs2.json")
	if _, stderr, err := evalCLI(t, f.args("--task", "pairs", "--data", data, "--steer", f.steerFile, "--resamples", "300", "--out", out2)...); err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr)
	}
	rep2, err := eval.ReadReport(out2)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Methods[1].Intervals[eval.MetricMargin] != rep.Methods[1].Intervals[eval.MetricMargin] ||
		rep2.Methods[1].Comparisons[0].Metrics[eval.MetricMargin] != rep.Methods[1].Comparisons[0].Metrics[eval.MetricMargin] {
		t.Error("same seed, different statistics")
	}

	// --split keeps a part of the split extract makes (80/20 by example id):
	// with one id per line a pair needs both lines in the part.
	if _, _, err := evalCLI(t, f.args("--task", "pairs", "--data", data, "--split", "test")...); err == nil || !strings.Contains(err.Error(), "test part") {
		t.Errorf("--split test of JSONL: %v", err)
	}
}

// TestEvalGateDataWhole: --gate-data is used whole unless --split is given
// (a generic JSONL file has no test part, which used to fail with "no
// examples").
func TestEvalGateDataWhole(t *testing.T) {
	f := newEvalFixture(t)
	data := writePairs(t, f.dir, 6)
	out := filepath.Join(f.dir, "g.json")
	if _, stderr, err := evalCLI(t, f.args("--task", "neutral", "--gates", "--gate-data", data, "--steer", f.steerFile, "--out", out)...); err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr)
	}
	rep, err := eval.ReadReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Gates == nil || rep.Gates.Split != "all" {
		t.Fatalf("gates %+v", rep.Gates)
	}
	texts := 0
	for _, s := range rep.Gates.Results[0].Stats {
		if s.Attribute == "tone" {
			texts += s.Texts
		}
	}
	if texts != 12 {
		t.Errorf("%d gate texts for steering attribute tone, want all 12", texts)
	}
	if _, _, err := evalCLI(t, f.args("--task", "neutral", "--gates", "--gate-data", data, "--split", "test", "--steer", f.steerFile)...); err == nil {
		t.Error("--split test of a JSONL file (no test part) accepted")
	}
}

func TestEvalStatsFlags(t *testing.T) {
	f := newEvalFixture(t)
	data := writePairs(t, f.dir, 4)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--stats-seed", "0"}, "--stats-seed"},
		{[]string{"--resamples", "5"}, "--resamples"},
		{[]string{"--split", "holdout"}, "holdout"},
	} {
		_, _, err := evalCLI(t, f.args(append([]string{"--task", "pairs", "--data", data}, c.args...)...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
	bad := filepath.Join(f.dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"attribute": "a", "label": 1, "prompt": "P", "response": " x"}`+"\n"+`{"attribute": "a", "label": 0, "text": "P y"}`+"\n"), 0o644)
	if _, _, err := evalCLI(t, f.args("--task", "pairs", "--data", bad)...); err == nil || !strings.Contains(err.Error(), "bad.jsonl") || !strings.Contains(err.Error(), "no prompt has both") {
		t.Errorf("no pairs: %v", err)
	}
}

// TestEvalPairsDemoData evaluates the demo data on the default model, with
// a steering file of fixed random directions at layer 10.
func TestEvalPairsDemoData(t *testing.T) {
	model := testenv.DefaultModel(t)
	dir := t.TempDir()
	data := filepath.Join(testenv.RepoRoot(), "demo", "data", "demo.jsonl")
	sf := evalSteerFile(576)
	sf.Layer = 10
	sf.Attributes[0].Name, sf.Attributes[1].Name = "positivity", "formality"
	path := filepath.Join(dir, "demo.gguf")
	if err := sf.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "demo.json")
	stdout, stderr, err := evalCLI(t, "--model", model, "--threads", "2", "--task", "pairs", "--data", data, "--limit", "6",
		"--steer", path+"@0.5", "--resamples", "500", "--out", out)
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr)
	}
	rep, err := eval.ReadReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.NItems != 6 || len(rep.Methods) != 2 || rep.Methods[1].Steering.Global != 0.5 {
		t.Fatalf("report %+v\n%s", rep, stdout)
	}
	checkStats(t, rep)
	// The margins are per-token log-probability gaps of a few tenths of a
	// nat (the demo's answers differ in content, not length).
	none := rep.Methods[0]
	if m := none.Metrics[eval.MetricMargin]; math.Abs(m) > 5 || m == 0 {
		t.Errorf("margin %g nats per token, implausible", m)
	}
	if !strings.Contains(stdout, "paired tests") {
		t.Errorf("no paired tests in the output:\n%s", stdout)
	}
}
