package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/progress"
	"github.com/matsteer/matsteer/steer"
)

// NoneName is the name of the unsteered condition.
const NoneName = "none"

// Method is one evaluation condition: the model unsteered, or with one
// steering intervention installed.
type Method struct {
	// Name labels the condition in results; names must be unique in a run.
	Name string
	// Intervention steers the model; nil evaluates it unsteered. It must
	// have been prepared for the Runner's model (intervene.Load or New) and
	// must not be used by another context at the same time.
	Intervention *intervene.Intervention
	// Path is the steering file's path, for reports.
	Path string
	// Options are the strengths the intervention was built with, for
	// reports.
	Options steer.ApplyOptions
}

// Unsteered returns the "none" condition.
func Unsteered() Method { return Method{Name: NoneName} }

// LoadMethod loads a steering file for model m as a condition. An empty
// name means the file's base name without extension.
func LoadMethod(name, path string, opts steer.ApplyOptions, m *llama.Model, cat *hooks.Catalog) (Method, error) {
	f, err := steer.ReadFile(path)
	if err != nil {
		return Method{}, err
	}
	return NewMethod(name, path, f, opts, m, cat)
}

// NewMethod is LoadMethod for a steering file already read from path.
func NewMethod(name, path string, f *steer.File, opts steer.ApplyOptions, m *llama.Model, cat *hooks.Catalog) (Method, error) {
	iv, err := intervene.New(f, opts, m, cat)
	if err != nil {
		return Method{}, fmt.Errorf("steering file %s: %w", path, err)
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return Method{Name: name, Intervention: iv, Path: path, Options: opts}, nil
}

// Steered reports whether the condition changes the model at all.
func (m Method) Steered() bool { return m.Intervention != nil && m.Intervention.Active() }

// SteeringInfo describes a condition's steering for reports.
type SteeringInfo struct {
	Path         string             `json:"path,omitempty"`
	Method       string             `json:"method"`
	Site         string             `json:"site"`
	Layer        int                `json:"layer"`
	NormPreserve bool               `json:"norm_preserve"`
	Attributes   []string           `json:"attributes"`
	Sigma        string             `json:"sigma,omitempty"`        // Training["sigma"]
	SigmaValues  string             `json:"sigma_values,omitempty"` // Training["sigma_values"]
	Global       float64            `json:"global"`                 // α
	Strengths    map[string]float64 `json:"strengths"`              // s_t of every attribute
	Training     map[string]string  `json:"training,omitempty"`     // the file's training metadata
}

// Info describes the condition's steering (nil when unsteered).
func (m Method) Info() *SteeringInfo {
	if m.Intervention == nil {
		return nil
	}
	f := m.Intervention.File()
	info := &SteeringInfo{
		Path: m.Path, Method: f.Method, Site: f.Site, Layer: f.Layer, NormPreserve: f.NormPreserve,
		Attributes: f.AttributeNames(), Sigma: f.Training["sigma"], SigmaValues: f.Training["sigma_values"],
		Global: m.Options.Global, Strengths: map[string]float64{}, Training: f.Training,
	}
	for _, a := range info.Attributes {
		s, ok := m.Options.Strengths[a]
		if !ok {
			s = 1
		}
		info.Strengths[a] = s
	}
	return info
}

// checkMethods validates a run's conditions.
func checkMethods(methods []Method) error {
	if len(methods) == 0 {
		return errors.New("eval: no methods to evaluate")
	}
	seen := map[string]bool{}
	for _, m := range methods {
		if m.Name == "" {
			return errors.New("eval: a method has no name")
		}
		if seen[m.Name] {
			return fmt.Errorf("eval: method name %q used twice", m.Name)
		}
		seen[m.Name] = true
	}
	return nil
}

// Runner evaluates conditions on one model with one llama.cpp context whose
// hooks it owns. It is not safe for concurrent use.
type Runner struct {
	model  *llama.Model
	cat    *hooks.Catalog
	hooks  *hooks.Hooks
	lctx   *llama.Context
	scorer *llama.Scorer
	multi  *llama.MultiScorer
	batch  *llama.Batch
}

// NewRunner makes a runner for m. cat may be nil (the model is probed). The
// context is made from p with the runner's hooks (p.Hook is replaced);
// p.NCtx bounds the longest prompt + answer and text.
func NewRunner(m *llama.Model, cat *hooks.Catalog, p llama.ContextParams) (*Runner, error) {
	if cat == nil {
		var err error
		if cat, err = hooks.Probe(m); err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
	}
	h := hooks.New(cat)
	p.Hook = h
	if p.NUBatch == 0 {
		p.NUBatch = RunnerUBatch
	}
	if p.NSeqMax == 0 {
		// Choices are scored together, one sequence each, sharing the
		// prompt's KV cells, and several items share a batch
		// (llama.MultiScorer): as many sequences as a micro-batch holds
		// tokens.
		p.NSeqMax = p.NUBatch
		for _, n := range []int{p.NBatch, p.NCtx} {
			if n > 0 {
				p.NSeqMax = min(p.NSeqMax, n)
			}
		}
	}
	lctx, err := llama.NewContext(m, p)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("eval: %w", err)
	}
	multi, err := lctx.NewMultiScorer(0)
	if err != nil {
		lctx.Close()
		h.Close()
		return nil, fmt.Errorf("eval: %w", err)
	}
	return &Runner{model: m, cat: cat, hooks: h, lctx: lctx, scorer: lctx.NewScorer(0), multi: multi, batch: llama.NewBatch(lctx.NBatch(), 1)}, nil
}

// RunnerUBatch is the micro-batch of a runner's context unless
// llama.ContextParams.NUBatch says otherwise. llama.cpp's CPU flash
// attention takes a tiled path (F32 accumulation) for micro-batches of 64
// rows or more and a row path (F16 accumulation) below, and the two differ
// by up to ~0.1 nats per token on SmolLM2; micro-batches below 64 rows keep
// every row on the row path, so a choice's score does not depend on how
// many tokens share its batch (Options.BatchItems, the prompt's length).
const RunnerUBatch = 63

// Close frees the runner's context and hooks (not the model).
func (r *Runner) Close() {
	if r.lctx == nil {
		return
	}
	r.scorer.Close()
	r.multi.Close()
	r.batch.Close()
	r.lctx.Close()
	r.hooks.Close()
	r.lctx = nil
}

// Model is the runner's model.
func (r *Runner) Model() *llama.Model { return r.model }

// Catalog is the hook catalog interventions are validated against.
func (r *Runner) Catalog() *hooks.Catalog { return r.cat }

// Context is the runner's llama.cpp context.
func (r *Runner) Context() *llama.Context { return r.lctx }

// install makes m's steering (or none) the only intervention.
func (r *Runner) install(m Method) error {
	r.hooks.Clear()
	if m.Intervention == nil {
		return nil
	}
	if err := intervene.Install(r.hooks, m.Intervention); err != nil {
		return fmt.Errorf("eval: method %s: %w", m.Name, err)
	}
	return nil
}

// abortOnCancel aborts a running decode when ctx is cancelled; call the
// returned function when done: it waits for an abort already under way, so
// the context is not touched after it returns.
func (r *Runner) abortOnCancel(ctx context.Context) func() {
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		r.lctx.Abort()
	})
	return func() {
		if !stop() {
			<-done
		}
	}
}

// ctxErr prefers ctx's error over an error caused by the abort.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// preparedItem holds an item's tokens. Distinct choice texts are scored
// once (TruthfulQA's MC1 and MC2 sets share answers).
type preparedItem struct {
	prompt []llama.Token
	texts  [][]llama.Token
	choice []int // Item.Choices[i] is texts[choice[i]]
	mc1    []int // Item.MC1[i] is texts[mc1[i]]
}

func (r *Runner) prepare(task string, it datasets.Item) (*preparedItem, error) {
	if len(it.Choices) < 2 {
		return nil, fmt.Errorf("eval: item %s has %d choices, want at least 2", it.ID, len(it.Choices))
	}
	if it.Task != "" && it.Task != task {
		return nil, fmt.Errorf("eval: item %s belongs to task %s, not %s", it.ID, it.Task, task)
	}
	nCorrect := 0
	for _, c := range it.Choices {
		if c.Correct {
			nCorrect++
		}
	}
	if nCorrect == 0 {
		return nil, fmt.Errorf("eval: item %s has no correct choice", it.ID)
	}
	if task == datasets.TaskBBQ && it.Meta["context_condition"] == "" {
		return nil, fmt.Errorf("eval: BBQ item %s has no context_condition", it.ID)
	}
	p := &preparedItem{}
	var err error
	if p.prompt, err = r.model.Tokenize(it.Prompt, true, false); err != nil {
		return nil, fmt.Errorf("eval: item %s: prompt: %w", it.ID, err)
	}
	if len(p.prompt) == 0 {
		return nil, fmt.Errorf("eval: item %s: empty prompt", it.ID)
	}
	index := map[string]int{}
	add := func(c datasets.Choice) (int, error) {
		if k, ok := index[c.Text]; ok {
			return k, nil
		}
		toks, err := r.model.Tokenize(c.Text, false, false)
		if err != nil {
			return 0, fmt.Errorf("eval: item %s: choice %q: %w", it.ID, c.Text, err)
		}
		if len(toks) == 0 {
			return 0, fmt.Errorf("eval: item %s: choice %q has no tokens", it.ID, c.Text)
		}
		if n := len(p.prompt) + len(toks); n > r.lctx.NCtx() {
			return 0, fmt.Errorf("eval: item %s: prompt + choice are %d tokens, more than the context (%d); raise the context length", it.ID, n, r.lctx.NCtx())
		}
		index[c.Text] = len(p.texts)
		p.texts = append(p.texts, toks)
		return len(p.texts) - 1, nil
	}
	for _, c := range it.Choices {
		k, err := add(c)
		if err != nil {
			return nil, err
		}
		p.choice = append(p.choice, k)
	}
	if task == datasets.TaskTruthfulQA && len(it.MC1) > 0 {
		n := 0
		for _, c := range it.MC1 {
			if c.Correct {
				n++
			}
			k, err := add(c)
			if err != nil {
				return nil, err
			}
			p.mc1 = append(p.mc1, k)
		}
		if n != 1 || len(it.MC1) < 2 {
			return nil, fmt.Errorf("eval: item %s: MC1 set has %d choices, %d correct; want at least 2 and exactly 1", it.ID, len(it.MC1), n)
		}
	}
	return p, nil
}

// scoreItem scores every distinct text of p after its prompt with the
// installed intervention and returns the item's scores and the number of
// tokens decoded.
func (r *Runner) scoreItem(ctx context.Context, id string, p *preparedItem) (ItemScores, int, error) {
	if err := r.scorer.SetPrefix(ctx, p.prompt); err != nil {
		return ItemScores{}, 0, fmt.Errorf("eval: item %s: %w", id, err)
	}
	decoded := len(p.prompt)
	all, err := r.scorer.ScoreAll(ctx, p.texts)
	if err != nil {
		return ItemScores{}, 0, fmt.Errorf("eval: item %s: %w", id, err)
	}
	out, n := p.scores(id, all)
	return out, decoded + n, nil
}

// scores maps the scores of p's distinct texts to its choices and returns
// them with the number of continuation tokens decoded.
func (p *preparedItem) scores(id string, all []llama.ContinuationScore) (ItemScores, int) {
	decoded := 0
	scores := make([]ChoiceScore, len(p.texts))
	for k, toks := range p.texts {
		scores[k] = ChoiceScore{Sum: all[k].Sum, Tokens: len(toks)}
		decoded += len(toks) - 1
	}
	out := ItemScores{ID: id, Choices: make([]ChoiceScore, len(p.choice))}
	for i, k := range p.choice {
		out.Choices[i] = scores[k]
	}
	if len(p.mc1) > 0 {
		out.MC1 = make([]ChoiceScore, len(p.mc1))
		for i, k := range p.mc1 {
			out.MC1[i] = scores[k]
		}
	}
	return out, decoded
}

// scoreWindow scores several items with the installed intervention in
// shared batches (llama.MultiScorer) and returns their scores and the
// number of tokens decoded; the same scores as scoreItem up to the float
// rounding of batched kernels.
func (r *Runner) scoreWindow(ctx context.Context, items []datasets.Item, prep []*preparedItem) ([]ItemScores, int, error) {
	reqs := make([]llama.ScoreRequest, len(prep))
	for i, p := range prep {
		reqs[i] = llama.ScoreRequest{Prefix: p.prompt, Conts: p.texts}
	}
	all, err := r.multi.Score(ctx, reqs)
	if err != nil {
		var re *llama.RequestError
		if errors.As(err, &re) {
			return nil, 0, fmt.Errorf("eval: item %s: %w", items[re.Index].ID, re.Err)
		}
		return nil, 0, fmt.Errorf("eval: items %s to %s: %w", items[0].ID, items[len(items)-1].ID, err)
	}
	out := make([]ItemScores, len(prep))
	decoded := 0
	for i, p := range prep {
		sc, n := p.scores(items[i].ID, all[i])
		out[i] = sc
		decoded += len(p.prompt) + n
	}
	return out, decoded, nil
}

// Options control Evaluate.
type Options struct {
	// Progress receives a progress bar (nil: none).
	Progress io.Writer
	// Label prefixes the progress bar ("" : "eval <task>").
	Label string
	// Stats controls the intervals and paired tests added by Analyze
	// (zero: the defaults).
	Stats StatOptions
	// BatchItems is the number of items scored together under each
	// condition, their prompts and choices sharing batches (0:
	// DefaultBatchItems; 1: one item at a time, its prompt decoded
	// before its choices; at most MaxBatchItems).
	BatchItems int
}

// DefaultBatchItems is the default Options.BatchItems.
const DefaultBatchItems = 16

// MaxBatchItems bounds Options.BatchItems.
const MaxBatchItems = 4096

// batchItems returns the window size o asks for, checked.
func (o Options) batchItems() (int, error) {
	switch {
	case o.BatchItems == 0:
		return DefaultBatchItems, nil
	case o.BatchItems < 0 || o.BatchItems > MaxBatchItems:
		return 0, fmt.Errorf("eval: %d items per batch: want 1 to %d (0: %d)", o.BatchItems, MaxBatchItems, DefaultBatchItems)
	}
	return o.BatchItems, nil
}

// Timing is the time a condition took.
type Timing struct {
	Seconds         float64 `json:"seconds"`
	ItemsPerSecond  float64 `json:"items_per_second"`
	Tokens          int     `json:"tokens"` // tokens decoded
	TokensPerSecond float64 `json:"tokens_per_second"`
}

// ItemResult is one item's scores and outcome under one condition.
type ItemResult struct {
	ItemScores
	Outcome
}

// MethodResult is one condition's result on a task.
type MethodResult struct {
	Name     string        `json:"name"`
	Steering *SteeringInfo `json:"steering,omitempty"`
	NItems   int           `json:"n_items"`
	Summary
	// Intervals are the metrics' bootstrap intervals over items (Analyze).
	Intervals map[string]Interval `json:"intervals,omitempty"`
	// Comparisons are paired tests against every earlier condition of the
	// run (Analyze).
	Comparisons []Comparison `json:"comparisons,omitempty"`
	Timing      Timing       `json:"timing"`
	Items       []ItemResult `json:"items,omitempty"`
}

// Metric returns a metric and whether it is defined.
func (m MethodResult) Metric(name string) (float64, bool) {
	v, ok := m.Metrics[name]
	return v, ok
}

// headline returns the metric shown in the progress bar.
func headline(task string) string {
	if task == datasets.TaskTruthfulQA {
		return MetricMC2
	}
	return MetricAcc
}

// Evaluate scores every item under every condition (Options.BatchItems
// items at a time, all conditions for each window of items) and returns one result per condition, in the
// order of methods, with per-item scores in Items and the statistics of
// Analyze (intervals, paired tests). Steering is active for
// every decoded token of prompt and answers. Cancelling ctx stops the run
// (the error is ctx's).
func (r *Runner) Evaluate(ctx context.Context, task string, items []datasets.Item, methods []Method, opts Options) ([]MethodResult, error) {
	if err := CheckTask(task); err != nil {
		return nil, err
	}
	if err := checkMethods(methods); err != nil {
		return nil, err
	}
	if _, err := opts.Stats.withDefaults(); err != nil {
		return nil, err
	}
	window, err := opts.batchItems()
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, errors.New("eval: no items")
	}
	prep := make([]*preparedItem, len(items))
	for i, it := range items {
		p, err := r.prepare(task, it)
		if err != nil {
			return nil, err
		}
		prep[i] = p
	}
	defer r.abortOnCancel(ctx)()
	defer r.hooks.Clear()
	results := make([]MethodResult, len(methods))
	elapsed := make([]time.Duration, len(methods))
	running := make([]float64, len(methods))
	for j, m := range methods {
		results[j] = MethodResult{Name: m.Name, Steering: m.Info(), NItems: len(items), Items: make([]ItemResult, len(items))}
	}
	var bar *progress.Bar
	if opts.Progress != nil {
		label := opts.Label
		if label == "" {
			label = "eval " + task
		}
		bar = progress.New(opts.Progress, int64(len(items)), label, "item")
		defer bar.Finish()
	}
	key := headline(task)
	for w := 0; w < len(items); w += window {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(w+window, len(items))
		for j, m := range methods {
			t0 := time.Now()
			if err := r.install(m); err != nil {
				return nil, err
			}
			var scores []ItemScores
			var n int
			var err error
			if window == 1 {
				var sc ItemScores
				sc, n, err = r.scoreItem(ctx, items[w].ID, prep[w])
				scores = []ItemScores{sc}
			} else {
				scores, n, err = r.scoreWindow(ctx, items[w:end], prep[w:end])
			}
			if err != nil {
				return nil, ctxErr(ctx, fmt.Errorf("%w (method %s)", err, m.Name))
			}
			elapsed[j] += time.Since(t0)
			results[j].Timing.Tokens += n
			for i := w; i < end; i++ {
				sc := scores[i-w]
				o, err := ItemOutcome(task, items[i], sc)
				if err != nil {
					return nil, err
				}
				results[j].Items[i] = ItemResult{ItemScores: sc, Outcome: o}
				if key == MetricMC2 {
					running[j] += *o.MC2
				} else if o.Correct {
					running[j]++
				}
			}
		}
		if bar != nil {
			parts := make([]string, len(methods))
			for j, m := range methods {
				parts[j] = fmt.Sprintf("%s %.3f", m.Name, running[j]/float64(end))
			}
			bar.SetStatus(key + ": " + strings.Join(parts, " | "))
			bar.Add(int64(end - w))
		}
	}
	for j := range results {
		scores := make([]ItemScores, len(items))
		for i := range items {
			scores[i] = results[j].Items[i].ItemScores
		}
		s, err := Summarize(task, items, scores)
		if err != nil {
			return nil, err
		}
		results[j].Summary = s
		sec := elapsed[j].Seconds()
		results[j].Timing.Seconds = sec
		if sec > 0 {
			results[j].Timing.ItemsPerSecond = float64(len(items)) / sec
			results[j].Timing.TokensPerSecond = float64(results[j].Timing.Tokens) / sec
		}
	}
	if err := Analyze(task, items, results, opts.Stats); err != nil {
		return nil, err
	}
	return results, nil
}

// forward decodes toks from position 0 of sequence 0 (cleared first), in
// chunks of n_batch, with the logits of positions [first, last) requested,
// and calls fn with each of those positions' logits (valid during the call
// only). A nil fn requests none.
func (r *Runner) forward(ctx context.Context, toks []llama.Token, first, last int, fn func(pos int, logits []float32) error) error {
	r.lctx.RemoveTokens(0, -1, -1)
	defer r.lctx.RemoveTokens(0, -1, -1)
	seqs := []int{0}
	nb := r.lctx.NBatch()
	want := func(i int) bool { return fn != nil && i >= first && i < last }
	for off := 0; off < len(toks); off += nb {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(off+nb, len(toks))
		r.batch.Clear()
		for i := off; i < end; i++ {
			if err := r.batch.Add(toks[i], i, seqs, want(i)); err != nil {
				return err
			}
		}
		if err := r.lctx.Decode(r.batch); err != nil {
			return ctxErr(ctx, err)
		}
		for i := off; i < end; i++ {
			if !want(i) {
				continue
			}
			lg, err := r.lctx.Logits(i - off)
			if err != nil {
				return err
			}
			if err := fn(i, lg); err != nil {
				return err
			}
		}
	}
	return nil
}
