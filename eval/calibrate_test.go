package eval

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/steer"
)

func TestCalibrate(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	f := testFile(e.m.NEmbd(), 1, 0.1)
	texts := []string{"The weather was mild and the market opened late.", "A recipe needs flour, water and salt, then time."}
	ctx := context.Background()
	grid := []float64{0.25, 0.5, 1, 2, 4}

	// The budget: the KL measured at α=1, so the answer must land in [1, 2).
	ref, err := r.Retention(ctx, texts, []Method{e.method(t, "a1", f, steer.ApplyOptions{Global: 1})}, RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	budget := ref[0].KL * 1.0000001
	cal, err := r.Calibrate(ctx, texts, "test.gguf", f, CalibrateOptions{MaxKL: budget, Grid: grid, Refine: 3})
	if err != nil {
		t.Fatal(err)
	}
	if cal.Alpha < 1 || cal.Alpha >= 2 || cal.KL > budget || cal.Capped {
		t.Fatalf("calibration %+v, budget %g", cal, budget)
	}
	if len(cal.Tried) != len(grid)+3 {
		t.Errorf("tried %d strengths, want %d grid + 3 bisection", len(cal.Tried), len(grid))
	}
	for i, p := range cal.Tried {
		if i > 0 && p.Alpha <= cal.Tried[i-1].Alpha {
			t.Errorf("tried strengths not sorted: %+v", cal.Tried)
		}
		if roundSignificant(p.Alpha, 3) != p.Alpha {
			t.Errorf("tried α=%v: more than three significant digits", p.Alpha)
		}
		if p.Alpha > cal.Alpha && p.KL <= budget {
			t.Errorf("α=%g is within budget (KL %g) but %g was chosen", p.Alpha, p.KL, cal.Alpha)
		}
	}
	// The chosen α reproduces its KL in a separate measurement.
	again, err := r.Retention(ctx, texts, []Method{e.method(t, "chosen", f, steer.ApplyOptions{Global: cal.Alpha})}, RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(again[0].KL-cal.KL) > 1e-6*math.Max(1, cal.KL) {
		t.Errorf("KL at chosen α: %g, calibration said %g", again[0].KL, cal.KL)
	}

	// A huge budget is capped at the grid's end; a tiny one gives α=0 or a
	// strength below the grid, with its KL within budget.
	capped, err := r.Calibrate(ctx, texts, "test.gguf", f, CalibrateOptions{MaxKL: 1e9, Grid: grid})
	if err != nil || !capped.Capped || capped.Alpha != 4 {
		t.Errorf("huge budget: %+v, %v", capped, err)
	}
	// MaxAlpha goes past the grid by doublings: a budget between the KL
	// at 8 and at 16 lands in [8, 16); a huge one is capped at MaxAlpha.
	ref12, err := r.Retention(ctx, texts, []Method{e.method(t, "a12", f, steer.ApplyOptions{Global: 12})}, RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ext, err := r.Calibrate(ctx, texts, "test.gguf", f, CalibrateOptions{MaxKL: ref12[0].KL, Grid: grid, MaxAlpha: 64, Refine: 2})
	if err != nil || ext.Capped || ext.Alpha < 8 || ext.Alpha >= 16 || ext.KL > ref12[0].KL {
		t.Errorf("budget of α=12 with MaxAlpha 64: %+v, %v", ext, err)
	}
	if n := len(ext.Tried); n != len(grid)+2+2 {
		t.Errorf("tried %d strengths, want %d grid + 2 doublings + 2 bisection: %+v", n, len(grid), ext.Tried)
	}
	far, err := r.Calibrate(ctx, texts, "test.gguf", f, CalibrateOptions{MaxKL: 1e9, Grid: grid, MaxAlpha: 40})
	if err != nil || !far.Capped || far.Alpha != 32 {
		t.Errorf("huge budget, MaxAlpha 40: %+v, %v (want capped at 32, the last doubling not over 40)", far, err)
	}
	if grid[len(grid)-1] != 4 || len(grid) != 5 {
		t.Errorf("Calibrate changed the caller's grid: %v", grid)
	}
	tiny, err := r.Calibrate(ctx, texts, "test.gguf", f, CalibrateOptions{MaxKL: 1e-12, Grid: grid, Refine: 2})
	if err != nil || tiny.Alpha >= 0.25 || tiny.KL > 1e-12 {
		t.Errorf("tiny budget: %+v, %v", tiny, err)
	}

	for _, bad := range []CalibrateOptions{{MaxKL: 0}, {MaxKL: math.NaN()}, {MaxKL: math.Inf(1)}, {MaxKL: 1, Grid: []float64{1, 0.5}}, {MaxKL: 1, Grid: []float64{-1}}, {MaxKL: 1, MaxAlpha: math.NaN()}, {MaxKL: 1, MaxAlpha: -1}, {MaxKL: 1, MaxAlpha: math.Inf(1)}} {
		if _, err := r.Calibrate(ctx, texts, "test.gguf", f, bad); err == nil {
			t.Errorf("options %+v: no error", bad)
		}
	}
	off, err := r.Calibrate(ctx, texts, "test.gguf", f, CalibrateOptions{MaxKL: 1, Strengths: map[string]float64{"tone": 0, "style": 0}})
	if err == nil || !strings.Contains(err.Error(), "changes nothing") {
		t.Errorf("all strengths zero: %+v, %v", off, err)
	}
}

func TestRoundSignificant(t *testing.T) {
	for _, c := range []struct{ x, want float64 }{
		{4.756828460010884, 4.76}, {0.0123456, 0.0123}, {1234.5, 1230}, {100, 100}, {0.5, 0.5}, {2.8284271, 2.83}, {0.99951, 1},
	} {
		if got := roundSignificant(c.x, 3); math.Abs(got-c.want) > 1e-12*c.want {
			t.Errorf("roundSignificant(%v, 3) = %v, want %v", c.x, got, c.want)
		}
	}
}

func TestWithinBudget(t *testing.T) {
	pts := func(kls ...float64) []CalibrationPoint {
		var out []CalibrationPoint
		for i := len(kls) - 1; i >= 0; i-- { // given unsorted: descending α
			out = append(out, CalibrationPoint{Alpha: float64(i + 1), KL: kls[i]})
		}
		return out
	}
	for _, c := range []struct {
		kls  []float64
		want float64
	}{
		{[]float64{0.01, 0.05, 0.2, 0.5}, 2},
		{[]float64{0.01, 0.2, 0.05, 0.5}, 1}, // not monotone: α=3 is not trusted
		{[]float64{0.3, 0.4}, 0},
		{[]float64{0.01, 0.02}, 2},
		{[]float64{0.01, 0.1}, 2}, // the budget itself is within budget
	} {
		if got, _ := withinBudget(pts(c.kls...), budget{mean: 0.1}); got.Alpha != c.want {
			t.Errorf("KL %v: α %v, want %v", c.kls, got.Alpha, c.want)
		}
	}
	// Both budgets: α=3 is within the mean budget but over the tail's.
	tried := []CalibrationPoint{
		{Alpha: 1, KL: 0.01, KLP99: 0.2},
		{Alpha: 2, KL: 0.03, KLP99: 0.5},
		{Alpha: 3, KL: 0.05, KLP99: 1.2},
		{Alpha: 4, KL: 0.2, KLP99: 2},
	}
	for _, c := range []struct {
		b     budget
		want  float64
		bound string
	}{
		{budget{mean: 0.1}, 3, BoundMean},
		{budget{mean: 0.1, p99: 1}, 2, BoundP99},
		{budget{mean: 0.1, p99: 0.5}, 2, BoundP99}, // the budget itself is within it
		{budget{mean: 0.1, p99: 5}, 3, BoundMean},
		{budget{mean: 0.02, p99: 0.1}, 0, BoundP99}, // α=1: mean 0.01 within, p99 0.2 over
		{budget{mean: 0.005, p99: 0.1}, 0, BoundBoth},
		{budget{mean: 1, p99: 5}, 4, ""},
	} {
		best, over := withinBudget(append([]CalibrationPoint(nil), tried...), c.b)
		bound := ""
		if over != nil {
			bound = c.b.exceeded(*over)
		}
		if best.Alpha != c.want || bound != c.bound {
			t.Errorf("budget %+v: α %v bound %q, want %v %q", c.b, best.Alpha, bound, c.want, c.bound)
		}
	}
}

// TestCalibrateP99 budgets the tail on the random model: with the tail
// budget at the 99th percentile measured at α=1 and a mean budget that
// does not bind, α lands in [1, 2) and is bound by the tail.
func TestCalibrateP99(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	f := testFile(e.m.NEmbd(), 1, 0.1)
	texts := []string{"The weather was mild and the market opened late.", "A recipe needs flour, water and salt, then time."}
	ctx := context.Background()
	grid := []float64{0.25, 0.5, 1, 2, 4}
	ref, err := r.Retention(ctx, texts, []Method{e.method(t, "a1", f, steer.ApplyOptions{Global: 1})}, RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p99 := ref[0].KLP99 * 1.0000001
	meanOnly, err := r.Calibrate(ctx, texts, "test.gguf", f, CalibrateOptions{MaxKL: 1e9, Grid: grid, Refine: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !meanOnly.Capped || meanOnly.Alpha != 4 {
		t.Fatalf("no binding budget: %+v", meanOnly)
	}
	cal, err := r.Calibrate(ctx, texts, "test.gguf", f, CalibrateOptions{MaxKL: 1e9, MaxKLP99: p99, Grid: grid, Refine: 2})
	if err != nil {
		t.Fatal(err)
	}
	if cal.Alpha < 1 || cal.Alpha >= 2 || cal.KLP99 > p99 || cal.Capped || cal.BoundBy != BoundP99 || cal.MaxKLP99 != p99 {
		t.Fatalf("calibration %+v, p99 budget %g", cal, p99)
	}
	if !(cal.KLP99 <= cal.KLMax && cal.KL <= cal.KLMax) {
		t.Errorf("chosen point: KL %g p99 %g max %g", cal.KL, cal.KLP99, cal.KLMax)
	}
	for _, p := range cal.Tried {
		if p.Alpha > cal.Alpha && p.KLP99 <= p99 {
			t.Errorf("α=%g is within the tail budget (p99 %g) but %g was chosen", p.Alpha, p.KLP99, cal.Alpha)
		}
	}
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := r.Calibrate(ctx, texts, "test.gguf", f, CalibrateOptions{MaxKL: 1, MaxKLP99: bad, Grid: grid}); err == nil {
			t.Errorf("p99 budget %v: no error", bad)
		}
	}
}

// Calibrate's passes share the unsteered pass through a cache: the same
// numbers as without it, and the cached packs' buffers are not reused for
// the packs after them.
func TestRetentionReferenceCache(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	f := testFile(e.m.NEmbd(), 1, 0.1)
	texts := make([]string, 40) // several packs
	for i := range texts {
		texts[i] = strings.Repeat("A line of plain words, then some more of them. ", 1+i%4)
	}
	seqs, err := r.TextSequences(texts)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.packTexts(seqs, e.m.NVocab())); n < 2 {
		t.Fatalf("%d packs, want several", n)
	}
	ctx := context.Background()
	methods := []Method{e.method(t, "a2", f, steer.ApplyOptions{Global: 2})}
	plain, err := r.RetentionSequences(ctx, seqs, methods, RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Room for the first pack only: the packs after it are decoded again
	// in every pass, into buffers of their own.
	packs := r.packTexts(seqs, e.m.NVocab())
	first := 0
	for _, s := range packs[0] {
		first += len(s.Tokens) - s.Start
	}
	small := &refCache{max: 4 * first * e.m.NVocab()}
	cache := &refCache{}
	for pass := range 4 {
		c := cache
		if pass >= 2 {
			c = small
		}
		got, err := r.RetentionSequences(ctx, seqs, methods, RetentionOptions{cache: c})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].KL != plain[0].KL || got[0].KLP99 != plain[0].KLP99 || got[0].PPLBase != plain[0].PPLBase || got[0].Positions != plain[0].Positions {
			t.Errorf("pass %d with the cache: %+v, without: %+v", pass, got[0], plain[0])
		}
	}
	if len(cache.packs) != len(packs) || cache.used == 0 || len(small.packs) != 1 {
		t.Errorf("caches hold %d of %d packs (%d bytes) and %d", len(cache.packs), len(packs), cache.used, len(small.packs))
	}
}
