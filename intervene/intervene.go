// Package intervene applies trained steering files to a running model: it
// validates a file (package steer) against the model, turns it into the
// gated intervention that edits activations at the file's site and layer
// through a context's hooks (package hooks), routes each sequence of a
// mixed batch to its own intervention (Router), and optionally reports
// every steered row's gates.
//
// Package steer makes and reads steering files; this package is the one
// that changes what a model computes with them. Most programs use neither
// directly: the root package matsteer and package engine wrap both.
package intervene

import (
	"fmt"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// RowAudit describes one steered row: the token, its position and sequence,
// each attribute's gate and the size of the change ‖ã − a‖. A row left
// unsteered because its token is a control token or chat-template
// scaffolding (see SpecialTokens) has Skipped set, every gate 0 and Delta 0.
type RowAudit struct {
	Token   llama.Token
	Pos     int
	Seq     int
	Gates   []float32 // in Intervention.Attributes() order; valid during the call only
	Delta   float32
	Skipped bool
}

// AuditFunc receives the audit of every steered row.
type AuditFunc func(RowAudit)

// Intervention applies one steering file's gated steering to hooked rows.
// It is a hooks.Intervention; it is not safe for concurrent use (each
// context needs its own, see New).
type Intervention struct {
	file    *steer.File
	applier *steer.Applier
	point   hooks.Point
	audit   AuditFunc
	gates   []float32
	deltas  []float32
	nAttr   int
	active  bool

	// special is nil when special rows are steered too
	// (ApplyOptions.SteerSpecial); scaffolds holds each sequence's state.
	special   *SpecialTokens
	scaffolds map[int]*Scaffold
	skip      []bool
}

// Check validates f against the model and the hook catalog and returns the
// point it steers.
func Check(f *steer.File, m *llama.Model, cat *hooks.Catalog) (hooks.Point, error) {
	if err := f.CheckModel(m.Arch(), m.NEmbd(), m.NLayer()); err != nil {
		return hooks.Point{}, err
	}
	p := hooks.Point{Site: f.Site, Layer: f.Layer}
	if cat != nil {
		if err := cat.Check(p); err != nil {
			return hooks.Point{}, fmt.Errorf("steering file: %w", err)
		}
	}
	return p, nil
}

// New prepares the intervention of f with the given strengths for model m.
func New(f *steer.File, opts steer.ApplyOptions, m *llama.Model, cat *hooks.Catalog) (*Intervention, error) {
	p, err := Check(f, m, cat)
	if err != nil {
		return nil, err
	}
	a, err := steer.NewApplier(f, opts)
	if err != nil {
		return nil, err
	}
	active := false
	for _, s := range effective(f, opts) {
		active = active || s != 0
	}
	iv := &Intervention{file: f, applier: a, point: p, nAttr: len(f.Attributes), active: active}
	if !opts.SteerSpecial {
		iv.special = SpecialTokensOf(m)
		iv.scaffolds = map[int]*Scaffold{}
	}
	return iv, nil
}

// effective returns α·s_t per attribute (NewApplier has validated opts).
func effective(f *steer.File, opts steer.ApplyOptions) []float64 {
	out := make([]float64, len(f.Attributes))
	for i, a := range f.Attributes {
		s, ok := opts.Strengths[a.Name]
		if !ok {
			s = 1
		}
		out[i] = opts.Global * s
	}
	return out
}

// Point is the site and layer the intervention steers.
func (iv *Intervention) Point() hooks.Point { return iv.point }

// File is the steering file.
func (iv *Intervention) File() *steer.File { return iv.file }

// Attributes lists the attribute names (the order of RowAudit.Gates).
func (iv *Intervention) Attributes() []string { return iv.applier.Attributes() }

// Active reports whether any attribute has a non-zero strength. An inactive
// intervention need not be installed at all.
func (iv *Intervention) Active() bool { return iv.active }

// SetAudit installs (or with nil removes) a per-row audit callback.
func (iv *Intervention) SetAudit(fn AuditFunc) { iv.audit = fn }

// SkipsSpecial reports whether the intervention leaves control tokens and
// chat-template scaffolding unsteered (the default; see SpecialTokens).
func (iv *Intervention) SkipsSpecial() bool { return iv.special != nil }

// Intervene implements hooks.Intervention.
func (iv *Intervention) Intervene(r *hooks.Rows) error {
	if r.NEmbd != iv.applier.NEmbd() {
		return fmt.Errorf("steering: tensor %s has rows of %d values, the steering file has n_embd=%d", r.Point, r.NEmbd, iv.applier.NEmbd())
	}
	nSkip := 0
	if iv.special != nil {
		if cap(iv.skip) < r.N {
			iv.skip = make([]bool, r.N)
		}
		iv.skip = iv.skip[:r.N]
		for i := 0; i < r.N; i++ {
			tok, pos, seq := r.Token(i)
			sc := iv.scaffolds[seq]
			if sc == nil {
				sc = &Scaffold{}
				iv.scaffolds[seq] = sc
			}
			iv.skip[i] = sc.Skip(iv.special, tok, pos)
			if iv.skip[i] {
				nSkip++
			}
		}
	}
	if iv.audit == nil && nSkip == 0 {
		iv.applier.Apply(r.Data, nil, nil)
		return nil
	}
	var gates, deltas []float32
	if iv.audit != nil {
		if cap(iv.gates) < r.N*iv.nAttr {
			iv.gates = make([]float32, r.N*iv.nAttr)
			iv.deltas = make([]float32, r.N)
		}
		gates, deltas = iv.gates[:r.N*iv.nAttr], iv.deltas[:r.N]
	}
	if nSkip == 0 {
		iv.applier.Apply(r.Data, gates, deltas)
	} else {
		// Steer each run of rows that are not skipped.
		d, T := r.NEmbd, iv.nAttr
		for i := 0; i < r.N; {
			j := i + 1
			for j < r.N && iv.skip[j] == iv.skip[i] {
				j++
			}
			if iv.skip[i] {
				if gates != nil {
					clear(gates[i*T : j*T])
					clear(deltas[i:j])
				}
			} else if gates != nil {
				iv.applier.Apply(r.Data[i*d:j*d], gates[i*T:j*T], deltas[i:j])
			} else {
				iv.applier.Apply(r.Data[i*d:j*d], nil, nil)
			}
			i = j
		}
	}
	if iv.audit == nil {
		return nil
	}
	for i := 0; i < r.N; i++ {
		tok, pos, seq := r.Token(i)
		iv.audit(RowAudit{Token: tok, Pos: pos, Seq: seq, Gates: gates[i*iv.nAttr : (i+1)*iv.nAttr], Delta: deltas[i], Skipped: nSkip > 0 && iv.skip[i]})
	}
	return nil
}

// Install sets iv as the intervention at its point in h, or removes any
// intervention there when iv is nil or inactive (so unsteered decoding is
// bit-identical and pays no hook cost).
func Install(h *hooks.Hooks, iv *Intervention) error {
	if iv == nil {
		return nil
	}
	if !iv.active && iv.audit == nil {
		return h.SetIntervention(iv.point, nil)
	}
	return h.SetIntervention(iv.point, iv)
}

// Load reads a steering file and prepares its intervention.
func Load(path string, opts steer.ApplyOptions, m *llama.Model, cat *hooks.Catalog) (*Intervention, error) {
	f, err := steer.ReadFile(path)
	if err != nil {
		return nil, err
	}
	iv, err := New(f, opts, m, cat)
	if err != nil {
		return nil, fmt.Errorf("steering file %s: %w", path, err)
	}
	return iv, nil
}
