package llama

import (
	"context"
	"errors"
	"fmt"
)

// ContinuationScore is the log-probability of a continuation given a prefix.
type ContinuationScore struct {
	Sum      float64   // sum of PerToken
	PerToken []float64 // log p(cont[i] | prefix, cont[:i]) in nats
}

// Mean is the length-normalised score (Sum / number of tokens).
func (s ContinuationScore) Mean() float64 {
	if len(s.PerToken) == 0 {
		return 0
	}
	return s.Sum / float64(len(s.PerToken))
}

// Scorer scores several continuations of one prefix, evaluating the prefix
// once: each continuation is decoded after the prefix's KV cells and removed
// again. Its sequence's KV memory is owned by the Scorer while in use.
type Scorer struct {
	ctx          *Context
	seq          int
	prefixLen    int
	prefixLogits []float32
	batch        *Batch
}

// NewScorer makes a scorer using sequence seq of c.
func (c *Context) NewScorer(seq int) *Scorer {
	return &Scorer{ctx: c, seq: seq, batch: NewBatch(c.nBatch, 1)}
}

// Close frees the scorer's batch.
func (s *Scorer) Close() { s.batch.Close() }

// PrefixLen is the number of tokens of the current prefix.
func (s *Scorer) PrefixLen() int { return s.prefixLen }

// SetPrefix clears the scorer's sequence and evaluates prefix.
func (s *Scorer) SetPrefix(ctx context.Context, prefix []Token) error {
	if len(prefix) == 0 {
		return errors.New("score: empty prefix (add BOS or some text)")
	}
	if len(prefix) >= s.ctx.nCtx {
		return fmt.Errorf("score: prefix of %d tokens does not fit the context of %d tokens", len(prefix), s.ctx.nCtx)
	}
	s.ctx.RemoveTokens(s.seq, -1, -1)
	s.prefixLen = 0
	if err := s.ctx.DecodeTokens(ctx, prefix, 0, s.seq, false); err != nil {
		return fmt.Errorf("score: prefix: %w", err)
	}
	lg, err := s.ctx.Logits(-1)
	if err != nil {
		return fmt.Errorf("score: prefix: %w", err)
	}
	s.prefixLogits = append(s.prefixLogits[:0], lg...)
	s.prefixLen = len(prefix)
	return nil
}

// Score returns the log-probability of cont following the prefix.
func (s *Scorer) Score(ctx context.Context, cont []Token) (ContinuationScore, error) {
	var out ContinuationScore
	if s.prefixLen == 0 {
		return out, errors.New("score: no prefix set")
	}
	if len(cont) == 0 {
		return out, errors.New("score: empty continuation")
	}
	if s.prefixLen+len(cont) > s.ctx.nCtx {
		return out, fmt.Errorf("score: prefix (%d) + continuation (%d) tokens exceed the context of %d tokens", s.prefixLen, len(cont), s.ctx.nCtx)
	}
	nv := s.ctx.model.NVocab()
	for _, t := range cont {
		if t < 0 || int(t) >= nv {
			return out, fmt.Errorf("score: token %d out of vocabulary (%d)", t, nv)
		}
	}
	out.PerToken = make([]float64, len(cont))
	out.PerToken[0] = scoreLogProb(s.prefixLogits, cont[0])
	defer s.ctx.RemoveTokens(s.seq, s.prefixLen, -1)
	seqs := []int{s.seq}
	// Token i's logits predict token i+1; the last token needs no logits.
	n := len(cont) - 1
	for off := 0; off < n; off += s.ctx.nBatch {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		end := min(off+s.ctx.nBatch, n)
		s.batch.Clear()
		for i := off; i < end; i++ {
			_ = s.batch.Add(cont[i], s.prefixLen+i, seqs, true)
		}
		if err := s.ctx.Decode(s.batch); err != nil {
			return out, fmt.Errorf("score: continuation: %w", err)
		}
		for i := off; i < end; i++ {
			lg, err := s.ctx.Logits(i - off)
			if err != nil {
				return out, fmt.Errorf("score: %w", err)
			}
			out.PerToken[i+1] = scoreLogProb(lg, cont[i+1])
		}
	}
	for _, v := range out.PerToken {
		out.Sum += v
	}
	return out, nil
}

// ContinuationLogProb scores one continuation of prefix in sequence 0.
func (c *Context) ContinuationLogProb(ctx context.Context, prefix, cont []Token) (ContinuationScore, error) {
	s := c.NewScorer(0)
	defer s.Close()
	if err := s.SetPrefix(ctx, prefix); err != nil {
		return ContinuationScore{}, err
	}
	return s.Score(ctx, cont)
}

// ScoreAll scores several continuations of the prefix together: each is
// decoded in its own sequence that shares the prefix's KV cells (no copy),
// packed into as few batches as n_batch and the context's sequences allow.
// It gives the same results as calling Score for each (up to the float
// rounding of batched kernels) and is several times faster for short
// continuations. The context needs NSeqMax >= 2.
func (s *Scorer) ScoreAll(ctx context.Context, conts [][]Token) ([]ContinuationScore, error) {
	out := make([]ContinuationScore, len(conts))
	if s.prefixLen == 0 {
		return nil, errors.New("score: no prefix set")
	}
	nv := s.ctx.model.NVocab()
	for k, cont := range conts {
		if len(cont) == 0 {
			return nil, fmt.Errorf("score: continuation %d is empty", k)
		}
		if s.prefixLen+len(cont) > s.ctx.nCtx {
			return nil, fmt.Errorf("score: prefix (%d) + continuation (%d) tokens exceed the context of %d tokens", s.prefixLen, len(cont), s.ctx.nCtx)
		}
		if len(cont)-1 > s.ctx.nBatch {
			return nil, fmt.Errorf("score: continuation of %d tokens exceeds n_batch=%d", len(cont), s.ctx.nBatch)
		}
		for _, t := range cont {
			if t < 0 || int(t) >= nv {
				return nil, fmt.Errorf("score: token %d out of vocabulary (%d)", t, nv)
			}
		}
		out[k].PerToken = make([]float64, len(cont))
		out[k].PerToken[0] = scoreLogProb(s.prefixLogits, cont[0])
	}
	// Free sequence ids: every id but the prefix's.
	var free []int
	for id := 0; id < s.ctx.nSeq; id++ {
		if id != s.seq {
			free = append(free, id)
		}
	}
	if len(free) == 0 {
		for k := range conts {
			sc, err := s.Score(ctx, conts[k])
			if err != nil {
				return nil, err
			}
			out[k] = sc
		}
		return out, nil
	}
	type slot struct{ cont, seq, firstOut int }
	var group []slot
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		defer func() {
			for _, g := range group {
				s.ctx.RemoveTokens(g.seq, -1, -1)
			}
			group = group[:0]
		}()
		if err := s.ctx.Decode(s.batch); err != nil {
			return fmt.Errorf("score: continuations: %w", err)
		}
		for _, g := range group {
			cont := conts[g.cont]
			for i := 0; i < len(cont)-1; i++ {
				lg, err := s.ctx.Logits(g.firstOut + i)
				if err != nil {
					return fmt.Errorf("score: %w", err)
				}
				out[g.cont].PerToken[i+1] = scoreLogProb(lg, cont[i+1])
			}
		}
		return nil
	}
	s.batch.Clear()
	for k, cont := range conts {
		n := len(cont) - 1 // the last token needs no logits
		if n == 0 {
			continue
		}
		if len(group) == len(free) || s.batch.Len()+n > s.ctx.nBatch {
			if err := flush(); err != nil {
				return nil, err
			}
			s.batch.Clear()
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		seq := free[len(group)]
		s.ctx.CopySequence(s.seq, seq, -1, -1)
		g := slot{cont: k, seq: seq, firstOut: s.batch.Outputs()}
		for i := 0; i < n; i++ {
			_ = s.batch.Add(cont[i], s.prefixLen+i, []int{seq}, true)
		}
		group = append(group, g)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	for k := range out {
		for _, v := range out[k].PerToken {
			out[k].Sum += v
		}
	}
	return out, nil
}
