package datasets

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Formats accepted by LoadItems and LoadExamples.
const (
	FormatAuto       = "auto"
	FormatJSONL      = TaskJSONL
	FormatTruthfulQA = TaskTruthfulQA
	FormatBBQ        = TaskBBQ
	FormatToxiGen    = TaskToxiGen
	FormatPairs      = TaskPairs // generic JSONL as pair items (LoadItems only)
)

// Split part names accepted by LoadSplitExamples.
const (
	PartAll   = "all"
	PartTrain = "train"
	PartDev   = "dev"
	PartTest  = "test"
)

// DetectFormat returns the format of path ("jsonl", "truthfulqa", "bbq" or
// "toxigen") from its name, extension and first record:
//
//   - a directory holding data/v0/mc_task.json, mc_task.json or
//     TruthfulQA.csv: truthfulqa; holding *_1k.txt, prompts/ or
//     annotated/toxiGen.json: toxigen; holding *.jsonl (or data/*.jsonl)
//     whose first line is a BBQ row: bbq;
//   - a .csv file: truthfulqa;
//   - a .json file: truthfulqa when its first element has "mc1_targets" or
//     "mc2_targets", toxigen when it has "target_groups" or "toxicity_score";
//   - a .jsonl file: bbq when its first line has "context", "ans0" and
//     "answer_info", jsonl otherwise.
func DetectFormat(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		return detectDir(path)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return FormatTruthfulQA, nil
	case ".json":
		keys, err := firstArrayKeys(path)
		if err != nil {
			return "", err
		}
		switch {
		case keys["mc1_targets"] || keys["mc2_targets"]:
			return FormatTruthfulQA, nil
		case keys["target_groups"] || keys["toxicity_score"]:
			return FormatToxiGen, nil
		}
		return "", fmt.Errorf("%s: cannot tell the format of this JSON file (want TruthfulQA mc_task.json or ToxiGen toxiGen.json); pass a format", path)
	case ".jsonl":
		keys, err := firstLineKeys(path)
		if err != nil {
			return "", err
		}
		if isBBQKeys(keys) {
			return FormatBBQ, nil
		}
		return FormatJSONL, nil
	}
	return "", fmt.Errorf("%s: cannot tell the format from the extension %q (want .jsonl, .json, .csv or a dataset directory); pass a format", path, filepath.Ext(path))
}

func isBBQKeys(keys map[string]bool) bool {
	return keys["context"] && keys["ans0"] && keys["answer_info"]
}

func detectDir(dir string) (string, error) {
	for _, p := range []string{"data/v0/mc_task.json", "v0/mc_task.json", "data/mc_task.json", "mc_task.json", "TruthfulQA.csv"} {
		if fileExists(filepath.Join(dir, filepath.FromSlash(p))) {
			return FormatTruthfulQA, nil
		}
	}
	if _, _, err := ResolveToxiGen(dir); err == nil {
		return FormatToxiGen, nil
	}
	for _, d := range []string{dir, filepath.Join(dir, "data")} {
		m, _ := filepath.Glob(filepath.Join(d, "*.jsonl"))
		if len(m) == 0 {
			continue
		}
		keys, err := firstLineKeys(m[0])
		if err != nil {
			return "", err
		}
		if isBBQKeys(keys) {
			return FormatBBQ, nil
		}
		return "", fmt.Errorf("%s: a directory of generic JSONL files is not supported; pass one file", dir)
	}
	return "", fmt.Errorf("%s: cannot tell which dataset this directory holds; pass a format", dir)
}

// firstLineKeys returns the keys of the first non-blank line of a JSONL file.
func firstLineKeys(path string) (map[string]bool, error) {
	f, r, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if errors.Is(err, errLineTooLong) {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		line = bytes.TrimSpace(bytes.TrimPrefix(line, utf8BOM))
		if len(line) > 0 {
			fs, perr := orderedObject(line)
			if perr != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, n, perr)
			}
			keys := map[string]bool{}
			for _, f := range fs {
				keys[f.Key] = true
			}
			return keys, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: no JSON lines", path)
		}
	}
}

// firstArrayKeys returns the keys of the first element of a JSON array file.
func firstArrayKeys(path string) (map[string]bool, error) {
	f, r, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, utf8BOM) {
		br.Discard(3)
	}
	dec := json.NewDecoder(br)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("%s: not a JSON array", path)
	}
	var first map[string]json.RawMessage
	if err := dec.Decode(&first); err != nil {
		return nil, fmt.Errorf("%s: first element is not a JSON object: %s", path, clip(err.Error()))
	}
	keys := map[string]bool{}
	for k := range first {
		keys[k] = true
	}
	return keys, nil
}

// LoadItems loads the multiple-choice items of a dataset; format is "auto"
// (see DetectFormat), "truthfulqa", "bbq", "toxigen" or "pairs" (a generic
// JSONL file as LoadPairs reads it, all of it). It returns the task name
// with the items.
func LoadItems(path, format string) (string, []Item, error) {
	if format == "" || format == FormatAuto {
		f, err := DetectFormat(path)
		if err != nil {
			return "", nil, fmt.Errorf("datasets: %w", err)
		}
		format = f
	}
	var items []Item
	var err error
	switch format {
	case FormatTruthfulQA:
		items, err = LoadTruthfulQA(path)
	case FormatBBQ:
		items, err = LoadBBQ(path)
	case FormatToxiGen:
		items, err = LoadToxiGen(path)
	case FormatJSONL:
		return "", nil, fmt.Errorf("datasets: %s: generic JSONL holds training examples, not multiple-choice items (format %q pairs its desired and undesired responses)", path, FormatPairs)
	case FormatPairs:
		items, _, err = LoadPairs(path, PartAll, DefaultSeed)
	default:
		return "", nil, fmt.Errorf("datasets: unknown format %q (want auto, truthfulqa, bbq, toxigen or pairs)", format)
	}
	if err != nil {
		return "", nil, err
	}
	return format, items, nil
}

// LoadExamples loads labelled training examples from path; format is
// "auto", "jsonl", "truthfulqa", "bbq" or "toxigen". Multiple-choice
// datasets give Examples(items, "") over all items (use LoadSplitExamples
// to keep evaluation items out of training). The result is checked with
// CheckExamples.
func LoadExamples(path, format string) ([]Example, error) {
	return LoadSplitExamples(path, format, PartAll, DefaultSeed)
}

// LoadSplitExamples is LoadExamples restricted to one part ("all", "train",
// "dev" or "test") of the task's DefaultSplit with the given seed; the
// split is over items, as Split does, so it agrees with evaluation on the
// same items.
func LoadSplitExamples(path, format, part string, seed uint64) ([]Example, error) {
	switch part {
	case PartAll, PartTrain, PartDev, PartTest:
	default:
		return nil, fmt.Errorf("datasets: unknown split part %q (want all, train, dev or test)", part)
	}
	if format == "" || format == FormatAuto {
		f, err := DetectFormat(path)
		if err != nil {
			return nil, fmt.Errorf("datasets: %w", err)
		}
		format = f
	}
	pick := func(tr, dv, te int) int {
		switch part {
		case PartTrain:
			return tr
		case PartDev:
			return dv
		}
		return te
	}
	var ex []Example
	if format == FormatJSONL {
		var err error
		if ex, err = LoadJSONL(path); err != nil {
			return nil, err
		}
		if part != PartAll {
			fr := DefaultSplit(format)
			tr, dv, te := SplitExamples(ex, fr.Train, fr.Dev, fr.Test, seed)
			ex = [][]Example{tr, dv, te}[pick(0, 1, 2)]
		}
	} else {
		task, items, err := LoadItems(path, format)
		if err != nil {
			return nil, err
		}
		format = task
		if part != PartAll {
			fr := DefaultSplit(task)
			tr, dv, te := Split(items, fr.Train, fr.Dev, fr.Test, seed)
			items = [][]Item{tr, dv, te}[pick(0, 1, 2)]
		}
		ex = Examples(items, "")
	}
	if err := CheckExamples(ex); err != nil {
		return nil, fmt.Errorf("datasets: %s (%s, %s part): %w", path, format, part, err)
	}
	return ex, nil
}
