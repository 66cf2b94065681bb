// Command matsteer-bench measures matsteer's inference overhead side by
// side in one process run: prompt processing and generation through the Go
// binding vs llama.cpp's own llama-bench, with and without hooks, and
// extraction throughput vs plain prompt processing. `make bench` runs it;
// BENCHMARKS.md records its output.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/engine"
	"github.com/matsteer/matsteer/extract"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/models"
	"github.com/matsteer/matsteer/steer"
)

type config struct {
	model      string
	threads    int
	threadList []int
	reps       int
	nPrompt    int
	nGen       int
	layer      int
	llamaBench string
	only       string
	writeSteer string
	rpc        []string // RPC servers (-rpc); with -ngl, where layers go
	ngl        int
}

func main() {
	var cfg config
	flag.StringVar(&cfg.model, "model", "", "GGUF model (default: the cached default model)")
	flag.IntVar(&cfg.threads, "threads", 2, "CPU threads")
	threadList := flag.String("binding-threads", "1,2", "comma-separated thread counts for the binding comparison")
	flag.IntVar(&cfg.reps, "reps", 5, "repetitions per measurement (median reported)")
	flag.IntVar(&cfg.nPrompt, "p", 512, "prompt tokens")
	flag.IntVar(&cfg.nGen, "n", 128, "generated tokens")
	flag.IntVar(&cfg.layer, "layer", 14, "layer of the no-op hook")
	flag.StringVar(&cfg.llamaBench, "llama-bench", "third_party/build/bin/llama-bench", "llama.cpp's llama-bench binary")
	flag.StringVar(&cfg.only, "only", "", "comma-separated groups to run: binding,hooks,extract,steer (default all)")
	rpcList := flag.String("rpc", "", "offload layers to llama.cpp rpc-servers at HOST:PORT[,HOST:PORT...] (also passed to llama-bench; empty: local only)")
	flag.IntVar(&cfg.ngl, "ngl", 0, "layers offloaded to the GPU or -rpc servers (-1: all; default all with -rpc)")
	printModel := flag.Bool("print-model", false, "only print the path of the model it would use and exit")
	flag.StringVar(&cfg.writeSteer, "write-steer", "", "only write the benchmark's steering file (3 gated attributes at -layer) to this path and exit (empty: off)")
	flag.Parse()
	if *printModel {
		p := cfg.model
		if p == "" {
			var err error
			if p, err = models.DefaultPath(); err != nil {
				fmt.Fprintln(os.Stderr, "matsteer-bench:", err)
				os.Exit(1)
			}
		}
		fmt.Println(p)
		return
	}
	for _, f := range strings.Split(*threadList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			fmt.Fprintf(os.Stderr, "matsteer-bench: -binding-threads: %q is not a thread count in [1, 1024]\n", f)
			os.Exit(2)
		}
		cfg.threadList = append(cfg.threadList, n)
	}
	if cfg.writeSteer != "" {
		// Before the model loads: a bad path costs nothing, and an existing
		// file is replaced only by a complete new one (WriteFile is atomic).
		if err := safefile.CheckOutputs([]safefile.Output{{Flag: "-write-steer", Path: cfg.writeSteer}}, nil); err != nil {
			fmt.Fprintln(os.Stderr, "matsteer-bench:", err)
			os.Exit(2)
		}
	}
	if *rpcList != "" {
		servers, err := llama.ParseRPCServers(*rpcList)
		if err != nil {
			fmt.Fprintln(os.Stderr, "matsteer-bench: -rpc:", err)
			os.Exit(2)
		}
		cfg.rpc = servers
		ngl := false
		flag.Visit(func(f *flag.Flag) { ngl = ngl || f.Name == "ngl" })
		if !ngl {
			cfg.ngl = -1
		}
	}
	if cfg.ngl < -1 {
		fmt.Fprintln(os.Stderr, "matsteer-bench: -ngl must be -1 (all) or more")
		os.Exit(2)
	}
	if cfg.threads < 1 || cfg.reps < 1 || cfg.nPrompt < 1 || cfg.nGen < 1 || cfg.layer < 0 {
		fmt.Fprintln(os.Stderr, "matsteer-bench: -threads, -reps, -p and -n must be at least 1, -layer at least 0")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "matsteer-bench:", err)
		os.Exit(1)
	}
}

func (c config) wants(group string) bool {
	if c.only == "" {
		return true
	}
	for _, g := range strings.Split(c.only, ",") {
		if g == group {
			return true
		}
	}
	return false
}

type bench struct {
	cfg   config
	model *llama.Model
	cat   *hooks.Catalog
	toks  []llama.Token
}

func run(cfg config) error {
	if cfg.model == "" {
		p, err := models.DefaultPath()
		if err != nil {
			return err
		}
		cfg.model = p
	}
	m, err := llama.LoadModel(cfg.model, llama.ModelParams{GPULayers: cfg.ngl, RPC: cfg.rpc})
	if err != nil {
		return err
	}
	defer m.Close()
	if len(cfg.rpc) > 0 {
		fmt.Fprintf(os.Stderr, "rpc: %s\n", m.Placement())
	}
	if cfg.layer >= m.NLayer() {
		return fmt.Errorf("-layer %d: the model has layers 0..%d", cfg.layer, m.NLayer()-1)
	}
	cat, err := hooks.Probe(m)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	toks := make([]llama.Token, cfg.nPrompt)
	for i := range toks {
		toks[i] = llama.Token(rng.IntN(m.NVocab()))
	}
	b := &bench{cfg: cfg, model: m, cat: cat, toks: toks}
	if cfg.writeSteer != "" {
		return b.benchSteerFile().WriteFile(cfg.writeSteer)
	}
	fmt.Printf("model %s (%s), %d threads, median of %d runs\n", cfg.model, m.Desc(), cfg.threads, cfg.reps)
	// rpc-server serves one client at a time, and this process holds the
	// connections: llama-bench would wait for them forever.
	if len(cfg.rpc) > 0 && cfg.wants("binding") {
		fmt.Fprintln(os.Stderr, "matsteer-bench: -rpc: the binding group (llama-bench side by side) is skipped: rpc-server serves one client at a time")
	} else if cfg.wants("binding") {
		if err := b.bindingVsLlamaBench(); err != nil {
			return err
		}
	}
	if cfg.wants("hooks") {
		if err := b.hookOverhead(); err != nil {
			return err
		}
	}
	if cfg.wants("extract") {
		if err := b.extractThroughput(); err != nil {
			return err
		}
	}
	if cfg.wants("steer") {
		if err := b.steerOverhead(); err != nil {
			return err
		}
	}
	return nil
}

// newContext makes a context like llama-bench's: n_ctx = p + n, n_batch
// 2048, n_ubatch 512.
func (b *bench) newContext(h llama.EvalHook) (*llama.Context, error) {
	return llama.NewContext(b.model, llama.ContextParams{
		NCtx: b.cfg.nPrompt + b.cfg.nGen, NBatch: 2048, NUBatch: 512,
		Threads: b.cfg.threads, Hook: h, NoPerf: true,
	})
}

// pp returns prompt-processing speed (tokens/s) of one run.
func (b *bench) pp(ctx *llama.Context) (float64, error) {
	ctx.ClearMemory()
	start := time.Now()
	if err := ctx.DecodeTokens(context.Background(), b.toks, 0, 0, false); err != nil {
		return 0, err
	}
	return float64(len(b.toks)) / time.Since(start).Seconds(), nil
}

// tg returns generation speed (tokens/s): one-token decodes from an empty
// context, each requesting its logits, as llama-bench's tg test (which does
// not sample either; the next token is drawn at random).
func (b *bench) tg(ctx *llama.Context) (float64, error) {
	ctx.ClearMemory()
	batch := llama.NewBatch(1, 1)
	defer batch.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	tok := b.toks[0]
	start := time.Now()
	for i := 0; i < b.cfg.nGen; i++ {
		batch.Clear()
		batch.Add(tok, i, []int{0}, true)
		if err := ctx.Decode(batch); err != nil {
			return 0, err
		}
		tok = llama.Token(rng.IntN(b.model.NVocab()))
	}
	return float64(b.cfg.nGen) / time.Since(start).Seconds(), nil
}

// interleaved measures several variants in alternation (so drift in
// machine load affects them alike) and returns each one's median.
func interleaved(reps int, fns ...func() (float64, error)) ([]float64, error) {
	res := make([][]float64, len(fns))
	for _, fn := range fns { // warm-up
		if _, err := fn(); err != nil {
			return nil, err
		}
	}
	for r := 0; r < reps; r++ {
		for i, fn := range fns {
			v, err := fn()
			if err != nil {
				return nil, err
			}
			res[i] = append(res[i], v)
		}
	}
	out := make([]float64, len(fns))
	for i, r := range res {
		out[i] = median(r)
	}
	return out, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func row(name string, ours, ref float64, unit string, target float64) {
	status := "ok"
	if ours/ref < target {
		status = "BELOW TARGET"
	}
	fmt.Printf("  %-38s %10.1f %s  vs %10.1f  ratio %.3f (target >= %.2f) %s\n", name, ours, unit, ref, ours/ref, target, status)
}

type llamaBenchResult struct {
	NPrompt int       `json:"n_prompt"`
	NGen    int       `json:"n_gen"`
	AvgTS   float64   `json:"avg_ts"`
	Samples []float64 `json:"samples_ts"`
}

// llamaBench runs llama.cpp's llama-bench once (one repetition) and returns
// its pp and tg speeds (tok/s).
func (b *bench) llamaBench(threads int) (pp, tg float64, err error) {
	ngl := b.cfg.ngl
	if ngl < 0 {
		ngl = 999
	}
	out, err := exec.Command(b.cfg.llamaBench, "-m", b.cfg.model, "-p", fmt.Sprint(b.cfg.nPrompt), "-n", fmt.Sprint(b.cfg.nGen),
		"-t", fmt.Sprint(threads), "-r", "1", "-o", "json", "-ngl", fmt.Sprint(ngl)).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("llama-bench (%s): %w; build it with `make build`", b.cfg.llamaBench, err)
	}
	var res []llamaBenchResult
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, 0, fmt.Errorf("llama-bench output: %w", err)
	}
	for _, x := range res {
		if x.NPrompt > 0 && x.NGen == 0 {
			pp = x.AvgTS
		}
		if x.NGen > 0 && x.NPrompt == 0 {
			tg = x.AvgTS
		}
	}
	return pp, tg, nil
}

// generate measures a whole generation through the engine (what `matsteer
// generate` and the server do): a one-token prompt, then nGen greedy tokens,
// sampling included, end-of-generation ignored.
func (b *bench) generate(e *engine.Engine, inline bool) (float64, error) {
	start := time.Now()
	res, err := e.Generate(context.Background(), engine.Request{Prompt: b.toks[:1], MaxTokens: b.cfg.nGen,
		Sampler: llama.SamplerParams{IgnoreEOG: true}, Inline: inline}, func(llama.Token, string) error { return nil })
	if err != nil {
		return 0, err
	}
	if res.GeneratedTokens != b.cfg.nGen {
		return 0, fmt.Errorf("generated %d tokens, want %d", res.GeneratedTokens, b.cfg.nGen)
	}
	return float64(b.cfg.nGen) / time.Since(start).Seconds(), nil
}

// generateInline measures llama.Context.Generate (sampling and the callback
// on the decoding goroutine, as `matsteer generate` does) like generate.
func (b *bench) generateInline(ctx *llama.Context) (float64, error) {
	start := time.Now()
	st, err := ctx.Generate(context.Background(), b.toks[:1], llama.GenerateOptions{MaxTokens: b.cfg.nGen,
		Sampler: llama.SamplerParams{IgnoreEOG: true}}, func(llama.Token, string) error { return nil })
	if err != nil {
		return 0, err
	}
	if st.GeneratedTokens != b.cfg.nGen {
		return 0, fmt.Errorf("generated %d tokens, want %d", st.GeneratedTokens, b.cfg.nGen)
	}
	return float64(b.cfg.nGen) / time.Since(start).Seconds(), nil
}

// busyEmbedder starts goroutines that keep allocating, like a Go program
// embedding matsteer while doing other work; stop ends them.
func busyEmbedder(n int) (stop func()) {
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			var keep [][]byte
			for {
				select {
				case <-done:
					return
				default:
				}
				keep = append(keep, make([]byte, 4096))
				if len(keep) > 256 {
					keep = keep[:0]
				}
				time.Sleep(50 * time.Microsecond)
			}
		}()
	}
	return func() { close(done) }
}

// bindingVsLlamaBench compares, at each thread count and in interleaved
// rounds, llama-bench's pp and tg with ours: the raw decode loop, a whole
// generation through the engine, and the same with busy goroutines in the
// process. Every round is printed (tok/s and ms/token).
func (b *bench) bindingVsLlamaBench() error {
	for _, threads := range b.cfg.threadList {
		ctx, err := llama.NewContext(b.model, llama.ContextParams{NCtx: b.cfg.nPrompt + b.cfg.nGen, NBatch: 2048, NUBatch: 512, Threads: threads, NoPerf: true})
		if err != nil {
			return err
		}
		eng, err := engine.New(engine.Config{Model: b.model, Parallel: 1, NCtx: b.cfg.nGen + 8, Threads: threads})
		if err != nil {
			ctx.Close()
			return err
		}
		names := []string{"llama-bench pp", "ours pp", "llama-bench tg", "ours tg (decode loop)", "ours generate (llama.Generate)", "ours generate (engine)", "ours generate (engine, inline callback)", "ours generate, busy goroutines"}
		res := make([][]float64, len(names))
		fmt.Printf("binding vs llama-bench, %d thread(s), pp%d / tg%d, %d interleaved rounds:\n", threads, b.cfg.nPrompt, b.cfg.nGen, b.cfg.reps)
		if _, err := b.generate(eng, false); err != nil { // warm-up
			ctx.Close()
			eng.Close()
			return err
		}
		for r := 0; r < b.cfg.reps; r++ {
			ppRef, tgRef, err := b.llamaBench(threads)
			var vals []float64
			if err == nil {
				vals = append(vals, ppRef)
				var v float64
				for _, fn := range []func() (float64, error){
					func() (float64, error) { return b.pp(ctx) },
					func() (float64, error) { return tgRef, nil },
					func() (float64, error) { return b.tg(ctx) },
					func() (float64, error) { return b.generateInline(ctx) },
					func() (float64, error) { return b.generate(eng, false) },
					func() (float64, error) { return b.generate(eng, true) },
					func() (float64, error) {
						stop := busyEmbedder(2)
						defer stop()
						return b.generate(eng, false)
					},
				} {
					if v, err = fn(); err != nil {
						break
					}
					vals = append(vals, v)
				}
			}
			if err != nil {
				ctx.Close()
				eng.Close()
				return err
			}
			fmt.Printf("  round %d:", r+1)
			for i, v := range vals {
				res[i] = append(res[i], v)
				fmt.Printf("  %s %.1f tok/s (%.2f ms/tok);", names[i], v, 1000/v)
			}
			fmt.Println()
		}
		ctx.Close()
		eng.Close()
		ppRef, tgRef := median(res[0]), median(res[2])
		row("pp ours vs llama-bench (median)", median(res[1]), ppRef, "tok/s", 0.95)
		for i := 3; i < len(names); i++ {
			row(names[i]+" vs llama-bench tg", median(res[i]), tgRef, "tok/s", 0.95)
		}
		for i := 2; i < len(names); i++ {
			fmt.Printf("  %-38s per round ratio to llama-bench tg:", names[i])
			for r := range res[i] {
				fmt.Printf(" %.3f", res[i][r]/res[2][r])
			}
			fmt.Println()
		}
	}
	return nil
}

// overhead measures pp and tg with install(h) applied to a hooked
// context against a context without hooks, interleaved.
func (b *bench) overhead(title, what string, install func(h *hooks.Hooks) error) error {
	plain, err := b.newContext(nil)
	if err != nil {
		return err
	}
	defer plain.Close()
	h := hooks.New(b.cat)
	defer h.Close()
	hooked, err := b.newContext(h)
	if err != nil {
		return err
	}
	defer hooked.Close()
	if err := install(h); err != nil {
		return err
	}
	r, err := interleaved(b.cfg.reps,
		func() (float64, error) { return b.pp(plain) }, func() (float64, error) { return b.pp(hooked) },
		func() (float64, error) { return b.tg(plain) }, func() (float64, error) { return b.tg(hooked) })
	if err != nil {
		return err
	}
	fmt.Println(title)
	row(fmt.Sprintf("pp%d %s", b.cfg.nPrompt, what), r[1], r[0], "tok/s", 0.97)
	row(fmt.Sprintf("tg%d %s", b.cfg.nGen, what), r[3], r[2], "tok/s", 0.97)
	return nil
}

func (b *bench) hookOverhead() error {
	p := hooks.Point{Site: "l_out", Layer: b.cfg.layer}
	return b.overhead(fmt.Sprintf("no-op intervention at %s vs no hook:", p), "hooked vs plain", func(h *hooks.Hooks) error {
		return h.SetIntervention(p, hooks.InterventionFunc(func(*hooks.Rows) error { return nil }))
	})
}

// benchTexts makes n texts of 20-60 tokens from random vocabulary pieces.
func (b *bench) benchTexts(n int) []datasets.Example {
	rng := rand.New(rand.NewPCG(3, 4))
	ex := make([]datasets.Example, n)
	for i := range ex {
		toks := make([]llama.Token, 20+rng.IntN(40))
		for j := range toks {
			toks[j] = llama.Token(rng.IntN(b.model.NVocab()))
		}
		ex[i] = datasets.Example{Attribute: "bench", Label: i % 2, Prompt: b.model.Detokenize(toks, true, false), SampleID: int64(i), Source: fmt.Sprintf("bench:%d", i)}
	}
	return ex
}

// extractThroughput compares `matsteer extract`'s pipeline (packed
// sequences, capture at one layer, streamed to a file) with plain prompt
// processing of the same packed batches.
func (b *bench) extractThroughput() error {
	texts := b.benchTexts(128)
	const nBatch, nSeq = 512, 16
	h := hooks.New(b.cat)
	defer h.Close()
	ectx, err := llama.NewContext(b.model, llama.ContextParams{NCtx: nBatch, NBatch: nBatch, NUBatch: nBatch, NSeqMax: nSeq, Threads: b.cfg.threads, Hook: h, NoPerf: true})
	if err != nil {
		return err
	}
	defer ectx.Close()
	pctx, err := llama.NewContext(b.model, llama.ContextParams{NCtx: nBatch, NBatch: nBatch, NUBatch: nBatch, NSeqMax: nSeq, Threads: b.cfg.threads, NoPerf: true})
	if err != nil {
		return err
	}
	defer pctx.Close()
	dir, err := os.MkdirTemp("", "matsteer-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Token lists as extract packs them.
	var seqs [][]llama.Token
	total := 0
	for _, e := range texts {
		t, err := b.model.Tokenize(e.Prompt, true, false)
		if err != nil {
			return err
		}
		seqs = append(seqs, t)
		total += len(t)
	}
	plain := func() (float64, error) {
		batch := llama.NewBatch(nBatch, 1)
		defer batch.Close()
		start := time.Now()
		for i := 0; i < len(seqs); {
			batch.Clear()
			pctx.ClearMemory()
			for s := 0; i < len(seqs) && s < nSeq && batch.Len()+len(seqs[i]) <= nBatch; s, i = s+1, i+1 {
				for pos, tok := range seqs[i] {
					batch.Add(tok, pos, []int{s}, pos == len(seqs[i])-1)
				}
			}
			if err := pctx.Decode(batch); err != nil {
				return 0, err
			}
		}
		return float64(total) / time.Since(start).Seconds(), nil
	}
	ext := func(mode string) func() (float64, error) {
		return func() (float64, error) {
			start := time.Now()
			st, err := extract.Run(context.Background(), ectx, h, texts, filepath.Join(dir, "acts.safetensors"),
				extract.Options{Point: hooks.Point{Site: "l_out", Layer: b.cfg.layer}, Tokens: mode})
			if err != nil {
				return 0, err
			}
			return float64(st.Tokens) / time.Since(start).Seconds(), nil
		}
	}
	r, err := interleaved(b.cfg.reps, plain, ext(extract.TokensAll), ext(extract.TokensLast))
	if err != nil {
		return err
	}
	fmt.Printf("extraction at l_out-%d (%d texts, %d tokens, %d texts/batch) vs plain prompt processing of the same batches:\n", b.cfg.layer, len(texts), total, nSeq)
	row("extract --tokens all vs plain pp", r[1], r[0], "tok/s", 0.90)
	row("extract --tokens last vs plain pp", r[2], r[0], "tok/s", 0.90)
	return nil
}

// benchSteerFile is a 3-attribute gated steering file with random weights.
func (b *bench) benchSteerFile() *steer.File {
	rng := rand.New(rand.NewPCG(5, 6))
	n := b.model.NEmbd()
	f := &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: b.cfg.layer, NEmbd: n, ModelArch: b.model.Arch(),
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

// steerOverhead compares MAT-Steer steering (3 gated attributes, one layer)
// with the unsteered model.
func (b *bench) steerOverhead() error {
	iv, err := intervene.New(b.benchSteerFile(), steer.DefaultApplyOptions(), b.model, b.cat)
	if err != nil {
		return err
	}
	return b.overhead(fmt.Sprintf("MAT-Steer (3 gated attributes at %s) vs unsteered:", iv.Point()), "steered vs unsteered",
		func(h *hooks.Hooks) error { return intervene.Install(h, iv) })
}
