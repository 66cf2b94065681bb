package llama

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// GenerateOptions control Generate.
type GenerateOptions struct {
	MaxTokens int // tokens to generate (<= 0: until end of generation or the context is full)
	Sampler   SamplerParams
	// Seq is the sequence id used in the KV memory (default 0).
	Seq int
}

// GenerateStats summarise a generation.
type GenerateStats struct {
	PromptTokens    int
	GeneratedTokens int
	PromptDuration  time.Duration
	GenDuration     time.Duration
	StopReason      string // "eog", "max_tokens", "context_full", "cancelled", "callback"
}

// ErrStop may be returned by a Generate callback to end generation early
// without an error.
var ErrStop = errors.New("stop generation")

// Generate evaluates prompt from an empty sequence and samples up to
// opts.MaxTokens tokens, calling onToken for each (its piece is the token's
// text). Cancelling ctx stops generation, also in the middle of the prompt.
// The sequence's KV memory is cleared first.
func (c *Context) Generate(ctx context.Context, prompt []Token, opts GenerateOptions, onToken func(tok Token, piece string) error) (st GenerateStats, err error) {
	if len(prompt) == 0 {
		return st, errors.New("generate: empty prompt")
	}
	if len(prompt) >= c.nCtx {
		return st, fmt.Errorf("generate: prompt of %d tokens does not fit the context of %d tokens", len(prompt), c.nCtx)
	}
	smp, err := NewSampler(c.model, opts.Sampler)
	if err != nil {
		return st, fmt.Errorf("generate: %w", err)
	}
	defer smp.Close()
	c.RemoveTokens(opts.Seq, -1, -1)
	// Cancelling ctx aborts a running decode. When the abort has already
	// started as Generate returns, wait for it, so that it can neither abort
	// the context's next decode nor race with Close.
	aborted := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() { c.Abort(); close(aborted) })
	defer func() {
		if !stopWatch() {
			<-aborted
		}
	}()

	t0 := time.Now()
	if err := c.DecodeTokens(ctx, prompt, 0, opts.Seq, false); err != nil {
		if ctx.Err() != nil {
			st.StopReason = "cancelled"
			return st, ctx.Err()
		}
		return st, fmt.Errorf("generate: prompt: %w", err)
	}
	for _, t := range prompt {
		smp.Accept(t)
	}
	st.PromptTokens = len(prompt)
	st.PromptDuration = time.Since(t0)
	t1 := time.Now()
	defer func() { st.GenDuration = time.Since(t1) }()

	batch := NewBatch(1, 1)
	defer batch.Close()
	pos := len(prompt)
	seq := []int{opts.Seq}
	for {
		if ctx.Err() != nil {
			st.StopReason = "cancelled"
			return st, ctx.Err()
		}
		tok := smp.Sample(c, -1)
		if c.model.IsEOG(tok) {
			st.StopReason = "eog"
			return st, nil
		}
		st.GeneratedTokens++
		if onToken != nil {
			if err := onToken(tok, c.model.TokenPiece(tok)); err != nil {
				if errors.Is(err, ErrStop) {
					st.StopReason = "callback"
					return st, nil
				}
				return st, err
			}
		}
		if opts.MaxTokens > 0 && st.GeneratedTokens >= opts.MaxTokens {
			st.StopReason = "max_tokens"
			return st, nil
		}
		if pos >= c.nCtx {
			st.StopReason = "context_full"
			return st, nil
		}
		batch.Clear()
		_ = batch.Add(tok, pos, seq, true)
		if err := c.Decode(batch); err != nil {
			if ctx.Err() != nil {
				st.StopReason = "cancelled"
				return st, ctx.Err()
			}
			return st, fmt.Errorf("generate: token %d: %w", st.GeneratedTokens, err)
		}
		pos++
	}
}

// DecodeTokens evaluates toks at positions start.. in sequence seq, in
// chunks of n_batch. Only the last token requests logits, unless
// allLogits is set (then every chunk's logits are overwritten by the next:
// use a Batch directly to read them all).
func (c *Context) DecodeTokens(ctx context.Context, toks []Token, start, seq int, allLogits bool) error {
	batch := NewBatch(min(len(toks), c.nBatch), 1)
	defer batch.Close()
	seqs := []int{seq}
	for off := 0; off < len(toks); off += c.nBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(off+c.nBatch, len(toks))
		batch.Clear()
		for i := off; i < end; i++ {
			_ = batch.Add(toks[i], start+i, seqs, allLogits || i == len(toks)-1)
		}
		if err := c.Decode(batch); err != nil {
			return err
		}
	}
	return nil
}

// LogSoftmax writes log-probabilities of logits into dst (float64) and
// returns it; dst is reallocated when too small.
func LogSoftmax(logits []float32, dst []float64) []float64 {
	if cap(dst) < len(logits) {
		dst = make([]float64, len(logits))
	}
	dst = dst[:len(logits)]
	lse := logSumExp(logits)
	for i, v := range logits {
		dst[i] = float64(v) - lse
	}
	return dst
}

// logSumExp is log Σ exp(v), computed stably in float64.
func logSumExp(v []float32) float64 {
	maxv := math.Inf(-1)
	for _, x := range v {
		maxv = math.Max(maxv, float64(x))
	}
	var sum float64
	for _, x := range v {
		sum += math.Exp(float64(x) - maxv)
	}
	return maxv + math.Log(sum)
}
