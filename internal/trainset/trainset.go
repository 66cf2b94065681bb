// Package trainset reads activation files (package acts) as training data
// for package steer: rows grouped by attribute name across files that must
// come from the same model, site, layer and width. The CLI's `train` and
// the root package's TrainActivations both read their files through it.
package trainset

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/steer"
)

// Set is the training data of one or more activation files.
type Set struct {
	Attrs  []steer.AttributeData // in order of first appearance
	Meta   acts.Meta             // of the first file
	SHA256 []string              // of each file, in order
	Rows   int                   // rows read in all
}

// Read reads the files in order. Every attribute needs positive and
// negative rows.
func Read(paths []string) (*Set, error) {
	if len(paths) == 0 {
		return nil, errors.New("no activation files")
	}
	s := &Set{}
	index := map[string]int{}
	for fi, path := range paths {
		sum, err := FileSHA256(path)
		if err != nil {
			return nil, err
		}
		af, err := acts.Open(path)
		if err != nil {
			return nil, err
		}
		m := af.Meta
		if fi == 0 {
			s.Meta = m
		} else if err := SameMeta(s.Meta, m, paths[0], path); err != nil {
			af.Close()
			return nil, err
		}
		vecs, err := af.Vectors()
		af.Close()
		if err != nil {
			return nil, err
		}
		d := m.NEmbd
		for i, r := range af.Rows {
			if int(r.Attribute) < 0 || int(r.Attribute) >= len(m.Attributes) {
				return nil, fmt.Errorf("%s: row %d has attribute index %d, the file names %d attributes", path, i, r.Attribute, len(m.Attributes))
			}
			name := m.Attributes[r.Attribute]
			t, ok := index[name]
			if !ok {
				t = len(s.Attrs)
				index[name] = t
				s.Attrs = append(s.Attrs, steer.AttributeData{Name: name})
			}
			row := Float64s(vecs[i*d : (i+1)*d])
			switch r.Label {
			case 1:
				s.Attrs[t].Pos = append(s.Attrs[t].Pos, row)
			case 0:
				s.Attrs[t].Neg = append(s.Attrs[t].Neg, row)
			default:
				return nil, fmt.Errorf("%s: row %d has label %d (want 0 or 1)", path, i, r.Label)
			}
		}
		s.Rows += len(af.Rows)
		s.SHA256 = append(s.SHA256, sum)
	}
	if len(s.Attrs) == 0 {
		return nil, errors.New("the activation files hold no rows")
	}
	var missing []string
	for _, a := range s.Attrs {
		if len(a.Pos) == 0 || len(a.Neg) == 0 {
			missing = append(missing, fmt.Sprintf("attribute %q has %d positive and %d negative rows", a.Name, len(a.Pos), len(a.Neg)))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s across %s; training needs both", strings.Join(missing, ", "), strings.Join(paths, ", "))
	}
	return s, nil
}

// Float64s converts one float32 row.
func Float64s(v []float32) []float64 {
	row := make([]float64, len(v))
	for j, x := range v {
		row[j] = float64(x)
	}
	return row
}

// SameMeta reports how activation file pb disagrees with pa (nil when
// they come from the same model, site, layer and width).
func SameMeta(a, b acts.Meta, pa, pb string) error {
	diff := func(what string, x, y any) error {
		return fmt.Errorf("activation files disagree (different models or points): %s has %s %v, %s has %v", pb, what, y, pa, x)
	}
	switch {
	case a.ModelArch != b.ModelArch:
		return diff("model architecture", a.ModelArch, b.ModelArch)
	case a.ModelName != b.ModelName:
		return diff("model name", a.ModelName, b.ModelName)
	case a.NEmbd != b.NEmbd:
		return diff("n_embd", a.NEmbd, b.NEmbd)
	case a.Layer != b.Layer:
		return diff("layer", a.Layer, b.Layer)
	case a.Site != b.Site:
		return diff("site", a.Site, b.Site)
	case a.Extra["model_sha256"] != b.Extra["model_sha256"]:
		return diff("model_sha256", a.Extra["model_sha256"], b.Extra["model_sha256"])
	}
	return nil
}

// FileSHA256 hashes a regular file (never a FIFO or a device).
func FileSHA256(path string) (string, error) {
	f, _, err := safefile.Open(path, safefile.Unlimited)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
