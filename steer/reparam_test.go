package steer

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// TestReparamGradient checks the reparameterised gradient (the chained
// model gradient) against finite differences of the loss as a function of
// the trained parameters, for every gate input and θ scale.
func TestReparamGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const T, d, n = 2, 5, 6
	var pools []pool
	var batches []attrBatch
	for k := 0; k < T; k++ {
		pos, neg := randRows(rng, n, d, 3), randRows(rng, n, d, 3)
		for i := range pos {
			pos[i] += 20 // an offset, so that centring matters
			neg[i] += 19
		}
		pools = append(pools, pool{pos: pos, neg: neg, nPos: n, nNeg: n})
		batches = append(batches, attrBatch{attr: k, pos: pos, neg: neg, mmdPos: pos})
	}
	st := poolStats(pools, d)
	o := &objective{reference: true, sigmas: []float64{8}, lambdaPos: 0.9, lambdaSparse: 0.9, lambdaOrtho: 0.1, normPreserve: true, mmdWeight: []float64{3, 0.5}}
	work := make([]attrWork, T)
	for _, gi := range []string{GateInputRaw, GateInputStandardize, GateInputScale} {
		for _, ts := range []string{ThetaScaleNone, ThetaScaleData} {
			cfg := ReferenceTrainConfig()
			cfg.GateInput, cfg.ThetaScale = gi, ts
			rp, err := newReparam(cfg, st, T, d)
			if err != nil {
				t.Fatal(err)
			}
			tr, m := newParams(T, d), newParams(T, d)
			for i := range tr.v {
				tr.v[i] = 0.3 * rng.NormFloat64()
			}
			loss := func() float64 {
				rp.toModel(tr, m)
				return o.lossGrad(m, batches, work, make([]float64, len(m.v))).Total
			}
			rp.toModel(tr, m)
			grad := make([]float64, len(m.v))
			o.lossGrad(m, batches, work, grad)
			rp.chain(params{T: T, d: d, v: grad})
			for i := range tr.v {
				fd := centralDifference(tr.v, i, 1e-6, loss)
				if math.Abs(fd-grad[i]) > 1e-6*(1+math.Abs(fd)) {
					t.Errorf("%s/%s: param %d: analytic %.9g, finite differences %.9g", gi, ts, i, grad[i], fd)
				}
			}
			// toTrained inverts toModel.
			back := newParams(T, d)
			rp.toModel(tr, m)
			rp.toTrained(m, back)
			for i := range back.v {
				if math.Abs(back.v[i]-tr.v[i]) > 1e-9*(1+math.Abs(tr.v[i])) {
					t.Fatalf("%s/%s: toTrained(toModel(p))[%d] = %v, want %v", gi, ts, i, back.v[i], tr.v[i])
				}
			}
		}
	}
}

// TestTrainOptions runs every option combination briefly and checks the
// file's metadata and that the model starts from the chosen θ.
func TestTrainOptions(t *testing.T) {
	data, _ := synthData(1)
	for _, gi := range []string{GateInputRaw, GateInputStandardize, GateInputScale} {
		for _, ti := range []string{ThetaInitNormal, ThetaInitScaled, ThetaInitMeanDiff} {
			cfg := DefaultTrainConfig()
			cfg.GateInput, cfg.ThetaInit, cfg.ThetaScale = gi, ti, ThetaScaleData
			cfg.Site = "l_out"
			cfg.Epochs = 1
			f, log, err := Train(context.Background(), data, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if f.Training["gate_input"] != gi || f.Training["theta_init"] != ti || f.Training["mmd_norm"] != MMDNormInitial || f.Training["mmd_weight"] == "" {
				t.Fatalf("metadata: %v", f.Training)
			}
			if len(log.MMDInitial) != 2 || len(log.Eval) != 2 || log.MMDInitial[0] <= 0 {
				t.Fatalf("log: initial MMD %v, eval %v", log.MMDInitial, log.Eval)
			}
			if err := f.Validate(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Mean-difference init: after one tiny step θ is still the mean difference.
	cfg := DefaultTrainConfig()
	cfg.Epochs, cfg.LR = 1, 1e-12
	f, _, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, pools, _ := flattenData(data)
	nearAll(t, "theta = mean difference", f.Attributes[0].Theta, meanDiffFlat(pools[0], 8), 1e-9)
	// Indistinguishable classes: the normalisation is floored and warned.
	same := []AttributeData{{Name: "same", Pos: data[0].Pos, Neg: data[0].Pos}}
	_, log, err := Train(context.Background(), same, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Warnings) == 0 || log.MMDInitial[0] > minMMDNorm {
		t.Fatalf("no warning for indistinguishable classes: %v %v", log.Warnings, log.MMDInitial)
	}
	for _, bad := range []func(*TrainConfig){
		func(c *TrainConfig) { c.GateInput = "x" },
		func(c *TrainConfig) { c.ThetaInit = "x" },
		func(c *TrainConfig) { c.ThetaScale = "x" },
		func(c *TrainConfig) { c.MMDNorm = "x" },
	} {
		c := DefaultTrainConfig()
		bad(&c)
		if _, _, err := Train(context.Background(), data, c); err == nil {
			t.Error("an unknown option was accepted")
		}
	}
	if _, err := PresetConfig("x"); err == nil {
		t.Error("unknown preset accepted")
	}
}
