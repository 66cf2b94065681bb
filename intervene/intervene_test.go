package intervene

import (
	"math"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

func testFile(nEmbd, layer int) *steer.File {
	a := steer.Attribute{Name: "tone", Gated: true, Theta: make([]float64, nEmbd), GateW: make([]float64, nEmbd), GateB: 0.1}
	b := steer.Attribute{Name: "style", Gated: false, Theta: make([]float64, nEmbd)}
	for i := 0; i < nEmbd; i++ {
		a.Theta[i] = math.Sin(float64(i))
		a.GateW[i] = 0.05 * math.Cos(float64(3*i))
		b.Theta[i] = 0.5 * math.Cos(float64(i))
	}
	return &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: layer, NEmbd: nEmbd, ModelArch: "llama",
		Method: steer.MethodMATSteer, NormPreserve: true, Attributes: []steer.Attribute{a, b}}
}

type env struct {
	m   *llama.Model
	cat *hooks.Catalog
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

func (e env) logits(t *testing.T, iv *Intervention) [][]float32 {
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
	toks := []llama.Token{1, 259, 260, 100, 120, 261}
	b := llama.NewBatch(len(toks), 1)
	defer b.Close()
	for i, tok := range toks {
		b.Add(tok, i, []int{0}, true)
	}
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	out := make([][]float32, len(toks))
	for i := range toks {
		lg, _ := c.Logits(i)
		out[i] = append([]float32(nil), lg...)
	}
	return out
}

func maxDiff(a, b [][]float32) float64 {
	var d float64
	for i := range a {
		for j := range a[i] {
			d = math.Max(d, math.Abs(float64(a[i][j]-b[i][j])))
		}
	}
	return d
}

func TestSteeringChangesLogitsAndZeroStrengthIsIdentity(t *testing.T) {
	e := newEnv(t)
	f := testFile(e.m.NEmbd(), 2)
	plain := e.logits(t, nil)
	on, err := New(f, steer.DefaultApplyOptions(), e.m, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	steered := e.logits(t, on)
	if maxDiff(plain, steered) < 1e-3 {
		t.Fatal("steering did not change the logits")
	}
	off, err := New(f, steer.ApplyOptions{Global: 1, Strengths: map[string]float64{"tone": 0, "style": 0}}, e.m, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	if off.Active() {
		t.Fatal("all-zero strengths reported active")
	}
	if d := maxDiff(plain, e.logits(t, off)); d != 0 {
		t.Fatalf("zero strengths changed logits by %g", d)
	}
	// Installed anyway (with an audit), zero strength is still bit-identical.
	var rows int
	off.SetAudit(func(a RowAudit) {
		rows++
		if len(a.Gates) != 2 || a.Delta != 0 || (a.Gates[1] != 1) != a.Skipped { // skipped (BOS): gates 0
			t.Errorf("audit %+v", a)
		}
	})
	if d := maxDiff(plain, e.logits(t, off)); d != 0 || rows != 6 {
		t.Fatalf("audited zero strength: Δ=%g rows=%d", d, rows)
	}
}

func TestSteeringAuditReportsGates(t *testing.T) {
	e := newEnv(t)
	iv, err := New(testFile(e.m.NEmbd(), 1), steer.DefaultApplyOptions(), e.m, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	var audits []RowAudit
	iv.SetAudit(func(a RowAudit) {
		a.Gates = append([]float32(nil), a.Gates...)
		audits = append(audits, a)
	})
	e.logits(t, iv)
	if len(audits) != 6 {
		t.Fatalf("%d audited rows, want 6", len(audits))
	}
	for i, a := range audits {
		if i == 0 { // BOS, a control token: left unsteered
			if !a.Skipped || a.Gates[0] != 0 || a.Delta != 0 {
				t.Fatalf("BOS row audit %+v", a)
			}
			continue
		}
		if a.Pos != i || a.Skipped || a.Gates[0] <= 0 || a.Gates[0] >= 1 || a.Delta <= 0 {
			t.Fatalf("row %d audit %+v", i, a)
		}
	}
}

func TestSteeringRejectsMismatchedFiles(t *testing.T) {
	e := newEnv(t)
	if _, err := New(testFile(32, 1), steer.DefaultApplyOptions(), e.m, e.cat); err == nil || !strings.Contains(err.Error(), "n_embd") {
		t.Errorf("wrong width: %v", err)
	}
	if _, err := New(testFile(e.m.NEmbd(), 9), steer.DefaultApplyOptions(), e.m, e.cat); err == nil || !strings.Contains(err.Error(), "layer") {
		t.Errorf("wrong layer: %v", err)
	}
	f := testFile(e.m.NEmbd(), 1)
	f.Site = "nosuch"
	if _, err := New(f, steer.DefaultApplyOptions(), e.m, e.cat); err == nil || !strings.Contains(err.Error(), "unknown site") {
		t.Errorf("unknown site: %v", err)
	}
	f = testFile(e.m.NEmbd(), 1)
	for _, s := range []float64{math.NaN(), -1, 1e9} {
		if _, err := New(f, steer.ApplyOptions{Global: 1, Strengths: map[string]float64{"tone": s}}, e.m, e.cat); err == nil {
			t.Errorf("strength %v accepted", s)
		}
	}
	if _, err := New(f, steer.ApplyOptions{Global: 1, Strengths: map[string]float64{"nope": 1}}, e.m, e.cat); err == nil {
		t.Error("unknown attribute accepted")
	}
}
