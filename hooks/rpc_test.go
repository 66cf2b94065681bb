package hooks

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/llama"
)

// rpcSplit loads the default model twice: on the local CPU, and with 20 of
// its 30 layers offloaded to two rpc-server processes on 127.0.0.1 (layers
// 11-29 and the output layer split between them, 0-10 on the local CPU).
// It returns both fixtures and, for each server, a layer it holds.
func rpcSplit(t *testing.T) (local, remote fixture, held []int) {
	t.Helper()
	path := testenv.DefaultModel(t)
	if llama.HasLocalGPU() {
		// As llama.cpp's --rpc does, offloaded layers would go to the local
		// GPU too, with its own numbers (see TestGPUOffloadedModel).
		t.Skip("a local GPU is present: the split would include it")
	}
	servers := testenv.StartRPCServers(t, 2)
	eps := []string{servers[0].Endpoint, servers[1].Endpoint}
	local = realFixture(t, path)
	remote = loadFixture(t, path, llama.ModelParams{GPULayers: 20, RPC: eps})
	m := remote.model
	p := m.Placement()
	t.Logf("placement: %s", p)
	held = []int{-1, -1}
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

func loadFixture(t *testing.T, path string, p llama.ModelParams) fixture {
	t.Helper()
	m, err := llama.LoadModel(path, p)
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

// offloadTol bounds the differences between a model on the local CPU and
// the same model with layers elsewhere.
type offloadTol struct {
	logit   float64 // max |Δlogit|, unsteered and steered
	capture float64 // relative difference of captured rows
	text    bool    // greedy text must be equal
}

// checkOffloaded compares the local model with the offloaded one: logits
// and greedy text; at each layer in held, captured rows, an l_out
// intervention against llama.cpp's control vector on the offloaded model
// (1e-4: same backend, same kernels), against the same intervention on the
// local model, and a no-op intervention (bit-identical).
func checkOffloaded(t *testing.T, local, remote fixture, held []int, tol offloadTol) {
	t.Helper()
	toks := []llama.Token{1, 504, 3458, 282, 4649, 314, 1030, 28, 3, 79, 200, 1200}

	lc, _ := local.hookedContext(t, llama.ContextParams{})
	rc, _ := remote.hookedContext(t, llama.ContextParams{})
	base := decodeAll(t, lc, toks)
	rbase := decodeAll(t, rc, toks)
	d := maxAbsDiff(base, rbase)
	t.Logf("offloaded vs local: max |Δlogit| = %g", d)
	if d > tol.logit {
		t.Fatalf("offloaded vs local: max |Δlogit| = %g > %g", d, tol.logit)
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
	if a, b := gen(lc, local.model), gen(rc, remote.model); a == "" || (tol.text && a != b) {
		t.Fatalf("greedy text differs:\nlocal     %q\noffloaded %q", a, b)
	} else if a != b {
		t.Logf("greedy text differs (allowed here):\nlocal     %q\noffloaded %q", a, b)
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
			t.Fatalf("device %d, %v: captured %d rows, want %d", i, pt, len(rrows), len(toks))
		}
		var worst float64
		for k, row := range lrows {
			d := relDiff(row, rrows[k])
			worst = max(worst, d)
			if d > tol.capture {
				t.Errorf("device %d, %v, token %v: offloaded vs local capture rel diff %g", i, pt, k, d)
			}
		}
		t.Logf("device %d, %v: capture rel diff up to %g", i, pt, worst)

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
			t.Fatalf("device %d: l_out-%d hook vs cvec slot %d: max |Δlogit| = %g", i, layer, layer-1, d)
		}
		if d := maxAbsDiff(hooked, rbase); d < 1e-2 {
			t.Fatalf("device %d: the intervention at l_out-%d changed nothing (Δ=%g)", i, layer, d)
		}
		lh, lhh := local.hookedContext(t, llama.ContextParams{})
		lhh.SetIntervention(pt, addVector(v))
		if d := maxAbsDiff(hooked, decodeAll(t, lh, toks)); d > tol.logit {
			t.Fatalf("device %d: intervention at l_out-%d, offloaded vs local: max |Δlogit| = %g", i, layer, d)
		}

		nc, nh := remote.hookedContext(t, llama.ContextParams{})
		nh.SetIntervention(pt, InterventionFunc(func(*Rows) error { return nil }))
		if d := maxAbsDiff(decodeAll(t, nc, toks), rbase); d != 0 {
			t.Fatalf("device %d: no-op intervention at l_out-%d changed logits by %g", i, layer, d)
		}
	}
}

// The default model split over two rpc-servers and the local CPU. The
// rpc-servers run the same CPU kernels on the same rows, so the measured
// differences are 0; the bounds (|Δlogit| 1e-3, capture 1e-3 relative)
// leave room for servers on other CPUs.
func TestRPCSplitModel(t *testing.T) {
	local, remote, held := rpcSplit(t)
	checkOffloaded(t, local, remote, held, offloadTol{logit: 1e-3, capture: 1e-3, text: true})
}

// Every layer on the local GPU (CUDA, Vulkan, Metal: whatever the build
// has; skipped without one, e.g. in CI). `make test-vulkan` runs it on
// Mesa's software Vulkan device. Other kernels and summation orders move
// the numbers: on lavapipe, l_out rows by up to 5% (relative) and logits by
// up to 1.8, and greedy text leaves the CPU's after a few tokens, in
// llama.cpp's own llama-completion just the same. So the offloaded model is
// held to llama-completion on the same device (same greedy text), and to
// the CPU within those bounds; the hook checks on the device (intervention
// = control vector, no-op bit-identical) are exact as everywhere.
func TestGPUOffloadedModel(t *testing.T) {
	path := testenv.DefaultModel(t)
	if !llama.HasLocalGPU() {
		t.Skip("no local GPU in this build or machine (make VULKAN=1 / CUDA=1)")
	}
	local := realFixture(t, path)
	gpu := loadFixture(t, path, llama.ModelParams{GPULayers: -1})
	p := gpu.model.Placement()
	t.Logf("placement: %s", p)
	for il, dev := range p.Layers {
		if dev == "CPU" || dev == "?" {
			t.Fatalf("layer %d on %s, want a GPU", il, dev)
		}
	}

	const prompt, nPredict = "The capital of France is", 24
	tool := testenv.LlamaBin(t, "llama-completion")
	want, err := exec.Command(tool, "-m", path, "-n", fmt.Sprint(nPredict), "-t", "2", "--temp", "0", "-no-cnv", "-ngl", "99",
		"--no-display-prompt", "--simple-io", "-p", prompt).Output()
	if err != nil {
		t.Fatalf("llama-completion: %v", err)
	}
	toks, err := gpu.model.Tokenize(prompt, true, true)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := gpu.hookedContext(t, llama.ContextParams{})
	var sb strings.Builder
	st, err := c.Generate(context.Background(), toks, llama.GenerateOptions{MaxTokens: nPredict}, func(_ llama.Token, piece string) error {
		sb.WriteString(piece)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.StopReason == "eog" {
		sb.WriteString(" [end of text]\n")
	}
	sb.WriteString("\n\n")
	if sb.String() != string(want) {
		t.Fatalf("greedy text on the GPU:\n ours:             %q\n llama-completion: %q", sb.String(), want)
	}

	checkOffloaded(t, local, gpu, []int{3, 15, 27}, offloadTol{logit: 3, capture: 0.1})
}
