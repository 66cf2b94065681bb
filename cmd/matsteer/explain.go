package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
)

// tokenGates records the gates of every steered row by position.
type tokenGates struct {
	attrs   []string
	byPos   map[int][]float32
	deltas  map[int]float32
	skipped map[int]bool
	nPrompt int
}

func newTokenGates(ivs []*intervene.Intervention) *tokenGates {
	tg := &tokenGates{byPos: map[int][]float32{}, deltas: map[int]float32{}, skipped: map[int]bool{}}
	for _, iv := range ivs {
		off := len(tg.attrs)
		tg.attrs = append(tg.attrs, iv.Attributes()...)
		n := len(tg.attrs)
		iv.SetAudit(func(a intervene.RowAudit) {
			g := tg.byPos[a.Pos]
			if len(g) < n {
				g = append(g, make([]float32, n-len(g))...)
			}
			copy(g[off:], a.Gates)
			tg.byPos[a.Pos] = g
			tg.deltas[a.Pos] += a.Delta
			if a.Skipped {
				tg.skipped[a.Pos] = true
			}
		})
	}
	return tg
}

type auditRecord struct {
	Position int                `json:"position"`
	Phase    string             `json:"phase"`
	TokenID  llama.Token        `json:"token_id"`
	Token    string             `json:"token"`
	Gates    map[string]float32 `json:"gates"`
	Delta    float32            `json:"delta"`
	// Skipped: a control token or chat-template scaffolding, left
	// unsteered (gates 0; see --steer-special).
	Skipped bool `json:"skipped,omitempty"`
}

// records lists one audit record per token that went through the model.
func (tg *tokenGates) records(m *llama.Model, toks []llama.Token) []auditRecord {
	var out []auditRecord
	for pos, tok := range toks {
		g, ok := tg.byPos[pos]
		if !ok {
			continue
		}
		phase := "prompt"
		if pos >= tg.nPrompt {
			phase = "generated"
		}
		gates := make(map[string]float32, len(tg.attrs))
		for i, a := range tg.attrs {
			if i < len(g) {
				gates[a] = g[i]
			}
		}
		out = append(out, auditRecord{Position: pos, Phase: phase, TokenID: tok, Token: m.TokenPiece(tok), Gates: gates, Delta: tg.deltas[pos], Skipped: tg.skipped[pos]})
	}
	return out
}

func writeAudit(path string, recs []auditRecord) error {
	return safefile.Write(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return fmt.Errorf("--audit %s: %w", path, err)
			}
		}
		return nil
	})
}

// printExplain writes one line per token with each attribute's gate as a
// number and a bar; on a terminal, high gates are coloured.
func printExplain(w io.Writer, tg *tokenGates, recs []auditRecord, color bool) {
	fmt.Fprintf(w, "\ngates per token (gate > 0.5 = steered; the last generated token is never fed back, so it has none):\n")
	fmt.Fprintf(w, "%5s  %-9s  %-18s", "pos", "phase", "token")
	for _, a := range tg.attrs {
		fmt.Fprintf(w, "  %-18s", a)
	}
	fmt.Fprintln(w)
	for _, r := range recs {
		tok := r.Token
		if len([]rune(tok)) > 14 {
			tok = string([]rune(tok)[:13]) + "…"
		}
		fmt.Fprintf(w, "%5d  %-9s  %-18s", r.Position, r.Phase, strconv.Quote(tok))
		for _, a := range tg.attrs {
			g := r.Gates[a]
			cell := fmt.Sprintf("%.2f %-13s", g, gateBar(g))
			if color && g > 0.5 {
				cell = "\033[1;31m" + cell + "\033[0m"
			} else if color && g > 0.2 {
				cell = "\033[33m" + cell + "\033[0m"
			}
			fmt.Fprintf(w, "  %s", cell)
		}
		fmt.Fprintln(w)
	}
}

func gateBar(g float32) string {
	const width = 12
	n := int(g*width + 0.5)
	n = max(0, min(width, n))
	return strings.Repeat("█", n)
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("CI") != "" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
