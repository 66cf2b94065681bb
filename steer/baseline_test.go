package steer

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/gguf"
)

func TestMeanDiff(t *testing.T) {
	data := []AttributeData{
		{Name: "a", Pos: [][]float64{{1, 2}, {3, 4}}, Neg: [][]float64{{0, 0}, {1, 1}, {2, 2}}},
		{Name: "b", Pos: [][]float64{{1, 1}}, Neg: [][]float64{{1, 3}}},
	}
	cfg := ReferenceTrainConfig()
	cfg.Method = MethodMeanDiff
	cfg.NormPreserve = false
	cfg.Site = "l_out"
	cfg.Layer = 3
	f, log, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	want := [][]float64{{1, 2}, {0, -2}}
	for i, a := range f.Attributes {
		if a.Gated || a.GateW != nil || !reflect.DeepEqual(a.Theta, want[i]) {
			t.Fatalf("attribute %d = %+v, want θ %v ungated", i, a, want[i])
		}
	}
	if f.Method != MethodMeanDiff || len(log.Epochs) != 0 || f.Training["n_pos"] != "2,1" {
		t.Fatalf("method %s, epochs %d, training %v", f.Method, len(log.Epochs), f.Training)
	}
}

func TestPCARecoversDirection(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const d, n = 6, 300
	dir := []float64{1, -2, 0, 0, 2, 0} // norm 3
	var a AttributeData
	a.Name = "x"
	for i := 0; i < n; i++ {
		neg := make([]float64, d)
		pos := make([]float64, d)
		amp := 1 + 0.5*rng.NormFloat64() // paired differences vary in size along dir
		for j := range neg {
			neg[j] = rng.NormFloat64()
			pos[j] = neg[j] + amp*dir[j] + 0.05*rng.NormFloat64()
		}
		a.Pos = append(a.Pos, pos)
		a.Neg = append(a.Neg, neg)
	}
	cfg := ReferenceTrainConfig()
	cfg.Method = MethodPCA
	cfg.Site = "l_out"
	f, log, err := Train(context.Background(), []AttributeData{a}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	th := f.Attributes[0].Theta
	norm := 0.0
	dot := 0.0
	for j := range th {
		norm += th[j] * th[j]
		dot += th[j] * dir[j]
	}
	norm = math.Sqrt(norm)
	cos := dot / (norm * 3)
	if cos < 0.999 {
		t.Fatalf("PCA direction has cosine %v with the true direction", cos)
	}
	// Scaled like the mean difference (≈ 1·dir, norm ≈ 3).
	if math.Abs(norm-3) > 0.3 {
		t.Fatalf("PCA vector norm %v, want ≈ 3", norm)
	}
	if log.Details["x.explained"] < 0.9 || f.Training["pca.0.explained"] == "" {
		t.Fatalf("explained fraction %v", log.Details)
	}
	// Sign alignment: flipping the pairs flips the vector.
	b := AttributeData{Name: "x", Pos: a.Neg, Neg: a.Pos}
	g, _, err := Train(context.Background(), []AttributeData{b}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for j := range th {
		if math.Abs(g.Attributes[0].Theta[j]+th[j]) > 1e-9 {
			t.Fatalf("flipped pairs do not flip the vector: %v vs %v", g.Attributes[0].Theta, th)
		}
	}
	zero := AttributeData{Name: "z", Pos: [][]float64{{1, 1}}, Neg: [][]float64{{1, 1}}}
	if _, _, err := Train(context.Background(), []AttributeData{zero}, cfg); err == nil || !strings.Contains(err.Error(), "zero") {
		t.Fatalf("all-zero differences: %v", err)
	}
}

func TestAllTokens(t *testing.T) {
	data, _ := synthData(3)
	cfg := ReferenceTrainConfig()
	cfg.Epochs = 2
	cfg.Site = "l_out"
	gated, _, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Method = MethodAllTokens
	all, _, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range all.Attributes {
		if all.Attributes[i].Gated || all.Attributes[i].GateW != nil {
			t.Fatal("all-tokens attribute is gated")
		}
		if !reflect.DeepEqual(all.Attributes[i].Theta, gated.Attributes[i].Theta) {
			t.Fatal("all-tokens θ differs from MAT-Steer's θ")
		}
	}
	if all.Method != MethodAllTokens || all.Validate() != nil {
		t.Fatalf("method %s: %v", all.Method, all.Validate())
	}
	// Applying it sets every gate to 1.
	ap, err := NewApplier(all, DefaultApplyOptions())
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]float32, 3*all.NEmbd)
	for i := range rows {
		rows[i] = 1
	}
	gates := make([]float32, 3*2)
	ap.Apply(rows, gates, nil)
	for _, g := range gates {
		if g != 1 {
			t.Fatalf("ungated gate %v", g)
		}
	}
}

func TestControlVectorExportImport(t *testing.T) {
	f := testFile(8)
	f.Method = MethodMeanDiff
	f.NormPreserve = false
	for i := range f.Attributes {
		f.Attributes[i].Gated, f.Attributes[i].GateW, f.Attributes[i].GateB = false, nil, 0
	}
	opts := ExportOptions{Apply: ApplyOptions{Global: 2, Strengths: map[string]float64{"tox": 0.5}}}
	g, err := ExportControlVector(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	if arch, _ := g.String("general.architecture"); arch != "controlvector" {
		t.Fatalf("architecture %q", arch)
	}
	if hint, _ := g.String("controlvector.model_hint"); hint != "llama" {
		t.Fatalf("model hint %q", hint)
	}
	if n, _ := g.Int("controlvector.layer_count"); n != 14 {
		t.Fatalf("layer_count %d", n)
	}
	if len(g.Tensors) != 1 || g.Tensors[0].Name != "direction.14" {
		t.Fatalf("tensors %v", g.Tensors)
	}
	vals, _ := g.Tensors[0].Float32s()
	for j, v := range vals {
		want := 2*f.Attributes[0].Theta[j] + 1*f.Attributes[1].Theta[j]
		if math.Abs(float64(v)-want) > 1e-6 {
			t.Fatalf("direction[%d] = %v, want %v", j, v, want)
		}
	}
	path := filepath.Join(t.TempDir(), "cv.gguf")
	if err := g.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, err := gguf.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := ImportControlVector(back, ImportOptions{Name: "mix"})
	if err != nil {
		t.Fatal(err)
	}
	if imp.Layer != 14 || imp.Site != "l_out" || imp.NEmbd != 8 || imp.ModelArch != "llama" || imp.Method != MethodCvecImport || imp.Attributes[0].Gated {
		t.Fatalf("imported %+v", imp)
	}
	for j, v := range vals {
		if imp.Attributes[0].Theta[j] != float64(v) {
			t.Fatal("imported vector differs")
		}
	}
	// Export of the import gives the same tensor.
	again, err := ExportControlVector(imp, ExportOptions{Apply: DefaultApplyOptions()})
	if err != nil {
		t.Fatal(err)
	}
	if string(again.Tensors[0].Data) != string(g.Tensors[0].Data) {
		t.Fatal("re-export differs")
	}
	merged, err := MergeFiles([]*File{imp, mustImport(t, back, "other")})
	if err != nil || len(merged.Attributes) != 2 {
		t.Fatalf("merge: %v", err)
	}
	if _, err := MergeFiles([]*File{imp, imp}); err == nil {
		t.Fatal("merging duplicate names succeeded")
	}
}

func mustImport(t *testing.T, g *gguf.File, name string) *File {
	t.Helper()
	f, err := ImportControlVector(g, ImportOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestControlVectorRefusals(t *testing.T) {
	gated := testFile(8)
	gated.NormPreserve = false
	if _, err := ExportControlVector(gated, ExportOptions{Apply: DefaultApplyOptions()}); err == nil || !strings.Contains(err.Error(), "--force-ungated") {
		t.Fatalf("gated export: %v", err)
	}
	g, err := ExportControlVector(gated, ExportOptions{Apply: DefaultApplyOptions(), ForceUngated: true})
	if err != nil {
		t.Fatal(err)
	}
	vals, _ := g.Tensors[0].Float32s()
	if float64(vals[0]) != gated.Attributes[0].Theta[0]+gated.Attributes[1].Theta[0] {
		t.Fatal("forced export is not the θ sum")
	}
	np := testFile(8)
	if _, err := ExportControlVector(np, ExportOptions{Apply: DefaultApplyOptions(), ForceUngated: true}); err == nil || !strings.Contains(err.Error(), "norm preservation") {
		t.Fatalf("norm-preserving export: %v", err)
	}
	site := testFile(8)
	site.Site = "attn_out"
	if _, err := ExportControlVector(site, ExportOptions{Apply: DefaultApplyOptions(), ForceUngated: true, IgnoreNormPreserve: true}); err == nil || !strings.Contains(err.Error(), "site") {
		t.Fatalf("attn_out export: %v", err)
	}
	l0 := testFile(8)
	l0.Layer = 0
	if _, err := ExportControlVector(l0, ExportOptions{Apply: DefaultApplyOptions(), ForceUngated: true, IgnoreNormPreserve: true}); err == nil || !strings.Contains(err.Error(), "block 0") {
		t.Fatalf("layer 0 export: %v", err)
	}

	cv := func(tensors ...gguf.Tensor) *gguf.File {
		return &gguf.File{KV: []gguf.KV{{Key: "general.architecture", Value: "controlvector"}}, Tensors: tensors}
	}
	for _, c := range []struct {
		g    *gguf.File
		opts ImportOptions
		want string
	}{
		{cv(gguf.NewF32Tensor("direction.3", []float32{1})), ImportOptions{}, "empty attribute name"},
		{&gguf.File{KV: []gguf.KV{{Key: "general.architecture", Value: "llama"}}}, ImportOptions{Name: "a"}, `want "controlvector"`},
		{cv(gguf.NewF32Tensor("dir.3", []float32{1})), ImportOptions{Name: "a"}, "not a direction.N"},
		{cv(gguf.NewF32Tensor("direction.0", []float32{1})), ImportOptions{Name: "a"}, "start at 1"},
		{cv(gguf.NewF32Tensor("direction.1", []float32{1}), gguf.NewF32Tensor("direction.2", []float32{1, 2})), ImportOptions{Name: "a"}, "want n_embd=1"},
		{cv(gguf.NewF32Tensor("direction.1", []float32{1}), gguf.NewF32Tensor("direction.2", []float32{1})), ImportOptions{Name: "a"}, "choose one with --layer"},
		{cv(gguf.NewF32Tensor("direction.1", []float32{0})), ImportOptions{Name: "a"}, "every direction is zero"},
		{cv(), ImportOptions{Name: "a"}, "no direction.N"},
		{cv(gguf.NewF32Tensor("direction.1", []float32{1})), ImportOptions{Name: "a", Layer: 5}, "no direction.5"},
	} {
		if _, err := ImportControlVector(c.g, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want %q, got %v", c.want, err)
		}
	}
	// Several layers: pick one; zero layers are ignored.
	multi := cv(gguf.NewF32Tensor("direction.1", []float32{0, 0}), gguf.NewF32Tensor("direction.2", []float32{1, 2}), gguf.NewF32Tensor("direction.4", []float32{3, 4}))
	f, err := ImportControlVector(multi, ImportOptions{Name: "a", Layer: 4})
	if err != nil || f.Layer != 4 || f.Attributes[0].Theta[1] != 4 {
		t.Fatalf("layer choice: %+v, %v", f, err)
	}
}
