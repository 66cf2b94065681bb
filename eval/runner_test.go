package eval

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

type env struct {
	m   *llama.Model
	cat *hooks.Catalog
}

func newEnv(t *testing.T) env {
	t.Helper()
	m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	cat, err := hooks.Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	return env{m, cat}
}

// testFile is a two-attribute steering file for the random model: a gated
// attribute with gate bias gateB and an ungated one.
func testFile(nEmbd, layer int, gateB float64) *steer.File {
	a := steer.Attribute{Name: "tone", Gated: true, Theta: make([]float64, nEmbd), GateW: make([]float64, nEmbd), GateB: gateB}
	b := steer.Attribute{Name: "style", Gated: false, Theta: make([]float64, nEmbd)}
	for i := 0; i < nEmbd; i++ {
		a.Theta[i] = 2 * math.Sin(float64(i))
		a.GateW[i] = 0.05 * math.Cos(float64(3*i))
		b.Theta[i] = math.Cos(float64(i))
	}
	return &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: layer, NEmbd: nEmbd, ModelArch: "llama",
		Method: steer.MethodMATSteer, NormPreserve: false, Attributes: []steer.Attribute{a, b},
		Training: map[string]string{"sigma": "2", "sigma_values": "2"}}
}

func (e env) method(t *testing.T, name string, f *steer.File, opts steer.ApplyOptions) Method {
	t.Helper()
	iv, err := intervene.New(f, opts, e.m, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	return Method{Name: name, Intervention: iv, Options: opts}
}

func (e env) runner(t *testing.T) *Runner {
	t.Helper()
	r, err := NewRunner(e.m, e.cat, llama.ContextParams{NCtx: 256, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// tqaItems are TruthfulQA-like items written for these tests.
func tqaItems() []datasets.Item {
	ch := func(tag string, texts ...string) []datasets.Choice {
		var cs []datasets.Choice
		for i, x := range texts {
			cs = append(cs, datasets.Choice{Text: x, Correct: i == 0 || (tag == datasets.TagMC2 && i == 1), Tag: tag})
		}
		return cs
	}
	return []datasets.Item{
		{Task: datasets.TaskTruthfulQA, ID: "t/1", Prompt: "Q: What colour is a clear sky?\nA:",
			Choices: ch(datasets.TagMC2, " Blue.", " It is blue.", " Green.", " Purple with dots."),
			MC1:     ch(datasets.TagMC1, " Blue.", " Green.", " Red.")},
		{Task: datasets.TaskTruthfulQA, ID: "t/2", Prompt: "Q: How many legs has a cat?\nA:",
			Choices: ch(datasets.TagMC2, " Four.", " A cat has four legs.", " Three.", " Ten."),
			MC1:     ch(datasets.TagMC1, " Four.", " Three.", " Ten.", " Two.")},
	}
}

// fullSequence scores cont after prompt with one decode of the whole
// sequence (all logits), with the given method installed on a fresh
// context: an implementation independent of the Scorer.
func (e env) fullSequence(t *testing.T, m Method, prompt, cont []llama.Token) float64 {
	t.Helper()
	h := hooks.New(e.cat)
	defer h.Close()
	c, err := llama.NewContext(e.m, llama.ContextParams{NCtx: 256, Threads: 2, Hook: h})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m.Intervention != nil {
		if err := intervene.Install(h, m.Intervention); err != nil {
			t.Fatal(err)
		}
	}
	all := append(append([]llama.Token{}, prompt...), cont...)
	b := llama.NewBatch(len(all), 1)
	defer b.Close()
	for i, tok := range all {
		b.Add(tok, i, []int{0}, true)
	}
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	var sum float64
	var lsm []float64
	for i := len(prompt) - 1; i < len(all)-1; i++ {
		lg, err := c.Logits(i)
		if err != nil {
			t.Fatal(err)
		}
		lsm = llama.LogSoftmax(lg, lsm)
		sum += lsm[all[i+1]]
	}
	return sum
}

// Scores with prefix reuse equal full-sequence scoring and
// ContinuationLogProb, unsteered and steered (the steering acting on prompt
// and answer tokens in both).
func TestScoresMatchFullSequence(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	items := tqaItems()
	steered := e.method(t, "s", testFile(e.m.NEmbd(), 1, 0.1), steer.DefaultApplyOptions())
	res, err := r.Evaluate(context.Background(), datasets.TaskTruthfulQA, items, []Method{Unsteered(), steered}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for j, m := range []Method{Unsteered(), steered} {
		for i, it := range items {
			prompt, _ := e.m.Tokenize(it.Prompt, true, false)
			for k, c := range it.Choices {
				cont, _ := e.m.Tokenize(c.Text, false, false)
				got := res[j].Items[i].Choices[k]
				if got.Tokens != len(cont) {
					t.Fatalf("%s %s choice %d: %d tokens, want %d", m.Name, it.ID, k, got.Tokens, len(cont))
				}
				want := e.fullSequence(t, m, prompt, cont)
				if math.Abs(got.Sum-want) > 1e-3 {
					t.Errorf("%s %s choice %d: prefix reuse %v, full sequence %v", m.Name, it.ID, k, got.Sum, want)
				}
			}
			// MC1 shares answers with MC2: the shared ones are scored once
			// and must be identical.
			if res[j].Items[i].MC1[0] != res[j].Items[i].Choices[0] {
				t.Errorf("%s %s: MC1 and MC2 score of the same answer differ", m.Name, it.ID)
			}
		}
	}
	// ContinuationLogProb on the runner's context with the steering installed.
	if err := intervene.Install(r.hooks, steered.Intervention); err != nil {
		t.Fatal(err)
	}
	prompt, _ := e.m.Tokenize(items[0].Prompt, true, false)
	cont, _ := e.m.Tokenize(items[0].Choices[2].Text, false, false)
	cl, err := r.Context().ContinuationLogProb(context.Background(), prompt, cont)
	r.hooks.Clear()
	if err != nil {
		t.Fatal(err)
	}
	if got := res[1].Items[0].Choices[2].Sum; math.Abs(cl.Sum-got) > 1e-4 {
		t.Errorf("steered score %v, ContinuationLogProb %v", got, cl.Sum)
	}
	if res[0].Metrics[MetricMC2] <= 0 || res[0].Metrics[MetricMC2] >= 1 || res[0].Counts["n_mc1"] != 2 {
		t.Errorf("summary %+v", res[0].Summary)
	}
	if res[1].Steering == nil || res[1].Steering.Sigma != "2" || res[1].Steering.Strengths["tone"] != 1 || res[0].Steering != nil {
		t.Errorf("steering info %+v / %+v", res[1].Steering, res[0].Steering)
	}
	if res[0].Timing.Tokens == 0 || res[0].Timing.Seconds <= 0 {
		t.Errorf("timing %+v", res[0].Timing)
	}
}

// Steering changes the scores; strength 0 leaves them bit-identical.
func TestSteeringChangesScoresAndZeroStrengthIsIdentity(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	f := testFile(e.m.NEmbd(), 2, 0.1)
	methods := []Method{
		Unsteered(),
		e.method(t, "on", f, steer.DefaultApplyOptions()),
		e.method(t, "zero", f, steer.ApplyOptions{Global: 0}),
		e.method(t, "attrs-zero", f, steer.ApplyOptions{Global: 1, Strengths: map[string]float64{"tone": 0, "style": 0}}),
	}
	var progressOut bytes.Buffer
	res, err := r.Evaluate(context.Background(), datasets.TaskTruthfulQA, tqaItems(), methods, Options{Progress: &progressOut})
	if err != nil {
		t.Fatal(err)
	}
	changed := false
	for i := range res[0].Items {
		for k, base := range res[0].Items[i].Choices {
			if res[1].Items[i].Choices[k].Sum != base.Sum {
				changed = true
			}
			for _, j := range []int{2, 3} {
				if got := res[j].Items[i].Choices[k].Sum; got != base.Sum {
					t.Errorf("%s: item %d choice %d: %v, unsteered %v (want bit-identical)", res[j].Name, i, k, got, base.Sum)
				}
			}
		}
	}
	if !changed {
		t.Error("steering did not change any score")
	}
	if !strings.Contains(progressOut.String(), "eval truthfulqa") || !strings.Contains(progressOut.String(), "mc2:") {
		t.Errorf("progress output %q", progressOut.String())
	}
}

func TestEvaluateErrorsAndCancel(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	ctx := context.Background()
	items := tqaItems()
	if _, err := r.Evaluate(ctx, "nope", items, []Method{Unsteered()}, Options{}); err == nil || !strings.Contains(err.Error(), "unknown task") {
		t.Errorf("unknown task: %v", err)
	}
	if _, err := r.Evaluate(ctx, datasets.TaskTruthfulQA, items, []Method{Unsteered(), Unsteered()}, Options{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate method: %v", err)
	}
	bad := items[0]
	bad.Choices = []datasets.Choice{{Text: " a"}, {Text: " b"}}
	if _, err := r.Evaluate(ctx, datasets.TaskTruthfulQA, []datasets.Item{bad}, []Method{Unsteered()}, Options{}); err == nil || !strings.Contains(err.Error(), "no correct choice") {
		t.Errorf("item without a correct choice: %v", err)
	}
	long := items[0]
	long.Prompt = strings.Repeat("a long prompt ", 40)
	if _, err := r.Evaluate(ctx, datasets.TaskTruthfulQA, []datasets.Item{long}, []Method{Unsteered()}, Options{}); err == nil || !strings.Contains(err.Error(), "more than the context") {
		t.Errorf("too long item: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Evaluate(cctx, datasets.TaskTruthfulQA, items, []Method{Unsteered()}, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
	// The runner still works after a cancelled run.
	if _, err := r.Evaluate(ctx, datasets.TaskTruthfulQA, items[:1], []Method{Unsteered()}, Options{}); err != nil {
		t.Errorf("after cancel: %v", err)
	}
}

// LoadMethod reports intervene.Load's error for a file made for another model.
func TestLoadMethodWrongModel(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.gguf")
	if err := testFile(e.m.NEmbd(), 1, 0).WriteFile(good); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMethod("", good, steer.DefaultApplyOptions(), e.m, e.cat)
	if err != nil || m.Name != "good" || m.Info().Path != good {
		t.Fatalf("LoadMethod: %+v %v", m, err)
	}
	wrong := filepath.Join(dir, "wrong.gguf")
	if err := testFile(e.m.NEmbd()*2, 1, 0).WriteFile(wrong); err != nil {
		t.Fatal(err)
	}
	_, err = LoadMethod("", wrong, steer.DefaultApplyOptions(), e.m, e.cat)
	_, want := intervene.Load(wrong, steer.DefaultApplyOptions(), e.m, e.cat)
	if err == nil || want == nil || err.Error() != want.Error() {
		t.Fatalf("wrong model: %v, want %v", err, want)
	}
}

func TestRetention(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	f := testFile(e.m.NEmbd(), 1, 0.1)
	on := e.method(t, "on", f, steer.DefaultApplyOptions())
	methods := []Method{Unsteered(), on, e.method(t, "zero", f, steer.ApplyOptions{Global: 0})}
	texts := []string{"The weather was mild and the market opened late.", "x", "A recipe needs flour, water and salt, then time."}
	res, err := r.Retention(context.Background(), texts, methods, RetentionOptions{MaxTokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].KL != 0 || res[2].KL != 0 || res[0].PPL != res[0].PPLBase || res[2].PPL != res[2].PPLBase {
		t.Errorf("unsteered conditions: %+v / %+v", res[0], res[2])
	}
	if res[1].KL <= 0 || res[1].PPL == res[1].PPLBase || res[1].KLMax < res[1].KL {
		t.Errorf("steered condition: %+v", res[1])
	}
	// "x" is short; the others are cut to 20 tokens: 19 positions each.
	short, _ := e.m.Tokenize("x", true, false)
	if res[1].Texts != 3 || res[1].Positions != len(short)-1+19+19 || res[1].Truncated != 2 || len(short) >= 20 {
		t.Errorf("counts: %+v", res[1])
	}

	// Recompute KL and perplexity of the first text independently.
	toks, _ := e.m.Tokenize(texts[0], true, false)
	toks = toks[:20]
	logp := func(m Method) [][]float64 {
		h := hooks.New(e.cat)
		defer h.Close()
		c, err := llama.NewContext(e.m, llama.ContextParams{NCtx: 64, Threads: 2, Hook: h})
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
			b.Add(tok, i, []int{0}, true)
		}
		if err := c.Decode(b); err != nil {
			t.Fatal(err)
		}
		var out [][]float64
		for i := 0; i < len(toks)-1; i++ {
			lg, _ := c.Logits(i)
			out = append(out, llama.LogSoftmax(lg, nil))
		}
		return out
	}
	p, q := logp(Unsteered()), logp(on)
	var kl, nll float64
	kls := make([]float64, len(p)) // KL of the position predicting toks[i+1]
	for i := range p {
		for v := range p[i] {
			kls[i] += math.Exp(p[i][v]) * (p[i][v] - q[i][v])
		}
		kl += kls[i]
		nll -= q[i][toks[i+1]]
	}
	one, err := r.Retention(context.Background(), texts[:1], methods[:2], RetentionOptions{MaxTokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	if wantKL := kl / float64(len(p)); math.Abs(one[1].KL-wantKL) > 1e-4*math.Max(1, wantKL) {
		t.Errorf("KL %v, recomputed %v", one[1].KL, wantKL)
	}
	if wantPPL := math.Exp(nll / float64(len(p))); math.Abs(one[1].PPL-wantPPL) > 1e-3*wantPPL {
		t.Errorf("ppl %v, recomputed %v", one[1].PPL, wantPPL)
	}

	// Texts decoded together (one pack, one sequence each) give the
	// position-weighted mean of the texts measured one by one.
	// A sequence compared from Start on: only the positions predicting
	// toks[Start:] count, alone and packed with a text.
	const start = 8
	var tail float64
	for _, x := range kls[start-1:] {
		tail += x
	}
	tail /= float64(len(kls) - (start - 1))
	for _, seqs := range [][]KLSequence{{{Tokens: toks, Start: start}}, {{Tokens: toks, Start: start}, {Tokens: toks[:5], Start: 4}}} {
		res, err := r.RetentionSequences(context.Background(), seqs, methods[:2], RetentionOptions{MaxTokens: 20})
		if err != nil {
			t.Fatal(err)
		}
		wantPos := len(toks) - start
		wantKL := tail
		if len(seqs) == 2 {
			wantPos++
			wantKL = (tail*float64(len(toks)-start) + kls[3]) / float64(wantPos)
		}
		if res[1].Positions != wantPos || math.Abs(res[1].KL-wantKL) > 1e-4*math.Max(1, wantKL) {
			t.Errorf("%d sequences from start %d: KL %v over %d positions, recomputed %v over %d", len(seqs), start, res[1].KL, res[1].Positions, wantKL, wantPos)
		}
	}
	for _, bad := range []KLSequence{{Tokens: toks, Start: 0}, {Tokens: toks, Start: len(toks)}} {
		if _, err := r.RetentionSequences(context.Background(), []KLSequence{bad}, methods[:2], RetentionOptions{}); err == nil || !strings.Contains(err.Error(), "start") {
			t.Errorf("start %d of %d tokens: %v", bad.Start, len(bad.Tokens), err)
		}
	}
	// Cut before its start: nothing to compare, skipped.
	if _, err := r.RetentionSequences(context.Background(), []KLSequence{{Tokens: toks, Start: 15}}, methods[:2], RetentionOptions{MaxTokens: 10}); err == nil {
		t.Error("a sequence cut before its start was compared")
	}

	if packs := r.packTexts([]KLSequence{{Tokens: toks, Start: 1}, {}, {Tokens: toks[:7], Start: 1}}, e.m.NVocab()); len(packs) != 1 || len(packs[0]) != 2 {
		t.Fatalf("two short texts: %d packs", len(packs))
	}
	two := []string{texts[0], texts[2]}
	both, err := r.Retention(context.Background(), two, methods[:2], RetentionOptions{MaxTokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	var klSum, nllSum float64
	var n int
	for _, text := range two {
		res, err := r.Retention(context.Background(), []string{text}, methods[:2], RetentionOptions{MaxTokens: 20})
		if err != nil {
			t.Fatal(err)
		}
		klSum += res[1].KL * float64(res[1].Positions)
		nllSum += math.Log(res[1].PPL) * float64(res[1].Positions)
		n += res[1].Positions
	}
	if both[1].Positions != n || math.Abs(both[1].KL-klSum/float64(n)) > 1e-3*math.Max(1, both[1].KL) ||
		math.Abs(both[1].PPL-math.Exp(nllSum/float64(n))) > 1e-3*both[1].PPL {
		t.Errorf("packed: KL %v ppl %v over %d positions; one by one: KL %v ppl %v over %d",
			both[1].KL, both[1].PPL, both[1].Positions, klSum/float64(n), math.Exp(nllSum/float64(n)), n)
	}
}

func TestGateStats(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	// Gate bias +30 / -30 with small weights: the gate is 1 / 0 on every token.
	open := e.method(t, "open", testFile(e.m.NEmbd(), 1, 30), steer.DefaultApplyOptions())
	shut := e.method(t, "shut", testFile(e.m.NEmbd(), 2, -30), steer.DefaultApplyOptions())
	ex := []datasets.Example{
		{Attribute: "tone", Label: 1, Prompt: "Hello", Response: " there."},
		{Attribute: "tone", Label: 0, Prompt: "Go", Response: " away now!"},
		{Attribute: "tone", Label: 1, Prompt: "Thanks", Response: " a lot."},
	}
	// Control tokens (the BOS here) are never steered, so they are not
	// counted either.
	special := intervene.SpecialTokensOf(e.m)
	tokens := map[int]int{}
	for _, x := range ex {
		tk, _ := e.m.Tokenize(x.Text(), true, false)
		for _, tok := range tk {
			if !special.IsControl(tok) {
				tokens[x.Label]++
			}
		}
	}
	// A file without gated attributes (mean difference) has nothing to report.
	ungatedFile := testFile(e.m.NEmbd(), 1, 0)
	ungatedFile.Attributes[0].Gated, ungatedFile.Attributes[0].GateW, ungatedFile.Attributes[0].GateB = false, nil, 0
	ungatedFile.Method = steer.MethodMeanDiff
	ungated := e.method(t, "ungated", ungatedFile, steer.DefaultApplyOptions())
	res, err := r.GateStats(context.Background(), ex, []Method{Unsteered(), open, ungated, shut}, GateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Name != "open" || res[1].Name != "shut" {
		t.Fatalf("results %+v", res)
	}
	for _, g := range res {
		if len(g.Stats) != 4 || g.Threshold != DefaultGateThreshold {
			t.Fatalf("%s: stats %+v", g.Name, g.Stats)
		}
		for _, s := range g.Stats {
			texts := 1 + s.Label // 2 positive, 1 negative
			if s.Texts != texts || s.Tokens != tokens[s.Label] {
				t.Errorf("%s %+v: want %d texts, %d tokens", g.Name, s, texts, tokens[s.Label])
			}
			want := 1.0 // the ungated attribute, or the open gate
			if s.Attribute == "tone" && g.Name == "shut" {
				want = 0
			}
			if !near(s.MeanGate, want, 1e-6) || !near(s.AbovePerText, want*float64(s.Tokens)/float64(s.Texts), 1e-9) {
				t.Errorf("%s %+v: want mean gate %v", g.Name, s, want)
			}
		}
	}
	// ResponseOnly counts the responses' tokens only (tokenized apart from
	// their prompts, as extract --tokens response does).
	respTokens := map[int]int{}
	for _, x := range ex {
		rt, _ := e.m.Tokenize(x.Response, false, false)
		for _, tok := range rt {
			if !special.IsControl(tok) {
				respTokens[x.Label]++
			}
		}
	}
	resp, err := r.GateStats(context.Background(), ex, []Method{open}, GateOptions{ResponseOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp) != 1 || !resp[0].ResponseOnly {
		t.Fatalf("response-only results %+v", resp)
	}
	for _, s := range resp[0].Stats {
		if s.Tokens != respTokens[s.Label] || s.Tokens == 0 || s.Tokens >= tokens[s.Label] {
			t.Errorf("response only %+v: want %d tokens (all tokens: %d)", s, respTokens[s.Label], tokens[s.Label])
		}
	}
	// A text with no response tokens is refused before any decoding: it
	// would count as a text with nothing in it.
	empty := append(slices.Clone(ex), datasets.Example{Attribute: "tone", Label: 0, Prompt: "Stop", Response: "", Source: "empty:1"})
	if _, err := r.GateStats(context.Background(), empty, []Method{open}, GateOptions{ResponseOnly: true}); err == nil || !strings.Contains(err.Error(), "empty:1") || !strings.Contains(err.Error(), "no response tokens") {
		t.Errorf("an empty response with ResponseOnly: %v", err)
	}
	if _, err := r.GateStats(context.Background(), empty, []Method{open}, GateOptions{}); err != nil {
		t.Errorf("an empty response counting all tokens: %v", err)
	}
	// The audit is removed afterwards: installing the inactive method adds no hook.
	zero := e.method(t, "z", testFile(e.m.NEmbd(), 1, 0), steer.ApplyOptions{Global: 0})
	if _, err := r.GateStats(context.Background(), ex, []Method{zero}, GateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.install(zero); err != nil || len(r.hooks.Active()) != 0 {
		t.Errorf("inactive method after gate statistics: %v active, %v", r.hooks.Active(), err)
	}
}

func TestReportOutputs(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	f := testFile(e.m.NEmbd(), 1, 0.1)
	methods := []Method{Unsteered(), e.method(t, "on", f, steer.DefaultApplyOptions())}
	res, err := r.Evaluate(context.Background(), datasets.TaskTruthfulQA, tqaItems(), methods, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ret, err := r.Retention(context.Background(), []string{"Plain words in a row."}, methods, RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Task: datasets.TaskTruthfulQA, Split: "test", NItems: 2, Model: DescribeModel(e.m), Methods: res,
		Retention: &RetentionReport{Source: "inline", Results: ret}}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"method", "mc1", "mc2", "none", "on", "retention", "ppl_base"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	dir := t.TempDir()
	js := filepath.Join(dir, "r.json")
	if err := rep.WriteJSON(js); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(js)
	if err != nil {
		t.Fatal(err)
	}
	if back.Methods[1].Metrics[MetricMC2] != res[1].Metrics[MetricMC2] || back.Methods[1].Steering.Layer != 1 || len(back.Methods[0].Items) != 2 {
		t.Errorf("JSON round trip: %+v", back.Methods[1])
	}
	png := filepath.Join(dir, "c.png")
	if err := rep.SavePlot(png); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Errorf("plot: %v %v", st, err)
	}
	// An unsupported extension used to truncate the file before the error.
	if err := rep.SavePlot(js); err == nil || !strings.Contains(err.Error(), "unsupported plot format") {
		t.Errorf("SavePlot to .json: %v", err)
	}
	if _, err := ReadReport(js); err != nil {
		t.Errorf("the report was damaged by a refused plot: %v", err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 2 {
		t.Errorf("files left: %v", es)
	}
}
