package hooks

import (
	"testing"

	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/llama"
)

func realFixture(t *testing.T, path string) fixture {
	t.Helper()
	m, err := llama.LoadModel(path, llama.ModelParams{})
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

// On real models (SmolLM2, and Gemma 3 when cached): adding v at l_out-N
// equals llama.cpp's control vector in slot N-1, a no-op intervention is
// bit-identical, and batch and token-by-token captures agree.
func TestRealModels(t *testing.T) {
	paths := map[string]func(testing.TB) string{
		"smollm2": testenv.DefaultModel,
		"gemma3":  func(tb testing.TB) string { return testenv.Model(tb, "gemma3-270m") },
	}
	// Batch and token-by-token decoding take different llama.cpp kernels
	// (matrix-matrix vs matrix-vector on quantized weights); on Gemma 3's
	// Q4_K weights and large residual stream that alone moves l_out rows by
	// about 1% (relative), with or without hooks.
	captureTol := map[string]float64{"smollm2": 1e-4, "gemma3": 5e-2}
	for name, path := range paths {
		t.Run(name, func(t *testing.T) {
			f := realFixture(t, path(t))
			toks := []llama.Token{1, 504, 3458, 282, 4649, 314, 1030, 28, 3, 79, 200, 1200}
			n := f.model.NEmbd()
			layer := f.model.NLayer() / 2
			v := testVector(n, 2)

			c, h := f.hookedContext(t, llama.ContextParams{})
			h.SetIntervention(Point{"l_out", layer}, addVector(v))
			hooked := decodeAll(t, c, toks)
			ref, _ := f.hookedContext(t, llama.ContextParams{})
			cvec := make([]float32, n*(f.model.NLayer()-1))
			copy(cvec[(layer-1)*n:], v)
			if err := ref.SetControlVector(cvec, n, 1, f.model.NLayer()-1); err != nil {
				t.Fatal(err)
			}
			want := decodeAll(t, ref, toks)
			if d := maxAbsDiff(hooked, want); d > 1e-4 {
				t.Fatalf("l_out-%d vs cvec slot %d: max |Δlogit| = %g", layer, layer-1, d)
			}
			clear(cvec)
			copy(cvec[(layer-2)*n:], v)
			ref.SetControlVector(cvec, n, 1, f.model.NLayer()-1)
			if d := maxAbsDiff(hooked, decodeAll(t, ref, toks)); d < 1e-3 {
				t.Fatalf("l_out-%d also matches cvec slot %d (Δ=%g)", layer, layer-2, d)
			}

			plain, _ := f.hookedContext(t, llama.ContextParams{})
			base := decodeAll(t, plain, toks)
			noop, nh := f.hookedContext(t, llama.ContextParams{})
			nh.SetIntervention(Point{"l_out", layer}, InterventionFunc(func(*Rows) error { return nil }))
			if d := maxAbsDiff(decodeAll(t, noop, toks), base); d != 0 {
				t.Fatalf("no-op intervention changed logits by %g", d)
			}

			one := captureRows{}
			c1, h1 := f.hookedContext(t, llama.ContextParams{})
			h1.SetCapture(Point{"l_out", layer}, one.fn, BeforeIntervention)
			decodeAll(t, c1, toks)
			single := captureRows{}
			c2, h2 := f.hookedContext(t, llama.ContextParams{})
			h2.SetCapture(Point{"l_out", layer}, single.fn, BeforeIntervention)
			b := llama.NewBatch(1, 1)
			defer b.Close()
			for i, tok := range toks {
				b.Clear()
				b.Add(tok, i, []int{0}, true)
				if err := c2.Decode(b); err != nil {
					t.Fatal(err)
				}
			}
			for k, row := range one {
				if d := relDiff(row, single[k]); d > captureTol[name] {
					t.Errorf("token %v: batch vs token-by-token rel diff %g", k, d)
				}
			}
		})
	}
}
