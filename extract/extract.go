// Package extract runs labelled texts through a model and writes the
// activations of one (site, layer) point to an activation file, the input
// of steering-vector training.
//
// The root package matsteer wraps it (Model.Extract, Model.Train,
// Model.TrainJSONL); use this package directly for the dataset loaders of
// package datasets or your own context settings.
//
// Texts are packed several to a batch, one sequence each, so the model
// runs at prompt-processing speed; rows are captured by a hook and
// streamed to the file, so memory stays bounded whatever the dataset size.
package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/progress"
)

// Token selection modes.
const (
	TokensAll      = "all"      // every token of prompt and response
	TokensLast     = "last"     // the last token of each text
	TokensResponse = "response" // the response's tokens only
)

// Options configure a run.
type Options struct {
	Point  hooks.Point
	Tokens string // TokensAll (default), TokensLast or TokensResponse
	// MaxTokens caps a text's length; longer texts are truncated from the
	// left (BOS and the end are kept) with a warning, or rejected when
	// NoTruncate is set. 0 means the context's n_batch.
	MaxTokens  int
	NoTruncate bool
	// KeepSpecial keeps rows of control tokens (BOS, chat-turn markers)
	// and of chat-template scaffolding (the role header after a turn
	// marker) among the captured rows. By default they are dropped: the
	// rule is intervene.Scaffold's, the one steering uses to leave them
	// unsteered. With --tokens last the last row not dropped is kept.
	KeepSpecial bool
	// Chat makes each example's prompt a user turn: it is wrapped in the
	// model's chat template (with the assistant's header) and its control
	// tokens are parsed; the response follows as the assistant's reply
	// (ChatExampleTokens).
	Chat bool
	// Source is recorded in the file's metadata (dataset paths).
	Source string
	// Extra is added to the file's metadata.
	Extra map[string]string
	// Progress, if set, receives a progress bar; Warn receives warnings.
	Progress io.Writer
	Warn     io.Writer
}

// Stats summarise a run.
type Stats struct {
	Texts, Tokens, Rows, Truncated int
}

type text struct {
	ex        *datasets.Example
	tokens    []llama.Token
	respStart int // first token of the response
	attr      int32
	skip      []bool // special rows (nil: none)
	last      int    // the last position not skipped (-1: none)
}

// keep reports whether position pos of t is captured in mode.
func (t *text) keep(mode string, pos int) bool {
	if t.skip != nil && t.skip[pos] {
		return false
	}
	switch mode {
	case TokensLast:
		return pos == t.last
	case TokensResponse:
		return pos >= t.respStart
	default:
		return true
	}
}

// markSpecial sets t.skip and t.last.
func (t *text) markSpecial(s *intervene.SpecialTokens) {
	t.last = len(t.tokens) - 1
	if s == nil {
		return
	}
	var sc intervene.Scaffold
	t.skip = make([]bool, len(t.tokens))
	t.last = -1
	for pos, tok := range t.tokens {
		t.skip[pos] = sc.Skip(s, tok, pos)
		if !t.skip[pos] {
			t.last = pos
		}
	}
}

// Run decodes every example on lctx (whose Hooks is h) and writes the
// captured rows to out, which it creates. On error or cancellation nothing
// is left at out.
func Run(ctx context.Context, lctx *llama.Context, h *hooks.Hooks, examples []datasets.Example, out string, opts Options) (Stats, error) {
	var st Stats
	if len(examples) == 0 {
		return st, errors.New("extract: no examples")
	}
	if err := datasets.CheckExamples(examples); err != nil {
		return st, fmt.Errorf("extract: %w", err)
	}
	mode := opts.Tokens
	if mode == "" {
		mode = TokensAll
	}
	if mode != TokensAll && mode != TokensLast && mode != TokensResponse {
		return st, fmt.Errorf("extract: unknown token mode %q (want all, last or response)", mode)
	}
	if h.Catalog() != nil {
		if err := h.Catalog().Check(opts.Point); err != nil {
			return st, fmt.Errorf("extract: %w", err)
		}
	}
	m := lctx.Model()
	maxTok := opts.MaxTokens
	if maxTok <= 0 || maxTok > lctx.NBatch() {
		maxTok = lctx.NBatch()
	}

	// Attributes in order of first appearance... sorted for stable files.
	attrIndex := map[string]int32{}
	var attrs []string
	for _, e := range examples {
		if _, ok := attrIndex[e.Attribute]; !ok {
			attrIndex[e.Attribute] = 0
			attrs = append(attrs, e.Attribute)
		}
	}
	sort.Strings(attrs)
	for i, a := range attrs {
		attrIndex[a] = int32(i)
	}

	var special *intervene.SpecialTokens
	if !opts.KeepSpecial {
		special = intervene.SpecialTokensOf(m)
	}
	texts := make([]text, len(examples))
	for i := range examples {
		e := &examples[i]
		tokenize := ExampleTokens
		if opts.Chat {
			tokenize = ChatExampleTokens
		}
		toks, respStart, err := tokenize(m, *e)
		if err != nil {
			return st, fmt.Errorf("extract: %s: %w", e.Source, err)
		}
		p := toks[:respStart]
		if len(toks) > maxTok {
			if opts.NoTruncate {
				return st, fmt.Errorf("extract: %s: text is %d tokens, longer than the limit of %d", e.Source, len(toks), maxTok)
			}
			cut := len(toks) - maxTok
			keepBOS := m.Special().AddBOS && len(p) > 0 && p[0] == m.Special().BOS
			if keepBOS {
				cut++
				toks = append([]llama.Token{toks[0]}, toks[cut:]...)
			} else {
				toks = toks[cut:]
			}
			respStart = max(respStart-cut, 0)
			st.Truncated++
		}
		if mode == TokensResponse && respStart >= len(toks) {
			return st, fmt.Errorf("extract: %s: empty response, nothing to capture with --tokens response", e.Source)
		}
		texts[i] = text{ex: e, tokens: toks, respStart: respStart, attr: attrIndex[e.Attribute]}
		texts[i].markSpecial(special)
		st.Tokens += len(toks)
	}
	if st.Truncated > 0 && opts.Warn != nil {
		fmt.Fprintf(opts.Warn, "warning: %d of %d texts were longer than %d tokens and were truncated from the left\n", st.Truncated, len(texts), maxTok)
	}

	meta := acts.Meta{
		ModelArch: m.Arch(), ModelName: m.Name(), NEmbd: m.NEmbd(),
		Layer: opts.Point.Layer, Site: opts.Point.Site, TokenMode: mode,
		Attributes: attrs, Source: opts.Source, Extra: map[string]string{},
	}
	for k, v := range opts.Extra {
		meta.Extra[k] = v
	}
	if opts.Chat {
		meta.Extra["chat"] = "user turn, assistant reply"
	}
	meta.Extra["special_rows"] = "dropped"
	if opts.KeepSpecial {
		meta.Extra["special_rows"] = "kept"
	}
	w, err := acts.Create(out, meta)
	if err != nil {
		return st, fmt.Errorf("extract: %w", err)
	}
	defer w.Abort() // no-op after a successful Close

	bar := (*progress.Bar)(nil)
	if opts.Progress != nil {
		bar = progress.New(opts.Progress, int64(st.Tokens), "extract", "tok")
	}
	r := &runner{lctx: lctx, texts: texts, mode: mode, w: w, nSeq: lctx.NSeqMax(), lastLayer: opts.Point.Layer == m.NLayer()-1,
		// With one micro-batch per batch, nothing after the hooked tensor is
		// needed: stop the graph there.
		stopEarly: lctx.NUBatch() >= lctx.NBatch()}
	if err := h.SetCapture(opts.Point, r.capture, hooks.BeforeIntervention); err != nil {
		return st, fmt.Errorf("extract: %w", err)
	}
	defer h.SetCapture(opts.Point, nil, hooks.BeforeIntervention)
	if err := r.run(ctx, bar); err != nil {
		return st, err
	}
	bar.Finish()
	if err := w.Close(); err != nil {
		return st, fmt.Errorf("extract: %w", err)
	}
	st.Texts = len(texts)
	st.Rows = r.rows
	return st, nil
}

type runner struct {
	lctx      *llama.Context
	texts     []text
	mode      string
	w         *acts.Writer
	nSeq      int
	lastLayer bool
	stopEarly bool

	seqText []int // sequence id -> text index, for the batch being decoded
	vecs    []float32
	meta    []acts.Row
	rows    int
}

// run packs texts into batches of up to n_batch tokens and n_seq_max
// sequences and decodes them.
func (r *runner) run(ctx context.Context, bar *progress.Bar) error {
	nBatch := r.lctx.NBatch()
	b := llama.NewBatch(nBatch, 1)
	defer b.Close()
	r.seqText = make([]int, r.nSeq)
	for i := 0; i < len(r.texts); {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.Clear()
		r.lctx.ClearMemory()
		seq := 0
		for i < len(r.texts) && seq < r.nSeq && b.Len()+len(r.texts[i].tokens) <= nBatch {
			t := &r.texts[i]
			r.seqText[seq] = i
			for pos, tok := range t.tokens {
				// Outputs are needed only where the last layer drops rows.
				logits := r.lastLayer && t.keep(r.mode, pos)
				if err := b.Add(tok, pos, []int{seq}, logits); err != nil {
					return fmt.Errorf("extract: %w", err)
				}
			}
			seq++
			i++
		}
		n := b.Len()
		if err := r.lctx.Decode(b); err != nil && !(r.stopEarly && errors.Is(err, hooks.ErrStopGraph)) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("extract: %w", err)
		}
		bar.Add(int64(n))
	}
	return nil
}

// capture receives the hooked rows and streams the selected ones.
func (r *runner) capture(rows *hooks.Rows) error {
	r.vecs = r.vecs[:0]
	r.meta = r.meta[:0]
	for i := 0; i < rows.N; i++ {
		_, pos, seq := rows.Token(i)
		t := &r.texts[r.seqText[seq]]
		if !t.keep(r.mode, pos) {
			continue
		}
		r.vecs = append(r.vecs, rows.Row(i)...)
		r.meta = append(r.meta, acts.Row{Attribute: t.attr, Label: int8(t.ex.Label), SampleID: t.ex.SampleID, Position: int32(pos)})
	}
	if len(r.meta) > 0 {
		r.rows += len(r.meta)
		if err := r.w.Append(r.vecs, r.meta); err != nil {
			return err
		}
	}
	if r.stopEarly {
		return hooks.ErrStopGraph
	}
	return nil
}

// ExampleTokens tokenizes an example as extraction sees it: the prompt
// (with BOS, as the model wants) and the response tokenized apart and
// joined, so that respStart, the response's first token, is exact (one
// tokenization of prompt + response can merge tokens across the seam).
func ExampleTokens(m *llama.Model, e datasets.Example) (toks []llama.Token, respStart int, err error) {
	p, err := m.Tokenize(e.Prompt, true, false)
	if err != nil {
		return nil, 0, err
	}
	return withResponse(m, p, e.Response)
}

// withResponse appends response, tokenized apart, to the prompt's tokens p.
func withResponse(m *llama.Model, p []llama.Token, response string) ([]llama.Token, int, error) {
	r, err := m.Tokenize(response, false, false)
	if err != nil {
		return nil, 0, err
	}
	return append(p, r...), len(p), nil
}

// ChatExampleTokens tokenizes an example as a chat turn: the prompt as the
// user's message in the model's chat template, with the assistant's header
// (control tokens parsed), then the response tokenized apart as the
// assistant's reply; respStart is the reply's first token.
func ChatExampleTokens(m *llama.Model, e datasets.Example) (toks []llama.Token, respStart int, err error) {
	p, err := m.UserTurnTokens(e.Prompt)
	if err != nil {
		return nil, 0, err
	}
	return withResponse(m, p, e.Response)
}

// ChatReplyExamples has the model write its greedy reply (at most
// maxTokens tokens) to each prompt as a user turn, and returns prompt and
// reply as examples of attribute "neutral" for Run with Options.Chat:
// rows of what the model writes in a chat when nothing steers it, the
// neutral rows of train --neutral-acts. Nothing may be installed on
// lctx's hooks (the replies must be unsteered). Labels alternate 0, 1
// (Run wants both; neutral rows ignore them), so at least two prompts
// must get a reply; a prompt answered by an immediate end of turn is left
// out. source names the prompts in the examples' Source ("source:line").
func ChatReplyExamples(ctx context.Context, lctx *llama.Context, prompts []string, source string, maxTokens int) ([]datasets.Example, error) {
	if maxTokens < 1 {
		return nil, fmt.Errorf("extract: chat replies: %d tokens per reply, want at least 1", maxTokens)
	}
	m := lctx.Model()
	var out []datasets.Example
	for i, p := range prompts {
		toks, err := m.UserTurnTokens(p)
		if err != nil {
			return nil, fmt.Errorf("extract: chat replies: %s:%d: %w", source, i+1, err)
		}
		if n := len(toks) + maxTokens; n > lctx.NCtx() {
			return nil, fmt.Errorf("extract: chat replies: %s:%d: the turn is %d tokens; with %d generated it does not fit the context of %d", source, i+1, len(toks), maxTokens, lctx.NCtx())
		}
		var reply strings.Builder
		if _, err := lctx.Generate(ctx, toks, llama.GenerateOptions{MaxTokens: maxTokens}, func(_ llama.Token, piece string) error {
			reply.WriteString(piece)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("extract: chat replies: %s:%d: %w", source, i+1, err)
		}
		if strings.TrimSpace(reply.String()) == "" {
			continue
		}
		out = append(out, datasets.Example{Attribute: "neutral", Label: len(out) % 2, Prompt: p, Response: reply.String(),
			SampleID: int64(i + 1), ItemID: fmt.Sprintf("reply-%d", i+1), Source: fmt.Sprintf("%s:%d", source, i+1)})
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("extract: chat replies: %d of %d prompts in %s got a reply; want at least 2", len(out), len(prompts), source)
	}
	return out, nil
}
