package steer

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/gguf"
)

// testFile is a valid two-attribute file with float32-exact values.
func testFile(d int) *File {
	f := &File{
		Version: FileVersion, Site: "l_out", Layer: 14, NEmbd: d,
		ModelArch: "llama", ModelName: "SmolLM2-135M-Instruct", ModelID: "sha256:abc",
		Method: MethodMATSteer, NormPreserve: true,
		Training: map[string]string{"mode": "reference", "loss.total": "0.5", "data.0.sha256": "00ff"},
	}
	for i, name := range []string{"truth", "tox"} {
		a := Attribute{Name: name, Gated: true, GateB: 0.25 * float64(i+1)}
		for j := 0; j < d; j++ {
			a.Theta = append(a.Theta, float64(j%7)-3+0.5*float64(i))
			a.GateW = append(a.GateW, 0.125*float64((j+i)%5-2))
		}
		f.Attributes = append(f.Attributes, a)
	}
	return f
}

func TestFileRoundTrip(t *testing.T) {
	f := testFile(16)
	path := filepath.Join(t.TempDir(), "s.gguf")
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	g, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f, g) {
		t.Fatalf("round trip changed the file:\n got %+v\nwant %+v", g, f)
	}
	if got := g.GatedNames(); !reflect.DeepEqual(got, []string{"truth", "tox"}) {
		t.Errorf("gated attributes %v", got)
	}
	// Ungated attribute: no gate tensors are written.
	f.Method = MethodAllTokens
	for i := range f.Attributes {
		f.Attributes[i].Gated, f.Attributes[i].GateW, f.Attributes[i].GateB = false, nil, 0
	}
	if got := f.GatedNames(); got != nil {
		t.Errorf("ungated file: gated attributes %v", got)
	}
	f.Training = nil
	data, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	gg, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(gg.Tensors) != 2 || gg.Tensors[1].Name != "matsteer.theta.14.1" {
		t.Fatalf("unexpected tensors %v", gg.Tensors)
	}
	if arch, _ := gg.String("general.architecture"); arch != "matsteer" {
		t.Fatalf("architecture %q", arch)
	}
	h, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f, h) {
		t.Fatal("ungated round trip changed the file")
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		edit func(*File)
		want string
	}{
		{func(f *File) { f.Version = 2 }, "unsupported version 2"},
		{func(f *File) { f.Site = "" }, "empty site"},
		{func(f *File) { f.Site = "l out" }, "contains"},
		{func(f *File) { f.Layer = -1 }, "layer -1"},
		{func(f *File) { f.NEmbd = 0 }, "n_embd 0"},
		{func(f *File) { f.Method = "magic" }, "unknown method"},
		{func(f *File) { f.Attributes = nil }, "no attributes"},
		{func(f *File) { f.Attributes[1].Name = "truth" }, "duplicate attribute name"},
		{func(f *File) { f.Attributes[1].Name = "" }, "empty attribute name"},
		{func(f *File) { f.Attributes[0].Theta = f.Attributes[0].Theta[:3] }, `attribute "truth": theta has 3 values, want n_embd=8`},
		{func(f *File) { f.Attributes[0].Theta[2] = math.NaN() }, "not finite"},
		{func(f *File) { f.Attributes[0].Theta[2] = 1e39 }, "overflows float32"},
		{func(f *File) { f.Attributes[1].GateW = nil }, "gate_w has 0 values"},
		{func(f *File) { f.Attributes[1].GateB = math.Inf(1) }, "gate"},
		{func(f *File) { f.Attributes[1].Gated = false }, "ungated but has gate weights"},
		{func(f *File) { f.Method = MethodMeanDiff }, "has no gates"},
		{func(f *File) { f.Training["Bad Key"] = "x" }, "training key"},
	}
	for _, c := range cases {
		f := testFile(8)
		c.edit(f)
		err := f.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want error containing %q, got %v", c.want, err)
		}
		if _, err := f.Encode(); err == nil {
			t.Errorf("%q: Encode accepted an invalid file", c.want)
		}
	}
	if err := testFile(8).Validate(); err != nil {
		t.Fatal(err)
	}
}

// mutate encodes testFile, lets edit change the GGUF, and decodes it.
func mutate(t *testing.T, edit func(g *gguf.File)) error {
	t.Helper()
	g, err := testFile(8).GGUF()
	if err != nil {
		t.Fatal(err)
	}
	edit(g)
	data, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(data)
	return err
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		edit func(g *gguf.File)
		want string
	}{
		{func(g *gguf.File) { g.Set("general.architecture", "llama") }, `general.architecture is "llama"`},
		{func(g *gguf.File) { g.Set("general.architecture", "controlvector") }, "import-cvec"},
		{func(g *gguf.File) { g.Set(keyVersion, uint32(9)) }, "unsupported steering file version 9"},
		{func(g *gguf.File) { g.Set(keyNEmbd, "x") }, "want an integer"},
		{func(g *gguf.File) { g.Set(keyNEmbd, uint32(9)) }, `tensor "matsteer.theta.14.0" has 8 values, want n_embd=9`},
		{func(g *gguf.File) { g.Set(keyLayer, uint32(13)) }, `missing tensor "matsteer.theta.13.0"`},
		{func(g *gguf.File) { g.Set(keyAttributes, []string{"a", "a"}) }, "duplicate attribute name"},
		{func(g *gguf.File) { g.Set(keyAttributes, []string{"a"}) }, "1 attribute names but 2 gated flags"},
		{func(g *gguf.File) { g.Set(keyGated, []bool{true, false}) }, `unexpected tensor "matsteer.gate_w.14.1"`},
		{func(g *gguf.File) { g.Set(keyNormPreserve, uint8(1)) }, "not a bool"},
		{func(g *gguf.File) { g.Set(keyTrainPrefix+"x", uint8(1)) }, "not a string"},
		{func(g *gguf.File) { g.Tensors = g.Tensors[:5] }, `missing tensor "matsteer.gate_b.14.1"`},
		{func(g *gguf.File) { g.Tensors[0] = gguf.NewF32Tensor(g.Tensors[0].Name, make([]float32, 7)) }, "has 7 values, want n_embd=8"},
		{func(g *gguf.File) {
			g.Tensors[0] = gguf.NewF32Tensor(g.Tensors[0].Name, []float32{1, 2, 3, float32(math.Inf(1)), 5, 6, 7, 8})
		}, "value 3 is +Inf"},
		{func(g *gguf.File) {
			g.Tensors = append(g.Tensors, gguf.NewF32Tensor("extra", []float32{1}))
		}, `unexpected tensor "extra"`},
	}
	for _, c := range cases {
		if err := mutate(t, c.edit); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want error containing %q, got %v", c.want, err)
		}
	}
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	data, err := testFile(8).Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.gguf")
	if err := os.WriteFile(path, data[:len(data)-40], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "steering file "+path) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated file: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.gguf")); err == nil {
		t.Fatal("missing file read")
	}
	if err := testFile(8).WriteFile(filepath.Join(dir, "no", "such", "dir.gguf")); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestCheckModel(t *testing.T) {
	f := testFile(8)
	if err := f.CheckModel("llama", 8, 30); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		arch         string
		nEmbd, layer int
		want         string
	}{
		{"gemma3", 8, 30, `trained on a "llama" model, this model is "gemma3"`},
		{"llama", 576, 30, "n_embd=8, the model has n_embd=576"},
		{"llama", 8, 14, "targets layer 14, the model has layers 0..13"},
	} {
		if err := f.CheckModel(c.arch, c.nEmbd, c.layer); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want %q, got %v", c.want, err)
		}
	}
}

// FuzzReadSteering checks that Decode never panics and that what it accepts
// re-encodes to a file that decodes to the same value.
func FuzzReadSteering(f *testing.F) {
	for _, d := range []int{1, 4} {
		file := testFile(d)
		data, err := file.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		file.Method = MethodMeanDiff
		for i := range file.Attributes {
			file.Attributes[i].Gated, file.Attributes[i].GateW, file.Attributes[i].GateB = false, nil, 0
		}
		if data, err = file.Encode(); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err != nil {
			return
		}
		out, err := s.Encode()
		if err != nil {
			t.Fatalf("decoded file does not encode: %v", err)
		}
		s2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatal("round trip changed the steering file")
		}
	})
}
