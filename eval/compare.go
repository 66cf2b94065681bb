package eval

import (
	"fmt"

	"github.com/matsteer/matsteer/datasets"
)

// Comparison is a paired test of a condition against another condition
// evaluated on the same items: for every metric, this condition's value
// minus Against's, with its bootstrap interval and permutation p-value
// (see Difference).
type Comparison struct {
	Against string                `json:"against"`
	Metrics map[string]Difference `json:"metrics"`
}

// Analyze adds statistics to results (conditions evaluated on the same
// items, with per-item scores in Items): every condition's Intervals, the
// percentile bootstrap interval of every metric over items, and every
// condition after the first its Comparisons, a paired test against each
// earlier condition (so each pair is compared once, and with "none" first
// every steered condition is compared with the unsteered model). Metrics
// that are undefined, or undefined in most resamples, get no interval.
// The same seed gives the same numbers.
func Analyze(task string, items []datasets.Item, results []MethodResult, o StatOptions) error {
	if _, err := o.withDefaults(); err != nil {
		return err
	}
	names := MetricNames(task)
	recs := make([][]itemRecord, len(results))
	for j, res := range results {
		if len(res.Items) != len(items) {
			return fmt.Errorf("eval: condition %s has scores for %d of %d items", res.Name, len(res.Items), len(items))
		}
		scores := make([]ItemScores, len(items))
		for i := range items {
			if res.Items[i].ID != items[i].ID {
				return fmt.Errorf("eval: condition %s: item %d is %s, want %s", res.Name, i, res.Items[i].ID, items[i].ID)
			}
			scores[i] = res.Items[i].ItemScores
		}
		rs, err := outcomeRecords(task, items, scores)
		if err != nil {
			return err
		}
		recs[j] = rs
	}
	if len(items) == 0 {
		return nil
	}
	agg := aggregator(task)
	for j := range results {
		ivs, ok, err := BootstrapIntervals(recs[j], agg, o)
		if err != nil {
			return err
		}
		results[j].Intervals = map[string]Interval{}
		for k, name := range names {
			if ok[k] {
				results[j].Intervals[name] = ivs[k]
			}
		}
		results[j].Comparisons = nil
		for i := 0; i < j; i++ {
			ds, ok, err := PairedTests(recs[i], recs[j], agg, o)
			if err != nil {
				return err
			}
			c := Comparison{Against: results[i].Name, Metrics: map[string]Difference{}}
			for k, name := range names {
				if ok[k] {
					c.Metrics[name] = ds[k]
				}
			}
			results[j].Comparisons = append(results[j].Comparisons, c)
		}
	}
	return nil
}

// Interval returns a metric's interval and whether it has one.
func (m MethodResult) Interval(name string) (Interval, bool) {
	iv, ok := m.Intervals[name]
	return iv, ok
}

// Comparison returns the paired test of this condition against another,
// in either direction: against a later condition, the stored comparison is
// the other's, and its differences and intervals are negated.
func (rep *Report) Comparison(name, against string) (map[string]Difference, bool) {
	for _, m := range rep.Methods {
		for _, c := range m.Comparisons {
			switch {
			case m.Name == name && c.Against == against:
				return c.Metrics, true
			case m.Name == against && c.Against == name:
				out := make(map[string]Difference, len(c.Metrics))
				for k, d := range c.Metrics {
					out[k] = Difference{Diff: -d.Diff, CI: Interval{Lo: -d.CI.Hi, Hi: -d.CI.Lo}, P: d.P}
				}
				return out, true
			}
		}
	}
	return nil, false
}
