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
	ret := &eval.Report{Retention: &eval.RetentionReport{Results: []eval.RetentionResult{{Name: "mat-steer|mat-steer-b-L14", KL: 0.0987, KLP99: 0.56, KLMax: 11.13, PPL: 45.04}}},
		ChatRetention: &eval.RetentionReport{Results: []eval.RetentionResult{{Name: "mat-steer|mat-steer-b-L14", KL: 0.3942, KLP99: 4.582}}},
		Generation:    &eval.GenerationReport{Results: []eval.GenerationResult{{Name: "mat-steer|mat-steer-b-L14", PPL: 3.456, Distinct2: 0.871}}}}
	var b strings.Builder
	writeHeadline(&b, test, ret)
	out := b.String()
	for _, want := range []string{
		"| mat-steer | mat-steer-b-L14, α=1.5 | 0.250 | 0.500 | 0.400 | - | - | 0.900 | 0.600 | 0.099 | 0.56 / 11.13 | 0.394, 4.58 | 45.0 | 3.46, 0.87 |",
		"| none | - | - | 0.400 | 0.300 | - | - | 0.500 | 0.400 | - | - | - | - | - |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("headline table lacks\n%s\ngot\n%s", want, out)
		}
	}
}

// withStats adds intervals and a comparison against "none" to every
// steered condition of the reports.
func withStats(test map[string]*eval.Report, p float64) {
	for _, rep := range test {
		for i := range rep.Methods {
			m := &rep.Methods[i]
			m.Intervals = map[string]eval.Interval{}
			for k, v := range m.Metrics {
				m.Intervals[k] = eval.Interval{Lo: v - 0.05, Hi: v + 0.05}
			}
			if i > 0 {
				d := map[string]eval.Difference{}
				for k, v := range m.Metrics {
					base := rep.Methods[0].Metrics[k]
					d[k] = eval.Difference{Diff: v - base, CI: eval.Interval{Lo: v - base - 0.02, Hi: v - base + 0.02}, P: p}
				}
				m.Comparisons = []eval.Comparison{{Against: rep.Methods[0].Name, Metrics: d}}
			}
		}
	}
}

func TestHeadlineTableWithStats(t *testing.T) {
	test := devReports(map[string][3]float64{"none": {0.4, 0.3, 0.5}, "mat-steer|mat-steer-b-L14": {0.5, 0.4, 0.9}})
	// devReports sorts names: "mat-steer|..." comes before "none"; put none first, as eval does.
	for _, rep := range test {
		rep.Methods[0], rep.Methods[1] = rep.Methods[1], rep.Methods[0]
	}
	withStats(test, 0.004)
	var b strings.Builder
	writeHeadline(&b, test, nil)
	out := b.String()
	for _, want := range []string{
		"| mat-steer | mat-steer-b-L14, α=1.5 | - | 0.500 [0.450, 0.550] * | 0.400 [0.350, 0.450] * |",
		"| none | - | - | 0.400 [0.350, 0.450] | 0.300 [0.250, 0.350] |",
		"95% bootstrap interval",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("headline table lacks\n%s\ngot\n%s", want, out)
		}
	}
	b.Reset()
	writePairedTests(&b, test)
	out = b.String()
	if want := "| mat-steer − none | **+0.100 [+0.080, +0.120], p=0.004** | **+0.100 [+0.080, +0.120], p=0.004** | **+0.400 [+0.380, +0.420], p=0.004** |"; !strings.Contains(out, want) {
		t.Errorf("paired tests lack\n%s\ngot\n%s", want, out)
	}
	// Not significant: no marker, no bold.
	withStats(test, 0.3)
	b.Reset()
	writeHeadline(&b, test, nil)
	if strings.Contains(b.String(), " * |") {
		t.Errorf("marker for p = 0.3:\n%s", b.String())
	}
	b.Reset()
	writePairedTests(&b, test)
	if strings.Contains(b.String(), "**+") || !strings.Contains(b.String(), "p=0.3") {
		t.Errorf("paired tests for p = 0.3:\n%s", b.String())
	}
	// Reports without statistics: no paired-test table at all.
	plain := devReports(map[string][3]float64{"none": {0.4, 0.3, 0.5}, "pca|pca-L10": {0.5, 0.4, 0.9}})
	b.Reset()
	writePairedTests(&b, plain)
	if b.Len() != 0 {
		t.Errorf("paired tests without statistics:\n%s", b.String())
	}
}

func TestSelectiveIsItsOwnFamily(t *testing.T) {
	dev := devReports(map[string][3]float64{
		"none":                              {0.4, 0.3, 0.5},
		"mat-steer|mat-steer-paper-L14":     {0.5, 0.4, 0.6},
		"mat-steer|mat-steer-selective-L10": {0.6, 0.6, 0.6}, // better, but not a paper setting
	})
	best, _ := choose(dev)
	if best["mat-steer"].file != "/w/mat-steer-paper-L14.gguf" || best[selectiveFamily].file != "/w/mat-steer-selective-L10.gguf" || len(best) != 2 {
		t.Fatalf("best %+v: want the paper file for mat-steer and the selective file for %s", best, selectiveFamily)
	}
	frac := &eval.SteeringInfo{Method: "mat-steer", Path: "/w/frac0.25-mat-steer-selective-L10.gguf"}
	if got := familyOf(frac); got != selectiveFamily {
		t.Errorf("familyOf(%s) = %q", frac.Path, got)
	}
	if got := familyOf(&eval.SteeringInfo{Method: "all-tokens", Path: "/w/all-tokens-L10.gguf"}); got != "all-tokens" {
		t.Errorf("familyOf(all-tokens) = %q", got)
	}
}

func TestSelectiveTrainArgs(t *testing.T) {
	c := config{tokens: "response", extraTrainFlags: "--epochs 3", lambdas: map[string][3]string{"paper": {"0.9", "0.9", "0.1"}}}
	spec := fileSpec{method: "mat-steer", lambda: selectiveSetting, layer: 14, tokens: "all"}
	if got := spec.fileName(); got != "mat-steer-selective-L14.gguf" {
		t.Errorf("file name %q", got)
	}
	if c.tokensOf(spec) != "all" || c.tokensOf(fileSpec{method: "pca", layer: 14}) != "response" {
		t.Errorf("token modes %q, %q", c.tokensOf(spec), c.tokensOf(fileSpec{method: "pca"}))
	}
	if c.actsPrefix("all") != "acts-all" || c.actsPrefix("response") != "acts" {
		t.Errorf("activation prefixes %q, %q", c.actsPrefix("all"), c.actsPrefix("response"))
	}
	args := strings.Join(c.trainArgs(spec, "o.gguf", []string{"a.safetensors"}), " ")
	want := "train --method mat-steer --out o.gguf --quiet --lambda-pos 9 --lambda-sparse 0.9 --lambda-ortho 0.1 --shared neutral --shared-tol 0.05 --epochs 3 --acts a.safetensors"
	if args != want {
		t.Errorf("train args\n%s\nwant\n%s", args, want)
	}
}

func TestGateTable(t *testing.T) {
	test := devReports(map[string][3]float64{"none": {0.4, 0.3, 0.5}, "mat-steer|mat-steer-selective-L14": {0.5, 0.4, 0.9}})
	attrs := map[string]string{"truthfulqa": "truthfulness", "bbq": "bias", "toxigen": "toxicity"}
	for _, task := range []string{"truthfulqa", "toxigen"} { // bbq: no gates reported
		a := attrs[task]
		test[task].Gates = &eval.GateReport{Results: []eval.GateResult{{
			Name: "mat-steer|mat-steer-selective-L14", Threshold: 0.5,
			Steering: &eval.SteeringInfo{Method: "mat-steer", Path: "/w/mat-steer-selective-L14.gguf"},
			Stats: []eval.GateStat{
				{DataAttribute: a, Label: 0, Attribute: a, MeanGate: 0.6, AbovePerText: 3.9},
				{DataAttribute: a, Label: 1, Attribute: a, MeanGate: 0.08, AbovePerText: 0.6},
				{DataAttribute: a, Label: 0, Attribute: "other", MeanGate: 0.99}, // another attribute's gate: not shown
			},
		}}}
	}
	var b strings.Builder
	writeGateTable(&b, test)
	want := "| mat-steer-selective | truthfulness 0.600 / 0.080 (7.5×) | 3.9 / 0.6 | - | - | toxicity 0.600 / 0.080 (7.5×) | 3.9 / 0.6 |"
	if !strings.Contains(b.String(), want) {
		t.Errorf("gate table lacks\n%s\ngot\n%s", want, b.String())
	}
	if strings.Contains(b.String(), "0.99") {
		t.Errorf("gate table shows another attribute's gate:\n%s", b.String())
	}
	b.Reset()
	test["truthfulqa"].Gates, test["toxigen"].Gates = nil, nil
	writeGateTable(&b, test)
	if b.Len() != 0 {
		t.Errorf("no gates, yet a table:\n%s", b.String())
	}
}
