package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/eval"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// taskNeutral is the --task value that runs only the retention and gate
// analyses.
const taskNeutral = "neutral"

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "multiple-choice accuracy, capability retention and gate behaviour, unsteered vs steered",
		UsageText: `matsteer eval --task truthfulqa|bbq|toxigen --data DIR [--split test] [--steer FILE ...] [--strength NAME=X,...]
              [--limit N] [--out results.json] [--plot chart.png] [--kl-text FILE] [--gates]
matsteer eval --task pairs --data my.jsonl [--split all] [--steer FILE ...] [...]
matsteer eval --task neutral [--kl-text FILE] [--kl-chat FILE] [--gen-prompts FILE] [--steer FILE ...] [--gates --gate-data PATH]

Every run evaluates "none" (the unsteered model) and each --steer file on the same items; steering acts
on every prompt and answer token while the choices are scored (teacher-forced log-probs, the prompt
evaluated once per item). Metrics (see the eval package documentation):
   truthfulqa  mc1, mc2 (probability mass on true answers), mc3; summed answer log-probs
   bbq         acc, acc_ambig, acc_disambig, bias_ambig, bias_disambig (BBQ paper bias scores);
               prediction = highest mean log-prob per token
   toxigen     acc: the neutral statement has the higher mean log-prob per token than the hateful one
   pairs       your own attribute, from the JSONL format matsteer extract reads: one item per attribute and
               prompt that has desired (label 1) and undesired (label 0) responses; acc: the best desired
               response has the higher mean log-prob per token; margin: mean of that difference (nats)
--data is a dataset file or directory; a directory holding a folder named after the task (e.g. the
shared data root) is resolved to that folder. Items come from the seeded --split of datasets.Split
with the task's default fractions (the same split as ` + "`matsteer extract --split`" + `); --limit keeps the first N.
For --task pairs the whole file is used unless --split is given; then the examples are split as
` + "`matsteer extract --split`" + ` splits them (by "id"; 80/20 train/dev) before they are paired.

Every metric gets a 95% percentile bootstrap interval over items, and every condition a paired test
against each condition before it (so every steered one against "none"): the difference, its paired
bootstrap interval and a permutation p-value on the same items (--resamples, --stats-seed; the same
seed gives the same numbers).

Capability retention (--kl-text FILE, one text per non-blank line): KL(unsteered || steered) of the
next-token distributions, mean, 99th percentile and maximum over positions in nats, and perplexity
unsteered vs steered. --kl-chat FILE (one neutral prompt per line) measures the same along the unsteered
model's greedy chat replies to the prompts (--kl-chat-tokens each), from their first token on: where a
chat answer is written, which plain text does not cover.
Generation check (--gen-prompts FILE, one prompt per line): a greedy generation of --gen-tokens tokens
per prompt under every condition, each judged by the unsteered model (perplexity of the generated
tokens) and for repetition (distinct-1/2: distinct token n-grams over n-grams), so "steers without
breaking the text" is measured. Prompts go through the chat template when the model has one (--gen-chat).
Gate behaviour (--gates): every steered token's gates on labelled positive/negative texts: the mean gate
per steering attribute and the tokens per text with gate > --gate-threshold (the paper's Table 2).
The texts are the evaluated items' examples (prompt + each choice), or all of --gate-data (only its
--split part when --split is given).
--task neutral runs only these analyses.`,
		Flags: append(modelFlags(),
			&cli.StringFlag{Name: "task", Required: true, Usage: "truthfulqa|bbq|toxigen|pairs|neutral"},
			&cli.StringFlag{Name: "data", Aliases: []string{"d"}, Usage: "dataset file or directory (or a root holding <task>/)"},
			&cli.StringFlag{Name: "split", Value: datasets.PartTest, Usage: "part of the data: train|dev|test|all (--task pairs and --gate-data: all unless given)"},
			&cli.Uint64Flag{Name: "split-seed", Value: datasets.DefaultSeed, Usage: "split seed (any 64-bit number)"},
			intIn(&cli.IntFlag{Name: "limit", Usage: "evaluate the first N items of the split (0: all)"}, 0, maxCount),
			&cli.StringSliceFlag{Name: "steer", Aliases: []string{"s"}, Usage: "steering `FILE` to evaluate, or FILE@ALPHA to evaluate it at its own global strength (repeatable; \"none\" is always included)"},
			&cli.StringSliceFlag{Name: "strength", Usage: "per-attribute strengths NAME=X[,NAME=X...], applied to every file with that attribute"},
			floatsIn(&cli.Float64SliceFlag{Name: "alpha", Value: cli.NewFloat64Slice(1), Usage: "global strength α; several values evaluate each file at each"}, closed(0, steer.MaxStrength)),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the results as JSON"},
			&cli.BoolFlag{Name: "per-item", Usage: "include every item's choice scores in --out"},
			&cli.StringFlag{Name: "plot", Usage: "write a bar chart of the metrics (.png, .svg or .pdf)"},
			&cli.StringFlag{Name: "kl-text", Usage: "neutral text file (one text per line) for KL divergence and perplexity"},
			intIn(&cli.IntFlag{Name: "kl-limit", Usage: "use the first N texts of --kl-text (0: all)"}, 0, maxCount),
			intIn(&cli.IntFlag{Name: "kl-max-tokens", Value: eval.DefaultRetentionMaxTokens, Usage: "cut --kl-text texts to N tokens (at most --ctx)"}, 2, maxCtx),
			&cli.StringFlag{Name: "kl-chat", Usage: "neutral prompts, one per line: KL and perplexity along the unsteered model's chat replies to them"},
			intIn(&cli.IntFlag{Name: "kl-chat-tokens", Value: eval.DefaultChatReplyTokens, Usage: "tokens per --kl-chat reply"}, 1, maxCtx),
			steerSpecialFlag(),
			&cli.BoolFlag{Name: "gates", Usage: "report gate statistics on labelled positive/negative texts"},
			&cli.StringFlag{Name: "gate-data", Usage: "labelled texts for --gates (any format matsteer extract reads; default: the evaluated items)"},
			intIn(&cli.IntFlag{Name: "gate-limit", Value: 200, Usage: "use the first N texts for --gates (0: all)"}, 0, maxCount),
			&cli.StringFlag{Name: "gate-tokens", Value: "all", Usage: "tokens --gates counts: all (prompt + answer) | response (the answer's only; a desired and an undesired text of one item share their prompt)"},
			floatIn(&cli.Float64Flag{Name: "gate-threshold", Value: eval.DefaultGateThreshold, Usage: "a token counts as intervened when its gate exceeds this"}, closed(0, 1)),
			intIn(&cli.IntFlag{Name: "resamples", Value: eval.DefaultResamples, Usage: "bootstrap resamples and permutations for the intervals and paired tests"}, 100, 1_000_000),
			&cli.Uint64Flag{Name: "stats-seed", Value: eval.DefaultStatSeed, Usage: "seed of the bootstrap and permutations (any 64-bit number but 0)"},
			intIn(&cli.IntFlag{Name: "batch-items", Value: eval.DefaultBatchItems, Usage: "items scored together, sharing batches (1: one item at a time; the scores agree up to float rounding)"}, 1, eval.MaxBatchItems),
			&cli.StringFlag{Name: "gen-prompts", Usage: "generation check: greedy generations of these prompts (one per line) under every condition, judged by the unsteered model's perplexity and for repetition (distinct-n)"},
			intIn(&cli.IntFlag{Name: "gen-tokens", Value: eval.DefaultGenerationTokens, Usage: "tokens generated per --gen-prompts prompt"}, 1, 4096),
			intIn(&cli.IntFlag{Name: "gen-limit", Usage: "use the first N prompts of --gen-prompts (0: all)"}, 0, maxCount),
			&cli.BoolFlag{Name: "gen-chat", Usage: "wrap --gen-prompts prompts in the model's chat template (default: on when the model has one)"},
		),
		Action: runEval,
	}
}

// resolveData returns the dataset path for a task: dir/<task> when dir is
// a directory holding it, dir otherwise.
func resolveData(dir, task string) (string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("--data %s: %w", dir, err)
	}
	if st.IsDir() {
		if sub := filepath.Join(dir, task); isDirPath(sub) {
			return sub, nil
		}
	}
	return dir, nil
}

func isDirPath(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// checkPart refuses an unknown --split value.
func checkPart(part string) error {
	switch part {
	case datasets.PartAll, datasets.PartTrain, datasets.PartDev, datasets.PartTest:
		return nil
	}
	return fmt.Errorf("--split %q: want train, dev, test or all", part)
}

// splitPart returns one part of items by the task's default split.
func splitPart(items []datasets.Item, task, part string, seed uint64) ([]datasets.Item, error) {
	fr := datasets.DefaultSplit(task)
	tr, dv, te := datasets.Split(items, fr.Train, fr.Dev, fr.Test, seed)
	switch part {
	case datasets.PartAll:
		return items, nil
	case datasets.PartTrain:
		return tr, nil
	case datasets.PartDev:
		return dv, nil
	case datasets.PartTest:
		return te, nil
	}
	return nil, fmt.Errorf("--split %q: want train, dev, test or all", part)
}

// maxTextFile bounds a --kl-text file.
const maxTextFile = 256 << 20

// readTexts reads one text per non-blank line (a regular file of at most
// 256 MiB) given by flag.
func readTexts(flag, path string, limit int) ([]string, error) {
	data, err := safefile.ReadFile(path, maxTextFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, s)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s %s: no texts", flag, path)
	}
	return out, nil
}

// splitAlpha reads "FILE@ALPHA" (a file evaluated at its own global
// strength) or "FILE" (evaluated at every --alpha).
func splitAlpha(arg string, alphas []float64) (string, []float64, error) {
	i := strings.LastIndexByte(arg, '@')
	if i < 0 {
		return arg, alphas, nil
	}
	if _, err := os.Stat(arg); err == nil {
		return arg, alphas, nil // a file name that contains '@'
	}
	a, err := strconv.ParseFloat(arg[i+1:], 64)
	if err != nil {
		return "", nil, fmt.Errorf("--steer %s: want FILE or FILE@ALPHA", arg)
	}
	return arg[:i], []float64{a}, nil
}

// loadMethods loads every --steer file at every --alpha, giving each file
// the --strength entries of its own attributes.
func loadMethods(c *cli.Context, m *llama.Model, cat *hooks.Catalog) ([]eval.Method, error) {
	methods := []eval.Method{eval.Unsteered()}
	strengths, err := steer.ParseStrengths(c.StringSlice("strength"))
	if err != nil {
		return nil, fmt.Errorf("--strength: %w", err)
	}
	paths := c.StringSlice("steer")
	if len(strengths) > 0 && len(paths) == 0 {
		return nil, errors.New("--strength given without --steer")
	}
	alphas := c.Float64Slice("alpha")
	if len(alphas) == 0 {
		alphas = []float64{1}
	}
	// Read every file first, so --strength is checked against all of them.
	files := make([]*steer.File, len(paths))
	filePaths := make([]string, len(paths))
	fileAlphas := make([][]float64, len(paths))
	for i, arg := range paths {
		if filePaths[i], fileAlphas[i], err = splitAlpha(arg, alphas); err != nil {
			return nil, err
		}
		if files[i], err = steer.ReadFile(filePaths[i]); err != nil {
			return nil, err
		}
	}
	own, err := strengthsByFile(strengths, files)
	if err != nil {
		return nil, err
	}
	names := map[string]int{eval.NoneName: 1}
	for i, path := range filePaths {
		base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		for _, alpha := range fileAlphas[i] {
			name := base
			if len(fileAlphas[i]) > 1 || len(alphas) > 1 || fileAlphas[i][0] != alphas[0] {
				name += "@" + strconv.FormatFloat(alpha, 'g', -1, 64)
			}
			names[name]++
			if n := names[name]; n > 1 {
				name += "#" + strconv.Itoa(n)
			}
			meth, err := eval.NewMethod(name, path, files[i], steer.ApplyOptions{Global: alpha, Strengths: own[i], SteerSpecial: c.Bool("steer-special")}, m, cat)
			if err != nil {
				return nil, err
			}
			methods = append(methods, meth)
		}
	}
	return methods, nil
}

func runEval(c *cli.Context) error {
	start := time.Now()
	task := strings.ToLower(c.String("task"))
	if task != taskNeutral {
		if err := eval.CheckTask(task); err != nil {
			return fmt.Errorf("--task %q: want truthfulqa, bbq, toxigen, pairs or neutral", c.String("task"))
		}
	}
	if err := checkPart(c.String("split")); err != nil {
		return err
	}
	if c.Uint64("stats-seed") == 0 {
		return errors.New("--stats-seed 0: choose another seed (0 stands for the default)")
	}
	stats, err := eval.StatOptions{Resamples: c.Int("resamples"), Seed: c.Uint64("stats-seed")}.WithDefaults()
	if err != nil {
		return fmt.Errorf("--resamples: %w", err)
	}
	if task == taskNeutral && c.String("kl-text") == "" && c.String("kl-chat") == "" && !c.Bool("gates") && c.String("gen-prompts") == "" {
		return errors.New("--task neutral needs --kl-text FILE, --kl-chat FILE, --gen-prompts FILE and/or --gates --gate-data PATH")
	}
	if task == taskNeutral && c.Bool("gates") && c.String("gate-data") == "" {
		return errors.New("--gates with --task neutral needs --gate-data PATH")
	}
	if gt := c.String("gate-tokens"); gt != "all" && gt != "response" {
		return fmt.Errorf("--gate-tokens %q: want all or response", gt)
	}
	if c.IsSet("gate-tokens") && !c.Bool("gates") {
		return errors.New("--gate-tokens needs --gates")
	}
	if c.IsSet("plot") {
		if err := checkPlotPath("--plot", c.String("plot")); err != nil {
			return err
		}
	}
	if err := checkKLMaxTokens(c); err != nil {
		return err
	}
	if err := checkKLChatTokens(c); err != nil {
		return err
	}
	if err := safefile.CheckOutputs(flagOutputs(c, "out", "plot"),
		append(flagInputs(c, "data", "steer", "kl-text", "kl-chat", "gate-data", "gen-prompts"), modelInput(c)...)); err != nil {
		return err
	}
	split, seed := c.String("split"), c.Uint64("split-seed")
	if task == datasets.TaskPairs && !c.IsSet("split") {
		split = datasets.PartAll // the user's own file is evaluated whole
	}
	rep := &eval.Report{Task: task, Split: split, SplitSeed: seed, Limit: c.Int("limit"), Created: start.UTC()}

	// Data first, so that mistakes are reported before the model loads.
	var items []datasets.Item
	if task != taskNeutral {
		if c.String("data") == "" {
			return fmt.Errorf("--task %s needs --data (a %s file or directory)", task, task)
		}
		path, err := resolveData(c.String("data"), task)
		if err != nil {
			return err
		}
		if task == datasets.TaskPairs {
			if items, _, err = datasets.LoadPairs(path, split, seed); err != nil {
				return err
			}
		} else {
			_, all, err := datasets.LoadItems(path, task)
			if err != nil {
				return err
			}
			if items, err = splitPart(all, task, split, seed); err != nil {
				return err
			}
		}
		if n := c.Int("limit"); n > 0 && len(items) > n {
			items = items[:n]
		}
		if len(items) == 0 {
			return fmt.Errorf("no %s items in %s (--split %s)", task, path, split)
		}
		rep.Data, rep.NItems, rep.Scoring = path, len(items), eval.ScoringRule(task)
		rep.Stats, rep.Statistics = &stats, eval.StatisticsRule
	}
	var texts []string
	if p := c.String("kl-text"); p != "" {
		var err error
		if texts, err = readTexts("--kl-text", p, c.Int("kl-limit")); err != nil {
			return err
		}
	}
	var chatPrompts []string
	if p := c.String("kl-chat"); p != "" {
		var err error
		if chatPrompts, err = readTexts("--kl-chat", p, 0); err != nil {
			return err
		}
	}
	var genPrompts []string
	if p := c.String("gen-prompts"); p != "" {
		var err error
		if genPrompts, err = readTexts("--gen-prompts", p, c.Int("gen-limit")); err != nil {
			return err
		}
	}
	var examples []datasets.Example
	gateSource, gateSplit := "", split
	if c.Bool("gates") {
		if p := c.String("gate-data"); p != "" {
			// Data given for the gates is used whole unless --split says
			// which part.
			if !c.IsSet("split") {
				gateSplit = datasets.PartAll
			}
			var err error
			if examples, err = datasets.LoadSplitExamples(p, datasets.FormatAuto, gateSplit, seed); err != nil {
				return err
			}
			gateSource = p
		} else {
			examples, gateSource = datasets.Examples(items, ""), rep.Data
		}
		if n := c.Int("gate-limit"); n > 0 && len(examples) > n {
			examples = examples[:n]
		}
		if len(examples) == 0 {
			return fmt.Errorf("--gates: no examples in %s (--split %s)", gateSource, gateSplit)
		}
		if c.String("gate-tokens") == "response" {
			// Checked again after tokenizing (eval.GateOptions.ResponseOnly);
			// an empty response fails here, before any scoring.
			for _, ex := range examples {
				if ex.Response == "" {
					return fmt.Errorf("--gate-tokens response: %s has no response to count (a \"text\" example?); use --gate-tokens all", ex.Source)
				}
			}
		}
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	rep.Model = eval.DescribeModel(m)
	cat, err := hooks.Probe(m)
	if err != nil {
		return err
	}
	methods, err := loadMethods(c, m, cat)
	if err != nil {
		return err
	}
	if c.Bool("gates") && len(methods) == 1 {
		return errors.New("--gates needs at least one --steer file")
	}
	r, err := eval.NewRunner(m, cat, contextParams(c))
	if err != nil {
		return err
	}
	defer r.Close()
	rep.Context = runnerContext(c, r)
	stderr := c.App.ErrWriter
	var genOpts eval.GenerationOptions
	if len(genPrompts) > 0 {
		chat := r.Model().ChatTemplate() != ""
		if c.IsSet("gen-chat") {
			chat = c.Bool("gen-chat")
		}
		genOpts = eval.GenerationOptions{MaxTokens: c.Int("gen-tokens"), Chat: chat, Progress: stderr}
		// Prompts that do not fit fail now, not after the other analyses.
		if err := r.CheckGeneration(genPrompts, genOpts); err != nil {
			return fmt.Errorf("--gen-prompts: %w", err)
		}
	}
	if len(chatPrompts) > 0 {
		if err := r.CheckChatReplies(chatPrompts, c.Int("kl-chat-tokens")); err != nil {
			return fmt.Errorf("--kl-chat: %w", err)
		}
	}

	if len(items) > 0 {
		res, err := r.Evaluate(c.Context, task, items, methods, eval.Options{Progress: stderr, Stats: stats, BatchItems: c.Int("batch-items")})
		if err != nil {
			return err
		}
		if !c.Bool("per-item") {
			for i := range res {
				res[i].Items = nil
			}
		}
		rep.Methods = res
	}
	if len(texts) > 0 {
		res, err := r.Retention(c.Context, texts, methods, eval.RetentionOptions{MaxTokens: c.Int("kl-max-tokens"), Progress: stderr})
		if err != nil {
			return err
		}
		rep.Retention = &eval.RetentionReport{Source: c.String("kl-text"), MaxTokens: c.Int("kl-max-tokens"), Results: res}
	}
	if len(chatPrompts) > 0 {
		seqs, err := r.ChatReplies(c.Context, chatPrompts, c.Int("kl-chat-tokens"), stderr)
		if err != nil {
			return fmt.Errorf("--kl-chat: %w", err)
		}
		res, err := r.RetentionSequences(c.Context, seqs, methods, eval.RetentionOptions{MaxTokens: c.Int("kl-max-tokens"), Progress: stderr})
		if err != nil {
			return fmt.Errorf("--kl-chat: %w", err)
		}
		rep.ChatRetention = &eval.RetentionReport{Source: c.String("kl-chat"), MaxTokens: c.Int("kl-chat-tokens"), Results: res}
	}
	if len(genPrompts) > 0 {
		res, err := r.GenerationCheck(c.Context, genPrompts, methods, genOpts)
		if err != nil {
			return err
		}
		rep.Generation = &eval.GenerationReport{Source: c.String("gen-prompts"), MaxTokens: c.Int("gen-tokens"), Chat: genOpts.Chat, Results: res}
	}
	if len(examples) > 0 {
		res, err := r.GateStats(c.Context, examples, methods, eval.GateOptions{Threshold: c.Float64("gate-threshold"), ResponseOnly: c.String("gate-tokens") == "response", Progress: stderr})
		if err != nil {
			return err
		}
		rep.Gates = &eval.GateReport{Source: gateSource, Split: gateSplit, Results: res}
	}
	if err := finishReport(c, rep, start); err != nil {
		return err
	}
	if p := c.String("plot"); p != "" {
		pl, err := rep.Plot()
		if err != nil {
			return err
		}
		if err := writePlot(pl, p); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", p)
	}
	return nil
}

// finishReport stamps the report's run time, prints its tables and writes
// it to --out, if given.
func finishReport(c *cli.Context, rep *eval.Report, start time.Time) error {
	rep.Seconds = time.Since(start).Seconds()
	if err := rep.WriteText(c.App.Writer); err != nil {
		return err
	}
	if p := c.String("out"); p != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		if err := safefile.WriteFile(p, append(data, '\n')); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "wrote %s\n", p)
	}
	return nil
}

// runnerContext records the runner's context settings for a report.
func runnerContext(c *cli.Context, r *eval.Runner) eval.ContextCfg {
	return eval.ContextCfg{NCtx: r.Context().NCtx(), NBatch: r.Context().NBatch(), Threads: c.Int("threads")}
}

// checkKLMaxTokens refuses a --kl-max-tokens longer than the context
// (which would otherwise be cut to it silently).
// checkKLChatTokens checks that a --kl-chat reply fits --kl-max-tokens
// and --ctx with room for a prompt.
func checkKLChatTokens(c *cli.Context) error {
	if c.String("kl-chat") == "" {
		return nil
	}
	n := c.Int("kl-chat-tokens")
	if lim := min(c.Int("kl-max-tokens"), c.Int("ctx")); n >= lim {
		return fmt.Errorf("--kl-chat-tokens %d leaves no room for a prompt within %d tokens (--kl-max-tokens and --ctx); lower it or raise them", n, lim)
	}
	return nil
}

func checkKLMaxTokens(c *cli.Context) error {
	if n, ctx := c.Int("kl-max-tokens"), c.Int("ctx"); c.IsSet("kl-max-tokens") && n > ctx {
		return fmt.Errorf("--kl-max-tokens %d is longer than --ctx %d; raise --ctx or lower --kl-max-tokens", n, ctx)
	}
	return nil
}
