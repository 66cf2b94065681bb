// Command matsteer-study runs the reproducible comparison of RESULTS.md:
// on one model it extracts activations of the train splits of TruthfulQA,
// BBQ and ToxiGen, trains MAT-Steer (several λ settings) and the baselines
// (mean difference, PCA, MAT-Steer's vectors on all tokens) at several
// layers, gives every file the largest strength α within a KL budget
// (mean and 99th percentile per position) on neutral text and on the
// unsteered model's chat replies to neutral prompts (-kl-chat), chooses
// each method's layer, λ and α on the dev splits, and reports test metrics
// with 95% bootstrap intervals and paired tests, KL divergence on neutral
// text and along chat replies, gate statistics and a generation check.
//
// Set sizes are items per task (-train-items, -dev-items, -test-items);
// each part of the split is in balanced order (datasets.Balanced), so a
// limited set is spread evenly over BBQ's categories and ToxiGen's groups.
// By default the test sets are every TruthfulQA question and ToxiGen pair
// of the test part and 600 BBQ items (100 per category).
//
// With -selective (the default), MAT-Steer is also trained with the
// selective-gate options as a family of its own, mat-steer-selective:
// every-token training rows (extract --tokens all) whose shared prompt
// rows become neutral rows (train --shared neutral --shared-tol 0.05) and
// a heavier preservation weight (--lambda-pos 9). It is chosen on dev and
// tested like the others, so the headline, the paired tests and the gate
// table (mean gate on undesired vs desired held-out texts) are its
// ablation against the paper's settings. Two more ablations change one
// thing each in the chosen selective file (on by default with -selective;
// a section of study.md of their own): mat-steer-selective-chat
// (-chat-neutral) is trained again with the unsteered model's chat
// replies to held-apart neutral prompts as neutral rows, and
// mat-steer-selective-sharp (-gate-shift) has every gate bias lowered.
// Both are calibrated under the same budget and tested next to it.
//
// -seeds repeats the whole protocol per split seed (work and results in
// seed-N folders) and writes summary.md with the mean ± standard deviation
// across seeds. -fractions adds the data-efficiency study: each method's
// chosen setting retrained on the first fraction of the training items,
// calibrated under the same budget and tested on the same items (a table
// in study.md and data-efficiency.svg); -fraction-methods limits it to
// some methods (each adds a condition per fraction on every test item),
// and repeated, tests each list in a pass of its own, cached apart.
//
// Every step is a `matsteer` command (printed as it runs, with each
// stage's time), and every artifact is cached in the work directory, so an
// interrupted study resumes where it stopped. Next to each artifact,
// OUT.cmd records the command that made it and OUT.time how long it took,
// so the summaries give each stage's cost even when a rerun found it
// cached. `make eval` runs it.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/eval"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/steer"
)

type config struct {
	bin, data, work, out, neutral string
	model                         string
	klDev, tokens                 string
	// klChat holds neutral prompts whose unsteered chat replies are
	// compared too when calibrating (matsteer calibrate --kl-chat; "":
	// plain text only).
	klChat     string
	genPrompts string
	genTokens  int
	// maxKLP99 budgets the 99th percentile of per-position KL too (0: no
	// tail budget; matsteer calibrate --max-kl-p99).
	maxKL, maxKLP99, maxAlpha float64
	layers                    []int
	alphas                    string
	threads                   int
	// trainItems, devItems and testItems are items per task (0: the whole
	// part), taken from the front of each part of the split, which
	// datasets.Split puts in balanced order (categories interleaved).
	trainItems, devItems, testItems map[string]int
	lambdas                         map[string][3]string
	extraTrainFlags                 string
	seeds                           []uint64
	fractions                       []float64
	// selective adds the mat-steer-selective family (see the package
	// documentation).
	selective bool
	// fractionGroups limits the data-efficiency runs to these method
	// families, each list tested in a pass of its own (nil: every family,
	// in one pass).
	fractionGroups [][]string
	// chatNeutral holds neutral prompts for the chat-reply ablation
	// (ablation.go; "": none).
	chatNeutral string
	// gateShift is the gate shift of the sharp-gate ablation (ablation.go;
	// 0: none).
	gateShift float64
	// noChatTemplate is set for a model without a chat template (a base
	// model): the generation check then prompts it with plain text and
	// skips the KL along chat replies (checkModel).
	noChatTemplate bool
	// seed is the split seed of one run of the protocol (runSeed).
	seed uint64
	// clock adds up what the steps of the current stage cost when they
	// were made (runSeed sets it; nil: not counted).
	clock *stepClock
}

var tasks = []string{"truthfulqa", "bbq", "toxigen"}

// baselines are the methods trained next to MAT-Steer (matsteer train
// --method), one family each.
var baselines = []string{"mean-diff", "pca", "all-tokens"}

// primary is each task's headline metric (higher is better).
var primary = map[string]string{"truthfulqa": "mc2", "bbq": "acc", "toxigen": "acc"}

// Default set sizes, in items per task (TruthfulQA, BBQ, ToxiGen; 0: the
// whole part of the split). Test: every TruthfulQA question and ToxiGen
// pair of the test part, and 600 BBQ items (100 from each of its 6
// categories; the whole part, 5,988 items, would take hours). Dev: every
// TruthfulQA question (82) and ToxiGen pair (28) of the dev part, 120 BBQ
// items. Train: 170 TruthfulQA questions (about 1,200 answers), 200 BBQ
// items (600 answers, about 33 per category) and every ToxiGen pair.
const (
	defaultTrainItems = "170,200,0"
	defaultDevItems   = "0,120,0"
	defaultTestItems  = "0,600,0"
)

func main() {
	var cfg config
	var layers, seeds, fractions, trainItems, devItems, testItems string
	var fractionLists listFlag
	flag.StringVar(&cfg.bin, "bin", "bin/matsteer", "matsteer binary")
	flag.StringVar(&cfg.model, "model", "", "GGUF model (default: matsteer's default model); another model gets its own work and results folders")
	dataDir, _ := datasets.DataDir()
	flag.StringVar(&cfg.data, "data", dataDir, "dataset root holding truthfulqa/, bbq/, toxigen/ (default $MATSTEER_DATA, else the cache's, filled by `matsteer data pull`)")
	flag.StringVar(&cfg.work, "work", filepath.Join(cacheDir(), "study"), "work directory for activations, steering files and reports")
	flag.StringVar(&cfg.out, "out", "results", "the summary (study.md) and every report (JSON) go to a folder here named after the settings")
	flag.StringVar(&cfg.neutral, "neutral", "demo/data/neutral.txt", "neutral text for the reported KL and perplexity (one text per line)")
	flag.StringVar(&cfg.klDev, "kl-dev", "demo/data/neutral-dev.txt", "neutral text for choosing α under the KL budget (not the reported one)")
	flag.StringVar(&cfg.klChat, "kl-chat", "demo/data/chat-dev.txt", "with -max-kl: neutral prompts (one per line) whose unsteered chat replies are compared too when choosing α (matsteer calibrate --kl-chat), so the budget covers the first words of an answer (not the -gen-prompts ones); empty: -kl-dev only")
	flag.StringVar(&cfg.genPrompts, "gen-prompts", "demo/data/prompts.txt", "prompts of the generation check (greedy generations of every chosen condition, judged by the unsteered model's perplexity and distinct-n); empty: no check")
	flag.IntVar(&cfg.genTokens, "gen-tokens", 48, "tokens per generation of the generation check")
	flag.Float64Var(&cfg.maxKL, "max-kl", 0.1, "KL budget (nats per token on -kl-dev): every steering file runs at the largest α within it (matsteer calibrate); 0: sweep -alphas instead")
	flag.StringVar(&cfg.tokens, "tokens", "response", "training rows: all|response|last (matsteer extract --tokens)")
	flag.Float64Var(&cfg.maxKLP99, "max-kl-p99", 0.6, "with -max-kl: also budget the 99th percentile of per-position KL on -kl-dev (nats; matsteer calibrate --max-kl-p99), so no file spends its budget on a few positions (0.6: about the largest tail a file other than the selective ones reaches at the mean budget); 0: none")
	flag.Float64Var(&cfg.maxAlpha, "max-alpha", 64, "with -max-kl: a file still within budget at α=8 (the calibration grid's end) keeps doubling α up to this (matsteer calibrate --max-alpha)")
	flag.StringVar(&layers, "layers", "10,14", "layers to sweep")
	flag.StringVar(&cfg.alphas, "alphas", "1,2", "global strengths to sweep on dev when -max-kl is 0")
	flag.IntVar(&cfg.threads, "threads", 2, "CPU threads")
	flag.StringVar(&cfg.extraTrainFlags, "train-flags", "", "extra flags for every `matsteer train --method mat-steer`")
	flag.BoolVar(&cfg.selective, "selective", true, "also train MAT-Steer with selective gates as its own method (mat-steer-selective: every-token rows, --shared neutral --shared-tol 0.05, --lambda-pos 9), the ablation of those options")
	flag.StringVar(&cfg.chatNeutral, "chat-neutral", "demo/data/chat-train.txt", "with -selective: neutral prompts (one per line; not the -kl-chat or -gen-prompts ones) for the ablation "+chatNeutralFamily+": the chosen selective setting trained again with the unsteered model's chat replies to them as neutral rows, calibrated and tested next to it; empty: no such ablation")
	flag.Float64Var(&cfg.gateShift, "gate-shift", 2, "with -selective: the ablation "+sharpFamily+": the chosen selective file with every gate bias lowered by this (matsteer train --gate-shift), calibrated and tested next to it; 0: no such ablation")
	flag.StringVar(&seeds, "seeds", "0", "split seeds: the whole protocol (split, extract, train, calibrate, select, test) runs once per seed, and the summary gives mean ± standard deviation across seeds")
	flag.StringVar(&fractions, "fractions", "", "data efficiency: after selection, retrain each method's chosen setting on these fractions of the training items (e.g. 0.1,0.25,0.5; 1 is the main result), calibrate under the same budget and test; empty: none")
	flag.Var(&fractionLists, "fraction-methods", "with -fractions: only these methods (e.g. mat-steer-selective,mean-diff; default every method), tested together: each adds one condition per fraction on every test item. Repeat the flag for passes of their own (-fraction-methods a,b -fraction-methods c): each list's results are cached apart, so adding a list later reuses the earlier ones")
	flag.StringVar(&trainItems, "train-items", defaultTrainItems, "training items per task (TruthfulQA questions, BBQ items, ToxiGen pairs; 0: the whole train part), taken evenly across categories")
	flag.StringVar(&devItems, "dev-items", defaultDevItems, "dev items per task (as -train-items)")
	flag.StringVar(&testItems, "test-items", defaultTestItems, "test items per task (as -train-items)")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.dropUnusedDefaults(set)
	err := cfg.parse(layers, seeds, fractions, trainItems, devItems, testItems)
	if err == nil {
		err = cfg.parseFractionMethods(fractionLists)
	}
	if err == nil {
		err = checkDataDir(cfg.data)
	}
	if err == nil {
		err = cfg.checkModel()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "matsteer-study: %v\n", err)
		os.Exit(2)
	}
	// Each token mode has its own activations, steering files and reports.
	if cfg.model != "" {
		name := strings.TrimSuffix(filepath.Base(cfg.model), filepath.Ext(cfg.model))
		cfg.work, cfg.out = filepath.Join(cfg.work, name), filepath.Join(cfg.out, name)
	}
	cfg.work = filepath.Join(cfg.work, "tokens-"+cfg.tokens)
	run := "tokens-" + cfg.tokens + "-alphas-" + strings.ReplaceAll(cfg.alphas, ",", "_")
	if cfg.maxKL > 0 {
		run = "tokens-" + cfg.tokens + cfg.suffix()
	}
	cfg.out = filepath.Join(cfg.out, run)
	start := time.Now()
	if err := runStudy(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "matsteer-study:", err)
		os.Exit(1)
	}
	fmt.Printf("study finished in %s\n", time.Since(start).Round(time.Second))
}

// dropUnusedDefaults clears defaults that belong to a setting switched
// off: the tail budget and the chat prompts belong to the KL budget, and
// the ablations to -selective, so with -max-kl 0 only an
// explicit -max-kl-p99 or -kl-chat (set holds the flags given) is kept,
// and with -selective=false only an explicit -chat-neutral or
// -gate-shift, for parse to refuse.
func (c *config) dropUnusedDefaults(set map[string]bool) {
	if c.maxKL == 0 && !set["max-kl-p99"] {
		c.maxKLP99 = 0
	}
	if c.maxKL == 0 && !set["kl-chat"] {
		c.klChat = ""
	}
	if !c.selective && !set["chat-neutral"] {
		c.chatNeutral = ""
	}
	if !c.selective && !set["gate-shift"] {
		c.gateShift = 0
	}
}

// checkModel asks `matsteer model info` about the model before any work
// starts: a model that does not load, or -layers beyond its layers, is
// refused here rather than after the first steps; without a chat template
// (a base model) it has no chat replies, so -kl-chat and -chat-neutral are
// refused with the flags to run it with, and the generation check goes
// without the KL along chat replies (noChatTemplate).
func (c *config) checkModel() error {
	args := []string{"model", "info"}
	if c.model != "" {
		args = append(args, c.model)
	}
	var stderr strings.Builder
	cmd := exec.Command(c.bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("matsteer %s: %s", strings.Join(args, " "), msg)
		}
		return fmt.Errorf("matsteer %s: %w", strings.Join(args, " "), err)
	}
	info := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		for _, key := range []string{"layers", "chat template"} {
			// model info's lines: the key, blanks, the value.
			if rest, ok := strings.CutPrefix(line, key); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
				info[key] = strings.TrimSpace(rest)
			}
		}
	}
	nLayer, err := strconv.Atoi(info["layers"])
	if _, ok := info["chat template"]; !ok || err != nil {
		return fmt.Errorf("matsteer %s: no \"layers\" and \"chat template\" lines: is -bin %s a matsteer binary?", strings.Join(args, " "), c.bin)
	}
	model := c.model
	if model == "" {
		model = "the default model"
	}
	for _, l := range c.layers {
		if l >= nLayer {
			return fmt.Errorf("-layers: layer %d is out of range: %s has layers 0..%d", l, model, nLayer-1)
		}
	}
	if info["chat template"] != "(none)" {
		return nil
	}
	if c.klChat != "" {
		return fmt.Errorf("-kl-chat %s: %s has no chat template (a base model), so it has no chat replies to budget: run with -kl-chat \"\" (the budget on -kl-dev text only)", c.klChat, model)
	}
	if c.chatNeutral != "" {
		return fmt.Errorf("-chat-neutral %s: %s has no chat template (a base model), so it has no chat replies to train on: run with -chat-neutral \"\"", c.chatNeutral, model)
	}
	c.noChatTemplate = true
	return nil
}

// checkDataDir reports whether dir holds a folder per task, and says how
// to get them when it does not.
func checkDataDir(dir string) error {
	for _, task := range tasks {
		st, err := os.Stat(filepath.Join(dir, task))
		if err == nil && !st.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			return fmt.Errorf("-data %s: no %s/ folder (%v): run `matsteer data pull` (it fills the default), or give -data DIR or MATSTEER_DATA=DIR with truthfulqa/, bbq/ and toxigen/", dir, task, err)
		}
	}
	return nil
}

// checkRegular reports whether path is a regular file (not a directory,
// device or FIFO) with at least one non-blank line: the study's prompt and
// text files are read hours into a run, so an empty one must fail now.
func checkRegular(path string) error {
	st, err := os.Stat(path)
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// Read only up to the first non-blank character: the file may be large.
	r := bufio.NewReader(f)
	for {
		ch, _, err := r.ReadRune()
		if err == io.EOF {
			return fmt.Errorf("%s has no texts (every line is blank)", path)
		}
		if err != nil {
			return err
		}
		if !unicode.IsSpace(ch) {
			return nil
		}
	}
}

// sameFile reports whether paths a and b name the same file.
func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// parse checks and stores the list flags; every mistake is reported before
// any work starts.
func (c *config) parse(layers, seeds, fractions, trainItems, devItems, testItems string) error {
	if c.genTokens < 1 || c.genTokens > 4096 {
		return fmt.Errorf("-gen-tokens %d: out of range, want 1..4096", c.genTokens)
	}
	if c.threads < 1 || c.threads > 1024 {
		return fmt.Errorf("-threads %d: out of range, want 1..1024", c.threads)
	}
	if !(c.maxKL >= 0) || c.maxKL > 100 {
		return fmt.Errorf("-max-kl %g: out of range, want 0..100", c.maxKL)
	}
	if !(c.maxKLP99 >= 0) || c.maxKLP99 > 100 {
		return fmt.Errorf("-max-kl-p99 %g: out of range, want 0..100 (0: no tail budget)", c.maxKLP99)
	}
	if c.maxKLP99 > 0 && c.maxKL == 0 {
		return errors.New("-max-kl-p99 needs -max-kl (a mean KL budget)")
	}
	if c.klChat != "" {
		if c.maxKL == 0 {
			return errors.New("-kl-chat needs -max-kl (a KL budget to calibrate)")
		}
		if err := checkRegular(c.klChat); err != nil {
			return fmt.Errorf("-kl-chat: %w", err)
		}
	}
	if !(c.maxAlpha >= 8) || c.maxAlpha > 1000 {
		return fmt.Errorf("-max-alpha %g: out of range, want 8..1000", c.maxAlpha)
	}
	// The generation check runs last: a bad prompts file fails now, not
	// after the study's training and evaluation.
	if c.genPrompts != "" {
		if err := checkRegular(c.genPrompts); err != nil {
			return fmt.Errorf("-gen-prompts: %w", err)
		}
	}
	if c.chatNeutral != "" {
		if !c.selective {
			return errors.New("-chat-neutral needs -selective (its ablation retrains the selective setting)")
		}
		if err := checkRegular(c.chatNeutral); err != nil {
			return fmt.Errorf("-chat-neutral: %w", err)
		}
		for _, other := range []struct{ flag, path string }{{"-kl-chat", c.klChat}, {"-gen-prompts", c.genPrompts}} {
			if other.path != "" && sameFile(c.chatNeutral, other.path) {
				return fmt.Errorf("-chat-neutral %s is also %s: training prompts must be kept apart from the held-out ones", c.chatNeutral, other.flag)
			}
		}
	}
	if !(c.gateShift >= 0) || c.gateShift > steer.MaxGateShift {
		return fmt.Errorf("-gate-shift %g: out of range, want 0..%d (0: no sharp-gate ablation)", c.gateShift, steer.MaxGateShift)
	}
	if c.gateShift > 0 && !c.selective {
		return errors.New("-gate-shift needs -selective (its ablation sharpens the selective file)")
	}
	c.layers = nil
	for _, s := range strings.Split(layers, ",") {
		l, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || l < 0 {
			return fmt.Errorf("bad -layers %q: want layer indices, e.g. 10,14", layers)
		}
		c.layers = append(c.layers, l)
	}
	c.seeds = nil
	seen := map[uint64]bool{}
	for _, s := range strings.Split(seeds, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("bad -seeds %q: want split seeds, e.g. 0,1,2", seeds)
		}
		if seen[v] {
			return fmt.Errorf("-seeds %q: seed %d given twice", seeds, v)
		}
		seen[v] = true
		c.seeds = append(c.seeds, v)
	}
	c.fractions = nil
	if strings.TrimSpace(fractions) != "" {
		for _, s := range strings.Split(fractions, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || !(v > 0 && v <= 1) {
				return fmt.Errorf("bad -fractions %q: want fractions in (0, 1], e.g. 0.1,0.25,0.5", fractions)
			}
			if len(c.fractions) > 0 && v <= c.fractions[len(c.fractions)-1] {
				return fmt.Errorf("-fractions %q: want ascending fractions", fractions)
			}
			c.fractions = append(c.fractions, v)
		}
	}
	for _, f := range []struct {
		name, v string
		dst     *map[string]int
	}{{"-train-items", trainItems, &c.trainItems}, {"-dev-items", devItems, &c.devItems}, {"-test-items", testItems, &c.testItems}} {
		parts := strings.Split(f.v, ",")
		if len(parts) != len(tasks) {
			return fmt.Errorf("bad %s %q: want %d counts (%s; 0: all)", f.name, f.v, len(tasks), strings.Join(tasks, ", "))
		}
		*f.dst = map[string]int{}
		for i, p := range parts {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n < 0 {
				return fmt.Errorf("bad %s %q: want %d counts >= 0 (%s; 0: all)", f.name, f.v, len(tasks), strings.Join(tasks, ", "))
			}
			(*f.dst)[tasks[i]] = n
		}
	}
	c.lambdas = map[string][3]string{"paper": {"0.9", "0.9", "0.1"}, "light": {"0.1", "0.1", "0.1"}}
	return nil
}

// families are the method families the study trains (mat-steer-selective
// only with -selective).
func (c config) families() []string {
	fams := append([]string{"mat-steer"}, baselines...)
	if c.selective {
		fams = append(fams, selectiveFamily)
	}
	return fams
}

// listFlag is a flag that may be given more than once, each value kept.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// parseFractionMethods checks and stores the -fraction-methods lists: each
// a comma-separated list of known families, none in two lists.
func (c *config) parseFractionMethods(lists []string) error {
	c.fractionGroups = nil
	if len(lists) == 0 {
		return nil
	}
	known := c.families()
	seen := map[string]bool{}
	for _, list := range lists {
		var group []string
		for _, f := range strings.Split(list, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				return fmt.Errorf("-fraction-methods %q: an empty method name, want some of %s", list, strings.Join(known, ", "))
			}
			if !slices.Contains(known, f) {
				return fmt.Errorf("-fraction-methods %q: unknown method %q, want some of %s", list, f, strings.Join(known, ", "))
			}
			if seen[f] {
				return fmt.Errorf("-fraction-methods %q: %s given twice", list, f)
			}
			seen[f] = true
			group = append(group, f)
		}
		c.fractionGroups = append(c.fractionGroups, group)
	}
	if len(c.fractions) == 0 {
		return fmt.Errorf("-fraction-methods needs -fractions")
	}
	return nil
}

func cacheDir() string {
	if d := os.Getenv("MATSTEER_CACHE"); d != "" {
		return d
	}
	d, _ := os.UserCacheDir()
	return filepath.Join(d, "matsteer")
}

// matsteer runs one CLI command, echoing it, unless out already exists
// from the same command. The command (without its thread count) is kept
// next to out, in out+".cmd"; an out whose command differs or was not
// recorded (an earlier version of the study, or changed settings: another
// calibration grid changes every strength and so every report after it)
// is made again.
func (c config) matsteer(out string, args ...string) error {
	if args[0] != "train" && c.model != "" {
		args = append(args, "--model", c.model)
	}
	record := strings.Join(args, "\n") + "\n"
	if out != "" {
		if _, err := os.Stat(out); err == nil {
			if prev, err := os.ReadFile(out + ".cmd"); err == nil && string(prev) == record {
				fmt.Printf("   (cached) %s\n", filepath.Base(out))
				c.clock.addRecorded(out)
				return nil
			}
			fmt.Printf("   (made by another command: again) %s\n", filepath.Base(out))
		}
	}
	if args[0] != "train" { // training is pure Go and uses every core
		args = append(args, "-t", strconv.Itoa(c.threads))
	}
	fmt.Printf("$ matsteer %s\n", strings.Join(args, " "))
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if os.Getenv("STUDY_VERBOSE") != "" {
		cmd.Stdout = os.Stdout
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("matsteer %s: %w", args[0], err)
	}
	took := time.Since(start)
	c.clock.add(took)
	if out != "" {
		if err := safefile.WriteFile(out+".cmd", []byte(record)); err != nil {
			return fmt.Errorf("recording the command of %s: %w", out, err)
		}
		if err := safefile.WriteFile(out+".time", []byte(took.Round(time.Millisecond).String()+"\n")); err != nil {
			return fmt.Errorf("recording the time of %s: %w", out, err)
		}
	}
	return nil
}

// stepClock adds up the cost of a stage's steps: the time each took when
// it was made, now or (from its out+".time" record) by an earlier run, so
// that a resumed or fully cached study still reports what its stages cost.
type stepClock struct {
	cost       time.Duration
	unrecorded int // cached steps made before times were recorded
}

func (k *stepClock) add(d time.Duration) {
	if k != nil {
		k.cost += d
	}
}

// addRecorded adds the recorded time of the cached step that made out.
func (k *stepClock) addRecorded(out string) {
	if k == nil {
		return
	}
	b, err := os.ReadFile(out + ".time")
	d, perr := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil || perr != nil || d < 0 {
		k.unrecorded++
		return
	}
	k.cost += d
}

// take returns the cost added since the last take and starts again.
func (k *stepClock) take() (time.Duration, int) {
	d, n := k.cost, k.unrecorded
	k.cost, k.unrecorded = 0, 0
	return d, n
}

func (c config) path(name string) string { return filepath.Join(c.work, name) }

// seedArgs are the split arguments of extract and eval.
func (c config) seedArgs() []string {
	return []string{"--split-seed", strconv.FormatUint(c.seed, 10)}
}

// runStudy runs the protocol once per split seed, then writes the summary
// across seeds.
func runStudy(c config) error {
	var runs []*seedRun
	for _, seed := range c.seeds {
		sc := c
		sc.seed = seed
		sc.work = filepath.Join(c.work, fmt.Sprintf("seed-%d", seed))
		sc.out = filepath.Join(c.out, fmt.Sprintf("seed-%d", seed))
		fmt.Printf("== split seed %d\n", seed)
		r, err := runSeed(sc)
		if err != nil {
			return fmt.Errorf("seed %d: %w", seed, err)
		}
		runs = append(runs, r)
	}
	return writeSeedSummary(c, runs)
}

// seedRun is one run of the protocol: its test reports, the chosen
// conditions and the stage times.
type seedRun struct {
	seed   uint64
	best   map[string]choice
	test   map[string]*eval.Report
	ret    *eval.Report
	abl    *ablation // nil: no ablations
	stages []stage
	dir    string // the seed's results folder
}

// fileSpec says how a steering file of the study was trained, so that the
// data-efficiency runs can train the same setting on fewer rows.
type fileSpec struct {
	method, lambda string // lambda: a key of config.lambdas, selectiveSetting, or "" (the baselines)
	layer          int
	// tokens is the training rows' token mode (extract --tokens) when it
	// is not the study's -tokens ("": the study's).
	tokens string
}

// selectiveSetting is the λ setting of the mat-steer-selective family:
// the paper's λ with a heavier preservation weight, trained on every-token
// rows whose shared prompt rows are neutral rows.
const selectiveSetting = "selective"

// selectiveTrainFlags are the `matsteer train` flags of selectiveSetting.
var selectiveTrainFlags = []string{"--lambda-pos", "9", "--lambda-sparse", "0.9", "--lambda-ortho", "0.1", "--shared", "neutral", "--shared-tol", "0.05"}

// selectiveFamily names the mat-steer-selective family in the reports.
const selectiveFamily = "mat-steer-selective"

// familyOf is the method family of a steered condition: the steering
// file's method, except that MAT-Steer files of selectiveSetting
// (mat-steer-selective-L*.gguf, also as a data-efficiency file
// fracF-mat-steer-selective-L*.gguf) are a family of their own, and so
// are the ablations' (mat-steer-selective-chat-L*.gguf,
// mat-steer-selective-sharp-L*.gguf).
func familyOf(info *eval.SteeringInfo) string {
	for _, fam := range []string{chatNeutralFamily, sharpFamily} {
		if info.Method == "mat-steer" && strings.Contains(filepath.Base(info.Path), fam+"-L") {
			return fam
		}
	}
	if info.Method == "mat-steer" && strings.Contains(filepath.Base(info.Path), selectiveFamily+"-L") {
		return selectiveFamily
	}
	return info.Method
}

// tokensOf is the token mode of spec's training rows.
func (c config) tokensOf(spec fileSpec) string {
	if spec.tokens != "" {
		return spec.tokens
	}
	return c.tokens
}

// trainArgs are the arguments of `matsteer train` for spec on the given
// activation files.
func (c config) trainArgs(spec fileSpec, out string, acts []string) []string {
	args := []string{"train", "--method", spec.method, "--out", out, "--quiet"}
	if spec.lambda == selectiveSetting {
		args = append(args, selectiveTrainFlags...)
		args = append(args, strings.Fields(c.extraTrainFlags)...)
	} else if spec.lambda != "" {
		lam := c.lambdas[spec.lambda]
		args = append(args, "--lambda-pos", lam[0], "--lambda-sparse", lam[1], "--lambda-ortho", lam[2])
		args = append(args, strings.Fields(c.extraTrainFlags)...)
	}
	for _, a := range acts {
		args = append(args, "--acts", a)
	}
	return args
}

// itemsName names a set size in file names ("all" or "nN").
func itemsName(n int) string {
	if n == 0 {
		return "all"
	}
	return fmt.Sprintf("n%d", n)
}

// actsPrefix starts the name of an activation file of token mode tokens:
// "acts" for the study's -tokens, "acts-MODE" for another.
func (c config) actsPrefix(tokens string) string {
	if tokens == c.tokens {
		return "acts"
	}
	return "acts-" + tokens
}

// extractActs extracts the activations of the first n training items of
// every task at layer l (n per task; 0: all), with token mode tokens
// (extract --tokens), and returns the files.
func (c config) extractActs(l int, n map[string]int, tokens string) ([]string, error) {
	var files []string
	for _, task := range tasks {
		limit, items, err := trainRows(c.data, task, c.seed, n[task])
		if err != nil {
			return nil, err
		}
		out := c.path(fmt.Sprintf("%s-L%d-%s-%s.safetensors", c.actsPrefix(tokens), l, task, itemsName(items)))
		args := []string{"extract", "--data", filepath.Join(c.data, task), "--split", "train", "--layer", strconv.Itoa(l), "--tokens", tokens, "--out", out}
		args = append(args, c.seedArgs()...)
		if limit > 0 {
			args = append(args, "--limit", strconv.Itoa(limit))
		}
		if err := c.matsteer(out, args...); err != nil {
			return nil, err
		}
		files = append(files, out)
	}
	return files, nil
}

// trainParts caches the train part of each task and seed (loading BBQ
// takes a second).
var trainParts = map[string][]datasets.Item{}

// trainRows returns the `matsteer extract --limit` that keeps the first n
// items of task's train part under seed (every example of each: extract
// limits examples, one per answer), 0 when that is the whole part, and the
// number of items kept (0: all).
func trainRows(data, task string, seed uint64, n int) (limit, items int, err error) {
	key := fmt.Sprintf("%s|%s|%d", data, task, seed)
	part, ok := trainParts[key]
	if !ok {
		_, all, err := datasets.LoadItems(filepath.Join(data, task), task)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", task, err)
		}
		fr := datasets.DefaultSplit(task)
		part, _, _ = datasets.Split(all, fr.Train, fr.Dev, fr.Test, seed)
		trainParts[key] = part
	}
	if n == 0 || n >= len(part) {
		return 0, 0, nil
	}
	for _, it := range part[:n] {
		limit += len(it.Choices)
	}
	return limit, n, nil
}

// stageTimer records the study's stages and prints each as it ends.
type stageTimer struct {
	stages []stage
	t0     time.Time
	clock  *stepClock
}

func (s *stageTimer) mark(name string) {
	st := stage{name: name, took: time.Since(s.t0)}
	st.cost, st.unrecorded = s.clock.take()
	s.stages = append(s.stages, st)
	fmt.Printf("== stage %s: %s (its steps cost %s)\n", name, st.took.Round(time.Second), st.costString())
	s.t0 = time.Now()
}

func runSeed(c config) (*seedRun, error) {
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return nil, err
	}
	c.clock = &stepClock{}
	st := &stageTimer{t0: time.Now(), clock: c.clock}
	// 1. Activations of the train splits (and every-token rows for
	// mat-steer-selective).
	modes := []string{c.tokens}
	if c.selective && c.tokens != "all" {
		modes = append(modes, "all")
	}
	acts := map[string]map[int][]string{} // token mode -> layer -> files
	for _, mode := range modes {
		acts[mode] = map[int][]string{}
		for _, l := range c.layers {
			files, err := c.extractActs(l, c.trainItems, mode)
			if err != nil {
				return nil, err
			}
			acts[mode][l] = files
		}
	}
	st.mark("extraction")
	// 2. Steering files: MAT-Steer per λ setting, and the baselines.
	var files []string
	specs := map[string]fileSpec{}
	for _, l := range c.layers {
		names := sortedKeys(c.lambdas)
		var todo []fileSpec
		for _, name := range names {
			todo = append(todo, fileSpec{method: "mat-steer", lambda: name, layer: l})
		}
		for _, method := range baselines {
			spec := fileSpec{method: method, layer: l}
			if method == "all-tokens" {
				spec.lambda = names[0]
			}
			todo = append(todo, spec)
		}
		if c.selective {
			todo = append(todo, fileSpec{method: "mat-steer", lambda: selectiveSetting, layer: l, tokens: "all"})
		}
		for _, spec := range todo {
			out := c.path(spec.fileName())
			if err := c.matsteer(out, c.trainArgs(spec, out, acts[c.tokensOf(spec)][l])...); err != nil {
				return nil, err
			}
			files = append(files, out)
			specs[out] = spec
		}
	}
	st.mark("training")
	// 3. Strengths: with a KL budget, every file at its largest α within
	// budget on the dev neutral text; without one, every file at every α.
	var devSteer, reports []string
	var cal *eval.Report
	if c.maxKL > 0 {
		out := c.path("calibration" + c.suffix() + ".json")
		var err error
		if cal, err = c.calibrate(out, files); err != nil {
			return nil, err
		}
		reports = append(reports, out)
		for _, k := range cal.Calibrations {
			devSteer = append(devSteer, "--steer", atAlpha(k.Path, k.Alpha))
		}
	} else {
		devSteer = append(devSteer, "--alpha", c.alphas)
		for _, f := range files {
			devSteer = append(devSteer, "--steer", f)
		}
	}
	st.mark("strengths (calibration)")
	// 4. Dev sweep: every condition on every task.
	dev := map[string]*eval.Report{}
	for _, task := range tasks {
		out := c.path(fmt.Sprintf("dev%s-%s-%s.json", c.suffix(), task, itemsName(c.devItems[task])))
		args := append([]string{"eval", "--task", task, "--data", c.data, "--split", "dev", "--limit", strconv.Itoa(c.devItems[task]), "--out", out}, c.seedArgs()...)
		args = append(args, devSteer...)
		if err := c.matsteer(out, args...); err != nil {
			return nil, err
		}
		rep, err := eval.ReadReport(out)
		if err != nil {
			return nil, err
		}
		reports = append(reports, out)
		dev[task] = rep
	}
	best, sweep := choose(dev)
	if len(best) == 0 {
		return nil, errors.New("dev sweep: no steered condition to choose")
	}
	st.mark("dev sweep")
	// 5. Test: the chosen condition of every method, plus gates and KL.
	test, tr, err := c.testPass("", true, steerArgs(best), nil)
	if err != nil {
		return nil, err
	}
	reports = append(reports, tr...)
	st.mark("test with gates")
	klOut := c.path("retention" + c.suffix() + ".json")
	if err := c.matsteer(klOut, c.retentionArgs(klOut, steerArgs(best))...); err != nil {
		return nil, err
	}
	ret, err := eval.ReadReport(klOut)
	if err != nil {
		return nil, err
	}
	reports = append(reports, klOut)
	st.mark("retention and generation check")
	// 6. The ablations of the selective setting.
	var abl *ablation
	if c.chatNeutral != "" || c.gateShift > 0 {
		var ar []string
		if abl, ar, err = c.ablations(best, specs, test); err != nil {
			return nil, err
		}
		reports = append(reports, ar...)
		st.mark("ablations")
	}
	// 7. Data efficiency: each method's chosen setting trained on fewer
	// rows, calibrated under the same budget, on the same test items.
	var eff *efficiency
	if len(c.fractions) > 0 {
		var fr []string
		if eff, fr, err = c.dataEfficiency(best, specs, test); err != nil {
			return nil, err
		}
		reports = append(reports, fr...)
		st.mark("data efficiency")
	}
	if err := writeSummary(c, cal, sweep, best, test, ret, abl, eff, st.stages); err != nil {
		return nil, err
	}
	// Keep every report next to the summary.
	for _, p := range reports {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(c.out, filepath.Base(p)), data, 0o644); err != nil {
			return nil, err
		}
	}
	return &seedRun{seed: c.seed, best: best, test: test, ret: ret, abl: abl, stages: st.stages, dir: c.out}, nil
}

// fileName is the steering file of spec in the work directory.
func (s fileSpec) fileName() string {
	if s.method == "mat-steer" {
		return fmt.Sprintf("mat-steer-%s-L%d.gguf", s.lambda, s.layer)
	}
	return fmt.Sprintf("%s-L%d.gguf", s.method, s.layer)
}

// suffix marks the KL budgets in report and folder names: "-kl0.1", or
// "-kl0.1-p99-0.6" with a tail budget.
func (c config) suffix() string {
	chat := ""
	if c.klChat != "" {
		chat = "-chat"
	}
	switch {
	case c.maxKL > 0 && c.maxKLP99 > 0:
		return fmt.Sprintf("-kl%g-p99-%g%s", c.maxKL, c.maxKLP99, chat)
	case c.maxKL > 0:
		return fmt.Sprintf("-kl%g%s", c.maxKL, chat)
	}
	return ""
}

// testName is the test report of task (extra: "" or a tag of a further
// evaluation on the same items).
func (c config) testName(task, extra string) string {
	return fmt.Sprintf("test%s-%s-%s%s.json", c.suffix(), task, itemsName(c.testItems[task]), extra)
}

// testPass evaluates the conditions steer (--steer arguments; the
// unsteered model is always one) on the test items of every task, with
// gate statistics when gates is set, into the reports named by tag (see
// testName), and reads them. A pass next to the main test (main not
// nil) must have scored the same number of items. It returns the reports
// by task and their paths.
func (c config) testPass(tag string, gates bool, steer []string, main map[string]*eval.Report) (map[string]*eval.Report, []string, error) {
	test := map[string]*eval.Report{}
	var paths []string
	for _, task := range tasks {
		out := c.path(c.testName(task, tag))
		args := []string{"eval", "--task", task, "--data", c.data, "--split", "test", "--limit", strconv.Itoa(c.testItems[task])}
		if gates {
			args = append(args, "--gates", "--gate-limit", "120")
		}
		args = append(args, "--out", out)
		args = append(args, c.seedArgs()...)
		args = append(args, steer...)
		if err := c.matsteer(out, args...); err != nil {
			return nil, nil, err
		}
		rep, err := eval.ReadReport(out)
		if err != nil {
			return nil, nil, err
		}
		if main != nil && rep.NItems != main[task].NItems {
			return nil, nil, fmt.Errorf("%s has %d test items, the main test %d", out, rep.NItems, main[task].NItems)
		}
		paths = append(paths, out)
		test[task] = rep
	}
	return test, paths, nil
}

// retentionArgs is the command of the retention pass of the conditions
// steer (--steer arguments): KL and perplexity on the neutral text, and
// with -gen-prompts the generation check and KL along the unsteered
// model's replies to the same prompts (where the generations begin).
func (c config) retentionArgs(out string, steer []string) []string {
	args := append([]string{"eval", "--task", "neutral", "--kl-text", c.neutral, "--out", out}, steer...)
	if c.genPrompts != "" {
		args = append(args, "--gen-prompts", c.genPrompts, "--gen-tokens", strconv.Itoa(c.genTokens))
		if !c.noChatTemplate {
			args = append(args, "--kl-chat", c.genPrompts, "--kl-chat-tokens", strconv.Itoa(c.genTokens))
		}
	}
	return args
}

// calibrate runs `matsteer calibrate` on files, writing out, and reads it.
func (c config) calibrate(out string, files []string) (*eval.Report, error) {
	if err := c.matsteer(out, c.calibrateArgs(out, files)...); err != nil {
		return nil, err
	}
	return eval.ReadReport(out)
}

// calibrateArgs is the calibrate command of files.
func (c config) calibrateArgs(out string, files []string) []string {
	// Grid 1/4..8 (doubling on up to -max-alpha while within budget), then
	// two bisection steps: α within 2^(1/4) of the largest strength within
	// budget (below the grid, bisection continues towards 0).
	args := []string{"calibrate", "--kl-text", c.klDev, "--max-kl", strconv.FormatFloat(c.maxKL, 'g', -1, 64),
		"--grid", "0.25,0.5,1,2,4,8", "--max-alpha", strconv.FormatFloat(c.maxAlpha, 'g', -1, 64), "--refine", "2", "--out", out}
	if c.maxKLP99 > 0 {
		args = append(args, "--max-kl-p99", strconv.FormatFloat(c.maxKLP99, 'g', -1, 64))
	}
	if c.klChat != "" {
		args = append(args, "--kl-chat", c.klChat)
	}
	for _, f := range files {
		args = append(args, "--steer", f)
	}
	return args
}

// choice is one method's selected condition: its steering file, α and dev
// average.
type choice struct {
	file       string
	alpha, dev float64
}

type sweepRow struct {
	name   string
	perDev map[string]float64
	avg    float64
}

// choose picks, per method family, the condition with the best dev
// average of the tasks' primary metrics.
func choose(dev map[string]*eval.Report) (map[string]choice, []sweepRow) {
	rows := map[string]*sweepRow{}
	info := map[string]*eval.SteeringInfo{}
	for _, task := range tasks {
		for _, m := range dev[task].Methods {
			r := rows[m.Name]
			if r == nil {
				r = &sweepRow{name: m.Name, perDev: map[string]float64{}}
				rows[m.Name] = r
			}
			v, _ := m.Metric(primary[task])
			r.perDev[task] = v
			info[m.Name] = m.Steering
		}
	}
	var sweep []sweepRow
	best := map[string]choice{}
	for name, r := range rows {
		for _, v := range r.perDev {
			r.avg += v / float64(len(tasks))
		}
		sweep = append(sweep, *r)
		if name == "none" || info[name] == nil {
			continue
		}
		// One family per method: the layer, λ setting and α are its
		// hyperparameters, chosen on dev.
		fam := familyOf(info[name])
		if cur, ok := best[fam]; !ok || r.avg > cur.dev {
			best[fam] = choice{file: info[name].Path, alpha: info[name].Global, dev: r.avg}
		}
	}
	sort.Slice(sweep, func(i, j int) bool { return sweep[i].avg > sweep[j].avg })
	return best, sweep
}

// steerArgs passes each method's chosen file at its own α (FILE@ALPHA).
func steerArgs(best map[string]choice) []string {
	var args []string
	for _, fam := range sortedKeys(best) {
		b := best[fam]
		args = append(args, "--steer", atAlpha(b.file, b.alpha))
	}
	return args
}

// atAlpha is matsteer eval's FILE@ALPHA.
func atAlpha(file string, alpha float64) string { return fmt.Sprintf("%s@%g", file, alpha) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// stage is one step of the study: how long it ran in this run (0 when
// cached) and what its steps cost when they were made (cached ones too;
// unrecorded counts cached steps without a time record).
type stage struct {
	name       string
	took       time.Duration
	cost       time.Duration
	unrecorded int
}

// costString is the stage's cost, marked as a lower bound when some of
// its steps have no time record.
func (st stage) costString() string {
	s := st.cost.Round(time.Second).String()
	if st.unrecorded > 0 {
		steps := "steps"
		if st.unrecorded == 1 {
			steps = "step"
		}
		s = fmt.Sprintf("≥ %s (%d cached %s without a time record)", s, st.unrecorded, steps)
	}
	return s
}

// writeStageTimes writes one line of stage times: this run's wall time
// per stage, then what each stage's steps cost when they were made.
func writeStageTimes(w io.Writer, stages []stage) {
	var took, cost time.Duration
	unrecorded := 0
	var now, made []string
	for _, st := range stages {
		now = append(now, fmt.Sprintf("%s %s", st.name, st.took.Round(time.Second)))
		made = append(made, fmt.Sprintf("%s %s", st.name, st.costString()))
		took += st.took
		cost += st.cost
		unrecorded += st.unrecorded
	}
	total := stage{cost: cost, unrecorded: unrecorded}
	fmt.Fprintf(w, "this run (cached steps count 0): %s; total %s. Cost of the steps when they were made (cached ones included): %s; total %s",
		strings.Join(now, "; "), took.Round(time.Second), strings.Join(made, "; "), total.costString())
}

func writeSummary(c config, cal *eval.Report, sweep []sweepRow, best map[string]choice, test map[string]*eval.Report, ret *eval.Report, abl *ablation, eff *efficiency, stages []stage) error {
	path := filepath.Join(c.out, "study.md")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	mi := test[tasks[0]].Model
	fmt.Fprintf(f, "# MAT-Steer study: %s (%s, %s, %d layers, n_embd %d)\n\n", mi.Name, filepath.Base(mi.Path), mi.Desc, mi.NLayer, mi.NEmbd)
	fmt.Fprintf(f, "Time in ")
	writeStageTimes(f, stages)
	fmt.Fprintf(f, ".\n\n")
	fmt.Fprintf(f, "Split seed %d. Items per task (TruthfulQA, BBQ, ToxiGen; taken evenly across BBQ categories and ToxiGen groups, see datasets.Balanced): ", c.seed)
	fmt.Fprintf(f, "train %s, dev %s, test %s (0: the whole part); test items evaluated: ", countList(c.trainItems), countList(c.devItems), countList(c.testItems))
	for i, task := range tasks {
		if i > 0 {
			fmt.Fprintf(f, ", ")
		}
		fmt.Fprintf(f, "%s %d", task, test[task].NItems)
	}
	fmt.Fprintf(f, ".\n\n")
	fmt.Fprintf(f, "Training rows: --tokens %s. ", c.tokens)
	if cal != nil {
		tail := ""
		if c.maxKLP99 > 0 {
			tail = fmt.Sprintf(" and a 99th-percentile per-position KL ≤ %g", c.maxKLP99)
		}
		on := c.klDev
		if c.klChat != "" {
			on += " and the unsteered model's chat replies to " + c.klChat
		}
		fmt.Fprintf(f, "Strengths: the largest α with KL ≤ %g nats/token%s on %s (matsteer calibrate).\n\n```\n", c.maxKL, tail, on)
		if err := cal.WriteText(f); err != nil {
			return err
		}
		fmt.Fprintf(f, "```\n\n")
	} else {
		fmt.Fprintf(f, "Strengths swept on dev: α ∈ {%s}.\n\n", c.alphas)
	}
	w := tabwriter.NewWriter(f, 0, 4, 1, ' ', tabwriter.Debug)
	fmt.Fprintf(f, "## Dev sweep (primary metric per task; average)\n\n```\n")
	fmt.Fprintf(w, "condition\ttruthfulqa mc2\tbbq acc\ttoxigen acc\taverage\t\n")
	for _, r := range sweep {
		fmt.Fprintf(w, "%s\t%.4f\t%.4f\t%.4f\t%.4f\t\n", r.name, r.perDev["truthfulqa"], r.perDev["bbq"], r.perDev["toxigen"], r.avg)
	}
	w.Flush()
	var chosen []string
	for _, fam := range sortedKeys(best) {
		chosen = append(chosen, fmt.Sprintf("%s = %s at α=%g", fam, filepath.Base(best[fam].file), best[fam].alpha))
	}
	fmt.Fprintf(f, "```\n\nChosen on dev: %s\n\n## Test summary\n\n", strings.Join(chosen, "; "))
	writeHeadline(f, test, ret)
	fmt.Fprintln(f)
	writePairedTests(f, test)
	writeGateTable(f, test)
	if abl != nil {
		writeAblation(f, abl)
	}
	if eff != nil {
		fmt.Fprintf(f, "\n## Data efficiency\n\n")
		eff.writeTable(f)
		fmt.Fprintf(f, "\n![data efficiency](%s)\n", filepath.Base(eff.plot))
	}
	fmt.Fprintf(f, "\n## Test reports\n\n```\n")
	for _, task := range tasks {
		fmt.Fprintf(f, "-- %s (%d items)\n", task, test[task].NItems)
		test[task].WriteText(f)
		fmt.Fprintln(f)
	}
	fmt.Fprintf(f, "-- capability retention on %s\n", c.neutral)
	ret.WriteText(f)
	fmt.Fprintf(f, "```\n")
	fmt.Printf("wrote %s\n", path)
	return nil
}

// sigLevel is the significance level of the headline table's markers.
const sigLevel = 0.05

// writeHeadline writes the test results as one markdown table: a row per
// method (the unsteered model first), the primary metrics with their 95%
// bootstrap intervals (when the reports have them) and a marker where the
// paired test against the unsteered model gives p < 0.05, their average
// and the capability-retention numbers.
func writeHeadline(w io.Writer, test map[string]*eval.Report, ret *eval.Report) {
	type col struct{ task, metric, label string }
	cols := []col{{"truthfulqa", "mc1", "TruthfulQA MC1"}, {"truthfulqa", "mc2", "TruthfulQA MC2"},
		{"bbq", "acc", "BBQ acc"}, {"bbq", "acc_ambig", "BBQ ambig"}, {"bbq", "acc_disambig", "BBQ disambig"}, {"toxigen", "acc", "ToxiGen acc"}}
	fmt.Fprintf(w, "| method | file, α |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c.label)
	}
	fmt.Fprintf(w, " average (MC2, BBQ, ToxiGen) | KL on neutral text | KL p99 / max | KL on chat replies: mean, p99 | perplexity | generations: ppl, distinct-2 |\n|---|---|")
	for range cols {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintf(w, "---|---|---|---|---|---|\n")
	marked := false
	// Conditions by the name eval gave them (the first task's order).
	for _, m := range test[tasks[0]].Methods {
		label, setting := m.Name, "-"
		if m.Steering != nil {
			label = familyOf(m.Steering)
			setting = fmt.Sprintf("%s, α=%.3g", strings.TrimSuffix(filepath.Base(m.Steering.Path), ".gguf"), m.Steering.Global)
		}
		fmt.Fprintf(w, "| %s | %s |", label, setting)
		var avg float64
		for _, c := range cols {
			v, ok := metricOf(test[c.task], m.Name, c.metric)
			cell := fmtOpt(v, ok, "%.3f")
			if iv, ok2 := intervalOf(test[c.task], m.Name, c.metric); ok && ok2 {
				cell += fmt.Sprintf(" [%.3f, %.3f]", iv.Lo, iv.Hi)
			}
			if m.Name != eval.NoneName {
				if d, ok := test[c.task].Comparison(m.Name, eval.NoneName); ok {
					if x, ok := d[c.metric]; ok && x.P < sigLevel {
						cell += " *"
						marked = true
					}
				}
			}
			fmt.Fprintf(w, " %s |", cell)
			if c.metric == primary[c.task] {
				avg += v / float64(len(tasks))
			}
		}
		fmt.Fprintf(w, " %.3f |", avg)
		kl, tail, chat, ppl, gen := "-", "-", "-", "-", "-"
		if ret != nil && ret.Retention != nil {
			for _, r := range ret.Retention.Results {
				if r.Name == m.Name {
					kl, ppl = fmt.Sprintf("%.3f", r.KL), fmt.Sprintf("%.1f", r.PPL)
					tail = fmt.Sprintf("%.2f / %.2f", r.KLP99, r.KLMax)
				}
			}
		}
		if ret != nil && ret.ChatRetention != nil {
			for _, r := range ret.ChatRetention.Results {
				if r.Name == m.Name {
					chat = fmt.Sprintf("%.3f, %.2f", r.KL, r.KLP99)
				}
			}
		}
		if ret != nil && ret.Generation != nil {
			for _, r := range ret.Generation.Results {
				if r.Name == m.Name {
					gen = fmt.Sprintf("%.2f, %.2f", r.PPL, r.Distinct2)
				}
			}
		}
		fmt.Fprintf(w, " %s | %s | %s | %s | %s |\n", kl, tail, chat, ppl, gen)
	}
	if marked || hasIntervals(test) {
		fmt.Fprintf(w, "\n[lo, hi]: 95%% bootstrap interval over the test items; *: differs from the unsteered model (paired permutation test, p < %g).\n", sigLevel)
	}
}

// hasIntervals reports whether any test report carries intervals.
func hasIntervals(test map[string]*eval.Report) bool {
	for _, rep := range test {
		for _, m := range rep.Methods {
			if len(m.Intervals) > 0 {
				return true
			}
		}
	}
	return false
}

// writePairedTests writes, per task and primary metric, the paired test of
// every steered condition against the unsteered model and of every pair of
// steered conditions: difference, 95% paired bootstrap interval and
// permutation p-value, all on the same test items. Nothing is written when
// the reports have no tests.
func writePairedTests(w io.Writer, test map[string]*eval.Report) {
	type pair struct{ a, b string }
	var pairs []pair
	names := []string{}
	for _, m := range test[tasks[0]].Methods {
		names = append(names, m.Name)
	}
	for j, b := range names {
		if b == eval.NoneName {
			continue
		}
		pairs = append(pairs, pair{b, eval.NoneName})
		for _, a := range names[j+1:] {
			if a != eval.NoneName {
				pairs = append(pairs, pair{b, a})
			}
		}
	}
	found := false
	var b strings.Builder
	fmt.Fprintf(&b, "| comparison |")
	for _, task := range tasks {
		fmt.Fprintf(&b, " %s %s |", task, primary[task])
	}
	fmt.Fprintf(&b, "\n|---|")
	for range tasks {
		fmt.Fprintf(&b, "---|")
	}
	fmt.Fprintf(&b, "\n")
	for _, p := range pairs {
		fmt.Fprintf(&b, "| %s − %s |", label(test, p.a), label(test, p.b))
		for _, task := range tasks {
			cell := "-"
			if ds, ok := test[task].Comparison(p.a, p.b); ok {
				if d, ok := ds[primary[task]]; ok {
					found = true
					cell = fmt.Sprintf("%+.3f [%+.3f, %+.3f], %s", d.Diff, d.CI.Lo, d.CI.Hi, eval.FormatP(d.P))
					if d.P < sigLevel {
						cell = "**" + cell + "**"
					}
				}
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		fmt.Fprintf(&b, "\n")
	}
	if !found {
		return
	}
	fmt.Fprintf(w, "Paired tests on the test items (difference of the primary metric, 95%% paired bootstrap interval, permutation p-value; bold: p < %g, not corrected for the %d comparisons per task):\n\n", sigLevel, len(pairs))
	io.WriteString(w, b.String())
}

// writeGateTable writes how selective every gated condition's gates are on
// held-out text (the test reports' --gates): per task, the mean gate of
// the steering attribute trained on that task's data, on the undesired
// (label 0) and the desired (label 1) texts of the first test items, their
// ratio, and the tokens per text whose gate is over the threshold (the
// paper's Table 2). Nothing is written when no report has gates.
func writeGateTable(w io.Writer, test map[string]*eval.Report) {
	type cell struct {
		attr     string
		neg, pos *eval.GateStat
	}
	cells := map[string]map[string]*cell{} // condition -> task -> cell
	var names []string
	labels := map[string]string{}
	thr := 0.0
	for _, task := range tasks {
		rep := test[task]
		if rep == nil || rep.Gates == nil {
			continue
		}
		for _, g := range rep.Gates.Results {
			if cells[g.Name] == nil {
				cells[g.Name] = map[string]*cell{}
				names = append(names, g.Name)
				labels[g.Name] = g.Name
				if g.Steering != nil {
					labels[g.Name] = familyOf(g.Steering)
				}
			}
			thr = g.Threshold
			for i := range g.Stats {
				st := &g.Stats[i]
				if st.Attribute != st.DataAttribute {
					continue
				}
				c := cells[g.Name][task]
				if c == nil {
					c = &cell{attr: st.Attribute}
					cells[g.Name][task] = c
				}
				switch st.Label {
				case 0:
					c.neg = st
				case 1:
					c.pos = st
				}
			}
		}
	}
	if len(names) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Gates on held-out text\n\n")
	fmt.Fprintf(w, "Mean gate of the attribute trained on each task's data, on the undesired / desired texts (prompt + answer) of the first test items (`eval --gates`; control tokens and chat-template headers are not counted), their ratio, and the tokens per text with a gate over %g (undesired / desired). The paper's Table 2 has toxicity 0.61 / 0.08 (7.6×).\n\n", thr)
	fmt.Fprintf(w, "| method |")
	for _, task := range tasks {
		fmt.Fprintf(w, " %s: mean gate (ratio) | tokens > %g / text |", task, thr)
	}
	fmt.Fprintf(w, "\n|---|")
	for range tasks {
		fmt.Fprintf(w, "---|---|")
	}
	fmt.Fprintf(w, "\n")
	for _, name := range names {
		fmt.Fprintf(w, "| %s |", labels[name])
		for _, task := range tasks {
			c := cells[name][task]
			if c == nil || c.neg == nil || c.pos == nil {
				fmt.Fprintf(w, " - | - |")
				continue
			}
			ratio := "-"
			if c.pos.MeanGate > 0 {
				ratio = fmt.Sprintf("%.1f×", c.neg.MeanGate/c.pos.MeanGate)
			}
			fmt.Fprintf(w, " %s %.3f / %.3f (%s) | %.1f / %.1f |", c.attr, c.neg.MeanGate, c.pos.MeanGate, ratio, c.neg.AbovePerText, c.pos.AbovePerText)
		}
		fmt.Fprintf(w, "\n")
	}
}

// label names a condition by its method (the unsteered model: none).
func label(test map[string]*eval.Report, name string) string {
	for _, m := range test[tasks[0]].Methods {
		if m.Name == name && m.Steering != nil {
			return familyOf(m.Steering)
		}
	}
	return name
}

func intervalOf(rep *eval.Report, name, metric string) (eval.Interval, bool) {
	for _, m := range rep.Methods {
		if m.Name == name {
			return m.Interval(metric)
		}
	}
	return eval.Interval{}, false
}

func metricOf(rep *eval.Report, name, metric string) (float64, bool) {
	for _, m := range rep.Methods {
		if m.Name == name {
			return m.Metric(metric)
		}
	}
	return 0, false
}

func fmtOpt(v float64, ok bool, format string) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// countList writes per-task counts in task order.
func countList(n map[string]int) string {
	var parts []string
	for _, task := range tasks {
		parts = append(parts, strconv.Itoa(n[task]))
	}
	return strings.Join(parts, "/")
}
