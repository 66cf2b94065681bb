package hooks

import (
	"math"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/llama"
)

type fixture struct {
	model *llama.Model
	cat   *Catalog
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	cat, err := Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{model: m, cat: cat}
}

// hookedContext makes a context with its own Hooks.
func (f fixture) hookedContext(t testing.TB, p llama.ContextParams) (*llama.Context, *Hooks) {
	t.Helper()
	h := New(f.cat)
	p.Hook = h
	if p.Threads == 0 {
		p.Threads = 2
	}
	if p.NCtx == 0 {
		p.NCtx = 256
	}
	c, err := llama.NewContext(f.model, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); h.Close() })
	return c, h
}

var testTokens = []llama.Token{1, 259, 260, 100, 120, 261, 262, 50, 263, 264, 70, 265}

// decodeAll decodes toks as one batch in sequence 0 with logits for every
// token and returns a copy of all logits.
func decodeAll(t testing.TB, c *llama.Context, toks []llama.Token) [][]float32 {
	t.Helper()
	c.ClearMemory()
	b := llama.NewBatch(len(toks), 1)
	defer b.Close()
	for i, tok := range toks {
		b.Add(tok, i, []int{0}, true)
	}
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	out := make([][]float32, len(toks))
	for i := range toks {
		lg, err := c.Logits(i)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = append([]float32(nil), lg...)
	}
	return out
}

func maxAbsDiff(a, b [][]float32) float64 {
	var d float64
	for i := range a {
		for j := range a[i] {
			d = math.Max(d, math.Abs(float64(a[i][j]-b[i][j])))
		}
	}
	return d
}

func testVector(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = scale * float32(math.Sin(float64(3*i+1)))
	}
	return v
}

func addVector(v []float32) Intervention {
	return InterventionFunc(func(r *Rows) error {
		for i := 0; i < r.N; i++ {
			row := r.Row(i)
			for j := range row {
				row[j] += v[j]
			}
		}
		return nil
	})
}

func TestCatalogValidation(t *testing.T) {
	f := newFixture(t)
	for _, site := range []string{"l_out", "attn_norm", "ffn_out"} {
		if got := f.cat.Layers(site); len(got) != 4 {
			t.Errorf("site %s layers %v, want 0..3", site, got)
		}
	}
	if _, err := f.cat.Resolve("l_out", 3); err != nil {
		t.Fatal(err)
	}
	_, err := f.cat.Resolve("l_out", 4)
	if err == nil || !strings.Contains(err.Error(), "0..3") {
		t.Fatalf("layer out of range: %v", err)
	}
	_, err = f.cat.Resolve("nosuch", 0)
	if err == nil || !strings.Contains(err.Error(), "l_out") {
		t.Fatalf("unknown site error should list sites: %v", err)
	}
	h := New(f.cat)
	defer h.Close()
	if err := h.SetIntervention(Point{"l_out", 9}, addVector(nil)); err == nil {
		t.Fatal("SetIntervention accepted layer 9 of a 4-layer model")
	}
}

// Adding v at l_out-N reproduces llama.cpp's control vector with v in data
// slot N-1, and differs from slot N-2.
func TestInterventionMatchesControlVector(t *testing.T) {
	f := newFixture(t)
	n := f.model.NEmbd()
	v := testVector(n, 0.5)
	const layer = 2
	for _, force := range []bool{false, true} {
		c, h := f.hookedContext(t, llama.ContextParams{})
		h.SetForceCopy(force)
		if err := h.SetIntervention(Point{"l_out", layer}, addVector(v)); err != nil {
			t.Fatal(err)
		}
		hooked := decodeAll(t, c, testTokens)

		ref, _ := f.hookedContext(t, llama.ContextParams{})
		cvec := make([]float32, n*(f.model.NLayer()-1))
		copy(cvec[(layer-1)*n:], v)
		if err := ref.SetControlVector(cvec, n, 1, f.model.NLayer()-1); err != nil {
			t.Fatal(err)
		}
		want := decodeAll(t, ref, testTokens)
		if d := maxAbsDiff(hooked, want); d > 1e-4 {
			t.Fatalf("force copy %v: max |Δlogit| vs cvec slot %d = %g", force, layer-1, d)
		}
		clear(cvec)
		copy(cvec[(layer-2)*n:], v)
		ref.SetControlVector(cvec, n, 1, f.model.NLayer()-1)
		other := decodeAll(t, ref, testTokens)
		if d := maxAbsDiff(hooked, other); d < 1e-3 {
			t.Fatalf("hook at l_out-%d also matches cvec slot %d (Δ=%g): layers indistinguishable", layer, layer-2, d)
		}
	}
}

func TestNoOpInterventionIsBitIdentical(t *testing.T) {
	f := newFixture(t)
	plain, _ := f.hookedContext(t, llama.ContextParams{})
	want := decodeAll(t, plain, testTokens)
	c, h := f.hookedContext(t, llama.ContextParams{})
	calls := 0
	for _, site := range []string{"l_out", "attn_out", "ffn_out"} {
		for l := 0; l < f.model.NLayer(); l++ {
			h.SetIntervention(Point{site, l}, InterventionFunc(func(r *Rows) error { calls++; return nil }))
		}
	}
	got := decodeAll(t, c, testTokens)
	if calls == 0 {
		t.Fatal("intervention never called")
	}
	if d := maxAbsDiff(got, want); d != 0 {
		t.Fatalf("no-op intervention changed logits by %g", d)
	}
	// Switching the intervention off again restores the unhooked path.
	h.Clear()
	calls = 0
	got = decodeAll(t, c, testTokens)
	if calls != 0 || maxAbsDiff(got, want) != 0 {
		t.Fatalf("after Clear: calls=%d Δ=%g", calls, maxAbsDiff(got, want))
	}
}

// captureRows collects captured rows by (seq, pos).
type captureRows map[[2]int][]float32

func (cr captureRows) fn(r *Rows) error {
	for i := 0; i < r.N; i++ {
		_, pos, seq := r.Token(i)
		cr[[2]int{seq, pos}] = append([]float32(nil), r.Row(i)...)
	}
	return nil
}

func relDiff(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i] - b[i])
		num += d * d
		den += float64(a[i]) * float64(a[i])
	}
	return math.Sqrt(num / math.Max(den, 1e-30))
}

func TestCaptureBatchTokenByTokenAndMultiSequence(t *testing.T) {
	f := newFixture(t)
	for _, p := range []Point{{"l_out", 1}, {"attn_out", 3}} {
		// One batch.
		c1, h1 := f.hookedContext(t, llama.ContextParams{})
		one := captureRows{}
		h1.SetCapture(p, one.fn, BeforeIntervention)
		decodeAll(t, c1, testTokens)
		if len(one) != len(testTokens) {
			t.Fatalf("%s: one batch captured %d rows, want %d", p, len(one), len(testTokens))
		}
		// Token by token.
		c2, h2 := f.hookedContext(t, llama.ContextParams{})
		single := captureRows{}
		h2.SetCapture(p, single.fn, BeforeIntervention)
		b := llama.NewBatch(1, 1)
		for i, tok := range testTokens {
			b.Clear()
			b.Add(tok, i, []int{0}, true)
			if err := c2.Decode(b); err != nil {
				t.Fatal(err)
			}
		}
		b.Close()
		// Three sequences in one batch, micro-batches of 8 tokens.
		c3, h3 := f.hookedContext(t, llama.ContextParams{NSeqMax: 3, NUBatch: 8})
		multi := captureRows{}
		h3.SetCapture(p, multi.fn, BeforeIntervention)
		mb := llama.NewBatch(3*len(testTokens), 1)
		for s := 0; s < 3; s++ {
			for i, tok := range testTokens {
				mb.Add(tok, i, []int{s}, i == len(testTokens)-1)
			}
		}
		if err := c3.Decode(mb); err != nil {
			t.Fatal(err)
		}
		mb.Close()
		for i := range testTokens {
			key := [2]int{0, i}
			if d := relDiff(one[key], single[key]); d > 1e-4 {
				t.Errorf("%s pos %d: batch vs token-by-token rel diff %g", p, i, d)
			}
			for s := 0; s < 3; s++ {
				if d := relDiff(one[key], multi[[2]int{s, i}]); d > 1e-4 {
					t.Errorf("%s pos %d seq %d: batch vs multi-sequence rel diff %g", p, i, s, d)
				}
			}
		}
	}
}

func TestLastLayerOutputRowsOnly(t *testing.T) {
	f := newFixture(t)
	last := f.model.NLayer() - 1
	c, h := f.hookedContext(t, llama.ContextParams{})
	var rows, onlyOut int
	var positions []int
	h.SetCapture(Point{"l_out", last}, func(r *Rows) error {
		rows += r.N
		if r.OutputsOnly() {
			onlyOut++
		}
		for i := 0; i < r.N; i++ {
			_, pos, _ := r.Token(i)
			positions = append(positions, pos)
		}
		return nil
	}, BeforeIntervention)
	b := llama.NewBatch(len(testTokens), 1)
	defer b.Close()
	for i, tok := range testTokens {
		b.Add(tok, i, []int{0}, i == 4 || i == len(testTokens)-1)
	}
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	if rows != 2 || onlyOut != 1 || positions[0] != 4 || positions[1] != len(testTokens)-1 {
		t.Fatalf("last layer: rows=%d outputsOnly=%d positions=%v", rows, onlyOut, positions)
	}
}

func TestCaptureBeforeAndAfterIntervention(t *testing.T) {
	f := newFixture(t)
	p := Point{"l_out", 1}
	v := testVector(f.model.NEmbd(), 1)
	for _, when := range []CaptureWhen{BeforeIntervention, AfterIntervention} {
		plain, hp := f.hookedContext(t, llama.ContextParams{})
		base := captureRows{}
		hp.SetCapture(p, base.fn, BeforeIntervention)
		decodeAll(t, plain, testTokens)

		c, h := f.hookedContext(t, llama.ContextParams{})
		got := captureRows{}
		h.SetIntervention(p, addVector(v))
		h.SetCapture(p, got.fn, when)
		decodeAll(t, c, testTokens)
		for k, row := range base {
			want := row
			if when == AfterIntervention {
				want = make([]float32, len(row))
				for j := range row {
					want[j] = row[j] + v[j]
				}
			}
			if d := relDiff(want, got[k]); d > 1e-6 {
				t.Fatalf("when=%d token %v: rel diff %g", when, k, d)
			}
		}
	}
}

func TestInterventionErrorAbortsDecode(t *testing.T) {
	f := newFixture(t)
	c, h := f.hookedContext(t, llama.ContextParams{})
	h.SetIntervention(Point{"l_out", 0}, InterventionFunc(func(*Rows) error { return errTest }))
	b := llama.NewBatch(2, 1)
	defer b.Close()
	b.Add(1, 0, []int{0}, true)
	err := c.Decode(b)
	if err == nil || !strings.Contains(err.Error(), "test failure") || !strings.Contains(err.Error(), "l_out-0") {
		t.Fatalf("decode error %v", err)
	}
	// The context keeps working once the intervention is removed.
	h.SetIntervention(Point{"l_out", 0}, nil)
	c.ClearMemory()
	if err := c.Decode(b); err != nil {
		t.Fatalf("decode after removing the failing intervention: %v", err)
	}
}

type testError string

func (e testError) Error() string { return string(e) }

var errTest = testError("test failure")

func TestTwoContextsAreIndependent(t *testing.T) {
	f := newFixture(t)
	c1, h1 := f.hookedContext(t, llama.ContextParams{})
	c2, _ := f.hookedContext(t, llama.ContextParams{})
	h1.SetIntervention(Point{"l_out", 1}, addVector(testVector(f.model.NEmbd(), 2)))
	steered := decodeAll(t, c1, testTokens)
	plain := decodeAll(t, c2, testTokens)
	ref, _ := f.hookedContext(t, llama.ContextParams{})
	want := decodeAll(t, ref, testTokens)
	if maxAbsDiff(plain, want) != 0 {
		t.Fatal("an intervention on one context changed another")
	}
	if maxAbsDiff(steered, want) < 1e-3 {
		t.Fatal("intervention had no effect")
	}
}
