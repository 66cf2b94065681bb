package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/internal/trainset"
	"github.com/matsteer/matsteer/steer"
)

func trainCommand() *cli.Command {
	def := steer.DefaultTrainConfig()
	return &cli.Command{
		Name:      "train",
		Usage:     "train a steering file (MAT-Steer or a baseline) from activation files",
		ArgsUsage: " ",
		Description: `Reads labelled activations (from ` + "`matsteer extract`" + `), groups the rows by attribute
name across all --acts files, and writes a steering file (GGUF).

Methods:
   mat-steer   gated multi-attribute steering (default)
   all-tokens  MAT-Steer's vectors applied to every token without gates (ablation)
   mean-diff   mean(positive) - mean(negative), every token
   pca         first principal component of paired differences (pos[i] - neg[i]
               in file order), sign-aligned with and scaled to the mean difference

Loss modes: reference (the official code's reductions; default) or paper (plain sums).
Kernel bandwidth (--sigma): a number (2 = the paper), a comma list (sum of kernels),
median, median*X, multi (= median x {0.5,1,2}) or multi:X,Y,... . The trainer warns when
the kernel is too narrow for the activations' distance scale.

Presets (--preset; any flag given on the command line overrides the preset):
   default     works on real LLM activations: --sigma median --theta-init mean-diff
               --mmd-norm initial --gate-input scale, with the official model, losses, weights
               (0.9/0.9/0.1), reductions and schedule (Adam lr 1e-3, 100 epochs, 16+16 rows).
               The official settings learn nothing on residual-stream activations (norms
               ~100-1000, outlier dimensions): the sigma-2 kernel underflows, a random theta
               (|theta| 24, lr 1e-3) cannot turn before the gates close, and MMD^2 between real
               positives and negatives (~0.005-0.04) is far below the 0.9-weighted gate
               penalties. Each of these three changes is needed (see the steer package doc).
   reference   the official code exactly: --sigma 2 --gate-input raw --theta-init normal
               --theta-scale none --mmd-norm none (the numbers of the official implementation).

--gate-input scale|standardize and --theta-scale data are reparameterisations, folded back
into the file (which always holds theta and the gate on raw activations). scale (divide the
gate input by the RMS coordinate, median row norm/sqrt(d)) is the default: with raw inputs
the learned gates are nearly binary and seldom open on generated tokens (weak effect when
generating); standardize (per-dimension mean/std) saturates the gate open (g = 1) on the
attention-sink first-token rows, whose standardised coordinates are huge.

The printed "final loss" includes the normalised MMD term (MMD^2 / its unsteered value,
which with 16-row batches includes the V-statistic's bias); the per-attribute lines give
MMD^2 before and after steering on 256+256 rows and the mean gates.

Neutral rows (--neutral-acts FILE, mat-steer): activations of ordinary text that belongs to no
attribute, every row of the file whatever its attribute and label (extract neutral sentences with
--tokens all; extract wants both labels in a file, so label the lines 0 and 1 alternately; or the
model's own chat answers: extract --chat-replies PROMPTS). Every gate is
penalised on a batch of them each step (weight --lambda-neutral, default 0.9 with the flag), so the
gates learn what ordinary text looks like and stay shut on it; the paper's losses only see each
attribute's positives and negatives. The per-attribute lines then also give the mean gate on the
neutral rows.

Shared rows (--shared, mat-steer and all-tokens): with every token as training rows (extract
--tokens all) a positive and its paired negatives share their prompt, and those rows are
bit-identical on both sides: they carry no label. keep trains on them (the paper); drop removes
every row an attribute has among both its positives and negatives; neutral removes them and adds
them to the neutral rows, so the gates learn to stay shut on prompts (--lambda-neutral applies).

Sharper gates (--gate-shift S, mat-steer): every gate bias is lowered by S after training, so a
gate g becomes about g·e^-S where it is small and stays near 1 where it is large: steering
concentrates on the tokens whose gate logit is highest (per attribute: each keeps its own
ordering). The gates' ratio between the texts that need steering and those that do not grows
with S, and every gate gets smaller, so calibrate α again (matsteer calibrate). --init FILE
--epochs 0 --gate-shift S sharpens an existing file without training (--acts may then be left
out: every attribute is copied with its gate shifted).

Warm start (--init FILE, mat-steer only): continue training an existing steering file with new
labelled examples (a feedback loop). Its attributes that have rows in --acts start from the file's
vectors and gates; attributes only in --acts are added with the usual fresh initialisation;
attributes of the file without rows are copied unchanged. The output lists the file's attributes
first, in its order. --epochs 0 writes the file's attributes unchanged. The activations must come
from the file's model, site, layer and width, and norm preservation is the file's (a contrary
--norm-preserve/--no-norm-preserve is refused). The other settings are this command's (preset and
flags), not the file's: the kernel bandwidth, MMD normalisation and gate-input scale are computed
from the new rows, and the optimiser starts fresh. --out must differ from --init.

Examples:
   matsteer train --acts truthfulqa.safetensors --acts toxigen.safetensors --out steer.gguf
   matsteer train --acts acts.safetensors --out steer.gguf --sigma median --plot loss.png --log train.json
   matsteer train --acts acts.safetensors --out meandiff.gguf --method mean-diff
   matsteer train --acts acts.safetensors --out official.gguf --preset reference
   matsteer train --init steer.gguf --acts new-examples.safetensors --out steer-v2.gguf --epochs 30
   matsteer train --init steer.gguf --epochs 0 --gate-shift 2 --out sharp.gguf`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "acts", Usage: "activation file (repeatable; required except with --init FILE --epochs 0)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "steering file to write", Required: true},
			&cli.StringFlag{Name: "method", Value: steer.MethodMATSteer, Usage: "mat-steer | all-tokens | mean-diff | pca"},
			&cli.StringFlag{Name: "preset", Value: steer.PresetDefault, Usage: "default | reference (the official code's settings: sigma 2, raw gate input, theta ~ N(0,I), plain MMD); flags given override it"},
			&cli.StringFlag{Name: "mode", Value: def.Mode, Usage: "loss mode: reference | paper"},
			intIn(&cli.IntFlag{Name: "epochs", Value: def.Epochs, Usage: "training epochs (0 only with --init: the file's attributes unchanged)"}, 0, 1_000_000),
			&cli.StringSliceFlag{Name: "neutral-acts", Usage: "activation `FILE` of neutral text (repeatable; all its rows): gates are penalised on them"},
			floatIn(&cli.Float64Flag{Name: "lambda-neutral", Value: defaultLambdaNeutral, Usage: "weight of the gate penalty on --neutral-acts rows"}, closed(0, 1e6)),
			&cli.StringFlag{Name: "shared", Value: steer.SharedKeep, Usage: "rows an attribute has among both its positives and negatives: keep | drop | neutral (drop them and use them as neutral rows)"},
			floatIn(&cli.Float64Flag{Name: "shared-tol", Usage: "with --shared drop|neutral: rows within this relative distance of a row on the other side count as shared too (the same prompt token from two extraction batches need not be bit-identical; e.g. 0.05; 0: bit-identical only)"}, rightOpen(0, 1)),
			&cli.StringFlag{Name: "init", Usage: "steering `FILE` (mat-steer) to continue training from with the rows of --acts (warm start)"},
			floatIn(&cli.Float64Flag{Name: "lr", Value: def.LR, Usage: "Adam learning rate"}, leftOpen(0, 100)),
			intIn(&cli.IntFlag{Name: "batch", Value: def.Batch, Usage: "positives and negatives per attribute per step"}, 1, 1<<16),
			&cli.StringFlag{Name: "sigma", Value: def.Sigma.String(), Usage: "MMD kernel bandwidth: X | X,Y,... | median | median*X | multi | multi:X,Y,... (each X in (0, 1e12], at most 16)"},
			floatIn(&cli.Float64Flag{Name: "lambda-pos", Value: def.LambdaPos, Usage: "weight of the preservation penalty (gates on positives)"}, closed(0, 1e6)),
			floatIn(&cli.Float64Flag{Name: "lambda-sparse", Value: def.LambdaSparse, Usage: "weight of the sparsity penalty (gates on negatives)"}, closed(0, 1e6)),
			floatIn(&cli.Float64Flag{Name: "lambda-ortho", Value: def.LambdaOrtho, Usage: "weight of the orthogonality penalty"}, closed(0, 1e6)),
			&cli.StringFlag{Name: "gate-input", Value: def.GateInput, Usage: "coordinates the gate is trained in: standardize (per-dimension mean/std of the rows, folded back into w, b) | scale (divide by the RMS coordinate) | raw"},
			floatIn(&cli.Float64Flag{Name: "gate-bias-init", Usage: "start every gate bias at this value (trained coordinates; default U(±1/sqrt(d)), gates ≈ 0.5; e.g. -2: gates start ≈ 0.12)"}, closed(-100, 100)),
			floatIn(&cli.Float64Flag{Name: "gate-shift", Usage: "mat-steer: subtract this from every gate bias after training (gates σ(w·a + b − S): sharper, they stay open where the gate logit is highest; calibrate α again after it)"}, closed(0, steer.MaxGateShift)),
			&cli.StringFlag{Name: "theta-init", Value: def.ThetaInit, Usage: "theta initialisation: mean-diff (mean positive - mean negative) | scaled (N(0, s^2 I), |theta| ~ |mean diff|) | normal (N(0, I))"},
			&cli.StringFlag{Name: "theta-scale", Value: def.ThetaScale, Usage: "theta learning-rate scale: none | data (lr relative to the RMS coordinate of the rows)"},
			&cli.StringFlag{Name: "mmd-norm", Value: def.MMDNorm, Usage: "divide each attribute's MMD term by its unsteered MMD^2 (initial) or not (none)"},
			&cli.Uint64Flag{Name: "seed", Value: def.Seed, Usage: "random seed, any 64-bit number (same inputs and seed give the same file)"},
			floatIn(&cli.Float64Flag{Name: "dev-fraction", Usage: "hold out this fraction of each attribute's rows for a dev loss"}, rightOpen(0, 1)),
			intIn(&cli.IntFlag{Name: "patience", Usage: "stop after this many epochs without a better dev loss (needs --dev-fraction; 0: never)"}, 0, 1_000_000),
			&cli.BoolFlag{Name: "no-norm-preserve", Usage: "do not rescale steered rows to their original norm"},
			&cli.BoolFlag{Name: "norm-preserve", Usage: "rescale steered rows to their original norm (default for mat-steer and all-tokens)"},
			&cli.StringFlag{Name: "plot", Usage: "write a plot of the loss terms per epoch (.png, .svg or .pdf)"},
			&cli.StringFlag{Name: "log", Usage: "write the training log (JSON, loss terms per epoch)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: runTrain,
	}
}

// trainData is what train needs from the activation files.
// defaultLambdaNeutral is --lambda-neutral's default: λ_sparse's paper value.
const defaultLambdaNeutral = 0.9

// loadNeutralActs reads every row of a neutral activation file, which must
// match the training files' model, site, layer and width (meta, from
// first).
func loadNeutralActs(path string, meta acts.Meta, first string) ([][]float64, string, error) {
	sum, err := trainset.FileSHA256(path)
	if err != nil {
		return nil, "", fmt.Errorf("--neutral-acts: %w", err)
	}
	af, err := acts.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("--neutral-acts: %w", err)
	}
	defer af.Close()
	if err := trainset.SameMeta(meta, af.Meta, first, path); err != nil {
		return nil, "", fmt.Errorf("--neutral-acts: %w", err)
	}
	vecs, err := af.Vectors()
	if err != nil {
		return nil, "", fmt.Errorf("--neutral-acts: %w", err)
	}
	d := af.Meta.NEmbd
	if len(af.Rows) == 0 {
		return nil, "", fmt.Errorf("--neutral-acts %s: no rows", path)
	}
	rows := make([][]float64, len(af.Rows))
	for i := range rows {
		rows[i] = trainset.Float64s(vecs[i*d : (i+1)*d])
	}
	return rows, sum, nil
}

// trainConfigFromFlags builds the training configuration: the --preset,
// then every flag given on the command line.
func trainConfigFromFlags(c *cli.Context) (steer.TrainConfig, error) {
	cfg, err := steer.PresetConfig(c.String("preset"))
	if err != nil {
		return cfg, fmt.Errorf("--preset: %w", err)
	}
	cfg.Method = c.String("method")
	set := func(name string, apply func()) {
		if c.IsSet(name) {
			apply()
		}
	}
	set("mode", func() { cfg.Mode = c.String("mode") })
	set("epochs", func() { cfg.Epochs = c.Int("epochs") })
	set("lr", func() { cfg.LR = c.Float64("lr") })
	set("batch", func() { cfg.Batch = c.Int("batch") })
	set("lambda-pos", func() { cfg.LambdaPos = c.Float64("lambda-pos") })
	set("lambda-sparse", func() { cfg.LambdaSparse = c.Float64("lambda-sparse") })
	set("lambda-ortho", func() { cfg.LambdaOrtho = c.Float64("lambda-ortho") })
	set("gate-input", func() { cfg.GateInput = c.String("gate-input") })
	set("theta-init", func() { cfg.ThetaInit = c.String("theta-init") })
	set("gate-bias-init", func() { v := c.Float64("gate-bias-init"); cfg.GateBiasInit = &v })
	set("gate-shift", func() { cfg.GateShift = c.Float64("gate-shift") })
	set("theta-scale", func() { cfg.ThetaScale = c.String("theta-scale") })
	set("mmd-norm", func() { cfg.MMDNorm = c.String("mmd-norm") })
	if c.IsSet("sigma") {
		sg, err := steer.ParseSigma(c.String("sigma"))
		if err != nil {
			return cfg, fmt.Errorf("--sigma: %w", err)
		}
		cfg.Sigma = sg
	}
	cfg.Seed = c.Uint64("seed")
	cfg.DevFraction = c.Float64("dev-fraction")
	cfg.Patience = c.Int("patience")
	if c.Bool("norm-preserve") && c.Bool("no-norm-preserve") {
		return cfg, fmt.Errorf("--norm-preserve and --no-norm-preserve contradict each other")
	}
	// MAT-Steer is trained with norm preservation; the classical baselines
	// (CAA-style mean difference, PCA) just add their vector.
	cfg.NormPreserve = cfg.Method == steer.MethodMATSteer || cfg.Method == steer.MethodAllTokens
	if c.Bool("norm-preserve") {
		cfg.NormPreserve = true
	}
	if c.Bool("no-norm-preserve") {
		cfg.NormPreserve = false
	}
	if !c.Bool("quiet") {
		cfg.Progress = c.App.ErrWriter
		if cfg.Progress == nil {
			cfg.Progress = os.Stderr
		}
	}
	return cfg, nil
}

func runTrain(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("train takes no arguments (got %q); give activation files with --acts", c.Args().First())
	}
	cfg, err := trainConfigFromFlags(c)
	if err != nil {
		return err
	}
	initPath := c.String("init")
	if c.IsSet("init") && initPath == "" {
		return fmt.Errorf("--init: empty path")
	}
	if initPath == "" && cfg.Epochs == 0 {
		return fmt.Errorf("--epochs 0 needs --init (it writes the init file's attributes unchanged)")
	}
	if initPath != "" && cfg.Method != steer.MethodMATSteer {
		return fmt.Errorf("--init continues MAT-Steer training: it needs --method %s, not %s", steer.MethodMATSteer, cfg.Method)
	}
	if cfg.GateShift > 0 && cfg.Method != steer.MethodMATSteer {
		return fmt.Errorf("--gate-shift needs --method %s (the only one with gates), not %s", steer.MethodMATSteer, cfg.Method)
	}
	neutralPaths := c.StringSlice("neutral-acts")
	cfg.Shared = c.String("shared")
	actsPaths := c.StringSlice("acts")
	if slices.Contains(actsPaths, "") {
		return fmt.Errorf("--acts: empty path")
	}
	if len(actsPaths) == 0 {
		switch {
		case initPath == "" || cfg.Epochs != 0:
			return fmt.Errorf("--acts: no activation file (only --init FILE --epochs 0 runs without rows: it copies the file, applying --gate-shift)")
		case len(neutralPaths) > 0 || cfg.Shared != steer.SharedKeep:
			return fmt.Errorf("--neutral-acts and --shared need --acts (without rows nothing is trained)")
		}
	}
	cfg.SharedTolerance = c.Float64("shared-tol")
	if cfg.Shared != steer.SharedKeep && cfg.Shared != steer.SharedDrop && cfg.Shared != steer.SharedNeutral {
		return fmt.Errorf("--shared %q: want %s, %s or %s", cfg.Shared, steer.SharedKeep, steer.SharedDrop, steer.SharedNeutral)
	}
	usesNeutral := len(neutralPaths) > 0 || cfg.Shared == steer.SharedNeutral
	if c.IsSet("lambda-neutral") && !usesNeutral {
		return fmt.Errorf("--lambda-neutral needs --neutral-acts or --shared neutral")
	}
	if (usesNeutral || cfg.Shared != steer.SharedKeep) && (cfg.Method == steer.MethodMeanDiff || cfg.Method == steer.MethodPCA) {
		return fmt.Errorf("--neutral-acts and --shared train gates: they need --method %s or %s, not %s", steer.MethodMATSteer, steer.MethodAllTokens, cfg.Method)
	}
	if usesNeutral {
		cfg.LambdaNeutral = c.Float64("lambda-neutral")
	}
	if c.IsSet("plot") {
		if err := checkPlotPath("--plot", c.String("plot")); err != nil {
			return err
		}
	}
	if err := safefile.CheckOutputs(flagOutputs(c, "out", "log", "plot"), flagInputs(c, "acts", "init", "neutral-acts")); err != nil {
		return err
	}
	var initSHA string
	if initPath != "" {
		if cfg.Init, err = steer.ReadFile(initPath); err != nil {
			return fmt.Errorf("--init: %w", err)
		}
		if initSHA, err = trainset.FileSHA256(initPath); err != nil {
			return fmt.Errorf("--init: %w", err)
		}
		// The file's norm preservation unless a flag says otherwise (a
		// contrary flag is refused by the trainer).
		if !c.IsSet("norm-preserve") && !c.IsSet("no-norm-preserve") {
			cfg.NormPreserve = cfg.Init.NormPreserve
		}
	}
	td := &trainset.Set{} // no rows: --init FILE --epochs 0
	if len(actsPaths) > 0 {
		if td, err = trainset.Read(actsPaths); err != nil {
			return err
		}
	}
	m := td.Meta
	var neutralSums []string
	for _, p := range neutralPaths {
		rows, sum, err := loadNeutralActs(p, m, actsPaths[0])
		if err != nil {
			return err
		}
		cfg.Neutral = append(cfg.Neutral, rows...)
		neutralSums = append(neutralSums, sum)
	}
	if len(actsPaths) > 0 { // else the init file's
		cfg.Site, cfg.Layer = m.Site, m.Layer
		cfg.ModelArch, cfg.ModelName, cfg.ModelID = m.ModelArch, m.ModelName, m.Extra["model_sha256"]
	}
	f, log, err := steer.Train(c.Context, td.Attrs, cfg)
	if err != nil {
		if cfg.Init != nil {
			return fmt.Errorf("--init %s: %w", initPath, err)
		}
		return err
	}
	if cfg.Init != nil {
		f.Training["init.file"] = filepath.Base(initPath)
		f.Training["init.sha256"] = initSHA
	}
	for i, path := range actsPaths {
		f.Training["data."+strconv.Itoa(i)+".file"] = filepath.Base(path)
		f.Training["data."+strconv.Itoa(i)+".sha256"] = td.SHA256[i]
	}
	if len(actsPaths) > 0 {
		f.Training["data.rows"] = strconv.Itoa(td.Rows)
	}
	for i, path := range neutralPaths {
		f.Training["neutral."+strconv.Itoa(i)+".file"] = filepath.Base(path)
		f.Training["neutral."+strconv.Itoa(i)+".sha256"] = neutralSums[i]
	}
	if m.TokenMode != "" {
		f.Training["token_mode"] = m.TokenMode
	}
	out := c.String("out")
	if err := f.WriteFile(out); err != nil {
		return err
	}
	w := c.App.Writer
	if w == nil {
		w = os.Stdout
	}
	if p := c.String("log"); p != "" {
		if err := writeTrainLog(p, log); err != nil {
			return err
		}
	}
	if p := c.String("plot"); p != "" {
		if len(log.Epochs) == 0 {
			fmt.Fprintf(c.App.ErrWriter, "matsteer: --plot skipped: method %s has no training epochs\n", f.Method)
		} else if pl, err := log.Plot(); err != nil {
			return err
		} else if err := writePlot(pl, p); err != nil {
			return err
		}
	}
	errw := c.App.ErrWriter
	if errw == nil {
		errw = os.Stderr
	}
	for _, warn := range log.Warnings {
		fmt.Fprintf(errw, "warning: %s\n", warn)
	}
	fmt.Fprintf(w, "wrote %s: method %s, %d attributes (%s), site %s layer %d, n_embd %d\n",
		out, f.Method, len(f.Attributes), strings.Join(f.AttributeNames(), ", "), f.Site, f.Layer, f.NEmbd)
	if log.Shared != "" {
		parts := make([]string, len(log.Attributes))
		for i, a := range log.Attributes {
			parts[i] = fmt.Sprintf("%s %d+%d", a, log.SharedPos[i], log.SharedNeg[i])
		}
		fmt.Fprintf(w, "shared rows (--shared %s; positive+negative rows removed): %s; %d neutral rows\n", log.Shared, strings.Join(parts, ", "), log.NNeutral)
	}
	if cfg.Init != nil {
		kept := "kept unchanged (no rows)"
		if cfg.GateShift > 0 {
			kept = "kept (no rows; gates shifted)"
		}
		fmt.Fprintf(w, "warm start from %s: refined %s; added %s; %s %s\n",
			initPath, listOrNone(log.Refined), listOrNone(log.Added), kept, listOrNone(log.Kept))
	}
	if cfg.GateShift > 0 {
		fmt.Fprintf(w, "gate shift: every gate bias lowered by %g\n", cfg.GateShift)
	}
	if len(log.Epochs) > 0 {
		l := log.Final
		fmt.Fprintf(w, "final loss %.6g (mmd %.6g, pos %.6g, sparse %.6g, ortho %.6g) after %d epochs; sigma %s = %s\n",
			l.Total, l.MMD, l.Pos, l.Sparse, l.Ortho, log.EpochsRun, log.Sigma, f.Training["sigma_values"])
	}
	for _, e := range log.Eval {
		neutral := ""
		if log.NNeutral > 0 {
			neutral = fmt.Sprintf(", on neutral rows %.3f", e.GateNeutral)
		}
		fmt.Fprintf(w, "  %s (%s rows): MMD^2 %.4g -> %.4g (%d+%d rows), mean gate on positives %.3f, on negatives %.3f%s\n",
			e.Name, e.Split, e.MMDBefore, e.MMDAfter, e.EvalRows, e.EvalRows, e.GatePos, e.GateNeg, neutral)
	}
	return nil
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func writeTrainLog(path string, log *steer.TrainLog) error {
	if err := safefile.Write(path, log.WriteJSON); err != nil {
		return fmt.Errorf("training log: %w", err)
	}
	return nil
}
