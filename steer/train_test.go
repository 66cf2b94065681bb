package steer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// synthAttr makes one attribute's synthetic data: positives N(mu, I) and
// negatives N(mu, I) of which the rows with shifted[i] have shift added on
// dims. It returns the data and the shifted flags of the negatives.
func synthAttr(rng *rand.Rand, name string, d, nPos, nNeg int, mu []float64, dims []int, shift, shiftFrac float64) (AttributeData, []bool) {
	a := AttributeData{Name: name}
	row := func() []float64 {
		r := make([]float64, d)
		for j := range r {
			r[j] = mu[j] + rng.NormFloat64()
		}
		return r
	}
	for i := 0; i < nPos; i++ {
		a.Pos = append(a.Pos, row())
	}
	shifted := make([]bool, nNeg)
	for i := 0; i < nNeg; i++ {
		r := row()
		if rng.Float64() < shiftFrac {
			shifted[i] = true
			for _, j := range dims {
				r[j] += shift
			}
		}
		a.Neg = append(a.Neg, r)
	}
	return a, shifted
}

func flatRows(rows [][]float64) []float64 { return flat(rows) }

// meanGate is the mean own gate of attribute t over rows (selected by keep).
func meanGate(f *File, t int, rows [][]float64, keep func(i int) bool) float64 {
	s, n := 0.0, 0
	a := f.Attributes[t]
	for i, r := range rows {
		if keep != nil && !keep(i) {
			continue
		}
		z := a.GateB
		for j, v := range r {
			z += a.GateW[j] * v
		}
		s += sigmoid(z)
		n++
	}
	return s / float64(n)
}

// steerRows applies f (float64, no ε) to rows.
func steerRows(f *File, rows [][]float64) []float64 {
	p := newParams(len(f.Attributes), f.NEmbd)
	for t, a := range f.Attributes {
		copy(p.thetaT(t), a.Theta)
		copy(p.wT(t), a.GateW)
		p.b()[t] = a.GateB
	}
	_, _, out := forward(p, flatRows(rows), len(rows), f.NormPreserve, 0)
	return out
}

// synthData makes two attributes in d=8: positives N(3·1, I); half of the
// negatives are shifted by −3 on the attribute's own two dimensions.
func synthData(seed uint64) ([]AttributeData, [][]bool) {
	rng := rand.New(rand.NewPCG(seed, 99))
	const d = 8
	mu := make([]float64, d)
	for j := range mu {
		mu[j] = 3
	}
	var data []AttributeData
	var shifted [][]bool
	for t := 0; t < 2; t++ {
		a, s := synthAttr(rng, []string{"truth", "tox"}[t], d, 400, 400, mu, []int{2 * t, 2*t + 1}, -3, 0.5)
		data = append(data, a)
		shifted = append(shifted, s)
	}
	return data, shifted
}

// TestTrainRecoversShiftedRows trains on synthetic data with the official
// init and schedule shape (lr raised to 1e-2 and 60 epochs to keep it fast,
// gate penalties at 0.01 so that the MMD gain of steering half the rows
// outweighs them). The objective is non-convex: with θ ~ N(0, I) the gates
// can close before θ turns towards the shift (on this data about half the
// seeds end with closed gates), so the seed is fixed.
func TestTrainRecoversShiftedRows(t *testing.T) {
	data, shifted := synthData(3)
	cfg := ReferenceTrainConfig()
	cfg.Seed = 3
	cfg.Epochs = 60
	cfg.LR = 1e-2
	cfg.Sigma = MedianSigma()
	cfg.LambdaPos, cfg.LambdaSparse = 0.01, 0.01
	cfg.Site, cfg.Layer = "l_out", 5
	f, log, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(log.Warnings) != 0 {
		t.Errorf("unexpected warnings: %v", log.Warnings)
	}
	for ti, a := range data {
		hi := meanGate(f, ti, a.Neg, func(i int) bool { return shifted[ti][i] })
		lo := meanGate(f, ti, a.Neg, func(i int) bool { return !shifted[ti][i] })
		pos := meanGate(f, ti, a.Pos, nil)
		t.Logf("%s: gate on shifted negatives %.3f, unshifted negatives %.3f, positives %.3f", a.Name, hi, lo, pos)
		if hi < 0.6 || lo > 0.25 || pos > 0.25 {
			t.Errorf("%s: gates do not pick out the shifted rows: shifted %.3f, unshifted %.3f, positives %.3f", a.Name, hi, lo, pos)
		}
		// MMD between positives and negatives falls after steering.
		sig := log.SigmaValues
		n := 200
		x := flatRows(a.Pos[:n])
		before := mmdValue(x, flatRows(a.Neg[:n]), n, n, f.NEmbd, sig)
		after := mmdValue(x, steerRows(f, a.Neg[:n]), n, n, f.NEmbd, sig)
		t.Logf("%s: MMD² before %.4f after %.4f", a.Name, before, after)
		if !(after < 0.5*before) {
			t.Errorf("%s: MMD² did not fall enough: before %.4f, after %.4f", a.Name, before, after)
		}
	}
	first, last := log.Epochs[0].Train, log.Final
	if !(last.Total < first.Total) {
		t.Errorf("loss did not fall: first epoch %.4f, last %.4f", first.Total, last.Total)
	}
}

func TestTrainDeterministic(t *testing.T) {
	data, _ := synthData(5)
	third, _ := synthAttr(rand.New(rand.NewPCG(1, 1)), "bias", 8, 50, 60, make([]float64, 8), []int{7}, 1, 0.5)
	data = append(data, third) // T=3 with 2 workers exercises the job queue
	cfg := ReferenceTrainConfig()
	cfg.Epochs = 3
	cfg.Site = "l_out"
	cfg.Sigma = MultiSigma()
	var files [][]byte
	for _, workers := range []int{1, 2, 3, 8} {
		cfg.Workers = workers
		f, _, err := Train(context.Background(), data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	for i := 1; i < len(files); i++ {
		if !bytes.Equal(files[0], files[i]) {
			t.Fatalf("run %d produced a different steering file", i)
		}
	}
	cfg.Seed = 2
	f, _, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.Encode()
	if bytes.Equal(b, files[0]) {
		t.Fatal("a different seed gave the same file")
	}
}

// TestTrainOneStepMatchesReference runs Train for one step from the
// reference parameters: with pools of 2 rows the batch is the whole pool, so
// the update must equal the official one.
func TestTrainOneStepMatchesReference(t *testing.T) {
	r := loadRef(t)
	var data []AttributeData
	for _, name := range []string{"attrA", "attrB"} {
		task := r.StepRef.Tasks[name]
		data = append(data, AttributeData{Name: name, Pos: task.Pos, Neg: task.Neg})
	}
	p := refParams(r)
	cfg := ReferenceTrainConfig()
	cfg.Epochs = 1
	cfg.Site = "l_out"
	f, log, err := train(context.Background(), data, cfg, &warmStart{m: p})
	if err != nil {
		t.Fatal(err)
	}
	if log.StepsPerEpoch != 1 || len(log.Epochs) != 1 {
		t.Fatalf("steps per epoch %d, epochs %d; want 1 and 1", log.StepsPerEpoch, len(log.Epochs))
	}
	near(t, "total", log.Final.Total, r.StepRef.Total, refTol)
	near(t, "mmd", log.Final.MMD, r.StepRef.MMDMean, refTol)
	for i, a := range f.Attributes {
		nearAll(t, "theta", a.Theta, r.StepRef.After.Theta[i], refTol)
		nearAll(t, "gate_w", a.GateW, r.StepRef.After.GateW[i], refTol)
		near(t, "gate_b", a.GateB, r.StepRef.After.GateB[i], refTol)
	}
	if got := f.Training["loss.total"]; got == "" {
		t.Fatal("final loss missing from the training metadata")
	}
}

func TestTrainCancel(t *testing.T) {
	data, _ := synthData(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := Train(ctx, data, ReferenceTrainConfig())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

func TestTrainDevEarlyStopping(t *testing.T) {
	data, _ := synthData(2)
	cfg := ReferenceTrainConfig()
	for i := range data {
		data[i].Pos, data[i].Neg = data[i].Pos[:100], data[i].Neg[:100]
	}
	cfg.Epochs = 200
	cfg.LR = 0.3
	cfg.Sigma = MedianSigma()
	cfg.DevFraction = 0.2
	cfg.Patience = 3
	var prog bytes.Buffer
	cfg.Progress = &prog
	f, log, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !log.StoppedEarly || log.EpochsRun >= 200 {
		t.Fatalf("did not stop early: %d epochs", log.EpochsRun)
	}
	if log.BestEpoch < 1 || log.EpochsRun-log.BestEpoch != cfg.Patience {
		t.Fatalf("best epoch %d, ran %d, patience %d", log.BestEpoch, log.EpochsRun, cfg.Patience)
	}
	for _, e := range log.Epochs {
		if e.Dev == nil {
			t.Fatal("epoch without dev loss")
		}
		if e.Dev.Total < log.Epochs[log.BestEpoch-1].Dev.Total {
			t.Fatalf("epoch %d has a lower dev loss than the best epoch %d", e.Epoch, log.BestEpoch)
		}
	}
	if log.FinalDev == nil || *log.FinalDev != *log.Epochs[log.BestEpoch-1].Dev {
		t.Fatal("final dev loss is not the best epoch's")
	}
	if f.Training["best_epoch"] != strconv.Itoa(log.BestEpoch) || f.Training["dev_loss.total"] == "" {
		t.Fatalf("training metadata lacks the dev result: %v", f.Training)
	}
	// 80% of 100 rows remain for training.
	if log.StepsPerEpoch != 5 {
		t.Fatalf("steps per epoch %d, want 5", log.StepsPerEpoch)
	}
	if !strings.Contains(prog.String(), "dev ") || !strings.Contains(prog.String(), "mmd ") {
		t.Fatalf("progress output lacks the loss terms: %q", prog.String())
	}
}

func TestTrainKernelUnderflowWarning(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const d = 64
	mu := make([]float64, d)
	var data []AttributeData
	for k := 0; k < 2; k++ {
		// Rows with spread 4 per dimension: pairwise distances ≈ 45.
		a, _ := synthAttr(rng, "a"+strconv.Itoa(k), d, 40, 40, mu, []int{k}, 2, 1)
		for _, rows := range [][][]float64{a.Pos, a.Neg} {
			for _, r := range rows {
				for j := range r {
					r[j] *= 4
				}
			}
		}
		data = append(data, a)
	}
	cfg := ReferenceTrainConfig()
	cfg.Epochs = 2
	_, log, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Warnings) < 2 || !strings.Contains(log.Warnings[0], "below 1e-38") || !strings.Contains(log.Warnings[0], "--sigma median") {
		t.Fatalf("want underflow warnings, got %q", log.Warnings)
	}
	if log.KernelUnderflow < 0.99 || log.Epochs[1].KernelZeroFraction < 0.99 {
		t.Fatalf("underflow fractions %v, %v", log.KernelUnderflow, log.Epochs[1].KernelZeroFraction)
	}
	// MMD is the constant 1/16 + 1/16.
	near(t, "constant MMD", log.Final.MMD, 0.125, 1e-12)
	cfg.Sigma = MedianSigma()
	_, log, err = Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Warnings) != 0 {
		t.Fatalf("median sigma still warns: %q", log.Warnings)
	}
	if log.MedianDistance < 30 || log.SigmaValues[0] != log.MedianDistance {
		t.Fatalf("median %v, sigma %v", log.MedianDistance, log.SigmaValues)
	}
}

func TestTrainConfigErrors(t *testing.T) {
	data, _ := synthData(1)
	cases := []struct {
		edit func(*TrainConfig)
		want string
	}{
		{func(c *TrainConfig) { c.Method = "x" }, "unknown training method"},
		{func(c *TrainConfig) { c.Mode = "x" }, "unknown loss mode"},
		{func(c *TrainConfig) { c.Epochs = 0 }, "epochs"},
		{func(c *TrainConfig) { c.LR = math.NaN() }, "learning rate"},
		{func(c *TrainConfig) { c.Batch = 0 }, "batch"},
		{func(c *TrainConfig) { c.Sigma = Sigma{} }, "sigma"},
		{func(c *TrainConfig) { c.LambdaOrtho = -1 }, "lambda-ortho"},
		{func(c *TrainConfig) { c.DevFraction = 1 }, "dev fraction"},
		{func(c *TrainConfig) { c.Patience = 2 }, "patience needs a dev split"},
	}
	for _, c := range cases {
		cfg := ReferenceTrainConfig()
		c.edit(&cfg)
		if _, _, err := Train(context.Background(), data, cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want error containing %q, got %v", c.want, err)
		}
	}
	bad := []struct {
		data []AttributeData
		want string
	}{
		{nil, "no attributes"},
		{[]AttributeData{{Name: "a", Pos: [][]float64{{1}}}}, "both must be non-empty"},
		{[]AttributeData{{Name: "a", Pos: [][]float64{{1, 2}}, Neg: [][]float64{{1}}}}, "has 1 values, want n_embd=2"},
		{[]AttributeData{{Name: "a", Pos: [][]float64{{1}}, Neg: [][]float64{{math.Inf(1)}}}}, "non-finite"},
		{[]AttributeData{{Name: "a", Pos: [][]float64{{1}}, Neg: [][]float64{{1}}}, {Name: "a", Pos: [][]float64{{1}}, Neg: [][]float64{{1}}}}, "given twice"},
		{[]AttributeData{{Name: "a=b", Pos: [][]float64{{1}}, Neg: [][]float64{{1}}}}, "contains"},
	}
	for _, b := range bad {
		if _, _, err := Train(context.Background(), b.data, ReferenceTrainConfig()); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("want error containing %q, got %v", b.want, err)
		}
	}
}

func TestTrainLogOutputs(t *testing.T) {
	data, _ := synthData(1)
	cfg := ReferenceTrainConfig()
	cfg.Epochs = 4
	cfg.DevFraction = 0.1
	_, log, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := log.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back TrainLog
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Epochs) != 4 || back.Epochs[3].Train != log.Epochs[3].Train || back.Epochs[3].Dev == nil {
		t.Fatalf("JSON log does not round-trip the epochs")
	}
	png := filepath.Join(t.TempDir(), "loss.png")
	if err := log.WritePNG(png); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 8)
	fh, err := os.Open(png)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.Read(head); err != nil || string(head[1:4]) != "PNG" {
		t.Fatalf("not a PNG: % x (%v)", head, err)
	}
	if _, err := (&TrainLog{Method: MethodMeanDiff}).Plot(); err == nil {
		t.Fatal("plotting an empty log succeeded")
	}
	// A wrong extension is refused before the file is touched (it used to
	// be truncated first).
	keep := filepath.Join(t.TempDir(), "steer.gguf")
	if err := os.WriteFile(keep, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := log.WritePNG(keep); err == nil {
		t.Fatal("WritePNG accepted a .gguf name")
	}
	if b, _ := os.ReadFile(keep); string(b) != "precious" {
		t.Fatalf("the existing file was changed to %q", b)
	}
}

func TestParseSigma(t *testing.T) {
	good := map[string]Sigma{
		"2":            FixedSigma(2),
		"1,2.5":        FixedSigma(1, 2.5),
		"median":       MedianSigma(1),
		"median*0.5":   MedianSigma(0.5),
		"multi":        MedianSigma(0.5, 1, 2),
		"multi:0.25,4": MedianSigma(0.25, 4),
	}
	for in, want := range good {
		got, err := ParseSigma(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got.String() != want.String() {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
		again, err := ParseSigma(got.String())
		if err != nil || again.String() != got.String() {
			t.Errorf("%s does not round-trip through String: %v", in, err)
		}
	}
	for _, in := range []string{"", "x", "-1", "0", "median*", "median*1,2", "multi:", "NaN", "Inf"} {
		if _, err := ParseSigma(in); err == nil {
			t.Errorf("ParseSigma(%q) succeeded", in)
		}
	}
}
