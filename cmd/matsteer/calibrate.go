package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/eval"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/steer"
)

func calibrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "calibrate",
		Usage: "find the strongest global strength α a steering file can use within a KL budget on neutral text",
		UsageText: `matsteer calibrate --steer FILE [--steer FILE ...] --kl-text FILE [--kl-chat FILE] [--max-kl 0.1] [--max-kl-p99 X] [--out calibration.json]

For each steering file, the mean KL(unsteered || steered) of next-token distributions on the neutral
texts (one per non-blank line) is measured at every --grid strength in one pass, then bisected on log α
between the largest strength within budget and the next one. The answer is the largest α measured
within --max-kl nats per position, below the first strength over it (midpoints have three significant
digits); use it as ` + "`--global`" + ` in matsteer generate or as FILE@ALPHA in matsteer eval.
"capped" means even the largest grid strength stays within budget; --max-alpha X then keeps doubling
it (one pass each) up to X and bisects as usual. Gated steering that leaves most neutral tokens alone
can need far more α than the grid holds before it spends its budget.

The mean hides the tail: gated steering can keep the mean low while changing a few next-token
distributions a lot (a garbled word when generating). Every strength's 99th percentile and maximum of
the per-position KL are reported next to the mean; --max-kl-p99 X adds a budget on the 99th
percentile, and α is then the largest strength within both budgets ("bound by" says which one
stopped it).

Plain text is not where a chat answer is written. --kl-chat FILE (one neutral prompt per line) adds
the positions of chat replies: each prompt becomes a user turn in the model's chat template, the
unsteered model writes its greedy reply (--kl-chat-tokens tokens), and the next-token distributions
along that reply, from its first token on, are compared too; both budgets then hold over the texts'
and the replies' positions together. --kl-chat may be given without --kl-text. A gate that opens on
the first words of an answer spends its change there, unseen by plain text: the replies budget it.`,
		Flags: append(modelFlags(),
			&cli.StringSliceFlag{Name: "steer", Aliases: []string{"s"}, Required: true, Usage: "steering `FILE` to calibrate (repeatable)"},
			&cli.StringSliceFlag{Name: "strength", Usage: "per-attribute strengths NAME=X[,NAME=X...], held fixed while α varies"},
			&cli.StringFlag{Name: "kl-text", Usage: "neutral text file, one text per line (--kl-text and/or --kl-chat)"},
			&cli.StringFlag{Name: "kl-chat", Usage: "neutral prompts, one per line: the unsteered model's chat replies to them are compared too"},
			intIn(&cli.IntFlag{Name: "kl-chat-tokens", Value: eval.DefaultChatReplyTokens, Usage: "tokens per --kl-chat reply"}, 1, maxCtx),
			intIn(&cli.IntFlag{Name: "kl-limit", Usage: "use the first N texts (0: all)"}, 0, maxCount),
			intIn(&cli.IntFlag{Name: "kl-max-tokens", Value: eval.DefaultRetentionMaxTokens, Usage: "cut texts to N tokens (at most --ctx)"}, 2, maxCtx),
			floatIn(&cli.Float64Flag{Name: "max-kl", Value: 0.1, Usage: "KL budget, nats per position"}, leftOpen(0, 100)),
			floatIn(&cli.Float64Flag{Name: "max-kl-p99", Usage: "budget on the 99th percentile of the per-position KL, nats (default: none)"}, leftOpen(0, 100)),
			floatsIn(&cli.Float64SliceFlag{Name: "grid", Usage: "ascending strengths tried first (default 0.125,0.25,...,8); the largest caps α"}, leftOpen(0, steer.MaxStrength)),
			floatIn(&cli.Float64Flag{Name: "max-alpha", Usage: "let a file within budget at the grid's largest strength go on doubling up to this α (default: the grid caps α)"}, closed(0, steer.MaxStrength)),
			intIn(&cli.IntFlag{Name: "refine", Value: 4, Usage: "bisection steps after the grid"}, 0, 64),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the calibrations as JSON"},
		),
		Action: runCalibrate,
	}
}

func runCalibrate(c *cli.Context) error {
	start := time.Now()
	if err := checkKLMaxTokens(c); err != nil {
		return err
	}
	if c.String("kl-text") == "" && c.String("kl-chat") == "" {
		return errors.New("calibrate needs --kl-text FILE and/or --kl-chat FILE")
	}
	if err := checkKLChatTokens(c); err != nil {
		return err
	}
	if err := safefile.CheckOutputs(flagOutputs(c, "out"), append(flagInputs(c, "steer", "kl-text", "kl-chat"), modelInput(c)...)); err != nil {
		return err
	}
	var texts, prompts []string
	var err error
	if p := c.String("kl-text"); p != "" {
		if texts, err = readTexts("--kl-text", p, c.Int("kl-limit")); err != nil {
			return err
		}
	}
	if p := c.String("kl-chat"); p != "" {
		if prompts, err = readTexts("--kl-chat", p, 0); err != nil {
			return err
		}
	}
	strengths, err := steer.ParseStrengths(c.StringSlice("strength"))
	if err != nil {
		return fmt.Errorf("--strength: %w", err)
	}
	refine := c.Int("refine")
	if refine == 0 {
		refine = -1 // the flag's 0 means none; the option's 0 means the default
	}
	opts := eval.CalibrateOptions{
		MaxKL: c.Float64("max-kl"), MaxKLP99: c.Float64("max-kl-p99"), Grid: c.Float64Slice("grid"), MaxAlpha: c.Float64("max-alpha"), Refine: refine,
		Retention: eval.RetentionOptions{MaxTokens: c.Int("kl-max-tokens"), Progress: c.App.ErrWriter},
	}
	paths := c.StringSlice("steer")
	files := make([]*steer.File, len(paths))
	for i, p := range paths {
		if files[i], err = steer.ReadFile(p); err != nil {
			return err
		}
	}
	own, err := strengthsByFile(strengths, files)
	if err != nil {
		return err
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	r, err := eval.NewRunner(m, nil, contextParams(c))
	if err != nil {
		return err
	}
	defer r.Close()
	if prompts != nil {
		if err := r.CheckChatReplies(prompts, c.Int("kl-chat-tokens")); err != nil {
			return fmt.Errorf("--kl-chat: %w", err)
		}
		if opts.Sequences, err = r.ChatReplies(c.Context, prompts, c.Int("kl-chat-tokens"), c.App.ErrWriter); err != nil {
			return fmt.Errorf("--kl-chat: %w", err)
		}
	}

	rep := &eval.Report{Task: "calibrate", Model: eval.DescribeModel(m), Created: start.UTC(),
		Context: runnerContext(c, r)}
	for i, p := range paths {
		if opts.MaxKLP99 > 0 {
			fmt.Fprintf(c.App.ErrWriter, "calibrating %s (KL budget %g nats mean, %g nats 99th percentile)\n", p, opts.MaxKL, opts.MaxKLP99)
		} else {
			fmt.Fprintf(c.App.ErrWriter, "calibrating %s (KL budget %g nats)\n", p, opts.MaxKL)
		}
		o := opts
		o.Strengths = own[i]
		cal, err := r.Calibrate(c.Context, texts, p, files[i], o)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rep.Calibrations = append(rep.Calibrations, cal)
	}
	return finishReport(c, rep, start)
}
