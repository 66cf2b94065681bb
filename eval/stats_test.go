package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

// meanAgg is the mean of the values (one metric); allNaN is undefined.
func meanAgg(xs []float64, idx []int) []float64 {
	var s float64
	for _, i := range idx {
		s += xs[i]
	}
	return []float64{s / float64(len(idx))}
}

func TestQuantileType7(t *testing.T) {
	// Values computed by hand: position q·(n−1) between order statistics.
	xs := []float64{1, 2, 4, 8}
	for _, c := range []struct{ q, want float64 }{
		{0, 1}, {1, 8}, {0.5, 3}, {1.0 / 3, 2}, {0.25, 1.75}, {0.9, 6.8},
	} {
		if got := Quantile(xs, c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Quantile(%v, %g) = %g, want %g", xs, c.q, got, c.want)
		}
	}
	if got := Quantile([]float64{5}, 0.3); got != 5 {
		t.Errorf("one value: %g", got)
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("no values: want NaN")
	}
}

func TestBootstrapConstantIsZeroWidth(t *testing.T) {
	xs := make([]float64, 50)
	for i := range xs {
		xs[i] = 0.75
	}
	ivs, ok, err := BootstrapIntervals(xs, meanAgg, StatOptions{Resamples: 500})
	if err != nil || !ok[0] {
		t.Fatal(err, ok)
	}
	if ivs[0].Lo != 0.75 || ivs[0].Hi != 0.75 {
		t.Errorf("constant metric: interval %+v, want [0.75, 0.75]", ivs[0])
	}
}

// TestBootstrapMatchesNormalApproximation: for the mean of 0/1 outcomes the
// percentile interval is close to p ± 1.96·sqrt(p(1−p)/n).
func TestBootstrapMatchesNormalApproximation(t *testing.T) {
	n := 400
	xs := make([]float64, n)
	for i := 0; i < 240; i++ { // p = 0.6
		xs[i] = 1
	}
	ivs, ok, err := BootstrapIntervals(xs, meanAgg, StatOptions{Resamples: 4000, Seed: 7})
	if err != nil || !ok[0] {
		t.Fatal(err)
	}
	half := 1.96 * math.Sqrt(0.6*0.4/float64(n)) // 0.048
	if math.Abs(ivs[0].Lo-(0.6-half)) > 0.01 || math.Abs(ivs[0].Hi-(0.6+half)) > 0.01 {
		t.Errorf("interval %+v, want about [%.3f, %.3f]", ivs[0], 0.6-half, 0.6+half)
	}
	if !(ivs[0].Lo < 0.6 && 0.6 < ivs[0].Hi) {
		t.Errorf("interval %+v does not contain the estimate", ivs[0])
	}
}

func TestBootstrapDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	xs := make([]float64, 60)
	for i := range xs {
		xs[i] = rng.NormFloat64()
	}
	a, _, _ := BootstrapIntervals(xs, meanAgg, StatOptions{Seed: 3, Resamples: 300})
	b, _, _ := BootstrapIntervals(xs, meanAgg, StatOptions{Seed: 3, Resamples: 300})
	c, _, _ := BootstrapIntervals(xs, meanAgg, StatOptions{Seed: 4, Resamples: 300})
	if a[0] != b[0] {
		t.Errorf("same seed, different intervals: %+v %+v", a[0], b[0])
	}
	if a[0] == c[0] {
		t.Errorf("different seeds, identical intervals %+v", a[0])
	}
}

func TestBootstrapUndefinedMetric(t *testing.T) {
	// The metric is the mean of the values at even positions of idx that
	// are positive; undefined (NaN) when none is: with all values ≤ 0 every
	// resample is undefined and no interval is given.
	agg := func(xs []float64, idx []int) []float64 {
		var s float64
		n := 0
		for _, i := range idx {
			if xs[i] > 0 {
				s += xs[i]
				n++
			}
		}
		if n == 0 {
			return []float64{math.NaN(), 1}
		}
		return []float64{s / float64(n), 1}
	}
	_, ok, err := BootstrapIntervals([]float64{0, -1, -2}, agg, StatOptions{Resamples: 100})
	if err != nil {
		t.Fatal(err)
	}
	if ok[0] || !ok[1] {
		t.Errorf("ok = %v, want [false true]", ok)
	}
	if _, _, err := BootstrapIntervals([]float64{}, agg, StatOptions{}); err == nil {
		t.Error("no items: want an error")
	}
	if _, _, err := BootstrapIntervals([]float64{1}, agg, StatOptions{Level: 1.5}); err == nil {
		t.Error("level 1.5: want an error")
	}
}

func TestPairedIdenticalConditions(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	a := make([]float64, 80)
	for i := range a {
		a[i] = float64(rng.IntN(2))
	}
	ds, ok, err := PairedTests(a, append([]float64(nil), a...), meanAgg, StatOptions{Resamples: 500})
	if err != nil || !ok[0] {
		t.Fatal(err)
	}
	d := ds[0]
	if d.Diff != 0 || d.CI.Lo != 0 || d.CI.Hi != 0 || d.P != 1 {
		t.Errorf("identical conditions: %+v, want diff 0, CI [0, 0], p 1", d)
	}
}

func TestPairedShiftedCondition(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	n := 100
	a, b := make([]float64, n), make([]float64, n)
	for i := range a {
		a[i] = rng.NormFloat64()
		b[i] = a[i] + 0.5 // every item improves by the same amount
	}
	ds, ok, err := PairedTests(a, b, meanAgg, StatOptions{Resamples: 999})
	if err != nil || !ok[0] {
		t.Fatal(err)
	}
	d := ds[0]
	if math.Abs(d.Diff-0.5) > 1e-12 {
		t.Errorf("diff %g, want 0.5", d.Diff)
	}
	// Paired: the per-item difference is constant, so the interval has no
	// width even though the items themselves vary a lot.
	if math.Abs(d.CI.Lo-0.5) > 1e-12 || math.Abs(d.CI.Hi-0.5) > 1e-12 {
		t.Errorf("CI %+v, want [0.5, 0.5]", d.CI)
	}
	// No random swap of 100 items reproduces a difference of 0.5.
	if want := 1.0 / 1000; d.P != want {
		t.Errorf("p = %g, want %g (the smallest possible with 999 permutations)", d.P, want)
	}
	// Reversed: the difference and interval change sign, p stays.
	rs, _, _ := PairedTests(b, a, meanAgg, StatOptions{Resamples: 999})
	if rs[0].Diff != -d.Diff || rs[0].P != d.P {
		t.Errorf("reversed %+v vs %+v", rs[0], d)
	}
}

// TestPairedPermutationMatchesExact compares the Monte Carlo p-value with
// the exact one, computed by enumerating all 2^n swaps of a small example.
func TestPairedPermutationMatchesExact(t *testing.T) {
	a := []float64{1, 0, 1, 1, 0, 0, 1, 0, 0, 0}
	b := []float64{1, 1, 1, 1, 1, 0, 1, 1, 0, 1}
	// Per item b−a: 0,1,0,0,1,0,0,1,0,1 → observed mean difference 0.4;
	// swapping an item flips the sign of its difference, so the permuted
	// mean is (Σ ±1 over the 4 differing items)/10, and |d| ≥ 0.4 needs all
	// four signs equal: exact p = 2/16 = 0.125.
	n := len(a)
	obs := 0.0
	for i := range a {
		obs += (b[i] - a[i]) / float64(n)
	}
	extreme := 0
	for mask := 0; mask < 1<<n; mask++ {
		d := 0.0
		for i := 0; i < n; i++ {
			if mask>>i&1 == 1 {
				d += (a[i] - b[i]) / float64(n)
			} else {
				d += (b[i] - a[i]) / float64(n)
			}
		}
		if math.Abs(d) >= math.Abs(obs)-1e-12 {
			extreme++
		}
	}
	exact := float64(extreme) / float64(int(1)<<n)
	if math.Abs(exact-0.125) > 1e-12 {
		t.Fatalf("exact p = %g, want 0.125 (hand computation)", exact)
	}
	ds, _, err := PairedTests(a, b, meanAgg, StatOptions{Resamples: 20000, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ds[0].P-exact) > 0.01 {
		t.Errorf("Monte Carlo p = %g, exact %g", ds[0].P, exact)
	}
	if math.Abs(ds[0].Diff-0.4) > 1e-12 {
		t.Errorf("diff %g, want 0.4", ds[0].Diff)
	}
	if !(ds[0].CI.Lo > 0 && ds[0].CI.Hi <= 0.8+1e-12) {
		t.Errorf("CI %+v, want inside (0, 0.8]", ds[0].CI)
	}
}

func TestPairedErrors(t *testing.T) {
	if _, _, err := PairedTests([]float64{1, 2}, []float64{1}, meanAgg, StatOptions{}); err == nil {
		t.Error("misaligned conditions: want an error")
	}
	if _, _, err := PairedTests([]float64{}, []float64{}, meanAgg, StatOptions{}); err == nil {
		t.Error("no items: want an error")
	}
	if _, _, err := PairedTests([]float64{1}, []float64{1}, meanAgg, StatOptions{Resamples: -1}); err == nil {
		t.Error("negative resamples: want an error")
	}
}
