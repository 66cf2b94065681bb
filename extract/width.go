package extract

import (
	"errors"
	"fmt"
	"strings"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
)

// Activation files and steering vectors hold rows of the model's n_embd
// values, so only sites whose tensors are n_embd wide (the residual stream
// and the outputs of attention and feed-forward blocks, and their norms)
// can be extracted and steered. Other per-layer tensors (Kcur, Vcur with
// grouped-query attention, ffn_up, ...) are hookable graph nodes of other
// widths; they are refused up front.

// errWidth stops the probing decode once the width is known.
var errWidth = errors.New("width probed")

// SiteWidths returns the row width of every site of cat (probed at the
// site's first layer by decoding one token). A site whose tensor cannot be
// read as rows has width 0.
func SiteWidths(m *llama.Model, cat *hooks.Catalog) (map[string]int, error) {
	var points []hooks.Point
	for _, s := range cat.Sites() {
		if l := cat.Layers(s); len(l) > 0 {
			points = append(points, hooks.Point{Site: s, Layer: l[0]})
		}
	}
	ws, err := probeWidths(m, cat, points)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(points))
	for i, p := range points {
		out[p.Site] = ws[i]
	}
	return out, nil
}

// CheckWidth returns an error naming the usable sites when p's rows are
// not the model's n_embd wide.
func CheckWidth(m *llama.Model, cat *hooks.Catalog, p hooks.Point) error {
	ws, err := probeWidths(m, cat, []hooks.Point{p})
	if err != nil {
		return err
	}
	if ws[0] == m.NEmbd() {
		return nil
	}
	all, err := SiteWidths(m, cat)
	if err != nil {
		return err
	}
	var ok []string
	for _, s := range cat.Sites() {
		if all[s] == m.NEmbd() {
			ok = append(ok, s)
		}
	}
	what := fmt.Sprintf("its rows are %d wide", ws[0])
	if ws[0] == 0 {
		what = "its tensor is not a matrix of token rows"
	}
	return fmt.Errorf("site %s: %s, not the model's n_embd %d; activations and steering vectors need n_embd-wide rows: use one of %s",
		p.Site, what, m.NEmbd(), strings.Join(ok, ", "))
}

// probeWidths decodes one token per point on a small context, capturing the
// point's first tensor and stopping the graph there.
func probeWidths(m *llama.Model, cat *hooks.Catalog, points []hooks.Point) ([]int, error) {
	h := hooks.New(cat)
	defer h.Close()
	lctx, err := llama.NewContext(m, llama.ContextParams{NCtx: 256, NBatch: 1, NUBatch: 1, Threads: 1, Hook: h, NoPerf: true})
	if err != nil {
		return nil, fmt.Errorf("probe site widths: %w", err)
	}
	defer lctx.Close()
	b := llama.NewBatch(1, 1)
	defer b.Close()
	tok := m.Special().BOS
	if tok < 0 || int(tok) >= m.NVocab() {
		tok = 0
	}
	out := make([]int, len(points))
	for i, p := range points {
		width := 0
		if err := h.SetCapture(p, func(r *hooks.Rows) error { width = r.NEmbd; return errWidth }, hooks.BeforeIntervention); err != nil {
			return nil, fmt.Errorf("probe site widths: %w", err)
		}
		b.Clear()
		lctx.ClearMemory()
		if err := b.Add(tok, 0, []int{0}, true); err != nil {
			return nil, err
		}
		// Any error other than errWidth (a tensor that is not a matrix of
		// rows) leaves the width 0.
		_ = lctx.Decode(b)
		if err := h.SetCapture(p, nil, hooks.BeforeIntervention); err != nil {
			return nil, fmt.Errorf("probe site widths: %w", err)
		}
		out[i] = width
	}
	return out, nil
}
