package steer

import (
	"context"
	"math"
	"strings"
	"testing"
)

// GateBiasInit sets the starting gate bias (a small learning rate keeps it
// near there after one epoch), is recorded in the file, and a bad value is
// refused before training.
func TestGateBiasInit(t *testing.T) {
	data, _ := synthData(1)
	for _, b0 := range []float64{-3, 2} {
		cfg := DefaultTrainConfig()
		cfg.Epochs, cfg.LR = 1, 1e-6
		cfg.GateBiasInit = &b0
		f, _, err := Train(context.Background(), data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range f.Attributes {
			if math.Abs(a.GateB-b0) > 1e-3 {
				t.Errorf("bias init %v: attribute %s has gate bias %v", b0, a.Name, a.GateB)
			}
		}
		if !strings.Contains(f.Training["init"], "gate_b="+fmtF(b0)) {
			t.Errorf("bias init %v not recorded: init %q", b0, f.Training["init"])
		}
	}
	def, _, err := Train(context.Background(), data, func() TrainConfig { c := DefaultTrainConfig(); c.Epochs, c.LR = 1, 1e-6; return c }())
	if err != nil {
		t.Fatal(err)
	}
	if b := def.Attributes[0].GateB; math.Abs(b) > 1 {
		t.Errorf("default init: gate bias %v, want |b| <= 1/sqrt(d)", b)
	}
	for _, bad := range []float64{math.NaN(), 101, math.Inf(-1)} {
		cfg := DefaultTrainConfig()
		cfg.GateBiasInit = &bad
		if _, _, err := Train(context.Background(), data, cfg); err == nil || !strings.Contains(err.Error(), "gate bias init") {
			t.Errorf("bias init %v: %v", bad, err)
		}
	}
}
