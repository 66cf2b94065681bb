package eval

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/progress"
)

// DefaultGenerationTokens is the default length of each generation of the
// generation check.
const DefaultGenerationTokens = 48

// GenerationOptions control GenerationCheck.
type GenerationOptions struct {
	// MaxTokens is the most tokens generated per prompt (0:
	// DefaultGenerationTokens).
	MaxTokens int
	// Chat wraps each prompt in the model's chat template as a user turn.
	Chat bool
	// Progress receives a progress bar (nil: none).
	Progress io.Writer
}

// GenerationSample is one condition's greedy continuation of one prompt.
type GenerationSample struct {
	Prompt string `json:"prompt"`
	Text   string `json:"text"`
	Tokens int    `json:"tokens"`
	// NLL is the mean negative log-likelihood per generated token under the
	// unsteered model, nats (0 without tokens).
	NLL float64 `json:"nll"`
	// Distinct1 and Distinct2 are the fractions of distinct token unigrams
	// and bigrams in the generated tokens (1: no repetition; a text stuck
	// in a loop scores low).
	Distinct1 float64 `json:"distinct_1"`
	Distinct2 float64 `json:"distinct_2"`
	Stop      string  `json:"stop"`
}

// GenerationResult sums up one condition's generations: is the steered
// text still text? Perplexity is judged by the unsteered model, so a
// condition that garbles words or loops scores worse than one that only
// changes what is said.
type GenerationResult struct {
	Name     string        `json:"name"`
	Steering *SteeringInfo `json:"steering,omitempty"`
	// PPL is exp of the mean NLL over every generated token of every
	// prompt, under the unsteered model.
	PPL float64 `json:"ppl"`
	// Distinct1 and Distinct2 are the means over prompts with at least one
	// (two) generated tokens.
	Distinct1 float64            `json:"distinct_1"`
	Distinct2 float64            `json:"distinct_2"`
	Tokens    int                `json:"tokens"`
	Samples   []GenerationSample `json:"samples"`
	Seconds   float64            `json:"seconds"`
}

// GenerationCheck generates a greedy continuation of every prompt under
// every condition and scores the generated tokens with the unsteered model
// (perplexity) and for repetition (distinct-n over token ids). Prompts are
// tokenized with BOS; with Chat, each is first wrapped in the model's chat
// template.
func (r *Runner) GenerationCheck(ctx context.Context, prompts []string, methods []Method, opts GenerationOptions) ([]GenerationResult, error) {
	if err := checkMethods(methods); err != nil {
		return nil, err
	}
	toks, maxTok, err := r.generationPrompts("generation check", prompts, opts)
	if err != nil {
		return nil, err
	}
	defer r.hooks.Clear()
	var bar *progress.Bar
	if opts.Progress != nil {
		bar = progress.New(opts.Progress, int64(len(prompts)*len(methods)), "generation check", "text")
		defer bar.Finish()
	}
	out := make([]GenerationResult, len(methods))
	gens := make([][][]llama.Token, len(methods))
	for k, m := range methods {
		out[k] = GenerationResult{Name: m.Name, Steering: m.Info()}
		if err := r.install(m); err != nil {
			return nil, err
		}
		t0 := time.Now()
		gens[k] = make([][]llama.Token, len(prompts))
		for i, tk := range toks {
			var gen []llama.Token
			var text strings.Builder
			st, err := r.lctx.Generate(ctx, tk, llama.GenerateOptions{MaxTokens: maxTok},
				func(tok llama.Token, piece string) error {
					gen = append(gen, tok)
					text.WriteString(piece)
					return nil
				})
			if err != nil {
				return nil, ctxErr(ctx, fmt.Errorf("eval: generation check, %s, prompt %d: %w", m.Name, i+1, err))
			}
			gens[k][i] = gen
			out[k].Samples = append(out[k].Samples, GenerationSample{Prompt: prompts[i],
				Text: strings.ToValidUTF8(text.String(), "\uFFFD"), Tokens: len(gen),
				Distinct1: distinctN(gen, 1), Distinct2: distinctN(gen, 2), Stop: st.StopReason})
			bar.Add(1)
		}
		out[k].Seconds = time.Since(t0).Seconds()
	}
	// Judge every generation with the unsteered model.
	r.hooks.Clear()
	stop := r.abortOnCancel(ctx)
	defer stop()
	for k := range methods {
		nll, n := 0.0, 0
		d1, d2, n1, n2 := 0.0, 0.0, 0, 0
		for i, gen := range gens[k] {
			s := &out[k].Samples[i]
			if len(gen) >= 1 {
				d1 += s.Distinct1
				n1++
			}
			if len(gen) >= 2 {
				d2 += s.Distinct2
				n2++
			}
			if len(gen) == 0 {
				continue
			}
			if err := r.scorer.SetPrefix(ctx, toks[i]); err != nil {
				return nil, ctxErr(ctx, fmt.Errorf("eval: generation check: %w", err))
			}
			sc, err := r.scorer.Score(ctx, gen)
			if err != nil {
				return nil, ctxErr(ctx, fmt.Errorf("eval: generation check: %w", err))
			}
			s.NLL = -sc.Sum / float64(len(gen))
			nll -= sc.Sum
			n += len(gen)
		}
		out[k].Tokens = n
		if n > 0 {
			out[k].PPL = math.Exp(nll / float64(n))
		}
		if n1 > 0 {
			out[k].Distinct1 = d1 / float64(n1)
		}
		if n2 > 0 {
			out[k].Distinct2 = d2 / float64(n2)
		}
	}
	return out, nil
}

// CheckGeneration reports whether GenerationCheck can run prompts with
// opts (the model's chat template, every prompt plus its tokens within the
// context) without running anything: a caller checks it before other work.
func (r *Runner) CheckGeneration(prompts []string, opts GenerationOptions) error {
	_, _, err := r.generationPrompts("generation check", prompts, opts)
	return err
}

// generationPrompts tokenizes the prompts and resolves MaxTokens; what
// names the caller in errors.
func (r *Runner) generationPrompts(what string, prompts []string, opts GenerationOptions) ([][]llama.Token, int, error) {
	if len(prompts) == 0 {
		return nil, 0, fmt.Errorf("eval: %s: no prompts", what)
	}
	maxTok := opts.MaxTokens
	if maxTok == 0 {
		maxTok = DefaultGenerationTokens
	}
	if maxTok < 1 {
		return nil, 0, fmt.Errorf("eval: %s: %d tokens per prompt, want at least 1", what, maxTok)
	}
	toks := make([][]llama.Token, len(prompts))
	for i, p := range prompts {
		var tk []llama.Token
		var err error
		if opts.Chat {
			tk, err = r.model.UserTurnTokens(p)
		} else {
			tk, err = r.model.Tokenize(p, true, false)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("eval: %s: prompt %d: %w", what, i+1, err)
		}
		if len(tk)+maxTok > r.lctx.NCtx() {
			return nil, 0, fmt.Errorf("eval: %s: prompt %d is %d tokens; with %d generated it does not fit the context of %d",
				what, i+1, len(tk), maxTok, r.lctx.NCtx())
		}
		toks[i] = tk
	}
	return toks, maxTok, nil
}

// distinctN is the number of distinct n-grams of toks over the number of
// n-grams (0 when there are none).
func distinctN(toks []llama.Token, n int) float64 {
	total := len(toks) - n + 1
	if n < 1 || total < 1 {
		return 0
	}
	seen := make(map[string]struct{}, total)
	key := make([]byte, 0, 4*n)
	for i := 0; i < total; i++ {
		key = key[:0]
		for _, t := range toks[i : i+n] {
			key = append(key, byte(t), byte(t>>8), byte(t>>16), byte(t>>24))
		}
		seen[string(key)] = struct{}{}
	}
	return float64(len(seen)) / float64(total)
}
