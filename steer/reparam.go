package steer

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/floats"
)

// Gate input options (TrainConfig.GateInput). The gate is always
// σ(w·a + b) on the raw activation a in the steering file; these options
// only change the coordinates in which w and b are trained.
const (
	// GateInputRaw trains w and b on the raw activations (the official code).
	GateInputRaw = "raw"
	// GateInputStandardize trains the gate on (a − μ)/s, with μ and s the
	// per-dimension mean and standard deviation of the training rows (all
	// attributes, positives and negatives): w̃ and b̃ are folded back into
	// w = w̃/s, b = b̃ − Σ_j w̃_j μ_j/s_j when the file is written.
	GateInputStandardize = "standardize"
	// GateInputScale trains the gate on a/r, r = (median row norm)/√d (every
	// coordinate is O(1), nothing is centred): w = w̃/r.
	GateInputScale = "scale"
)

// θ initialisations (TrainConfig.ThetaInit).
const (
	// ThetaInitNormal draws θ_t ~ N(0, I) (the official code).
	ThetaInitNormal = "normal"
	// ThetaInitScaled draws θ_t ~ N(0, s_t² I) with s_t = ‖μ_t^p − μ_t^n‖/√d,
	// so that ‖θ_t‖ ≈ the attribute's mean positive−negative difference.
	ThetaInitScaled = "scaled"
	// ThetaInitMeanDiff starts θ_t at the attribute's mean difference
	// μ_t^p − μ_t^n (the CAA / mean-difference vector).
	ThetaInitMeanDiff = "mean-diff"
)

// Theta learning-rate scalings (TrainConfig.ThetaScale).
const (
	// ThetaScaleNone trains θ directly: Adam moves each coordinate by about
	// lr per step whatever the scale of the activations (the official code).
	ThetaScaleNone = "none"
	// ThetaScaleData trains θ = r·φ with r = (median row norm)/√d, the RMS
	// coordinate of the activations: Adam then moves θ by about lr·r per
	// coordinate and step, i.e. lr is relative to the data's scale.
	ThetaScaleData = "data"
)

func validGateInput(s string) error {
	switch s {
	case GateInputRaw, GateInputStandardize, GateInputScale:
		return nil
	}
	return fmt.Errorf("unknown gate input %q (want %s, %s or %s)", s, GateInputRaw, GateInputStandardize, GateInputScale)
}

func validThetaInit(s string) error {
	switch s {
	case ThetaInitNormal, ThetaInitScaled, ThetaInitMeanDiff:
		return nil
	}
	return fmt.Errorf("unknown theta init %q (want %s, %s or %s)", s, ThetaInitNormal, ThetaInitScaled, ThetaInitMeanDiff)
}

func validThetaScale(s string) error {
	switch s {
	case ThetaScaleNone, ThetaScaleData:
		return nil
	}
	return fmt.Errorf("unknown theta scale %q (want %s or %s)", s, ThetaScaleNone, ThetaScaleData)
}

// reparam maps the trained parameters (θ̃, w̃, b̃) to the model's (θ, w, b):
//
//	θ = r_θ·θ̃,   w_t = w̃_t ⊘ s,   b_t = b̃_t − Σ_j w̃_tj μ_j/s_j
//
// an affine map, so the gradient is chained exactly by its transpose. A nil
// *reparam is the identity (and costs nothing).
type reparam struct {
	T, d   int
	mu     []float64 // gate input centre (nil: 0)
	inv    []float64 // 1/s per dimension (nil: gate input not rescaled)
	muInv  []float64 // μ_j/s_j
	thetaR float64   // θ scale (1: none)
}

// dataStats holds the per-dimension mean and standard deviation and the
// median row norm of the training rows.
type dataStats struct {
	mean, std  []float64
	medianNorm float64
}

func poolStats(pools []pool, d int) dataStats {
	st := dataStats{mean: make([]float64, d), std: make([]float64, d)}
	n := 0
	var norms []float64
	each := func(f func(r []float64)) {
		for _, p := range pools {
			for _, rows := range [][]float64{p.pos, p.neg} {
				for i := 0; i+d <= len(rows); i += d {
					f(rows[i : i+d])
				}
			}
		}
	}
	each(func(r []float64) {
		floats.Add(st.mean, r)
		norms = append(norms, math.Sqrt(floats.Dot(r, r)))
		n++
	})
	floats.Scale(1/float64(n), st.mean)
	each(func(r []float64) {
		for j, v := range r {
			dv := v - st.mean[j]
			st.std[j] += dv * dv
		}
	})
	for j := range st.std {
		st.std[j] = math.Sqrt(st.std[j] / float64(n))
	}
	slices.Sort(norms)
	st.medianNorm = median(norms)
	return st
}

// newReparam returns the map for cfg, or nil for the identity (the official
// parameterisation).
func newReparam(cfg TrainConfig, st dataStats, T, d int) (*reparam, error) {
	if cfg.GateInput == GateInputRaw && cfg.ThetaScale == ThetaScaleNone {
		return nil, nil
	}
	r := &reparam{T: T, d: d, thetaR: 1}
	rms := st.medianNorm / math.Sqrt(float64(d))
	if (cfg.GateInput == GateInputScale || cfg.ThetaScale == ThetaScaleData) && !(rms > 0) {
		return nil, fmt.Errorf("the training rows are all zero: cannot scale to them")
	}
	switch cfg.GateInput {
	case GateInputStandardize:
		// A constant dimension carries no information for the gate; give it
		// the RMS scale so that w̃ stays bounded there.
		floor := 1e-6 * rms
		if !(floor > 0) {
			floor = 1e-300
		}
		r.mu = slices.Clone(st.mean)
		r.inv = make([]float64, d)
		r.muInv = make([]float64, d)
		for j, s := range st.std {
			if !(s > floor) {
				s = max(rms, 1)
			}
			r.inv[j] = 1 / s
			r.muInv[j] = r.mu[j] / s
		}
	case GateInputScale:
		r.inv = make([]float64, d)
		for j := range r.inv {
			r.inv[j] = 1 / rms
		}
	}
	if cfg.ThetaScale == ThetaScaleData {
		r.thetaR = rms
	}
	return r, nil
}

// toModel writes the model parameters for the trained ones into m.
func (r *reparam) toModel(tr, m params) {
	if r == nil {
		copy(m.v, tr.v)
		return
	}
	if r.thetaR == 1 {
		copy(m.theta(), tr.theta())
	} else {
		floats.ScaleTo(m.theta(), r.thetaR, tr.theta())
	}
	copy(m.b(), tr.b())
	for t := 0; t < r.T; t++ {
		wt, mt := tr.wT(t), m.wT(t)
		if r.inv == nil {
			copy(mt, wt)
			continue
		}
		floats.MulTo(mt, wt, r.inv)
		if r.muInv != nil {
			m.b()[t] -= floats.Dot(wt, r.muInv)
		}
	}
}

// toTrained is the inverse of toModel (used to start from given model
// parameters).
func (r *reparam) toTrained(m, tr params) {
	if r == nil {
		copy(tr.v, m.v)
		return
	}
	floats.ScaleTo(tr.theta(), 1/r.thetaR, m.theta())
	copy(tr.b(), m.b())
	for t := 0; t < r.T; t++ {
		wt, mt := tr.wT(t), m.wT(t)
		if r.inv == nil {
			copy(wt, mt)
			continue
		}
		floats.DivTo(wt, mt, r.inv)
		if r.muInv != nil {
			tr.b()[t] += floats.Dot(wt, r.muInv)
		}
	}
}

// chain turns the gradient with respect to the model parameters (in place)
// into the gradient with respect to the trained ones.
func (r *reparam) chain(g params) {
	if r == nil {
		return
	}
	if r.thetaR != 1 {
		floats.Scale(r.thetaR, g.theta())
	}
	if r.inv == nil {
		return
	}
	for t := 0; t < r.T; t++ {
		gw := g.wT(t)
		floats.Mul(gw, r.inv)
		if r.muInv != nil {
			floats.AddScaled(gw, -g.b()[t], r.muInv)
		}
	}
}
