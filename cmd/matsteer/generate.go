package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/engine"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/textstream"
	"github.com/matsteer/matsteer/llama"
)

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:  "generate",
		Usage: "generate text, streaming tokens to stdout",
		UsageText: `matsteer generate [--model PATH] --prompt TEXT [-n N] [--temp T] [--seed S] [--chat|--chat=false]
   matsteer generate --prompt TEXT --steer steer.gguf [--strength tone=1.5,formality=0] [--explain] [--audit gates.jsonl]`,
		Flags: append(append(modelFlags(), steerFlags()...),
			&cli.BoolFlag{Name: "explain", Usage: "after generating, show each attribute's gate for every prompt and generated token"},
			&cli.StringFlag{Name: "audit", Usage: "write per-token gates and change sizes as JSONL to this file"},
			&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Required: true, Usage: "prompt text"},
			&cli.StringFlag{Name: "system", Usage: "system message (chat mode)"},
			&cli.BoolFlag{Name: "chat", Usage: "wrap the prompt in the model's chat template (default: on when the model has one)"},
			&cli.IntFlag{Name: "n", Aliases: []string{"max-tokens"}, Value: 128, Usage: "tokens to generate"},
			&cli.Float64Flag{Name: "temp", Value: 0, Usage: "temperature (0: greedy)"},
			&cli.IntFlag{Name: "top-k", Value: 40, Usage: "top-k (with --temp > 0)"},
			&cli.Float64Flag{Name: "top-p", Value: 0.95, Usage: "top-p (with --temp > 0)"},
			&cli.Float64Flag{Name: "min-p", Value: 0.05, Usage: "min-p (with --temp > 0)"},
			&cli.Float64Flag{Name: "repeat-penalty", Value: 1.0, Usage: "repetition penalty (1: off)"},
			&cli.UintFlag{Name: "seed", Value: 42, Usage: "sampling seed"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the generated text"},
		),
		Action: runGenerate,
	}
}

// buildPrompt formats the user's prompt, applying the chat template when
// asked (or by default when the model has one).
func buildPrompt(c *cli.Context, m *llama.Model) (string, error) {
	prompt := c.String("prompt")
	chat := m.ChatTemplate() != ""
	if c.IsSet("chat") {
		chat = c.Bool("chat")
	}
	if !chat {
		return prompt, nil
	}
	var msgs []llama.ChatMessage
	if s := c.String("system"); s != "" {
		msgs = append(msgs, llama.ChatMessage{Role: "system", Content: s})
	}
	msgs = append(msgs, llama.ChatMessage{Role: "user", Content: prompt})
	return m.ApplyChatTemplate("", msgs, true)
}

func samplerParams(c *cli.Context) llama.SamplerParams {
	return llama.SamplerParams{
		Temperature: c.Float64("temp"), TopK: c.Int("top-k"), TopP: c.Float64("top-p"), MinP: c.Float64("min-p"),
		RepeatPenalty: c.Float64("repeat-penalty"), Seed: uint32(c.Uint("seed")),
	}
}

func runGenerate(c *cli.Context) error {
	if err := samplerParams(c).Validate(); err != nil {
		return err
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	text, err := buildPrompt(c, m)
	if err != nil {
		return err
	}
	toks, err := m.Tokenize(text, true, true)
	if err != nil {
		return err
	}
	params := contextParams(c)
	// One stream through the batched engine the server uses (one sequence,
	// the token callback on the decode goroutine: no hand-off per token).
	cfg := engine.Config{Model: m, Parallel: 1, NCtx: params.NCtx, Threads: params.Threads, NoPromptCache: true}
	req := engine.Request{Prompt: toks, MaxTokens: c.Int("n"), Sampler: samplerParams(c), Inline: true}
	var tg *tokenGates
	if len(c.StringSlice("steer")) > 0 || len(c.StringSlice("strength")) > 0 {
		cat, err := hooks.Probe(m)
		if err != nil {
			return err
		}
		ivs, err := loadInterventions(c, m, cat)
		if err != nil {
			return err
		}
		if c.Bool("explain") || c.String("audit") != "" {
			tg = newTokenGates(ivs)
			tg.nPrompt = len(toks)
		}
		cfg.Catalog = cat
		if len(ivs) > 0 {
			req.Steering, req.MoreSteering = ivs[0], ivs[1:]
		}
	} else if c.Bool("explain") || c.String("audit") != "" {
		return fmt.Errorf("--explain and --audit need --steer")
	}
	e, err := engine.New(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	if len(toks)+1 > e.NCtx() {
		return fmt.Errorf("prompt is %d tokens, longer than the context (%d); raise --ctx or shorten the prompt", len(toks), e.NCtx())
	}
	out := bufio.NewWriter(c.App.Writer)
	defer out.Flush()
	all := append([]llama.Token(nil), toks...)
	// Whole characters only: a character split between tokens is held back
	// until it completes, and dropped if generation ends inside it.
	var whole textstream.Decoder
	st, err := e.Generate(c.Context, req,
		func(tok llama.Token, piece string) error {
			all = append(all, tok)
			out.WriteString(whole.Push(piece))
			return out.Flush()
		})
	whole.Flush()
	out.WriteString("\n")
	out.Flush()
	if err != nil {
		return err
	}
	if tg != nil {
		recs := tg.records(m, all)
		if path := c.String("audit"); path != "" {
			if err := writeAudit(path, recs); err != nil {
				return err
			}
		}
		if c.Bool("explain") {
			printExplain(c.App.Writer, tg, recs, isTerminalWriter(c.App.Writer))
		}
	}
	if !c.Bool("quiet") {
		// The first token comes with the prompt's decode; the rest each
		// take one decode step.
		gen := st.Duration - st.FirstToken
		fmt.Fprintf(os.Stderr, "[%d prompt tokens, first token after %.2fs, %d generated in %.2fs (%.1f tok/s), stop: %s]\n",
			st.PromptTokens, st.FirstToken.Seconds(), st.GeneratedTokens, st.Duration.Seconds(),
			float64(max(st.GeneratedTokens-1, 0))/max(gen.Seconds(), 1e-9), st.StopReason)
	}
	return nil
}
