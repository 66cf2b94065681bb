// Command matsteer-study runs the reproducible comparison of RESULTS.md:
// on one model it extracts activations of the train splits of TruthfulQA,
// BBQ and ToxiGen, trains MAT-Steer (several λ settings) and the baselines
// (mean difference, PCA, MAT-Steer's vectors on all tokens) at several
// layers, chooses each method's layer, λ and strength α on the dev splits,
// and reports test metrics, KL divergence on neutral text and gate
// statistics. Every step is a `matsteer` command (printed as it runs), and
// every artifact is cached in the work directory, so an interrupted study
// resumes where it stopped. `make eval` runs it.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/eval"
)

type config struct {
	bin, data, work, out, neutral string
	model                         string
	klDev, tokens                 string
	genPrompts                    string
	genTokens                     int
	maxKL                         float64
	layers                        []int
	alphas                        string
	threads                       int
	trainLimit                    map[string]int
	devLimit, testLimit           map[string]int
	lambdas                       map[string][3]string
	extraTrainFlags               string
}

var tasks = []string{"truthfulqa", "bbq", "toxigen"}

// primary is each task's headline metric (higher is better).
var primary = map[string]string{"truthfulqa": "mc2", "bbq": "acc", "toxigen": "acc"}

func main() {
	var cfg config
	var layers string
	flag.StringVar(&cfg.bin, "bin", "bin/matsteer", "matsteer binary")
	flag.StringVar(&cfg.model, "model", "", "GGUF model (default: matsteer's default model); another model gets its own work and results folders")
	dataDir, _ := datasets.DataDir()
	flag.StringVar(&cfg.data, "data", dataDir, "dataset root holding truthfulqa/, bbq/, toxigen/ (default $MATSTEER_DATA, else the cache's, filled by `matsteer data pull`)")
	flag.StringVar(&cfg.work, "work", filepath.Join(cacheDir(), "study"), "work directory for activations, steering files and reports")
	flag.StringVar(&cfg.out, "out", "results", "the summary (study.md) and every report (JSON) go to a folder here named after the settings")
	flag.StringVar(&cfg.neutral, "neutral", "demo/data/neutral.txt", "neutral text for the reported KL and perplexity (one text per line)")
	flag.StringVar(&cfg.klDev, "kl-dev", "demo/data/neutral-dev.txt", "neutral text for choosing α under the KL budget (not the reported one)")
	flag.StringVar(&cfg.genPrompts, "gen-prompts", "demo/data/prompts.txt", "prompts of the generation check (greedy generations of every chosen condition, judged by the unsteered model's perplexity and distinct-n); empty: no check")
	flag.IntVar(&cfg.genTokens, "gen-tokens", 48, "tokens per generation of the generation check")
	flag.Float64Var(&cfg.maxKL, "max-kl", 0.1, "KL budget (nats per token on -kl-dev): every steering file runs at the largest α within it (matsteer calibrate); 0: sweep -alphas instead")
	flag.StringVar(&cfg.tokens, "tokens", "response", "training rows: all|response|last (matsteer extract --tokens)")
	flag.StringVar(&layers, "layers", "10,14", "layers to sweep")
	flag.StringVar(&cfg.alphas, "alphas", "1,2", "global strengths to sweep on dev when -max-kl is 0")
	flag.IntVar(&cfg.threads, "threads", 2, "CPU threads")
	flag.StringVar(&cfg.extraTrainFlags, "train-flags", "", "extra flags for every `matsteer train --method mat-steer`")
	flag.Parse()
	if cfg.genTokens < 1 || cfg.genTokens > 4096 {
		fmt.Fprintf(os.Stderr, "matsteer-study: -gen-tokens %d: out of range, want 1..4096\n", cfg.genTokens)
		os.Exit(2)
	}
	// The generation check runs last: a bad prompts file fails now, not
	// after the study's training and evaluation.
	if cfg.genPrompts != "" {
		st, err := os.Stat(cfg.genPrompts)
		if err == nil && !st.Mode().IsRegular() {
			err = fmt.Errorf("%s is not a regular file", cfg.genPrompts)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "matsteer-study: -gen-prompts: %v\n", err)
			os.Exit(2)
		}
	}
	for _, s := range strings.Split(layers, ",") {
		l, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(os.Stderr, "matsteer-study: bad -layers %q\n", layers)
			os.Exit(2)
		}
		cfg.layers = append(cfg.layers, l)
	}
	cfg.trainLimit = map[string]int{"truthfulqa": 1200, "bbq": 600, "toxigen": 0}
	cfg.devLimit = map[string]int{"truthfulqa": 25, "bbq": 40, "toxigen": 28}
	cfg.testLimit = map[string]int{"truthfulqa": 100, "bbq": 150, "toxigen": 100}
	cfg.lambdas = map[string][3]string{"paper": {"0.9", "0.9", "0.1"}, "light": {"0.1", "0.1", "0.1"}}
	// Each token mode has its own activations, steering files and reports.
	if cfg.model != "" {
		name := strings.TrimSuffix(filepath.Base(cfg.model), filepath.Ext(cfg.model))
		cfg.work, cfg.out = filepath.Join(cfg.work, name), filepath.Join(cfg.out, name)
	}
	cfg.work = filepath.Join(cfg.work, "tokens-"+cfg.tokens)
	run := "tokens-" + cfg.tokens + "-alphas-" + strings.ReplaceAll(cfg.alphas, ",", "_")
	if cfg.maxKL > 0 {
		run = fmt.Sprintf("tokens-%s-kl%g", cfg.tokens, cfg.maxKL)
	}
	cfg.out = filepath.Join(cfg.out, run)
	start := time.Now()
	if err := runStudy(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "matsteer-study:", err)
		os.Exit(1)
	}
	fmt.Printf("study finished in %s\n", time.Since(start).Round(time.Second))
}

func cacheDir() string {
	if d := os.Getenv("MATSTEER_CACHE"); d != "" {
		return d
	}
	d, _ := os.UserCacheDir()
	return filepath.Join(d, "matsteer")
}

// matsteer runs one CLI command, echoing it, unless out already exists.
func (c config) matsteer(out string, args ...string) error {
	if out != "" {
		if _, err := os.Stat(out); err == nil {
			fmt.Printf("   (cached) %s\n", filepath.Base(out))
			return nil
		}
	}
	if args[0] != "train" { // training is pure Go and uses every core
		args = append(args, "-t", strconv.Itoa(c.threads))
		if c.model != "" {
			args = append(args, "--model", c.model)
		}
	}
	fmt.Printf("$ matsteer %s\n", strings.Join(args, " "))
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if os.Getenv("STUDY_VERBOSE") != "" {
		cmd.Stdout = os.Stdout
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("matsteer %s: %w", args[0], err)
	}
	return nil
}

func (c config) path(name string) string { return filepath.Join(c.work, name) }

func runStudy(c config) error {
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	var stages []stage
	t0 := time.Now()
	mark := func(name string) {
		stages = append(stages, stage{name, time.Since(t0)})
		t0 = time.Now()
	}
	// 1. Activations of the train splits.
	for _, l := range c.layers {
		for _, task := range tasks {
			out := c.path(fmt.Sprintf("acts-L%d-%s.safetensors", l, task))
			args := []string{"extract", "--data", filepath.Join(c.data, task), "--split", "train", "--layer", strconv.Itoa(l), "--tokens", c.tokens, "--out", out}
			if n := c.trainLimit[task]; n > 0 {
				args = append(args, "--limit", strconv.Itoa(n))
			}
			if err := c.matsteer(out, args...); err != nil {
				return err
			}
		}
	}
	mark("extraction")
	// 2. Steering files: MAT-Steer per λ setting, and the baselines.
	var files []string
	for _, l := range c.layers {
		var acts []string
		for _, task := range tasks {
			acts = append(acts, "--acts", c.path(fmt.Sprintf("acts-L%d-%s.safetensors", l, task)))
		}
		names := sortedKeys(c.lambdas)
		for _, name := range names {
			lam := c.lambdas[name]
			out := c.path(fmt.Sprintf("mat-steer-%s-L%d.gguf", name, l))
			args := append([]string{"train", "--method", "mat-steer", "--out", out, "--quiet",
				"--lambda-pos", lam[0], "--lambda-sparse", lam[1], "--lambda-ortho", lam[2]}, acts...)
			args = append(args, strings.Fields(c.extraTrainFlags)...)
			if err := c.matsteer(out, args...); err != nil {
				return err
			}
			files = append(files, out)
		}
		for _, method := range []string{"mean-diff", "pca", "all-tokens"} {
			out := c.path(fmt.Sprintf("%s-L%d.gguf", method, l))
			args := append([]string{"train", "--method", method, "--out", out, "--quiet"}, acts...)
			if method == "all-tokens" {
				lam := c.lambdas[names[0]]
				args = append(args, "--lambda-pos", lam[0], "--lambda-sparse", lam[1], "--lambda-ortho", lam[2])
				args = append(args, strings.Fields(c.extraTrainFlags)...)
			}
			if err := c.matsteer(out, args...); err != nil {
				return err
			}
			files = append(files, out)
		}
	}
	mark("training")
	// 3. Strengths: with a KL budget, every file at its largest α within
	// budget on the dev neutral text; without one, every file at every α.
	var devSteer, reports []string
	var cal *eval.Report
	if c.maxKL > 0 {
		out := c.path(fmt.Sprintf("calibration-kl%g.json", c.maxKL))
		// Grid 1/4..8, then two bisection steps: α within 2^(1/4) of the
		// largest strength within budget (below the grid, bisection
		// continues towards 0).
		args := []string{"calibrate", "--kl-text", c.klDev, "--max-kl", strconv.FormatFloat(c.maxKL, 'g', -1, 64),
			"--grid", "0.25,0.5,1,2,4,8", "--refine", "2", "--out", out}
		for _, f := range files {
			args = append(args, "--steer", f)
		}
		if err := c.matsteer(out, args...); err != nil {
			return err
		}
		var err error
		if cal, err = eval.ReadReport(out); err != nil {
			return err
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
	mark("strengths (calibration)")
	// 4. Dev sweep: every condition on every task.
	dev := map[string]*eval.Report{}
	for _, task := range tasks {
		name := "dev-" + task + ".json"
		if c.maxKL > 0 {
			name = fmt.Sprintf("dev-kl%g-%s.json", c.maxKL, task)
		}
		out := c.path(name)
		args := append([]string{"eval", "--task", task, "--data", c.data, "--split", "dev", "--limit", strconv.Itoa(c.devLimit[task]), "--out", out}, devSteer...)
		if err := c.matsteer(out, args...); err != nil {
			return err
		}
		rep, err := eval.ReadReport(out)
		if err != nil {
			return err
		}
		reports = append(reports, out)
		dev[task] = rep
	}
	best, sweep := choose(dev)
	mark("dev sweep")
	// 5. Test: the chosen condition of every method, plus gates and KL.
	suffix := ""
	if c.maxKL > 0 {
		suffix = fmt.Sprintf("-kl%g", c.maxKL)
	}
	test := map[string]*eval.Report{}
	for _, task := range tasks {
		out := c.path("test" + suffix + "-" + task + ".json")
		args := []string{"eval", "--task", task, "--data", c.data, "--split", "test", "--limit", strconv.Itoa(c.testLimit[task]),
			"--gates", "--gate-limit", "120", "--out", out}
		args = append(args, steerArgs(best)...)
		if err := c.matsteer(out, args...); err != nil {
			return err
		}
		rep, err := eval.ReadReport(out)
		if err != nil {
			return err
		}
		reports = append(reports, out)
		test[task] = rep
	}
	klOut := c.path("retention" + suffix + ".json")
	args := append([]string{"eval", "--task", "neutral", "--kl-text", c.neutral, "--out", klOut}, steerArgs(best)...)
	if c.genPrompts != "" {
		args = append(args, "--gen-prompts", c.genPrompts, "--gen-tokens", strconv.Itoa(c.genTokens))
	}
	if err := c.matsteer(klOut, args...); err != nil {
		return err
	}
	ret, err := eval.ReadReport(klOut)
	if err != nil {
		return err
	}
	reports = append(reports, klOut)
	mark("test, gates and retention")
	if err := writeSummary(c, cal, sweep, best, test, ret, stages); err != nil {
		return err
	}
	// Keep every report next to the summary.
	for _, p := range reports {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(c.out, filepath.Base(p)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
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
		fam := info[name].Method
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

// stage is one step of the study and how long it ran (0 when cached).
type stage struct {
	name string
	took time.Duration
}

func writeSummary(c config, cal *eval.Report, sweep []sweepRow, best map[string]choice, test map[string]*eval.Report, ret *eval.Report, stages []stage) error {
	path := filepath.Join(c.out, "study.md")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	mi := test[tasks[0]].Model
	fmt.Fprintf(f, "# MAT-Steer study: %s (%s, %s, %d layers, n_embd %d)\n\n", mi.Name, filepath.Base(mi.Path), mi.Desc, mi.NLayer, mi.NEmbd)
	fmt.Fprintf(f, "Time in this run (cached steps count 0): ")
	var total time.Duration
	for _, st := range stages {
		fmt.Fprintf(f, "%s %s; ", st.name, st.took.Round(time.Second))
		total += st.took
	}
	fmt.Fprintf(f, "total %s.\n\n", total.Round(time.Second))
	fmt.Fprintf(f, "Training rows: --tokens %s. ", c.tokens)
	if cal != nil {
		fmt.Fprintf(f, "Strengths: the largest α with KL ≤ %g nats/token on %s (matsteer calibrate).\n\n```\n", c.maxKL, c.klDev)
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
	fmt.Fprintf(f, "```\n\nChosen on dev: ")
	for _, fam := range sortedKeys(best) {
		fmt.Fprintf(f, "%s = %s at α=%g; ", fam, filepath.Base(best[fam].file), best[fam].alpha)
	}
	fmt.Fprintf(f, "\n\n## Test summary\n\n")
	writeHeadline(f, test, ret)
	fmt.Fprintln(f)
	writePairedTests(f, test)
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
	fmt.Fprintf(w, " average (MC2, BBQ, ToxiGen) | KL on neutral text | KL p99 / max | perplexity | generations: ppl, distinct-2 |\n|---|---|")
	for range cols {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintf(w, "---|---|---|---|---|\n")
	marked := false
	// Conditions by the name eval gave them (the first task's order).
	for _, m := range test[tasks[0]].Methods {
		label, setting := m.Name, "-"
		if m.Steering != nil {
			label = m.Steering.Method
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
		kl, tail, ppl, gen := "-", "-", "-", "-"
		if ret != nil && ret.Retention != nil {
			for _, r := range ret.Retention.Results {
				if r.Name == m.Name {
					kl, ppl = fmt.Sprintf("%.3f", r.KL), fmt.Sprintf("%.1f", r.PPL)
					tail = fmt.Sprintf("%.2f / %.2f", r.KLP99, r.KLMax)
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
		fmt.Fprintf(w, " %s | %s | %s | %s |\n", kl, tail, ppl, gen)
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

// label names a condition by its method (the unsteered model: none).
func label(test map[string]*eval.Report, name string) string {
	for _, m := range test[tasks[0]].Methods {
		if m.Name == name && m.Steering != nil {
			return m.Steering.Method
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
