package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/extract"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
)

func extractCommand() *cli.Command {
	return &cli.Command{
		Name:  "extract",
		Usage: "capture activations of labelled texts at one layer and site (input of `matsteer train`)",
		UsageText: `matsteer extract --data FILE --layer L --out acts.safetensors [--site l_out] [--tokens all|last|response]

Data formats (--format auto picks by name):
   jsonl       one object per line: {"attribute": "formality", "label": 1, "prompt": "...", "response": "..."}
               (label 1 = desired, 0 = undesired; "text" may replace prompt+response)
   truthfulqa  TruthfulQA mc_task.json or TruthfulQA.csv (true vs false answers)
   bbq         a BBQ data directory or .jsonl file (gold vs other answers)
   toxigen     ToxiGen prompts/ directory or annotated toxiGen.json (neutral vs hateful)
Several --data flags may be given; their examples are extracted into one file.`,
		Flags: append(modelFlags(),
			&cli.StringSliceFlag{Name: "data", Required: true, Usage: "dataset file or directory (repeatable)"},
			&cli.StringFlag{Name: "format", Value: "auto", Usage: "auto|jsonl|truthfulqa|bbq|toxigen"},
			&cli.IntFlag{Name: "layer", Aliases: []string{"l"}, Required: true, Usage: "block index (0-based)"},
			&cli.StringFlag{Name: "site", Value: "l_out", Usage: "tensor site (sites per layer: matsteer model info)"},
			&cli.StringFlag{Name: "tokens", Value: extract.TokensAll, Usage: "rows to keep per text: all|last|response"},
			&cli.StringFlag{Name: "split", Value: "all", Usage: "part of each dataset to use: train|dev|test|all (seeded split by question, see datasets docs)"},
			&cli.Uint64Flag{Name: "split-seed", Value: datasets.DefaultSeed, Usage: "split seed"},
			&cli.IntFlag{Name: "limit", Usage: "use at most N examples per dataset (0: all)"},
			&cli.IntFlag{Name: "max-tokens", Usage: "longest text in tokens; longer ones are cut from the left with a warning (0: --batch)"},
			&cli.BoolFlag{Name: "no-truncate", Usage: "fail on texts longer than --max-tokens instead of cutting them"},
			&cli.IntFlag{Name: "batch", Value: 512, Usage: "tokens per decode (texts are packed into batches)"},
			&cli.IntFlag{Name: "seqs", Value: 16, Usage: "texts per batch at most"},
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
	examples, err := loadExamples(c)
	if err != nil {
		return err
	}
	if len(examples) == 0 {
		return fmt.Errorf("no examples in %s (after --split %s)", strings.Join(c.StringSlice("data"), ", "), c.String("split"))
	}
	out := c.String("out")
	if dir := filepath.Dir(out); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("--out %s: directory %s does not exist", out, dir)
		}
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	cat, err := hooks.Probe(m)
	if err != nil {
		return err
	}
	point, err := cat.Resolve(c.String("site"), c.Int("layer"))
	if err != nil {
		return err
	}
	h := hooks.New(cat)
	defer h.Close()
	p := contextParams(c)
	p.NBatch, p.NUBatch, p.NSeqMax, p.Hook = c.Int("batch"), c.Int("batch"), c.Int("seqs"), h
	p.NCtx = max(p.NCtx, c.Int("batch"))
	lctx, err := llama.NewContext(m, p)
	if err != nil {
		return err
	}
	defer lctx.Close()
	path, _ := modelPath(c)
	start := time.Now()
	st, err := extract.Run(c.Context, lctx, h, examples, out, extract.Options{
		Point: point, Tokens: c.String("tokens"), MaxTokens: c.Int("max-tokens"), NoTruncate: c.Bool("no-truncate"),
		Source: strings.Join(c.StringSlice("data"), ","), Extra: map[string]string{"model_file": filepath.Base(path)},
		Progress: os.Stderr, Warn: os.Stderr,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %d rows of %d values from %d texts (%d tokens, %.0f tok/s) at %s\n",
		out, st.Rows, m.NEmbd(), st.Texts, st.Tokens, float64(st.Tokens)/time.Since(start).Seconds(), point)
	return nil
}
