package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/gguf"
	"github.com/matsteer/matsteer/steer"
)

// writeActs writes a synthetic activation file: per attribute, nPos
// positives N(0, I) and nNeg negatives shifted by −3 on dimension t.
func writeActs(t *testing.T, path string, meta acts.Meta, nPos, nNeg int, seed uint64) {
	t.Helper()
	w, err := acts.Create(path, meta)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	d := meta.NEmbd
	id := int64(0)
	for ai := range meta.Attributes {
		for _, label := range []int8{1, 0} {
			n := nPos
			if label == 0 {
				n = nNeg
			}
			vecs := make([]float32, n*d)
			rows := make([]acts.Row, n)
			for i := 0; i < n; i++ {
				for j := 0; j < d; j++ {
					v := rng.NormFloat64()
					if label == 0 && j == ai {
						v -= 3
					}
					vecs[i*d+j] = float32(v)
				}
				rows[i] = acts.Row{Attribute: int32(ai), Label: label, SampleID: id, Position: 0}
				id++
			}
			if err := w.Append(vecs, rows); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func testMeta(attrs ...string) acts.Meta {
	return acts.Meta{ModelArch: "llama", ModelName: "tiny", NEmbd: 6, Layer: 3, Site: "l_out", TokenMode: acts.TokenAll,
		Attributes: attrs, Extra: map[string]string{"model_sha256": "feed"}}
}

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.RunContext(context.Background(), append([]string{"matsteer"}, args...))
	return out.String(), errOut.String(), err
}

func TestTrainInspectExportImportCLI(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.safetensors")
	b := filepath.Join(dir, "b.safetensors")
	writeActs(t, a, testMeta("truth", "tox"), 40, 40, 1)
	writeActs(t, b, testMeta("bias"), 40, 30, 2)
	out := filepath.Join(dir, "steer.gguf")
	logPath := filepath.Join(dir, "train.json")
	plot := filepath.Join(dir, "loss.png")
	stdout, stderr, err := runCLI(t, "train", "--acts", a, "--acts", b, "--out", out, "--epochs", "3",
		"--sigma", "median", "--log", logPath, "--plot", plot, "--dev-fraction", "0.2", "--quiet")
	if err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "3 attributes (truth, tox, bias)") || !strings.Contains(stdout, "final loss") {
		t.Fatalf("train output: %q", stdout)
	}
	f, err := steer.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if f.Layer != 3 || f.Site != "l_out" || f.ModelArch != "llama" || f.ModelName != "tiny" || f.ModelID != "feed" || !f.NormPreserve {
		t.Fatalf("file identity: %+v", f)
	}
	tr := f.Training
	if tr["data.1.file"] != "b.safetensors" || len(tr["data.0.sha256"]) != 64 || tr["sigma"] != "median" || tr["token_mode"] != acts.TokenAll || tr["dev_loss.total"] == "" {
		t.Fatalf("training metadata: %v", tr)
	}
	var log steer.TrainLog
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &log); err != nil || len(log.Epochs) != 3 {
		t.Fatalf("log: %v, %d epochs", err, len(log.Epochs))
	}
	if st, err := os.Stat(plot); err != nil || st.Size() == 0 {
		t.Fatalf("plot: %v", err)
	}
	// Same inputs and seed: the same bytes.
	out2 := filepath.Join(dir, "steer2.gguf")
	if _, stderr, err := runCLI(t, "train", "--acts", a, "--acts", b, "--out", out2, "--epochs", "3", "--sigma", "median", "--dev-fraction", "0.2", "--quiet"); err != nil {
		t.Fatalf("train again: %v\n%s", err, stderr)
	}
	x, _ := os.ReadFile(out)
	y, _ := os.ReadFile(out2)
	if !bytes.Equal(x, y) {
		t.Fatal("the same training run gave a different file")
	}

	stdout, _, err = runCLI(t, "inspect", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"method:            mat-steer", "layer 3, n_embd 6", `llama "tiny" (feed)`, "pairwise cosine", "truth", "lambda_sparse", "data.0.sha256"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, err = runCLI(t, "inspect", "--json", out)
	if err != nil {
		t.Fatal(err)
	}
	var sum inspectSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || len(sum.Attributes) != 3 || sum.Cosines[1][1] < 0.999 {
		t.Fatalf("inspect --json: %v %+v", err, sum)
	}

	// Gated files are refused by export-cvec unless forced.
	cv := filepath.Join(dir, "cv.gguf")
	if _, _, err := runCLI(t, "export-cvec", out, cv); err == nil || !strings.Contains(err.Error(), "--force-ungated") {
		t.Fatalf("export of a gated file: %v", err)
	}
	// Mean difference baseline → control vector → import.
	md := filepath.Join(dir, "md.gguf")
	if _, stderr, err := runCLI(t, "train", "--acts", a, "--method", "mean-diff", "--out", md, "--quiet"); err != nil {
		t.Fatalf("mean-diff: %v\n%s", err, stderr)
	}
	stdout, _, err = runCLI(t, "export-cvec", "--strength", "tox=0", md, cv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "direction.3") {
		t.Fatalf("export output %q", stdout)
	}
	g, err := gguf.ReadFile(cv)
	if err != nil {
		t.Fatal(err)
	}
	mdf, _ := steer.ReadFile(md)
	vals, _ := g.Tensor("direction.3").Float32s()
	for j, v := range vals {
		if float64(v) != float64(float32(mdf.Attributes[0].Theta[j])) {
			t.Fatalf("exported value %d = %v, want truth's θ %v", j, v, mdf.Attributes[0].Theta[j])
		}
	}
	stdout, _, err = runCLI(t, "inspect", cv)
	if err != nil || !strings.Contains(stdout, "llama.cpp control vector") {
		t.Fatalf("inspect control vector: %v %q", err, stdout)
	}
	imp := filepath.Join(dir, "imp.gguf")
	if _, _, err := runCLI(t, "import-cvec", "--name", "truthy", cv, imp); err != nil {
		t.Fatal(err)
	}
	fi, err := steer.ReadFile(imp)
	if err != nil || fi.Attributes[0].Name != "truthy" || fi.Layer != 3 || fi.Method != steer.MethodCvecImport {
		t.Fatalf("import: %v %+v", err, fi)
	}
}

func TestTrainCLIErrors(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.safetensors")
	writeActs(t, a, testMeta("truth"), 10, 10, 1)
	other := testMeta("tox")
	other.Layer = 4
	b := filepath.Join(dir, "b.safetensors")
	writeActs(t, b, other, 10, 10, 2)
	onlyPos := filepath.Join(dir, "p.safetensors")
	writeActs(t, onlyPos, testMeta("x"), 10, 0, 3)
	out := filepath.Join(dir, "o.gguf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--acts", a, "--acts", b, "--out", out}, "disagree"},
		{[]string{"train", "--acts", a, "--out", out, "--sigma", "wide"}, "--sigma"},
		{[]string{"train", "--acts", a, "--out", out, "--method", "magic"}, "unknown training method"},
		{[]string{"train", "--acts", onlyPos, "--out", out}, "has 10 positive and 0 negative rows"},
		{[]string{"train", "--acts", filepath.Join(dir, "missing"), "--out", out}, "missing"},
		{[]string{"train", "--acts", a, "--out", out, "--norm-preserve", "--no-norm-preserve"}, "contradict"},
		{[]string{"train", "--acts", a, "--out", out, "extra"}, "takes no arguments"},
		{[]string{"train", "--acts", a, "--out", out, "--preset", "fast"}, "unknown preset"},
		{[]string{"train", "--acts", a, "--out", out, "--gate-input", "x"}, "unknown gate input"},
		{[]string{"train", "--acts", a, "--out", out, "--theta-init", "x"}, "unknown theta init"},
		{[]string{"train", "--acts", a, "--out", out, "--mmd-norm", "x"}, "unknown MMD normalisation"},
		{[]string{"inspect"}, "one steering file"},
		{[]string{"inspect", a}, "not a GGUF"},
		{[]string{"export-cvec", out}, "IN and OUT"},
		{[]string{"import-cvec", out}, "inputs and an output"},
	} {
		_, _, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want error containing %q, got %v", c.args, c.want, err)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a failed run left an output file")
	}
}

func TestTrainPresetCLI(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.safetensors")
	writeActs(t, a, testMeta("truth", "tox"), 30, 30, 1)
	train := func(args ...string) map[string]string {
		t.Helper()
		out := filepath.Join(dir, "o.gguf")
		if _, stderr, err := runCLI(t, append([]string{"train", "--acts", a, "--out", out, "--epochs", "2", "--quiet"}, args...)...); err != nil {
			t.Fatalf("train %v: %v\n%s", args, err, stderr)
		}
		f, err := steer.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return f.Training
	}
	def := train()
	if def["sigma"] != "median" || def["theta_init"] != steer.ThetaInitMeanDiff || def["mmd_norm"] != steer.MMDNormInitial || def["gate_input"] != steer.GateInputScale {
		t.Fatalf("default preset: %v", def)
	}
	ref := train("--preset", "reference")
	if ref["sigma"] != "2" || ref["theta_init"] != steer.ThetaInitNormal || ref["mmd_norm"] != steer.MMDNormNone || ref["gate_input"] != steer.GateInputRaw || ref["theta_scale"] != steer.ThetaScaleNone {
		t.Fatalf("reference preset: %v", ref)
	}
	// Flags given override the preset.
	mix := train("--preset", "reference", "--sigma", "multi", "--gate-input", "standardize", "--theta-init", "scaled", "--theta-scale", "data", "--mmd-norm", "initial", "--lr", "0.01")
	if mix["sigma"] != "multi:0.5,1,2" || mix["gate_input"] != "standardize" || mix["theta_init"] != "scaled" || mix["theta_scale"] != "data" || mix["mmd_norm"] != "initial" || mix["lr"] != "0.01" {
		t.Fatalf("overrides: %v", mix)
	}
}
