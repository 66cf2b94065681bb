package hooks

import (
	"context"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/llama"
)

// rpcSplit loads the default model twice: on the local CPU, and with 20 of
// its 30 layers offloaded to two rpc-server processes on 127.0.0.1 (layers
// 11-29 and the output layer split between them, 0-10 on the local CPU).
// It returns both fixtures and, for each server, a layer it holds.
func rpcSplit(t *testing.T) (local, remote fixture, held [2]int) {
	t.Helper()
	path := testenv.DefaultModel(t)
	servers := testenv.StartRPCServers(t, 2)
	eps := []string{servers[0].Endpoint, servers[1].Endpoint}
	local = realFixture(t, path)
	m, err := llama.LoadModel(path, llama.ModelParams{GPULayers: 20, RPC: eps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	cat, err := Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	remote = fixture{model: m, cat: cat}
	p := m.Placement()
	t.Logf("placement: %s", p)
	held = [2]int{-1, -1}
	for il, dev := range p.Layers {
		switch {
		case strings.Contains(dev, "rpc "+eps[0]):
			if held[0] < 0 {
				held[0] = il
			}
		case strings.Contains(dev, "rpc "+eps[1]):
			held[1] = il - 2 // a layer inside the second server's range
		case dev != "CPU":
			t.Fatalf("layer %d on unexpected device %q", il, dev)
		case il >= m.NLayer()+1-20: // the output layer counts as one of the 20
			t.Fatalf("layer %d should be offloaded, is on %s", il, dev)
		}
	}
	if held[0] < 0 || held[1] < 0 || !strings.Contains(p.Layers[held[1]], eps[1]) || !strings.Contains(p.Output, "rpc ") {
		t.Fatalf("placement %s does not use both servers", p)
	}
	if p.Layers[0] != "CPU" {
		t.Fatalf("layer 0 on %s, want the local CPU", p.Layers[0])
	}
	return local, remote, held
}

// rpcLogitTol bounds |Δlogit| between the local and the split model. The
// rpc-servers run the same CPU kernels, on the same rows, so the measured
// difference is 0; the bound leaves room for servers on other CPUs.
const rpcLogitTol = 1e-3

// The default model split over two rpc-servers and the local CPU: same
// greedy text and logits as local-only; rows captured at layers the servers
// hold equal the local rows; adding v at l_out-N there equals llama.cpp's
// control vector (also on the servers); a no-op intervention changes
// nothing.
func TestRPCSplitModel(t *testing.T) {
	local, remote, held := rpcSplit(t)
	toks := []llama.Token{1, 504, 3458, 282, 4649, 314, 1030, 28, 3, 79, 200, 1200}

	lc, _ := local.hookedContext(t, llama.ContextParams{})
	rc, _ := remote.hookedContext(t, llama.ContextParams{})
	base := decodeAll(t, lc, toks)
	rbase := decodeAll(t, rc, toks)
	d := maxAbsDiff(base, rbase)
	t.Logf("split vs local: max |Δlogit| = %g", d)
	if d > rpcLogitTol {
		t.Fatalf("split vs local: max |Δlogit| = %g > %g", d, rpcLogitTol)
	}
	gen := func(c *llama.Context, m *llama.Model) string {
		prompt, err := m.Tokenize("The capital of France is", true, false)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if _, err := c.Generate(context.Background(), prompt, llama.GenerateOptions{MaxTokens: 24}, func(_ llama.Token, piece string) error {
			b.WriteString(piece)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if a, b := gen(lc, local.model), gen(rc, remote.model); a != b || a == "" {
		t.Fatalf("greedy text differs:\nlocal %q\nsplit %q", a, b)
	}

	n := remote.model.NEmbd()
	for i, layer := range held {
		pt := Point{"l_out", layer}
		lrows, rrows := captureRows{}, captureRows{}
		c1, h1 := local.hookedContext(t, llama.ContextParams{})
		h1.SetCapture(pt, lrows.fn, BeforeIntervention)
		decodeAll(t, c1, toks)
		c2, h2 := remote.hookedContext(t, llama.ContextParams{})
		h2.SetCapture(pt, rrows.fn, BeforeIntervention)
		decodeAll(t, c2, toks)
		if len(rrows) != len(toks) {
			t.Fatalf("server %d, %v: captured %d rows, want %d", i, pt, len(rrows), len(toks))
		}
		for k, row := range lrows {
			if d := relDiff(row, rrows[k]); d > 1e-3 {
				t.Errorf("server %d, %v, token %v: remote vs local capture rel diff %g", i, pt, k, d)
			}
		}

		v := testVector(n, 2)
		hc, hh := remote.hookedContext(t, llama.ContextParams{})
		hh.SetIntervention(pt, addVector(v))
		hooked := decodeAll(t, hc, toks)
		ref, _ := remote.hookedContext(t, llama.ContextParams{})
		cvec := make([]float32, n*(remote.model.NLayer()-1))
		copy(cvec[(layer-1)*n:], v)
		if err := ref.SetControlVector(cvec, n, 1, remote.model.NLayer()-1); err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(hooked, decodeAll(t, ref, toks)); d > 1e-4 {
			t.Fatalf("server %d: l_out-%d hook vs cvec slot %d: max |Δlogit| = %g", i, layer, layer-1, d)
		}
		if d := maxAbsDiff(hooked, rbase); d < 1e-2 {
			t.Fatalf("server %d: the intervention at l_out-%d changed nothing (Δ=%g)", i, layer, d)
		}
		lh, lhh := local.hookedContext(t, llama.ContextParams{})
		lhh.SetIntervention(pt, addVector(v))
		if d := maxAbsDiff(hooked, decodeAll(t, lh, toks)); d > rpcLogitTol {
			t.Fatalf("server %d: intervention at l_out-%d, split vs local: max |Δlogit| = %g", i, layer, d)
		}

		nc, nh := remote.hookedContext(t, llama.ContextParams{})
		nh.SetIntervention(pt, InterventionFunc(func(*Rows) error { return nil }))
		if d := maxAbsDiff(decodeAll(t, nc, toks), rbase); d != 0 {
			t.Fatalf("server %d: no-op intervention at l_out-%d changed logits by %g", i, layer, d)
		}
	}
}
