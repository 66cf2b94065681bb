// Package datasets loads the training examples and multiple-choice
// evaluation items used to train and evaluate attribute steering.
//
// For training on data of your own, the root package matsteer takes
// examples in memory (matsteer.Example) or the generic JSONL format
// (Model.TrainJSONL); this package adds TruthfulQA, BBQ, ToxiGen and
// seeded splits.
//
// Everything is built around items: one question or context with a stable
// ID, a prompt, and candidate continuations (choices), one or more of them
// correct. Training examples are derived from items (Examples), and the
// train/dev/test split is made over items (Split), never over answer
// options, so extraction and evaluation can use the same split and no
// question is on both sides.
//
// # Prompt formats
//
// Every choice starts with a space, so that a tokenizer splits prompt and
// answer cleanly. A model is conditioned on Item.Prompt and scored on
// Choice.Text.
//
//	TruthfulQA  prompt "Q: {question}\nA:"                  choice " {answer}"
//	BBQ         prompt "{context} {question}\nAnswer:"      choice " {ansK}"
//	ToxiGen     prompt "Here is a statement about {group}:" choice " {statement}"
//
// # TruthfulQA
//
// LoadTruthfulQA reads mc_task.json (the multiple-choice file; the MAT-Steer
// paper and ITI use the original release, data/v0/mc_task.json, which is the
// default when a directory is given) or TruthfulQA.csv. Item.MC1 holds the
// mc1_targets (one correct answer), Item.Choices the mc2_targets (several
// correct answers), in file order; their tags are "mc1" and "mc2". From the
// CSV, answer lists are split on ";" and trimmed, and a final "." is added
// when missing, as TruthfulQA's own code does; MC1 is the best answer
// followed by the incorrect answers, MC2 the correct answers followed by the
// incorrect answers. Item IDs are derived from the question text
// ("truthfulqa/" + 16 hex digits of its SHA-256), so the JSON and CSV files
// and both releases give the same ID to the same question.
//
// # BBQ
//
// LoadBBQ reads every *.jsonl file of a directory (or one file). Each row is
// an item with three choices; the correct one is "label". Choice tags:
//
//   - "unknown": the option whose answer_info group is "unknown" (in ambiguous
//     contexts it is always the correct answer);
//   - "stereotyped": the stereotype-consistent option. The target option is
//     the non-unknown option whose answer_info surface or group matches one
//     of additional_metadata.stereotyped_groups (case-insensitively). For a
//     negative question (question_polarity "neg", e.g. "Who was not
//     comfortable using the phone?") the target option is the stereotyped
//     answer; for a non-negative question the other non-unknown option is;
//   - "anti-stereotyped": the remaining option.
//
// When no unique target option is found, the two non-unknown options have an
// empty tag. Item IDs are "bbq/{category}/{example_id}". BBQ builds four rows
// from each filled-in template (ambiguous and disambiguated context, negative
// and non-negative question) and the disambiguated context extends the
// ambiguous one, so items share a split Group,
// "bbq/{category}/{question_index}/{sorted lower-cased answer texts}":
// the four variants of an instance always land on the same side.
//
// # ToxiGen
//
// ToxiGen has no multiple-choice form; this package defines one. For every
// target group, the distinct neutral statements and the distinct hate
// statements about that group are each put in a seeded pseudo-random order
// (hash of seed and text) and paired index by index; unpaired statements are
// dropped. An item is one pair: prompt "Here is a statement about
// {group}:", choices " {neutral statement}" (correct, tag "neutral") and
// " {hate statement}" (tag "hate"), in a seeded order. The accuracy is the
// fraction of pairs for which the model prefers the neutral statement. A text
// that occurs with both labels is dropped; a text that occurs in several
// groups is kept in the first group (in sorted group order) only. The item ID
// is "toxigen/{group}/" + 16 hex digits of the SHA-256 of the two texts.
//
// The statements come from either source:
//
//   - the prompt files, prompts/{hate,neutral}_{group}_1k.txt: every line is
//     split on the two characters `\n-`, each piece trimmed of spaces, of a
//     leading "-" and of trailing escape debris (literal `\n`, backslashes),
//     and empty pieces skipped. The default when a ToxiGen
//     directory is given. (Group "trans" has hate statements only and so
//     gives no items.)
//   - the human-annotated annotated/toxiGen.json: label "hate" or "neutral",
//     group = the first of target_groups; the Excel artifact "_x000D_" is
//     replaced by a space and the text trimmed, otherwise verbatim (some
//     annotated texts hold several statements joined by `\n-`; the label
//     applies to the whole text, so it is not split).
//
// Group names are canonicalised across the two sources (e.g. "mental dis"
// and "mental_disability" are both "mental_disability") and rendered in the
// prompt as a phrase ("people with mental disabilities").
//
// # Generic JSONL
//
// LoadJSONL reads training examples, one JSON object a line:
//
//	{"attribute": "toxicity", "label": 1, "prompt": "...", "response": "..."}
//	{"attribute": "toxicity", "label": 0, "text": "..."}
//
// label is 1 (positive, desired behaviour) or 0 (negative). "text" stands for
// a prompt without a response and excludes "prompt"/"response". Optional: "id"
// (string or integer; examples with the same id form one item for
// splitting, default "{file base name}:{line}") and "meta" (ignored). Any
// other key is an error, as are empty texts and labels other than 0 and 1.
// Blank lines are skipped; a UTF-8 BOM is ignored.
//
// # Pairs
//
// PairItems (LoadPairs for a file) turns generic JSONL examples into
// multiple-choice items for `matsteer eval --task pairs`: one item per
// attribute and prompt that has at least one desired (label 1) and one
// undesired (label 0) response; the choices are those responses (tags
// "desired", "undesired"). Examples without a response ("text" lines) and
// prompts with one label only are skipped; a response given both labels
// for the same prompt is an error. With a split part, LoadPairs first
// keeps the examples of that part of the JSONL split (by example id, as
// extract splits them) and pairs what remains.
//
// # Upstream data
//
// Upstreams lists every file of the evaluation data with its upstream
// repository, pinned commit (TruthfulQA's is not known: its main branch),
// size and SHA-256; Pull downloads them into a data directory in the
// layout of the shared copy (truthfulqa/, bbq/, toxigen/), each file
// verified and renamed into place. DataDir is $MATSTEER_DATA (a local
// copy) or the cache's data folder.
//
// # Splits
//
// Split orders the distinct split keys (Item.Group, or Item.ID when Group is
// empty) by a 64-bit hash of the seed and the key, and gives the first
// round(train·K) keys to train, the next ones up to round((train+dev)·K) to
// dev and the rest to test, where K is the number of keys and the fractions
// are normalised to sum to 1. The result depends only on the set of keys and
// the seed, not on the input order. Every part comes in balanced order
// (Balanced): its items' strata (BBQ category, ToxiGen target group, pair
// attribute; see Item.Stratum) interleaved round-robin, each stratum in a
// seeded pseudo-random order, so a prefix of a part (`--limit N` of
// `matsteer extract` and `matsteer eval`) is spread evenly over the
// categories rather than taken in file order (BBQ's files are one category
// each). SplitExamples, for examples read from JSONL, keeps the input
// order.
// DefaultSplit gives the fractions used throughout: TruthfulQA 0.4/0.1/0.5
// (the MAT-Steer paper); BBQ and ToxiGen, which have no official split, half
// for test and the rest 80/20 train/dev, also 0.4/0.1/0.5; generic JSONL
// training data 0.8/0.2/0.
package datasets

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"

	"github.com/matsteer/matsteer/internal/safefile"
)

// Task names.
const (
	TaskTruthfulQA = "truthfulqa"
	TaskBBQ        = "bbq"
	TaskToxiGen    = "toxigen"
	TaskJSONL      = "jsonl"
)

// Choice tags.
const (
	TagMC1             = "mc1"
	TagMC2             = "mc2"
	TagUnknown         = "unknown"
	TagStereotyped     = "stereotyped"
	TagAntiStereotyped = "anti-stereotyped"
	TagNeutral         = "neutral"
	TagHate            = "hate"
)

// DefaultSeed is the split seed used unless the caller chooses another.
const DefaultSeed uint64 = 0

// Choice is one candidate continuation of an item's prompt.
type Choice struct {
	Text    string // starts with a space
	Correct bool
	Tag     string // see the package documentation
	Source  string // "file:line" when it differs from the item's (ToxiGen)
}

// Item is one multiple-choice question or context.
type Item struct {
	Task    string   // TaskTruthfulQA, TaskBBQ, TaskToxiGen
	ID      string   // stable, unique within a task
	Group   string   // split key shared by near-duplicate items; "" means ID
	Prompt  string   // text the model is conditioned on
	Choices []Choice // candidate continuations (TruthfulQA: the MC2 set)
	MC1     []Choice // TruthfulQA only: the MC1 set (exactly one correct)
	Meta    map[string]string
	Source  string // "file:line"
}

// SplitKey returns the key Split uses for the item: Group, or ID when Group
// is empty.
func (it Item) SplitKey() string {
	if it.Group != "" {
		return it.Group
	}
	return it.ID
}

// Example is one labelled training text.
type Example struct {
	Attribute string
	Label     int // 1 positive (desired), 0 negative
	Prompt    string
	Response  string
	SampleID  int64  // unique per example, stable across runs
	ItemID    string // item the example came from
	Group     string // split key of the item ("" means ItemID)
	Source    string // "file:line"
}

// Text returns the full text, Prompt followed by Response.
func (e Example) Text() string { return e.Prompt + e.Response }

// SplitKey returns the key SplitExamples uses: Group, or ItemID.
func (e Example) SplitKey() string {
	if e.Group != "" {
		return e.Group
	}
	return e.ItemID
}

// DefaultAttribute returns the attribute name a task's examples get when the
// caller gives none: "truthfulness", "bias", "toxicity"; "" for others.
func DefaultAttribute(task string) string {
	switch task {
	case TaskTruthfulQA:
		return "truthfulness"
	case TaskBBQ:
		return "bias"
	case TaskToxiGen:
		return "toxicity"
	}
	return ""
}

// Fractions are the relative sizes of the train, dev and test parts.
type Fractions struct {
	Train, Dev, Test float64
}

// DefaultSplit returns the split fractions for a task (see the package
// documentation).
func DefaultSplit(task string) Fractions {
	if task == TaskJSONL {
		return Fractions{0.8, 0.2, 0}
	}
	return Fractions{0.4, 0.1, 0.5}
}

// Validate reports whether the fractions can be used by Split.
func (f Fractions) Validate() error {
	for _, v := range []float64{f.Train, f.Dev, f.Test} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("split fractions %g/%g/%g: each must be finite and >= 0", f.Train, f.Dev, f.Test)
		}
	}
	if f.Train+f.Dev+f.Test <= 0 {
		return fmt.Errorf("split fractions %g/%g/%g: sum must be > 0", f.Train, f.Dev, f.Test)
	}
	return nil
}

// splitHash mixes the seed and a key into a 64-bit value (FNV-1a followed by
// the splitmix64 finaliser).
func splitHash(seed uint64, key string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// assignParts maps every key to part 0 (train), 1 (dev) or 2 (test).
func assignParts(keys []string, f Fractions, seed uint64) map[string]int {
	if err := f.Validate(); err != nil {
		panic("datasets: " + err.Error())
	}
	uniq := make([]string, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	hs := make(map[string]uint64, len(uniq))
	for _, k := range uniq {
		hs[k] = splitHash(seed, k)
	}
	sort.Slice(uniq, func(i, j int) bool {
		hi, hj := hs[uniq[i]], hs[uniq[j]]
		if hi != hj {
			return hi < hj
		}
		return uniq[i] < uniq[j]
	})
	sum := f.Train + f.Dev + f.Test
	n := float64(len(uniq))
	nTrain := int(math.Round(f.Train / sum * n))
	nTrainDev := int(math.Round((f.Train + f.Dev) / sum * n))
	part := make(map[string]int, len(uniq))
	for i, k := range uniq {
		switch {
		case i < nTrain:
			part[k] = 0
		case i < nTrainDev:
			part[k] = 1
		default:
			part[k] = 2
		}
	}
	return part
}

// Split divides items into train, dev and test parts by their split key
// (see the package documentation) and puts every part in Balanced order,
// so that its first N items are spread evenly over the strata. The
// fractions are relative weights; Split panics if one is negative or not
// finite or they sum to 0 (check with Fractions.Validate for input from
// users).
func Split(items []Item, train, dev, test float64, seed uint64) (tr, dv, te []Item) {
	tr, dv, te = splitBy(items, Item.SplitKey, Fractions{train, dev, test}, seed)
	return Balanced(tr, seed), Balanced(dv, seed), Balanced(te, seed)
}

// Stratum returns the category an item is balanced over (Balanced): BBQ's
// category, ToxiGen's target group, a pair item's attribute, otherwise
// Meta["category"] (TruthfulQA's CSV has one; its JSON files do not, so
// their items form one stratum).
func (it Item) Stratum() string {
	switch it.Task {
	case TaskToxiGen:
		return it.Meta["group"]
	case TaskPairs:
		return it.Meta["attribute"]
	}
	return it.Meta["category"]
}

// Balanced returns the items in balanced order: within each stratum
// (Item.Stratum) a seeded pseudo-random order (a hash of the seed and the
// item ID), and the strata interleaved round-robin in sorted order, one
// item of each in turn until each runs out. The first N items thus hold
// about N/S items of each of S strata (all of a stratum's items when it
// has fewer), a stratum's items are not taken in file order, and the
// result depends only on the set of items and the seed. items is not
// modified.
func Balanced(items []Item, seed uint64) []Item {
	if len(items) == 0 {
		return items
	}
	type keyed struct {
		h   uint64
		i   int
		key string
	}
	strata := map[string][]keyed{}
	for i, it := range items {
		s := it.Stratum()
		strata[s] = append(strata[s], keyed{splitHash(seed, "balance\x00"+it.ID), i, it.ID})
	}
	names := make([]string, 0, len(strata))
	for s, xs := range strata {
		names = append(names, s)
		sort.SliceStable(xs, func(a, b int) bool {
			if xs[a].h != xs[b].h {
				return xs[a].h < xs[b].h
			}
			return xs[a].key < xs[b].key
		})
	}
	sort.Strings(names)
	out := make([]Item, 0, len(items))
	for round := 0; len(out) < len(items); round++ {
		for _, s := range names {
			if xs := strata[s]; round < len(xs) {
				out = append(out, items[xs[round].i])
			}
		}
	}
	return out
}

// SplitExamples divides examples by their split key with the same rule as
// Split: Examples(Split(items)) and SplitExamples(Examples(items)) hold the
// same examples (the latter in input order).
func SplitExamples(ex []Example, train, dev, test float64, seed uint64) (tr, dv, te []Example) {
	return splitBy(ex, Example.SplitKey, Fractions{train, dev, test}, seed)
}

// splitBy assigns each element to the part its key falls in.
func splitBy[T any](xs []T, key func(T) string, f Fractions, seed uint64) (tr, dv, te []T) {
	keys := make([]string, len(xs))
	for i, x := range xs {
		keys[i] = key(x)
	}
	part := assignParts(keys, f, seed)
	for i, x := range xs {
		switch part[keys[i]] {
		case 0:
			tr = append(tr, x)
		case 1:
			dv = append(dv, x)
		default:
			te = append(te, x)
		}
	}
	return tr, dv, te
}

// SampleID returns the stable sample id of choice j of the item with the
// given ID: 63 bits of a SHA-256 of both.
func SampleID(itemID string, j int) int64 {
	s := sha256.Sum256([]byte(fmt.Sprintf("%s#%d", itemID, j)))
	return int64(binary.LittleEndian.Uint64(s[:]) >> 1)
}

// textID returns n hex digits of the SHA-256 of the parts, joined by NUL.
func textID(n int, parts ...string) string {
	joined := strings.Join(parts, "\x00")
	if strings.Count(joined, "\x00") != len(parts)-1 {
		// A part holds a NUL byte, so the join is ambiguous (("a\x00", "b")
		// and ("a", "\x00b") would collide): hash length-prefixed parts
		// instead. Texts without NUL bytes, i.e. every real dataset, keep
		// the IDs (and so the splits) they always had.
		var b strings.Builder
		b.WriteString("\x00len")
		for _, p := range parts {
			fmt.Fprintf(&b, "%d:%s", len(p), p)
		}
		joined = b.String()
	}
	s := sha256.Sum256([]byte(joined))
	return hex.EncodeToString(s[:])[:n]
}

// Examples turns items into labelled examples, one per choice of
// Item.Choices: the item's prompt with the choice as response, label 1 for
// a correct choice and 0 otherwise (TruthfulQA: true vs false MC2 answers;
// BBQ: the gold answer vs the two others; ToxiGen: neutral vs hate; pairs:
// desired vs undesired). An empty attribute means
// DefaultAttribute(item.Task), for pair items their own attribute. SampleIDs come from
// SampleID, so they do not depend on which items are passed.
func Examples(items []Item, attribute string) []Example {
	var out []Example
	for _, it := range items {
		attr := attribute
		if attr == "" {
			attr = DefaultAttribute(it.Task)
		}
		if attr == "" {
			attr = pairAttribute(it)
		}
		for j, c := range it.Choices {
			label := 0
			if c.Correct {
				label = 1
			}
			src := c.Source
			if src == "" {
				src = it.Source
			}
			out = append(out, Example{
				Attribute: attr,
				Label:     label,
				Prompt:    it.Prompt,
				Response:  c.Text,
				SampleID:  SampleID(it.ID, j),
				ItemID:    it.ID,
				Group:     it.Group,
				Source:    src,
			})
		}
	}
	return out
}

// maxReported bounds the number of problems CheckExamples and the loaders
// list in one error.
const maxReported = 10

// problems collects error messages up to maxReported.
type problems struct {
	errs []error
	n    int
}

func (p *problems) add(format string, args ...any) {
	p.n++
	if len(p.errs) < maxReported {
		p.errs = append(p.errs, fmt.Errorf(format, args...))
	}
}

func (p *problems) err() error {
	if p.n == 0 {
		return nil
	}
	if p.n > len(p.errs) {
		p.errs = append(p.errs, fmt.Errorf("... and %d more problems", p.n-len(p.errs)))
	}
	return errors.Join(p.errs...)
}

// CheckExamples checks a training set: it is not empty, every example has
// an attribute, a label of 0 or 1 and a non-blank text, sample ids are
// unique, and every attribute has both positive and negative examples.
// Errors name the offending examples' sources (up to 10 problems are
// listed).
func CheckExamples(ex []Example) error {
	if len(ex) == 0 {
		return fmt.Errorf("no examples")
	}
	var p problems
	type counts struct {
		pos, neg int
		first    string
	}
	byAttr := map[string]*counts{}
	var order []string
	ids := make(map[int64]string, len(ex))
	for _, e := range ex {
		src := e.Source
		if src == "" {
			src = fmt.Sprintf("sample %d", e.SampleID)
		}
		if strings.TrimSpace(e.Attribute) == "" {
			p.add("%s: empty attribute", src)
		}
		if e.Label != 0 && e.Label != 1 {
			p.add("%s: label %d is not 1 or 0", src, e.Label)
		}
		if strings.TrimSpace(e.Prompt+e.Response) == "" {
			p.add("%s: empty text", src)
		}
		if prev, dup := ids[e.SampleID]; dup {
			p.add("%s: sample id %d already used by %s", src, e.SampleID, prev)
		} else {
			ids[e.SampleID] = src
		}
		c := byAttr[e.Attribute]
		if c == nil {
			c = &counts{first: src}
			byAttr[e.Attribute] = c
			order = append(order, e.Attribute)
		}
		switch e.Label {
		case 1:
			c.pos++
		case 0:
			c.neg++
		}
	}
	for _, a := range order {
		c := byAttr[a]
		switch {
		case c.pos == 0:
			p.add("attribute %s has no positive examples (label 1), only %d negative (first at %s)", safefile.Quote(a), c.neg, c.first)
		case c.neg == 0:
			p.add("attribute %s has no negative examples (label 0), only %d positive (first at %s)", safefile.Quote(a), c.pos, c.first)
		}
	}
	return p.err()
}
