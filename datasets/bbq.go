package datasets

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/matsteer/matsteer/internal/safefile"
)

// BBQPrompt returns the prompt for a BBQ context and question.
func BBQPrompt(context, question string) string {
	return strings.TrimSpace(context) + " " + strings.TrimSpace(question) + "\nAnswer:"
}

// bbqRow is one BBQ line.
type bbqRow struct {
	ExampleID          *int64              `json:"example_id"`
	QuestionIndex      json.RawMessage     `json:"question_index"`
	QuestionPolarity   string              `json:"question_polarity"`
	ContextCondition   string              `json:"context_condition"`
	Category           string              `json:"category"`
	AnswerInfo         map[string][]string `json:"answer_info"`
	AdditionalMetadata struct {
		StereotypedGroups []string `json:"stereotyped_groups"`
		Subcategory       string   `json:"subcategory"`
	} `json:"additional_metadata"`
	Context  string `json:"context"`
	Question string `json:"question"`
	Ans0     string `json:"ans0"`
	Ans1     string `json:"ans1"`
	Ans2     string `json:"ans2"`
	Label    *int   `json:"label"`
}

// LoadBBQ loads BBQ items from every *.jsonl file of dir (in name order), or
// from one .jsonl file. See the package documentation for tags, IDs and
// split groups.
func LoadBBQ(dir string) ([]Item, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("bbq: %w", err)
	}
	files := []string{dir}
	if st.IsDir() {
		files, err = filepath.Glob(filepath.Join(dir, "*.jsonl"))
		if err != nil {
			return nil, fmt.Errorf("bbq: %w", err)
		}
		if len(files) == 0 {
			if sub := filepath.Join(dir, "data"); isDir(sub) {
				return LoadBBQ(sub)
			}
			return nil, fmt.Errorf("bbq: %s: no *.jsonl files", dir)
		}
		sort.Strings(files)
	}
	var items []Item
	for _, f := range files {
		fh, r, err := openData(f)
		if err != nil {
			return nil, fmt.Errorf("bbq: %w", err)
		}
		its, err := parseBBQ(r, f)
		fh.Close()
		if err != nil {
			return nil, err
		}
		items = append(items, its...)
	}
	if err := checkUniqueIDs(items); err != nil {
		return nil, fmt.Errorf("bbq: %w", err)
	}
	return items, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// eachLine calls fn for every non-blank line of r with its 1-based number;
// a UTF-8 BOM and trailing "\r" are removed. A line longer than
// MaxLineBytes is an error.
func eachLine(r io.Reader, fn func(line []byte, n int) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if errors.Is(err, errLineTooLong) {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if len(line) > 0 {
			if n == 1 {
				line = bytes.TrimPrefix(line, utf8BOM)
			}
			line = bytes.TrimRight(line, "\r\n")
			if len(bytes.TrimSpace(line)) > 0 {
				if ferr := fn(line, n); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// errLineTooLong reports a line longer than MaxLineBytes.
var errLineTooLong = fmt.Errorf("line longer than %s", safefile.FormatSize(MaxLineBytes))

// readLine is bufio.Reader.ReadBytes('\n') that gives up after
// MaxLineBytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > MaxLineBytes {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

func parseBBQ(r io.Reader, name string) ([]Item, error) {
	var items []Item
	var lineErr error
	err := eachLine(r, func(line []byte, n int) error {
		src := fmt.Sprintf("%s:%d", name, n)
		it, err := bbqItem(line, src)
		if err != nil {
			lineErr = fmt.Errorf("bbq: %s: %v", src, err)
			return lineErr
		}
		items = append(items, it)
		return nil
	})
	if err != nil {
		if err == lineErr {
			return nil, err
		}
		return nil, fmt.Errorf("bbq: %s: %w", name, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("bbq: %s: no rows", name)
	}
	return items, nil
}

func bbqItem(line []byte, src string) (Item, error) {
	var row bbqRow
	if _, err := orderedObject(line); err != nil { // reject duplicate keys, trailing data
		return Item{}, err
	}
	if err := json.Unmarshal(line, &row); err != nil {
		return Item{}, fmt.Errorf("invalid row: %s", clip(err.Error()))
	}
	if row.ExampleID == nil {
		return Item{}, fmt.Errorf("field \"example_id\" is missing")
	}
	if row.Label == nil {
		return Item{}, fmt.Errorf("field \"label\" is missing")
	}
	if *row.Label < 0 || *row.Label > 2 {
		return Item{}, fmt.Errorf("label %d is not 0, 1 or 2", *row.Label)
	}
	for _, f := range []struct{ k, v string }{{"category", row.Category}, {"context", row.Context}, {"question", row.Question}, {"ans0", row.Ans0}, {"ans1", row.Ans1}, {"ans2", row.Ans2}} {
		if strings.TrimSpace(f.v) == "" {
			return Item{}, fmt.Errorf("field %q is missing or empty", f.k)
		}
	}
	switch row.ContextCondition {
	case "ambig", "disambig":
	default:
		return Item{}, fmt.Errorf("context_condition %s is not ambig or disambig", safefile.Quote(row.ContextCondition))
	}
	switch row.QuestionPolarity {
	case "neg", "nonneg":
	default:
		return Item{}, fmt.Errorf("question_polarity %s is not neg or nonneg", safefile.Quote(row.QuestionPolarity))
	}
	qi := strings.Trim(string(bytes.TrimSpace(row.QuestionIndex)), `"`)
	if qi == "" || qi == "null" {
		return Item{}, fmt.Errorf("field \"question_index\" is missing")
	}
	answers := []string{row.Ans0, row.Ans1, row.Ans2}
	info := make([][2]string, 3)
	unknown := -1
	for k := range answers {
		v, ok := row.AnswerInfo["ans"+strconv.Itoa(k)]
		if !ok || len(v) != 2 {
			return Item{}, fmt.Errorf("answer_info.ans%d is missing or not [surface, group]", k)
		}
		info[k] = [2]string{v[0], v[1]}
		if v[1] == "unknown" {
			if unknown >= 0 {
				return Item{}, fmt.Errorf("answer_info marks ans%d and ans%d as unknown", unknown, k)
			}
			unknown = k
		}
	}
	if unknown < 0 {
		return Item{}, fmt.Errorf("answer_info has no \"unknown\" option")
	}
	// Target option: the non-unknown option naming a stereotyped group.
	target := -1
	stereo := map[string]bool{}
	for _, g := range row.AdditionalMetadata.StereotypedGroups {
		stereo[strings.ToLower(strings.TrimSpace(g))] = true
	}
	matches := 0
	for k := range answers {
		if k == unknown {
			continue
		}
		if stereo[strings.ToLower(strings.TrimSpace(info[k][0]))] || stereo[strings.ToLower(strings.TrimSpace(info[k][1]))] {
			target = k
			matches++
		}
	}
	if matches != 1 {
		target = -1
	}
	biased := -1 // stereotype-consistent option
	if target >= 0 {
		if row.QuestionPolarity == "neg" {
			biased = target
		} else {
			biased = 3 - unknown - target
		}
	}
	choices := make([]Choice, 3)
	for k, a := range answers {
		tag := ""
		switch {
		case k == unknown:
			tag = TagUnknown
		case biased < 0:
		case k == biased:
			tag = TagStereotyped
		default:
			tag = TagAntiStereotyped
		}
		choices[k] = Choice{Text: answerText(a), Correct: k == *row.Label, Tag: tag}
	}
	sorted := []string{strings.ToLower(strings.TrimSpace(row.Ans0)), strings.ToLower(strings.TrimSpace(row.Ans1)), strings.ToLower(strings.TrimSpace(row.Ans2))}
	sort.Strings(sorted)
	meta := map[string]string{
		"category":          row.Category,
		"context_condition": row.ContextCondition,
		"question_polarity": row.QuestionPolarity,
		"question_index":    qi,
		"example_id":        strconv.FormatInt(*row.ExampleID, 10),
	}
	if row.AdditionalMetadata.Subcategory != "" {
		meta["subcategory"] = row.AdditionalMetadata.Subcategory
	}
	if target >= 0 {
		meta["target"] = strconv.Itoa(target)
	}
	return Item{
		Task:    TaskBBQ,
		ID:      fmt.Sprintf("bbq/%s/%d", row.Category, *row.ExampleID),
		Group:   fmt.Sprintf("bbq/%s/%s/%s", row.Category, qi, strings.Join(sorted, "|")),
		Prompt:  BBQPrompt(row.Context, row.Question),
		Choices: choices,
		Meta:    meta,
		Source:  src,
	}, nil
}
