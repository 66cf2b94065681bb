package datasets

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TruthfulQAPrompt returns the prompt for a TruthfulQA question.
func TruthfulQAPrompt(question string) string {
	return "Q: " + strings.TrimSpace(question) + "\nA:"
}

// answerText returns the choice text for an answer: a space and the trimmed
// answer.
func answerText(s string) string { return " " + strings.TrimSpace(s) }

// ResolveTruthfulQA returns the file LoadTruthfulQA reads for path: path
// itself when it is a file; for a directory the first that exists of
// data/v0/mc_task.json, v0/mc_task.json, data/mc_task.json, mc_task.json,
// TruthfulQA.csv.
func ResolveTruthfulQA(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return path, nil
	}
	for _, c := range []string{"data/v0/mc_task.json", "v0/mc_task.json", "data/mc_task.json", "mc_task.json", "TruthfulQA.csv"} {
		p := filepath.Join(path, filepath.FromSlash(c))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: no TruthfulQA file (data/v0/mc_task.json, mc_task.json or TruthfulQA.csv) in this directory", path)
}

// LoadTruthfulQA loads TruthfulQA multiple-choice items from mc_task.json or
// TruthfulQA.csv (chosen by extension), or from a TruthfulQA directory (see
// ResolveTruthfulQA).
func LoadTruthfulQA(path string) ([]Item, error) {
	file, err := ResolveTruthfulQA(path)
	if err != nil {
		return nil, fmt.Errorf("truthfulqa: %w", err)
	}
	data, err := readFile(file)
	if err != nil {
		return nil, fmt.Errorf("truthfulqa: %w", err)
	}
	if strings.EqualFold(filepath.Ext(file), ".csv") {
		return parseTruthfulQACSV(bytes.NewReader(data), file)
	}
	return parseTruthfulQAJSON(data, file)
}

// truthfulQAItem builds an item, checking the answer sets.
func truthfulQAItem(question string, mc1, mc2 []Choice, src string, meta map[string]string) (Item, error) {
	if strings.TrimSpace(question) == "" {
		return Item{}, fmt.Errorf("%s: empty question", src)
	}
	check := func(name string, cs []Choice, exactlyOne bool) error {
		var t, f int
		for _, c := range cs {
			if strings.TrimSpace(c.Text) == "" {
				return fmt.Errorf("%s: %s: empty answer", src, name)
			}
			if c.Correct {
				t++
			} else {
				f++
			}
		}
		if t == 0 || f == 0 {
			return fmt.Errorf("%s: %s needs true and false answers, has %d true and %d false", src, name, t, f)
		}
		if exactlyOne && t != 1 {
			return fmt.Errorf("%s: %s needs exactly one true answer, has %d", src, name, t)
		}
		return nil
	}
	if err := check("mc1", mc1, true); err != nil {
		return Item{}, err
	}
	if err := check("mc2", mc2, false); err != nil {
		return Item{}, err
	}
	return Item{
		Task:    TaskTruthfulQA,
		ID:      "truthfulqa/" + textID(16, strings.TrimSpace(question)),
		Prompt:  TruthfulQAPrompt(question),
		Choices: mc2,
		MC1:     mc1,
		Meta:    meta,
		Source:  src,
	}, nil
}

// checkUniqueIDs rejects two items with the same ID.
func checkUniqueIDs(items []Item) error {
	seen := make(map[string]string, len(items))
	for _, it := range items {
		if prev, ok := seen[it.ID]; ok {
			return fmt.Errorf("%s: duplicate item %s (first at %s)", it.Source, clip(it.ID), prev)
		}
		seen[it.ID] = it.Source
	}
	return nil
}

func parseTruthfulQAJSON(data []byte, name string) ([]Item, error) {
	var items []Item
	err := eachArrayElement(data, name, func(raw json.RawMessage, line int) error {
		src := fmt.Sprintf("%s:%d", name, line)
		fs, err := orderedObject(raw)
		if err != nil {
			return fmt.Errorf("%s: %v", src, err)
		}
		m := fieldMap(fs)
		q, err := getNonEmpty(m, "question")
		if err != nil {
			return fmt.Errorf("%s: %v", src, err)
		}
		targets := func(key, tag string) ([]Choice, error) {
			v, ok := m[key]
			if !ok {
				return nil, fmt.Errorf("%s: field %q is missing", src, key)
			}
			tf, err := orderedObject(v)
			if err != nil {
				return nil, fmt.Errorf("%s: field %q: %v", src, key, err)
			}
			cs := make([]Choice, 0, len(tf))
			for _, t := range tf {
				var lab int
				if err := json.Unmarshal(t.Value, &lab); err != nil || (lab != 0 && lab != 1) {
					return nil, fmt.Errorf("%s: field %q: answer %q has label %s, want 1 or 0", src, key, clip(t.Key), clip(string(t.Value)))
				}
				cs = append(cs, Choice{Text: answerText(t.Key), Correct: lab == 1, Tag: tag})
			}
			return cs, nil
		}
		mc1, err := targets("mc1_targets", TagMC1)
		if err != nil {
			return err
		}
		mc2, err := targets("mc2_targets", TagMC2)
		if err != nil {
			return err
		}
		it, err := truthfulQAItem(q, mc1, mc2, src, map[string]string{"index": strconv.Itoa(len(items))})
		if err != nil {
			return err
		}
		items = append(items, it)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("truthfulqa: %w", err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("truthfulqa: %s: no questions", name)
	}
	if err := checkUniqueIDs(items); err != nil {
		return nil, fmt.Errorf("truthfulqa: %w", err)
	}
	return items, nil
}

// splitAnswers splits a ";"-separated CSV answer list the way TruthfulQA's
// own code does: trim every answer, drop empty ones, and end each with ".".
// Duplicates are dropped.
func splitAnswers(s string) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range strings.Split(s, ";") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if !strings.HasSuffix(a, ".") {
			a += "."
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

func parseTruthfulQACSV(r io.Reader, name string) ([]Item, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("truthfulqa: %s:1: reading header: %v", name, err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	for _, need := range []string{"Question", "Best Answer", "Correct Answers", "Incorrect Answers"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("truthfulqa: %s:1: column %q is missing (want a TruthfulQA.csv header)", name, need)
		}
	}
	var items []Item
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("truthfulqa: %s: %v", name, err)
		}
		line, _ := cr.FieldPos(0)
		src := fmt.Sprintf("%s:%d", name, line)
		get := func(c string) string {
			if i := col[c]; i < len(rec) {
				return rec[i]
			}
			return ""
		}
		best := splitAnswers(get("Best Answer"))
		if len(best) != 1 {
			return nil, fmt.Errorf("truthfulqa: %s: want one best answer, got %d", src, len(best))
		}
		correct, incorrect := splitAnswers(get("Correct Answers")), splitAnswers(get("Incorrect Answers"))
		mc1 := []Choice{{Text: answerText(best[0]), Correct: true, Tag: TagMC1}}
		var mc2 []Choice
		for _, a := range correct {
			mc2 = append(mc2, Choice{Text: answerText(a), Correct: true, Tag: TagMC2})
		}
		for _, a := range incorrect {
			mc1 = append(mc1, Choice{Text: answerText(a), Tag: TagMC1})
			mc2 = append(mc2, Choice{Text: answerText(a), Tag: TagMC2})
		}
		meta := map[string]string{"index": strconv.Itoa(len(items))}
		for _, k := range []string{"Type", "Category", "Source"} {
			if v := get(k); v != "" {
				meta[strings.ToLower(k)] = v
			}
		}
		it, err := truthfulQAItem(get("Question"), mc1, mc2, src, meta)
		if err != nil {
			return nil, fmt.Errorf("truthfulqa: %w", err)
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("truthfulqa: %s: no questions", name)
	}
	if err := checkUniqueIDs(items); err != nil {
		return nil, fmt.Errorf("truthfulqa: %w", err)
	}
	return items, nil
}
