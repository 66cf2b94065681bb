package eval

import (
	"fmt"
	"math"
	"testing"

	"github.com/matsteer/matsteer/datasets"
)

func pairItem(id string, labels ...bool) datasets.Item {
	it := datasets.Item{Task: datasets.TaskPairs, ID: id, Prompt: "Q:", Meta: map[string]string{"attribute": "a"}}
	for i, c := range labels {
		it.Choices = append(it.Choices, datasets.Choice{Text: fmt.Sprintf(" r%d", i), Correct: c})
	}
	return it
}

func TestSummarizePairsByHand(t *testing.T) {
	items := []datasets.Item{pairItem("p1", true, false), pairItem("p2", false, true), pairItem("p3", true, true, false)}
	scores := []ItemScores{
		// p1: desired −1/2 per token, undesired −3/3 = −1: margin +0.5, right.
		{Choices: []ChoiceScore{{-1, 2}, {-3, 3}}},
		// p2: undesired −0.5, desired −2: margin −1.5, wrong.
		{Choices: []ChoiceScore{{-0.5, 1}, {-4, 2}}},
		// p3: best desired max(−2, −0.25) = −0.25, undesired −1: margin 0.75, right
		// (summed log-probs would rank the undesired one above −2 and −1).
		{Choices: []ChoiceScore{{-2, 1}, {-1, 4}, {-1, 1}}},
	}
	s, err := Summarize(datasets.TaskPairs, items, scores)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Metrics[MetricAcc], 2.0/3; !near(got, want, 1e-12) {
		t.Errorf("acc = %v, want %v", got, want)
	}
	if got, want := s.Metrics[MetricMargin], (0.5-1.5+0.75)/3; !near(got, want, 1e-12) {
		t.Errorf("margin = %v, want %v", got, want)
	}
	if s.Counts["n"] != 3 || s.Counts["n_margin"] != 3 {
		t.Errorf("counts %v", s.Counts)
	}
	o, _ := ItemOutcome(datasets.TaskPairs, items[2], scores[2])
	if o.Pred != 1 || !o.Correct || o.Margin == nil || !near(*o.Margin, 0.75, 1e-12) {
		t.Errorf("p3 outcome %+v", o)
	}
	if !math.IsNaN(PairMargin([]float64{1, 2}, []bool{true, true})) {
		t.Error("margin without an undesired choice: want NaN")
	}
}

// results builds two conditions' per-item results for Analyze.
func pairResults(items []datasets.Item, margins ...[]float64) []MethodResult {
	var out []MethodResult
	for j, ms := range margins {
		r := MethodResult{Name: fmt.Sprintf("c%d", j)}
		if j == 0 {
			r.Name = NoneName
		}
		for i, m := range ms {
			// desired mean m, undesired 0.
			r.Items = append(r.Items, ItemResult{ItemScores: ItemScores{ID: items[i].ID, Choices: []ChoiceScore{{m, 1}, {0, 1}}}})
		}
		out = append(out, r)
	}
	return out
}

func TestAnalyzePairs(t *testing.T) {
	n := 60
	var items []datasets.Item
	base, same, better := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := 0; i < n; i++ {
		items = append(items, pairItem(fmt.Sprint("p", i), true, false))
		base[i] = float64(i%5) - 2.5 // margins −2.5..1.5: 24 of 60 right
		same[i] = base[i]
		better[i] = base[i] + 3 // every item right
	}
	res := pairResults(items, base, same, better)
	if err := Analyze(datasets.TaskPairs, items, res, StatOptions{Resamples: 500}); err != nil {
		t.Fatal(err)
	}
	if len(res[0].Comparisons) != 0 || len(res[1].Comparisons) != 1 || len(res[2].Comparisons) != 2 {
		t.Fatalf("comparisons %d %d %d, want 0 1 2", len(res[0].Comparisons), len(res[1].Comparisons), len(res[2].Comparisons))
	}
	for _, r := range res {
		for _, m := range []string{MetricAcc, MetricMargin} {
			iv, ok := r.Interval(m)
			if !ok {
				t.Fatalf("%s: no %s interval", r.Name, m)
			}
			v := metricValues(datasets.TaskPairs, tallyRecords(mustRecords(t, items, r), identity(n)))
			k := map[string]int{MetricAcc: 0, MetricMargin: 1}[m]
			if !(iv.Lo <= v[k] && v[k] <= iv.Hi) {
				t.Errorf("%s %s: interval %+v misses %g", r.Name, m, iv, v[k])
			}
		}
	}
	// "better" is right on every item: its accuracy interval is [1, 1].
	if iv := res[2].Intervals[MetricAcc]; iv.Lo != 1 || iv.Hi != 1 {
		t.Errorf("constant accuracy: interval %+v", iv)
	}
	c := res[1].Comparisons[0]
	if c.Against != NoneName || c.Metrics[MetricAcc].P != 1 || c.Metrics[MetricMargin].Diff != 0 {
		t.Errorf("identical condition vs none: %+v", c)
	}
	c = res[2].Comparisons[0]
	if d := c.Metrics[MetricMargin]; !near(d.Diff, 3, 1e-12) || d.P > 0.01 || !near(d.CI.Lo, 3, 1e-9) {
		t.Errorf("shifted condition vs none: %+v", d)
	}
	if d := c.Metrics[MetricAcc]; !near(d.Diff, 1-24.0/60, 1e-12) || d.P > 0.01 || d.CI.Lo <= 0 {
		t.Errorf("accuracy gain vs none: %+v", d)
	}
	if res[2].Comparisons[1].Against != "c1" {
		t.Errorf("second comparison against %s, want c1", res[2].Comparisons[1].Against)
	}
	// Report.Comparison finds a pair in either direction.
	rep := &Report{Methods: res}
	fw, ok1 := rep.Comparison("c2", NoneName)
	bw, ok2 := rep.Comparison(NoneName, "c2")
	if !ok1 || !ok2 || fw[MetricMargin].Diff != -bw[MetricMargin].Diff || fw[MetricMargin].CI.Lo != -bw[MetricMargin].CI.Hi {
		t.Errorf("Comparison: %+v / %+v", fw, bw)
	}
	// Deterministic.
	again := pairResults(items, base, same, better)
	Analyze(datasets.TaskPairs, items, again, StatOptions{Resamples: 500})
	if again[2].Intervals[MetricMargin] != res[2].Intervals[MetricMargin] || again[2].Comparisons[1].Metrics[MetricAcc] != res[2].Comparisons[1].Metrics[MetricAcc] {
		t.Error("same seed, different statistics")
	}
	// Misaligned items are refused.
	bad := pairResults(items, base, same)
	bad[1].Items = bad[1].Items[1:]
	if err := Analyze(datasets.TaskPairs, items, bad, StatOptions{}); err == nil {
		t.Error("misaligned items accepted")
	}
}

func mustRecords(t *testing.T, items []datasets.Item, r MethodResult) []itemRecord {
	t.Helper()
	scores := make([]ItemScores, len(items))
	for i := range items {
		scores[i] = r.Items[i].ItemScores
	}
	rs, err := outcomeRecords(datasets.TaskPairs, items, scores)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestAnalyzeBBQUndefinedBias: a bias score undefined for a condition gets
// no interval and no comparison, the other metrics do.
func TestAnalyzeBBQUndefinedBias(t *testing.T) {
	var items []datasets.Item
	for i := 0; i < 10; i++ {
		items = append(items, bbqItem(fmt.Sprint("a", i), "ambig", 0))
	}
	mk := func(name string, pred int) MethodResult {
		r := MethodResult{Name: name}
		for _, it := range items {
			sc := scoresPreferring(3, pred)
			sc.ID = it.ID
			r.Items = append(r.Items, ItemResult{ItemScores: sc})
		}
		return r
	}
	res := []MethodResult{mk(NoneName, 0), mk("s", 1)}
	if err := Analyze(datasets.TaskBBQ, items, res, StatOptions{Resamples: 200}); err != nil {
		t.Fatal(err)
	}
	if _, ok := res[0].Intervals[MetricBiasAmbig]; ok {
		t.Error("bias_ambig interval for a condition that never predicts a non-unknown answer")
	}
	if _, ok := res[0].Intervals[MetricAccAmbig]; !ok {
		t.Error("no acc_ambig interval")
	}
	if _, ok := res[1].Comparisons[0].Metrics[MetricBiasAmbig]; ok {
		t.Error("bias_ambig comparison against an undefined score")
	}
	if d := res[1].Comparisons[0].Metrics[MetricAccAmbig]; d.Diff != -1 || d.P > 0.01 {
		t.Errorf("acc_ambig: %+v", d)
	}
}
