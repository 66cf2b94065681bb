package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/extract"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/llama"
)

func extractCommand() *cli.Command {
	return &cli.Command{
		Name:  "extract",
		Usage: "capture activations of labelled texts at one layer and site (input of `matsteer train`)",
		UsageText: `matsteer extract --data FILE --layer L --out acts.safetensors [--site l_out] [--tokens all|last|response] [--chat]
matsteer extract --chat-replies PROMPTS --layer L --out neutral-chat.safetensors [--reply-tokens 48] [--tokens response]

Data formats (--format auto picks by name):
   jsonl       one object per line: {"attribute": "formality", "label": 1, "prompt": "...", "response": "..."}
               (label 1 = desired, 0 = undesired; "text" may replace prompt+response)
   truthfulqa  TruthfulQA mc_task.json or TruthfulQA.csv (true vs false answers)
   bbq         a BBQ data directory or .jsonl file (gold vs other answers)
   toxigen     ToxiGen prompts/ directory or annotated toxiGen.json (neutral vs hateful)
Several --data flags may be given; their examples are extracted into one file.

--chat makes every prompt a user turn in the model's chat template (with the assistant's header); the
response follows as the assistant's reply. --chat-replies PROMPTS (one neutral prompt per line, instead
of --data) has the unsteered model write its greedy reply to each (--reply-tokens tokens) and extracts
those chat turns: rows of what the model writes when nothing steers it, for train --neutral-acts, so
gates learn that the start of an ordinary answer is no cue (attribute "neutral", labels alternating).`,
		Flags: append(modelFlags(),
			&cli.StringSliceFlag{Name: "data", Usage: "dataset file or directory (repeatable; or --chat-replies)"},
			&cli.BoolFlag{Name: "chat", Usage: "prompts are user turns in the model's chat template, responses the assistant's replies"},
			&cli.StringFlag{Name: "chat-replies", Usage: "neutral prompts, one per line: extract the unsteered model's chat replies to them (instead of --data; implies --chat)"},
			intIn(&cli.IntFlag{Name: "reply-tokens", Value: 48, Usage: "tokens per --chat-replies reply"}, 1, maxBatch),
			&cli.StringFlag{Name: "format", Value: "auto", Usage: "auto|jsonl|truthfulqa|bbq|toxigen"},
			intIn(&cli.IntFlag{Name: "layer", Aliases: []string{"l"}, Required: true, Usage: "block index (0-based; the model's layers: matsteer model info)"}, 0, maxLayers),
			&cli.StringFlag{Name: "site", Value: "l_out", Usage: "tensor site, one n_embd wide (sites per layer: matsteer model info)"},
			&cli.StringFlag{Name: "tokens", Value: extract.TokensAll, Usage: "rows to keep per text: all|last|response"},
			&cli.StringFlag{Name: "split", Value: "all", Usage: "part of each dataset to use: train|dev|test|all (seeded split by question, see datasets docs)"},
			&cli.Uint64Flag{Name: "split-seed", Value: datasets.DefaultSeed, Usage: "split seed (any 64-bit number)"},
			intIn(&cli.IntFlag{Name: "limit", Usage: "use at most N examples per dataset (0: all)"}, 0, maxCount),
			intIn(&cli.IntFlag{Name: "max-tokens", Usage: "longest text in tokens, at most --batch; longer ones are cut from the left with a warning (0: --batch)"}, 0, maxBatch),
			&cli.BoolFlag{Name: "no-truncate", Usage: "fail on texts longer than --max-tokens instead of cutting them"},
			&cli.BoolFlag{Name: "keep-special", Usage: "keep rows of control tokens (BOS, <|im_start|>, ...) and of the chat template's role headers (default: dropped, as steering leaves them unsteered)"},
			intIn(&cli.IntFlag{Name: "batch", Value: 512, Usage: "tokens per decode (texts are packed into batches; --ctx must hold one batch)"}, 1, maxBatch),
			intIn(&cli.IntFlag{Name: "seqs", Value: 16, Usage: "texts per batch at most (a batch of --batch tokens holds at most --batch texts)"}, 1, maxSeqs),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output activation file (.safetensors)"},
		),
		Action: runExtract,
	}
}

// loadExamples loads every --data source, applying --split and --limit.
func loadExamples(c *cli.Context) ([]datasets.Example, error) {
	var all []datasets.Example
	for _, path := range c.StringSlice("data") {
		ex, err := datasets.LoadSplitExamples(path, c.String("format"), c.String("split"), c.Uint64("split-seed"))
		if err != nil {
			return nil, err
		}
		if n := c.Int("limit"); n > 0 && len(ex) > n {
			ex = ex[:n]
		}
		all = append(all, ex...)
	}
	return all, nil
}

func runExtract(c *cli.Context) error {
	out, batch := c.String("out"), c.Int("batch")
	if n := c.Int("max-tokens"); n > batch {
		return fmt.Errorf("--max-tokens %d is larger than --batch %d: a text must fit one batch; raise --batch or lower --max-tokens", n, batch)
	}
	ctxGiven := c.IsSet("ctx")
	if n := c.Int("ctx"); ctxGiven && n < batch {
		return fmt.Errorf("--ctx %d is smaller than --batch %d: the context must hold one batch; raise --ctx or lower --batch", n, batch)
	}
	replies := c.String("chat-replies")
	switch {
	case len(c.StringSlice("data")) == 0 && replies == "":
		return errors.New("extract needs --data FILE (labelled texts) or --chat-replies FILE (neutral prompts)")
	case len(c.StringSlice("data")) > 0 && replies != "":
		return errors.New("--data and --chat-replies do not mix: extract them into separate files")
	case c.IsSet("reply-tokens") && replies == "":
		return errors.New("--reply-tokens needs --chat-replies")
	}
	inputs := []safefile.Input{}
	for _, d := range c.StringSlice("data") {
		inputs = append(inputs, safefile.Input{Flag: "--data", Path: d})
	}
	if replies != "" {
		inputs = append(inputs, safefile.Input{Flag: "--chat-replies", Path: replies})
	}
	if path, err := modelPath(c); err == nil {
		inputs = append(inputs, safefile.Input{Flag: "--model", Path: path})
	}
	if err := safefile.CheckOutputs([]safefile.Output{{Flag: "--out", Path: out}}, inputs); err != nil {
		return err
	}
	var examples []datasets.Example
	var prompts []string
	var err error
	if replies != "" {
		if prompts, err = readTexts("--chat-replies", replies, c.Int("limit")); err != nil {
			return err
		}
	} else {
		if examples, err = loadExamples(c); err != nil {
			return err
		}
		if len(examples) == 0 {
			return fmt.Errorf("no examples in %s (after --split %s)", strings.Join(c.StringSlice("data"), ", "), c.String("split"))
		}
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	if (c.Bool("chat") || replies != "") && m.ChatTemplate() == "" {
		return errors.New("--chat / --chat-replies: the model has no chat template")
	}
	cat, err := hooks.Probe(m)
	if err != nil {
		return err
	}
	point, err := cat.Resolve(c.String("site"), c.Int("layer"))
	if err != nil {
		return err
	}
	if err := extract.CheckWidth(m, cat, point); err != nil {
		return err
	}
	h := hooks.New(cat)
	defer h.Close()
	p := contextParams(c)
	// A batch of n tokens holds at most n texts: more sequences than
	// tokens per batch can never be used (and llama.cpp refuses them).
	p.NBatch, p.NUBatch, p.NSeqMax, p.Hook = batch, batch, min(c.Int("seqs"), batch), h
	if !ctxGiven {
		p.NCtx = max(p.NCtx, (batch+ctxStep-1)/ctxStep*ctxStep)
	}
	lctx, err := llama.NewContext(m, p)
	if err != nil {
		return err
	}
	defer lctx.Close()
	source := strings.Join(c.StringSlice("data"), ",")
	if replies != "" {
		if examples, err = extract.ChatReplyExamples(c.Context, lctx, prompts, replies, c.Int("reply-tokens")); err != nil {
			return err
		}
		source = replies + " (the model's chat replies)"
	}
	path, _ := modelPath(c)
	start := time.Now()
	st, err := extract.Run(c.Context, lctx, h, examples, out, extract.Options{
		Point: point, Tokens: c.String("tokens"), MaxTokens: c.Int("max-tokens"), NoTruncate: c.Bool("no-truncate"), KeepSpecial: c.Bool("keep-special"),
		Chat: c.Bool("chat") || replies != "", Source: source, Extra: map[string]string{"model_file": filepath.Base(path)},
		Progress: os.Stderr, Warn: os.Stderr,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %d rows of %d values from %d texts (%d tokens, %.0f tok/s) at %s\n",
		out, st.Rows, m.NEmbd(), st.Texts, st.Tokens, float64(st.Tokens)/time.Since(start).Seconds(), point)
	return nil
}
