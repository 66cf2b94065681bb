package steer

import (
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"sort"

	"gonum.org/v1/gonum/floats"
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
//
// With tol > 0, rows within relative distance tol of each other
// (‖a − b‖ ≤ tol·max(‖a‖, ‖b‖)) count as shared too (nearShared).
func splitShared(data []AttributeData, tol float64) (out []AttributeData, shared [][]float64, nPos, nNeg []int, err error) {
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
		}
		if tol > 0 {
			nearShared(a.Pos, a.Neg, posShared, negShared, tol)
		}
		for i, r := range a.Pos {
			if !posShared[i] {
				continue
			}
			h := hash(r)
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

// Near-duplicate rows. The same prompt token computed in two different
// batches of an extraction (texts are packed several to a batch) is not
// always bit-identical: the attention sums run over another layout of
// the cache, and a rounding flip in the quantized matrix products grows
// through the layers. On SmolLM2 at layer 14 about a fifth of the shared
// prompt rows of BBQ differ so, by 0.1-4% of their norm, while rows of
// different tokens differ by ~90%. TrainConfig.SharedTolerance matches
// them.

// nearProbeDims is the number of random projections hashed; a row is
// looked up in the 2^nearProbeDims buckets of its own and nearer
// neighbouring cells.
const nearProbeDims = 10

// nearShared marks, in addition to what is marked, every positive and
// negative row that has a row on the other side within relative distance
// tol. Rows are hashed on a grid of random projections with cell width
// 2·tol·(median row norm), so a pair whose projections differ by less
// than half a cell in every direction (a near-duplicate at about the
// median norm, whose differences spread over all dimensions) is always
// found; every candidate is checked on the full row.
func nearShared(pos, neg [][]float64, posShared, negShared []bool, tol float64) {
	if len(pos) == 0 || len(neg) == 0 {
		return
	}
	d := len(pos[0])
	rng := rand.New(rand.NewPCG(0x6e656172, 0x6475702b))
	dirs := make([][]float64, nearProbeDims)
	for k := range dirs {
		v := make([]float64, d)
		n := 0.0
		for j := range v {
			v[j] = rng.NormFloat64()
			n += v[j] * v[j]
		}
		for j := range v {
			v[j] /= math.Sqrt(n)
		}
		dirs[k] = v
	}
	norms := make([]float64, 0, len(pos)+len(neg))
	for _, r := range pos {
		norms = append(norms, floats.Norm(r, 2))
	}
	for _, r := range neg {
		norms = append(norms, floats.Norm(r, 2))
	}
	med := append([]float64(nil), norms...)
	sort.Float64s(med)
	width := 2 * tol * med[len(med)/2]
	if !(width > 0) {
		return
	}
	type cell [nearProbeDims]int64
	coords := func(r []float64) (c cell, frac [nearProbeDims]float64) {
		for k, v := range dirs {
			x := floats.Dot(v, r) / width
			f := math.Floor(x)
			c[k], frac[k] = int64(f), x-f
		}
		return c, frac
	}
	buckets := map[cell][]int{}
	for j, r := range neg {
		c, _ := coords(r)
		buckets[c] = append(buckets[c], j)
	}
	for i, r := range pos {
		c, frac := coords(r)
		ni := norms[i]
		for m := 0; m < 1<<nearProbeDims; m++ {
			p := c
			for k := 0; k < nearProbeDims; k++ {
				if m>>k&1 == 1 {
					if frac[k] < 0.5 {
						p[k]--
					} else {
						p[k]++
					}
				}
			}
			for _, j := range buckets[p] {
				lim := tol * max(ni, norms[len(pos)+j])
				if distWithin(r, neg[j], lim) {
					posShared[i] = true
					negShared[j] = true
				}
			}
		}
	}
}

// distWithin reports whether ‖a − b‖ ≤ lim, stopping early.
func distWithin(a, b []float64, lim float64) bool {
	l2, s := lim*lim, 0.0
	for k := range a {
		e := a[k] - b[k]
		s += e * e
		if s > l2 {
			return false
		}
	}
	return true
}
