package main

import (
	"math"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/eval"
)

// result is a condition with the given primary metric, steering file
// path (of method) and α; an empty method means unsteered.
func result(name, method, path string, alpha float64, metrics map[string]float64) eval.MethodResult {
	r := eval.MethodResult{Name: name}
	r.Metrics = metrics
	if method != "" {
		r.Steering = &eval.SteeringInfo{Method: method, Path: path, Global: alpha, Layer: 14}
	}
	return r
}

func devReports(rows map[string][3]float64) map[string]*eval.Report {
	dev := map[string]*eval.Report{}
	for i, task := range tasks {
		rep := &eval.Report{Task: task}
		for _, name := range sortedKeys(rows) {
			v := rows[name]
			method, path, alpha := "", "", 0.0
			if name != "none" {
				method = strings.SplitN(name, "|", 2)[0]
				path = "/w/" + strings.SplitN(name, "|", 2)[1] + ".gguf"
				alpha = 1.5
			}
			rep.Methods = append(rep.Methods, result(name, method, path, alpha, map[string]float64{primary[task]: v[i]}))
		}
		dev[task] = rep
	}
	return dev
}

func TestChoosePerMethodOnDevAverage(t *testing.T) {
	dev := devReports(map[string][3]float64{
		"none":                      {0.4, 0.3, 0.5},
		"mat-steer|mat-steer-a-L10": {0.5, 0.4, 0.6},  // average 0.5
		"mat-steer|mat-steer-b-L14": {0.45, 0.6, 0.6}, // average 0.55: wins despite a lower MC2
		"pca|pca-L10":               {0.9, 0.0, 0.0},  // the only PCA condition
	})
	best, sweep := choose(dev)
	if len(best) != 2 || best["mat-steer"].file != "/w/mat-steer-b-L14.gguf" || best["mat-steer"].alpha != 1.5 || best["pca"].file != "/w/pca-L10.gguf" {
		t.Fatalf("best %+v", best)
	}
	if math.Abs(best["mat-steer"].dev-0.55) > 1e-12 {
		t.Errorf("dev average %v, want 0.55", best["mat-steer"].dev)
	}
	for i := 1; i < len(sweep); i++ {
		if sweep[i].avg > sweep[i-1].avg {
			t.Errorf("sweep not sorted by average: %+v", sweep)
		}
	}
	if sweep[0].name != "mat-steer|mat-steer-b-L14" || len(sweep) != 4 {
		t.Errorf("sweep %+v", sweep)
	}
}

func TestHeadlineTable(t *testing.T) {
	test := devReports(map[string][3]float64{"none": {0.4, 0.3, 0.5}, "mat-steer|mat-steer-b-L14": {0.5, 0.4, 0.9}})
	test["truthfulqa"].Methods[0].Metrics["mc1"] = 0.25 // mat-steer; none has no mc1: shown as "-"
	ret := &eval.Report{Retention: &eval.RetentionReport{Results: []eval.RetentionResult{{Name: "mat-steer|mat-steer-b-L14", KL: 0.0987, PPL: 45.04}}}}
	var b strings.Builder
	writeHeadline(&b, test, ret)
	out := b.String()
	for _, want := range []string{
		"| mat-steer | mat-steer-b-L14, α=1.5 | 0.250 | 0.500 | 0.400 | - | - | 0.900 | 0.600 | 0.099 | 45.0 |",
		"| none | - | - | 0.400 | 0.300 | - | - | 0.500 | 0.400 | - | - |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("headline table lacks\n%s\ngot\n%s", want, out)
		}
	}
}
