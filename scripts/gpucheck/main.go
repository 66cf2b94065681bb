// Command gpucheck is the program scripts/gpu-check.sh runs on a machine
// with a GPU: the hook and steering checks of the tests with every layer of
// an in-process random model offloaded to the local GPU, then the token
// rates of generation hooked vs unhooked and steered vs unsteered.
//
// The tests' own GPU checks (hooks.TestGPUOffloadedModel,
// cmd/matsteer.TestGPUSteeredGenerate) load the default model, which is too
// large to bring to a machine whose only input is a 64 MiB working tree; this
// program builds a llama-architecture model with random weights in memory
// instead (llama.NewRandomModel), so its numbers say how the hook path
// behaves on the device, not how a trained model's text reads.
//
// Checks, each a failure when it does not hold:
//   - every layer lands on a GPU;
//   - logits of the offloaded model are within -logit-tol of the CPU's;
//   - rows captured at l_out of -layer are within -capture-tol (relative);
//   - an l_out intervention on the GPU equals llama.cpp's control vector
//     there (|Δlogit| ≤ 1e-3), and a no-op intervention changes nothing
//     (bit-identical);
//   - MAT-Steer steering (3 gated attributes at -layer) gives the CPU's gates
//     within -gate-tol on the prompt and changes the GPU's logits.
//
// Then -rounds interleaved rounds of generating -n tokens: unhooked, hooked
// (a no-op intervention) and steered, each round printing tok/s, ms/token
// and the ratios.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

type config struct {
	layers, embd, heads, ff int
	layer, n, rounds        int
	threads                 int
	logitTol, captureTol    float64
	gateTol                 float64
}

func main() {
	var c config
	flag.IntVar(&c.layers, "layers", 24, "layers of the random model")
	flag.IntVar(&c.embd, "embd", 512, "embedding width of the random model")
	flag.IntVar(&c.heads, "heads", 8, "attention heads of the random model")
	flag.IntVar(&c.ff, "ff", 1536, "feed-forward width of the random model")
	flag.IntVar(&c.layer, "layer", 12, "hooked and steered layer")
	flag.IntVar(&c.n, "n", 128, "tokens generated per timed run")
	flag.IntVar(&c.rounds, "rounds", 3, "interleaved timing rounds")
	flag.IntVar(&c.threads, "threads", 4, "CPU threads")
	flag.Float64Var(&c.logitTol, "logit-tol", 0.5, "max |Δlogit|, GPU vs CPU")
	flag.Float64Var(&c.captureTol, "capture-tol", 0.02, "max relative difference of captured rows, GPU vs CPU")
	flag.Float64Var(&c.gateTol, "gate-tol", 0.05, "max |Δgate|, GPU vs CPU")
	flag.Parse()
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "gpucheck:", err)
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "gpucheck: FAIL:", err)
		os.Exit(1)
	}
}

func (c config) validate() error {
	for _, v := range []struct {
		name string
		v    int
	}{{"-layers", c.layers}, {"-embd", c.embd}, {"-heads", c.heads}, {"-ff", c.ff}, {"-n", c.n}, {"-rounds", c.rounds}, {"-threads", c.threads}} {
		if v.v < 1 {
			return fmt.Errorf("%s %d: want 1 or more", v.name, v.v)
		}
	}
	if c.embd%c.heads != 0 {
		return fmt.Errorf("-embd %d is not a multiple of -heads %d", c.embd, c.heads)
	}
	if c.layer < 1 || c.layer >= c.layers {
		return fmt.Errorf("-layer %d: want 1..%d", c.layer, c.layers-1)
	}
	for _, t := range []float64{c.logitTol, c.captureTol, c.gateTol} {
		if !(t >= 0) || math.IsInf(t, 0) {
			return fmt.Errorf("tolerances must be finite and non-negative")
		}
	}
	return nil
}

// side is one copy of the model (on the CPU or the GPU) with its catalog.
type side struct {
	name  string
	model *llama.Model
	cat   *hooks.Catalog
}

func load(name string, cfg llama.RandomModelConfig, gpuLayers int) (*side, error) {
	m, err := llama.NewRandomModel(cfg, llama.ModelParams{GPULayers: gpuLayers})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cat, err := hooks.Probe(m)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &side{name: name, model: m, cat: cat}, nil
}

func (s *side) context(c config, h *hooks.Hooks) (*llama.Context, error) {
	p := llama.ContextParams{NCtx: 1024, NBatch: 512, NUBatch: 512, Threads: c.threads, NoPerf: true}
	if h != nil {
		p.Hook = h
	}
	ctx, err := llama.NewContext(s.model, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return ctx, nil
}

// decode runs toks as one sequence and returns every position's logits,
// with install (if any) applied to a fresh hooked context.
func (s *side) decode(c config, toks []llama.Token, install func(h *hooks.Hooks) error, cvec []float32) ([][]float32, error) {
	h := hooks.New(s.cat)
	defer h.Close()
	ctx, err := s.context(c, h)
	if err != nil {
		return nil, err
	}
	defer ctx.Close()
	if install != nil {
		if err := install(h); err != nil {
			return nil, err
		}
	}
	if cvec != nil {
		if err := ctx.SetControlVector(cvec, s.model.NEmbd(), 1, s.model.NLayer()-1); err != nil {
			return nil, err
		}
	}
	b := llama.NewBatch(len(toks), 1)
	defer b.Close()
	for i, t := range toks {
		b.Add(t, i, []int{0}, true)
	}
	if err := ctx.Decode(b); err != nil {
		return nil, fmt.Errorf("%s: decode: %w", s.name, err)
	}
	out := make([][]float32, len(toks))
	for i := range toks {
		lg, err := ctx.Logits(i)
		if err != nil {
			return nil, err
		}
		out[i] = append([]float32(nil), lg...)
	}
	return out, nil
}

func maxAbsDiff(a, b [][]float32) float64 {
	var d float64
	for i := range a {
		for j := range a[i] {
			d = max(d, math.Abs(float64(a[i][j]-b[i][j])))
		}
	}
	return d
}

func relDiff(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i] - b[i])
		num += d * d
		den += float64(a[i]) * float64(a[i])
	}
	return math.Sqrt(num / max(den, 1e-30))
}

func steerFile(m *llama.Model, layer int) *steer.File {
	rng := rand.New(rand.NewPCG(5, 6))
	n := m.NEmbd()
	f := &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: layer, NEmbd: n, ModelArch: m.Arch(),
		Method: steer.MethodMATSteer, NormPreserve: true}
	for _, name := range []string{"truthfulness", "toxicity", "bias"} {
		a := steer.Attribute{Name: name, Gated: true, Theta: make([]float64, n), GateW: make([]float64, n)}
		for i := 0; i < n; i++ {
			a.Theta[i] = rng.NormFloat64()
			a.GateW[i] = rng.NormFloat64() / math.Sqrt(float64(n))
		}
		f.Attributes = append(f.Attributes, a)
	}
	return f
}

func run(c config) error {
	if !llama.HasLocalGPU() {
		return errors.New("no local GPU in this build or machine (build with CUDA=1 and run where a GPU is present)")
	}
	cfg := llama.RandomModelConfig{NLayer: c.layers, NEmbd: c.embd, NHead: c.heads, NHeadKV: c.heads, NFF: c.ff, NCtx: 1024, Seed: 7}
	cpu, err := load("cpu", cfg, 0)
	if err != nil {
		return err
	}
	defer cpu.model.Close()
	gpu, err := load("gpu", cfg, -1)
	if err != nil {
		return err
	}
	defer gpu.model.Close()
	p := gpu.model.Placement()
	fmt.Printf("gpucheck: random model %d layers x %d (%s), placement: %s\n", c.layers, c.embd, gpu.model.Desc(), p)
	for il, dev := range p.Layers {
		if dev == "CPU" || dev == "?" {
			return fmt.Errorf("layer %d on %s, want a GPU", il, dev)
		}
	}

	rng := rand.New(rand.NewPCG(1, 2))
	toks := make([]llama.Token, 48)
	for i := range toks {
		toks[i] = llama.Token(rng.IntN(gpu.model.NVocab()))
	}
	base, err := cpu.decode(c, toks, nil, nil)
	if err != nil {
		return err
	}
	gbase, err := gpu.decode(c, toks, nil, nil)
	if err != nil {
		return err
	}
	d := maxAbsDiff(base, gbase)
	fmt.Printf("check: logits GPU vs CPU: max |Δlogit| %.3g (≤ %g)\n", d, c.logitTol)
	if d > c.logitTol {
		return fmt.Errorf("logits GPU vs CPU differ by %g", d)
	}

	pt := hooks.Point{Site: "l_out", Layer: c.layer}
	capture := func(s *side) (map[int][]float32, error) {
		rows := map[int][]float32{}
		_, err := s.decode(c, toks, func(h *hooks.Hooks) error {
			return h.SetCapture(pt, func(r *hooks.Rows) error {
				for i := 0; i < r.N; i++ {
					_, pos, _ := r.Token(i)
					rows[pos] = append([]float32(nil), r.Row(i)...)
				}
				return nil
			}, hooks.BeforeIntervention)
		}, nil)
		return rows, err
	}
	crows, err := capture(cpu)
	if err != nil {
		return err
	}
	grows, err := capture(gpu)
	if err != nil {
		return err
	}
	if len(grows) != len(toks) || len(crows) != len(toks) {
		return fmt.Errorf("captured %d rows on the GPU, %d on the CPU, want %d", len(grows), len(crows), len(toks))
	}
	var worst float64
	for pos, row := range crows {
		worst = max(worst, relDiff(row, grows[pos]))
	}
	fmt.Printf("check: rows captured at %s GPU vs CPU: relative difference up to %.3g (≤ %g)\n", pt, worst, c.captureTol)
	if worst > c.captureTol {
		return fmt.Errorf("captured rows differ by %g (relative)", worst)
	}

	n := gpu.model.NEmbd()
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	add := func(h *hooks.Hooks) error {
		return h.SetIntervention(pt, hooks.InterventionFunc(func(r *hooks.Rows) error {
			for i := 0; i < r.N; i++ {
				row := r.Row(i)
				for j := range row {
					row[j] += v[j]
				}
			}
			return nil
		}))
	}
	hooked, err := gpu.decode(c, toks, add, nil)
	if err != nil {
		return err
	}
	cvec := make([]float32, n*(gpu.model.NLayer()-1))
	copy(cvec[(c.layer-1)*n:], v)
	ref, err := gpu.decode(c, toks, nil, cvec)
	if err != nil {
		return err
	}
	d = maxAbsDiff(hooked, ref)
	fmt.Printf("check: l_out intervention vs llama.cpp's control vector on the GPU: max |Δlogit| %.3g (≤ 1e-3)\n", d)
	if d > 1e-3 {
		return fmt.Errorf("intervention vs control vector differ by %g", d)
	}
	if d := maxAbsDiff(hooked, gbase); d < 1e-2 {
		return fmt.Errorf("the intervention changed nothing (Δ=%g)", d)
	}
	noop, err := gpu.decode(c, toks, func(h *hooks.Hooks) error {
		return h.SetIntervention(pt, hooks.InterventionFunc(func(*hooks.Rows) error { return nil }))
	}, nil)
	if err != nil {
		return err
	}
	if d := maxAbsDiff(noop, gbase); d != 0 {
		return fmt.Errorf("a no-op intervention changed the GPU's logits by %g", d)
	}
	fmt.Println("check: no-op intervention on the GPU: bit-identical logits")

	sf := steerFile(gpu.model, c.layer)
	steered := func(s *side) ([][]float32, [][]float32, error) {
		var gates [][]float32
		lg, err := s.decode(c, toks, func(h *hooks.Hooks) error {
			iv, err := intervene.New(sf, steer.DefaultApplyOptions(), s.model, s.cat)
			if err != nil {
				return err
			}
			iv.SetAudit(func(a intervene.RowAudit) { gates = append(gates, append([]float32(nil), a.Gates...)) })
			return intervene.Install(h, iv)
		}, nil)
		return lg, gates, err
	}
	_, cg, err := steered(cpu)
	if err != nil {
		return err
	}
	gs, gg, err := steered(gpu)
	if err != nil {
		return err
	}
	if len(gg) != len(toks) || len(cg) != len(toks) {
		return fmt.Errorf("steering audited %d rows on the GPU, %d on the CPU, want %d", len(gg), len(cg), len(toks))
	}
	var gd float64
	for i := range cg {
		for j := range cg[i] {
			gd = max(gd, math.Abs(float64(cg[i][j]-gg[i][j])))
		}
	}
	fmt.Printf("check: MAT-Steer gates GPU vs CPU: max |Δgate| %.3g (≤ %g)\n", gd, c.gateTol)
	if gd > c.gateTol {
		return fmt.Errorf("gates differ by %g", gd)
	}
	if d := maxAbsDiff(gs, gbase); d < 1e-2 {
		return fmt.Errorf("steering changed nothing on the GPU (Δ=%g)", d)
	}
	fmt.Println("check: all passed")
	return timing(c, gpu, sf, pt)
}

// timing generates c.n tokens unhooked, hooked (no-op) and steered in
// interleaved rounds, on one context each.
func timing(c config, s *side, sf *steer.File, pt hooks.Point) error {
	plain, err := s.context(c, nil)
	if err != nil {
		return err
	}
	defer plain.Close()
	hh := hooks.New(s.cat)
	defer hh.Close()
	hooked, err := s.context(c, hh)
	if err != nil {
		return err
	}
	defer hooked.Close()
	if err := hh.SetIntervention(pt, hooks.InterventionFunc(func(*hooks.Rows) error { return nil })); err != nil {
		return err
	}
	sh := hooks.New(s.cat)
	defer sh.Close()
	steeredCtx, err := s.context(c, sh)
	if err != nil {
		return err
	}
	defer steeredCtx.Close()
	iv, err := intervene.New(sf, steer.DefaultApplyOptions(), s.model, s.cat)
	if err != nil {
		return err
	}
	if err := intervene.Install(sh, iv); err != nil {
		return err
	}
	// Like llama-bench's tg: one token per decode after a short prompt, the
	// logits of each read back (greedy sampling would need them).
	gen := func(ctx *llama.Context) (float64, error) {
		ctx.ClearMemory()
		b := llama.NewBatch(8, 1)
		defer b.Close()
		for i := 0; i < 8; i++ {
			b.Add(llama.Token(40+i), i, []int{0}, i == 7)
		}
		if err := ctx.Decode(b); err != nil {
			return 0, err
		}
		start := time.Now()
		for i := 0; i < c.n; i++ {
			b.Clear()
			b.Add(llama.Token(40+i%100), 8+i, []int{0}, true)
			if err := ctx.Decode(b); err != nil {
				return 0, err
			}
			if _, err := ctx.Logits(0); err != nil {
				return 0, err
			}
		}
		return float64(c.n) / time.Since(start).Seconds(), nil
	}
	// One warm-up run each.
	for _, ctx := range []*llama.Context{plain, hooked, steeredCtx} {
		if _, err := gen(ctx); err != nil {
			return err
		}
	}
	fmt.Printf("timing: %d generated tokens per run, %d threads, rounds interleaved (unhooked, hooked, steered)\n", c.n, c.threads)
	fmt.Printf("%-6s %-10s %9s %9s\n", "round", "mode", "tok/s", "ms/token")
	start := time.Now()
	for r := 1; r <= c.rounds; r++ {
		var tps [3]float64
		for i, ctx := range []*llama.Context{plain, hooked, steeredCtx} {
			t, err := gen(ctx)
			if err != nil {
				return err
			}
			tps[i] = t
			fmt.Printf("%-6d %-10s %9.1f %9.3f\n", r, []string{"unhooked", "hooked", "steered"}[i], t, 1000/t)
		}
		fmt.Printf("%-6d ratios: hooked/unhooked %.3f, steered/unsteered %.3f\n", r, tps[1]/tps[0], tps[2]/tps[0])
	}
	fmt.Printf("timing: %.1f s\n", time.Since(start).Seconds())
	return nil
}
