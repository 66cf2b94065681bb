package matsteer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/steer"
)

// Steering is a steering file in memory: the trained vectors and gates of
// one or more attributes at one site and layer (package steer has the
// format). It is immutable and safe for concurrent use; one value can
// steer any number of generations at once.
type Steering struct {
	f  *steer.File
	id string // sha256 of the encoded file: its identity for the prompt cache
}

// ReadSteering reads and validates the steering file at path (written by
// `matsteer train`, Steering.Save or TrainOptions.Out). It is not yet
// checked against a model: Model.LoadSteering does both.
func ReadSteering(path string) (*Steering, error) {
	f, err := steer.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	return NewSteering(f)
}

// NewSteering makes a Steering of a file built with package steer. It
// copies f (by encoding it), so later changes to f do not affect it.
func NewSteering(f *steer.File) (*Steering, error) {
	if f == nil {
		return nil, errors.New("matsteer: NewSteering: nil file")
	}
	data, err := f.Encode()
	if err != nil {
		return nil, fmt.Errorf("matsteer: steering file: %w", err)
	}
	cp, err := steer.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("matsteer: steering file: %w", err)
	}
	sum := sha256.Sum256(data)
	return &Steering{f: cp, id: hex.EncodeToString(sum[:])}, nil
}

// Attributes lists the attribute names, in file order.
func (s *Steering) Attributes() []string { return s.f.AttributeNames() }

// Site is the hook site the file steers (e.g. "l_out", the residual
// stream).
func (s *Steering) Site() string { return s.f.Site }

// Layer is the block whose site the file steers.
func (s *Steering) Layer() int { return s.f.Layer }

// NEmbd is the width of the file's vectors.
func (s *Steering) NEmbd() int { return s.f.NEmbd }

// Method is how the file was made (steer.MethodMATSteer, a baseline, ...).
func (s *Steering) Method() string { return s.f.Method }

// File returns a copy of the underlying steering file (package steer).
func (s *Steering) File() *steer.File {
	data, err := s.f.Encode()
	if err != nil {
		panic(fmt.Sprintf("matsteer: re-encoding a validated steering file: %v", err))
	}
	f, err := steer.Decode(data)
	if err != nil {
		panic(fmt.Sprintf("matsteer: decoding an encoded steering file: %v", err))
	}
	return f
}

// Save writes the steering file to path atomically (an error leaves any
// previous file there intact).
func (s *Steering) Save(path string) error {
	if err := s.f.WriteFile(path); err != nil {
		return fmt.Errorf("matsteer: %w", err)
	}
	return nil
}

// LoadSteering reads the steering file at path and checks it against the
// model (architecture, width, layer and hook site). A file made for a
// model of another width gives an error matching ErrWrongWidth.
func (m *Model) LoadSteering(path string) (*Steering, error) {
	s, err := ReadSteering(path)
	if err != nil {
		return nil, err
	}
	if err := m.Check(s); err != nil {
		return nil, fmt.Errorf("matsteer: steering file %s: %w", path, err)
	}
	return s, nil
}

// Check reports whether s can steer the model: same width (ErrWrongWidth
// otherwise), architecture, and a layer and site the model has.
func (m *Model) Check(s *Steering) error {
	_, err := m.check(s, "steering file")
	return err
}

func (m *Model) check(s *Steering, what string) (hooks.Point, error) {
	if s == nil {
		return hooks.Point{}, errors.New("nil steering file")
	}
	if s.f.NEmbd != m.llm.NEmbd() {
		return hooks.Point{}, &WidthError{What: what, Got: s.f.NEmbd, Model: m.llm.NEmbd()}
	}
	p, err := intervene.Check(s.f, m.llm, m.cat)
	if err != nil {
		return hooks.Point{}, err
	}
	return p, nil
}

// Steer is the steering of one call: which files, how strong.
//
//	u = a + α Σ_t s_t g_t θ_t
//
// The zero value steers nothing: output is bit-identical to the unsteered
// model.
type Steer struct {
	// Files are the steering files to apply, at most one per site and
	// layer (train attributes that share one into one file).
	Files []*Steering
	// Strengths maps attribute names to s_t, in [0, steer.MaxStrength];
	// an attribute left out has strength 1, 0 switches it off. A name
	// that no file has is an error matching ErrUnknownAttribute.
	Strengths map[string]float64
	// Global is α, in [0, steer.MaxStrength], multiplying every attribute
	// (0: the default, 1; switch steering off with strengths 0 or no
	// Files).
	Global float64
}

// prepared is a Steer checked against the model: one intervention per
// file, and the key of the whole for the prompt cache.
type prepared struct {
	ivs []*intervene.Intervention
	key string
}

// prepare checks st against the model and builds fresh interventions
// (an intervention belongs to one generation at a time).
func (m *Model) prepare(st Steer) (prepared, error) {
	var p prepared
	global := st.Global
	if global == 0 {
		global = 1
	}
	if math.IsNaN(global) || global < 0 || global > steer.MaxStrength {
		return p, fmt.Errorf("Steer.Global %v must be a finite number in [0, %g]", st.Global, steer.MaxStrength)
	}
	names := make([]string, 0, len(st.Strengths))
	for n, v := range st.Strengths {
		if math.IsNaN(v) || v < 0 || v > steer.MaxStrength {
			return p, fmt.Errorf("Steer.Strengths[%q] %v must be a finite number in [0, %g]", n, v, steer.MaxStrength)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var have []string
	owner := map[string]int{}
	for i, s := range st.Files {
		if s == nil {
			return p, fmt.Errorf("Steer.Files[%d] is nil", i)
		}
		for _, a := range s.f.AttributeNames() {
			if _, dup := owner[a]; !dup {
				owner[a] = i
				have = append(have, a)
			}
		}
	}
	var unknown []string
	for _, n := range names {
		if _, ok := owner[n]; !ok {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return p, &AttributeError{Names: unknown, Have: have}
	}
	points := map[hooks.Point]int{}
	key := fmt.Sprintf("g=%g", global)
	for i, s := range st.Files {
		pt, err := m.check(s, "the steering file")
		if err != nil {
			return p, fmt.Errorf("Steer.Files[%d]: %w", i, err)
		}
		if j, dup := points[pt]; dup {
			return p, fmt.Errorf("Steer.Files[%d] and [%d] both steer %s; train their attributes into one file", j, i, pt)
		}
		points[pt] = i
		own := map[string]float64{}
		key += "|" + s.id
		for _, a := range s.f.AttributeNames() {
			if v, ok := st.Strengths[a]; ok {
				own[a] = v
				key += fmt.Sprintf("|%q=%g", a, v)
			}
		}
		iv, err := intervene.New(s.f, steer.ApplyOptions{Global: global, Strengths: own}, m.llm, m.cat)
		if err != nil {
			return p, fmt.Errorf("Steer.Files[%d]: %w", i, err)
		}
		p.ivs = append(p.ivs, iv)
	}
	p.key = key
	return p, nil
}
