package datasets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/matsteer/matsteer/internal/safefile"
)

// jsonlKeys are the keys a generic JSONL line may have.
var jsonlKeys = map[string]bool{"attribute": true, "label": true, "prompt": true, "response": true, "text": true, "id": true, "meta": true}

// LoadJSONL loads generic labelled examples (see the package documentation
// for the line format). It checks every line on its own; CheckExamples
// checks the set (both classes per attribute). SampleID is
// SampleID("{file base name}:{line}", 0), so examples from files with
// different names never share one. path must be a regular file of at most
// MaxFileBytes.
func LoadJSONL(path string) ([]Example, error) {
	f, r, err := openData(path)
	if err != nil {
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	defer f.Close()
	return parseJSONL(r, path)
}

// parseJSONL parses generic JSONL examples from r; name is used in sources
// and errors.
func parseJSONL(r io.Reader, name string) ([]Example, error) {
	var out []Example
	base := filepath.Base(name)
	var lineErr error
	err := eachLine(r, func(line []byte, n int) error {
		src := fmt.Sprintf("%s:%d", name, n)
		ex, err := jsonlExample(line)
		if err != nil {
			lineErr = fmt.Errorf("jsonl: %s: %v", src, err)
			return lineErr
		}
		ex.SampleID = SampleID(fmt.Sprintf("%s:%d", base, n), 0)
		ex.Source = src
		if ex.ItemID == "" {
			ex.ItemID = fmt.Sprintf("%s:%d", base, n)
		}
		out = append(out, ex)
		return nil
	})
	if err != nil {
		if err == lineErr {
			return nil, err
		}
		return nil, fmt.Errorf("jsonl: %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("jsonl: %s: no examples", name)
	}
	return out, nil
}

// jsonlExample parses one line.
func jsonlExample(line []byte) (Example, error) {
	var ex Example
	fs, err := orderedObject(line)
	if err != nil {
		return ex, err
	}
	var unknown []string
	for _, f := range fs {
		if !jsonlKeys[f.Key] {
			unknown = append(unknown, safefile.Quote(f.Key))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return ex, fmt.Errorf("unknown field %s (allowed: attribute, label, prompt, response, text, id, meta)", strings.Join(unknown, ", "))
	}
	m := fieldMap(fs)
	if ex.Attribute, err = getNonEmpty(m, "attribute"); err != nil {
		return ex, err
	}
	ex.Attribute = strings.TrimSpace(ex.Attribute)
	lv, ok := m["label"]
	if !ok {
		return ex, fmt.Errorf("field \"label\" is missing")
	}
	if ex.Label, err = parseLabel(lv); err != nil {
		return ex, err
	}
	_, hasText := m["text"]
	_, hasPrompt := m["prompt"]
	_, hasResp := m["response"]
	switch {
	case hasText && (hasPrompt || hasResp):
		return ex, fmt.Errorf("field \"text\" cannot be combined with \"prompt\" or \"response\"")
	case hasText:
		if ex.Prompt, err = getNonEmpty(m, "text"); err != nil {
			return ex, err
		}
	case hasPrompt:
		if ex.Prompt, err = getString(m, "prompt"); err != nil {
			return ex, err
		}
		if hasResp {
			if ex.Response, err = getString(m, "response"); err != nil {
				return ex, err
			}
		}
		if strings.TrimSpace(ex.Prompt+ex.Response) == "" {
			return ex, fmt.Errorf("fields \"prompt\" and \"response\" are both empty")
		}
	default:
		return ex, fmt.Errorf("field \"prompt\" (or \"text\") is missing")
	}
	if v, ok := m["id"]; ok {
		if ex.ItemID, err = parseID(v); err != nil {
			return ex, err
		}
	}
	return ex, nil
}

// parseLabel accepts the JSON numbers 1 and 0 only.
func parseLabel(v json.RawMessage) (int, error) {
	v = bytes.TrimSpace(v)
	var num json.Number
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err == nil {
		num, _ = x.(json.Number)
	}
	if num != "" {
		if f, err := num.Float64(); err == nil && (f == 0 || f == 1) && !math.Signbit(f) {
			return int(f), nil
		}
	}
	return 0, fmt.Errorf("field \"label\": must be 1 (positive) or 0 (negative), got %s", clip(string(v)))
}

// parseID accepts a non-empty string or an integer (5 and "5" are the same
// id).
func parseID(v json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err == nil && !isNull(v) {
		if strings.TrimSpace(s) == "" {
			return "", fmt.Errorf("field \"id\" is empty")
		}
		return s, nil
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err == nil {
		if num, ok := x.(json.Number); ok {
			if _, err := num.Int64(); err == nil {
				return num.String(), nil
			}
		}
	}
	return "", fmt.Errorf("field \"id\": want a string or an integer, got %s", clip(string(v)))
}
