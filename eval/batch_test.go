package eval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/steer"
)

// manyItems repeats tqaItems with changed prompts, enough to fill several
// windows.
func manyItems(n int) []datasets.Item {
	base := tqaItems()
	var out []datasets.Item
	for i := 0; i < n; i++ {
		it := base[i%len(base)]
		it.ID = fmt.Sprintf("t/%d", i)
		it.Prompt = strings.Repeat("Think. ", i%4) + it.Prompt
		out = append(out, it)
	}
	return out
}

// Scoring several items at once gives the scores and metrics of scoring one
// at a time (to 1e-3 nats per choice on the random model: batches of 64
// rows or more take llama.cpp's tiled flash-attention path, which
// accumulates in F32 where the one-row path uses F16), steered or not, for
// windows that divide the items evenly or not.
func TestBatchItemsMatchOneAtATime(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	items := manyItems(7)
	methods := []Method{Unsteered(), e.method(t, "s", testFile(e.m.NEmbd(), 1, 0.1), steer.DefaultApplyOptions())}
	want, err := r.Evaluate(context.Background(), datasets.TaskTruthfulQA, items, methods, Options{BatchItems: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{2, 3, 0} {
		var progress bytes.Buffer
		got, err := r.Evaluate(context.Background(), datasets.TaskTruthfulQA, items, methods, Options{BatchItems: k, Progress: &progress})
		if err != nil {
			t.Fatalf("batch of %d: %v", k, err)
		}
		if !strings.Contains(progress.String(), "7/7") {
			t.Errorf("batch of %d: progress bar never reached 7/7: %q", k, progress.String())
		}
		for j := range methods {
			if got[j].Timing.Tokens != want[j].Timing.Tokens {
				t.Errorf("batch of %d, %s: %d tokens decoded, want %d", k, methods[j].Name, got[j].Timing.Tokens, want[j].Timing.Tokens)
			}
			for i := range items {
				g, w := got[j].Items[i], want[j].Items[i]
				if len(g.Choices) != len(w.Choices) || len(g.MC1) != len(w.MC1) || g.ID != w.ID {
					t.Fatalf("batch of %d, %s item %d: shape %+v, want %+v", k, methods[j].Name, i, g.ItemScores, w.ItemScores)
				}
				for c := range w.Choices {
					if d := math.Abs(g.Choices[c].Sum - w.Choices[c].Sum); !(d <= 1e-3) || g.Choices[c].Tokens != w.Choices[c].Tokens {
						t.Errorf("batch of %d, %s item %d choice %d: %v, want %v", k, methods[j].Name, i, c, g.Choices[c], w.Choices[c])
					}
				}
				for c := range w.MC1 {
					if d := math.Abs(g.MC1[c].Sum - w.MC1[c].Sum); !(d <= 1e-3) {
						t.Errorf("batch of %d, %s item %d MC1 %d: %v, want %v", k, methods[j].Name, i, c, g.MC1[c], w.MC1[c])
					}
				}
			}
			for name, v := range want[j].Metrics {
				if gv, ok := got[j].Metrics[name]; !ok || math.Abs(gv-v) > 1e-6 {
					t.Errorf("batch of %d, %s: %s = %v, want %v", k, methods[j].Name, name, gv, v)
				}
			}
		}
	}
}

func TestBatchItemsChecked(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	for _, k := range []int{-1, MaxBatchItems + 1} {
		_, err := r.Evaluate(context.Background(), datasets.TaskTruthfulQA, tqaItems(), []Method{Unsteered()}, Options{BatchItems: k})
		if err == nil || !strings.Contains(err.Error(), "items per batch") {
			t.Errorf("BatchItems %d: error %v", k, err)
		}
	}
	// Cancelled before the first window: the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Evaluate(ctx, datasets.TaskTruthfulQA, manyItems(5), []Method{Unsteered()}, Options{BatchItems: 4}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// The runner still works after a cancelled run.
	if _, err := r.Evaluate(context.Background(), datasets.TaskTruthfulQA, manyItems(5), []Method{Unsteered()}, Options{BatchItems: 4}); err != nil {
		t.Errorf("after cancel: %v", err)
	}
}
