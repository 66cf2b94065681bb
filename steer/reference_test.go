package steer

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// refChecks mirrors testdata/mat-steer-reference-checks.json (numbers from
// the official MAT-Steer implementation and from autograd on the paper's
// equations).
type refChecks struct {
	Forward struct {
		Theta              [][]float64 `json:"theta"`
		GateW              [][]float64 `json:"gate_w"`
		GateB              []float64   `json:"gate_b"`
		Inputs             [][]float64 `json:"inputs"`
		Gates              [][]float64 `json:"gates"`
		SteeredUnnorm      [][]float64 `json:"steered_unnormalized"`
		SteeredNormPreserv [][]float64 `json:"steered_norm_preserved"`
	} `json:"forward"`
	MMD struct {
		X      [][]float64 `json:"x"`
		Y      [][]float64 `json:"y"`
		Sigma2 float64     `json:"sigma2"`
		Sigma1 float64     `json:"sigma1"`
	} `json:"mmd"`
	Regularizers struct {
		OrthoVectors [][]float64 `json:"ortho_vectors"`
		Ortho        float64     `json:"ortho_reference_unordered_pairs"`
		Gates        [][]float64 `json:"gates"`
		Sparsity     float64     `json:"sparsity_mean_abs"`
		Preservation float64     `json:"preservation_mean_sq"`
	} `json:"regularizers"`
	StepRef struct {
		Tasks map[string]struct {
			Pos [][]float64 `json:"pos"`
			Neg [][]float64 `json:"neg"`
		} `json:"tasks"`
		Sigma  float64            `json:"sigma"`
		Lambda map[string]float64 `json:"lambda"`
		stepNumbers
		MMDPerAttr []float64 `json:"mmd_per_attribute"`
		MMDMean    float64   `json:"loss_mmd_mean_over_attributes"`
		After      struct {
			Theta [][]float64 `json:"theta"`
			GateW [][]float64 `json:"gate_w"`
			GateB []float64   `json:"gate_b"`
		} `json:"after_one_adam_step_lr1e-3"`
	} `json:"train_step_reference"`
	StepPaper struct {
		Lambda map[string]float64 `json:"lambda"`
		stepNumbers
		MMD float64 `json:"loss_mmd"`
	} `json:"train_step_paper"`
}

type stepNumbers struct {
	Sparse    float64     `json:"loss_sparse"`
	Pos       float64     `json:"loss_pos"`
	Ortho     float64     `json:"loss_ortho"`
	Total     float64     `json:"total"`
	GradTheta [][]float64 `json:"grad_theta"`
	GradGateW [][]float64 `json:"grad_gate_w"`
	GradGateB []float64   `json:"grad_gate_b"`
}

const refTol = 1e-9

func loadRef(t *testing.T) *refChecks {
	t.Helper()
	data, err := os.ReadFile("testdata/mat-steer-reference-checks.json")
	if err != nil {
		t.Fatal(err)
	}
	var r refChecks
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Forward.Theta) != 2 || len(r.StepRef.Tasks) != 2 || len(r.StepPaper.GradTheta) != 2 {
		t.Fatal("reference file has an unexpected structure")
	}
	return &r
}

func flat(rows [][]float64) []float64 {
	var out []float64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tol*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %.17g, want %.17g (|Δ| = %.3g)", what, got, want, math.Abs(got-want))
	}
}

func nearAll(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		near(t, what+"["+itoa(i)+"]", got[i], want[i], tol)
	}
}

func itoa(i int) string { return string(rune('0'+i/10%10)) + string(rune('0'+i%10)) }

func refParams(r *refChecks) params {
	p := newParams(2, 4)
	copy(p.theta(), flat(r.Forward.Theta))
	copy(p.w(), flat(r.Forward.GateW))
	copy(p.b(), r.Forward.GateB)
	return p
}

func TestReferenceForward(t *testing.T) {
	r := loadRef(t)
	p := refParams(r)
	x := flat(r.Forward.Inputs)
	gates, u, out := forward(p, x, 2, true, trainEps)
	nearAll(t, "gates", gates, flat(r.Forward.Gates), refTol)
	nearAll(t, "steered_unnormalized", u, flat(r.Forward.SteeredUnnorm), refTol)
	nearAll(t, "steered_norm_preserved", out, flat(r.Forward.SteeredNormPreserv), refTol)

	// The float32 applier gives the same rows (no ε at inference).
	f := &File{Version: FileVersion, Site: "l_out", Layer: 3, NEmbd: 4, Method: MethodMATSteer, NormPreserve: true}
	for i := 0; i < 2; i++ {
		f.Attributes = append(f.Attributes, Attribute{Name: []string{"a", "b"}[i], Theta: r.Forward.Theta[i], GateW: r.Forward.GateW[i], GateB: r.Forward.GateB[i], Gated: true})
	}
	for _, np := range []bool{true, false} {
		f.NormPreserve = np
		ap, err := NewApplier(f, DefaultApplyOptions())
		if err != nil {
			t.Fatal(err)
		}
		rows := make([]float32, 8)
		for i, v := range x {
			rows[i] = float32(v)
		}
		g32 := make([]float32, 4)
		ap.Apply(rows, g32, nil)
		want := out
		if !np {
			want = u
		}
		for i := range rows {
			near(t, "applier row", float64(rows[i]), want[i], 1e-6)
		}
		for i := range g32 {
			near(t, "applier gate", float64(g32[i]), gates[i], 1e-6)
		}
	}
}

func TestReferenceMMD(t *testing.T) {
	r := loadRef(t)
	x, y := flat(r.MMD.X), flat(r.MMD.Y)
	near(t, "MMD σ=2", mmdValue(x, y, 3, 2, 2, []float64{2}), r.MMD.Sigma2, refTol)
	near(t, "MMD σ=1", mmdValue(x, y, 3, 2, 2, []float64{1}), r.MMD.Sigma1, refTol)
	near(t, "MMD σ={1,2}", mmdValue(x, y, 3, 2, 2, []float64{1, 2}), r.MMD.Sigma1+r.MMD.Sigma2, refTol)
}

func TestReferenceRegularizers(t *testing.T) {
	r := loadRef(t)
	vecs := r.Regularizers.OrthoVectors
	p := newParams(len(vecs), 3)
	copy(p.theta(), flat(vecs))
	grad := make([]float64, len(p.v))
	o := &objective{reference: true, lambdaOrtho: 1}
	near(t, "ortho (reference)", o.orthoLossGrad(p, grad), r.Regularizers.Ortho, refTol)
	o.reference = false
	near(t, "ortho (paper)", o.orthoLossGrad(p, grad), 2*r.Regularizers.Ortho, refTol)

	// Gate penalties: rows e_i with w_t[i] = logit(g_it) give exactly these gates.
	gates := r.Regularizers.Gates // 3 rows × 2 gates
	q := newParams(2, 3)
	rows := make([]float64, 9)
	for i := range gates {
		rows[i*3+i] = 1
		for t2, g := range gates[i] {
			q.wT(t2)[i] = math.Log(g / (1 - g))
		}
	}
	o = &objective{reference: true, sigmas: []float64{2}, lambdaPos: 1, lambdaSparse: 1}
	b := []attrBatch{{attr: 0, neg: rows, pos: rows, mmdPos: rows}}
	work := make([]attrWork, 1)
	lt := o.lossGrad(q, b, work, make([]float64, len(q.v)))
	near(t, "sparsity mean |g|", lt.Sparse, r.Regularizers.Sparsity, refTol)
	near(t, "preservation mean g²", lt.Pos, r.Regularizers.Preservation, refTol)
}

func refStep(t *testing.T, r *refChecks, reference bool) (params, []attrBatch, *objective) {
	t.Helper()
	p := refParams(r)
	var batches []attrBatch
	for i, name := range []string{"attrA", "attrB"} {
		task, ok := r.StepRef.Tasks[name]
		if !ok {
			t.Fatalf("missing task %s", name)
		}
		pos := flat(task.Pos)
		batches = append(batches, attrBatch{attr: i, neg: flat(task.Neg), pos: pos, mmdPos: pos})
	}
	lam := r.StepRef.Lambda
	if !reference {
		lam = r.StepPaper.Lambda
	}
	o := &objective{reference: reference, sigmas: []float64{r.StepRef.Sigma}, lambdaPos: lam["pos"], lambdaSparse: lam["sparse"], lambdaOrtho: lam["ortho"], normPreserve: true}
	return p, batches, o
}

func checkStep(t *testing.T, lt LossTerms, grad []float64, want stepNumbers, p params) {
	t.Helper()
	near(t, "loss_sparse", lt.Sparse, want.Sparse, refTol)
	near(t, "loss_pos", lt.Pos, want.Pos, refTol)
	near(t, "loss_ortho", lt.Ortho, want.Ortho, refTol)
	near(t, "total", lt.Total, want.Total, refTol)
	g := params{T: p.T, d: p.d, v: grad}
	nearAll(t, "grad_theta", g.theta(), flat(want.GradTheta), refTol)
	nearAll(t, "grad_gate_w", g.w(), flat(want.GradGateW), refTol)
	nearAll(t, "grad_gate_b", g.b(), want.GradGateB, refTol)
}

func TestReferenceTrainStep(t *testing.T) {
	r := loadRef(t)
	if r.StepRef.Lambda["mmd"] != 1 {
		t.Fatalf("reference λ_mmd = %v, this implementation fixes it at 1", r.StepRef.Lambda["mmd"])
	}
	p, batches, o := refStep(t, r, true)
	work := make([]attrWork, 2)
	grad := make([]float64, len(p.v))
	lt := o.lossGrad(p, batches, work, grad)
	nearAll(t, "mmd_per_attribute", []float64{work[0].mmd, work[1].mmd}, r.StepRef.MMDPerAttr, refTol)
	near(t, "loss_mmd", lt.MMD, r.StepRef.MMDMean, refTol)
	checkStep(t, lt, grad, r.StepRef.stepNumbers, p)

	opt := newAdam(len(p.v), 1e-3)
	opt.update(p.v, grad)
	nearAll(t, "theta after Adam", p.theta(), flat(r.StepRef.After.Theta), refTol)
	nearAll(t, "gate_w after Adam", p.w(), flat(r.StepRef.After.GateW), refTol)
	nearAll(t, "gate_b after Adam", p.b(), r.StepRef.After.GateB, refTol)
}

func TestPaperTrainStep(t *testing.T) {
	r := loadRef(t)
	p, batches, o := refStep(t, r, false)
	work := make([]attrWork, 2)
	grad := make([]float64, len(p.v))
	lt := o.lossGrad(p, batches, work, grad)
	near(t, "loss_mmd", lt.MMD, r.StepPaper.MMD, refTol)
	checkStep(t, lt, grad, r.StepPaper.stepNumbers, p)
}
