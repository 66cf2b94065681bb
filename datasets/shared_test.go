package datasets

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sharedData returns the shared data directory (MATSTEER_DATA, or
// ../shared/data from the repository root), skipping the test when absent.
func sharedData(t *testing.T, sub string) string {
	t.Helper()
	root := os.Getenv("MATSTEER_DATA")
	if root == "" {
		dir, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for !fileExists(filepath.Join(dir, "go.mod")) {
			parent := filepath.Dir(dir)
			if parent == dir {
				t.Skip("skipping: repository root (go.mod) not found, so ../shared/data cannot be located; set MATSTEER_DATA")
			}
			dir = parent
		}
		root = filepath.Join(dir, "..", "shared", "data")
	}
	p := filepath.Join(root, filepath.FromSlash(sub))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: shared data %s not present (set MATSTEER_DATA to the shared data directory): %v", p, err)
	}
	return p
}

func countMC2(items []Item) (t, f int) {
	for _, it := range items {
		for _, c := range it.Choices {
			if c.Correct {
				t++
			} else {
				f++
			}
		}
	}
	return t, f
}

func TestSharedTruthfulQA(t *testing.T) {
	v0 := sharedData(t, "truthfulqa/data/v0/mc_task.json")
	items, err := LoadTruthfulQA(v0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 817 {
		t.Errorf("v0 mc_task.json: %d questions, want 817", len(items))
	}
	if tr, fa := countMC2(items); tr != 2585 || fa != 3297 {
		t.Errorf("v0 mc2: %d true / %d false answers, want 2585 / 3297", tr, fa)
	}
	for _, it := range items {
		n := 0
		for _, c := range it.MC1 {
			if c.Correct {
				n++
			}
		}
		if n != 1 || !it.MC1[0].Correct {
			t.Fatalf("%s: mc1 has %d correct answers, first correct %v", it.Source, n, it.MC1[0].Correct)
		}
		if !strings.HasPrefix(it.Prompt, "Q: ") || !strings.HasSuffix(it.Prompt, "\nA:") || !strings.HasPrefix(it.Choices[0].Text, " ") {
			t.Fatalf("%s: prompt %q / choice %q not in the documented format", it.Source, it.Prompt, it.Choices[0].Text)
		}
	}

	// A directory resolves to the v0 file.
	dirItems, err := LoadTruthfulQA(sharedData(t, "truthfulqa"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirItems) != 817 || dirItems[0].ID != items[0].ID {
		t.Errorf("directory did not resolve to data/v0/mc_task.json")
	}

	// The newer JSON and the CSV (with BOM) have the same questions, mostly.
	cur, err := LoadTruthfulQA(sharedData(t, "truthfulqa/data/mc_task.json"))
	if err != nil {
		t.Fatal(err)
	}
	csvItems, err := LoadTruthfulQA(sharedData(t, "truthfulqa/TruthfulQA.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) != 817 || len(csvItems) != 817 {
		t.Errorf("questions: mc_task.json %d, TruthfulQA.csv %d, want 817", len(cur), len(csvItems))
	}
	ids := map[string]bool{}
	for _, it := range cur {
		ids[it.ID] = true
	}
	common := 0
	for _, it := range csvItems {
		if ids[it.ID] {
			common++
		}
		if it.Meta["category"] == "" {
			t.Fatalf("%s: no category", it.Source)
		}
	}
	if common < 810 {
		t.Errorf("only %d CSV questions have the same ID as in mc_task.json", common)
	}
	if csvItems[0].Meta["type"] != "Adversarial" || !strings.HasSuffix(csvItems[0].Source, ":2") {
		t.Errorf("first CSV row: meta %v, source %s (BOM or line numbers wrong)", csvItems[0].Meta, csvItems[0].Source)
	}

	tr, dv, te := Split(items, 0.4, 0.1, 0.5, DefaultSeed)
	// round(0.4*817) = 327 train, round(0.5*817) - 327 = 82 dev, 408 test.
	if len(tr) != 327 || len(dv) != 82 || len(te) != 408 {
		t.Errorf("split sizes %d/%d/%d, want 327/82/408", len(tr), len(dv), len(te))
	}
	if err := CheckExamples(Examples(tr, "")); err != nil {
		t.Error(err)
	}
}

func TestSharedBBQ(t *testing.T) {
	dir := sharedData(t, "bbq/data")
	items, err := LoadBBQ(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 11956 {
		t.Errorf("%d rows, want 11956", len(items))
	}
	ambig, tagged := 0, 0
	groups := map[string]int{}
	for _, it := range items {
		groups[it.Group]++
		tags := map[string]int{}
		for _, c := range it.Choices {
			tags[c.Tag]++
		}
		if tags[TagStereotyped] == 1 && tags[TagAntiStereotyped] == 1 {
			tagged++
		}
		if it.Meta["context_condition"] == "ambig" {
			ambig++
			for _, c := range it.Choices {
				if c.Correct != (c.Tag == TagUnknown) {
					t.Fatalf("%s: ambiguous context whose gold answer is not the unknown option", it.Source)
				}
			}
		}
	}
	if ambig*2 != len(items) {
		t.Errorf("%d ambiguous of %d, want half", ambig, len(items))
	}
	if tagged != len(items) {
		t.Errorf("stereotyped/anti-stereotyped tags found for %d of %d rows", tagged, len(items))
	}
	// Every split group holds whole instances (multiples of the four
	// ambig/disambig x neg/nonneg variants).
	for g, n := range groups {
		if n%4 != 0 {
			t.Errorf("group %s has %d rows", g, n)
			break
		}
	}
	tr, dv, te := Split(items, 0.4, 0.1, 0.5, DefaultSeed)
	side := map[string]int{}
	for p, part := range [][]Item{tr, dv, te} {
		for _, it := range part {
			side[it.Meta["category"]+"/"+it.Meta["example_id"]] = p
		}
	}
	for _, it := range items {
		eid := it.Meta["example_id"]
		base := it.Meta["category"] + "/"
		// The four variants of an instance share a side.
		id4, err := strconv.Atoi(eid)
		if err != nil {
			t.Fatal(err)
		}
		for k := id4 / 4 * 4; k < id4/4*4+4; k++ {
			if s, ok := side[base+strconv.Itoa(k)]; ok && s != side[base+eid] {
				t.Fatalf("%s: variants %s and %d on different sides", it.Source, eid, k)
			}
		}
	}
	if ex := Examples(items[:3], ""); len(ex) != 9 || ex[0].Attribute != "bias" {
		t.Errorf("BBQ examples: %d, attribute %q", len(ex), ex[0].Attribute)
	}
}

func TestSharedToxiGen(t *testing.T) {
	annotated := sharedData(t, "toxigen/annotated/toxiGen.json")
	data, err := readFile(annotated)
	if err != nil {
		t.Fatal(err)
	}
	sts, err := parseToxiGenAnnotated(data, annotated)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 6514 {
		t.Errorf("annotated: %d statements, want 6514", len(sts))
	}
	items, err := LoadToxiGen(annotated)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) < 2000 {
		t.Errorf("annotated: only %d pairs", len(items))
	}
	checkToxiGenItems(t, items, false)

	prompts := sharedData(t, "toxigen/prompts")
	pitems, err := LoadToxiGen(sharedData(t, "toxigen"))
	if err != nil {
		t.Fatal(err)
	}
	pitems2, err := LoadToxiGen(prompts)
	if err != nil {
		t.Fatal(err)
	}
	if len(pitems) != len(pitems2) || len(pitems) < 200 {
		t.Errorf("prompt files: %d items from the toxigen dir, %d from prompts/", len(pitems), len(pitems2))
	}
	checkToxiGenItems(t, pitems, true)
	groups := map[string]bool{}
	for _, it := range pitems {
		groups[it.Meta["group"]] = true
	}
	if len(groups) != 15 || groups["trans"] {
		t.Errorf("prompt files: %d groups %v, want the 15 with both labels", len(groups), groups)
	}
}

func checkToxiGenItems(t *testing.T, items []Item, promptFiles bool) {
	t.Helper()
	seen := map[string]string{}
	first := 0
	for _, it := range items {
		if len(it.Choices) != 2 || it.Choices[0].Correct == it.Choices[1].Correct {
			t.Fatalf("%s: choices %+v", it.ID, it.Choices)
		}
		if it.Choices[0].Correct {
			first++
		}
		for _, c := range it.Choices {
			if prev, ok := seen[c.Text]; ok {
				t.Fatalf("statement %q in %s and %s", c.Text, prev, it.ID)
			}
			seen[c.Text] = it.ID
			dirty := strings.HasPrefix(c.Text, "  ") || strings.HasSuffix(c.Text, " ") || strings.Contains(c.Text, "_x000D_")
			if promptFiles {
				dirty = dirty || strings.Contains(c.Text, `\n`) || strings.HasPrefix(c.Text, " -")
			}
			if dirty {
				t.Fatalf("%s: statement not cleaned: %q", it.ID, c.Text)
			}
		}
	}
	if first < len(items)/3 || first > 2*len(items)/3 {
		t.Errorf("neutral option first in %d of %d items: order not mixed", first, len(items))
	}
	if err := CheckExamples(Examples(items, "")); err != nil {
		t.Error(err)
	}
}

func TestSharedLoadExamples(t *testing.T) {
	for _, c := range []struct {
		sub, format string
	}{
		{"truthfulqa", FormatTruthfulQA},
		{"truthfulqa/data/v0/mc_task.json", FormatTruthfulQA},
		{"truthfulqa/TruthfulQA.csv", FormatTruthfulQA},
		{"bbq", FormatBBQ},
		{"bbq/data/Religion.jsonl", FormatBBQ},
		{"toxigen", FormatToxiGen},
		{"toxigen/annotated/toxiGen.json", FormatToxiGen},
	} {
		p := sharedData(t, c.sub)
		f, err := DetectFormat(p)
		if err != nil || f != c.format {
			t.Errorf("DetectFormat(%s) = %q, %v, want %q", c.sub, f, err, c.format)
		}
	}
	p := sharedData(t, "truthfulqa")
	all, err := LoadExamples(p, FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	train, err := LoadSplitExamples(p, FormatAuto, PartTrain, DefaultSeed)
	if err != nil {
		t.Fatal(err)
	}
	test, err := LoadSplitExamples(p, FormatAuto, PartTest, DefaultSeed)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2585+3297 || len(train) == 0 || len(test) == 0 || len(train)+len(test) >= len(all) {
		t.Errorf("examples: all %d, train %d, test %d", len(all), len(train), len(test))
	}
	trainItems := map[string]bool{}
	for _, e := range train {
		trainItems[e.ItemID] = true
	}
	for _, e := range test {
		if trainItems[e.ItemID] {
			t.Fatalf("item %s in train and test", e.ItemID)
		}
	}
}
