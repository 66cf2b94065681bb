package datasets

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func makeItems(n int) []Item {
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{
			Task:   TaskJSONL,
			ID:     fmt.Sprintf("item-%d", i),
			Prompt: fmt.Sprintf("prompt %d", i),
			Choices: []Choice{
				{Text: " yes", Correct: true},
				{Text: " no"},
			},
			Source: fmt.Sprintf("t.jsonl:%d", i+1),
		}
		if i%5 == 0 && i > 0 {
			items[i].Group = fmt.Sprintf("group-%d", i/10) // items 10k and 10k+5 share a group
		}
	}
	return items
}

func ids(items []Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func TestSplit(t *testing.T) {
	items := makeItems(200)
	tr, dv, te := Split(items, 0.4, 0.1, 0.5, 7)
	if len(tr)+len(dv)+len(te) != len(items) {
		t.Fatalf("parts %d+%d+%d != %d", len(tr), len(dv), len(te), len(items))
	}
	// Sizes follow the fractions over split keys (200 items, 181 keys).
	keys := map[string]bool{}
	for _, it := range items {
		keys[it.SplitKey()] = true
	}
	countKeys := func(part []Item) int {
		k := map[string]bool{}
		for _, it := range part {
			k[it.SplitKey()] = true
		}
		return len(k)
	}
	if n := len(keys); countKeys(tr) != 72 || countKeys(dv) != 19 || countKeys(te) != n-91 {
		t.Errorf("keys per part %d/%d/%d of %d, want 72/19/%d", countKeys(tr), countKeys(dv), countKeys(te), n, n-91)
	}
	// No key on two sides; every part is in Balanced order (one stratum
	// here: a seeded order, not the input order).
	side := map[string]int{}
	for p, part := range [][]Item{tr, dv, te} {
		if !reflect.DeepEqual(ids(part), ids(Balanced(part, 7))) {
			t.Errorf("part %d not in balanced order", p)
		}
		for _, it := range part {
			if s, ok := side[it.SplitKey()]; ok && s != p {
				t.Fatalf("key %s in parts %d and %d", it.SplitKey(), s, p)
			}
			side[it.SplitKey()] = p
		}
	}
	// Deterministic and independent of input order.
	shuffled := slices.Clone(items)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	tr2, dv2, te2 := Split(shuffled, 0.4, 0.1, 0.5, 7)
	for p, pair := range [][2][]Item{{tr, tr2}, {dv, dv2}, {te, te2}} {
		a, b := ids(pair[0]), ids(pair[1])
		slices.Sort(a)
		slices.Sort(b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("part %d differs after shuffling the input", p)
		}
	}
	// Another seed gives another split; fractions are relative weights.
	if tr3, _, _ := Split(items, 0.4, 0.1, 0.5, 8); reflect.DeepEqual(ids(tr3), ids(tr)) {
		t.Error("seed 8 gives the same train part as seed 7")
	}
	if tr4, dv4, te4 := Split(items, 4, 1, 5, 7); !reflect.DeepEqual(ids(tr4), ids(tr)) || !reflect.DeepEqual(ids(dv4), ids(dv)) || !reflect.DeepEqual(ids(te4), ids(te)) {
		t.Error("fractions 4/1/5 differ from 0.4/0.1/0.5")
	}
	if tr5, dv5, te5 := Split(items, 1, 0, 0, 7); len(tr5) != len(items) || dv5 != nil || te5 != nil {
		t.Error("1/0/0 does not put everything in train")
	}
	// Examples(Split(items)) and SplitExamples(Examples(items)) hold the
	// same examples (in balanced and in input order).
	ex := Examples(items, "a")
	etr, edv, ete := SplitExamples(ex, 0.4, 0.1, 0.5, 7)
	bySample := func(a, b Example) int { return int((a.SampleID >> 32) - (b.SampleID >> 32)) }
	for p, pair := range [][2][]Example{{Examples(tr, "a"), etr}, {Examples(dv, "a"), edv}, {Examples(te, "a"), ete}} {
		slices.SortFunc(pair[0], bySample)
		slices.SortFunc(pair[1], bySample)
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("part %d: SplitExamples disagrees with Split", p)
		}
	}
}

func TestSplitPanicsOnBadFractions(t *testing.T) {
	for _, f := range []Fractions{{-0.1, 0.5, 0.6}, {0, 0, 0}} {
		if f.Validate() == nil {
			t.Errorf("%v validated", f)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Split(%v) did not panic", f)
				}
			}()
			Split(makeItems(3), f.Train, f.Dev, f.Test, 0)
		}()
	}
	for _, task := range []string{TaskTruthfulQA, TaskBBQ, TaskToxiGen, TaskJSONL} {
		if err := DefaultSplit(task).Validate(); err != nil {
			t.Errorf("DefaultSplit(%s): %v", task, err)
		}
	}
	if DefaultSplit(TaskTruthfulQA) != (Fractions{0.4, 0.1, 0.5}) {
		t.Errorf("TruthfulQA split %v", DefaultSplit(TaskTruthfulQA))
	}
}

func TestExamples(t *testing.T) {
	items := []Item{{
		Task: TaskBBQ, ID: "bbq/X/1", Group: "g", Prompt: "Ctx. Who?\nAnswer:", Source: "f.jsonl:1",
		Choices: []Choice{{Text: " A"}, {Text: " B", Correct: true}, {Text: " C", Source: "other:9"}},
	}}
	ex := Examples(items, "")
	if len(ex) != 3 {
		t.Fatalf("%d examples", len(ex))
	}
	for j, e := range ex {
		if e.Attribute != "bias" || e.Prompt != items[0].Prompt || e.Response != items[0].Choices[j].Text ||
			e.ItemID != "bbq/X/1" || e.Group != "g" || e.SampleID != SampleID("bbq/X/1", j) || e.SampleID < 0 {
			t.Errorf("example %d = %+v", j, e)
		}
	}
	if ex[1].Label != 1 || ex[0].Label != 0 || ex[2].Label != 0 {
		t.Error("labels do not follow Correct")
	}
	if ex[0].Source != "f.jsonl:1" || ex[2].Source != "other:9" {
		t.Errorf("sources %q %q", ex[0].Source, ex[2].Source)
	}
	if Examples(items, "custom")[0].Attribute != "custom" {
		t.Error("attribute argument ignored")
	}
	if ex[0].SampleID == ex[1].SampleID || ex[0].Text() != "Ctx. Who?\nAnswer: A" {
		t.Error("sample ids or text wrong")
	}
}

func TestCheckExamples(t *testing.T) {
	ok := []Example{
		{Attribute: "a", Label: 1, Prompt: "p", SampleID: 1, Source: "f:1"},
		{Attribute: "a", Label: 0, Prompt: "q", SampleID: 2, Source: "f:2"},
	}
	if err := CheckExamples(ok); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		ex   []Example
		want []string
	}{
		{"none", nil, []string{"no examples"}},
		{"one class", append(slices.Clone(ok), Example{Attribute: "b", Label: 1, Prompt: "x", SampleID: 3, Source: "f:3"}),
			[]string{`attribute "b" has no negative examples`, "f:3"}},
		{"only negatives", []Example{{Attribute: "c", Label: 0, Prompt: "x", SampleID: 3, Source: "g:7"}},
			[]string{`attribute "c" has no positive examples`, "g:7"}},
		{"empty text", append(slices.Clone(ok), Example{Attribute: "a", Label: 1, Prompt: " ", Response: "\n", SampleID: 3, Source: "f:4"}),
			[]string{"f:4: empty text"}},
		{"bad label", append(slices.Clone(ok), Example{Attribute: "a", Label: 3, Prompt: "x", SampleID: 3, Source: "f:5"}),
			[]string{"f:5: label 3"}},
		{"no attribute", append(slices.Clone(ok), Example{Label: 1, Prompt: "x", SampleID: 3, Source: "f:6"}),
			[]string{"f:6: empty attribute"}},
		{"duplicate id", append(slices.Clone(ok), Example{Attribute: "a", Label: 1, Prompt: "x", SampleID: 2, Source: "f:7"}),
			[]string{"f:7: sample id 2 already used by f:2"}},
	}
	for _, c := range cases {
		err := CheckExamples(c.ex)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", c.name, err, w)
			}
		}
	}
	// Many problems are summarised.
	var many []Example
	for i := range 25 {
		many = append(many, Example{Attribute: "a", Label: i % 2, SampleID: int64(i), Source: fmt.Sprintf("m:%d", i)})
	}
	if err := CheckExamples(many); err == nil || !strings.Contains(err.Error(), "and 15 more problems") {
		t.Errorf("many problems: %v", err)
	}
}

func TestTruthfulQAJSON(t *testing.T) {
	dir := t.TempDir()
	p := writeTemp(t, dir, "mc_task.json", `[
  {"question": "Is the sky green?",
   "mc1_targets": {"No, it is blue.": 1, "Yes.": 0, "Only on Mondays.": 0},
   "mc2_targets": {"No, it is blue.": 1, "No.": 1, "Yes.": 0, "Only on Mondays.": 0}},
  {"question": "Can cats fly?", "mc1_targets": {"No.": 1, "Yes.": 0}, "mc2_targets": {"Yes.": 0, "No.": 1}}
]`)
	items, err := LoadTruthfulQA(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 {
		t.Fatalf("%d items", len(items))
	}
	it := items[0]
	if it.Prompt != "Q: Is the sky green?\nA:" || it.Task != TaskTruthfulQA || it.Source != p+":2" || items[1].Source != p+":5" {
		t.Errorf("item = %+v", it)
	}
	wantMC2 := []Choice{{" No, it is blue.", true, TagMC2, ""}, {" No.", true, TagMC2, ""}, {" Yes.", false, TagMC2, ""}, {" Only on Mondays.", false, TagMC2, ""}}
	if !reflect.DeepEqual(it.Choices, wantMC2) {
		t.Errorf("mc2 = %+v", it.Choices)
	}
	if len(it.MC1) != 3 || !it.MC1[0].Correct || it.MC1[0].Tag != TagMC1 || it.MC1[2].Text != " Only on Mondays." {
		t.Errorf("mc1 = %+v", it.MC1)
	}
	if items[1].Choices[0].Text != " Yes." || items[1].Choices[0].Correct {
		t.Error("mc2 answer order not kept")
	}
	if it.ID != "truthfulqa/"+textID(16, "Is the sky green?") {
		t.Errorf("ID %s", it.ID)
	}

	// The same questions from a CSV (BOM, CRLF, quoted fields with commas
	// and newlines) get the same IDs.
	csvPath := writeTemp(t, dir, "TruthfulQA.csv", "\ufeffType,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\r\n"+
		"Adversarial,Colours,Is the sky green?,\"No, it is blue\",\"No, it is blue; No\",\"Yes; Only on Mondays.\",https://example.org\r\n"+
		"Non-Adversarial,Animals,Can cats fly?,No,\"No;No.\",\"Yes,\nsometimes\",\r\n")
	citems, err := LoadTruthfulQA(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(citems) != 2 || citems[0].ID != items[0].ID || citems[1].ID != items[1].ID {
		t.Fatalf("CSV items %v", ids(citems))
	}
	if !reflect.DeepEqual(citems[0].Choices, wantMC2) {
		t.Errorf("CSV mc2 = %+v", citems[0].Choices)
	}
	if len(citems[0].MC1) != 3 || citems[0].MC1[0] != (Choice{" No, it is blue.", true, TagMC1, ""}) {
		t.Errorf("CSV mc1 = %+v", citems[0].MC1)
	}
	if len(citems[1].Choices) != 2 || citems[1].Choices[1].Text != " Yes,\nsometimes." {
		t.Errorf("CSV duplicate answers or multi-line field: %+v", citems[1].Choices)
	}
	if citems[0].Meta["category"] != "Colours" || citems[0].Meta["type"] != "Adversarial" || citems[0].Source != csvPath+":2" || citems[1].Source != csvPath+":3" {
		t.Errorf("CSV meta %v source %s %s", citems[0].Meta, citems[0].Source, citems[1].Source)
	}

	// A directory resolves to data/v0/mc_task.json first.
	writeTemp(t, dir, "data/v0/mc_task.json", `[{"question": "Q0?", "mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {"a": 1, "b": 0}}]`)
	if d, err := LoadTruthfulQA(dir); err != nil || len(d) != 1 || d[0].Prompt != "Q: Q0?\nA:" {
		t.Errorf("directory: %v %v", d, err)
	}
}

func TestTruthfulQAErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ body, want string }{
		{`[{"question": "Q?", "mc1_targets": {"a": 1, "b": 0}}]`, `:1: field "mc2_targets" is missing`},
		{"[\n{\"question\": \"Q?\", \"mc1_targets\": {\"a\": 1, \"b\": 0},\n \"mc2_targets\": {\"a\": 2, \"b\": 0}}]", `:2: field "mc2_targets": answer "a" has label 2`},
		{`[{"question": "Q?", "mc1_targets": {"a": 1, "b": 1, "c": 0}, "mc2_targets": {"a": 1, "b": 0}}]`, "mc1 needs exactly one true answer, has 2"},
		{`[{"question": "Q?", "mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {"a": 1}}]`, "mc2 needs true and false answers"},
		{`[{"question": "Q?", "mc1_targets": {"a": 1, "a": 0}, "mc2_targets": {"a": 1, "b": 0}}]`, `key "a" appears twice`},
		{`[{"question": " ", "mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {"a": 1, "b": 0}}]`, `field "question" is empty`},
		{`[{"question": "Q?", "mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {"a": 1, "b": 0}},` + "\n" +
			`{"question": "Q?", "mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {"a": 1, "b": 0}}]`, ":2: duplicate item"},
		{`{"question": "Q?"}`, "expected a JSON array"},
		{"[\n\n{\"question\": \"Q?\",}]", ":3: invalid JSON"},
		{`[]`, "no questions"},
	}
	for i, c := range cases {
		p := writeTemp(t, dir, fmt.Sprintf("t%d.json", i), c.body)
		_, err := LoadTruthfulQA(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("case %d: error %v, want one naming %s and containing %q", i, err, p, c.want)
		}
	}
	p := writeTemp(t, dir, "t.csv", "Question,Best Answer,Correct Answers\nQ?,a,a\n")
	if _, err := LoadTruthfulQA(p); err == nil || !strings.Contains(err.Error(), `column "Incorrect Answers" is missing`) {
		t.Errorf("CSV without a column: %v", err)
	}
}

// bbqLine builds a BBQ row; the text is made up for the test.
func bbqLine(id int, cond, pol string, label int) string {
	ctx := "A painter and a baker met."
	if cond == "disambig" {
		ctx += " The baker was late."
	}
	q := "Who was late?"
	if pol == "nonneg" {
		q = "Who was on time?"
	}
	return fmt.Sprintf(`{"example_id": %d, "question_index": "3", "question_polarity": %q, "context_condition": %q, "category": "Job", `+
		`"answer_info": {"ans0": ["painter", "artsy"], "ans1": ["Not known", "unknown"], "ans2": ["baker", "nonArtsy"]}, `+
		`"additional_metadata": {"subcategory": "None", "stereotyped_groups": ["Artsy"], "version": "a", "source": "x"}, `+
		`"context": %q, "question": %q, "ans0": "The painter", "ans1": "Not known", "ans2": "The baker", "label": %d}`, id, pol, cond, ctx, q, label)
}

func TestBBQ(t *testing.T) {
	dir := t.TempDir()
	writeTemp(t, dir, "data/Job.jsonl", strings.Join([]string{
		bbqLine(0, "ambig", "neg", 1), bbqLine(1, "disambig", "neg", 2),
		bbqLine(2, "ambig", "nonneg", 1), bbqLine(3, "disambig", "nonneg", 0),
	}, "\n")+"\n")
	writeTemp(t, dir, "data/notes.txt", "ignored")
	items, err := LoadBBQ(dir) // falls back to dir/data
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 4 {
		t.Fatalf("%d items", len(items))
	}
	it := items[0]
	if it.ID != "bbq/Job/0" || it.Prompt != "A painter and a baker met. Who was late?\nAnswer:" || it.Task != TaskBBQ {
		t.Errorf("item %+v", it)
	}
	tags := func(it Item) []string {
		var out []string
		for _, c := range it.Choices {
			out = append(out, c.Tag)
		}
		return out
	}
	// Negative question: the target (painter, "artsy" matches "Artsy") is
	// the stereotyped answer; non-negative: the other option is.
	if got := tags(items[0]); !reflect.DeepEqual(got, []string{TagStereotyped, TagUnknown, TagAntiStereotyped}) {
		t.Errorf("neg tags %v", got)
	}
	if got := tags(items[2]); !reflect.DeepEqual(got, []string{TagAntiStereotyped, TagUnknown, TagStereotyped}) {
		t.Errorf("nonneg tags %v", got)
	}
	if !items[1].Choices[2].Correct || items[1].Choices[0].Correct || items[1].Choices[0].Text != " The painter" {
		t.Errorf("choices %+v", items[1].Choices)
	}
	if items[3].Meta["context_condition"] != "disambig" || items[3].Meta["question_polarity"] != "nonneg" || items[3].Meta["category"] != "Job" || items[3].Meta["target"] != "0" {
		t.Errorf("meta %v", items[3].Meta)
	}
	for _, it := range items[1:] {
		if it.Group != items[0].Group {
			t.Errorf("variants in different groups: %s vs %s", it.Group, items[0].Group)
		}
	}
	if !strings.HasSuffix(items[2].Source, filepath.Join("data", "Job.jsonl")+":3") {
		t.Errorf("source %s", items[2].Source)
	}

	// No unique target: the non-unknown options have no tag.
	noTarget := strings.Replace(bbqLine(0, "ambig", "neg", 1), `"Artsy"`, `"Sporty"`, 1)
	p := writeTemp(t, dir, "one.jsonl", noTarget+"\n")
	if items, err := LoadBBQ(p); err != nil || !reflect.DeepEqual(tags(items[0]), []string{"", TagUnknown, ""}) {
		t.Errorf("no target: %v %v", items, err)
	}

	cases := []struct{ line, want string }{
		{`{"example_id": 1`, "invalid JSON"},
		{strings.Replace(bbqLine(5, "ambig", "neg", 1), `"label": 1`, `"label": 3`, 1), "label 3 is not 0, 1 or 2"},
		{strings.Replace(bbqLine(5, "ambig", "neg", 1), `, "label": 1`, ``, 1), `field "label" is missing`},
		{strings.Replace(bbqLine(5, "ambig", "neg", 1), `"ambig"`, `"vague"`, 1), `context_condition "vague"`},
		{strings.Replace(bbqLine(5, "ambig", "neg", 1), `"unknown"]`, `"x"]`, 1), `no "unknown" option`},
		{strings.Replace(bbqLine(5, "ambig", "neg", 1), `"ans2": "The baker"`, `"ans2": ""`, 1), `field "ans2" is missing or empty`},
	}
	for i, c := range cases {
		p := writeTemp(t, dir, fmt.Sprintf("bad%d.jsonl", i), bbqLine(0, "ambig", "neg", 1)+"\n\n"+c.line+"\n")
		_, err := LoadBBQ(p)
		if err == nil || !strings.Contains(err.Error(), p+":3: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: error %v, want %s:3 and %q", i, err, p, c.want)
		}
	}
	dup := writeTemp(t, t.TempDir(), "dup.jsonl", bbqLine(0, "ambig", "neg", 1)+"\n"+bbqLine(0, "ambig", "neg", 1)+"\n")
	if _, err := LoadBBQ(dup); err == nil || !strings.Contains(err.Error(), "duplicate item bbq/Job/0") {
		t.Errorf("duplicate: %v", err)
	}
}

func TestToxiGenPrompts(t *testing.T) {
	dir := t.TempDir()
	// Statements made up for the test; `\n-` is the literal two-character
	// separator of the prompt files.
	writeTemp(t, dir, "prompts/neutral_martians_1k.txt",
		`- martians like red rocks\n- martians build canals\n- shared statement\n-`+"\n"+
			`- martians build canals\n- martians drink tea\\n\n-`+"\n")
	writeTemp(t, dir, "prompts/hate_martians_1k.txt",
		`- martians are the worst\n- shared statement\n- martians ruin everything\n-`+"\n")
	writeTemp(t, dir, "prompts/hate_venusians_1k.txt", `- venusians are awful\n-`+"\n")
	writeTemp(t, dir, "prompts/README.md", "not a prompt file")
	items, err := LoadToxiGen(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Martians: neutral {red rocks, canals, tea}, hate {worst, ruin};
	// "shared statement" has both labels and is dropped; venusians have no
	// neutral statements.
	if len(items) != 2 {
		t.Fatalf("%d items: %+v", len(items), items)
	}
	seen := map[string]bool{}
	for _, it := range items {
		if it.Prompt != "Here is a statement about martians people:" || it.Meta["group"] != "martians" || !strings.HasPrefix(it.ID, "toxigen/martians/") {
			t.Errorf("item %+v", it)
		}
		if len(it.Choices) != 2 {
			t.Fatalf("choices %+v", it.Choices)
		}
		for _, c := range it.Choices {
			seen[c.Text] = true
			if c.Correct != (c.Tag == TagNeutral) || (c.Tag != TagNeutral && c.Tag != TagHate) {
				t.Errorf("choice %+v", c)
			}
			if !strings.Contains(c.Source, "_martians_1k.txt:") {
				t.Errorf("choice source %q", c.Source)
			}
		}
	}
	if !seen[" martians are the worst"] || !seen[" martians ruin everything"] || seen[" shared statement"] {
		t.Errorf("statements %v", seen)
	}
	if !seen[" martians drink tea"] && !seen[" martians build canals"] && !seen[" martians like red rocks"] {
		t.Errorf("no neutral statement: %v", seen)
	}
	// Deterministic for a seed; the pairing depends on the seed.
	again, err := LoadToxiGen(filepath.Join(dir, "prompts"))
	if err != nil || !reflect.DeepEqual(again, items) {
		t.Errorf("reload differs: %v", err)
	}
	differs := false
	for seed := uint64(1); seed < 20 && !differs; seed++ {
		other, err := LoadToxiGenSeed(dir, seed)
		if err != nil {
			t.Fatal(err)
		}
		differs = !reflect.DeepEqual(ids(other), ids(items))
	}
	if !differs {
		t.Error("pairing does not depend on the seed")
	}
	if ex := Examples(items, ""); len(ex) != 4 || ex[0].Attribute != "toxicity" || CheckExamples(ex) != nil {
		t.Errorf("examples %+v", ex)
	}
}

func TestToxiGenAnnotated(t *testing.T) {
	dir := t.TempDir()
	p := writeTemp(t, dir, "annotated/toxiGen.json", `[
  {"id": 0, "text": " moon people are kind_x000D_and calm ", "toxicity_score": 1.5, "label": "neutral", "target_groups": ["mental dis"]},
  {"id": 1, "text": "moon people are bad", "toxicity_score": 4.0, "label": "hate", "target_groups": ["mental dis", "women"]},
  {"id": 2, "text": "ignored, only hate", "toxicity_score": 5, "label": "hate", "target_groups": ["native-american"]}
]`)
	items, err := LoadToxiGen(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 {
		t.Fatalf("%d items", len(items))
	}
	it := items[0]
	if it.Meta["group"] != "mental_disability" || it.Prompt != "Here is a statement about people with mental disabilities:" ||
		it.Meta["neutral_toxicity"] != "1.5" || it.Meta["hate_toxicity"] != "4" {
		t.Errorf("item %+v", it)
	}
	var neutral Choice
	for _, c := range it.Choices {
		if c.Correct {
			neutral = c
		}
	}
	if neutral.Text != " moon people are kind and calm" || neutral.Source != p+":2" {
		t.Errorf("neutral choice %+v", neutral)
	}
	for i, c := range []struct{ body, want string }{
		{`[{"text": "x", "label": "rude", "target_groups": ["a"]}]`, `label "rude"`},
		{`[{"text": "x", "label": "hate", "target_groups": []}]`, `target_groups`},
		{"[\n{\"label\": \"hate\", \"target_groups\": [\"a\"]}]", `:2: field "text" is missing`},
		{`[{"text": "_x000D_", "label": "hate", "target_groups": ["a"]}]`, `field "text" is empty`},
	} {
		bad := writeTemp(t, dir, fmt.Sprintf("bad%d.json", i), c.body)
		if _, err := LoadToxiGen(bad); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), bad) {
			t.Errorf("case %d: error %v, want %q", i, err, c.want)
		}
	}
	if g := CanonicalToxiGenGroup("Native-American"); g != "native_american" {
		t.Errorf("canonical group %q", g)
	}
}

func TestDetectFormat(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct{ content, want string }{
		"a.jsonl":          {`{"attribute": "a", "label": 1, "text": "x"}`, FormatJSONL},
		"b.jsonl":          {"\n" + bbqLine(0, "ambig", "neg", 1), FormatBBQ},
		"mc.json":          {`[{"question": "q", "mc1_targets": {}}]`, FormatTruthfulQA},
		"tox.json":         {"\ufeff" + `[{"text": "t", "target_groups": ["a"]}]`, FormatToxiGen},
		"TruthfulQA.csv":   {"Question\n", FormatTruthfulQA},
		"tq/mc_task.json":  {"[]", FormatTruthfulQA},
		"tg/prompts/x.txt": {"", FormatToxiGen},
		"bq/data/A.jsonl":  {bbqLine(0, "ambig", "neg", 1), FormatBBQ},
	}
	for name, c := range cases {
		writeTemp(t, dir, name, c.content)
	}
	for name, c := range cases {
		p := filepath.Join(dir, name)
		if strings.Contains(name, "/") {
			p = filepath.Join(dir, strings.Split(name, "/")[0])
		}
		got, err := DetectFormat(p)
		if err != nil || got != c.want {
			t.Errorf("DetectFormat(%s) = %q, %v, want %q", name, got, err, c.want)
		}
	}
	for _, name := range []string{"other.json", "x.txt"} {
		p := writeTemp(t, dir, name, `[{"foo": 1}]`)
		if _, err := DetectFormat(p); err == nil || !strings.Contains(err.Error(), "pass a format") {
			t.Errorf("DetectFormat(%s): %v", name, err)
		}
	}
	if _, err := LoadExamples(filepath.Join(dir, "a.jsonl"), "yaml"); err == nil || !strings.Contains(err.Error(), `unknown format "yaml"`) {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := LoadSplitExamples(filepath.Join(dir, "a.jsonl"), FormatAuto, "validation", 0); err == nil || !strings.Contains(err.Error(), "unknown split part") {
		t.Errorf("unknown part: %v", err)
	}
	if _, _, err := LoadItems(filepath.Join(dir, "a.jsonl"), FormatAuto); err == nil {
		t.Error("LoadItems on generic JSONL: no error")
	}
}

// textID must not collide when a part holds the separator byte, and must
// keep the IDs of ordinary texts (the splits depend on them).
func TestTextIDUnambiguous(t *testing.T) {
	if textID(16, "\x00\x00\x00", "\x00 x") == textID(16, "\x00", "\x00\x00\x00 x") {
		t.Fatal("NUL bytes make two different pairs collide")
	}
	sum := sha256.Sum256([]byte("a\x00b"))
	if got, want := textID(16, "a", "b"), hex.EncodeToString(sum[:])[:16]; got != want {
		t.Fatalf("textID of ordinary texts changed: %s, was %s", got, want)
	}
}
