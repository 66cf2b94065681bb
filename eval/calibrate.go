package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/matsteer/matsteer/steer"
)

// DefaultCalibrationGrid is the global strengths Calibrate tries first.
var DefaultCalibrationGrid = []float64{0.125, 0.25, 0.5, 1, 2, 4, 8}

// CalibrateOptions control Calibrate.
type CalibrateOptions struct {
	// MaxKL is the budget: the mean KL(unsteered ‖ steered) on the texts,
	// in nats per position. It must be positive.
	MaxKL float64
	// MaxKLP99, when positive, is a second budget on the tail: the 99th
	// percentile of the per-position KL (RetentionResult.KLP99). A
	// strength is within budget when both hold. 0: no tail budget.
	MaxKLP99 float64
	// Grid is the ascending list of global strengths tried first (nil:
	// DefaultCalibrationGrid); its largest value caps the result unless
	// MaxAlpha is larger.
	Grid []float64
	// MaxAlpha, when above the grid's largest strength, lets a file that
	// is within budget at every grid strength go further: the strength is
	// doubled (one pass each) until it is over budget or would exceed
	// MaxAlpha, then bisected as usual. Gated steering that leaves most
	// neutral tokens alone can need far more α than the grid holds to
	// spend its budget. 0: the grid caps α.
	MaxAlpha float64
	// Refine is the number of bisection steps (on log α) between the
	// largest grid strength within budget and the next one (0: 4;
	// negative: none).
	Refine int
	// Strengths are per-attribute strengths applied with every α.
	Strengths map[string]float64
	// Sequences are further KL sequences (e.g. ChatReplies) whose
	// compared positions are pooled with the texts': the budget holds for
	// the mean and 99th percentile over all of them. With Sequences, texts
	// may be empty.
	Sequences []KLSequence
	// Retention configures the KL passes.
	Retention RetentionOptions
}

// CalibrationPoint is one strength tried and its KL on the texts: the
// mean over positions, the 99th percentile and the maximum.
type CalibrationPoint struct {
	Alpha float64 `json:"alpha"`
	KL    float64 `json:"kl"`
	KLP99 float64 `json:"kl_p99"`
	KLMax float64 `json:"kl_max"`
	PPL   float64 `json:"ppl"`
}

// Which budget a strength exceeded (Calibration.BoundBy).
const (
	BoundMean = "mean"     // the mean KL is over MaxKL
	BoundP99  = "p99"      // the 99th percentile is over MaxKLP99
	BoundBoth = "mean+p99" // both
)

// Calibration is the strongest global strength α of one steering file
// whose KL on neutral text stays within a budget.
type Calibration struct {
	Path     string  `json:"path"`
	MaxKL    float64 `json:"max_kl"`
	MaxKLP99 float64 `json:"max_kl_p99,omitempty"`
	// Alpha is the chosen strength (0 when even the smallest grid value
	// is over budget), KL, KLP99, KLMax and PPL its measurements.
	Alpha   float64 `json:"alpha"`
	KL      float64 `json:"kl"`
	KLP99   float64 `json:"kl_p99"`
	KLMax   float64 `json:"kl_max"`
	PPL     float64 `json:"ppl"`
	PPLBase float64 `json:"ppl_base"`
	// Capped is set when the largest strength tried is within budget
	// (the grid's largest, or the last doubling up to MaxAlpha): the
	// budget would allow more.
	Capped bool `json:"capped"`
	// Positions is the number of next-token distributions compared per
	// strength; Texts and Replies count the neutral texts and chat
	// replies (CalibrateOptions.Sequences) they come from.
	Positions int `json:"positions"`
	Texts     int `json:"texts"`
	Replies   int `json:"replies,omitempty"`
	// BoundBy says which budget the smallest strength over budget
	// exceeded (BoundMean, BoundP99 or BoundBoth; empty when capped).
	BoundBy string             `json:"bound_by,omitempty"`
	Tried   []CalibrationPoint `json:"tried"`
}

// Calibrate finds the largest global strength α for steering file f (read
// from path) whose mean KL divergence from the unsteered model on texts is
// at most opts.MaxKL (and, with opts.MaxKLP99 > 0, whose 99th percentile of
// the per-position KL is at most opts.MaxKLP99). It measures every grid strength in one pass over the
// texts, then bisects on log α between the largest grid strength within
// budget and the next one, rounding midpoints to three significant digits.
// The answer is the largest strength measured below the first one over
// budget: if KL is not monotone in α, a larger strength that happens to be
// within budget again is not chosen.
func (r *Runner) Calibrate(ctx context.Context, texts []string, path string, f *steer.File, opts CalibrateOptions) (Calibration, error) {
	if !(opts.MaxKL > 0) || math.IsInf(opts.MaxKL, 0) {
		return Calibration{}, fmt.Errorf("eval: calibrate: KL budget must be a positive number, got %g", opts.MaxKL)
	}
	if !(opts.MaxKLP99 >= 0) || math.IsInf(opts.MaxKLP99, 0) {
		return Calibration{}, fmt.Errorf("eval: calibrate: the 99th-percentile KL budget must be a positive number (0: none), got %g", opts.MaxKLP99)
	}
	bud := budget{mean: opts.MaxKL, p99: opts.MaxKLP99}
	grid := opts.Grid
	if len(grid) == 0 {
		grid = DefaultCalibrationGrid
	}
	for i, a := range grid {
		if !(a > 0) || math.IsInf(a, 0) || i > 0 && a <= grid[i-1] {
			return Calibration{}, fmt.Errorf("eval: calibrate: grid must be ascending positive strengths, got %v", grid)
		}
	}
	if !(opts.MaxAlpha >= 0) || math.IsInf(opts.MaxAlpha, 0) || opts.MaxAlpha > steer.MaxStrength {
		return Calibration{}, fmt.Errorf("eval: calibrate: the largest strength must be in [0, %g] (0: the grid's), got %g", steer.MaxStrength, opts.MaxAlpha)
	}
	grid = slices.Clone(grid) // doublings past the grid are appended
	refine := opts.Refine
	if refine == 0 {
		refine = 4
	}
	var seqs []KLSequence
	if len(texts) > 0 {
		var err error
		if seqs, err = r.TextSequences(texts); err != nil {
			return Calibration{}, err
		}
	}
	cal := Calibration{Path: path, MaxKL: opts.MaxKL, MaxKLP99: opts.MaxKLP99}
	for _, s := range seqs {
		if s.Tokens != nil {
			cal.Texts++
		}
	}
	for _, s := range opts.Sequences {
		if s.Tokens != nil {
			cal.Replies++
		}
	}
	seqs = append(seqs, opts.Sequences...)
	if len(seqs) == 0 {
		return Calibration{}, errors.New("eval: calibrate: no texts")
	}
	// The unsteered passes are the same for every strength: kept between
	// the passes (up to refCacheBytes).
	cache := &refCache{}
	measure := func(alphas []float64) error {
		methods := make([]Method, len(alphas))
		for i, a := range alphas {
			m, err := NewMethod("alpha="+strconv.FormatFloat(a, 'g', -1, 64), path, f, steer.ApplyOptions{Global: a, Strengths: opts.Strengths}, r.model, r.cat)
			if err != nil {
				return err
			}
			methods[i] = m
		}
		ro := opts.Retention
		ro.cache = cache
		if ro.Progress != nil && ro.Label == "" {
			as := make([]string, len(alphas))
			for i, a := range alphas {
				as[i] = strconv.FormatFloat(a, 'g', -1, 64)
			}
			ro.Label = "α " + strings.Join(as, ",")
		}
		res, err := r.RetentionSequences(ctx, seqs, methods, ro)
		if err != nil {
			return err
		}
		cal.Positions = res[0].Positions
		for i, a := range alphas {
			cal.Tried = append(cal.Tried, CalibrationPoint{Alpha: a, KL: res[i].KL, KLP99: res[i].KLP99, KLMax: res[i].KLMax, PPL: res[i].PPL})
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
		if bud.within(p) {
			lo = i
		} else {
			break
		}
	}
	// Within budget at every grid strength: double up to MaxAlpha.
	for lo == len(grid)-1 && grid[lo]*2 <= opts.MaxAlpha {
		a := grid[lo] * 2
		if err := measure([]float64{a}); err != nil {
			return cal, err
		}
		grid = append(grid, a)
		if bud.within(cal.Tried[len(cal.Tried)-1]) {
			lo++
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
			if bud.within(cal.Tried[len(cal.Tried)-1]) {
				a = mid
			} else {
				b = mid
			}
		}
	}
	best, over := withinBudget(cal.Tried, bud)
	cal.Alpha, cal.KL, cal.KLP99, cal.KLMax, cal.PPL = best.Alpha, best.KL, best.KLP99, best.KLMax, best.PPL
	if best.Alpha == 0 {
		cal.PPL = cal.PPLBase
	}
	if over != nil {
		cal.BoundBy = bud.exceeded(*over)
	}
	return cal, nil
}

// budget is the KL budget of a calibration: the mean, and the 99th
// percentile when p99 > 0.
type budget struct{ mean, p99 float64 }

func (b budget) within(p CalibrationPoint) bool {
	return p.KL <= b.mean && (b.p99 == 0 || p.KLP99 <= b.p99)
}

// exceeded names the budgets p is over.
func (b budget) exceeded(p CalibrationPoint) string {
	mean, p99 := p.KL > b.mean, b.p99 > 0 && p.KLP99 > b.p99
	switch {
	case mean && p99:
		return BoundBoth
	case p99:
		return BoundP99
	case mean:
		return BoundMean
	}
	return ""
}

// withinBudget sorts the measured strengths and returns the largest one
// below the first over budget (zero when the smallest is over) and that
// first one (nil if none is over): a larger strength within budget again,
// if KL is not monotone, is not trusted.
func withinBudget(tried []CalibrationPoint, b budget) (CalibrationPoint, *CalibrationPoint) {
	sort.Slice(tried, func(i, j int) bool { return tried[i].Alpha < tried[j].Alpha })
	best := CalibrationPoint{}
	for i, p := range tried {
		if !b.within(p) {
			return best, &tried[i]
		}
		best = p
	}
	return best, nil
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
