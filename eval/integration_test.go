package eval

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// smolEnv loads the default model (SmolLM2) and the shared data, or skips.
func smolEnv(t *testing.T) (env, string) {
	t.Helper()
	data := testenv.DataDir(t)
	return smolModel(t), data
}

// smolModel loads the default model and probes its hook sites, or skips.
func smolModel(t *testing.T) env {
	t.Helper()
	m, err := llama.LoadModel(testenv.DefaultModel(t), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	cat, err := hooks.Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	return env{m, cat}
}

// probeIntervention is an ungated random direction at l_out of layer 10
// (norm ~ a typical row's), at strength 1.
func probeIntervention(t *testing.T, e env) *intervene.Intervention {
	t.Helper()
	d := e.m.NEmbd()
	a := steer.Attribute{Name: "probe", Theta: make([]float64, d)}
	for i := range a.Theta {
		a.Theta[i] = 0.3 * math.Sin(float64(7*i+1))
	}
	f := &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: 10, NEmbd: d, ModelArch: e.m.Arch(),
		Method: steer.MethodMeanDiff, NormPreserve: true, Attributes: []steer.Attribute{a}}
	iv, err := intervene.New(f, steer.DefaultApplyOptions(), e.m, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	return iv
}

// testItems loads the first n items of a task's test split.
func testItems(t *testing.T, data, task string, n int) []datasets.Item {
	t.Helper()
	_, items, err := datasets.LoadItems(filepath.Join(data, task), task)
	if err != nil {
		t.Fatal(err)
	}
	fr := datasets.DefaultSplit(task)
	_, _, te := datasets.Split(items, fr.Train, fr.Dev, fr.Test, datasets.DefaultSeed)
	return te[:min(n, len(te))]
}

func TestSmolLM2TruthfulQA(t *testing.T) {
	e, data := smolEnv(t)
	items := testItems(t, data, datasets.TaskTruthfulQA, 2)
	r, err := NewRunner(e.m, e.cat, llama.ContextParams{NCtx: 512, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	methods := []Method{Unsteered(), {Name: "probe", Intervention: probeIntervention(t, e), Options: steer.DefaultApplyOptions()}}
	// One item at a time: the prompt and the choices are decoded in
	// batches of the sizes ContinuationLogProb uses (below).
	res, err := r.Evaluate(context.Background(), datasets.TaskTruthfulQA, items, methods, Options{BatchItems: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Several items at once give the same scores: the runner's micro-batches
	// (RunnerUBatch) keep llama.cpp's CPU flash attention on one path
	// whatever shares the batch (measured: identical; allowed 1e-4 nats).
	batched, err := r.Evaluate(context.Background(), datasets.TaskTruthfulQA, items, methods, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for j := range methods {
		for i := range items {
			for k, want := range res[j].Items[i].Choices {
				got := batched[j].Items[i].Choices[k]
				if d := math.Abs(got.Sum - want.Sum); got.Tokens != want.Tokens || !(d <= 1e-4) {
					t.Errorf("%s item %d choice %d: batched %v, one at a time %v", methods[j].Name, i, k, got, want)
				}
			}
		}
	}
	for _, m := range res {
		mc2 := m.Metrics[MetricMC2]
		if mc2 <= 0 || mc2 >= 1 || m.Counts["n_mc1"] != len(items) {
			t.Errorf("%s: %+v", m.Name, m.Summary)
		}
	}
	if res[0].Items[0].Choices[0] == res[1].Items[0].Choices[0] {
		t.Error("steering did not change the first score")
	}
	// Prefix reuse agrees with a fresh ContinuationLogProb on the real model.
	prompt, _ := e.m.Tokenize(items[0].Prompt, true, false)
	cont, _ := e.m.Tokenize(items[0].Choices[1].Text, false, false)
	cl, err := r.Context().ContinuationLogProb(context.Background(), prompt, cont)
	if err != nil {
		t.Fatal(err)
	}
	if got := res[0].Items[0].Choices[1].Sum; math.Abs(got-cl.Sum) > 1e-3 {
		t.Errorf("prefix reuse %v, ContinuationLogProb %v", got, cl.Sum)
	}
}

func TestSmolLM2BBQAndToxiGen(t *testing.T) {
	e, data := smolEnv(t)
	r, err := NewRunner(e.m, e.cat, llama.ContextParams{NCtx: 512, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	bbq := testItems(t, data, datasets.TaskBBQ, 6)
	res, err := r.Evaluate(context.Background(), datasets.TaskBBQ, bbq, []Method{Unsteered()}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := res[0]
	if s.Counts["n_ambig"]+s.Counts["n_disambig"] != len(bbq) {
		t.Errorf("BBQ counts %v", s.Counts)
	}
	if acc := s.Metrics[MetricAcc]; acc < 0 || acc > 1 {
		t.Errorf("BBQ acc %v", acc)
	}
	for _, k := range []string{MetricBiasAmbig, MetricBiasDisambig} {
		if v, ok := s.Metrics[k]; ok && (v < -1 || v > 1) {
			t.Errorf("BBQ %s = %v", k, v)
		}
	}
	tox := testItems(t, data, datasets.TaskToxiGen, 4)
	res, err = r.Evaluate(context.Background(), datasets.TaskToxiGen, tox, []Method{Unsteered()}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if acc := res[0].Metrics[MetricAcc]; acc < 0 || acc > 1 || res[0].NItems != len(tox) {
		t.Errorf("ToxiGen %+v", res[0].Summary)
	}
}

// ChatReplies on the default model: each sequence is the chat turn and the
// unsteered model's own greedy reply, compared from the reply's first
// token; greedy tokens are the model's likeliest, so their perplexity
// under the unsteered model is low (prompt positions would not be).
func TestSmolLM2ChatReplies(t *testing.T) {
	e := smolModel(t)
	m := e.m
	r, err := NewRunner(m, e.cat, llama.ContextParams{NCtx: 512, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	prompts := []string{"How do tides work?", "Describe a quiet harbour in the evening."}
	seqs, err := r.ChatReplies(context.Background(), prompts, 12, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seqs {
		turn, err := m.ApplyChatTemplate(m.ChatTemplate(), []llama.ChatMessage{{Role: "user", Content: prompts[i]}}, true)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := m.Tokenize(turn, true, true)
		if s.Start != len(want) || len(s.Tokens) <= s.Start || len(s.Tokens) > s.Start+12 {
			t.Fatalf("prompt %d: start %d of %d tokens, the turn has %d", i, s.Start, len(s.Tokens), len(want))
		}
		reply := m.Detokenize(s.Tokens[s.Start:], false, false)
		if strings.TrimSpace(reply) == "" || strings.Contains(reply, "<|im_") {
			t.Errorf("prompt %d: reply %q", i, reply)
		}
	}
	res, err := r.RetentionSequences(context.Background(), seqs, []Method{Unsteered(), {Name: "probe", Intervention: probeIntervention(t, e)}}, RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range seqs {
		n += len(s.Tokens) - s.Start
	}
	if res[1].Positions != n || !(res[1].KL > 0) || !(res[0].PPLBase < 3) {
		t.Errorf("replies: %d positions (want %d), KL %g, unsteered perplexity %g (greedy: want < 3)", res[1].Positions, n, res[1].KL, res[0].PPLBase)
	}
}
