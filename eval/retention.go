package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/extract"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/progress"
)

// DefaultRetentionMaxTokens is the default length limit of a retention
// text (the unsteered log-probabilities of every position are kept while
// the steered passes run: tokens × vocabulary × 4 bytes).
const DefaultRetentionMaxTokens = 256

// RetentionOptions control Retention.
type RetentionOptions struct {
	// MaxTokens cuts longer texts (BOS included) to their first MaxTokens
	// tokens (0: DefaultRetentionMaxTokens).
	MaxTokens int
	// Progress receives a progress bar (nil: none), labelled Label
	// ("": "retention").
	Progress io.Writer
	Label    string
	// cache, when set, keeps the unsteered passes between calls on the
	// same sequences (Calibrate).
	cache *refCache
}

// refCacheBytes bounds the unsteered log-probabilities a calibration keeps
// between its passes (positions × vocabulary × 4 bytes; SmolLM2's study
// calibration: 1,826 positions, 359 MB). Packs past it are decoded
// unsteered again in every pass.
const refCacheBytes = 768 << 20

// refCache holds, per pack index, the unsteered log-probabilities of a
// pack's compared positions and their summed negative log-likelihood, for
// RetentionSequences calls on the same sequences with the same options.
type refCache struct {
	max   int // bytes (0: refCacheBytes)
	used  int
	packs map[int]refPack
}

type refPack struct {
	ref []float32
	nll float64
	dur time.Duration
}

// RetentionResult compares one condition with the unsteered model on
// neutral text (see the package documentation).
type RetentionResult struct {
	Name     string        `json:"name"`
	Steering *SteeringInfo `json:"steering,omitempty"`
	// KL is the mean over positions of KL(unsteered ‖ steered), nats;
	// KLP99 the 99th percentile of the per-position values (Quantile:
	// linear interpolation between ranks) and KLMax the
	// largest: gated steering can keep the mean low while changing a few
	// positions a lot (the tail).
	KL    float64 `json:"kl"`
	KLP99 float64 `json:"kl_p99"`
	KLMax float64 `json:"kl_max"`
	// PPL is the steered perplexity of the texts, PPLBase the unsteered.
	PPL     float64 `json:"ppl"`
	PPLBase float64 `json:"ppl_base"`
	// Texts and Positions count what was compared; Truncated the texts
	// cut to MaxTokens; Skipped the texts of fewer than 2 tokens.
	Texts     int     `json:"texts"`
	Positions int     `json:"positions"`
	Truncated int     `json:"truncated"`
	Skipped   int     `json:"skipped"`
	Seconds   float64 `json:"seconds"`
}

// KLSequence is a token sequence compared by RetentionSequences: the
// positions predicting Tokens[Start:] are compared, the ones before are
// decoded as context only. A neutral text has Start 1 (everything after
// BOS); a chat reply (ChatReplies) starts at its first generated token.
type KLSequence struct {
	Tokens []llama.Token
	Start  int
}

// Retention measures how far each condition moves the model's next-token
// distributions on neutral texts: each text (tokenized with BOS, cut to
// MaxTokens) is run unsteered once and then once per steered condition,
// and every position predicting a token of the text is compared. Texts are
// decoded several at a time, one sequence each (see packTexts).
// Unsteered conditions (nil or all-zero strengths) get KL 0 and the
// unsteered perplexity without another pass.
func (r *Runner) Retention(ctx context.Context, texts []string, methods []Method, opts RetentionOptions) ([]RetentionResult, error) {
	seqs, err := r.TextSequences(texts)
	if err != nil {
		return nil, err
	}
	return r.RetentionSequences(ctx, seqs, methods, opts)
}

// TextSequences tokenizes neutral texts (with BOS) as KL sequences of
// Start 1. A text of fewer than 2 tokens is a nil sequence (skipped by
// RetentionSequences).
func (r *Runner) TextSequences(texts []string) ([]KLSequence, error) {
	if len(texts) == 0 {
		return nil, errors.New("eval: retention: no texts")
	}
	seqs := make([]KLSequence, len(texts))
	for i, t := range texts {
		tk, err := r.model.Tokenize(t, true, false)
		if err != nil {
			return nil, fmt.Errorf("eval: retention text %d: %w", i+1, err)
		}
		if len(tk) < 2 {
			continue
		}
		seqs[i] = KLSequence{Tokens: tk, Start: 1}
	}
	return seqs, nil
}

func (r *Runner) retentionMaxTokens(n int) int {
	if n <= 0 {
		n = DefaultRetentionMaxTokens
	}
	return min(n, r.lctx.NCtx())
}

// RetentionSequences is Retention on token sequences: each sequence (cut
// to opts.MaxTokens) is decoded unsteered once and once per steered
// condition, and the positions predicting Tokens[Start:] are compared.
// A sequence with nothing to compare (nil, or cut before Start+1 tokens)
// is counted as skipped; Start must be at least 1 and below the
// sequence's length.
func (r *Runner) RetentionSequences(ctx context.Context, seqs []KLSequence, methods []Method, opts RetentionOptions) ([]RetentionResult, error) {
	if err := checkMethods(methods); err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, errors.New("eval: retention: no texts")
	}
	maxTok := r.retentionMaxTokens(opts.MaxTokens)
	kept := make([]KLSequence, 0, len(seqs))
	truncated, skipped := 0, 0
	for i, s := range seqs {
		if s.Tokens == nil {
			skipped++
			continue
		}
		if s.Start < 1 || s.Start >= len(s.Tokens) {
			return nil, fmt.Errorf("eval: retention sequence %d: start %d outside its %d tokens (want 1 to %d)", i+1, s.Start, len(s.Tokens), len(s.Tokens)-1)
		}
		if len(s.Tokens) > maxTok {
			truncated++
			s.Tokens = s.Tokens[:maxTok]
			if s.Start >= len(s.Tokens) {
				skipped++
				continue
			}
		}
		kept = append(kept, s)
	}
	if len(kept) == 0 {
		return nil, errors.New("eval: retention: every text is shorter than 2 tokens (or has nothing to compare within the token limit)")
	}
	defer r.abortOnCancel(ctx)()
	defer r.hooks.Clear()

	type acc struct {
		kl, klMax, nll float64
		n              int
		dur            time.Duration
		kls            []float64 // every position's KL, for the percentiles
	}
	accs := make([]acc, len(methods))
	var base acc
	var bar *progress.Bar
	if opts.Progress != nil {
		label := opts.Label
		if label == "" {
			label = "retention"
		}
		bar = progress.New(opts.Progress, int64(len(kept)), label, "text")
		defer bar.Finish()
	}
	nv := r.model.NVocab()
	var ref []float32     // unsteered log-probs of a pack's compared positions, × nv
	var scratch []float32 // ref's buffer for packs not cached
	var lq []float64
	nTexts := 0
	for pi, pk := range r.packTexts(kept, nv) {
		// Compared positions: Start-1 to each text's last but one.
		offs := make([]int, len(pk)) // row in ref of each text's position Start-1
		npos := 0
		for i, s := range pk {
			offs[i] = npos
			npos += len(s.Tokens) - s.Start
		}
		// row returns the ref row of text t's position pos (nil: not compared).
		row := func(t, pos int) []float32 {
			s := pk[t]
			if pos < s.Start-1 || pos >= len(s.Tokens)-1 {
				return nil
			}
			k := offs[t] + pos - (s.Start - 1)
			return ref[k*nv : (k+1)*nv]
		}
		nTexts += len(pk)
		c := opts.cache
		if cached, ok := c.get(pi); ok {
			ref = cached.ref
			base.nll += cached.nll
			base.dur += cached.dur
		} else {
			keep := c.fits(npos * nv)
			if keep {
				ref = make([]float32, npos*nv)
			} else {
				if cap(scratch) < npos*nv {
					scratch = make([]float32, npos*nv)
				}
				ref = scratch[:npos*nv]
			}
			t0 := time.Now()
			r.hooks.Clear()
			var nll float64
			err := r.forwardPack(ctx, pk, func(t, pos int, lg []float32) error {
				dst := row(t, pos)
				if dst == nil {
					return nil
				}
				lq = llama.LogSoftmax(lg, lq)
				for v, x := range lq {
					dst[v] = float32(x)
				}
				nll -= lq[pk[t].Tokens[pos+1]]
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("eval: retention (unsteered): %w", err)
			}
			dur := time.Since(t0)
			base.nll += nll
			base.dur += dur
			if keep {
				c.put(pi, refPack{ref: ref, nll: nll, dur: dur})
			}
		}
		base.n += npos
		for j, m := range methods {
			if !m.Steered() {
				continue
			}
			t0 := time.Now()
			if err := r.install(m); err != nil {
				return nil, err
			}
			a := &accs[j]
			err := r.forwardPack(ctx, pk, func(t, pos int, lg []float32) error {
				ref := row(t, pos)
				if ref == nil {
					return nil
				}
				lq = llama.LogSoftmax(lg, lq)
				var kl float64
				for v, lp := range ref {
					p := float64(lp)
					kl += math.Exp(p) * (p - lq[v])
				}
				kl = math.Max(kl, 0) // rounding of the stored float32 log-probs
				a.kl += kl
				a.klMax = math.Max(a.klMax, kl)
				a.kls = append(a.kls, kl)
				a.nll -= lq[pk[t].Tokens[pos+1]]
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("eval: retention (method %s): %w", m.Name, err)
			}
			a.n += npos
			a.dur += time.Since(t0)
		}
		bar.Add(int64(len(pk)))
	}
	pplBase := math.Exp(base.nll / float64(base.n))
	out := make([]RetentionResult, len(methods))
	for j, m := range methods {
		res := RetentionResult{Name: m.Name, Steering: m.Info(), PPLBase: pplBase, Texts: nTexts, Positions: base.n, Truncated: truncated, Skipped: skipped}
		if m.Steered() {
			a := accs[j]
			res.KL = a.kl / float64(a.n)
			res.KLMax = a.klMax
			slices.Sort(a.kls)
			res.KLP99 = Quantile(a.kls, 0.99)
			res.PPL = math.Exp(a.nll / float64(a.n))
			res.Seconds = a.dur.Seconds()
		} else {
			res.PPL = pplBase
			res.Seconds = base.dur.Seconds()
		}
		out[j] = res
	}
	return out, nil
}

// retentionRefBytes bounds the unsteered log-probabilities kept for one
// pack of texts (tokens × vocabulary × 4 bytes).
const retentionRefBytes = 128 << 20

// packTexts groups the sequences, in order, into packs decoded together:
// at most n_seq_max sequences and n_batch tokens per pack, and few enough
// tokens that their log-probabilities fit retentionRefBytes. A sequence
// over these limits is a pack of its own.
func (r *Runner) packTexts(seqs []KLSequence, nVocab int) [][]KLSequence {
	maxTok := min(r.lctx.NBatch(), r.lctx.NCtx(), max(1, retentionRefBytes/(4*nVocab)))
	var packs [][]KLSequence
	var cur []KLSequence
	n := 0
	for _, s := range seqs {
		if s.Tokens == nil {
			continue
		}
		if len(cur) > 0 && (len(cur) == r.lctx.NSeqMax() || n+len(s.Tokens) > maxTok) {
			packs = append(packs, cur)
			cur, n = nil, 0
		}
		cur = append(cur, s)
		n += len(s.Tokens)
	}
	if len(cur) > 0 {
		packs = append(packs, cur)
	}
	return packs
}

// forwardPack decodes the sequences of a pack, sequence i as llama.cpp
// sequence i from position 0, and calls fn with the logits of every
// compared position (Start-1 to the last but one). A pack of one sequence
// may be longer than n_batch (it is decoded in chunks); a pack of several
// must fit one batch.
func (r *Runner) forwardPack(ctx context.Context, pack []KLSequence, fn func(text, pos int, logits []float32) error) error {
	if len(pack) == 1 {
		s := pack[0]
		return r.forward(ctx, s.Tokens, s.Start-1, len(s.Tokens)-1, func(pos int, lg []float32) error { return fn(0, pos, lg) })
	}
	r.lctx.ClearMemory()
	defer r.lctx.ClearMemory()
	if err := ctx.Err(); err != nil {
		return err
	}
	compared := func(s KLSequence, pos int) bool { return pos >= s.Start-1 && pos < len(s.Tokens)-1 }
	r.batch.Clear()
	for t, s := range pack {
		for pos, tok := range s.Tokens {
			if err := r.batch.Add(tok, pos, []int{t}, compared(s, pos)); err != nil {
				return err
			}
		}
	}
	if err := r.lctx.Decode(r.batch); err != nil {
		return ctxErr(ctx, err)
	}
	row := 0
	for t, s := range pack {
		for pos := range s.Tokens {
			if compared(s, pos) {
				lg, err := r.lctx.Logits(row)
				if err != nil {
					return err
				}
				if err := fn(t, pos, lg); err != nil {
					return err
				}
			}
			row++
		}
	}
	return nil
}

// DefaultGateThreshold is the gate value above which a token counts as
// intervened (the paper's Table 2).
const DefaultGateThreshold = 0.5

// GateOptions control GateStats.
type GateOptions struct {
	// Threshold: a token with gate > Threshold counts as intervened
	// (0: DefaultGateThreshold).
	Threshold float64
	// MaxTokens cuts longer texts to their first MaxTokens tokens (0: the
	// context length).
	MaxTokens int
	// Progress receives a progress bar (nil: none).
	Progress io.Writer
	// ResponseOnly counts only the tokens of each example's response: the
	// prompt and the response are tokenized apart and joined, as extract
	// --tokens response does, and rows before the response are left out.
	// A desired and an undesired text of one item share their prompt, so
	// counting it too mixes the same tokens into both sides.
	ResponseOnly bool
}

// GateStat summarises one steering attribute's gates on the texts of one
// data attribute and label.
type GateStat struct {
	DataAttribute string `json:"data_attribute"` // Example.Attribute
	Label         int    `json:"label"`          // 1 positive (desired), 0 negative
	Attribute     string `json:"attribute"`      // the steering file's attribute
	Texts         int    `json:"texts"`
	// Tokens counts the tokens that steering can touch: control tokens and
	// chat-template role headers, which it leaves alone (see
	// intervene.SpecialTokens), are not counted.
	Tokens int `json:"tokens"`
	// MeanGate is the mean gate over all tokens of these texts.
	MeanGate float64 `json:"mean_gate"`
	// AbovePerText is the mean number of tokens per text with a gate above
	// the threshold; FracAbove the fraction of all tokens.
	AbovePerText float64 `json:"above_per_text"`
	FracAbove    float64 `json:"frac_above"`
}

// GateResult holds one condition's gate statistics.
type GateResult struct {
	Name      string        `json:"name"`
	Steering  *SteeringInfo `json:"steering,omitempty"`
	Threshold float64       `json:"threshold"`
	// ResponseOnly: only the responses' tokens were counted
	// (GateOptions.ResponseOnly).
	ResponseOnly bool       `json:"response_only,omitempty"`
	Stats        []GateStat `json:"stats"`
	Truncated    int        `json:"truncated"`
	Seconds      float64    `json:"seconds"`
}

// GateStats runs every example's text (prompt + response, tokenized with
// BOS) with each steering condition installed and summarises the gates the
// steering audit reports for every token, grouped by the example's
// attribute and label and by the steering file's attribute. Conditions
// without gates are skipped: those without an intervention and those whose
// file has no gated attribute (their gates are 1 on every token). The conditions' audit callbacks are
// replaced during the run and removed afterwards.
func (r *Runner) GateStats(ctx context.Context, examples []datasets.Example, methods []Method, opts GateOptions) ([]GateResult, error) {
	if err := checkMethods(methods); err != nil {
		return nil, err
	}
	if len(examples) == 0 {
		return nil, errors.New("eval: gate statistics: no examples")
	}
	thr := opts.Threshold
	if thr == 0 {
		thr = DefaultGateThreshold
	}
	maxTok := opts.MaxTokens
	if maxTok <= 0 || maxTok > r.lctx.NCtx() {
		maxTok = r.lctx.NCtx()
	}
	toks := make([][]llama.Token, len(examples))
	respStart := make([]int, len(examples)) // first counted row of each text
	truncated := 0
	for i, ex := range examples {
		var tk []llama.Token
		var err error
		if opts.ResponseOnly {
			tk, respStart[i], err = extract.ExampleTokens(r.model, ex)
		} else {
			tk, err = r.model.Tokenize(ex.Text(), true, false)
		}
		if err != nil {
			return nil, fmt.Errorf("eval: gate statistics: example %s: %w", ex.Source, err)
		}
		if len(tk) > maxTok {
			tk = tk[:maxTok]
			truncated++
		}
		if opts.ResponseOnly && respStart[i] >= len(tk) {
			// Nothing to count: the text would add to the texts and not
			// the tokens, lowering every per-text figure.
			return nil, fmt.Errorf("eval: gate statistics: example %s: no response tokens within the first %d (empty response, or a prompt that long); count all tokens instead", ex.Source, maxTok)
		}
		toks[i] = tk
	}
	var gated []Method
	for _, m := range methods {
		if m.Intervention != nil && len(m.Intervention.File().GatedNames()) > 0 {
			gated = append(gated, m)
		}
	}
	if len(gated) == 0 {
		return nil, nil
	}
	defer r.abortOnCancel(ctx)()
	defer r.hooks.Clear()
	var bar *progress.Bar
	if opts.Progress != nil {
		bar = progress.New(opts.Progress, int64(len(examples)*len(gated)), "gates", "text")
		defer bar.Finish()
	}
	type key struct {
		attr  string
		label int
	}
	type tally struct {
		texts, tokens int
		sum           []float64 // per steering attribute
		above         []int
	}
	var out []GateResult
	for _, m := range gated {
		t0 := time.Now()
		iv := m.Intervention
		attrs := iv.Attributes()
		var keys []key
		tallies := map[key]*tally{}
		var cur *tally
		from := 0 // rows before this are not counted (the prompt, with ResponseOnly)
		iv.SetAudit(func(a intervene.RowAudit) {
			if a.Skipped || a.Pos < from {
				return // a control or chat-template token (never steered), or the prompt
			}
			cur.tokens++
			for k, g := range a.Gates {
				cur.sum[k] += float64(g)
				if float64(g) > thr {
					cur.above[k]++
				}
			}
		})
		err := func() error {
			defer iv.SetAudit(nil)
			if err := r.install(m); err != nil {
				return err
			}
			for i, ex := range examples {
				k := key{ex.Attribute, ex.Label}
				cur = tallies[k]
				if cur == nil {
					cur = &tally{sum: make([]float64, len(attrs)), above: make([]int, len(attrs))}
					tallies[k] = cur
					keys = append(keys, k)
				}
				cur.texts++
				from = respStart[i]
				if err := r.forward(ctx, toks[i], 0, 0, nil); err != nil {
					return fmt.Errorf("eval: gate statistics (method %s): %w", m.Name, err)
				}
				bar.Add(1)
			}
			return nil
		}()
		if err != nil {
			return nil, err
		}
		res := GateResult{Name: m.Name, Steering: m.Info(), Threshold: thr, ResponseOnly: opts.ResponseOnly, Truncated: truncated, Seconds: time.Since(t0).Seconds()}
		for _, k := range keys {
			t := tallies[k]
			for a, name := range attrs {
				st := GateStat{DataAttribute: k.attr, Label: k.label, Attribute: name, Texts: t.texts, Tokens: t.tokens}
				if t.tokens > 0 {
					st.MeanGate = t.sum[a] / float64(t.tokens)
					st.FracAbove = float64(t.above[a]) / float64(t.tokens)
				}
				st.AbovePerText = float64(t.above[a]) / float64(t.texts)
				res.Stats = append(res.Stats, st)
			}
		}
		out = append(out, res)
	}
	return out, nil
}

// get returns pack i's cached unsteered pass (a nil cache has none).
func (c *refCache) get(i int) (refPack, bool) {
	if c == nil {
		return refPack{}, false
	}
	p, ok := c.packs[i]
	return p, ok
}

// fits reports whether a pack of n log-probabilities may be cached.
func (c *refCache) fits(n int) bool {
	if c == nil {
		return false
	}
	limit := c.max
	if limit == 0 {
		limit = refCacheBytes
	}
	return c.used+4*n <= limit
}

// put caches pack i's unsteered pass.
func (c *refCache) put(i int, p refPack) {
	if c.packs == nil {
		c.packs = map[int]refPack{}
	}
	c.packs[i] = p
	c.used += 4 * len(p.ref)
}
