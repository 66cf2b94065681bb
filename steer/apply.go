package steer

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/blas/blas32"
)

// MaxStrength is the largest accepted global or per-attribute strength.
const MaxStrength = 1e3

// ApplyOptions scales the steering. Global is α and is used as given: the
// zero value switches steering off (rows stay bit-identical). Use
// [DefaultApplyOptions] for α = 1. Strengths maps attribute names to s_t; an
// attribute not in the map has strength 1.
type ApplyOptions struct {
	Global    float64
	Strengths map[string]float64
	// SteerSpecial steers rows of control tokens and chat-template
	// scaffolding too. By default (false) package intervene leaves them
	// as they are: steering vectors are trained on dataset text, and
	// their gates are not meant for "<|im_start|>", "user", "assistant".
	// An Applier steers every row it is given either way.
	SteerSpecial bool
}

// DefaultApplyOptions returns α = 1 and every strength 1.
func DefaultApplyOptions() ApplyOptions { return ApplyOptions{Global: 1} }

func checkStrength(what string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > MaxStrength {
		return fmt.Errorf("%s strength %v must be a finite number in [0, %g]", what, v, MaxStrength)
	}
	return nil
}

// effectiveScales validates opts against f and returns α·s_t per attribute.
func effectiveScales(f *File, opts ApplyOptions) ([]float64, error) {
	if err := checkStrength("global", opts.Global); err != nil {
		return nil, err
	}
	index := make(map[string]int, len(f.Attributes))
	for i, a := range f.Attributes {
		index[a.Name] = i
	}
	scales := make([]float64, len(f.Attributes))
	for i := range scales {
		scales[i] = opts.Global
	}
	names := make([]string, 0, len(opts.Strengths))
	for n := range opts.Strengths {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		i, ok := index[n]
		if !ok {
			return nil, fmt.Errorf("unknown attribute %q (the steering file has %v)", n, f.AttributeNames())
		}
		s := opts.Strengths[n]
		if err := checkStrength(fmt.Sprintf("attribute %q", n), s); err != nil {
			return nil, err
		}
		scales[i] = opts.Global * s
	}
	return scales, nil
}

type applyAttr struct {
	gated bool
	w     []float32 // gate weights (gated only)
	b     float64
	theta []float32 // α s_t θ_t
	on    bool      // α s_t ≠ 0
}

// Applier applies a steering file to float32 rows. It keeps one row of
// scratch space, so an Applier is not safe for concurrent use: give each
// goroutine its own (see [Applier.Clone]).
type Applier struct {
	nEmbd        int
	names        []string
	attrs        []applyAttr
	normPreserve bool
	delta        []float32
	coef         []float32
}

// NewApplier validates f and opts and prepares the float32 weights.
func NewApplier(f *File, opts ApplyOptions) (*Applier, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("steering file: %w", err)
	}
	scales, err := effectiveScales(f, opts)
	if err != nil {
		return nil, err
	}
	a := &Applier{
		nEmbd:        f.NEmbd,
		names:        f.AttributeNames(),
		normPreserve: f.NormPreserve,
		delta:        make([]float32, f.NEmbd),
		coef:         make([]float32, len(f.Attributes)),
	}
	for i, at := range f.Attributes {
		x := applyAttr{gated: at.Gated, on: scales[i] != 0, theta: make([]float32, f.NEmbd)}
		for j, v := range at.Theta {
			x.theta[j] = float32(scales[i] * v)
		}
		if at.Gated {
			x.w = toF32(at.GateW)
			x.b = at.GateB
		}
		a.attrs = append(a.attrs, x)
	}
	return a, nil
}

// Clone returns an Applier with the same weights and its own scratch space.
func (a *Applier) Clone() *Applier {
	c := *a
	c.delta = make([]float32, a.nEmbd)
	c.coef = make([]float32, len(a.coef))
	return &c
}

// Attributes returns the attribute names in file order (the column order of
// Apply's gates output).
func (a *Applier) Attributes() []string { return append([]string(nil), a.names...) }

// NEmbd is the row width.
func (a *Applier) NEmbd() int { return a.nEmbd }

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// Apply steers rows ([nRows][NEmbd] row-major) in place. If gates is not nil
// it receives g_t per row (len nRows·T, row-major; 1 for ungated
// attributes); if deltaNorms is not nil it receives ‖ã−a‖ per row. A row
// whose steering term is exactly zero is left bit-identical. Gates are
// computed in float64 from the unmodified row. Apply does not allocate. It
// panics if len(rows) is not a multiple of NEmbd or an output has the wrong
// length.
func (a *Applier) Apply(rows []float32, gates []float32, deltaNorms []float32) {
	d := a.nEmbd
	if len(rows)%d != 0 {
		panic(fmt.Sprintf("steer: Apply got %d values, not a multiple of n_embd=%d", len(rows), d))
	}
	n := len(rows) / d
	T := len(a.attrs)
	if gates != nil && len(gates) != n*T {
		panic(fmt.Sprintf("steer: Apply gates has %d values, want %d", len(gates), n*T))
	}
	if deltaNorms != nil && len(deltaNorms) != n {
		panic(fmt.Sprintf("steer: Apply deltaNorms has %d values, want %d", len(deltaNorms), n))
	}
	impl := blas32.Implementation()
	delta, coef := a.delta, a.coef
	for r := 0; r < n; r++ {
		row := rows[r*d : (r+1)*d : (r+1)*d]
		active := false
		for t := range a.attrs {
			at := &a.attrs[t]
			g := float32(1)
			if at.gated && (at.on || gates != nil) {
				g = float32(sigmoid(impl.Dsdot(d, at.w, 1, row, 1) + at.b))
			}
			if gates != nil {
				gates[r*T+t] = g
			}
			coef[t] = 0
			if at.on && g != 0 {
				coef[t] = g
				active = true
			}
		}
		if deltaNorms != nil {
			deltaNorms[r] = 0
		}
		if !active {
			continue
		}
		clear(delta)
		for t := range a.attrs {
			if coef[t] != 0 {
				impl.Saxpy(d, coef[t], a.attrs[t].theta, 1, delta, 1)
			}
		}
		if allZero(delta) {
			continue
		}
		na := impl.Dsdot(d, row, 1, row, 1)
		impl.Saxpy(d, 1, row, 1, delta, 1) // delta is now u = a + steering
		u := delta
		if a.normPreserve {
			if nu := impl.Dsdot(d, u, 1, u, 1); nu > 0 {
				s := float32(math.Sqrt(na / nu))
				for i := range u {
					u[i] *= s
				}
			}
		}
		if deltaNorms != nil {
			var dn0, dn1 float64
			i := 0
			for ; i+1 < d; i += 2 {
				e0 := float64(u[i]) - float64(row[i])
				e1 := float64(u[i+1]) - float64(row[i+1])
				dn0 += e0 * e0
				dn1 += e1 * e1
			}
			for ; i < d; i++ {
				e := float64(u[i]) - float64(row[i])
				dn0 += e * e
			}
			deltaNorms[r] = float32(math.Sqrt(dn0 + dn1))
		}
		copy(row, u)
	}
}

// ParseStrengths parses per-attribute strengths given as "name=value"
// entries; an entry may hold several comma-separated pairs
// ("truthfulqa=1.5,toxigen=0"). Values are checked like ApplyOptions
// strengths; names are checked against a file by NewApplier.
func ParseStrengths(entries []string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, e := range entries {
		for _, pair := range strings.Split(e, ",") {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			name, val, ok := strings.Cut(pair, "=")
			if !ok {
				return nil, fmt.Errorf("strength %q: want name=value", pair)
			}
			name = strings.TrimSpace(name)
			if err := ValidAttributeName(name); err != nil {
				return nil, fmt.Errorf("strength %q: %w", pair, err)
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return nil, fmt.Errorf("strength %q: %q is not a number", pair, val)
			}
			if err := checkStrength(fmt.Sprintf("attribute %q", name), v); err != nil {
				return nil, err
			}
			if _, dup := out[name]; dup {
				return nil, fmt.Errorf("strength for %q given twice", name)
			}
			out[name] = v
		}
	}
	return out, nil
}

// allZero reports whether every entry of v is 0 (NaN is not).
func allZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}
