package datasets

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestPairItems(t *testing.T) {
	dir := t.TempDir()
	p := writeTemp(t, dir, "my.jsonl", strings.Join([]string{
		`{"attribute": "formality", "label": 1, "prompt": "Q: Hi?\nA:", "response": " Good day."}`,
		`{"attribute": "formality", "label": 0, "prompt": "Q: Hi?\nA:", "response": " yo"}`,
		`{"attribute": "formality", "label": 0, "prompt": "Q: Hi?\nA:", "response": " sup"}`,
		`{"attribute": "positivity", "label": 1, "prompt": "Q: Hi?\nA:", "response": " Great!"}`, // one-sided: positivity has no 0 here
		`{"attribute": "formality", "label": 1, "prompt": "Q: Bye?\nA:", "response": " Farewell."}`,
		`{"attribute": "formality", "label": 0, "text": "Q: Bye?\nA: cya"}`, // no response: cannot be paired
		`{"attribute": "formality", "label": 0, "prompt": "Q: Bye?\nA:", "response": " cya"}`,
		`{"attribute": "formality", "label": 0, "prompt": "Q: Bye?\nA:", "response": " cya"}`, // duplicate
	}, "\n"))
	items, st, err := LoadPairs(p, PartAll, DefaultSeed)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || st.Items != 2 || st.NoResponse != 1 || st.OneSided != 1 || st.Duplicates != 1 || st.Examples != 8 {
		t.Fatalf("%d items, stats %+v", len(items), st)
	}
	it := items[0]
	if it.Task != TaskPairs || it.Prompt != "Q: Hi?\nA:" || it.Meta["attribute"] != "formality" || !strings.HasPrefix(it.ID, "pairs/formality/") {
		t.Errorf("item %+v", it)
	}
	if len(it.Choices) != 3 || !it.Choices[0].Correct || it.Choices[1].Correct || it.Choices[0].Tag != TagDesired || it.Choices[2].Tag != TagUndesired {
		t.Errorf("choices %+v", it.Choices)
	}
	if it.Choices[1].Source != p+":2" {
		t.Errorf("choice source %q, want %s:2", it.Choices[1].Source, p)
	}
	if items[1].ID == it.ID {
		t.Error("two prompts share an ID")
	}
	// The IDs depend on attribute and prompt only.
	again, _, _ := PairItems([]Example{
		{Attribute: "formality", Label: 0, Prompt: "Q: Hi?\nA:", Response: " other"},
		{Attribute: "formality", Label: 1, Prompt: "Q: Hi?\nA:", Response: " Good day."},
	})
	if again[0].ID != it.ID {
		t.Errorf("ID %s, then %s", it.ID, again[0].ID)
	}
	// Gate examples from pair items carry the item's attribute.
	ex := Examples(items, "")
	if len(ex) != 5 || ex[0].Attribute != "formality" || ex[0].Label != 1 || ex[1].Label != 0 {
		t.Errorf("examples %+v", ex)
	}
	if err := CheckExamples(ex); err != nil {
		t.Error(err)
	}
	// LoadItems knows the format.
	task, li, err := LoadItems(p, FormatPairs)
	if err != nil || task != TaskPairs || len(li) != 2 {
		t.Errorf("LoadItems: %v %s %d", err, task, len(li))
	}
}

func TestPairItemsErrors(t *testing.T) {
	dir := t.TempDir()
	conflict := writeTemp(t, dir, "c.jsonl", `{"attribute": "a", "label": 1, "prompt": "P", "response": " x"}`+"\n"+
		`{"attribute": "a", "label": 0, "prompt": "P", "response": " x"}`)
	if _, _, err := LoadPairs(conflict, PartAll, 0); err == nil || !strings.Contains(err.Error(), "c.jsonl:2") || !strings.Contains(err.Error(), "c.jsonl:1") {
		t.Errorf("conflicting labels: %v", err)
	}
	one := writeTemp(t, dir, "o.jsonl", `{"attribute": "a", "label": 1, "prompt": "P", "response": " x"}`+"\n"+
		`{"attribute": "a", "label": 0, "text": "P y"}`)
	if _, _, err := LoadPairs(one, PartAll, 0); err == nil || !strings.Contains(err.Error(), "no prompt has both") || !strings.Contains(err.Error(), "o.jsonl") {
		t.Errorf("no pairs: %v", err)
	}
	bad := writeTemp(t, dir, "b.jsonl", `{"attribute": "a", "label": 2, "prompt": "P", "response": " x"}`)
	if _, _, err := LoadPairs(bad, PartAll, 0); err == nil || !strings.Contains(err.Error(), "b.jsonl:1") {
		t.Errorf("bad label: %v", err)
	}
	if _, _, err := LoadPairs(one, "nope", 0); err == nil {
		t.Error("unknown part accepted")
	}
	// The JSONL split has no test part.
	if _, _, err := LoadPairs(one, PartTest, 0); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty test part: %v", err)
	}
}

// TestLoadPairsSplitFollowsExtract: with --split, pairs are built from the
// examples of that part of the JSONL split (the split extract makes), so
// a response extracted for training is never evaluated on dev.
func TestLoadPairsSplitFollowsExtract(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, `{"attribute": "a", "label": 1, "prompt": "P%d", "response": " good", "id": "q%d"}`+"\n", i, i)
		fmt.Fprintf(&b, `{"attribute": "a", "label": 0, "prompt": "P%d", "response": " bad", "id": "q%d"}`+"\n", i, i)
	}
	p := writeTemp(t, t.TempDir(), "s.jsonl", b.String())
	train, err := LoadSplitExamples(p, FormatJSONL, PartTrain, 3)
	if err != nil {
		t.Fatal(err)
	}
	inTrain := map[string]bool{}
	for _, e := range train {
		inTrain[e.Prompt] = true
	}
	dev, _, err := LoadPairs(p, PartDev, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(dev) == 0 || len(dev)+len(inTrain) != 40 {
		t.Errorf("%d dev pairs and %d training prompts, want 40 in all", len(dev), len(inTrain))
	}
	for _, it := range dev {
		if inTrain[it.Prompt] {
			t.Errorf("dev pair %s was extracted for training", it.Prompt)
		}
	}
}

// FuzzPairItems parses generic JSONL and pairs it: an accepted item has a
// unique ID, its attribute, at least one desired and one undesired
// response, distinct response texts, and its examples pass CheckExamples;
// a refusal names the input.
func FuzzPairItems(f *testing.F) {
	f.Add([]byte(`{"attribute": "a", "label": 1, "prompt": "P", "response": " x"}` + "\n" + `{"attribute": "a", "label": 0, "prompt": "P", "response": " y"}`))
	f.Add([]byte(`{"attribute": "a", "label": 1, "prompt": "P", "response": " x"}` + "\n" + `{"attribute": "a", "label": 0, "prompt": "P", "response": " x"}`))
	f.Add([]byte(`{"attribute": "a", "label": 1, "text": "P x"}` + "\n" + `{"attribute": "a", "label": 0, "prompt": "P", "response": " y"}`))
	f.Add([]byte(`{"attribute": "a", "label": 1, "prompt": "", "response": " x"}` + "\n" + `{"attribute": "b", "label": 0, "prompt": "", "response": " y", "id": 3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ex, err := parseJSONL(bytes.NewReader(data), "fuzz.jsonl")
		if err != nil {
			return
		}
		items, _, err := PairItems(ex)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.jsonl") && !strings.Contains(err.Error(), "no prompt has both") {
				t.Fatalf("error does not name the input: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, it := range items {
			if it.Task != TaskPairs || seen[it.ID] || it.Meta["attribute"] == "" {
				t.Fatalf("bad item %+v", it)
			}
			seen[it.ID] = true
			texts := map[string]bool{}
			var pos, neg int
			for _, c := range it.Choices {
				if texts[c.Text] || c.Text == "" {
					t.Fatalf("item %s: repeated or empty response %q", it.ID, c.Text)
				}
				texts[c.Text] = true
				if c.Correct {
					pos++
				} else {
					neg++
				}
			}
			if pos == 0 || neg == 0 {
				t.Fatalf("item %s: %d desired, %d undesired", it.ID, pos, neg)
			}
		}
		if err := CheckExamples(Examples(items, "")); err != nil {
			t.Fatalf("examples of pair items: %v", err)
		}
	})
}
