package steer

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sliceData keeps rows [lo, hi) of every attribute's positives and
// negatives (and the matching shifted flags).
func sliceData(data []AttributeData, shifted [][]bool, lo, hi int) ([]AttributeData, [][]bool) {
	var out []AttributeData
	var sh [][]bool
	for t, a := range data {
		out = append(out, AttributeData{Name: a.Name, Pos: a.Pos[lo:hi], Neg: a.Neg[lo:hi]})
		sh = append(sh, shifted[t][lo:hi])
	}
	return out, sh
}

// roundTrip writes f and reads it back (float32 values, as a user gets it).
func roundTrip(t *testing.T, f *File) *File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f.gguf")
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	g, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func warmTestConfig() TrainConfig {
	cfg := DefaultTrainConfig()
	cfg.LR = 1e-2
	cfg.LambdaPos, cfg.LambdaSparse = 0.05, 0.05
	cfg.Site, cfg.Layer = "l_out", 5
	cfg.ModelArch, cfg.ModelName, cfg.ModelID = "llama", "tiny", "feed"
	return cfg
}

// TestWarmStartZeroEpochs: zero epochs from a file return its attributes
// bit for bit, for every gate-input parameterisation (the values never
// pass through the trained coordinates), whatever the data.
func TestWarmStartZeroEpochs(t *testing.T) {
	data, _ := synthData(7)
	for _, gi := range []string{GateInputScale, GateInputStandardize, GateInputRaw} {
		cfg := warmTestConfig()
		cfg.Epochs = 3
		cfg.GateInput = gi
		old, _, err := Train(context.Background(), data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		old = roundTrip(t, old)
		before := slices.Clone(old.Attributes)
		for i := range before {
			before[i] = cloneAttribute(before[i])
		}
		other, _ := synthData(8) // different rows: nothing is trained
		wcfg := warmTestConfig()
		wcfg.Site, wcfg.ModelName = "", "" // taken from the file
		wcfg.GateInput = gi
		wcfg.Epochs = 0
		wcfg.Init = old
		f, log, err := Train(context.Background(), other, wcfg)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f.Attributes, before) || !reflect.DeepEqual(old.Attributes, before) {
			t.Fatalf("%s: zero epochs changed the attributes", gi)
		}
		if f.Site != old.Site || f.Layer != old.Layer || f.NEmbd != old.NEmbd || f.Method != old.Method || f.NormPreserve != old.NormPreserve ||
			f.ModelArch != old.ModelArch || f.ModelName != old.ModelName || f.ModelID != old.ModelID {
			t.Fatalf("%s: header %+v, want that of %+v", gi, f, old)
		}
		// Written and read back, still the same values.
		if g := roundTrip(t, f); !reflect.DeepEqual(g.Attributes, before) {
			t.Fatalf("%s: written file differs", gi)
		}
		if log.EpochsRun != 0 || len(log.Epochs) != 0 || !slices.Equal(log.Refined, []string{"truth", "tox"}) || len(log.Added)+len(log.Kept) != 0 {
			t.Errorf("%s: log %+v", gi, log)
		}
		if f.Training["epochs_run"] != "0" || f.Training["init.refined"] != "truth,tox" || f.Training["loss.total"] != "" {
			t.Errorf("%s: training metadata %v", gi, f.Training)
		}
		if len(log.Eval) != 2 {
			t.Errorf("%s: eval %+v", gi, log.Eval)
		}
	}
}

// gateSeparation is the mean own gate on the shifted negatives minus that
// on the positives, averaged over the attributes.
func gateSeparation(f *File, data []AttributeData, shifted [][]bool) float64 {
	s := 0.0
	for ti, a := range data {
		t := slices.Index(f.AttributeNames(), a.Name)
		hi := meanGate(f, t, a.Neg, func(i int) bool { return shifted[ti][i] })
		pos := meanGate(f, t, a.Pos, nil)
		s += hi - pos
	}
	return s / float64(len(data))
}

// TestWarmStartRefines: a file trained briefly on a few rows, refined with
// new rows, separates held-back rows better than before; and the result is
// deterministic and leaves the init file untouched.
func TestWarmStartRefines(t *testing.T) {
	all, shifted := synthData(11)
	oldData, _ := sliceData(all, shifted, 0, 24)
	newData, _ := sliceData(all, shifted, 24, 240)
	held, heldShifted := sliceData(all, shifted, 240, 400)

	cfg := warmTestConfig()
	cfg.Epochs = 2
	old, _, err := Train(context.Background(), oldData, cfg)
	if err != nil {
		t.Fatal(err)
	}
	old = roundTrip(t, old)
	wcfg := warmTestConfig()
	wcfg.Epochs = 30
	wcfg.Init = old
	f, log, err := Train(context.Background(), newData, wcfg)
	if err != nil {
		t.Fatal(err)
	}
	// The same data and training from scratch, for comparison only.
	scratch, _, err := Train(context.Background(), newData, func() TrainConfig { c := warmTestConfig(); c.Epochs = 30; return c }())
	if err != nil {
		t.Fatal(err)
	}
	sOld, sNew, sScratch := gateSeparation(old, held, heldShifted), gateSeparation(f, held, heldShifted), gateSeparation(scratch, held, heldShifted)
	t.Logf("held-back gate separation: old %.3f, refined %.3f (from scratch on the new rows: %.3f)", sOld, sNew, sScratch)
	if !(sNew > sOld+0.3) {
		t.Errorf("refining did not improve the held-back gate separation: %.3f -> %.3f", sOld, sNew)
	}
	// And the steered held-back negatives come closer to the positives.
	for _, a := range held {
		n := len(a.Pos)
		x := flatRows(a.Pos)
		before := mmdValue(x, steerRows(old, a.Neg), n, n, f.NEmbd, log.SigmaValues)
		after := mmdValue(x, steerRows(f, a.Neg), n, n, f.NEmbd, log.SigmaValues)
		t.Logf("%s: held-back MMD² after steering: old %.4f, refined %.4f", a.Name, before, after)
		if !(after < before) {
			t.Errorf("%s: held-back MMD² after steering rose: old %.4f, refined %.4f", a.Name, before, after)
		}
	}
	if f.Training["init.refined"] != "truth,tox" || f.Training["epochs_run"] != "30" || f.Training["loss.total"] == "" {
		t.Errorf("training metadata %v", f.Training)
	}
	again, _, err := Train(context.Background(), newData, wcfg)
	if err != nil {
		t.Fatal(err)
	}
	b1, err1 := f.Encode()
	b2, err2 := again.Encode()
	if err1 != nil || err2 != nil || !bytes.Equal(b1, b2) {
		t.Errorf("the same warm start gave different files (%v, %v)", err1, err2)
	}
	if g := roundTrip(t, old); !reflect.DeepEqual(g.Attributes, old.Attributes) {
		t.Error("training changed the init file")
	}
}

// TestWarmStartAttributes: the file's attributes without rows are kept
// unchanged, rows of a new attribute add it with a fresh initialisation,
// and the order is the file's, then the new ones.
func TestWarmStartAttributes(t *testing.T) {
	data, _ := synthData(13) // truth, tox
	cfg := warmTestConfig()
	cfg.Epochs = 3
	old, _, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	old = roundTrip(t, old)
	bias, _ := synthAttr(rand.New(rand.NewPCG(2, 2)), "bias", 8, 60, 60, make([]float64, 8), []int{5}, 2, 0.5)
	wcfg := warmTestConfig()
	wcfg.Epochs = 2
	wcfg.Init = old
	// bias first in the data: the file's order still comes first.
	f, log, err := Train(context.Background(), []AttributeData{bias, data[1]}, wcfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.AttributeNames(); !slices.Equal(got, []string{"truth", "tox", "bias"}) {
		t.Fatalf("attributes %v", got)
	}
	if !reflect.DeepEqual(f.Attributes[0], old.Attributes[0]) {
		t.Error("truth (no rows) changed")
	}
	if reflect.DeepEqual(f.Attributes[1], old.Attributes[1]) {
		t.Error("tox (new rows) did not change")
	}
	if !f.Attributes[2].Gated || len(f.Attributes[2].GateW) != 8 {
		t.Errorf("bias: %+v", f.Attributes[2])
	}
	if !slices.Equal(log.Refined, []string{"tox"}) || !slices.Equal(log.Added, []string{"bias"}) || !slices.Equal(log.Kept, []string{"truth"}) {
		t.Errorf("log: refined %v added %v kept %v", log.Refined, log.Added, log.Kept)
	}
	if f.Training["init.kept"] != "truth" || f.Training["init.added"] != "bias" || f.Training["init.refined"] != "tox" {
		t.Errorf("training metadata %v", f.Training)
	}
	// With zero epochs the new attribute is its fresh initialisation: the
	// mean difference for θ (the default), the refined one unchanged.
	wcfg.Epochs = 0
	z, _, err := Train(context.Background(), []AttributeData{data[1], bias}, wcfg)
	if err != nil {
		t.Fatal(err)
	}
	md := meanDiffFlat(pool{pos: flatRows(bias.Pos), neg: flatRows(bias.Neg), nPos: 60, nNeg: 60}, 8)
	nearAll(t, "bias theta", z.Attributes[2].Theta, md, 1e-12)
	if !reflect.DeepEqual(z.Attributes[:2], old.Attributes) {
		t.Error("zero epochs changed the file's attributes")
	}
}

func TestWarmStartErrors(t *testing.T) {
	data, _ := synthData(17)
	cfg := warmTestConfig()
	cfg.Epochs = 1
	old, _, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	wide, _ := synthAttr(rand.New(rand.NewPCG(3, 3)), "truth", 9, 20, 20, make([]float64, 9), []int{1}, 2, 0.5)
	ungated := *old
	ungated.Attributes = slices.Clone(old.Attributes)
	ungated.Attributes[0] = Attribute{Name: "truth", Theta: old.Attributes[0].Theta}
	meanDiff := *old
	meanDiff.Method = MethodMeanDiff
	meanDiff.Attributes = []Attribute{{Name: "truth", Theta: old.Attributes[0].Theta}, {Name: "tox", Theta: old.Attributes[1].Theta}}
	for _, c := range []struct {
		name string
		edit func(c *TrainConfig, d *[]AttributeData)
		want string
	}{
		{"width", func(c *TrainConfig, d *[]AttributeData) { *d = []AttributeData{wide} }, "n_embd 8, but attribute \"truth\" has rows of 9 values"},
		{"site", func(c *TrainConfig, d *[]AttributeData) { c.Site = "attn_out" }, "site l_out layer 5, but the rows are from site attn_out layer 5"},
		{"layer", func(c *TrainConfig, d *[]AttributeData) { c.Layer = 6 }, "layer 6"},
		{"model id", func(c *TrainConfig, d *[]AttributeData) { c.ModelID = "beef" }, "model id \"feed\", but the rows are from \"beef\""},
		{"model", func(c *TrainConfig, d *[]AttributeData) { c.ModelArch = "gemma3" }, "model architecture"},
		{"norm", func(c *TrainConfig, d *[]AttributeData) { c.NormPreserve = false }, "norm preservation on in the file, off in this training"},
		{"method", func(c *TrainConfig, d *[]AttributeData) { c.Method = MethodPCA }, "needs method mat-steer, not pca"},
		{"all-tokens", func(c *TrainConfig, d *[]AttributeData) { c.Method = MethodAllTokens }, "needs method mat-steer"},
		{"file method", func(c *TrainConfig, d *[]AttributeData) { c.Init = &meanDiff }, "only a mat-steer file can be refined"},
		{"ungated", func(c *TrainConfig, d *[]AttributeData) { c.Init = &ungated }, "attribute \"truth\" is not gated"},
		{"epochs", func(c *TrainConfig, d *[]AttributeData) { c.Epochs = -1 }, "epochs -1 out of range [0, 1e6]"},
		{"twice", func(c *TrainConfig, d *[]AttributeData) { *d = append(*d, (*d)[0]) }, "given twice"},
		{"invalid file", func(c *TrainConfig, d *[]AttributeData) { bad := *old; bad.NEmbd = 0; c.Init = &bad }, "n_embd 0 out of range"},
	} {
		c2 := warmTestConfig()
		c2.Init = old
		d := slices.Clone(data)
		c.edit(&c2, &d)
		_, _, err := Train(context.Background(), d, c2)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
	// Zero epochs without a file is still an error.
	c := warmTestConfig()
	c.Epochs = 0
	if _, _, err := Train(context.Background(), data, c); err == nil || !strings.Contains(err.Error(), "epochs 0 out of range [1, 1e6]") {
		t.Errorf("zero epochs without init: %v", err)
	}
}
