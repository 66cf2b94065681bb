package steer

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestNeutralGradient compares neutralLossGrad's gradient with central
// finite differences of its sum.
func TestNeutralGradient(t *testing.T) {
	const T, d, n = 3, 5, 7
	rng := rand.New(rand.NewPCG(3, 5))
	p := newParams(T, d)
	for i := range p.v {
		p.v[i] = 0.7 * rng.NormFloat64()
	}
	x := randRows(rng, n, d, 1.5)
	grad := make([]float64, len(p.v))
	const scale = 0.37
	neutralLossGrad(p, x, n, scale, nil, grad)
	loss := func() float64 {
		s, _ := neutralLossGrad(p, x, n, 0, nil, make([]float64, len(p.v)))
		return scale * s
	}
	checked := 0
	for i := range p.v {
		fd := centralDifference(p.v, i, 1e-5, loss)
		if err := math.Abs(fd-grad[i]) / math.Max(1e-3, math.Abs(fd)+math.Abs(grad[i])); err > 1e-6 {
			t.Errorf("param %d: analytic %.10g, finite difference %.10g", i, grad[i], fd)
		}
		if i < T*d && grad[i] != 0 {
			t.Errorf("theta param %d has gradient %g: the neutral term does not steer", i, grad[i])
		}
		if grad[i] != 0 {
			checked++
		}
	}
	if checked != T*d+T {
		t.Errorf("%d parameters with a gradient, want the %d gate parameters", checked, T*d+T)
	}
}

// neutralData: the synthetic attributes of synthData, plus neutral rows
// that look like the shifted negatives on the attributes' own dimensions
// but carry a feature of their own (+4 on dimension 7), as chat-template
// tokens may look "informal" to a formality gate.
func neutralData(seed uint64) ([]AttributeData, [][]bool, [][]float64) {
	data, shifted := synthData(seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	var neutral [][]float64
	for i := 0; i < 300; i++ {
		r := make([]float64, 8)
		for j := range r {
			r[j] = 3 + rng.NormFloat64()
		}
		for j := 0; j < 4; j++ {
			r[j] -= 3 // like a shifted negative of both attributes
		}
		r[7] += 4
		neutral = append(neutral, r)
	}
	return data, shifted, neutral
}

// TestNeutralRowsCloseGates: without the neutral term the gates open on the
// neutral rows (they look like negatives); with it they stay shut there
// while still separating the shifted negatives from the positives.
func TestNeutralRowsCloseGates(t *testing.T) {
	data, shifted, neutral := neutralData(21)
	train := func(lambda float64) (*File, *TrainLog) {
		cfg := DefaultTrainConfig()
		cfg.Epochs = 30
		cfg.LR = 1e-2
		cfg.LambdaPos, cfg.LambdaSparse = 0.05, 0.05
		cfg.Site = "l_out"
		cfg.Neutral = neutral
		cfg.LambdaNeutral = lambda
		f, log, err := Train(context.Background(), data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return f, log
	}
	base, baseLog := train(0)
	sel, selLog := train(0.9)
	for ti, a := range data {
		nb, ns := meanGate(base, ti, neutral, nil), meanGate(sel, ti, neutral, nil)
		hb := meanGate(base, ti, a.Neg, func(i int) bool { return shifted[ti][i] })
		hs := meanGate(sel, ti, a.Neg, func(i int) bool { return shifted[ti][i] })
		pb, ps := meanGate(base, ti, a.Pos, nil), meanGate(sel, ti, a.Pos, nil)
		t.Logf("%s: gate on neutral %.3f -> %.3f, shifted negatives %.3f -> %.3f, positives %.3f -> %.3f", a.Name, nb, ns, hb, hs, pb, ps)
		if !(nb > 0.4) {
			t.Errorf("%s: the test needs gates that open on the neutral rows without the term (%.3f)", a.Name, nb)
		}
		if !(ns < 0.1 && ns < nb/4) {
			t.Errorf("%s: neutral gate %.3f with the term (%.3f without)", a.Name, ns, nb)
		}
		if !(hs > 0.5 && hs > 2*ps) {
			t.Errorf("%s: with the term the gates no longer separate: shifted negatives %.3f, positives %.3f", a.Name, hs, ps)
		}
		if math.Abs(baseLog.Eval[ti].GateNeutral-nb) > 1e-9 || math.Abs(selLog.Eval[ti].GateNeutral-ns) > 1e-9 {
			t.Errorf("%s: log's neutral gate %v / %v, want %v / %v", a.Name, baseLog.Eval[ti].GateNeutral, selLog.Eval[ti].GateNeutral, nb, ns)
		}
	}
	if selLog.Final.Neutral <= 0 || baseLog.Final.Neutral != 0 || sel.Training["lambda_neutral"] != "0.9" || sel.Training["n_neutral"] != "300" {
		t.Errorf("neutral loss %v / %v, metadata %v", selLog.Final.Neutral, baseLog.Final.Neutral, sel.Training)
	}
}

func TestNeutralConfigErrors(t *testing.T) {
	data, _ := synthData(1)
	for _, c := range []struct {
		edit func(c *TrainConfig)
		want string
	}{
		{func(c *TrainConfig) { c.LambdaNeutral = 1 }, "needs neutral rows"},
		{func(c *TrainConfig) { c.LambdaNeutral = -1; c.Neutral = [][]float64{make([]float64, 8)} }, "lambda-neutral -1"},
		{func(c *TrainConfig) { c.LambdaNeutral = math.NaN() }, "lambda-neutral NaN"},
		{func(c *TrainConfig) { c.LambdaNeutral = 1; c.Neutral = [][]float64{make([]float64, 7)} }, "neutral row 0 has 7 values, want n_embd=8"},
		{func(c *TrainConfig) { c.LambdaNeutral = 1; c.Neutral = [][]float64{{0, 0, 0, math.Inf(1), 0, 0, 0, 0}} }, "neutral row 0 has a non-finite value at 3"},
	} {
		cfg := DefaultTrainConfig()
		cfg.Epochs = 1
		c.edit(&cfg)
		if _, _, err := Train(context.Background(), data, cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error containing %q, got %v", c.want, err)
		}
	}
}
