package steer

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/matsteer/matsteer/gguf"
)

// Control-vector (llama.cpp) metadata.
const (
	CvecArchitecture = "controlvector"
	cvecKeyModelHint = "controlvector.model_hint"
	cvecKeyLayers    = "controlvector.layer_count"
	cvecPrefix       = "direction."
)

// ExportOptions controls ExportControlVector.
type ExportOptions struct {
	// Apply scales the attributes (α and s_t), as at inference.
	Apply ApplyOptions
	// ForceUngated exports gated attributes as if their gates were always 1
	// (the sum of α s_t θ_t over all attributes), which is not what the
	// steering file does at inference.
	ForceUngated bool
	// IgnoreNormPreserve exports a file trained or meant to be applied with
	// norm preservation; llama.cpp only adds the vector.
	IgnoreNormPreserve bool
}

// ExportControlVector converts f into a llama.cpp control vector: one
// tensor direction.L (L = f.Layer) holding Σ_t α s_t θ_t. llama.cpp adds
// direction.N to the output of block N (the l_out-N tensor), so only site
// "l_out" and layers >= 1 can be exported. Gated attributes are refused
// unless ForceUngated, and norm-preserving files unless IgnoreNormPreserve.
func ExportControlVector(f *File, opts ExportOptions) (*gguf.File, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if f.Site != "l_out" {
		return nil, fmt.Errorf("site %q cannot be exported: llama.cpp control vectors act on the block output (site l_out)", f.Site)
	}
	if f.Layer < 1 {
		return nil, fmt.Errorf("layer %d cannot be exported: llama.cpp control vectors have no slot for block 0 (direction.N is added to l_out-N, N >= 1)", f.Layer)
	}
	gated := f.GatedNames()
	if len(gated) > 0 && !opts.ForceUngated {
		return nil, fmt.Errorf("attributes %s are gated (per-token gates) and llama.cpp control vectors are not; pass --force-ungated to export the ungated sum of their vectors", strings.Join(gated, ", "))
	}
	if f.NormPreserve && !opts.IgnoreNormPreserve {
		return nil, fmt.Errorf("the steering file uses norm preservation, which llama.cpp control vectors cannot express; pass --ignore-norm-preserve to export the plain vector sum anyway")
	}
	scales, err := effectiveScales(f, opts.Apply)
	if err != nil {
		return nil, err
	}
	sum := make([]float64, f.NEmbd)
	for i, a := range f.Attributes {
		for j, v := range a.Theta {
			sum[j] += scales[i] * v
		}
	}
	vec := toF32(sum)
	for j, v := range vec {
		if math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("exported value %d overflows float32", j)
		}
	}
	g := &gguf.File{Version: gguf.Version, KV: []gguf.KV{
		{Key: "general.architecture", Value: CvecArchitecture},
		{Key: cvecKeyModelHint, Value: f.ModelArch},
		{Key: cvecKeyLayers, Value: int32(f.Layer)},
	}}
	g.Tensors = []gguf.Tensor{gguf.NewF32Tensor(cvecPrefix+strconv.Itoa(f.Layer), vec)}
	return g, nil
}

// ImportOptions controls ImportControlVector.
type ImportOptions struct {
	Name  string // attribute name (required)
	Layer int    // direction.N to take when the file has several non-zero ones; 0 = the only one
}

// ImportControlVector turns a llama.cpp control vector into a one-attribute,
// ungated steering file at site l_out, layer N for tensor direction.N.
// All-zero directions are ignored; when several layers are non-zero, choose
// one with opts.Layer.
func ImportControlVector(g *gguf.File, opts ImportOptions) (*File, error) {
	if err := ValidAttributeName(opts.Name); err != nil {
		return nil, err
	}
	arch, err := g.String("general.architecture")
	if err != nil {
		return nil, err
	}
	if arch != CvecArchitecture {
		return nil, fmt.Errorf("general.architecture is %q, want %q", arch, CvecArchitecture)
	}
	hint := ""
	if v, ok := g.Get(cvecKeyModelHint); ok {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a string", cvecKeyModelHint)
		}
		hint = s
	}
	type dir struct {
		layer int
		vals  []float32
	}
	var dirs []dir
	nEmbd := -1
	for _, t := range g.Tensors {
		rest, ok := strings.CutPrefix(t.Name, cvecPrefix)
		layer, err := strconv.Atoi(rest)
		if !ok || err != nil || layer < 0 || strconv.Itoa(layer) != rest {
			return nil, fmt.Errorf("tensor %q is not a direction.N tensor", t.Name)
		}
		if layer == 0 {
			return nil, fmt.Errorf("tensor %q: direction layers start at 1", t.Name)
		}
		if layer >= MaxLayer {
			return nil, fmt.Errorf("tensor %q: layer out of range", t.Name)
		}
		if len(t.Dims) != 1 {
			return nil, fmt.Errorf("tensor %q has %d dimensions, want 1", t.Name, len(t.Dims))
		}
		vals, err := t.Float32s()
		if err != nil {
			return nil, err
		}
		if nEmbd < 0 {
			nEmbd = len(vals)
		} else if len(vals) != nEmbd {
			return nil, fmt.Errorf("tensor %q has %d values, want n_embd=%d like the others", t.Name, len(vals), nEmbd)
		}
		for i, v := range vals {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("tensor %q: value %d is %v", t.Name, i, v)
			}
		}
		dirs = append(dirs, dir{layer, vals})
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no direction.N tensors")
	}
	// llama.cpp adds directions of the same layer together.
	byLayer := map[int][]float64{}
	for _, dr := range dirs {
		acc := byLayer[dr.layer]
		if acc == nil {
			acc = make([]float64, nEmbd)
			byLayer[dr.layer] = acc
		}
		for i, v := range dr.vals {
			acc[i] += float64(v)
		}
	}
	var nonzero []int
	for l, v := range byLayer {
		if floatsNonZero(v) {
			nonzero = append(nonzero, l)
		}
	}
	sort.Ints(nonzero)
	layer := opts.Layer
	switch {
	case layer > 0:
		if _, ok := byLayer[layer]; !ok {
			return nil, fmt.Errorf("no direction.%d tensor (non-zero layers: %v)", layer, nonzero)
		}
	case len(nonzero) == 1:
		layer = nonzero[0]
	case len(nonzero) == 0:
		return nil, fmt.Errorf("every direction is zero")
	default:
		return nil, fmt.Errorf("directions for layers %v are non-zero; a steering file holds one layer, choose one with --layer", nonzero)
	}
	f := &File{
		Version: FileVersion, Site: "l_out", Layer: layer, NEmbd: nEmbd,
		ModelArch: hint, Method: MethodCvecImport,
		Attributes: []Attribute{{Name: opts.Name, Theta: byLayer[layer]}},
		Training:   map[string]string{"method": MethodCvecImport},
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

func floatsNonZero(v []float64) bool {
	for _, x := range v {
		if x != 0 {
			return true
		}
	}
	return false
}

// MergeFiles combines single-layer steering files of the same site, layer,
// width and model into one multi-attribute file (used to import several
// control vectors). Method and norm preservation must agree.
func MergeFiles(files []*File) (*File, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("nothing to merge")
	}
	out := *files[0]
	out.Attributes = nil
	out.Training = map[string]string{}
	for k, v := range files[0].Training {
		out.Training[k] = v
	}
	for i, f := range files {
		if f.Site != out.Site || f.Layer != out.Layer || f.NEmbd != out.NEmbd {
			return nil, fmt.Errorf("file %d is site %s layer %d n_embd %d, the first is site %s layer %d n_embd %d", i+1, f.Site, f.Layer, f.NEmbd, out.Site, out.Layer, out.NEmbd)
		}
		if f.ModelArch != out.ModelArch {
			return nil, fmt.Errorf("file %d is for model %q, the first for %q", i+1, f.ModelArch, out.ModelArch)
		}
		if f.Method != out.Method || f.NormPreserve != out.NormPreserve {
			return nil, fmt.Errorf("file %d has method %s (norm preservation %v), the first %s (%v)", i+1, f.Method, f.NormPreserve, out.Method, out.NormPreserve)
		}
		out.Attributes = append(out.Attributes, f.Attributes...)
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return &out, nil
}
