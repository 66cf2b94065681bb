package steer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func randRows(rng *rand.Rand, n, d int, scale float64) []float64 {
	out := make([]float64, n*d)
	for i := range out {
		out[i] = scale * rng.NormFloat64()
	}
	return out
}

// TestGradientsFiniteDifferences compares the analytic gradient with central
// finite differences for both modes, with and without norm preservation,
// with one and several bandwidths and uneven batch sizes.
func TestGradientsFiniteDifferences(t *testing.T) {
	const T, d = 3, 5
	for _, mode := range []string{ModeReference, ModePaper} {
		for _, np := range []bool{true, false} {
			for _, sig := range [][]float64{{2}, {0.7, 1.5, 3}} {
				name := fmt.Sprintf("%s/norm=%v/sigmas=%v", mode, np, sig)
				t.Run(name, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(7, uint64(len(sig))))
					p := newParams(T, d)
					for i := range p.v {
						p.v[i] = 0.6 * rng.NormFloat64()
					}
					var batches []attrBatch
					for a := 0; a < T; a++ {
						bp, bn := 3+a, 4-a%2
						pos := randRows(rng, bp, d, 1)
						b := attrBatch{attr: a, neg: randRows(rng, bn, d, 1), pos: pos, mmdPos: pos}
						if mode == ModeReference {
							b.mmdPos = randRows(rng, bp+1, d, 1)
						}
						batches = append(batches, b)
					}
					o := &objective{reference: mode == ModeReference, sigmas: sig, lambdaPos: 0.9, lambdaSparse: 0.8, lambdaOrtho: 0.3, normPreserve: np}
					work := make([]attrWork, T)
					grad := make([]float64, len(p.v))
					o.lossGrad(p, batches, work, grad)
					scratch := make([]float64, len(p.v))
					loss := func() float64 { return o.lossGrad(p, batches, work, scratch).Total }
					const h = 1e-5
					worst := 0.0
					for i := range p.v {
						fd := centralDifference(p.v, i, h, loss)
						err := math.Abs(fd-grad[i]) / math.Max(1e-3, math.Abs(fd)+math.Abs(grad[i]))
						worst = math.Max(worst, err)
						if err > 1e-6 {
							t.Errorf("param %d: analytic %.10g, finite difference %.10g", i, grad[i], fd)
						}
					}
					if worst == 0 {
						t.Fatal("no parameter was checked")
					}
				})
			}
		}
	}
}

// centralDifference is (f(x+h) − f(x−h)) / 2h for x = v[i]; v[i] is
// restored afterwards.
func centralDifference(v []float64, i int, h float64, f func() float64) float64 {
	x := v[i]
	v[i] = x + h
	up := f()
	v[i] = x - h
	down := f()
	v[i] = x
	return (up - down) / (2 * h)
}
