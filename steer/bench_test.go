package steer

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// benchData is the DESIGN.md setting: T = 3, d = 576, 5,000 + 5,000 rows per
// attribute, positives N(μ_t, I), negatives shifted by 2 on 10% of the
// dimensions.
func benchData(d, n int) []AttributeData {
	rng := rand.New(rand.NewPCG(42, 42))
	var data []AttributeData
	for t := 0; t < 3; t++ {
		mu := make([]float64, d)
		for j := range mu {
			mu[j] = rng.NormFloat64()
		}
		dims := rng.Perm(d)[:d/10]
		a, _ := synthAttr(rng, []string{"truthfulqa", "toxigen", "bbq"}[t], d, n, n, mu, dims, 2, 1)
		data = append(data, a)
	}
	return data
}

func benchTrain(b *testing.B, epochs int, sigma Sigma) {
	data := benchData(576, 5000)
	cfg := ReferenceTrainConfig()
	cfg.Epochs = epochs
	cfg.Sigma = sigma
	b.ResetTimer()
	var log *TrainLog
	start := time.Now()
	for i := 0; i < b.N; i++ {
		var err error
		if _, log, err = Train(context.Background(), data, cfg); err != nil {
			b.Fatal(err)
		}
	}
	secs := time.Since(start).Seconds() / float64(b.N)
	steps := float64(log.StepsPerEpoch * log.EpochsRun)
	b.ReportMetric(secs, "s/train")
	b.ReportMetric(steps/secs, "steps/s")
	b.ReportMetric(log.Final.MMD, "final-mmd")
	b.ReportMetric(log.Final.Total, "final-loss")
}

// BenchmarkTrain576 is the official schedule: 100 epochs of 313 steps.
func BenchmarkTrain576(b *testing.B) { benchTrain(b, 100, FixedSigma(DefaultSigma)) }

// BenchmarkTrain576Median is one epoch with the median bandwidth (same cost
// per step; the kernel does not underflow).
func BenchmarkTrain576MedianEpoch(b *testing.B) { benchTrain(b, 1, MedianSigma()) }

func benchApply(b *testing.B, d int) {
	rng := rand.New(rand.NewPCG(1, 2))
	f := &File{Version: FileVersion, Site: "l_out", Layer: 1, NEmbd: d, Method: MethodMATSteer, NormPreserve: true}
	for t := 0; t < 3; t++ {
		a := Attribute{Name: []string{"a", "b", "c"}[t], Gated: true, GateB: 0.1}
		for j := 0; j < d; j++ {
			a.Theta = append(a.Theta, rng.NormFloat64())
			a.GateW = append(a.GateW, rng.NormFloat64()/float64(d))
		}
		f.Attributes = append(f.Attributes, a)
	}
	ap, err := NewApplier(f, DefaultApplyOptions())
	if err != nil {
		b.Fatal(err)
	}
	const rows = 64
	src := randF32Rows(rng, rows, d)
	buf := make([]float32, len(src))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(buf, src)
		ap.Apply(buf, nil, nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/token")
}

func BenchmarkApply576(b *testing.B)  { benchApply(b, 576) }
func BenchmarkApply4096(b *testing.B) { benchApply(b, 4096) }
