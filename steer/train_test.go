package steer

import (
	"context"
	"math/rand/v2"
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
	cfg := DefaultTrainConfig()
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
