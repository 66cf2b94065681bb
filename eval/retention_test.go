package eval

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// TestKLQuantile checks Quantile, which gives the retention's 99th
// percentile of KL, against values computed by hand (linear interpolation
// between ranks, numpy's default).
func TestKLQuantile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1) // 1..100
	}
	for _, c := range []struct {
		vals    []float64
		q, want float64
	}{
		{[]float64{5}, 0.99, 5},
		{[]float64{0, 10}, 0.99, 9.9},          // h = 0.99: 0 + 0.99·10
		{[]float64{0, 10}, 0.5, 5},             // h = 0.5
		{[]float64{1, 2, 3, 4, 5}, 0.99, 4.96}, // h = 3.96: 4 + 0.96·1
		{[]float64{1, 2, 3, 4, 5}, 0.5, 3},     // the median
		{[]float64{1, 2, 3, 4, 5}, 0.25, 2},    // h = 1
		{[]float64{1, 2, 3, 4, 5}, 1, 5},
		{[]float64{1, 2, 3, 4, 5}, 0, 1},
		{hundred, 0.99, 99.01},                                // h = 98.01: 99 + 0.01·1
		{[]float64{0, 0, 0, 0, 0, 0, 0, 0, 0, 100}, 0.99, 91}, // h = 8.91: 0 + 0.91·100
		{[]float64{0.1, 0.2, 3.6}, 0.99, 3.532},               // h = 1.98: 0.2 + 0.98·3.4
	} {
		if got := Quantile(c.vals, c.q); math.Abs(got-c.want) > 1e-12*math.Max(1, c.want) {
			t.Errorf("Quantile(%v, %v) = %v, want %v", c.vals, c.q, got, c.want)
		}
	}
}

// TestRetentionTail recomputes every position's KL of one text
// independently and checks the tail statistics of Retention against the
// 99th percentile and the maximum of those values.
func TestRetentionTail(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	f := testFile(e.m.NEmbd(), 1, 0.1)
	on := e.method(t, "on", f, steer.DefaultApplyOptions())
	text := "The weather was mild and the market opened late, so the stalls filled slowly."
	toks, err := e.m.Tokenize(text, true, false)
	if err != nil {
		t.Fatal(err)
	}
	logp := func(m Method) [][]float64 {
		h := hooks.New(e.cat)
		defer h.Close()
		c, err := llama.NewContext(e.m, llama.ContextParams{NCtx: 256, Threads: 2, Hook: h})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if m.Intervention != nil {
			intervene.Install(h, m.Intervention)
		}
		b := llama.NewBatch(len(toks), 1)
		defer b.Close()
		for i, tok := range toks {
			if err := b.Add(tok, i, []int{0}, true); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Decode(b); err != nil {
			t.Fatal(err)
		}
		var out [][]float64
		for i := 0; i < len(toks)-1; i++ {
			lg, err := c.Logits(i)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, llama.LogSoftmax(lg, nil))
		}
		return out
	}
	p, q := logp(Unsteered()), logp(on)
	kls := make([]float64, len(p))
	for i := range p {
		for v := range p[i] {
			kls[i] += math.Exp(p[i][v]) * (p[i][v] - q[i][v])
		}
		kls[i] = math.Max(kls[i], 0)
	}
	slices.Sort(kls)
	res, err := r.Retention(context.Background(), []string{text}, []Method{Unsteered(), on}, RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := res[1]
	if got.Positions != len(kls) {
		t.Fatalf("%d positions, want %d", got.Positions, len(kls))
	}
	wantP99, wantMax := Quantile(kls, 0.99), kls[len(kls)-1]
	if math.Abs(got.KLP99-wantP99) > 1e-4*math.Max(1, wantP99) || math.Abs(got.KLMax-wantMax) > 1e-4*math.Max(1, wantMax) {
		t.Errorf("p99 %v max %v, recomputed %v and %v", got.KLP99, got.KLMax, wantP99, wantMax)
	}
	if !(got.KLP99 > 0 && got.KLP99 <= got.KLMax && got.KL <= got.KLMax) {
		t.Errorf("steered: KL %v p99 %v max %v", got.KL, got.KLP99, got.KLMax)
	}
	// The tail is not the mean: on this text the largest values are well
	// above it (else the statistic would say nothing).
	if !(got.KLP99 > 1.5*got.KL) {
		t.Errorf("p99 %v not above the mean %v", got.KLP99, got.KL)
	}
	if res[0].KLP99 != 0 || res[0].KLMax != 0 {
		t.Errorf("unsteered: %+v", res[0])
	}
}
