package main

import (
	"bufio"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/internal/trainset"
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
	sum, _ := trainset.FileSHA256(old)
	if z.Training["init.file"] != "old.gguf" || z.Training["init.sha256"] != sum || z.Training["epochs_run"] != "0" {
		t.Errorf("training metadata: %v", z.Training)
	}

	// --epochs 0 --gate-shift: the same file with every gate bias lowered.
	sharp := filepath.Join(dir, "sharp.gguf")
	if _, stderr, err := runCLI(t, "train", "--init", old, "--acts", a, "--out", sharp, "--epochs", "0", "--gate-shift", "2.5", "--quiet"); err != nil {
		t.Fatalf("--gate-shift: %v\n%s", err, stderr)
	}
	s, err := steer.ReadFile(sharp)
	if err != nil {
		t.Fatal(err)
	}
	for i, at := range s.Attributes {
		o := oldF.Attributes[i]
		if math.Abs(at.GateB-(o.GateB-2.5)) > 1e-6 || !reflect.DeepEqual(at.GateW, o.GateW) || !reflect.DeepEqual(at.Theta, o.Theta) {
			t.Errorf("--gate-shift 2.5: %s bias %v (was %v), or more than the bias changed", at.Name, at.GateB, o.GateB)
		}
	}
	if s.Training["gate_shift"] != "2.5" {
		t.Errorf("--gate-shift not recorded: %v", s.Training)
	}
	// Without --acts: the same file, every attribute kept with its gate
	// shifted; with rows of truth only, tox (kept) is shifted too.
	truthOnly := filepath.Join(dir, "truth.safetensors")
	writeActs(t, truthOnly, testMeta("truth"), 40, 40, 6)
	for _, acts := range [][]string{nil, {"--acts", truthOnly}} {
		out := filepath.Join(dir, "sharp2.gguf")
		args := append([]string{"train", "--init", old, "--out", out, "--epochs", "0", "--gate-shift", "2.5", "--quiet"}, acts...)
		stdout, stderr, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr)
		}
		if !strings.Contains(stdout, "kept (no rows; gates shifted)") || !strings.Contains(stdout, "every gate bias lowered by 2.5") {
			t.Errorf("%v: output %q", args, stdout)
		}
		s2, err := steer.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s2.Attributes, s.Attributes) || s2.Site != oldF.Site || s2.Layer != oldF.Layer || s2.ModelID != oldF.ModelID || s2.Training["gate_shift"] != "2.5" {
			t.Errorf("%v: not the file with every gate shifted: %+v", args, s2)
		}
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
		{[]string{"--out", out}, "--acts: no activation file"},
		{[]string{"--init", old, "--out", out, "--epochs", "0", "--acts", ""}, "--acts: empty path"},
		{[]string{"--init", old, "--out", out}, "--acts: no activation file"},
		{[]string{"--init", old, "--out", out, "--epochs", "0", "--shared", "neutral"}, "need --acts"},
		{[]string{"--init", old, "--out", out, "--epochs", "0", "--neutral-acts", a}, "need --acts"},
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

// TestTrainDemoDefaultModel trains on the default model's activations of
// the demo data (layer 12, answer tokens). Per attribute, the first 8
// prompts (both answers) are "old", the next 24 "new" and the last 18 are
// held back.
//
//   - init: a file trained on the old prompts and refined with the new ones
//     (train --init) separates the held-back answers better with its own
//     gates (mean gate on undesired minus desired answer tokens) than the
//     first file; --epochs 0 reproduces the first file.
//   - neutral: trained on old+new with the neutral sentences of
//     demo/data/neutral-dev.txt as --neutral-acts, the gates stay shut on
//     the other neutral sentences (neutral.txt) and still separate the
//     held-back answers.
//   - shared: trained on every token of old+new (prompt and answer), with
//     --shared neutral the gates separate the held-back texts (every token,
//     as eval --gates measures) at least twice as well as with keep.
func TestTrainDemoDefaultModel(t *testing.T) {
	model := testenv.DefaultModel(t)
	demoDir := filepath.Join(testenv.RepoRoot(), "demo", "data")
	if _, err := os.Stat(filepath.Join(demoDir, "demo.jsonl")); err != nil {
		t.Skipf("demo data not found in %s: %v", demoDir, err)
	}
	dir := t.TempDir()
	parts := splitDemo(t, filepath.Join(demoDir, "demo.jsonl"), dir, 8, 32)
	parts["ndev"] = neutralJSONL(t, filepath.Join(demoDir, "neutral-dev.txt"), dir)
	parts["nheld"] = neutralJSONL(t, filepath.Join(demoDir, "neutral.txt"), dir)
	actsOf := map[string]string{}
	for _, p := range []string{"old", "new", "held", "ndev", "nheld", "oldall", "newall", "heldall"} {
		actsOf[p] = filepath.Join(dir, p+".safetensors")
		tokens := "response"
		data := parts[p]
		if p == "ndev" || p == "nheld" {
			tokens = "all"
		}
		if base, ok := strings.CutSuffix(p, "all"); ok {
			tokens, data = "all", parts[base]
		}
		if _, stderr, err := runCLI(t, "extract", "-m", model, "--data", data, "--layer", "12", "--tokens", tokens, "--out", actsOf[p], "--threads", "2"); err != nil {
			t.Fatalf("extract %s: %v\n%s", p, err, stderr)
		}
	}
	held := readRows(t, actsOf["held"])
	var neutral [][]float32
	for _, r := range readRows(t, actsOf["nheld"]) {
		neutral = append(append(neutral, r.pos...), r.neg...)
	}
	train := func(t *testing.T, out string, args ...string) *steer.File {
		t.Helper()
		path := filepath.Join(dir, out)
		if _, stderr, err := runCLI(t, append([]string{"train", "--quiet", "--out", path}, args...)...); err != nil {
			t.Fatalf("train %v: %v\n%s", args, err, stderr)
		}
		f, err := steer.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}

	t.Run("init", func(t *testing.T) {
		oldF := train(t, "old.gguf", "--acts", actsOf["old"])
		old := filepath.Join(dir, "old.gguf")
		refF := train(t, "refined.gguf", "--init", old, "--acts", actsOf["new"])
		zeroF := train(t, "zero.gguf", "--init", old, "--acts", actsOf["new"], "--epochs", "0")
		if !reflect.DeepEqual(zeroF.Attributes, oldF.Attributes) {
			t.Fatal("--epochs 0 did not reproduce the file")
		}
		for _, name := range oldF.AttributeNames() {
			sOld, sRef := gateSeparation(oldF, name, held[name]), gateSeparation(refF, name, held[name])
			t.Logf("%s: held-back gate separation (mean gate on undesired minus desired answer tokens): %.3f -> %.3f after refining", name, sOld, sRef)
			if !(sRef > sOld+0.02) {
				t.Errorf("%s: refining with new examples did not improve the held-back gate separation: %.3f -> %.3f", name, sOld, sRef)
			}
		}
	})

	t.Run("neutral", func(t *testing.T) {
		base := train(t, "base.gguf", "--acts", actsOf["old"], "--acts", actsOf["new"])
		neu := train(t, "neutral.gguf", "--acts", actsOf["old"], "--acts", actsOf["new"], "--neutral-acts", actsOf["ndev"])
		for _, name := range base.AttributeNames() {
			nb, nn := meanGateOf(base, name, neutral), meanGateOf(neu, name, neutral)
			rb := meanGateOf(base, name, held[name].neg) / meanGateOf(base, name, held[name].pos)
			rn := meanGateOf(neu, name, held[name].neg) / meanGateOf(neu, name, held[name].pos)
			t.Logf("%s: mean gate on held-out neutral sentences %.3f -> %.3f; held-back answers undesired/desired gate ratio %.1f -> %.1f", name, nb, nn, rb, rn)
			if !(nn < nb/3) {
				t.Errorf("%s: neutral rows did not close the gate on other neutral text: %.3f -> %.3f", name, nb, nn)
			}
			if !(rn > 0.9*rb) {
				t.Errorf("%s: the gates separate the held-back answers less: ratio %.2f -> %.2f", name, rb, rn)
			}
		}
	})

	t.Run("shared", func(t *testing.T) {
		heldAll := readRows(t, actsOf["heldall"])
		keep := train(t, "keep.gguf", "--acts", actsOf["oldall"], "--acts", actsOf["newall"])
		sh := train(t, "shared.gguf", "--acts", actsOf["oldall"], "--acts", actsOf["newall"], "--shared", "neutral")
		if sh.Training["shared"] != "neutral" || sh.Training["shared_pos"] == "" || sh.Training["n_neutral"] == "" {
			t.Errorf("training metadata: %v", sh.Training)
		}
		for _, name := range keep.AttributeNames() {
			rk := meanGateOf(keep, name, heldAll[name].neg) / meanGateOf(keep, name, heldAll[name].pos)
			rs := meanGateOf(sh, name, heldAll[name].neg) / meanGateOf(sh, name, heldAll[name].pos)
			nk, ns := meanGateOf(keep, name, neutral), meanGateOf(sh, name, neutral)
			t.Logf("%s: held-back texts (every token) undesired/desired gate ratio %.1f -> %.1f with --shared neutral; neutral sentences %.3f -> %.3f", name, rk, rs, nk, ns)
			if !(rs > 2*rk) {
				t.Errorf("%s: --shared neutral did not make the gates more selective: ratio %.2f -> %.2f", name, rk, rs)
			}
			if !(ns < nk) {
				t.Errorf("%s: gate on neutral sentences %.3f -> %.3f", name, nk, ns)
			}
		}
	})
}

// neutralJSONL writes the lines of a text file as JSONL examples of one
// attribute "neutral" (labels alternate: extract wants both; train
// --neutral-acts ignores them).
func neutralJSONL(t *testing.T, path, dir string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	i := 0
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		ex, _ := json.Marshal(map[string]any{"attribute": "neutral", "label": i % 2, "text": line})
		b.Write(append(ex, '\n'))
		i++
	}
	out := filepath.Join(dir, strings.TrimSuffix(filepath.Base(path), ".txt")+".jsonl")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
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

// meanGateOf is attribute name's mean gate over rows.
func meanGateOf(f *steer.File, name string, rows [][]float32) float64 {
	var a steer.Attribute
	for _, x := range f.Attributes {
		if x.Name == name {
			a = x
		}
	}
	s := 0.0
	for _, r := range rows {
		z := a.GateB
		for j, v := range r {
			z += a.GateW[j] * float64(v)
		}
		s += 1 / (1 + math.Exp(-z))
	}
	return s / float64(len(rows))
}

// gateSeparation is attribute name's mean gate on the undesired rows minus
// that on the desired rows.
func gateSeparation(f *steer.File, name string, rows *labelledRows) float64 {
	return meanGateOf(f, name, rows.neg) - meanGateOf(f, name, rows.pos)
}

// TestTrainNeutralCLI: --neutral-acts on synthetic activations: the rows
// are used whatever their labels, recorded in the file, and inconsistent
// use is refused.
func TestTrainNeutralCLI(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.safetensors")
	n := filepath.Join(dir, "n.safetensors")
	writeActs(t, a, testMeta("truth", "tox"), 40, 40, 1)
	writeActs(t, n, testMeta("neutral"), 30, 20, 2)
	out := filepath.Join(dir, "o.gguf")
	logPath := filepath.Join(dir, "log.json")
	stdout, stderr, err := runCLI(t, "train", "--acts", a, "--neutral-acts", n, "--out", out, "--epochs", "2", "--log", logPath, "--quiet")
	if err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	if strings.Count(stdout, "on neutral rows") != 2 {
		t.Errorf("output: %q", stdout)
	}
	f, err := steer.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := trainset.FileSHA256(n)
	if f.Training["n_neutral"] != "50" || f.Training["lambda_neutral"] != "0.9" || f.Training["neutral.0.file"] != "n.safetensors" || f.Training["neutral.0.sha256"] != sum || f.Training["loss.neutral"] == "" {
		t.Errorf("training metadata: %v", f.Training)
	}
	var lg steer.TrainLog
	if data, err := os.ReadFile(logPath); err != nil || json.Unmarshal(data, &lg) != nil || lg.NNeutral != 50 || lg.Eval[0].GateNeutral <= 0 {
		t.Errorf("log: %v %+v", err, lg)
	}
	if _, stderr, err := runCLI(t, "train", "--acts", a, "--neutral-acts", n, "--lambda-neutral", "0.1", "--out", out, "--epochs", "1", "--quiet"); err != nil {
		t.Fatalf("--lambda-neutral: %v\n%s", err, stderr)
	}
	if f, _ := steer.ReadFile(out); f == nil || f.Training["lambda_neutral"] != "0.1" {
		t.Errorf("--lambda-neutral 0.1 not recorded")
	}

	other := testMeta("neutral")
	other.Layer = 4
	n4 := filepath.Join(dir, "n4.safetensors")
	writeActs(t, n4, other, 5, 5, 3)
	out2 := filepath.Join(dir, "o2.gguf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--acts", a, "--out", out2, "--lambda-neutral", "0.5"}, "--lambda-neutral needs --neutral-acts"},
		{[]string{"--acts", a, "--out", out2, "--neutral-acts", n, "--lambda-neutral", "-1"}, "--lambda-neutral -1: out of range"},
		{[]string{"--acts", a, "--out", out2, "--neutral-acts", n, "--method", "mean-diff"}, "need --method mat-steer or all-tokens, not mean-diff"},
		{[]string{"--acts", a, "--out", out2, "--neutral-acts", n4}, "--neutral-acts: activation files disagree"},
		{[]string{"--acts", a, "--out", n, "--neutral-acts", n}, "same file as the input --neutral-acts"},
		{[]string{"--acts", a, "--out", out2, "--neutral-acts", filepath.Join(dir, "missing.safetensors")}, "missing.safetensors"},
	} {
		_, _, err := runCLI(t, append([]string{"train", "--quiet", "--epochs", "1"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want error containing %q, got %v", c.args, c.want, err)
		}
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Error("a refused run left an output file")
	}
}

// TestTrainSharedCLI: --shared on synthetic activations whose attribute has
// 5 rows on both sides.
func TestTrainSharedCLI(t *testing.T) {
	dir := t.TempDir()
	meta := testMeta("truth")
	path := filepath.Join(dir, "s.safetensors")
	w, err := acts.Create(path, meta)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	d := meta.NEmbd
	shared := make([]float32, 5*d)
	for i := range shared {
		shared[i] = float32(rng.NormFloat64() + 2)
	}
	for _, label := range []int8{1, 0} {
		vecs := make([]float32, 30*d)
		for i := range vecs {
			vecs[i] = float32(rng.NormFloat64())
			if label == 0 && i%d == 0 {
				vecs[i] -= 3
			}
		}
		vecs = append(vecs, shared...)
		rows := make([]acts.Row, 35)
		for i := range rows {
			rows[i] = acts.Row{Attribute: 0, Label: label, SampleID: int64(i), Position: int32(i)}
		}
		if err := w.Append(vecs, rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "o.gguf")
	stdout, stderr, err := runCLI(t, "train", "--acts", path, "--out", out, "--epochs", "2", "--shared", "neutral", "--quiet")
	if err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "shared rows (--shared neutral; positive+negative rows removed): truth 5+5; 5 neutral rows") || !strings.Contains(stdout, "(30+30 rows)") {
		t.Errorf("output: %q", stdout)
	}
	f, err := steer.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if f.Training["shared"] != "neutral" || f.Training["shared_pos"] != "5" || f.Training["n_pos"] != "30" || f.Training["n_neutral"] != "5" || f.Training["lambda_neutral"] != "0.9" {
		t.Errorf("training metadata: %v", f.Training)
	}
	stdout, _, err = runCLI(t, "train", "--acts", path, "--out", out, "--epochs", "1", "--shared", "drop", "--quiet")
	if err != nil || !strings.Contains(stdout, "truth 5+5; 0 neutral rows") {
		t.Errorf("drop: %v %q", err, stdout)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--shared", "merge"}, `--shared "merge": want keep, drop or neutral`},
		{[]string{"--shared", "drop", "--lambda-neutral", "0.5"}, "--lambda-neutral needs --neutral-acts or --shared neutral"},
		{[]string{"--shared", "drop", "--method", "pca"}, "need --method mat-steer or all-tokens, not pca"},
	} {
		_, _, err := runCLI(t, append([]string{"train", "--quiet", "--epochs", "1", "--acts", path, "--out", filepath.Join(dir, "x.gguf")}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want error containing %q, got %v", c.args, c.want, err)
		}
	}
}
