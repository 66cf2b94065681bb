package eval

// Statistics over items: percentile bootstrap intervals for a condition's
// metrics and paired tests between two conditions scored on the same items.
// The functions here know nothing about tasks: a metric is anything an
// aggregate function computes from a resampled list of item records.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Defaults for StatOptions.
const (
	DefaultResamples = 2000
	DefaultLevel     = 0.95
	DefaultStatSeed  = 1
)

// StatOptions control BootstrapIntervals and PairedTests. The zero value
// means the defaults: 2000 resamples (bootstrap and permutation each), a
// 95% interval, seed 1.
type StatOptions struct {
	// Resamples is the number of bootstrap resamples and of random
	// permutations (0: DefaultResamples).
	Resamples int `json:"resamples"`
	// Level is the interval's coverage in (0, 1) (0: DefaultLevel).
	Level float64 `json:"level"`
	// Seed seeds the resampling; the same seed, items and metrics give the
	// same intervals and p-values (0: DefaultStatSeed).
	Seed uint64 `json:"seed"`
}

// WithDefaults returns o with zero fields set to the defaults, or an error
// when a field is out of range.
func (o StatOptions) WithDefaults() (StatOptions, error) { return o.withDefaults() }

func (o StatOptions) withDefaults() (StatOptions, error) {
	if o.Resamples == 0 {
		o.Resamples = DefaultResamples
	}
	if o.Level == 0 {
		o.Level = DefaultLevel
	}
	if o.Seed == 0 {
		o.Seed = DefaultStatSeed
	}
	if o.Resamples < 1 || o.Resamples > 1_000_000 {
		return o, fmt.Errorf("eval: %d resamples, want 1..1000000", o.Resamples)
	}
	if !(o.Level > 0 && o.Level < 1) {
		return o, fmt.Errorf("eval: interval level %g, want a number in (0, 1)", o.Level)
	}
	return o, nil
}

// Interval is a two-sided confidence interval.
type Interval struct {
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// Aggregate computes metric values from the records xs[idx[0]],
// xs[idx[1]], ... (an index may repeat). It returns one value per metric,
// always the same number, NaN for a metric that is undefined on these
// records.
type Aggregate[T any] func(xs []T, idx []int) []float64

// Quantile returns the q-quantile of sorted values by linear interpolation
// between order statistics (Hyndman and Fan's type 7, R's default): the
// value at position q·(n−1), 0-based. It is NaN for no values.
func Quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	h := q * float64(n-1)
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	if lo < 0 {
		return sorted[0]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// percentile returns the central level-interval of the finite values in vs
// (sorted in place), and false when fewer than half of them are finite (the
// metric is undefined in too many resamples to say anything).
func percentile(vs []float64, level float64) (Interval, bool) {
	fin := vs[:0]
	total := len(vs)
	for _, v := range vs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			fin = append(fin, v)
		}
	}
	if len(fin) == 0 || 2*len(fin) < total {
		return Interval{}, false
	}
	sort.Float64s(fin)
	a := (1 - level) / 2
	return Interval{Lo: Quantile(fin, a), Hi: Quantile(fin, 1-a)}, true
}

func identity(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// resample fills idx with n draws, with replacement, from 0..n−1.
func resample(rng *rand.Rand, idx []int) {
	n := len(idx)
	for i := range idx {
		idx[i] = rng.IntN(n)
	}
}

// BootstrapIntervals returns the percentile bootstrap interval of every
// metric agg computes over xs: items are drawn with replacement
// (Resamples times, n of n) and the metrics recomputed. An interval is
// absent (ok[k] false) when the metric is undefined in more than half of
// the resamples. It is an error for xs to be empty.
func BootstrapIntervals[T any](xs []T, agg Aggregate[T], o StatOptions) ([]Interval, []bool, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	if len(xs) == 0 {
		return nil, nil, errors.New("eval: bootstrap over no items")
	}
	nm := len(agg(xs, identity(len(xs))))
	draws := make([][]float64, nm)
	for k := range draws {
		draws[k] = make([]float64, o.Resamples)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x626f6f74)) // "boot"
	idx := make([]int, len(xs))
	for b := 0; b < o.Resamples; b++ {
		resample(rng, idx)
		v := agg(xs, idx)
		if len(v) != nm {
			return nil, nil, fmt.Errorf("eval: aggregate returned %d values, then %d", nm, len(v))
		}
		for k := range v {
			draws[k][b] = v[k]
		}
	}
	ivs := make([]Interval, nm)
	ok := make([]bool, nm)
	for k := range draws {
		ivs[k], ok[k] = percentile(draws[k], o.Level)
	}
	return ivs, ok, nil
}

// Difference is a paired comparison of one metric between two conditions
// on the same items: B − A.
type Difference struct {
	// Diff is metric(B) − metric(A) on all items.
	Diff float64 `json:"diff"`
	// CI is the paired bootstrap percentile interval of the difference
	// (the same resampled items for both conditions).
	CI Interval `json:"ci"`
	// P is the two-sided p-value of a paired permutation test: within every
	// item the two conditions' records are swapped with probability 1/2 and
	// the difference recomputed; P = (1 + #{|d_perm| ≥ |Diff|}) / (1 + R)
	// for R permutations, so it is never 0 and is 1 when the conditions
	// agree on every item.
	P float64 `json:"p"`
}

// tolerance absorbs rounding when permuted differences are compared with
// the observed one (a permutation that reproduces the observed split of
// items must count as at least as extreme).
func tolerance(d float64) float64 { return 1e-12 * math.Max(1, math.Abs(d)) }

// PairedTests compares every metric agg computes between conditions A and
// B, whose records a and b are aligned (a[i] and b[i] are the same item):
// the observed difference B − A, its paired bootstrap interval and a
// paired permutation p-value (see Difference). ok[k] is false when metric k
// is undefined for either condition on all items, or undefined in more
// than half of the resamples.
func PairedTests[T any](a, b []T, agg Aggregate[T], o StatOptions) ([]Difference, []bool, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	n := len(a)
	if n == 0 {
		return nil, nil, errors.New("eval: paired test over no items")
	}
	if len(b) != n {
		return nil, nil, fmt.Errorf("eval: paired test of %d and %d items", n, len(b))
	}
	all := identity(n)
	va, vb := agg(a, all), agg(b, all)
	nm := len(va)
	if len(vb) != nm {
		return nil, nil, fmt.Errorf("eval: aggregate returned %d values, then %d", nm, len(vb))
	}
	obs := make([]float64, nm)
	for k := range obs {
		obs[k] = vb[k] - va[k]
	}
	boot := make([][]float64, nm)
	extreme := make([]int, nm)
	defined := make([]int, nm)
	for k := range boot {
		boot[k] = make([]float64, o.Resamples)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x70616972)) // "pair"
	idx := make([]int, n)
	for r := 0; r < o.Resamples; r++ {
		resample(rng, idx)
		ra, rb := agg(a, idx), agg(b, idx)
		for k := 0; k < nm; k++ {
			boot[k][r] = rb[k] - ra[k]
		}
	}
	pa, pb := make([]T, n), make([]T, n)
	prng := rand.New(rand.NewPCG(o.Seed, 0x7065726d)) // "perm"
	for r := 0; r < o.Resamples; r++ {
		for i := 0; i < n; i++ {
			if prng.IntN(2) == 0 {
				pa[i], pb[i] = a[i], b[i]
			} else {
				pa[i], pb[i] = b[i], a[i]
			}
		}
		ra, rb := agg(pa, all), agg(pb, all)
		for k := 0; k < nm; k++ {
			d := rb[k] - ra[k]
			if math.IsNaN(d) {
				continue
			}
			defined[k]++
			if math.Abs(d) >= math.Abs(obs[k])-tolerance(obs[k]) {
				extreme[k]++
			}
		}
	}
	out := make([]Difference, nm)
	ok := make([]bool, nm)
	for k := 0; k < nm; k++ {
		if math.IsNaN(obs[k]) {
			continue
		}
		ci, good := percentile(boot[k], o.Level)
		if !good || 2*defined[k] < o.Resamples {
			continue
		}
		out[k] = Difference{Diff: obs[k], CI: ci, P: float64(1+extreme[k]) / float64(1+defined[k])}
		ok[k] = true
	}
	return out, ok, nil
}
