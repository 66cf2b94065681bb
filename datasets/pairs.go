package datasets

import (
	"fmt"
	"strings"
)

// TaskPairs is the multiple-choice task made from generic JSONL examples
// (see PairItems).
const TaskPairs = "pairs"

// Choice tags of pair items.
const (
	TagDesired   = "desired"
	TagUndesired = "undesired"
)

// PairStats says how PairItems used its examples.
type PairStats struct {
	Examples   int // examples given
	NoResponse int // examples without a response (a "text" line), not usable
	OneSided   int // prompts with responses of one label only, skipped
	Items      int // items made
	Duplicates int // repeated (prompt, response, label) examples, scored once
}

// PairItems turns labelled examples into multiple-choice items: for every
// attribute and prompt that have at least one desired (label 1) and one
// undesired (label 0) response, one item whose choices are those responses
// in input order (correct: label 1; tags "desired" and "undesired"). An
// example without a response (a JSONL "text" line) cannot be paired and is
// skipped, as are prompts with responses of one label only; a response that
// occurs more than once with the same label is kept once, and one that
// occurs with both labels is an error naming both lines. Item IDs are
// "pairs/{attribute}/" + 16 hex digits of the SHA-256 of attribute and
// prompt; Meta["attribute"] is the attribute. It is an error when no item
// results.
func PairItems(ex []Example) ([]Item, PairStats, error) {
	st := PairStats{Examples: len(ex)}
	type group struct {
		item     *Item
		pos, neg int
		seen     map[string]int // response -> index into item.Choices
	}
	groups := map[string]*group{}
	var order []*group
	for _, e := range ex {
		if e.Response == "" {
			st.NoResponse++
			continue
		}
		key := textID(32, e.Attribute, e.Prompt)
		g := groups[key]
		if g == nil {
			g = &group{item: &Item{
				Task:   TaskPairs,
				ID:     "pairs/" + e.Attribute + "/" + key[:16],
				Prompt: e.Prompt,
				Meta:   map[string]string{"attribute": e.Attribute},
				Source: e.Source,
			}, seen: map[string]int{}}
			groups[key] = g
			order = append(order, g)
		}
		if k, dup := g.seen[e.Response]; dup {
			prev := g.item.Choices[k]
			if prev.Correct != (e.Label == 1) {
				return nil, st, fmt.Errorf("%s: the same response to the same prompt is labelled %d here and %d at %s", e.Source, e.Label, 1-e.Label, prev.Source)
			}
			st.Duplicates++
			continue
		}
		c := Choice{Text: e.Response, Correct: e.Label == 1, Tag: TagUndesired, Source: e.Source}
		if c.Correct {
			c.Tag = TagDesired
			g.pos++
		} else {
			g.neg++
		}
		g.seen[e.Response] = len(g.item.Choices)
		g.item.Choices = append(g.item.Choices, c)
	}
	var items []Item
	for _, g := range order {
		if g.pos == 0 || g.neg == 0 {
			st.OneSided++
			continue
		}
		items = append(items, *g.item)
	}
	st.Items = len(items)
	if len(items) == 0 {
		return nil, st, fmt.Errorf("no prompt has both a desired (label 1) and an undesired (label 0) response (%d examples, %d without a response, %d prompts with one label only)", st.Examples, st.NoResponse, st.OneSided)
	}
	return items, st, nil
}

// LoadPairs loads a generic JSONL file (LoadJSONL) as pair items
// (PairItems). part "all" uses every example; "train", "dev" or "test"
// first keeps the examples of that part of the JSONL split (SplitExamples
// with DefaultSplit(TaskJSONL), the split `matsteer extract --split` makes),
// so no example extracted for training with --split train is evaluated on
// another part. Examples are split by their id: give a prompt's responses
// one "id" to keep them on the same side (with the default id, one per
// line, a pair survives only when both of its lines fall in the part).
func LoadPairs(path, part string, seed uint64) ([]Item, PairStats, error) {
	switch part {
	case PartAll, PartTrain, PartDev, PartTest:
	default:
		return nil, PairStats{}, fmt.Errorf("datasets: unknown split part %q (want all, train, dev or test)", part)
	}
	ex, err := LoadJSONL(path)
	if err != nil {
		return nil, PairStats{}, err
	}
	if part != PartAll {
		fr := DefaultSplit(TaskJSONL)
		tr, dv, te := SplitExamples(ex, fr.Train, fr.Dev, fr.Test, seed)
		ex = map[string][]Example{PartTrain: tr, PartDev: dv, PartTest: te}[part]
		if len(ex) == 0 {
			return nil, PairStats{}, fmt.Errorf("pairs: %s: the %s part of the split (%g/%g/%g train/dev/test by example id) is empty", path, part, fr.Train, fr.Dev, fr.Test)
		}
	}
	items, st, err := PairItems(ex)
	if err != nil {
		return nil, st, fmt.Errorf("pairs: %s (%s part): %w", path, part, err)
	}
	return items, st, nil
}

// pairAttribute is the attribute of a pair item's examples.
func pairAttribute(it Item) string {
	if it.Task == TaskPairs {
		return strings.TrimSpace(it.Meta["attribute"])
	}
	return ""
}
