package datasets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/matsteer/matsteer/internal/safefile"
)

// MaxFileBytes is the largest dataset file a loader reads. JSON files are
// held in memory whole and every loaded example is kept, so the limit bounds
// memory use; the public sets are far smaller (TruthfulQA's mc_task.json is
// under 1 MB, a BBQ category file some 10 MB, the annotated ToxiGen file
// some 2 MB), and 1 GiB leaves room for large sets of one's own.
const MaxFileBytes = 1 << 30

// MaxLineBytes is the longest line a line-based file (JSONL, BBQ, ToxiGen
// prompt files) may have: a line is one example, so 16 MiB is far beyond any
// real one, and a file without newlines is refused early instead of being
// buffered whole.
const MaxLineBytes = 16 << 20

// openData opens a dataset file for streaming: a regular file of at most
// MaxFileBytes, read through a reader that stops there even if the file
// grows.
func openData(path string) (*os.File, io.Reader, error) {
	f, _, err := safefile.Open(path, MaxFileBytes)
	if err != nil {
		return nil, nil, err
	}
	return f, safefile.LimitReader(f, MaxFileBytes, path), nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// lineCounter maps byte offsets of a buffer to 1-based line numbers.
type lineCounter struct {
	newlines []int // offsets of '\n'
}

func newLineCounter(data []byte) *lineCounter {
	lc := &lineCounter{}
	for i, c := range data {
		if c == '\n' {
			lc.newlines = append(lc.newlines, i)
		}
	}
	return lc
}

// line returns the line of the first non-blank byte at or after off.
func (lc *lineCounter) line(data []byte, off int) int {
	for off < len(data) && (data[off] == ' ' || data[off] == '\t' || data[off] == '\r' || data[off] == '\n' || data[off] == ',') {
		off++
	}
	return sort.SearchInts(lc.newlines, off) + 1
}

// readFile reads a whole dataset file (a regular file of at most
// MaxFileBytes), without a leading BOM.
func readFile(path string) ([]byte, error) {
	data, err := safefile.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, err
	}
	return bytes.TrimPrefix(data, utf8BOM), nil
}

// eachArrayElement calls fn for every element of the top-level JSON array in
// data, with the element's 1-based line number.
func eachArrayElement(data []byte, name string, fn func(raw json.RawMessage, line int) error) error {
	lc := newLineCounter(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s:%d: invalid JSON: %v", name, lc.line(data, 0), err)
	}
	if tok != json.Delim('[') {
		return fmt.Errorf("%s:%d: expected a JSON array", name, lc.line(data, 0))
	}
	for dec.More() {
		line := lc.line(data, int(dec.InputOffset()))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("%s:%d: invalid JSON: %v", name, line, err)
		}
		if err := fn(raw, line); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%s:%d: invalid JSON: %v", name, lc.line(data, int(dec.InputOffset())), err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s:%d: data after the JSON array", name, lc.line(data, int(dec.InputOffset())))
	}
	return nil
}

// field is one key/value of a JSON object, in file order.
type field struct {
	Key   string
	Value json.RawMessage
}

// orderedObject decodes a JSON object keeping key order and rejecting
// duplicate keys and trailing data.
func orderedObject(raw []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("expected a JSON object, got %s", describeToken(tok))
	}
	var out []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("invalid JSON: expected an object key")
		}
		if seen[key] {
			return nil, fmt.Errorf("key %s appears twice", safefile.Quote(key))
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		out = append(out, field{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("invalid JSON: data after the object")
	}
	return out, nil
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return string(t)
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprint(tok)
}

// fieldMap indexes fields by key.
func fieldMap(fs []field) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, len(fs))
	for _, f := range fs {
		m[f.Key] = f.Value
	}
	return m
}

// getString decodes a required string field.
func getString(m map[string]json.RawMessage, key string) (string, error) {
	v, ok := m[key]
	if !ok {
		return "", fmt.Errorf("field %q is missing", key)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil || isNull(v) {
		return "", fmt.Errorf("field %q: want a string, got %s", key, clip(string(v)))
	}
	return s, nil
}

// getNonEmpty decodes a required, non-blank string field.
func getNonEmpty(m map[string]json.RawMessage, key string) (string, error) {
	s, err := getString(m, key)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("field %q is empty", key)
	}
	return s, nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// clip shortens a value for an error message.
func clip(s string) string {
	const n = 60
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "..."
	}
	return s
}
