package steer

import (
	"reflect"
	"testing"

	"github.com/matsteer/matsteer/gguf"
)

// FuzzImportControlVector checks that parsing and importing a llama.cpp
// control vector never panics, and that an accepted import is a valid
// steering file that survives an Encode/Decode round trip.
func FuzzImportControlVector(f *testing.F) {
	base := testFile(8)
	base.Method = MethodMeanDiff
	base.NormPreserve = false
	for i := range base.Attributes {
		base.Attributes[i].Gated, base.Attributes[i].GateW, base.Attributes[i].GateB = false, nil, 0
	}
	if g, err := ExportControlVector(base, ExportOptions{Apply: DefaultApplyOptions()}); err == nil {
		if data, err := g.Marshal(); err == nil {
			f.Add(data, 0)
			f.Add(data, 14)
			f.Add(data, 3)
		}
	}
	two := &gguf.File{Version: gguf.Version, KV: []gguf.KV{{Key: "general.architecture", Value: CvecArchitecture}}}
	two.Tensors = []gguf.Tensor{gguf.NewF32Tensor("direction.1", []float32{1, 0}), gguf.NewF32Tensor("direction.2", []float32{0, 3e38})}
	if data, err := two.Marshal(); err == nil {
		f.Add(data, 0)
		f.Add(data, 2)
	}
	f.Add([]byte("GGUF"), 0)
	f.Fuzz(func(t *testing.T, data []byte, layer int) {
		g, err := gguf.Parse(data)
		if err != nil {
			return
		}
		imp, err := ImportControlVector(g, ImportOptions{Name: "v", Layer: layer})
		if err != nil {
			return
		}
		if err := imp.Validate(); err != nil {
			t.Fatalf("import is not a valid steering file: %v", err)
		}
		out, err := imp.Encode()
		if err != nil {
			t.Fatalf("import does not encode: %v", err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("encoded import does not decode: %v", err)
		}
		if !reflect.DeepEqual(imp, back) {
			t.Fatal("round trip changed the imported file")
		}
	})
}
