package extract

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
)

type env struct {
	model *llama.Model
	cat   *hooks.Catalog
}

func newEnv(t *testing.T) env {
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

func (e env) context(t *testing.T, nBatch, nSeq int) (*llama.Context, *hooks.Hooks) {
	h := hooks.New(e.cat)
	c, err := llama.NewContext(e.model, llama.ContextParams{NCtx: 512, NBatch: nBatch, NUBatch: nBatch, NSeqMax: nSeq, Threads: 2, Hook: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); h.Close() })
	return c, h
}

func testExamples() []datasets.Example {
	var ex []datasets.Example
	words := []string{"the cat", "a dog is", "it is of the", "and to in it", "the a the a the", "in it is"}
	for i, w := range words {
		ex = append(ex,
			datasets.Example{Attribute: "tone", Label: 1, Prompt: "Q: " + w, Response: " the good", SampleID: int64(2 * i), Source: "mem:" + w},
			datasets.Example{Attribute: "tone", Label: 0, Prompt: "Q: " + w, Response: " it bad", SampleID: int64(2*i + 1), Source: "mem:" + w},
		)
	}
	return ex
}

// Rows written by the packed, multi-sequence extraction equal those from
// decoding each text alone.
func TestExtractMatchesSingleTextDecoding(t *testing.T) {
	e := newEnv(t)
	point := hooks.Point{Site: "l_out", Layer: 2}
	for _, mode := range []string{TokensAll, TokensLast, TokensResponse} {
		out := filepath.Join(t.TempDir(), "acts.safetensors")
		lctx, h := e.context(t, 64, 4)
		ex := testExamples()
		st, err := Run(context.Background(), lctx, h, ex, out, Options{Point: point, Tokens: mode})
		if err != nil {
			t.Fatal(err)
		}
		f, err := acts.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if f.Meta.Layer != 2 || f.Meta.Site != "l_out" || f.Meta.TokenMode != mode || f.Meta.NEmbd != 64 || len(f.Meta.Attributes) != 1 {
			t.Fatalf("meta %+v", f.Meta)
		}
		if mode == TokensLast && st.Rows != len(ex) {
			t.Fatalf("last mode: %d rows for %d texts", st.Rows, len(ex))
		}
		vecs, err := f.Vectors()
		if err != nil {
			t.Fatal(err)
		}
		// Reference: each text alone, token rows captured directly.
		ref, rh := e.context(t, 64, 1)
		want := map[[2]int64][]float32{}
		var cur int64
		rh.SetCapture(point, func(r *hooks.Rows) error {
			for i := 0; i < r.N; i++ {
				_, pos, _ := r.Token(i)
				want[[2]int64{cur, int64(pos)}] = append([]float32(nil), r.Row(i)...)
			}
			return nil
		}, hooks.BeforeIntervention)
		for _, x := range ex {
			cur = x.SampleID
			p, _ := e.model.Tokenize(x.Prompt, true, false)
			r, _ := e.model.Tokenize(x.Response, false, false)
			ref.ClearMemory()
			if err := ref.DecodeTokens(context.Background(), append(p, r...), 0, 0, false); err != nil {
				t.Fatal(err)
			}
		}
		if f.Len() == 0 {
			t.Fatal("no rows")
		}
		for i, row := range f.Rows {
			w, ok := want[[2]int64{row.SampleID, int64(row.Position)}]
			if !ok {
				t.Fatalf("row %d: unexpected sample %d pos %d", i, row.SampleID, row.Position)
			}
			got := vecs[i*64 : (i+1)*64]
			for j := range w {
				if d := got[j] - w[j]; d > 1e-4 || d < -1e-4 {
					t.Fatalf("mode %s row %d (sample %d pos %d) differs at %d: %v vs %v", mode, i, row.SampleID, row.Position, j, got[j], w[j])
				}
			}
			if wantLabel := int8(1 - row.SampleID%2); row.Label != wantLabel {
				t.Fatalf("row %d label %d, want %d", i, row.Label, wantLabel)
			}
		}
		f.Close()
	}
}

func TestExtractCancelledLeavesNoFile(t *testing.T) {
	e := newEnv(t)
	lctx, h := e.context(t, 16, 1)
	dir := t.TempDir()
	out := filepath.Join(dir, "acts.safetensors")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, lctx, h, testExamples(), out, Options{Point: hooks.Point{Site: "l_out", Layer: 1}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestExtractBadInput(t *testing.T) {
	e := newEnv(t)
	lctx, h := e.context(t, 64, 2)
	out := filepath.Join(t.TempDir(), "a.safetensors")
	oneClass := testExamples()[:1]
	if _, err := Run(context.Background(), lctx, h, oneClass, out, Options{Point: hooks.Point{Site: "l_out", Layer: 1}}); err == nil {
		t.Error("one-class attribute accepted")
	}
	if _, err := Run(context.Background(), lctx, h, testExamples(), out, Options{Point: hooks.Point{Site: "l_out", Layer: 7}}); err == nil || !strings.Contains(err.Error(), "0..3") {
		t.Errorf("layer out of range: %v", err)
	}
	if _, err := Run(context.Background(), lctx, h, testExamples(), out, Options{Point: hooks.Point{Site: "l_out", Layer: 1}, Tokens: "some"}); err == nil {
		t.Error("bad token mode accepted")
	}
	long := testExamples()
	long[0].Prompt = strings.Repeat("the cat ", 40)
	if _, err := Run(context.Background(), lctx, h, long, out, Options{Point: hooks.Point{Site: "l_out", Layer: 1}, NoTruncate: true}); err == nil || !strings.Contains(err.Error(), long[0].Source) {
		t.Errorf("over-long text with NoTruncate: %v", err)
	}
	var warn strings.Builder
	st, err := Run(context.Background(), lctx, h, long, out, Options{Point: hooks.Point{Site: "l_out", Layer: 1}, Tokens: TokensLast, Warn: &warn})
	if err != nil || st.Truncated != 1 || !strings.Contains(warn.String(), "truncated") {
		t.Errorf("truncation: st=%+v err=%v warn=%q", st, err, warn.String())
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("output after truncation: %v", err)
	}
}

// Control-token rows (here BOS) are dropped by default and kept with
// KeepSpecial; the file records which.
func TestExtractDropsSpecialRows(t *testing.T) {
	e := newEnv(t)
	point := hooks.Point{Site: "l_out", Layer: 1}
	ex := testExamples()
	for _, keep := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "acts.safetensors")
		lctx, h := e.context(t, 64, 4)
		st, err := Run(context.Background(), lctx, h, ex, out, Options{Point: point, Tokens: TokensAll, KeepSpecial: keep})
		if err != nil {
			t.Fatal(err)
		}
		want := st.Tokens - len(ex) // one BOS per text
		if keep {
			want = st.Tokens
		}
		if st.Rows != want {
			t.Fatalf("keep special %v: %d rows of %d tokens, want %d", keep, st.Rows, st.Tokens, want)
		}
		f, err := acts.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		bos := 0
		for _, r := range f.Rows {
			if r.Position == 0 {
				bos++
			}
		}
		if wantMeta := map[bool]string{false: "dropped", true: "kept"}[keep]; f.Meta.Extra["special_rows"] != wantMeta || (bos > 0) != keep {
			t.Fatalf("keep special %v: special_rows %q, %d rows at position 0", keep, f.Meta.Extra["special_rows"], bos)
		}
		f.Close()
	}
}
