package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/eval"
)

func TestParseFlags(t *testing.T) {
	var c config
	c.genTokens, c.threads, c.maxKL, c.maxAlpha = 48, 2, 0.1, 64
	if err := c.parse("10, 14", "0,1,2", "0.1,0.25,0.5,1", "170,200,0", "0,120,0", "0,600,0"); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.layers, []int{10, 14}) || !reflect.DeepEqual(c.seeds, []uint64{0, 1, 2}) ||
		!reflect.DeepEqual(c.fractions, []float64{0.1, 0.25, 0.5, 1}) ||
		!reflect.DeepEqual(c.trainItems, map[string]int{"truthfulqa": 170, "bbq": 200, "toxigen": 0}) ||
		c.testItems["bbq"] != 600 || c.devItems["bbq"] != 120 {
		t.Fatalf("parsed %+v", c)
	}
	if err := c.parse("10", "0", "", defaultTrainItems, defaultDevItems, defaultTestItems); err != nil || c.fractions != nil {
		t.Fatalf("no fractions: %v %v", err, c.fractions)
	}
	for _, bad := range []struct {
		layers, seeds, fractions, train, dev, test, want string
	}{
		{"x", "0", "", "1,1,1", "1,1,1", "1,1,1", "-layers"},
		{"-1", "0", "", "1,1,1", "1,1,1", "1,1,1", "-layers"},
		{"10", "0,0", "", "1,1,1", "1,1,1", "1,1,1", "seed 0 given twice"},
		{"10", "-1", "", "1,1,1", "1,1,1", "1,1,1", "-seeds"},
		{"10", "0", "0", "1,1,1", "1,1,1", "1,1,1", "-fractions"},
		{"10", "0", "1.5", "1,1,1", "1,1,1", "1,1,1", "-fractions"},
		{"10", "0", "0.5,0.25", "1,1,1", "1,1,1", "1,1,1", "ascending"},
		{"10", "0", "", "1,1", "1,1,1", "1,1,1", "-train-items"},
		{"10", "0", "", "1,1,1", "1,-1,1", "1,1,1", "-dev-items"},
		{"10", "0", "", "1,1,1", "1,1,1", "1,x,1", "-test-items"},
	} {
		err := c.parse(bad.layers, bad.seeds, bad.fractions, bad.train, bad.dev, bad.test)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: error %v, want one naming %q", bad, err, bad.want)
		}
	}
	c.threads = 0
	if err := c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1"); err == nil || !strings.Contains(err.Error(), "-threads") {
		t.Errorf("-threads 0: %v", err)
	}
	c.threads = 2
	for _, bad := range []float64{4, math.NaN(), 1e4} {
		c.maxAlpha = bad
		if err := c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1"); err == nil || !strings.Contains(err.Error(), "-max-alpha") {
			t.Errorf("-max-alpha %g: %v", bad, err)
		}
	}
	c.maxAlpha = 64
	for _, bad := range []float64{-0.5, math.NaN(), math.Inf(1), 1e3} {
		c.maxKLP99 = bad
		if err := c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1"); err == nil || !strings.Contains(err.Error(), "-max-kl-p99") {
			t.Errorf("-max-kl-p99 %g: %v", bad, err)
		}
	}
	// -max-kl 0 with the default tail budget: the default goes.
	c.maxKL, c.maxKLP99, c.klChat = 0, 0.6, "demo/data/chat-dev.txt"
	c.dropUnusedDefaults(map[string]bool{"max-kl": true})
	if err := c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1"); err != nil || c.maxKLP99 != 0 || c.klChat != "" {
		t.Errorf("-max-kl 0 and the default -max-kl-p99 and -kl-chat: %v, tail budget %g, chat prompts %q", err, c.maxKLP99, c.klChat)
	}
	// An explicit tail budget without a KL budget is refused.
	c.maxKLP99 = 0.6
	c.dropUnusedDefaults(map[string]bool{"max-kl": true, "max-kl-p99": true})
	if err := c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1"); err == nil || !strings.Contains(err.Error(), "needs -max-kl") {
		t.Errorf("-max-kl-p99 without -max-kl: %v", err)
	}
	// With a KL budget the tail budget stays.
	c.maxKL, c.maxKLP99 = 0.1, 0.6
	c.dropUnusedDefaults(map[string]bool{})
	if err := c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1"); err != nil || c.maxKLP99 != 0.6 {
		t.Errorf("default budgets: %v, tail budget %g", err, c.maxKLP99)
	}
	// -kl-chat: a regular file, and only with a KL budget.
	for _, bad := range []struct{ path, want string }{
		{filepath.Join(t.TempDir(), "missing.txt"), "no such file"},
		{t.TempDir(), "not a regular file"},
		{"/dev/null", "not a regular file"},
	} {
		c.klChat = bad.path
		if err := c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1"); err == nil || !strings.Contains(err.Error(), "-kl-chat") || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("-kl-chat %s: %v", bad.path, err)
		}
	}
	c.klChat = "../../demo/data/chat-dev.txt"
	if err := c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1"); err != nil {
		t.Errorf("-kl-chat %s: %v", c.klChat, err)
	}
	c.maxKL, c.maxKLP99 = 0, 0
	if err := c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1"); err == nil || !strings.Contains(err.Error(), "-kl-chat needs -max-kl") {
		t.Errorf("-kl-chat without -max-kl: %v", err)
	}
}

// TestChatNeutralFlag: -chat-neutral is a regular file kept apart from
// the held-out prompts, and belongs to -selective.
func TestChatNeutralFlag(t *testing.T) {
	c := config{genTokens: 48, threads: 2, maxKL: 0.1, maxAlpha: 64, selective: true,
		klChat: "../../demo/data/chat-dev.txt", genPrompts: "../../demo/data/prompts.txt", chatNeutral: "../../demo/data/chat-train.txt"}
	parse := func() error { return c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1") }
	if err := parse(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link.txt")
	if err := os.Symlink(mustAbs(t, "../../demo/data/chat-dev.txt"), link); err != nil {
		t.Fatal(err)
	}
	blank := filepath.Join(t.TempDir(), "blank.txt")
	if err := os.WriteFile(blank, []byte("\n  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nbsp := filepath.Join(t.TempDir(), "nbsp.txt") // blank in Unicode: no-break spaces
	if err := os.WriteFile(nbsp, []byte("\u00a0\n\u00a0 \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ path, want string }{
		{filepath.Join(t.TempDir(), "missing.txt"), "no such file"},
		{t.TempDir(), "not a regular file"},
		{"/dev/null", "not a regular file"},
		{blank, "no texts"},
		{nbsp, "no texts"},
		{"../../demo/data/chat-dev.txt", "also -kl-chat"},
		{link, "also -kl-chat"}, // the same file by another name
		{"../../demo/data/prompts.txt", "also -gen-prompts"},
	} {
		c.chatNeutral = bad.path
		if err := parse(); err == nil || !strings.Contains(err.Error(), "-chat-neutral") || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("-chat-neutral %s: %v, want %q", bad.path, err, bad.want)
		}
	}
	// Without -selective the default goes, and an explicit one is refused.
	c.chatNeutral, c.selective = "../../demo/data/chat-train.txt", false
	c.dropUnusedDefaults(map[string]bool{"selective": true})
	if err := parse(); err != nil || c.chatNeutral != "" {
		t.Errorf("-selective=false and the default -chat-neutral: %v, %q", err, c.chatNeutral)
	}
	c.chatNeutral = "../../demo/data/chat-train.txt"
	c.dropUnusedDefaults(map[string]bool{"selective": true, "chat-neutral": true})
	if err := parse(); err == nil || !strings.Contains(err.Error(), "-chat-neutral needs -selective") {
		t.Errorf("-chat-neutral without -selective: %v", err)
	}
}

// TestGateShiftFlag: -gate-shift is in range and belongs to -selective.
func TestGateShiftFlag(t *testing.T) {
	c := config{genTokens: 48, threads: 2, maxKL: 0.1, maxAlpha: 64, selective: true, gateShift: 2}
	parse := func() error { return c.parse("10", "0", "", "1,1,1", "1,1,1", "1,1,1") }
	if err := parse(); err != nil {
		t.Fatalf("-gate-shift 2: %v", err)
	}
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1), 51} {
		c.gateShift = bad
		if err := parse(); err == nil || !strings.Contains(err.Error(), "-gate-shift") || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("-gate-shift %g: %v", bad, err)
		}
	}
	c.gateShift, c.selective = 2, false
	c.dropUnusedDefaults(map[string]bool{"selective": true})
	if err := parse(); err != nil || c.gateShift != 0 {
		t.Errorf("-selective=false and the default -gate-shift: %v, %g", err, c.gateShift)
	}
	c.gateShift = 2
	c.dropUnusedDefaults(map[string]bool{"selective": true, "gate-shift": true})
	if err := parse(); err == nil || !strings.Contains(err.Error(), "-gate-shift needs -selective") {
		t.Errorf("-gate-shift without -selective: %v", err)
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestTailBudgetNames checks that a tail budget gets reports and a
// calibration of its own (so a cached run without one is not reused) and
// reaches matsteer calibrate.
func TestTailBudgetNames(t *testing.T) {
	c := config{maxKL: 0.1, maxAlpha: 64, testItems: map[string]int{"bbq": 600}}
	if got := c.suffix(); got != "-kl0.1" {
		t.Errorf("suffix without a tail budget: %q, want -kl0.1 (the names of existing runs)", got)
	}
	c.maxKLP99 = 0.6
	if got, want := c.testName("bbq", ""), "test-kl0.1-p99-0.6-bbq-n600.json"; got != want {
		t.Errorf("test report %q, want %q", got, want)
	}
	args := strings.Join(c.calibrateArgs("cal.json", []string{"a.gguf"}), " ")
	if !strings.Contains(args, "--max-kl 0.1 ") || !strings.Contains(args, "--max-kl-p99 0.6 ") {
		t.Errorf("calibrate command lacks the budgets: %s", args)
	}
	if strings.Contains(args, "--kl-chat") {
		t.Errorf("calibrate command without -kl-chat: %s", args)
	}
	c.klChat = "chat.txt"
	if got, want := c.testName("bbq", ""), "test-kl0.1-p99-0.6-chat-bbq-n600.json"; got != want {
		t.Errorf("test report with chat replies %q, want %q", got, want)
	}
	if args := strings.Join(c.calibrateArgs("cal.json", []string{"a.gguf"}), " "); !strings.Contains(args, "--kl-chat chat.txt ") {
		t.Errorf("calibrate command lacks the chat prompts: %s", args)
	}
	c.klChat = ""
	c.maxKLP99 = 0
	if args := strings.Join(c.calibrateArgs("cal.json", []string{"a.gguf"}), " "); strings.Contains(args, "p99") {
		t.Errorf("calibrate command without a tail budget: %s", args)
	}
}

// bbqFixture writes a BBQ directory with one file per category in which
// every row is an item of its own template: 40 Age rows, 20 Job rows and
// 12 Religion rows.
func bbqFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "bbq", "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	id := 0
	for _, cat := range []struct {
		name string
		n    int
	}{{"Age", 40}, {"Job", 20}, {"Religion", 12}} {
		var lines []string
		for i := range cat.n {
			lines = append(lines, fmt.Sprintf(`{"example_id": %d, "question_index": "%d", "question_polarity": "neg", "context_condition": "ambig", "category": %q, `+
				`"answer_info": {"ans0": ["painter %d", "a"], "ans1": ["Not known", "unknown"], "ans2": ["baker", "b"]}, `+
				`"additional_metadata": {"subcategory": "None", "stereotyped_groups": ["a"], "version": "a", "source": "x"}, `+
				`"context": "Context %d.", "question": "Who?", "ans0": "The painter %d", "ans1": "Not known", "ans2": "The baker", "label": 1}`,
				id, i, cat.name, id, id, id))
			id++
		}
		if err := os.WriteFile(filepath.Join(data, cat.name+".jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestTrainRowsBalanced: the training rows the study extracts (the first n
// items of the train part) come from every category, not from the first
// file, and the extract limit keeps whole items.
func TestTrainRowsBalanced(t *testing.T) {
	dir := bbqFixture(t)
	limit, items, err := trainRows(dir, "bbq", 0, 6)
	if err != nil {
		t.Fatal(err)
	}
	if limit != 18 || items != 6 {
		t.Errorf("6 items: limit %d (want 18: three answers each), items %d", limit, items)
	}
	part := trainParts[dir+"|bbq|0"]
	if len(part) == 0 {
		t.Fatal("train part not cached")
	}
	cats := map[string]int{}
	for _, it := range part[:6] {
		cats[it.Meta["category"]]++
	}
	if cats["Age"] != 2 || cats["Job"] != 2 || cats["Religion"] != 2 {
		t.Errorf("first 6 training items by category %v, want 2 each (file order would give 6 Age)", cats)
	}
	// What extract --limit 18 keeps: the examples of those 6 items.
	ex, err := datasets.LoadSplitExamples(filepath.Join(dir, "bbq"), "bbq", datasets.PartTrain, 0)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, e := range ex[:limit] {
		kept[e.ItemID] = true
	}
	for _, it := range part[:6] {
		if !kept[it.ID] {
			t.Errorf("item %s not among extract's first %d examples", it.ID, limit)
		}
	}
	if len(kept) != 6 {
		t.Errorf("extract's first %d examples come from %d items, want 6", limit, len(kept))
	}
	// Another seed: another split, still balanced.
	if _, _, err := trainRows(dir, "bbq", 1, 3); err != nil {
		t.Fatal(err)
	}
	p1 := trainParts[dir+"|bbq|1"]
	if reflect.DeepEqual(p1[:6], part[:6]) {
		t.Error("seeds 0 and 1 give the same first training items")
	}
	// The whole part, or more: no limit.
	if limit, items, err := trainRows(dir, "bbq", 0, len(part)); err != nil || limit != 0 || items != 0 {
		t.Errorf("whole part: limit %d items %d err %v, want 0, 0", limit, items, err)
	}
	if n, err := trainPartSize(dir, "bbq", 0); err != nil || n != len(part) {
		t.Errorf("trainPartSize %d, %v; want %d", n, err, len(part))
	}
	c := config{data: dir, trainItems: map[string]int{"truthfulqa": 0, "bbq": 10, "toxigen": 0}}
	if _, err := c.fractionItems(0.5); err == nil {
		t.Error("fractionItems without TruthfulQA data: no error")
	}
	if _, _, err := trainRows(t.TempDir(), "bbq", 0, 3); err == nil {
		t.Error("no data: no error")
	}
}

// testReport returns a task's report with the given primary metric per
// condition (an empty method is the unsteered model) and intervals and a
// comparison against none with p-value p.
func testReport(task string, rows []struct {
	name, method, path string
	v                  float64
}, p float64) *eval.Report {
	rep := &eval.Report{Task: task, NItems: 10}
	for _, r := range rows {
		m := result(r.name, r.method, r.path, 2, map[string]float64{primary[task]: r.v})
		m.Intervals = map[string]eval.Interval{primary[task]: {Lo: r.v - 0.1, Hi: r.v + 0.1}}
		if r.method != "" {
			m.Comparisons = []eval.Comparison{{Against: eval.NoneName, Metrics: map[string]eval.Difference{primary[task]: {Diff: 0.1, P: p}}}}
		}
		rep.Methods = append(rep.Methods, m)
	}
	return rep
}

type row = struct {
	name, method, path string
	v                  float64
}

func TestSeedSummary(t *testing.T) {
	mk := func(seed uint64, base, steered float64) *seedRun {
		r := &seedRun{seed: seed, test: map[string]*eval.Report{}, best: map[string]choice{"mat-steer": {file: "/w/mat-steer-paper-L14.gguf", alpha: 4}},
			stages: []stage{{name: "extraction", took: 90e9, cost: 120e9, unrecorded: int(seed)}}}
		for _, task := range tasks {
			r.test[task] = testReport(task, []row{{eval.NoneName, "", "", base}, {"mat-steer-paper-L14@4", "mat-steer", "/w/mat-steer-paper-L14.gguf", steered}}, 0.01)
		}
		return r
	}
	var b strings.Builder
	if err := seedSummary(&b, []*seedRun{mk(0, 0.4, 0.5), mk(1, 0.4, 0.7)}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| none | 0.400 ± 0.000 (0.400, 0.400) |",
		"| mat-steer | 0.600 ± 0.141 (0.500, 0.700) |",
		" 0.600 ± 0.141 (0.500, 0.700) |\n", // the average column
		"[seed 1](seed-1/study.md)",
		"- seed 0: mat-steer = mat-steer-paper-L14 at α=4\n",
		"- seed 0: this run (cached steps count 0): extraction 1m30s; total 1m30s. Cost of the steps when they were made (cached ones included): extraction 2m0s; total 2m0s\n",
		"- seed 1: this run (cached steps count 0): extraction 1m30s; total 1m30s. Cost of the steps when they were made (cached ones included): extraction ≥ 2m0s (1 cached step without a time record); total ≥ 2m0s (1 cached step without a time record)\n",
		"## Seed 1: test results",
		"| mat-steer | mat-steer-paper-L14, α=2 | - | 0.700 [0.600, 0.800] * |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := seedSummary(&b, []*seedRun{mk(3, 0.4, 0.5)}); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "| mat-steer | 0.500 | 0.500 | 0.500 | 0.500 |") || strings.Contains(out, "±") {
		t.Errorf("one seed: want plain values, no spread:\n%s", out)
	}
	if err := seedSummary(&b, nil); err == nil {
		t.Error("no seeds: no error")
	}
	if m, sd := meanSD([]float64{0.5}); m != 0.5 || sd != 0 {
		t.Errorf("meanSD of one value: %v ± %v", m, sd)
	}
}

func TestDataEfficiencyTableAndPlot(t *testing.T) {
	files := map[float64]string{0.1: "/w/frac0.1-pca-L10.gguf", 1: "/w/pca-L10.gguf"}
	e := &efficiency{fractions: []float64{0.1, 1}, fams: []string{"pca"}, cells: map[string][]effCell{"pca": make([]effCell, 2)},
		items: []map[string]int{{"truthfulqa": 17, "bbq": 20, "toxigen": 11}, {"truthfulqa": 170, "bbq": 200, "toxigen": 114}}}
	for _, task := range tasks {
		small := testReport(task, []row{{eval.NoneName, "", "", 0.3}, {"frac0.1-pca-L10@2", "pca", files[0.1], 0.35}}, 0.2)
		full := testReport(task, []row{{eval.NoneName, "", "", 0.3}, {"pca-L10@2", "pca", files[1], 0.6}}, 0.001)
		if !cellOf(&e.cells["pca"][0], task, small, files[0.1]) || !cellOf(&e.cells["pca"][1], task, full, files[1]) || !cellOf(&e.none, task, full, "") {
			t.Fatalf("%s: cellOf failed", task)
		}
		if cellOf(&effCell{}, task, full, "/w/other.gguf") {
			t.Error("cellOf found a file the report lacks")
		}
	}
	for i := range e.cells["pca"] {
		e.cells["pca"][i].finish()
	}
	e.none.finish()
	if !e.cells["pca"][0].ok || e.cells["pca"][1].avg != 0.6 {
		t.Fatalf("cells %+v", e.cells["pca"])
	}
	var b strings.Builder
	e.writeTable(&b)
	out := b.String()
	for _, want := range []string{
		"| none | - | - | 0.300 [0.200, 0.400] | 0.300 [0.200, 0.400] | 0.300 [0.200, 0.400] | 0.300 |",
		"| pca | 0.1 (17/20/11) | 2 | 0.350 [0.250, 0.450] | 0.350 [0.250, 0.450] | 0.350 [0.250, 0.450] | 0.350 |",
		"| pca | 1 (170/200/114) | 2 | 0.600 [0.500, 0.700] * | 0.600 [0.500, 0.700] * | 0.600 [0.500, 0.700] * | 0.600 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks\n%s\ngot\n%s", want, out)
		}
	}
	path := filepath.Join(t.TempDir(), "eff.svg")
	if err := e.writePlot(path); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "TruthfulQA MC2", "average of the three", "pca", "none"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("plot lacks %q", want)
		}
	}
}

// TestCopyRows: the data-efficiency files reuse the full extraction: the
// kept samples' rows, vectors and order, the source's metadata.
func TestCopyRows(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "full.safetensors"), filepath.Join(dir, "sub.safetensors")
	meta := acts.Meta{ModelArch: "llama", ModelName: "m", NEmbd: 3, Layer: 10, Site: "l_out", TokenMode: "response",
		Attributes: []string{"bias"}, Source: "bbq", Extra: map[string]string{"model_sha256": "abc"}}
	w, err := acts.Create(src, meta)
	if err != nil {
		t.Fatal(err)
	}
	// Samples 7, 8, 9 with two rows each.
	for i := range 6 {
		s := int64(7 + i/2)
		if err := w.Append([]float32{float32(i), float32(10 * i), -1}, []acts.Row{{Attribute: 0, Label: int8(i % 2), SampleID: s, Position: int32(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := copyRows(src, dst, map[int64]bool{7: true, 9: true}, "first 2 items"); err != nil {
		t.Fatal(err)
	}
	f, err := acts.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Len() != 4 || f.Rows[0].SampleID != 7 || f.Rows[2].SampleID != 9 || f.Rows[3].Position != 5 {
		t.Fatalf("rows %+v", f.Rows)
	}
	v := make([]float32, 3)
	if err := f.Vector(2, v); err != nil || !reflect.DeepEqual(v, []float32{4, 40, -1}) {
		t.Errorf("row 2: %v %v, want [4 40 -1]", v, err)
	}
	if f.Meta.Extra["model_sha256"] != "abc" || f.Meta.Extra["subset"] != "first 2 items of full.safetensors" || f.Meta.Layer != 10 {
		t.Errorf("meta %+v", f.Meta)
	}
	// Samples the file does not hold: an error, and nothing written.
	bad := filepath.Join(dir, "bad.safetensors")
	if err := copyRows(src, bad, map[int64]bool{1: true, 2: true}, "x"); err == nil || !strings.Contains(err.Error(), "no rows") {
		t.Errorf("foreign samples: %v", err)
	}
	if err := copyRows(src, bad, map[int64]bool{7: true, 1: true, 2: true, 3: true}, "x"); err == nil || !strings.Contains(err.Error(), "not the extraction") {
		t.Errorf("mostly foreign samples: %v", err)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("a failed copy left a file")
	}
}

// TestCommandCache checks that a step's output is reused only when the
// same command made it.
func TestCommandCache(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	bin := filepath.Join(dir, "fake-matsteer")
	// The fake binary counts its runs and writes its last argument but
	// two (the output: "... OUT -t N") as the output file.
	script := "#!/bin/sh\necho run >> " + runs + "\nout=\"\"; prev=\"\"; prev2=\"\"\nfor a in \"$@\"; do prev2=$prev; prev=$out; out=$a; done\necho made > \"$prev2\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := config{bin: bin, threads: 2}
	out := filepath.Join(dir, "report.json")
	count := func() int {
		data, _ := os.ReadFile(runs)
		return strings.Count(string(data), "run")
	}
	step := func(args ...string) {
		t.Helper()
		if err := c.matsteer(out, append(args, out)...); err != nil {
			t.Fatal(err)
		}
	}
	step("eval", "--steer", "a.gguf@2")
	step("eval", "--steer", "a.gguf@2")
	if n := count(); n != 1 {
		t.Fatalf("the same command twice ran %d times, want 1 (cached)", n)
	}
	c.threads = 1 // the thread count does not change what a step makes
	step("eval", "--steer", "a.gguf@2")
	if n := count(); n != 1 {
		t.Errorf("another thread count ran the step again")
	}
	step("eval", "--steer", "a.gguf@8") // another strength: made again
	if n := count(); n != 2 {
		t.Errorf("a changed command was not run again (%d runs)", n)
	}
	if err := os.Remove(out + ".cmd"); err != nil {
		t.Fatal(err)
	}
	step("eval", "--steer", "a.gguf@8") // no record (an older study): made again
	if n := count(); n != 3 {
		t.Errorf("an output without a recorded command was reused (%d runs)", n)
	}
}

// TestStepClock checks that a stage's cost counts the time each step took
// when it was made: run now, or read back from its record when cached.
func TestStepClock(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-matsteer")
	// The fake binary sleeps a little, then writes the output (the
	// argument after --out).
	script := "#!/bin/sh\nsleep 0.2\nout=\"\"; prev=\"\"\nfor a in \"$@\"; do if [ \"$prev\" = \"--out\" ]; then out=$a; fi; prev=$a; done\necho made > \"$out\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.json")
	run := func() (time.Duration, int) {
		t.Helper()
		c := config{bin: bin, threads: 2, clock: &stepClock{}}
		if err := c.matsteer(out, "eval", "--out", out); err != nil {
			t.Fatal(err)
		}
		return c.clock.take()
	}
	made, unrecorded := run()
	if made < 200*time.Millisecond || unrecorded != 0 {
		t.Fatalf("a step that ran: cost %v (%d unrecorded), want at least 200ms", made, unrecorded)
	}
	if cached, unrecorded := run(); cached != made.Round(time.Millisecond) || unrecorded != 0 {
		t.Errorf("the cached step: cost %v (%d unrecorded), want its recorded %v", cached, unrecorded, made.Round(time.Millisecond))
	}
	for _, record := range []string{"", "soon\n", "-3s\n"} { // none, unreadable, negative
		if record == "" {
			if err := os.Remove(out + ".time"); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(out+".time", []byte(record), 0o644); err != nil {
			t.Fatal(err)
		}
		if cost, unrecorded := run(); cost != 0 || unrecorded != 1 {
			t.Errorf("record %q: cost %v, %d unrecorded; want 0 and 1", record, cost, unrecorded)
		}
	}
	if got := (stage{cost: 90 * time.Second, unrecorded: 2}).costString(); got != "≥ 1m30s (2 cached steps without a time record)" {
		t.Errorf("costString = %q", got)
	}
}

func TestFractionMethods(t *testing.T) {
	c := config{selective: true, fractions: []float64{0.1, 1}}
	if err := c.parseFractionMethods([]string{" mean-diff, mat-steer-selective"}); err != nil {
		t.Fatal(err)
	}
	best := map[string]choice{"pca": {}, "mean-diff": {}, "mat-steer": {}, selectiveFamily: {}}
	if got := c.fractionFamilies(best); !reflect.DeepEqual(got, []string{"mat-steer-selective", "mean-diff"}) {
		t.Errorf("families %v", got)
	}
	groups, suffixes := c.fractionPassGroups(best)
	if !reflect.DeepEqual(groups, [][]string{{"mat-steer-selective", "mean-diff"}}) || !reflect.DeepEqual(suffixes, []string{"-mat-steer-selective_mean-diff"}) {
		t.Errorf("one list: passes %v, tags %v", groups, suffixes)
	}
	if err := c.parseFractionMethods(nil); err != nil || len(c.fractionFamilies(best)) != 4 {
		t.Errorf("no list: %v, %v", err, c.fractionFamilies(best))
	}
	groups, suffixes = c.fractionPassGroups(best)
	if len(groups) != 1 || len(groups[0]) != 4 || !reflect.DeepEqual(suffixes, []string{""}) {
		t.Errorf("no list: passes %v, tags %q", groups, suffixes)
	}
	// Two lists: two passes; a family without a chosen setting is skipped.
	if err := c.parseFractionMethods([]string{"mean-diff,mat-steer-selective", "pca,all-tokens"}); err != nil {
		t.Fatal(err)
	}
	if got := c.fractionFamilies(best); !reflect.DeepEqual(got, []string{"mat-steer-selective", "mean-diff", "pca"}) {
		t.Errorf("two lists: families %v", got)
	}
	groups, suffixes = c.fractionPassGroups(best)
	if !reflect.DeepEqual(groups, [][]string{{"mat-steer-selective", "mean-diff"}, {"pca"}}) || !reflect.DeepEqual(suffixes, []string{"-mat-steer-selective_mean-diff", "-pca"}) {
		t.Errorf("two lists: passes %v, tags %v", groups, suffixes)
	}
	for _, bad := range []struct {
		lists []string
		want  string
	}{
		{[]string{"mean-dif"}, "unknown method"},
		{[]string{"pca,pca"}, "twice"},
		{[]string{"pca", "mean-diff,pca"}, "twice"},
		{[]string{""}, "empty method name"},
		{[]string{"pca,"}, "empty method name"},
	} {
		if err := c.parseFractionMethods(bad.lists); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.lists, err, bad.want)
		}
	}
	c.selective = false
	if err := c.parseFractionMethods([]string{selectiveFamily}); err == nil {
		t.Errorf("%s without -selective: no error", selectiveFamily)
	}
	c.selective, c.fractions = true, nil
	if err := c.parseFractionMethods([]string{"pca"}); err == nil || !strings.Contains(err.Error(), "-fractions") {
		t.Errorf("without -fractions: %v", err)
	}
}

func TestCheckDataDir(t *testing.T) {
	dir := t.TempDir()
	for _, task := range tasks[:2] {
		if err := os.Mkdir(filepath.Join(dir, task), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := checkDataDir(dir)
	if err == nil || !strings.Contains(err.Error(), "no toxigen/ folder") || !strings.Contains(err.Error(), "matsteer data pull") {
		t.Errorf("toxigen missing: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "toxigen"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkDataDir(dir); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("toxigen a file: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "toxigen")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "toxigen"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkDataDir(dir); err != nil {
		t.Errorf("every folder there: %v", err)
	}
}

// TestModelCheck checks what the study asks `matsteer model info` before
// any work: a model that does not load is refused with matsteer's own
// message, -layers beyond the model's layers are refused, and a model
// without a chat template refuses the chat-reply flags, with the flags to
// use, and its generation check goes without the KL along chat replies.
func TestModelCheck(t *testing.T) {
	dir := t.TempDir()
	fake := func(name, info string) string {
		bin := filepath.Join(dir, name)
		script := "#!/bin/sh\nprintf '" + info + "'\n"
		if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return bin
	}
	base := fake("base", "name             base\\nlayers           18\\nchat template    (none)\\n")
	chat := fake("chat", "name\\tchat\\nlayers\\t18\\nchat template\\t{%% for message in messages %%}...\\n")
	other := fake("other", "something else\\n")
	broken := fake("broken", "matsteer: load model: not a GGUF file\\n' >&2; exit 1; printf '")
	for _, tc := range []struct {
		name                     string
		bin, klChat, chatNeutral string
		layers                   []int
		want                     string // error text; "" for none
		noChat                   bool
	}{
		{"chat model", chat, "chat-dev.txt", "chat-train.txt", []int{6, 17}, "", false},
		{"chat model, layer 18", chat, "chat-dev.txt", "chat-train.txt", []int{6, 18}, "-layers: layer 18 is out of range: /m/base.gguf has layers 0..17", false},
		{"base model, -kl-chat", base, "chat-dev.txt", "", []int{6}, `run with -kl-chat ""`, false},
		{"base model, -chat-neutral", base, "", "chat-train.txt", []int{6}, `run with -chat-neutral ""`, false},
		{"base model, plain flags", base, "", "", []int{6}, "", true},
		{"not matsteer", other, "chat-dev.txt", "", []int{6}, "is -bin", false},
		{"model does not load", broken, "", "", []int{6}, "model info /m/base.gguf: matsteer: load model: not a GGUF file", false},
	} {
		c := config{bin: tc.bin, model: "/m/base.gguf", layers: tc.layers, klChat: tc.klChat, chatNeutral: tc.chatNeutral, genPrompts: "prompts.txt", genTokens: 48, neutral: "n.txt"}
		err := c.checkModel()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
		if c.noChatTemplate != tc.noChat {
			t.Errorf("%s: noChatTemplate %v", tc.name, c.noChatTemplate)
		}
		if err == nil {
			args := strings.Join(c.retentionArgs("r.json", nil), " ")
			if strings.Contains(args, "--kl-chat") == tc.noChat || !strings.Contains(args, "--gen-prompts prompts.txt") {
				t.Errorf("%s: retention command %q", tc.name, args)
			}
		}
	}
}
