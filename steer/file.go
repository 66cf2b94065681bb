package steer

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/matsteer/matsteer/gguf"
	"github.com/matsteer/matsteer/internal/safefile"
)

// FileVersion is the steering-file format version written and accepted.
const FileVersion = 1

// Architecture is the general.architecture of a steering file.
const Architecture = "matsteer"

// Methods that produce steering files.
const (
	MethodMATSteer   = "mat-steer"   // gated MAT-Steer
	MethodMeanDiff   = "mean-diff"   // mean(pos) − mean(neg), all tokens
	MethodPCA        = "pca"         // first principal component of paired differences
	MethodAllTokens  = "all-tokens"  // MAT-Steer θ applied to every token without gates
	MethodCvecImport = "cvec-import" // imported llama.cpp control vector
)

// Methods lists the known methods.
var methods = []string{MethodMATSteer, MethodMeanDiff, MethodPCA, MethodAllTokens, MethodCvecImport}

// Limits enforced by Validate.
const (
	MaxNEmbd       = 1 << 20
	MaxLayer       = 1 << 16
	MaxAttributes  = 1024
	MaxAttrNameLen = 128
)

// MaxThetaSum bounds, for every value index j, the sum over attributes of
// |θ_t[j]|: steered at the largest accepted global and per-attribute
// strengths (MaxStrength each), the combined steering vector stays finite in
// float32, the precision it is applied in. Larger vectors would turn rows
// into ±Inf or NaN; Validate (used by both the writer and the reader)
// refuses them.
const MaxThetaSum = math.MaxFloat32 / (MaxStrength * MaxStrength)

// MaxFileBytes is the largest steering file ReadFile reads (it holds the
// whole file in memory). A file of the widest supported models (n_embd
// 8192) with hundreds of gated attributes takes a few MB; 256 MiB leaves
// ample room while bounding what a path given over the API can make the
// server allocate.
const MaxFileBytes = 256 << 20

// Metadata keys of a steering file.
const (
	keyArch         = "general.architecture"
	keyName         = "general.name"
	keyVersion      = "matsteer.version"
	keySite         = "matsteer.site"
	keyLayer        = "matsteer.layer"
	keyNEmbd        = "matsteer.n_embd"
	keyModelArch    = "matsteer.model.architecture"
	keyModelName    = "matsteer.model.name"
	keyModelID      = "matsteer.model.id"
	keyMethod       = "matsteer.method"
	keyNormPreserve = "matsteer.norm_preserve"
	keyAttributes   = "matsteer.attributes"
	keyGated        = "matsteer.gated"
	keyTrainPrefix  = "matsteer.training."
)

// Attribute is one steering attribute. Theta has NEmbd values. A gated
// attribute has GateW (NEmbd values) and GateB; an ungated one steers every
// row (gate 1) and has no gate weights.
type Attribute struct {
	Name  string
	Theta []float64
	GateW []float64
	GateB float64
	Gated bool
}

// File is a steering file: the attributes of one site and layer, and where
// they came from.
type File struct {
	Version   int    // FileVersion
	Site      string // hook site, e.g. "l_out"
	Layer     int    // block index of the site
	NEmbd     int    // row width
	ModelArch string // architecture of the model the activations came from
	ModelName string // name of that model
	ModelID   string // identity string of that model (e.g. its sha256), optional
	Method    string // one of the Method* constants
	// NormPreserve rescales each steered row to its original norm.
	NormPreserve bool
	Attributes   []Attribute
	// Training holds hyperparameters, data fingerprints and final losses as
	// strings (stored as matsteer.training.<key>). Keys are lower-case
	// [a-z0-9._-]; the writer sorts them, so files are deterministic.
	Training map[string]string
}

// AttributeNames returns the attribute names in file order.
func (f *File) AttributeNames() []string {
	names := make([]string, len(f.Attributes))
	for i, a := range f.Attributes {
		names[i] = a.Name
	}
	return names
}

// GatedNames returns the names of the gated attributes in file order.
func (f *File) GatedNames() []string {
	var names []string
	for _, a := range f.Attributes {
		if a.Gated {
			names = append(names, a.Name)
		}
	}
	return names
}

// ValidAttributeName reports why name cannot be an attribute name (nil if it can).
// Names are 1..128 bytes of UTF-8 without control characters, spaces, '=' or ','
// (so that name=value lists parse).
func ValidAttributeName(name string) error {
	if name == "" {
		return fmt.Errorf("empty attribute name")
	}
	if len(name) > MaxAttrNameLen {
		return fmt.Errorf("attribute name %.20q... longer than %d bytes", name, MaxAttrNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("attribute name %s is not valid UTF-8", safefile.Quote(name))
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == '=' || r == ',' {
			return fmt.Errorf("attribute name %s contains %q", safefile.Quote(name), r)
		}
	}
	return nil
}

func validSite(site string) error {
	if site == "" {
		return fmt.Errorf("empty site")
	}
	if len(site) > 64 {
		return fmt.Errorf("site %.20q... too long", site)
	}
	for _, r := range site {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.') {
			return fmt.Errorf("site %s contains %q", safefile.Quote(site), r)
		}
	}
	return nil
}

func validTrainingKey(k string) error {
	if k == "" || len(k) > 200 {
		return fmt.Errorf("training key of %d bytes, want 1..200", len(k))
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return fmt.Errorf("training key %s contains %q (allowed: a-z 0-9 . _ -)", safefile.Quote(k), r)
		}
	}
	return nil
}

func knownMethod(m string) bool {
	for _, k := range methods {
		if k == m {
			return true
		}
	}
	return false
}

// Validate checks that f is complete and consistent: version, site, sizes,
// unique valid attribute names, finite vectors of length NEmbd, gate weights
// exactly on gated attributes, and a known method.
func (f *File) Validate() error {
	if f.Version != FileVersion {
		return fmt.Errorf("unsupported version %d (want %d)", f.Version, FileVersion)
	}
	if err := validSite(f.Site); err != nil {
		return err
	}
	if f.Layer < 0 || f.Layer >= MaxLayer {
		return fmt.Errorf("layer %d out of range [0, %d)", f.Layer, MaxLayer)
	}
	if f.NEmbd <= 0 || f.NEmbd > MaxNEmbd {
		return fmt.Errorf("n_embd %d out of range [1, %d]", f.NEmbd, MaxNEmbd)
	}
	if !knownMethod(f.Method) {
		return fmt.Errorf("unknown method %s (want one of %s)", safefile.Quote(f.Method), strings.Join(methods, ", "))
	}
	if len(f.Attributes) == 0 {
		return fmt.Errorf("no attributes")
	}
	if len(f.Attributes) > MaxAttributes {
		return fmt.Errorf("%d attributes, at most %d", len(f.Attributes), MaxAttributes)
	}
	for _, s := range []struct{ what, v string }{{"architecture", f.ModelArch}, {"name", f.ModelName}, {"id", f.ModelID}} {
		if !utf8.ValidString(s.v) {
			return fmt.Errorf("model %s is not valid UTF-8", s.what)
		}
	}
	seen := make(map[string]bool, len(f.Attributes))
	for i, a := range f.Attributes {
		if err := ValidAttributeName(a.Name); err != nil {
			return fmt.Errorf("attribute %d: %w", i, err)
		}
		if seen[a.Name] {
			return fmt.Errorf("duplicate attribute name %q", a.Name)
		}
		seen[a.Name] = true
		if len(a.Theta) != f.NEmbd {
			return fmt.Errorf("attribute %q: theta has %d values, want n_embd=%d", a.Name, len(a.Theta), f.NEmbd)
		}
		if i := firstNonFinite(a.Theta); i >= 0 {
			return fmt.Errorf("attribute %q: theta[%d] = %v is not finite", a.Name, i, a.Theta[i])
		}
		if !inF32(a.Theta) {
			return fmt.Errorf("attribute %q: theta overflows float32", a.Name)
		}
		if a.Gated {
			if f.Method != MethodMATSteer {
				return fmt.Errorf("attribute %q is gated but method %q has no gates", a.Name, f.Method)
			}
			if len(a.GateW) != f.NEmbd {
				return fmt.Errorf("attribute %q: gate_w has %d values, want n_embd=%d", a.Name, len(a.GateW), f.NEmbd)
			}
			if i := firstNonFinite(a.GateW); i >= 0 {
				return fmt.Errorf("attribute %q: gate_w[%d] = %v is not finite", a.Name, i, a.GateW[i])
			}
			if !inF32(a.GateW) || !inF32([]float64{a.GateB}) {
				return fmt.Errorf("attribute %q: gate overflows float32", a.Name)
			}
			if math.IsNaN(a.GateB) || math.IsInf(a.GateB, 0) {
				return fmt.Errorf("attribute %q: gate_b = %v is not finite", a.Name, a.GateB)
			}
		} else if len(a.GateW) != 0 || a.GateB != 0 {
			return fmt.Errorf("attribute %q is ungated but has gate weights", a.Name)
		}
	}
	for j := 0; j < f.NEmbd; j++ {
		sum := 0.0
		for _, a := range f.Attributes {
			sum += math.Abs(a.Theta[j])
		}
		if sum > MaxThetaSum {
			return fmt.Errorf("theta values at index %d sum to %.3g in magnitude over the attributes, more than %.3g: steering at the strengths allowed (up to %g global × %g per attribute) would overflow float32", j, sum, MaxThetaSum, float64(MaxStrength), float64(MaxStrength))
		}
	}
	for k, v := range f.Training {
		if err := validTrainingKey(k); err != nil {
			return err
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("training value of %q is not valid UTF-8", k)
		}
	}
	return nil
}

func firstNonFinite(v []float64) int {
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return i
		}
	}
	return -1
}

func inF32(v []float64) bool {
	for _, x := range v {
		if math.Abs(x) > math.MaxFloat32 {
			return false
		}
	}
	return true
}

// CheckModel reports whether f can steer a model with the given
// architecture, embedding width and layer count. A file without a model
// architecture (e.g. an imported control vector without a hint) matches any.
func (f *File) CheckModel(arch string, nEmbd, nLayer int) error {
	if f.ModelArch != "" && arch != f.ModelArch {
		return fmt.Errorf("steering file was trained on a %s model, this model is %q", safefile.Quote(f.ModelArch), arch)
	}
	if nEmbd != f.NEmbd {
		return fmt.Errorf("steering file has n_embd=%d, the model has n_embd=%d", f.NEmbd, nEmbd)
	}
	if f.Layer < 0 || f.Layer >= nLayer {
		return fmt.Errorf("steering file targets layer %d, the model has layers 0..%d", f.Layer, nLayer-1)
	}
	return nil
}

// Tensor names of attribute i at layer l.
func thetaName(layer, i int) string { return fmt.Sprintf("matsteer.theta.%d.%d", layer, i) }
func gateWName(layer, i int) string { return fmt.Sprintf("matsteer.gate_w.%d.%d", layer, i) }
func gateBName(layer, i int) string { return fmt.Sprintf("matsteer.gate_b.%d.%d", layer, i) }

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// GGUF converts f to a GGUF file. Vectors are stored as F32.
func (f *File) GGUF() (*gguf.File, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	g := &gguf.File{Version: gguf.Version}
	gated := make([]bool, len(f.Attributes))
	for i, a := range f.Attributes {
		gated[i] = a.Gated
	}
	g.KV = []gguf.KV{
		{Key: keyArch, Value: Architecture},
		{Key: keyName, Value: "matsteer steering vectors"},
		{Key: keyVersion, Value: uint32(f.Version)},
		{Key: keySite, Value: f.Site},
		{Key: keyLayer, Value: uint32(f.Layer)},
		{Key: keyNEmbd, Value: uint32(f.NEmbd)},
		{Key: keyModelArch, Value: f.ModelArch},
		{Key: keyModelName, Value: f.ModelName},
		{Key: keyModelID, Value: f.ModelID},
		{Key: keyMethod, Value: f.Method},
		{Key: keyNormPreserve, Value: f.NormPreserve},
		{Key: keyAttributes, Value: f.AttributeNames()},
		{Key: keyGated, Value: gated},
	}
	keys := make([]string, 0, len(f.Training))
	for k := range f.Training {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g.KV = append(g.KV, gguf.KV{Key: keyTrainPrefix + k, Value: f.Training[k]})
	}
	for i, a := range f.Attributes {
		g.Tensors = append(g.Tensors, gguf.NewF32Tensor(thetaName(f.Layer, i), toF32(a.Theta)))
		if a.Gated {
			g.Tensors = append(g.Tensors,
				gguf.NewF32Tensor(gateWName(f.Layer, i), toF32(a.GateW)),
				gguf.NewF32Tensor(gateBName(f.Layer, i), []float32{float32(a.GateB)}))
		}
	}
	return g, nil
}

// Encode returns the steering file as GGUF bytes.
func (f *File) Encode() ([]byte, error) {
	g, err := f.GGUF()
	if err != nil {
		return nil, err
	}
	return g.Marshal()
}

// WriteFile validates f and writes it to path atomically.
func (f *File) WriteFile(path string) error {
	data, err := f.Encode()
	if err != nil {
		return fmt.Errorf("steering file %s: %w", path, err)
	}
	if err := gguf.WriteFileAtomic(path, data); err != nil {
		return fmt.Errorf("steering file: %w", err)
	}
	return nil
}

// ReadFile reads and fully validates the steering file at path, which must
// be a regular file of at most [MaxFileBytes] bytes.
func ReadFile(path string) (*File, error) {
	data, err := safefile.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("steering file: %w", err)
	}
	f, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("steering file %s: %w", path, err)
	}
	return f, nil
}

// Decode parses and validates a steering file held in data.
func Decode(data []byte) (*File, error) {
	g, err := gguf.Parse(data)
	if err != nil {
		return nil, err
	}
	return FromGGUF(g)
}

// FromGGUF converts a parsed GGUF file into a validated steering file.
func FromGGUF(g *gguf.File) (*File, error) {
	arch, err := g.String(keyArch)
	if err != nil {
		return nil, err
	}
	if arch != Architecture {
		if arch == CvecArchitecture {
			return nil, fmt.Errorf("this is a llama.cpp control vector (general.architecture %q); convert it with import-cvec", arch)
		}
		return nil, fmt.Errorf("general.architecture is %s, want %q: not a steering file", safefile.Quote(arch), Architecture)
	}
	version, err := g.Int(keyVersion)
	if err != nil {
		return nil, err
	}
	if version != FileVersion {
		return nil, fmt.Errorf("unsupported steering file version %d (this build reads version %d)", version, FileVersion)
	}
	f := &File{Version: int(version)}
	if f.Site, err = g.String(keySite); err != nil {
		return nil, err
	}
	layer, err := g.Int(keyLayer)
	if err != nil {
		return nil, err
	}
	nEmbd, err := g.Int(keyNEmbd)
	if err != nil {
		return nil, err
	}
	if layer < 0 || layer >= MaxLayer {
		return nil, fmt.Errorf("layer %d out of range [0, %d)", layer, MaxLayer)
	}
	if nEmbd <= 0 || nEmbd > MaxNEmbd {
		return nil, fmt.Errorf("n_embd %d out of range [1, %d]", nEmbd, MaxNEmbd)
	}
	f.Layer, f.NEmbd = int(layer), int(nEmbd)
	if f.ModelArch, err = g.String(keyModelArch); err != nil {
		return nil, err
	}
	if f.ModelName, err = g.String(keyModelName); err != nil {
		return nil, err
	}
	if _, ok := g.Get(keyModelID); ok {
		if f.ModelID, err = g.String(keyModelID); err != nil {
			return nil, err
		}
	}
	if f.Method, err = g.String(keyMethod); err != nil {
		return nil, err
	}
	np, ok := g.Get(keyNormPreserve)
	if !ok {
		return nil, fmt.Errorf("missing key %q", keyNormPreserve)
	}
	if f.NormPreserve, ok = np.(bool); !ok {
		return nil, fmt.Errorf("key %q is not a bool", keyNormPreserve)
	}
	nv, ok := g.Get(keyAttributes)
	if !ok {
		return nil, fmt.Errorf("missing key %q", keyAttributes)
	}
	names, ok := nv.([]string)
	if !ok {
		return nil, fmt.Errorf("key %q is not an array of strings", keyAttributes)
	}
	gv, ok := g.Get(keyGated)
	if !ok {
		return nil, fmt.Errorf("missing key %q", keyGated)
	}
	gated, ok := gv.([]bool)
	if !ok {
		return nil, fmt.Errorf("key %q is not an array of bools", keyGated)
	}
	if len(gated) != len(names) {
		return nil, fmt.Errorf("%d attribute names but %d gated flags", len(names), len(gated))
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no attributes")
	}
	if len(names) > MaxAttributes {
		return nil, fmt.Errorf("%d attributes, at most %d", len(names), MaxAttributes)
	}
	for _, kv := range g.KV {
		if k, ok := strings.CutPrefix(kv.Key, keyTrainPrefix); ok {
			s, ok := kv.Value.(string)
			if !ok {
				return nil, fmt.Errorf("key %s is not a string", safefile.Quote(kv.Key))
			}
			if f.Training == nil {
				f.Training = make(map[string]string)
			}
			f.Training[k] = s
		}
	}
	used := make(map[string]bool, len(g.Tensors))
	vector := func(name string, want int, what string) ([]float64, error) {
		t := g.Tensor(name)
		if t == nil {
			return nil, fmt.Errorf("missing tensor %q", name)
		}
		used[name] = true
		if t.Type != gguf.TensorF32 {
			return nil, fmt.Errorf("tensor %q has type %s, want F32", name, t.Type)
		}
		if len(t.Dims) != 1 || t.Dims[0] != uint64(want) {
			return nil, fmt.Errorf("tensor %q has %d values, want %s=%d", name, t.NumElements(), what, want)
		}
		vals, err := t.Float32s()
		if err != nil {
			return nil, err
		}
		out := make([]float64, len(vals))
		for i, v := range vals {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("tensor %q: value %d is %v", name, i, v)
			}
			out[i] = float64(v)
		}
		return out, nil
	}
	for i, name := range names {
		a := Attribute{Name: name, Gated: gated[i]}
		if a.Theta, err = vector(thetaName(f.Layer, i), f.NEmbd, "n_embd"); err != nil {
			return nil, err
		}
		if a.Gated {
			if a.GateW, err = vector(gateWName(f.Layer, i), f.NEmbd, "n_embd"); err != nil {
				return nil, err
			}
			b, err := vector(gateBName(f.Layer, i), 1, "1")
			if err != nil {
				return nil, err
			}
			a.GateB = b[0]
		}
		f.Attributes = append(f.Attributes, a)
	}
	for _, t := range g.Tensors {
		if !used[t.Name] {
			return nil, fmt.Errorf("unexpected tensor %q", t.Name)
		}
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// TrainingFloat returns a numeric training entry (false if absent or not a number).
func (f *File) TrainingFloat(key string) (float64, bool) {
	s, ok := f.Training[key]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}
