package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/matsteer/matsteer/steer"
)

// DefaultCalibrationGrid is the global strengths Calibrate tries first.
var DefaultCalibrationGrid = []float64{0.125, 0.25, 0.5, 1, 2, 4, 8}

// CalibrateOptions control Calibrate.
type CalibrateOptions struct {
	// MaxKL is the budget: the mean KL(unsteered ‖ steered) on the texts,
	// in nats per position. It must be positive.
	MaxKL float64
	// Grid is the ascending list of global strengths tried first (nil:
	// DefaultCalibrationGrid); its largest value caps the result.
	Grid []float64
	// Refine is the number of bisection steps (on log α) between the
	// largest grid strength within budget and the next one (0: 4;
	// negative: none).
	Refine int
	// Strengths are per-attribute strengths applied with every α.
	Strengths map[string]float64
	// Retention configures the KL passes.
	Retention RetentionOptions
}

// CalibrationPoint is one strength tried and its KL on the texts.
type CalibrationPoint struct {
	Alpha float64 `json:"alpha"`
	KL    float64 `json:"kl"`
	PPL   float64 `json:"ppl"`
}

// Calibration is the strongest global strength α of one steering file
// whose KL on neutral text stays within a budget.
type Calibration struct {
	Path  string  `json:"path"`
	MaxKL float64 `json:"max_kl"`
	// Alpha is the chosen strength (0 when even the smallest grid value
	// is over budget), KL and PPL its measurements.
	Alpha   float64 `json:"alpha"`
	KL      float64 `json:"kl"`
	PPL     float64 `json:"ppl"`
	PPLBase float64 `json:"ppl_base"`
	// Capped is set when the largest grid strength is within budget (the
	// budget would allow more).
	Capped bool               `json:"capped"`
	Tried  []CalibrationPoint `json:"tried"`
}

// Calibrate finds the largest global strength α for steering file f (read
// from path) whose mean KL divergence from the unsteered model on texts is
// at most opts.MaxKL. It measures every grid strength in one pass over the
// texts, then bisects on log α between the largest grid strength within
// budget and the next one, rounding midpoints to three significant digits.
// The answer is the largest strength measured below the first one over
// budget: if KL is not monotone in α, a larger strength that happens to be
// within budget again is not chosen.
func (r *Runner) Calibrate(ctx context.Context, texts []string, path string, f *steer.File, opts CalibrateOptions) (Calibration, error) {
	if !(opts.MaxKL > 0) || math.IsInf(opts.MaxKL, 0) {
		return Calibration{}, fmt.Errorf("eval: calibrate: KL budget must be a positive number, got %g", opts.MaxKL)
	}
	grid := opts.Grid
	if len(grid) == 0 {
		grid = DefaultCalibrationGrid
	}
	for i, a := range grid {
		if !(a > 0) || math.IsInf(a, 0) || i > 0 && a <= grid[i-1] {
			return Calibration{}, fmt.Errorf("eval: calibrate: grid must be ascending positive strengths, got %v", grid)
		}
	}
	refine := opts.Refine
	if refine == 0 {
		refine = 4
	}
	cal := Calibration{Path: path, MaxKL: opts.MaxKL}
	measure := func(alphas []float64) error {
		methods := make([]Method, len(alphas))
		for i, a := range alphas {
			m, err := NewMethod("alpha="+strconv.FormatFloat(a, 'g', -1, 64), path, f, steer.ApplyOptions{Global: a, Strengths: opts.Strengths}, r.model, r.cat)
			if err != nil {
				return err
			}
			methods[i] = m
		}
		res, err := r.Retention(ctx, texts, methods, opts.Retention)
		if err != nil {
			return err
		}
		for i, a := range alphas {
			cal.Tried = append(cal.Tried, CalibrationPoint{Alpha: a, KL: res[i].KL, PPL: res[i].PPL})
			cal.PPLBase = res[i].PPLBase
		}
		return nil
	}
	if err := measure(grid); err != nil {
		return cal, err
	}
	if !anySteered(cal.Tried) {
		return cal, errors.New("eval: calibrate: the steering changes nothing at any strength (all strengths zero?)")
	}
	// lo: largest grid strength within budget; hi: the next one.
	lo := -1
	for i, p := range cal.Tried {
		if p.KL <= opts.MaxKL {
			lo = i
		} else {
			break
		}
	}
	switch {
	case lo == len(grid)-1:
		cal.Capped = true
	case refine > 0:
		a, b := 0.0, grid[lo+1]
		if lo >= 0 {
			a = grid[lo]
		}
		for range refine {
			mid := b / 2
			if a > 0 {
				mid = math.Sqrt(a * b)
			}
			// Three significant digits: strengths people can type.
			mid = roundSignificant(mid, 3)
			if mid <= a || mid >= b {
				break
			}
			if err := measure([]float64{mid}); err != nil {
				return cal, err
			}
			if cal.Tried[len(cal.Tried)-1].KL <= opts.MaxKL {
				a = mid
			} else {
				b = mid
			}
		}
	}
	best := withinBudget(cal.Tried, opts.MaxKL)
	cal.Alpha, cal.KL, cal.PPL = best.Alpha, best.KL, best.PPL
	if best.Alpha == 0 {
		cal.PPL = cal.PPLBase
	}
	return cal, nil
}

// withinBudget sorts the measured strengths and returns the largest one
// below the first over budget (zero when the smallest is over): a larger
// strength within budget again, if KL is not monotone, is not trusted.
func withinBudget(tried []CalibrationPoint, maxKL float64) CalibrationPoint {
	sort.Slice(tried, func(i, j int) bool { return tried[i].Alpha < tried[j].Alpha })
	best := CalibrationPoint{}
	for _, p := range tried {
		if p.KL > maxKL {
			break
		}
		best = p
	}
	return best
}

func anySteered(ps []CalibrationPoint) bool {
	for _, p := range ps {
		if p.KL > 0 {
			return true
		}
	}
	return false
}

// roundSignificant rounds x > 0 to n significant digits.
func roundSignificant(x float64, n int) float64 {
	p := math.Pow(10, float64(n)-math.Ceil(math.Log10(x)))
	return math.Round(x*p) / p
}
