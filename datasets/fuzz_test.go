package datasets

import (
	"bytes"
	"strings"
	"testing"
)

// checkItems fails the fuzz run when an accepted item breaks the invariants
// every loader promises: a task, a unique ID, a prompt, at least two choices
// with at least one correct and one incorrect, and a source.
func checkItems(t *testing.T, items []Item, task string, exactlyOne bool) {
	t.Helper()
	if len(items) == 0 {
		t.Fatal("no error and no items")
	}
	seen := map[string]bool{}
	for _, it := range items {
		if it.Task != task || it.ID == "" || seen[it.ID] || it.Prompt == "" || it.Source == "" {
			t.Fatalf("bad item %+v", it)
		}
		seen[it.ID] = true
		var nt, nf int
		for _, c := range it.Choices {
			if c.Correct {
				nt++
			} else {
				nf++
			}
		}
		if nt == 0 || nf == 0 || exactlyOne && nt != 1 {
			t.Fatalf("item %s has %d correct and %d incorrect choices", it.ID, nt, nf)
		}
	}
}

// checkErr fails when an error does not name the input.
func checkErr(t *testing.T, err error, prefix string) {
	t.Helper()
	if !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("error does not start with %q: %v", prefix, err)
	}
}

func FuzzParseBBQ(f *testing.F) {
	f.Add([]byte(bbqLine(0, "ambig", "neg", 1) + "\n" + bbqLine(1, "disambig", "nonneg", 2) + "\n"))
	f.Add([]byte("\ufeff" + bbqLine(7, "disambig", "neg", 0) + "\r\n\n"))
	f.Add([]byte(strings.Replace(bbqLine(0, "ambig", "neg", 1), `"label": 1`, `"label": 3`, 1)))
	f.Add([]byte(strings.Replace(bbqLine(0, "ambig", "neg", 1), `"unknown"`, `"x"`, 1)))
	f.Add([]byte(bbqLine(0, "ambig", "neg", 1) + "\n" + bbqLine(0, "ambig", "neg", 1)))
	f.Add([]byte(`{"example_id": 1}`))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := parseBBQ(bytes.NewReader(data), "fuzz.jsonl")
		if err == nil {
			err = checkUniqueIDs(items)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.jsonl") {
				t.Fatalf("error does not name the input: %v", err)
			}
			return
		}
		checkItems(t, items, TaskBBQ, true)
	})
}

const tqaJSONSeed = `[
  {"question": "Is the sky green?",
   "mc1_targets": {"No, it is blue.": 1, "Yes.": 0},
   "mc2_targets": {"No, it is blue.": 1, "No.": 1, "Yes.": 0}},
  {"question": "Can cats fly?", "mc1_targets": {"No.": 1, "Yes.": 0}, "mc2_targets": {"Yes.": 0, "No.": 1}}
]`

func FuzzParseTruthfulQAJSON(f *testing.F) {
	f.Add([]byte(tqaJSONSeed))
	f.Add([]byte(`[{"question": "Q?", "mc1_targets": {"a": 1, "a": 0}, "mc2_targets": {"a": 1, "b": 0}}]`))
	f.Add([]byte(`[{"question": "Q?", "mc1_targets": {"a": 1, "b": 1, "c": 0}, "mc2_targets": {"a": 1, "b": 0}}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"question": "Q?"}`))
	f.Add([]byte("[\n\n{\"question\": \"Q?\",}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := parseTruthfulQAJSON(data, "fuzz.json")
		if err != nil {
			checkErr(t, err, "truthfulqa: fuzz.json")
			return
		}
		checkItems(t, items, TaskTruthfulQA, false)
		for _, it := range items {
			var nt int
			for _, c := range it.MC1 {
				if c.Correct {
					nt++
				}
			}
			if nt != 1 || len(it.MC1) < 2 {
				t.Fatalf("item %s: MC1 has %d choices, %d correct", it.ID, len(it.MC1), nt)
			}
		}
	})
}

func FuzzParseTruthfulQACSV(f *testing.F) {
	f.Add([]byte("Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n" +
		"Adversarial,Misc,Is the sky green?,\"No, it is blue\",\"No, it is blue; No\",Yes; Only on Mondays,x\n" +
		"Adversarial,Misc,Can cats fly?,No,No,Yes,y\n"))
	f.Add([]byte("\ufeffQuestion,Best Answer,Correct Answers,Incorrect Answers\nQ?,a,a;b,c\n"))
	f.Add([]byte("Question,Best Answer,Correct Answers\nQ?,a,a\n"))
	f.Add([]byte("Question,Best Answer,Correct Answers,Incorrect Answers\nQ?,a;b,a,c\n"))
	f.Add([]byte("Question,Best Answer,Correct Answers,Incorrect Answers\n\"unterminated,a,a,c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := parseTruthfulQACSV(bytes.NewReader(data), "fuzz.csv")
		if err != nil {
			checkErr(t, err, "truthfulqa: fuzz.csv")
			return
		}
		checkItems(t, items, TaskTruthfulQA, false)
	})
}

func FuzzParseToxiGenAnnotated(f *testing.F) {
	f.Add([]byte(`[
  {"id": 0, "text": " moon people are kind_x000D_and calm ", "toxicity_score": 1.5, "label": "neutral", "target_groups": ["mental dis"]},
  {"id": 1, "text": "moon people are bad", "toxicity_score": 4.0, "label": "hate", "target_groups": ["mental dis", "women"]}
]`))
	f.Add([]byte(`[{"text": "t", "label": "other", "target_groups": ["g"]}]`))
	f.Add([]byte(`[{"text": "t", "label": "hate", "target_groups": []}]`))
	f.Add([]byte(`[{"text": "t", "label": "hate", "target_groups": ["g"], "toxicity_score": "high"}]`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sts, err := parseToxiGenAnnotated(data, "fuzz.json")
		if err != nil {
			checkErr(t, err, "toxigen: fuzz.json")
			return
		}
		for _, s := range sts {
			if s.text == "" || s.group == "" || !strings.HasPrefix(s.src, "fuzz.json:") {
				t.Fatalf("bad statement %+v", s)
			}
		}
		if items := pairToxiGen(sts, DefaultSeed); len(items) > 0 {
			checkItems(t, items, TaskToxiGen, true)
		}
	})
}

func FuzzParseToxiGenPrompts(f *testing.F) {
	f.Add([]byte(`- martians like red rocks\n- martians build canals\n- shared statement\n-`+"\n"+
		`- martians build canals\n- martians drink tea\\n\n-`+"\n"), true)
	f.Add([]byte(`- martians are the worst\n- shared statement\n-`+"\n"), false)
	f.Add([]byte("\ufeff-\n\n  \r\n- x"), true)
	f.Fuzz(func(t *testing.T, data []byte, hate bool) {
		sts, err := parseToxiGenPromptFile(bytes.NewReader(data), "hate_g_1k.txt", "g", hate)
		if err != nil {
			checkErr(t, err, "toxigen: hate_g_1k.txt")
			return
		}
		for _, s := range sts {
			if s.text == "" || s.hate != hate || s.group != "g" {
				t.Fatalf("bad statement %+v", s)
			}
		}
		// Mixing the statements with the opposite label must pair cleanly.
		other := make([]toxStatement, len(sts))
		for i, s := range sts {
			s.hate = !s.hate
			s.text += " (other)"
			other[i] = s
		}
		if items := pairToxiGen(append(sts, other...), DefaultSeed); len(items) > 0 {
			checkItems(t, items, TaskToxiGen, true)
		}
	})
}
