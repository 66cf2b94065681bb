package intervene

import (
	"testing"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// The random model's vocabulary: 0 <unk>, 1 <s> (BOS, control), 2 </s>
// (EOS, control), 3..258 byte tokens (13 is "\n"), 259.. words.
const (
	tokBOS = llama.Token(1)
	tokEOS = llama.Token(2)
	tokNL  = llama.Token(3 + '\n')
)

func TestSpecialTokensOfRandomModel(t *testing.T) {
	e := newEnv(t)
	s := SpecialTokensOf(e.m)
	if again := SpecialTokensOf(e.m); &again.control[0] != &s.control[0] || &again.newline[0] != &s.newline[0] {
		t.Error("the classification is not computed once per model")
	}
	for tok, want := range map[llama.Token]bool{tokBOS: true, tokEOS: true, tokNL: false, 100: false, 259: false, -1: false, llama.Token(e.m.NVocab()): false} {
		if got := s.IsControl(tok); got != want {
			t.Errorf("IsControl(%d %q) = %v, want %v", tok, e.m.TokenPiece(tok), got, want)
		}
	}
	if !s.newline[tokNL] || s.newline[259] {
		t.Errorf("newline table: \\n %v, word %v", s.newline[tokNL], s.newline[259])
	}
}

func skips(s *SpecialTokens, sc *Scaffold, toks []llama.Token, pos0 int) []bool {
	out := make([]bool, len(toks))
	for i, tok := range toks {
		out[i] = sc.Skip(s, tok, pos0+i)
	}
	return out
}

func TestScaffoldRule(t *testing.T) {
	e := newEnv(t)
	s := SpecialTokensOf(e.m)
	eq := func(name string, got []bool, want ...bool) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: %v, want %v", name, got, want)
			}
		}
	}
	// BOS is skipped, the text after it is not; a turn marker (</s>) and
	// its header up to and including the newline are.
	var sc Scaffold
	eq("turn", skips(s, &sc, []llama.Token{tokBOS, 259, 260, tokEOS, 261, tokNL, 262, 263}, 0),
		true, false, false, true, true, true, false, false)
	// A header without a newline ends after MaxHeaderTokens tokens.
	sc = Scaffold{}
	toks := []llama.Token{tokEOS}
	for i := 0; i < MaxHeaderTokens+2; i++ {
		toks = append(toks, 259)
	}
	want := make([]bool, len(toks))
	for i := 0; i <= MaxHeaderTokens; i++ {
		want[i] = true
	}
	eq("cap", skips(s, &sc, toks, 0), want...)
	// The state carries over consecutive positions fed in parts (a prompt
	// split over micro-batches) ...
	sc = Scaffold{}
	eq("part 1", skips(s, &sc, []llama.Token{259, tokEOS}, 0), false, true)
	eq("part 2", skips(s, &sc, []llama.Token{261, tokNL, 262}, 2), true, true, false)
	// ... but not over a gap in the positions.
	sc = Scaffold{}
	eq("gap", append(skips(s, &sc, []llama.Token{259, tokEOS}, 0), skips(s, &sc, []llama.Token{261}, 7)...), false, true, false)
}

// decodeAudit decodes toks as sequence 0 in parts of the given sizes with
// iv installed and returns the audits and the last position's logits.
func (e env) decodeAudit(t *testing.T, iv *Intervention, toks []llama.Token, parts ...int) ([]RowAudit, []float32) {
	t.Helper()
	var audits []RowAudit
	iv.SetAudit(func(a RowAudit) {
		a.Gates = append([]float32(nil), a.Gates...)
		audits = append(audits, a)
	})
	defer iv.SetAudit(nil)
	h := hooks.New(e.cat)
	defer h.Close()
	c, err := llama.NewContext(e.m, llama.ContextParams{NCtx: 128, Threads: 2, Hook: h})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := Install(h, iv); err != nil {
		t.Fatal(err)
	}
	if len(parts) == 0 {
		parts = []int{len(toks)}
	}
	pos := 0
	var last []float32
	for _, n := range parts {
		b := llama.NewBatch(n, 1)
		for i := 0; i < n; i++ {
			b.Add(toks[pos+i], pos+i, []int{0}, pos+i == len(toks)-1)
		}
		if err := c.Decode(b); err != nil {
			b.Close()
			t.Fatal(err)
		}
		b.Close()
		pos += n
	}
	lg, err := c.Logits(-1)
	if err != nil {
		t.Fatal(err)
	}
	last = append(last, lg...)
	return audits, last
}

func TestInterventionLeavesSpecialRowsUnsteered(t *testing.T) {
	e := newEnv(t)
	f := testFile(e.m.NEmbd(), 1)
	toks := []llama.Token{tokBOS, 259, 260, tokEOS, 261, tokNL, 262, 263}
	wantSkip := []bool{true, false, false, true, true, true, false, false}

	skip, err := New(f, steer.DefaultApplyOptions(), e.m, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	if !skip.SkipsSpecial() {
		t.Fatal("special rows are steered by default")
	}
	all, err := New(f, steer.ApplyOptions{Global: 1, SteerSpecial: true}, e.m, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	if all.SkipsSpecial() {
		t.Fatal("SteerSpecial: special rows still skipped")
	}
	audits, logits := e.decodeAudit(t, skip, toks)
	if len(audits) != len(toks) {
		t.Fatalf("%d audits for %d rows", len(audits), len(toks))
	}
	for i, a := range audits {
		if a.Skipped != wantSkip[i] {
			t.Fatalf("row %d (token %d): skipped %v, want %v", i, a.Token, a.Skipped, wantSkip[i])
		}
		if a.Skipped && (a.Delta != 0 || a.Gates[0] != 0 || a.Gates[1] != 0) {
			t.Fatalf("skipped row %d: %+v", i, a)
		}
		if !a.Skipped && (a.Delta <= 0 || a.Gates[0] <= 0) {
			t.Fatalf("steered row %d: %+v", i, a)
		}
	}
	allAudits, allLogits := e.decodeAudit(t, all, toks)
	for i, a := range allAudits {
		if a.Skipped || a.Delta <= 0 {
			t.Fatalf("SteerSpecial row %d: %+v", i, a)
		}
	}
	if maxDiff([][]float32{logits}, [][]float32{allLogits}) < 1e-4 {
		t.Fatal("skipping the special rows did not change the output")
	}
	// A prompt of special rows only is left exactly as the unsteered model
	// computes it.
	plainIv, err := New(f, steer.ApplyOptions{Global: 0}, e.m, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	head := []llama.Token{tokBOS, tokEOS, 261, tokNL}
	_, plain := e.decodeAudit(t, plainIv, head)
	_, skipped := e.decodeAudit(t, skip, head)
	if d := maxDiff([][]float32{plain}, [][]float32{skipped}); d != 0 {
		t.Fatalf("special rows only: logits differ from the unsteered model by %g", d)
	}
	// The same rows decoded in parts (the header split between decodes)
	// are skipped alike, with the same result.
	split, splitLogits := e.decodeAudit(t, skip, toks, 4, 1, 3)
	for i, a := range split {
		if a.Skipped != wantSkip[i] {
			t.Fatalf("in parts: row %d skipped %v, want %v", i, a.Skipped, wantSkip[i])
		}
	}
	if d := maxDiff([][]float32{logits}, [][]float32{splitLogits}); d > 1e-3 {
		t.Fatalf("in parts: logits differ by %g", d)
	}
}
