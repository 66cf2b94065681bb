package steer

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// withShared adds to every attribute of synthData the same "prompt" rows
// on both sides (50 per attribute, +3 on dimension 6, plus one row
// repeated 5 times on each side as a first-token row would be).
func withShared(seed uint64) ([]AttributeData, [][]bool, [][]float64) {
	data, shifted := synthData(seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	sink := make([]float64, 8)
	for j := range sink {
		sink[j] = 40
	}
	var prompts [][]float64
	for t := range data {
		var rows [][]float64
		for i := 0; i < 50; i++ {
			r := make([]float64, 8)
			for j := range r {
				r[j] = 3 + rng.NormFloat64()
			}
			r[6] += 3
			rows = append(rows, r)
		}
		prompts = append(prompts, rows...)
		a := &data[t]
		a.Pos = append(slices.Clone(a.Pos), rows...)
		a.Neg = append(slices.Clone(a.Neg), rows...)
		for k := 0; k < 5; k++ {
			a.Pos = append(a.Pos, slices.Clone(sink))
			a.Neg = append(a.Neg, slices.Clone(sink))
		}
		shifted[t] = append(shifted[t], make([]bool, 55)...)
	}
	return data, shifted, prompts
}

func TestSplitShared(t *testing.T) {
	data, _, prompts := withShared(31)
	orig, _ := synthData(31)
	out, shared, nPos, nNeg, err := splitShared(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	for ti := range out {
		if nPos[ti] != 55 || nNeg[ti] != 55 {
			t.Errorf("%s: removed %d positive and %d negative rows, want 55 and 55", out[ti].Name, nPos[ti], nNeg[ti])
		}
		if !slices.EqualFunc(out[ti].Pos, orig[ti].Pos, slices.Equal) || !slices.EqualFunc(out[ti].Neg, orig[ti].Neg, slices.Equal) {
			t.Errorf("%s: the remaining rows are not the original ones", out[ti].Name)
		}
	}
	// 100 distinct prompt rows and the repeated row once.
	if len(shared) != 101 || !slices.Equal(shared[0], prompts[0]) || shared[50][0] != 40 || !slices.Equal(shared[51], prompts[50]) {
		t.Errorf("%d distinct shared rows, want 101 in data order", len(shared))
	}
	// A row equal only up to its sign bit of zero is not shared (bits, not values).
	a := AttributeData{Name: "z", Pos: [][]float64{{0, 1}, {2, 2}}, Neg: [][]float64{{negZero(), 1}, {3, 3}}}
	if _, sh, np, _, err := splitShared([]AttributeData{a}, 0); err != nil || len(sh) != 0 || np[0] != 0 {
		t.Errorf("-0 vs 0: %v shared, %v", sh, err)
	}
	all := AttributeData{Name: "same", Pos: [][]float64{{1, 2}}, Neg: [][]float64{{1, 2}, {1, 2}}}
	if _, _, _, _, err := splitShared([]AttributeData{all}, 0); err == nil || !strings.Contains(err.Error(), "nothing to train on") {
		t.Errorf("all rows shared: %v", err)
	}
}

func negZero() float64 { z := 0.0; return -z }

// TestTrainShared: with the shared rows as neutral rows the gates stay shut
// on them and still pick out the shifted negatives; the result does not
// depend on the hashing; keep is the default and changes nothing.
func TestTrainShared(t *testing.T) {
	data, shifted, prompts := withShared(33)
	train := func(shared string, lambda float64) (*File, *TrainLog) {
		cfg := DefaultTrainConfig()
		cfg.Epochs = 30
		cfg.LR = 1e-2
		cfg.LambdaPos, cfg.LambdaSparse = 0.05, 0.05
		cfg.Site = "l_out"
		cfg.Shared = shared
		cfg.LambdaNeutral = lambda
		f, log, err := Train(context.Background(), data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return f, log
	}
	keep, _ := train("", 0)
	keep2, _ := train(SharedKeep, 0)
	b1, _ := keep.Encode()
	b2, _ := keep2.Encode()
	if !bytes.Equal(b1, b2) {
		t.Error(`Shared "" and keep differ`)
	}
	neu, log := train(SharedNeutral, 0.9)
	again, _ := train(SharedNeutral, 0.9)
	b1, _ = neu.Encode()
	b2, _ = again.Encode()
	if !bytes.Equal(b1, b2) {
		t.Error("the same run gave different files")
	}
	if log.NNeutral != 101 || !slices.Equal(log.SharedPos, []int{55, 55}) || log.NPos[0] != 400 || neu.Training["shared"] != SharedNeutral || neu.Training["shared_neg"] != "55,55" {
		t.Errorf("log: neutral %d, shared %v/%v, n_pos %v; training %v", log.NNeutral, log.SharedPos, log.SharedNeg, log.NPos, neu.Training)
	}
	for ti, a := range data {
		gk, gn := meanGate(keep, ti, prompts, nil), meanGate(neu, ti, prompts, nil)
		hn := meanGate(neu, ti, a.Neg, func(i int) bool { return shifted[ti][i] })
		pn := meanGate(neu, ti, a.Pos[:400], nil)
		t.Logf("%s: gate on shared rows keep %.3f, neutral %.3f; shifted negatives %.3f, positives %.3f", a.Name, gk, gn, hn, pn)
		if !(gn < 0.1 && gn < gk) {
			t.Errorf("%s: gate on the shared rows %.3f (keep: %.3f)", a.Name, gn, gk)
		}
		if !(hn > 0.5 && hn > 2*pn) {
			t.Errorf("%s: no separation: shifted negatives %.3f, positives %.3f", a.Name, hn, pn)
		}
	}
	// Drop: the same rows out, no neutral term.
	_, dlog := train(SharedDrop, 0)
	if dlog.NNeutral != 0 || !slices.Equal(dlog.SharedNeg, []int{55, 55}) {
		t.Errorf("drop: %+v", dlog)
	}

	for _, c := range []struct {
		edit func(c *TrainConfig)
		want string
	}{
		{func(c *TrainConfig) { c.Shared = "merge" }, "unknown shared-row handling"},
		{func(c *TrainConfig) { c.Shared = SharedNeutral }, "need lambda-neutral > 0"},
		{func(c *TrainConfig) { c.Shared = SharedDrop; c.Method = MethodPCA }, "needs method mat-steer or all-tokens, not pca"},
	} {
		cfg := DefaultTrainConfig()
		cfg.Epochs = 1
		c.edit(&cfg)
		if _, _, err := Train(context.Background(), data, cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error containing %q, got %v", c.want, err)
		}
	}
	// No shared rows: a warning, and the neutral term is off.
	plain, _ := synthData(35)
	cfg := DefaultTrainConfig()
	cfg.Epochs = 1
	cfg.Shared, cfg.LambdaNeutral = SharedNeutral, 0.9
	if _, l, err := Train(context.Background(), plain, cfg); err != nil || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "no neutral rows") {
		t.Errorf("no shared rows: %v %v", err, l)
	}
}

// Near-duplicates: prompt rows perturbed by ~1% of their norm on one side
// are shared with a tolerance of 5% and not without one; distinct rows
// stay.
func TestSplitSharedTolerance(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const d = 64
	row := func() []float64 {
		r := make([]float64, d)
		for j := range r {
			r[j] = 10 * rng.NormFloat64()
		}
		return r
	}
	a := AttributeData{Name: "near"}
	var prompts [][]float64
	for i := 0; i < 200; i++ {
		p := row()
		prompts = append(prompts, p)
		q := slices.Clone(p)
		n := 0.0
		for _, v := range p {
			n += v * v
		}
		for j := range q {
			q[j] += 0.01 * math.Sqrt(n/d) * rng.NormFloat64() // ~1% of the norm
		}
		a.Pos = append(a.Pos, p)
		a.Neg = append(a.Neg, q)
	}
	for i := 0; i < 100; i++ { // the attribute's own rows
		a.Pos = append(a.Pos, row())
		a.Neg = append(a.Neg, row())
	}
	_, _, np0, nn0, err := splitShared([]AttributeData{a}, 0)
	if err != nil || np0[0] != 0 || nn0[0] != 0 {
		t.Fatalf("tolerance 0: %v+%v shared, %v", np0, nn0, err)
	}
	out, shared, np, nn, err := splitShared([]AttributeData{a}, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if np[0] != 200 || nn[0] != 200 || len(out[0].Pos) != 100 || len(out[0].Neg) != 100 {
		t.Fatalf("tolerance 0.05: %d+%d rows shared, %d+%d left; want 200+200 and 100+100", np[0], nn[0], len(out[0].Pos), len(out[0].Neg))
	}
	if len(shared) != 200 || !slices.Equal(shared[0], prompts[0]) {
		t.Fatalf("%d shared rows, want the 200 positive copies", len(shared))
	}
	cfg := DefaultTrainConfig()
	cfg.SharedTolerance = 0.05
	if _, _, err := Train(context.Background(), []AttributeData{a}, cfg); err == nil || !strings.Contains(err.Error(), "tolerance needs") {
		t.Errorf("tolerance without --shared: %v", err)
	}
	cfg.Shared, cfg.SharedTolerance = SharedDrop, 1
	if _, _, err := Train(context.Background(), []AttributeData{a}, cfg); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("tolerance 1: %v", err)
	}
}
