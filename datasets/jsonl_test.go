package datasets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTemp(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadJSONL(t *testing.T) {
	dir := t.TempDir()
	p := writeTemp(t, dir, "ex.jsonl", "\ufeff"+`{"attribute": "politeness", "label": 1, "prompt": "Say hi.", "response": " Hello there!"}`+"\r\n"+
		"\n"+
		`{"attribute": "politeness", "label": 0, "text": "Go away.", "id": 7}`+"\n"+
		`   `+"\n"+
		`{"attribute": " politeness ", "label": 1.0, "prompt": "", "response": "Thanks!", "id": "pair-1", "meta": {"any": ["thing"]}}`)
	ex, err := LoadJSONL(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []Example{
		{Attribute: "politeness", Label: 1, Prompt: "Say hi.", Response: " Hello there!", SampleID: SampleID("ex.jsonl:1", 0), ItemID: "ex.jsonl:1", Source: p + ":1"},
		{Attribute: "politeness", Label: 0, Prompt: "Go away.", SampleID: SampleID("ex.jsonl:3", 0), ItemID: "7", Source: p + ":3"},
		{Attribute: "politeness", Label: 1, Response: "Thanks!", SampleID: SampleID("ex.jsonl:5", 0), ItemID: "pair-1", Source: p + ":5"},
	}
	if len(ex) != len(want) {
		t.Fatalf("%d examples, want %d: %+v", len(ex), len(want), ex)
	}
	for i := range want {
		if ex[i] != want[i] {
			t.Errorf("example %d = %+v, want %+v", i, ex[i], want[i])
		}
	}
	if err := CheckExamples(ex); err != nil {
		t.Error(err)
	}
	if got, err := LoadExamples(p, FormatAuto); err != nil || len(got) != 3 {
		t.Errorf("LoadExamples(auto) = %d examples, %v", len(got), err)
	}
}

func TestLoadJSONLErrors(t *testing.T) {
	good := `{"attribute": "a", "label": 1, "prompt": "p", "response": "r"}`
	cases := []struct {
		name, line3, want string
	}{
		{"malformed", `{"attribute": "a", "label": 1, "prompt": "p"`, "invalid JSON"},
		{"not an object", `["a", 1]`, "expected a JSON object, got an array"},
		{"trailing data", good + ` {}`, "data after the object"},
		{"duplicate key", `{"attribute": "a", "label": 1, "label": 0, "prompt": "p"}`, `key "label" appears twice`},
		{"no attribute", `{"label": 1, "prompt": "p"}`, `field "attribute" is missing`},
		{"empty attribute", `{"attribute": " ", "label": 1, "prompt": "p"}`, `field "attribute" is empty`},
		{"attribute not string", `{"attribute": 3, "label": 1, "prompt": "p"}`, `field "attribute": want a string`},
		{"no label", `{"attribute": "a", "prompt": "p"}`, `field "label" is missing`},
		{"label 2", `{"attribute": "a", "label": 2, "prompt": "p"}`, `field "label": must be 1 (positive) or 0 (negative), got 2`},
		{"label -1", `{"attribute": "a", "label": -1, "prompt": "p"}`, `got -1`},
		{"label 0.5", `{"attribute": "a", "label": 0.5, "prompt": "p"}`, `got 0.5`},
		{"label string", `{"attribute": "a", "label": "1", "prompt": "p"}`, `got "1"`},
		{"label bool", `{"attribute": "a", "label": true, "prompt": "p"}`, `got true`},
		{"label null", `{"attribute": "a", "label": null, "prompt": "p"}`, `got null`},
		{"no text", `{"attribute": "a", "label": 1}`, `field "prompt" (or "text") is missing`},
		{"empty text", `{"attribute": "a", "label": 1, "text": "  "}`, `field "text" is empty`},
		{"empty prompt and response", `{"attribute": "a", "label": 1, "prompt": "", "response": " "}`, `both empty`},
		{"text and prompt", `{"attribute": "a", "label": 1, "text": "t", "prompt": "p"}`, `cannot be combined`},
		{"prompt not string", `{"attribute": "a", "label": 1, "prompt": ["p"]}`, `field "prompt": want a string`},
		{"unknown field", `{"attribute": "a", "label": 1, "prompt": "p", "reponse": "r"}`, `unknown field "reponse"`},
		{"bad id", `{"attribute": "a", "label": 1, "prompt": "p", "id": 1.5}`, `field "id"`},
		{"empty id", `{"attribute": "a", "label": 1, "prompt": "p", "id": ""}`, `field "id" is empty`},
	}
	dir := t.TempDir()
	for _, c := range cases {
		p := writeTemp(t, dir, "bad.jsonl", good+"\n\n"+c.line3+"\n"+good+"\n")
		_, err := LoadJSONL(p)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), p+":3: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want one naming %s:3 and containing %q", c.name, err, p, c.want)
		}
	}
	if _, err := LoadJSONL(writeTemp(t, dir, "empty.jsonl", "\n \n")); err == nil || !strings.Contains(err.Error(), "no examples") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := LoadJSONL(filepath.Join(dir, "missing.jsonl")); err == nil {
		t.Error("missing file: no error")
	}
	// One-class attribute: LoadJSONL accepts the lines, LoadExamples
	// rejects the set.
	p := writeTemp(t, dir, "one.jsonl", good+"\n"+good+"\n"+strings.Replace(good, `"a"`, `"b"`, 1)+"\n"+strings.Replace(strings.Replace(good, `"a"`, `"b"`, 1), `1`, `0`, 1)+"\n")
	if _, err := LoadJSONL(p); err != nil {
		t.Fatal(err)
	}
	_, err := LoadExamples(p, FormatJSONL)
	if err == nil || !strings.Contains(err.Error(), `attribute "a" has no negative examples`) || !strings.Contains(err.Error(), p+":1") {
		t.Errorf("one-class attribute: %v", err)
	}
}

func FuzzParseJSONL(f *testing.F) {
	f.Add([]byte(`{"attribute": "a", "label": 1, "prompt": "p", "response": "r"}` + "\n" + `{"attribute": "a", "label": 0, "text": "t", "id": 3}`))
	f.Add([]byte("\ufeff{\"attribute\": \"a\", \"label\": 1.0, \"text\": \"x\"}\r\n\n"))
	f.Add([]byte(`{"attribute": "a", "label": 2, "prompt": "p"}`))
	f.Add([]byte(`{"attribute": "a", "label": 1, "prompt": "", "response": "r", "meta": {"k": [1, null]}}`))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ex, err := parseJSONL(strings.NewReader(string(data)), "fuzz.jsonl")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "jsonl: fuzz.jsonl") {
				t.Fatalf("error does not name the input: %v", err)
			}
			return
		}
		if len(ex) == 0 {
			t.Fatal("no error and no examples")
		}
		for _, e := range ex {
			if e.Label != 0 && e.Label != 1 {
				t.Fatalf("label %d accepted", e.Label)
			}
			if strings.TrimSpace(e.Attribute) == "" || strings.TrimSpace(e.Text()) == "" {
				t.Fatalf("empty attribute or text accepted: %+v", e)
			}
			if e.ItemID == "" || !strings.HasPrefix(e.Source, "fuzz.jsonl:") {
				t.Fatalf("missing item id or source: %+v", e)
			}
		}
	})
}
