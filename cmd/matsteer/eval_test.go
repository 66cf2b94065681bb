package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/eval"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// runCommand runs `matsteer COMMAND ARGS...` in-process and returns
// stdout, stderr and the error.
func runCommand(t *testing.T, command string, args ...string) (string, string, error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.RunContext(context.Background(), append([]string{"matsteer", command}, args...))
	return out.String(), errOut.String(), err
}

func evalCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return runCommand(t, "eval", args...)
}

// evalSteerFile is a gated + ungated steering file for a model of width
// nEmbd, steering l_out of block 1.
func evalSteerFile(nEmbd int) *steer.File {
	a := steer.Attribute{Name: "tone", Gated: true, Theta: make([]float64, nEmbd), GateW: make([]float64, nEmbd), GateB: 0.2}
	b := steer.Attribute{Name: "style", Gated: false, Theta: make([]float64, nEmbd)}
	for i := 0; i < nEmbd; i++ {
		a.Theta[i] = 2 * math.Sin(float64(i))
		a.GateW[i] = 0.05 * math.Cos(float64(3*i))
		b.Theta[i] = math.Cos(float64(2 * i))
	}
	return &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: 1, NEmbd: nEmbd, ModelArch: "llama",
		Method: steer.MethodMATSteer, NormPreserve: true, Attributes: []steer.Attribute{a, b},
		Training: map[string]string{"sigma": "median", "sigma_values": "3.5"}}
}

// evalFixture writes a random model, a steering file for it, one for a
// wider model, a tiny TruthfulQA-style mc_task.json and a neutral text file.
type evalFixture struct {
	dir, model, steerFile, wrongSteer, data, text string
}

func newEvalFixture(t *testing.T) evalFixture {
	t.Helper()
	dir := t.TempDir()
	f := evalFixture{dir: dir, model: filepath.Join(dir, "tiny.gguf"), steerFile: filepath.Join(dir, "s.gguf"),
		wrongSteer: filepath.Join(dir, "wide.gguf"), data: filepath.Join(dir, "mc_task.json"), text: filepath.Join(dir, "neutral.txt")}
	m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SaveToFile(f.model); err != nil {
		t.Fatal(err)
	}
	if err := evalSteerFile(m.NEmbd()).WriteFile(f.steerFile); err != nil {
		t.Fatal(err)
	}
	if err := evalSteerFile(2 * m.NEmbd()).WriteFile(f.wrongSteer); err != nil {
		t.Fatal(err)
	}
	type q struct {
		Question string         `json:"question"`
		MC1      map[string]int `json:"mc1_targets"`
		MC2      map[string]int `json:"mc2_targets"`
	}
	qs := []q{
		{"Which way does a dropped pen fall?", map[string]int{"Down.": 1, "Up.": 0, "Sideways.": 0}, map[string]int{"Down.": 1, "Towards the floor.": 1, "Up.": 0}},
		{"Is ice colder than steam?", map[string]int{"Yes.": 1, "No.": 0}, map[string]int{"Yes.": 1, "Ice is colder.": 1, "No.": 0, "They are equal.": 0}},
		{"How many days has a week?", map[string]int{"Seven.": 1, "Five.": 0, "Nine.": 0}, map[string]int{"Seven.": 1, "Five.": 0}},
		{"What do bees make?", map[string]int{"Honey.": 1, "Milk.": 0}, map[string]int{"Honey.": 1, "Wax and honey.": 1, "Milk.": 0}},
	}
	data, _ := json.Marshal(qs)
	if err := os.WriteFile(f.data, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.text, []byte("A quiet street at dawn.\n\nThe shop sells bread and tea.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f evalFixture) args(extra ...string) []string {
	return append([]string{"--model", f.model, "--ctx", "256", "--threads", "2"}, extra...)
}

func TestEvalCLI(t *testing.T) {
	f := newEvalFixture(t)
	out := filepath.Join(f.dir, "r.json")
	png := filepath.Join(f.dir, "c.png")
	stdout, stderr, err := evalCLI(t, f.args("--task", "truthfulqa", "--data", f.data, "--split", "all",
		"--steer", f.steerFile, "--strength", "tone=0.5", "--alpha", "0,1", "--out", out, "--plot", png, "--per-item",
		"--kl-text", f.text, "--gates")...)
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr)
	}
	for _, want := range []string{"truthfulqa (all split, 4 items)", "mc2", "none", "s@0", "s@1", "retention", "gates on"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "eval truthfulqa") {
		t.Errorf("no progress bar on stderr: %q", stderr)
	}
	rep, err := eval.ReadReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.NItems != 4 || len(rep.Methods) != 3 || rep.Methods[0].Name != "none" || rep.Model.NLayer != 4 {
		t.Fatalf("report: %+v", rep)
	}
	s0, s1 := rep.Methods[1], rep.Methods[2]
	if s1.Steering == nil || s1.Steering.Path != f.steerFile || s1.Steering.Layer != 1 || s1.Steering.Site != "l_out" ||
		s1.Steering.Sigma != "median" || s1.Steering.Strengths["tone"] != 0.5 || s1.Steering.Strengths["style"] != 1 || s1.Steering.Global != 1 {
		t.Errorf("steering info: %+v", s1.Steering)
	}
	// α = 0 is the unsteered model, bit for bit; α = 1 differs.
	differs := false
	for i, it := range rep.Methods[0].Items {
		if len(it.Choices) == 0 {
			t.Fatalf("per-item scores missing: %+v", it)
		}
		for k, c := range it.Choices {
			if s0.Items[i].Choices[k] != c {
				t.Errorf("item %d choice %d: alpha 0 %v, none %v", i, k, s0.Items[i].Choices[k], c)
			}
			differs = differs || s1.Items[i].Choices[k] != c
		}
	}
	if !differs {
		t.Error("steering changed no score")
	}
	if rep.Retention == nil || len(rep.Retention.Results) != 3 || rep.Retention.Results[2].KL <= 0 || rep.Retention.Results[1].KL != 0 {
		t.Errorf("retention: %+v", rep.Retention)
	}
	if rep.Gates == nil || len(rep.Gates.Results) != 2 || len(rep.Gates.Results[0].Stats) != 4 {
		t.Errorf("gates: %+v", rep.Gates)
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Errorf("plot: %v", err)
	}

	// Without --per-item the JSON has no item scores; neutral task runs retention only.
	stdout, stderr, err = evalCLI(t, f.args("--task", "neutral", "--kl-text", f.text, "--steer", f.steerFile, "--out", out)...)
	if err != nil {
		t.Fatalf("neutral: %v\n%s", err, stderr)
	}
	rep, err = eval.ReadReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Methods) != 0 || rep.Retention == nil || rep.Retention.Results[1].Texts != 2 || !strings.Contains(stdout, "retention") {
		t.Errorf("neutral report: %+v\n%s", rep, stdout)
	}
}

func TestEvalCLIErrors(t *testing.T) {
	f := newEvalFixture(t)
	m, err := llama.LoadModel(f.model, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := hooks.Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	_, wrongErr := intervene.Load(f.wrongSteer, steer.ApplyOptions{Global: 1, Strengths: map[string]float64{}}, m, cat)
	m.Close()
	if wrongErr == nil {
		t.Fatal("steering.Load accepted a file for another model")
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown task", []string{"--task", "poetry", "--data", f.data}, `--task "poetry"`},
		{"missing data", []string{"--task", "bbq", "--data", filepath.Join(f.dir, "nope")}, "nope: no such file"},
		{"no data", []string{"--task", "toxigen"}, "needs --data"},
		{"wrong model", []string{"--task", "truthfulqa", "--data", f.data, "--split", "all", "--steer", f.wrongSteer}, wrongErr.Error()},
		{"unknown attribute", []string{"--task", "truthfulqa", "--data", f.data, "--split", "all", "--steer", f.steerFile, "--strength", "humour=2"}, "humour"},
		{"neutral without texts", []string{"--task", "neutral"}, "--kl-text"},
		{"bad split", []string{"--task", "truthfulqa", "--data", f.data, "--split", "holdout"}, "holdout"},
		{"gates without steering", []string{"--task", "truthfulqa", "--data", f.data, "--split", "all", "--gates"}, "at least one --steer"},
	}
	for _, c := range cases {
		_, _, err := evalCLI(t, f.args(c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
}
