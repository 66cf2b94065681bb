package steer

import (
	"fmt"
	"math"
)

// Neutral rows (TrainConfig.Neutral, LambdaNeutral): activations of ordinary
// text that belongs to no attribute, e.g. neutral sentences and the chat
// template's tokens. The paper's losses only see each attribute's
// positives and negatives, so a gate is free to open on anything else; on
// real activations it does (in the demo the formality gate opens at
// 0.8-1.0 on "<|im_start|>", "user", "assistant"). The neutral term
//
//	L_neutral = Σ_{a ∈ neutral} Σ_t G_t(a)
//
// (reference mode: the mean over the step's neutral rows × T gates, as the
// official reductions of L_sparse) is a sparsity penalty on every gate over
// a batch of neutral rows each step, weighted by LambdaNeutral, so the gates
// learn what ordinary text looks like and stay shut on it.

// maxNeutralRows bounds the neutral rows kept (the rest are ignored in
// order): they only feed one batch a step.
const maxNeutralRows = 1 << 20

// flattenNeutral validates the neutral rows against the row width d.
func flattenNeutral(rows [][]float64, d int) ([]float64, int, error) {
	if len(rows) > maxNeutralRows {
		return nil, 0, fmt.Errorf("%d neutral rows, at most %d", len(rows), maxNeutralRows)
	}
	out := make([]float64, 0, len(rows)*d)
	for i, r := range rows {
		if len(r) != d {
			return nil, 0, fmt.Errorf("neutral row %d has %d values, want n_embd=%d", i, len(r), d)
		}
		if j := firstNonFinite(r); j >= 0 {
			return nil, 0, fmt.Errorf("neutral row %d has a non-finite value at %d", i, j)
		}
		out = append(out, r...)
	}
	return out, len(rows), nil
}

// neutralLossGrad returns Σ_i Σ_t g_t(x_i) over the n rows of x (n×d) and
// adds scale times its gradient (gate weights and biases only) to grad. z
// is scratch space (returned for reuse).
func neutralLossGrad(p params, x []float64, n int, scale float64, z, grad []float64) (float64, []float64) {
	T, d := p.T, p.d
	z = grow(z, n*T)
	matNT(z, 0, x, p.w(), n, T, d)
	gW := grad[T*d : 2*T*d]
	gB := grad[2*T*d:]
	sum := 0.0
	for i := 0; i < n; i++ {
		xi := x[i*d : (i+1)*d]
		for t := 0; t < T; t++ {
			g := sigmoid(z[i*T+t] + p.b()[t])
			sum += g
			c := scale * g * (1 - g)
			if c == 0 {
				continue
			}
			gB[t] += c
			wt := gW[t*d : (t+1)*d]
			for j, v := range xi {
				wt[j] += c * v
			}
		}
	}
	return sum, z
}

// meanGates returns each attribute's mean gate over the n rows of x.
func meanGates(p params, x []float64, n int) []float64 {
	out := make([]float64, p.T)
	if n == 0 {
		return out
	}
	g, _, _ := forward(p, x, n, false, 0)
	for t := range out {
		out[t] = meanCol(g, p.T, t)
	}
	return out
}

func validLambda(name string, v float64) error {
	if !(v >= 0) || math.IsInf(v, 0) {
		return fmt.Errorf("%s %v must be a finite number >= 0", name, v)
	}
	return nil
}
