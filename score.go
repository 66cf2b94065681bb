package matsteer

import (
	"context"
	"errors"
	"fmt"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
)

// MaxContinuations is the most continuations one Score call takes.
const MaxContinuations = 1 << 16

// Score is the log-probability of a continuation given a prompt, in nats,
// teacher-forced.
type Score struct {
	// LogProb is the sum of PerToken.
	LogProb float64
	// PerToken holds log p(token | prompt, earlier tokens) per token of
	// the continuation.
	PerToken []float64
}

// Mean is the length-normalised score (LogProb per token; 0 for an empty
// continuation).
func (s Score) Mean() float64 {
	if len(s.PerToken) == 0 {
		return 0
	}
	return s.LogProb / float64(len(s.PerToken))
}

// scorer is the scoring context and its hooks.
type scorer struct {
	ctx   *llama.Context
	hooks *hooks.Hooks
}

func (s *scorer) close() {
	s.ctx.Close()
	s.hooks.Close()
}

// Score returns the log-probability of each continuation after prompt,
// under the steering st (applied to every token, prompt and continuation,
// as package eval does; the zero Steer scores the unsteered model). The
// prompt is tokenized with the model's start token and the continuations
// without (start them with a space: " Paris"); special-token text in
// either is read as plain text. The prompt is evaluated once and each continuation
// after it with KV reuse. Score calls are safe for concurrent use; they
// take turns on one context of their own (of Options.NCtx tokens), apart
// from the generation engine.
func (m *Model) Score(ctx context.Context, prompt string, continuations []string, st Steer) ([]Score, error) {
	if len(continuations) == 0 {
		return nil, errors.New("matsteer: Score: no continuations")
	}
	if len(continuations) > MaxContinuations {
		return nil, fmt.Errorf("matsteer: Score: %d continuations, at most %d", len(continuations), MaxContinuations)
	}
	opCtx, done, err := m.use(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	prefix, err := m.llm.Tokenize(prompt, true, false)
	if err != nil {
		return nil, fmt.Errorf("matsteer: tokenize prompt: %w", err)
	}
	if len(prefix) == 0 {
		return nil, errors.New("matsteer: Score: the prompt is empty")
	}
	conts := make([][]llama.Token, len(continuations))
	for i, c := range continuations {
		if conts[i], err = m.llm.Tokenize(c, false, false); err != nil {
			return nil, fmt.Errorf("matsteer: tokenize continuation %d: %w", i, err)
		}
		if len(conts[i]) == 0 {
			return nil, fmt.Errorf("matsteer: Score: continuation %d is empty", i)
		}
		if n := len(prefix) + len(conts[i]); n > m.opts.NCtx {
			return nil, &ContextError{Tokens: n, NCtx: m.opts.NCtx}
		}
	}
	p, err := m.prepare(st)
	if err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}

	m.scoreMu.Lock()
	defer m.scoreMu.Unlock()
	if m.scorer == nil {
		h := hooks.New(m.cat)
		c, err := llama.NewContext(m.llm, llama.ContextParams{NCtx: m.opts.NCtx, NSeqMax: 1, Threads: m.opts.Threads,
			ThreadsBatch: m.opts.Threads, Hook: h})
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("matsteer: scoring context: %w", err)
		}
		m.scorer = &scorer{ctx: c, hooks: h}
	}
	sc := m.scorer
	for _, iv := range p.ivs {
		if err := intervene.Install(sc.hooks, iv); err != nil {
			return nil, fmt.Errorf("matsteer: %w", err)
		}
		defer func() { _ = sc.hooks.SetIntervention(iv.Point(), nil) }()
	}
	s := sc.ctx.NewScorer(0)
	defer s.Close()
	if err := s.SetPrefix(opCtx, prefix); err != nil {
		return nil, m.opErr(ctx, opCtx, "score prompt", err)
	}
	out := make([]Score, len(conts))
	for i, c := range conts {
		cs, err := s.Score(opCtx, c)
		if err != nil {
			return nil, m.opErr(ctx, opCtx, fmt.Sprintf("score continuation %d", i), err)
		}
		out[i] = Score{LogProb: cs.Sum, PerToken: cs.PerToken}
	}
	return out, nil
}

// opErr is the error of an operation that failed: the caller's context
// error, ErrClosed when Close cancelled it, else err with context.
func (m *Model) opErr(ctx, opCtx context.Context, what string, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case opCtx.Err() != nil:
		return ErrClosed
	}
	return fmt.Errorf("matsteer: %s: %w", what, err)
}
