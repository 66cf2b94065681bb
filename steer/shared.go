package steer

import (
	"fmt"
	"hash/maphash"
	"math"
)

// Shared-row handling (TrainConfig.Shared). With every token of prompt +
// response as training rows, a positive and its paired negatives share
// their prompt: those rows are bit-identical on both sides (a causal model
// computes a prefix's activations without seeing what follows), carry no
// label, and teach a gate nothing but to open on prompts (or, through the
// gate penalties, to stay shut on the attribute's behaviour where it
// starts). The options take them out.
const (
	// SharedKeep trains on every row as given (the paper).
	SharedKeep = "keep"
	// SharedDrop removes from an attribute's positives and negatives every
	// row that occurs bit-identically on both sides.
	SharedDrop = "drop"
	// SharedNeutral removes them as SharedDrop does and adds one copy of
	// each distinct such row to the neutral rows (TrainConfig.Neutral), so
	// that the gates learn to stay shut on them (needs LambdaNeutral > 0).
	SharedNeutral = "neutral"
)

func validShared(s string) error {
	switch s {
	case "", SharedKeep, SharedDrop, SharedNeutral:
		return nil
	}
	return fmt.Errorf("unknown shared-row handling %q (want %s, %s or %s)", s, SharedKeep, SharedDrop, SharedNeutral)
}

// splitShared returns data without the rows each attribute has on both
// sides, the distinct removed rows (over all attributes, in data order) and
// the number of positive and negative rows removed per attribute. The
// input is not modified; rows are shared, not copied.
func splitShared(data []AttributeData) (out []AttributeData, shared [][]float64, nPos, nNeg []int, err error) {
	seed := maphash.MakeSeed()
	hash := func(r []float64) uint64 {
		var h maphash.Hash
		h.SetSeed(seed)
		var b [8]byte
		for _, v := range r {
			u := math.Float64bits(v)
			for k := range b {
				b[k] = byte(u >> (8 * k))
			}
			h.Write(b[:])
		}
		return h.Sum64()
	}
	same := func(a, b []float64) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
				return false
			}
		}
		return true
	}
	seen := map[uint64][][]float64{} // distinct shared rows so far
	for _, a := range data {
		negs := make(map[uint64][]int, len(a.Neg))
		for j, r := range a.Neg {
			h := hash(r)
			negs[h] = append(negs[h], j)
		}
		posShared := make([]bool, len(a.Pos))
		negShared := make([]bool, len(a.Neg))
		for i, r := range a.Pos {
			h := hash(r)
			for _, j := range negs[h] {
				if same(r, a.Neg[j]) {
					posShared[i] = true
					negShared[j] = true
				}
			}
			if !posShared[i] {
				continue
			}
			dup := false
			for _, s := range seen[h] {
				if same(r, s) {
					dup = true
					break
				}
			}
			if !dup {
				seen[h] = append(seen[h], r)
				shared = append(shared, r)
			}
		}
		b := AttributeData{Name: a.Name}
		for i, r := range a.Pos {
			if !posShared[i] {
				b.Pos = append(b.Pos, r)
			}
		}
		for j, r := range a.Neg {
			if !negShared[j] {
				b.Neg = append(b.Neg, r)
			}
		}
		if len(b.Pos) == 0 || len(b.Neg) == 0 {
			return nil, nil, nil, nil, fmt.Errorf("attribute %q: every positive or every negative row also occurs on the other side (%d positive and %d negative rows left): nothing to train on", a.Name, len(b.Pos), len(b.Neg))
		}
		out = append(out, b)
		nPos = append(nPos, len(a.Pos)-len(b.Pos))
		nNeg = append(nNeg, len(a.Neg)-len(b.Neg))
	}
	return out, shared, nPos, nNeg, nil
}
