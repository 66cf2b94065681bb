package steer

import (
	"context"
	"math"
	"strings"
	"testing"
)

// TestGateShift: the shift lowers every gate bias by exactly its value
// and nothing else (the same training otherwise), is recorded, is reported
// in the training log's gate statistics, sharpens the gates (the ratio of
// the mean gate on negatives to that on positives grows), works on a warm
// start with zero epochs, and bad values are refused before training.
func TestGateShift(t *testing.T) {
	data, _ := synthData(3)
	cfg := warmTestConfig()
	cfg.Epochs = 3
	plain, plainLog, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.GateShift = 2
	shifted, shiftedLog, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range shifted.Attributes {
		p := plain.Attributes[i]
		if a.GateB != p.GateB-2 {
			t.Errorf("%s: gate bias %v, want %v - 2", a.Name, a.GateB, p.GateB)
		}
		if !equalFloats(a.GateW, p.GateW) || !equalFloats(a.Theta, p.Theta) {
			t.Errorf("%s: the shift changed more than the bias", a.Name)
		}
	}
	if shifted.Training["gate_shift"] != "2" || plain.Training["gate_shift"] != "" {
		t.Errorf("recorded gate shifts %q and %q", shifted.Training["gate_shift"], plain.Training["gate_shift"])
	}
	for i, e := range shiftedLog.Eval {
		p := plainLog.Eval[i]
		if !(e.GateNeg < p.GateNeg && e.GatePos < p.GatePos) {
			t.Errorf("%s: logged gates %v/%v, unshifted %v/%v: want both lower", e.Name, e.GateNeg, e.GatePos, p.GateNeg, p.GatePos)
		}
		if !(e.GateNeg/e.GatePos > p.GateNeg/p.GatePos) {
			t.Errorf("%s: negative/positive gate ratio %.3g, unshifted %.3g: want sharper", e.Name, e.GateNeg/e.GatePos, p.GateNeg/p.GatePos)
		}
	}
	// A warm start with zero epochs shifts an existing file.
	warm := warmTestConfig()
	warm.Epochs, warm.Init, warm.GateShift = 0, roundTrip(t, plain), 1.5
	again, _, err := Train(context.Background(), data, warm)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range again.Attributes {
		if want := warm.Init.Attributes[i].GateB - 1.5; math.Abs(a.GateB-want) > 1e-12 {
			t.Errorf("warm start: %s gate bias %v, want %v", a.Name, a.GateB, want)
		}
	}
	for _, bad := range []struct {
		shift  float64
		method string
		want   string
	}{
		{-1, MethodMATSteer, "out of range"},
		{math.NaN(), MethodMATSteer, "out of range"},
		{MaxGateShift + 1, MethodMATSteer, "out of range"},
		{1, MethodAllTokens, "needs method mat-steer"},
		{1, MethodMeanDiff, "needs method mat-steer"},
	} {
		c := warmTestConfig()
		c.GateShift, c.Method = bad.shift, bad.method
		if _, _, err := Train(context.Background(), data, c); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("gate shift %v, method %s: %v, want %q", bad.shift, bad.method, err, bad.want)
		}
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGateShiftKeptAttributes: a warm start that shifts the gates lowers
// every gate of the file, also those of attributes it has no rows for
// (kept unchanged otherwise), and with no rows at all it sharpens the
// whole file (zero epochs only).
func TestGateShiftKeptAttributes(t *testing.T) {
	data, _ := synthData(3)
	cfg := warmTestConfig()
	cfg.Epochs = 3
	plain, _, err := Train(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	init := roundTrip(t, plain) // the file as read back (float32 values)
	check := func(what string, got *File) {
		t.Helper()
		if len(got.Attributes) != len(plain.Attributes) {
			t.Fatalf("%s: %d attributes, want %d", what, len(got.Attributes), len(plain.Attributes))
		}
		for i, a := range got.Attributes {
			p := init.Attributes[i]
			if a.Name != p.Name || math.Abs(a.GateB-(p.GateB-1.5)) > 1e-12 || !equalFloats(a.GateW, p.GateW) || !equalFloats(a.Theta, p.Theta) {
				t.Errorf("%s: %s gate bias %v, want %v - 1.5 and nothing else changed", what, a.Name, a.GateB, p.GateB)
			}
		}
		if got.Training["gate_shift"] != "1.5" {
			t.Errorf("%s: recorded gate shift %q", what, got.Training["gate_shift"])
		}
	}
	warm := warmTestConfig()
	warm.Epochs, warm.Init, warm.GateShift = 0, init, 1.5
	one, log, err := Train(context.Background(), data[:1], warm)
	if err != nil {
		t.Fatal(err)
	}
	check("rows of one attribute", one)
	if len(log.Refined) != 1 || len(log.Kept) != len(data)-1 {
		t.Errorf("refined %v, kept %v", log.Refined, log.Kept)
	}
	none, log, err := Train(context.Background(), nil, warm)
	if err != nil {
		t.Fatal(err)
	}
	check("no rows", none)
	if len(log.Kept) != len(data) || none.Site != plain.Site || none.Layer != plain.Layer || none.NEmbd != plain.NEmbd || none.Training["init.kept"] == "" {
		t.Errorf("no rows: kept %v, site %s layer %d n_embd %d, training %v", log.Kept, none.Site, none.Layer, none.NEmbd, none.Training)
	}
	warm.Epochs = 2
	if _, _, err := Train(context.Background(), nil, warm); err == nil || !strings.Contains(err.Error(), "zero epochs") {
		t.Errorf("no rows and 2 epochs: %v", err)
	}
}
