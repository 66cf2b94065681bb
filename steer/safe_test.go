package steer

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matsteer/matsteer/gguf"
	"github.com/matsteer/matsteer/internal/safefile"
)

// Issue 11: a steering file whose vectors overflow float32 when applied
// loaded and produced garbage. Each value is a finite float32, but two
// attributes at 3e38 sum to +Inf, and one at 1e36 overflows at strength 1000.
func TestDecodeRefusesOverflowingVectors(t *testing.T) {
	for _, c := range []struct {
		name string
		v0   float32
		v1   float32
	}{
		{"sum of two", 3e38, 3e38},
		{"one at high strength", 1e36, 0},
		{"negative sum", -2e32, -2e32},
	} {
		err := mutate(t, func(g *gguf.File) {
			for i, n := range []string{thetaName(14, 0), thetaName(14, 1)} {
				vals := make([]float32, 8)
				vals[5] = []float32{c.v0, c.v1}[i]
				*g.Tensor(n) = gguf.NewF32Tensor(n, vals)
			}
		})
		if err == nil || !strings.Contains(err.Error(), "overflow float32") || !strings.Contains(err.Error(), "index 5") {
			t.Errorf("%s: want an overflow error naming index 5, got %v", c.name, err)
		}
	}
	// The largest accepted vectors stay finite at the largest strengths.
	f := testFile(8)
	f.Attributes[0].Theta[5] = MaxThetaSum / 2
	f.Attributes[1].Theta[5] = -MaxThetaSum / 2 * 0.999
	data, err := f.Encode()
	if err != nil {
		t.Fatalf("writer refused vectors within the limit: %v", err)
	}
	g, err := Decode(data)
	if err != nil {
		t.Fatalf("reader refused vectors within the limit: %v", err)
	}
	// Ungated so every row is steered fully.
	g.Method = MethodAllTokens
	for i := range g.Attributes {
		g.Attributes[i].Gated, g.Attributes[i].GateW, g.Attributes[i].GateB = false, nil, 0
	}
	g.NormPreserve = false
	ap, err := NewApplier(g, ApplyOptions{Global: MaxStrength, Strengths: map[string]float64{"truth": MaxStrength}})
	if err != nil {
		t.Fatal(err)
	}
	row := make([]float32, 8)
	ap.Apply(row, nil, nil)
	for j, v := range row {
		if math.IsInf(float64(v), 0) || math.IsNaN(float64(v)) {
			t.Fatalf("row[%d] = %v at the largest strengths", j, v)
		}
	}
	// The writer applies the same check.
	f = testFile(8)
	f.Attributes[0].Theta[5], f.Attributes[1].Theta[5] = 3e38, 3e38
	if _, err := f.Encode(); err == nil || !strings.Contains(err.Error(), "overflow float32") {
		t.Fatalf("writer: %v", err)
	}
}

func TestDecodeRefusesNaNAndInfEverywhere(t *testing.T) {
	for _, name := range []string{thetaName(14, 0), gateWName(14, 1), gateBName(14, 0)} {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			err := mutate(t, func(g *gguf.File) {
				tt := g.Tensor(name)
				vals, _ := tt.Float32s()
				vals[len(vals)-1] = bad
				*tt = gguf.NewF32Tensor(name, vals)
			})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s = %v: %v", name, bad, err)
			}
		}
	}
}

// Issue 11: /dev/zero as a steering file was read until the OOM killer
// stopped the server; a FIFO blocked it forever.
func TestReadFileRefusesNonRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dev/zero", "/dev/urandom", fifo, t.TempDir()} {
		done := make(chan error, 1)
		go func() { _, err := ReadFile(p); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, safefile.ErrNotRegular) || !strings.HasPrefix(err.Error(), "steering file: ") {
				t.Errorf("%s: %v", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: ReadFile blocked", p)
		}
	}
	big := filepath.Join(t.TempDir(), "big.gguf")
	fh, _ := os.Create(big)
	fh.Truncate(MaxFileBytes + 1)
	fh.Close()
	if _, err := ReadFile(big); !errors.Is(err, safefile.ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}

// Issue 11: errors never echo the file's bytes.
func TestReadFileDoesNotEchoContents(t *testing.T) {
	p := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(p, []byte("root:$6$SECRET:19000:0:99999:7:::\n"), 0o600)
	_, err := ReadFile(p)
	if err == nil || strings.Contains(err.Error(), "root") || !strings.Contains(err.Error(), "not a GGUF file") {
		t.Fatalf("got %v", err)
	}
	// Long strings from a GGUF file are cut short.
	long := strings.Repeat("A", 5000)
	for _, edit := range []func(g *gguf.File){
		func(g *gguf.File) { g.Set("general.architecture", long) },
		func(g *gguf.File) { g.Set(keyMethod, long) },
		func(g *gguf.File) { g.Set(keySite, long) },
		func(g *gguf.File) { g.Set(keyTrainPrefix+long, "x") },
		func(g *gguf.File) { g.Set(keyTrainPrefix+"x"+long, uint8(1)) },
		func(g *gguf.File) { g.Set(keyModelArch, "\xff"+long) },
		func(g *gguf.File) { g.Set(keyAttributes, []string{"a\x00" + long, "b"}) },
	} {
		err := mutate(t, edit)
		if err == nil || len(err.Error()) > 300 {
			t.Errorf("error too long or missing: %.400v", err)
		}
	}
	f := testFile(8)
	f.ModelArch = long
	if err := f.CheckModel("llama", 8, 30); err == nil || len(err.Error()) > 300 {
		t.Errorf("CheckModel: %.400v", err)
	}
}
