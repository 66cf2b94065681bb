package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/steer"
)

// TestTrainInitCLI: train --init on synthetic activations: --epochs 0
// reproduces the file's values, new rows change them, a new attribute is
// added after the file's, and every inconsistent input is refused before
// anything is written.
func TestTrainInitCLI(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.safetensors")
	b := filepath.Join(dir, "b.safetensors")
	writeActs(t, a, testMeta("truth", "tox"), 40, 40, 1)
	writeActs(t, b, testMeta("tox", "bias"), 40, 40, 2)
	old := filepath.Join(dir, "old.gguf")
	if _, stderr, err := runCLI(t, "train", "--acts", a, "--out", old, "--epochs", "3", "--quiet"); err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	oldF, err := steer.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	oldBytes, _ := os.ReadFile(old)

	zero := filepath.Join(dir, "zero.gguf")
	stdout, stderr, err := runCLI(t, "train", "--init", old, "--acts", a, "--out", zero, "--epochs", "0", "--quiet")
	if err != nil {
		t.Fatalf("epochs 0: %v\n%s", err, stderr)
	}
	z, err := steer.ReadFile(zero)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(z.Attributes, oldF.Attributes) || z.Site != oldF.Site || z.Layer != oldF.Layer || z.NEmbd != oldF.NEmbd ||
		z.Method != oldF.Method || z.NormPreserve != oldF.NormPreserve || z.ModelArch != oldF.ModelArch || z.ModelName != oldF.ModelName || z.ModelID != oldF.ModelID {
		t.Fatalf("--epochs 0 did not reproduce the file:\n%+v\n%+v", z, oldF)
	}
	if !strings.Contains(stdout, "warm start from "+old+": refined truth, tox; added none; kept unchanged (no rows) none") {
		t.Errorf("output: %q", stdout)
	}
	sum, _ := fileSHA256(old)
	if z.Training["init.file"] != "old.gguf" || z.Training["init.sha256"] != sum || z.Training["epochs_run"] != "0" {
		t.Errorf("training metadata: %v", z.Training)
	}

	// New rows of tox plus a new attribute: truth kept, tox refined, bias added.
	refined := filepath.Join(dir, "refined.gguf")
	logPath := filepath.Join(dir, "log.json")
	stdout, stderr, err = runCLI(t, "train", "--init", old, "--acts", b, "--out", refined, "--epochs", "2", "--log", logPath, "--quiet")
	if err != nil {
		t.Fatalf("refine: %v\n%s", err, stderr)
	}
	r, err := steer.ReadFile(refined)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.AttributeNames(); !reflect.DeepEqual(got, []string{"truth", "tox", "bias"}) {
		t.Fatalf("attributes %v", got)
	}
	if !reflect.DeepEqual(r.Attributes[0], oldF.Attributes[0]) || reflect.DeepEqual(r.Attributes[1], oldF.Attributes[1]) {
		t.Error("want truth unchanged and tox changed")
	}
	if !strings.Contains(stdout, "refined tox; added bias; kept unchanged (no rows) truth") {
		t.Errorf("output: %q", stdout)
	}
	var lg steer.TrainLog
	if data, err := os.ReadFile(logPath); err != nil || json.Unmarshal(data, &lg) != nil || !reflect.DeepEqual(lg.Kept, []string{"truth"}) {
		t.Errorf("log: %v %+v", err, lg)
	}
	// An explicit norm preservation equal to the file's is accepted.
	if _, stderr, err := runCLI(t, "train", "--init", old, "--acts", a, "--out", zero, "--epochs", "0", "--norm-preserve", "--quiet"); err != nil {
		t.Errorf("--norm-preserve as the file: %v\n%s", err, stderr)
	}

	otherLayer := testMeta("truth")
	otherLayer.Layer = 4
	l4 := filepath.Join(dir, "l4.safetensors")
	writeActs(t, l4, otherLayer, 10, 10, 3)
	otherModel := testMeta("truth")
	otherModel.Extra = map[string]string{"model_sha256": "beef"}
	om := filepath.Join(dir, "om.safetensors")
	writeActs(t, om, otherModel, 10, 10, 4)
	wide := testMeta("truth")
	wide.NEmbd = 7
	w7 := filepath.Join(dir, "w7.safetensors")
	writeActs(t, w7, wide, 10, 10, 5)
	md := filepath.Join(dir, "md.gguf")
	if _, stderr, err := runCLI(t, "train", "--acts", a, "--out", md, "--method", "mean-diff", "--quiet"); err != nil {
		t.Fatalf("mean-diff: %v\n%s", err, stderr)
	}
	out := filepath.Join(dir, "out.gguf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--init", old, "--acts", a, "--out", old}, "same file as the input --init"},
		{[]string{"--acts", a, "--out", out, "--epochs", "0"}, "--epochs 0 needs --init"},
		{[]string{"--init", old, "--acts", a, "--out", out, "--epochs", "-1"}, "--epochs -1: out of range"},
		{[]string{"--init", old, "--acts", a, "--out", out, "--method", "pca"}, "needs --method mat-steer, not pca"},
		{[]string{"--init", old, "--acts", a, "--out", out, "--no-norm-preserve"}, "norm preservation on in the file, off in this training"},
		{[]string{"--init", old, "--acts", l4, "--out", out}, "site l_out layer 3, but the rows are from site l_out layer 4"},
		{[]string{"--init", old, "--acts", om, "--out", out}, `model id "feed", but the rows are from "beef"`},
		{[]string{"--init", old, "--acts", w7, "--out", out}, "n_embd 6, but attribute \"truth\" has rows of 7 values"},
		{[]string{"--init", md, "--acts", a, "--out", out}, "only a mat-steer file can be refined"},
		{[]string{"--init", filepath.Join(dir, "missing.gguf"), "--acts", a, "--out", out}, "missing.gguf"},
		{[]string{"--init", a, "--acts", a, "--out", out}, "--init"},
		{[]string{"--init", "", "--acts", a, "--out", out}, "--init: empty path"},
	} {
		_, _, err := runCLI(t, append([]string{"train", "--quiet"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want error containing %q, got %v", c.args, c.want, err)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("a refused run left an output file")
	}
	if now, _ := os.ReadFile(old); string(now) != string(oldBytes) {
		t.Error("the init file changed")
	}
}

// TestTrainInitImprovesHeldOut is the feedback loop on the default model
// and the demo data: per attribute, the first 8 prompts (both answers) train
// a file, the next 24 refine it (train --init), and the last 18 are held
// back. On the held-back answer tokens the refined file's own gates
// separate undesired from desired rows better than the first file's.
func TestTrainInitImprovesHeldOut(t *testing.T) {
	model := testenv.DefaultModel(t)
	demo := filepath.Join(testenv.RepoRoot(), "demo", "data", "demo.jsonl")
	if _, err := os.Stat(demo); err != nil {
		t.Skipf("demo data not found at %s: %v", demo, err)
	}
	dir := t.TempDir()
	parts := splitDemo(t, demo, dir, 8, 32)
	actsOf := map[string]string{}
	for _, p := range []string{"old", "new", "held"} {
		actsOf[p] = filepath.Join(dir, p+".safetensors")
		if _, stderr, err := runCLI(t, "extract", "-m", model, "--data", parts[p], "--layer", "12", "--tokens", "response", "--out", actsOf[p], "--threads", "2"); err != nil {
			t.Fatalf("extract %s: %v\n%s", p, err, stderr)
		}
	}
	old, refined, zero := filepath.Join(dir, "old.gguf"), filepath.Join(dir, "refined.gguf"), filepath.Join(dir, "zero.gguf")
	for _, args := range [][]string{
		{"--acts", actsOf["old"], "--out", old},
		{"--init", old, "--acts", actsOf["new"], "--out", refined},
		{"--init", old, "--acts", actsOf["new"], "--out", zero, "--epochs", "0"},
	} {
		if _, stderr, err := runCLI(t, append([]string{"train", "--quiet"}, args...)...); err != nil {
			t.Fatalf("train %v: %v\n%s", args, err, stderr)
		}
	}
	oldF, err1 := steer.ReadFile(old)
	refF, err2 := steer.ReadFile(refined)
	zeroF, err3 := steer.ReadFile(zero)
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	if !reflect.DeepEqual(zeroF.Attributes, oldF.Attributes) {
		t.Fatal("--epochs 0 did not reproduce the file")
	}
	held := readRows(t, actsOf["held"])
	for _, name := range oldF.AttributeNames() {
		sOld, sRef := gateSeparation(oldF, name, held[name]), gateSeparation(refF, name, held[name])
		t.Logf("%s: held-back gate separation (mean gate on undesired minus desired answer tokens): %.3f -> %.3f after refining", name, sOld, sRef)
		if !(sRef > sOld+0.02) {
			t.Errorf("%s: refining with new examples did not improve the held-back gate separation: %.3f -> %.3f", name, sOld, sRef)
		}
	}
}

// splitDemo writes the examples of the first nOld prompts of every
// attribute (in file order) to old.jsonl, those of the prompts up to nNew
// to new.jsonl and the rest to held.jsonl.
func splitDemo(t *testing.T, path, dir string, nOld, nNew int) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]map[string]int{} // attribute → prompt → index
	buf := map[string]*strings.Builder{"old": {}, "new": {}, "held": {}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ex struct{ Attribute, Prompt string }
		if err := json.Unmarshal(sc.Bytes(), &ex); err != nil {
			t.Fatal(err)
		}
		if seen[ex.Attribute] == nil {
			seen[ex.Attribute] = map[string]int{}
		}
		i, ok := seen[ex.Attribute][ex.Prompt]
		if !ok {
			i = len(seen[ex.Attribute])
			seen[ex.Attribute][ex.Prompt] = i
		}
		part := "held"
		switch {
		case i < nOld:
			part = "old"
		case i < nNew:
			part = "new"
		}
		buf[part].Write(sc.Bytes())
		buf[part].WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for p, b := range buf {
		out[p] = filepath.Join(dir, p+".jsonl")
		if err := os.WriteFile(out[p], []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// labelledRows are one attribute's rows by label.
type labelledRows struct{ pos, neg [][]float32 }

func readRows(t *testing.T, path string) map[string]*labelledRows {
	t.Helper()
	af, err := acts.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer af.Close()
	vecs, err := af.Vectors()
	if err != nil {
		t.Fatal(err)
	}
	d := af.Meta.NEmbd
	out := map[string]*labelledRows{}
	for i, r := range af.Rows {
		name := af.Meta.Attributes[r.Attribute]
		if out[name] == nil {
			out[name] = &labelledRows{}
		}
		row := vecs[i*d : (i+1)*d]
		if r.Label == 1 {
			out[name].pos = append(out[name].pos, row)
		} else {
			out[name].neg = append(out[name].neg, row)
		}
	}
	return out
}

// gateSeparation is attribute name's mean gate on the undesired rows minus
// that on the desired rows.
func gateSeparation(f *steer.File, name string, rows *labelledRows) float64 {
	var a steer.Attribute
	for _, x := range f.Attributes {
		if x.Name == name {
			a = x
		}
	}
	mean := func(rs [][]float32) float64 {
		s := 0.0
		for _, r := range rs {
			z := a.GateB
			for j, v := range r {
				z += a.GateW[j] * float64(v)
			}
			s += 1 / (1 + math.Exp(-z))
		}
		return s / float64(len(rs))
	}
	return mean(rows.neg) - mean(rows.pos)
}
