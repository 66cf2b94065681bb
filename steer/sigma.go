package steer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/floats"
)

// DefaultSigma is the paper's and the official code's kernel bandwidth.
const DefaultSigma = 2.0

// medianSampleRows is how many rows the median heuristic and the underflow
// check look at.
const medianSampleRows = 256

// Sigma selects the Gaussian-kernel bandwidth(s) of the MMD loss. With more
// than one bandwidth the kernel is the sum of the kernels. Exactly one of
// Values (fixed bandwidths) and MedianScales (multiples of the median
// pairwise distance of a sample of the training rows) is set.
type Sigma struct {
	Values       []float64
	MedianScales []float64
}

// FixedSigma returns fixed bandwidths.
func FixedSigma(v ...float64) Sigma { return Sigma{Values: v} }

// MedianSigma returns bandwidths relative to the median pairwise distance
// (scale 1 when none is given).
func MedianSigma(scales ...float64) Sigma {
	if len(scales) == 0 {
		scales = []float64{1}
	}
	return Sigma{MedianScales: scales}
}

// MultiSigma is the multi-bandwidth default: median × {0.5, 1, 2}.
func MultiSigma() Sigma { return MedianSigma(0.5, 1, 2) }

// ParseSigma parses a --sigma value:
//
//	2              fixed σ = 2
//	1,2,4          sum of kernels with σ = 1, 2, 4
//	median         σ = median pairwise distance
//	median*0.5     σ = 0.5 × median
//	multi          σ = median × {0.5, 1, 2}
//	multi:0.25,1,4 σ = median × {0.25, 1, 4}
func ParseSigma(s string) (Sigma, error) {
	s = strings.TrimSpace(s)
	list := func(v string) ([]float64, error) {
		var out []float64
		for _, f := range strings.Split(v, ",") {
			x, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return nil, fmt.Errorf("sigma %q: %q is not a number", s, f)
			}
			out = append(out, x)
		}
		return out, nil
	}
	var sg Sigma
	switch {
	case s == "median":
		sg = MedianSigma()
	case strings.HasPrefix(s, "median*"):
		v, err := list(strings.TrimPrefix(s, "median*"))
		if err != nil {
			return Sigma{}, err
		}
		if len(v) != 1 {
			return Sigma{}, fmt.Errorf("sigma %q: want median*X", s)
		}
		sg = MedianSigma(v...)
	case s == "multi":
		sg = MultiSigma()
	case strings.HasPrefix(s, "multi:"):
		v, err := list(strings.TrimPrefix(s, "multi:"))
		if err != nil {
			return Sigma{}, err
		}
		sg = MedianSigma(v...)
	default:
		v, err := list(s)
		if err != nil {
			return Sigma{}, fmt.Errorf("sigma %q: want a number, a comma list, median, median*X, multi or multi:X,Y", s)
		}
		sg = FixedSigma(v...)
	}
	if err := sg.validate(); err != nil {
		return Sigma{}, err
	}
	return sg, nil
}

func (s Sigma) validate() error {
	if (len(s.Values) == 0) == (len(s.MedianScales) == 0) {
		return fmt.Errorf("sigma: set exactly one of fixed values and median scales")
	}
	for _, v := range append(slices.Clone(s.Values), s.MedianScales...) {
		if !(v > 0) || math.IsInf(v, 0) || v > 1e12 {
			return fmt.Errorf("sigma: %v is out of range: each bandwidth or median scale must be in (0, 1e12]", v)
		}
	}
	if len(s.Values)+len(s.MedianScales) > 16 {
		return fmt.Errorf("sigma: at most 16 bandwidths")
	}
	return nil
}

func fmtList(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

// String is the ParseSigma form.
func (s Sigma) String() string {
	switch {
	case len(s.Values) > 0:
		return fmtList(s.Values)
	case len(s.MedianScales) == 1 && s.MedianScales[0] == 1:
		return "median"
	case len(s.MedianScales) == 1:
		return "median*" + fmtList(s.MedianScales)
	default:
		return "multi:" + fmtList(s.MedianScales)
	}
}

// kernelScale describes the pairwise-distance scale of a row sample and how
// the chosen bandwidths behave on it.
type kernelScale struct {
	Median    float64 // median pairwise distance
	Underflow float64 // fraction of pairs whose summed kernel is below kernelTiny
	MedianK   float64 // median of the summed kernel over pairs
}

// sampleDistances returns the pairwise distances of up to medianSampleRows
// rows drawn (without replacement) from all pools.
func sampleDistances(pools [][]float64, d int, rng *rand.Rand) []float64 {
	total := 0
	for _, p := range pools {
		total += len(p) / d
	}
	k := min(total, medianSampleRows)
	idx := make([]int, total)
	for i := range idx {
		idx[i] = i
	}
	for i := 0; i < k; i++ {
		j := i + rng.IntN(total-i)
		idx[i], idx[j] = idx[j], idx[i]
	}
	rows := make([][]float64, k)
	for i := 0; i < k; i++ {
		r := idx[i]
		for _, p := range pools {
			if n := len(p) / d; r < n {
				rows[i] = p[r*d : (r+1)*d]
				break
			} else {
				r -= n
			}
		}
	}
	dists := make([]float64, 0, k*(k-1)/2)
	for i := 0; i < k; i++ {
		for j := i + 1; j < k; j++ {
			dists = append(dists, floats.Distance(rows[i], rows[j], 2))
		}
	}
	return dists
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// resolveSigmas turns s into bandwidths for the sampled distances and
// reports the kernel's behaviour on them.
func resolveSigmas(s Sigma, dists []float64) ([]float64, kernelScale, error) {
	ks := kernelScale{Median: median(dists)}
	var sig []float64
	if len(s.Values) > 0 {
		sig = slices.Clone(s.Values)
	} else {
		if !(ks.Median > 0) {
			return nil, ks, fmt.Errorf("median heuristic: the sampled rows are all identical (median pairwise distance %v)", ks.Median)
		}
		for _, m := range s.MedianScales {
			sig = append(sig, m*ks.Median)
		}
	}
	if len(dists) > 0 {
		kv := make([]float64, len(dists))
		zero := 0
		for i, d := range dists {
			for _, sg := range sig {
				kv[i] += math.Exp(-d * d / (2 * sg * sg))
			}
			if kv[i] < kernelTiny {
				zero++
			}
		}
		ks.Underflow = float64(zero) / float64(len(dists))
		ks.MedianK = median(kv)
	}
	return sig, ks, nil
}

// kernelWarning returns a warning when the kernel is too narrow for the data.
func kernelWarning(s Sigma, sig []float64, ks kernelScale) string {
	if ks.Underflow < 0.5 && ks.MedianK >= 1e-8 {
		return ""
	}
	return fmt.Sprintf("kernel bandwidth sigma=%s (%s) is small for these activations: median pairwise distance %.4g, "+
		"%.1f%% of off-diagonal kernel values are below 1e-38 (0 in float32), median kernel value %.3g; the MMD term is then nearly "+
		"constant and gives almost no gradient, so training is driven by the gate penalties alone. "+
		"Use --sigma median or --sigma multi (or a fixed sigma near the median distance)",
		s, fmtList(sig), ks.Median, 100*ks.Underflow, ks.MedianK)
}
