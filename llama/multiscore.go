package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
)

// DefaultMultiBatchTokens is the batch size a MultiScorer aims for when
// none is given. In a unified KV memory every token attends over every
// occupied cell (masked or not), so a batch much larger than a micro-batch
// pays more for attention than it saves in per-decode overhead.
const DefaultMultiBatchTokens = 512

// ScoreRequest is a prefix and the continuations to score after it.
type ScoreRequest struct {
	Prefix []Token
	Conts  [][]Token
}

// RequestError is an error about one request of MultiScorer.Score.
type RequestError struct {
	Index int // the request's index in the call
	Err   error
}

func (e *RequestError) Error() string { return fmt.Sprintf("request %d: %v", e.Index, e.Err) }

func (e *RequestError) Unwrap() error { return e.Err }

// MultiScorer scores the continuations of several prefixes in shared
// batches. Each request is packed whole into one batch: its prefix tokens
// belong to the sequences of all its continuations (one KV cell each, as
// Scorer's prefix reuse), and each continuation follows in a sequence of
// its own; requests go together until the batch reaches its token budget or
// the context's sequences run out. A request too large for one batch is
// scored as Scorer.SetPrefix and Scorer.ScoreAll score it (prefix first,
// continuations after it). The results equal Scorer's up to the float
// rounding of batched kernels.
//
// Score uses every sequence of the context and clears its KV memory before
// and after; it is not safe for concurrent use.
type MultiScorer struct {
	ctx       *Context
	batch     *Batch
	fallback  *Scorer
	maxTokens int
}

// NewMultiScorer makes a multi-request scorer on c whose batches hold up
// to maxTokens tokens (0: DefaultMultiBatchTokens; at most n_batch and
// n_ctx). A request of more tokens than that goes in a batch of its own.
func (c *Context) NewMultiScorer(maxTokens int) (*MultiScorer, error) {
	if maxTokens < 0 {
		return nil, fmt.Errorf("multi scorer: batch of %d tokens: want 0 (default) or more", maxTokens)
	}
	if maxTokens == 0 {
		maxTokens = DefaultMultiBatchTokens
	}
	maxTokens = min(maxTokens, c.hardLimit())
	return &MultiScorer{ctx: c, batch: NewBatch(c.hardLimit(), c.nSeq), fallback: c.NewScorer(0), maxTokens: maxTokens}, nil
}

// hardLimit is the most tokens one batch of a MultiScorer may hold: every
// token needs a KV cell while the batch is decoded.
func (c *Context) hardLimit() int { return min(c.nBatch, c.nCtx) }

// Close frees the scorer's batches.
func (s *MultiScorer) Close() {
	s.batch.Close()
	s.fallback.Close()
}

// BatchTokens is the scorer's token budget per batch.
func (s *MultiScorer) BatchTokens() int { return s.maxTokens }

// plan is one request's place in a batch.
type plan struct {
	req       int
	prefixOut int   // batch index of the prefix's last token
	contOut   []int // batch index of each continuation's first token (-1: single token)
}

// check validates a request; it returns the tokens and sequences it needs
// in a shared batch.
func (s *MultiScorer) check(r ScoreRequest) (tokens, seqs int, err error) {
	c := s.ctx
	nv := c.model.NVocab()
	if len(r.Prefix) == 0 {
		return 0, 0, errors.New("score: empty prefix (add BOS or some text)")
	}
	if len(r.Prefix) >= c.nCtx {
		return 0, 0, fmt.Errorf("score: prefix of %d tokens does not fit the context of %d tokens", len(r.Prefix), c.nCtx)
	}
	for _, t := range r.Prefix {
		if t < 0 || int(t) >= nv {
			return 0, 0, fmt.Errorf("score: prefix token %d out of vocabulary (%d)", t, nv)
		}
	}
	tokens = len(r.Prefix)
	for k, cont := range r.Conts {
		if len(cont) == 0 {
			return 0, 0, fmt.Errorf("score: continuation %d is empty", k)
		}
		if len(r.Prefix)+len(cont) > c.nCtx {
			return 0, 0, fmt.Errorf("score: prefix (%d) + continuation (%d) tokens exceed the context of %d tokens", len(r.Prefix), len(cont), c.nCtx)
		}
		if len(cont)-1 > c.nBatch {
			return 0, 0, fmt.Errorf("score: continuation of %d tokens exceeds n_batch=%d", len(cont), c.nBatch)
		}
		for _, t := range cont {
			if t < 0 || int(t) >= nv {
				return 0, 0, fmt.Errorf("score: token %d out of vocabulary (%d)", t, nv)
			}
		}
		tokens += len(cont) - 1 // the last token needs no logits
		if len(cont) > 1 {
			seqs++
		}
	}
	return tokens, max(seqs, 1), nil
}

// Score returns, for every request, the log-probability of each of its
// continuations following its prefix (out[i][k] for reqs[i].Conts[k]).
// Every request is checked before anything is decoded; an error about one
// request is a *RequestError. ctx is checked between batches; to stop a
// running decode, call the context's Abort.
func (s *MultiScorer) Score(ctx context.Context, reqs []ScoreRequest) ([][]ContinuationScore, error) {
	c := s.ctx
	tokens := make([]int, len(reqs))
	seqs := make([]int, len(reqs))
	out := make([][]ContinuationScore, len(reqs))
	for i, r := range reqs {
		var err error
		if tokens[i], seqs[i], err = s.check(r); err != nil {
			return nil, &RequestError{Index: i, Err: err}
		}
		out[i] = make([]ContinuationScore, len(r.Conts))
		for k, cont := range r.Conts {
			out[i][k].PerToken = make([]float64, len(cont))
		}
	}
	c.RemoveTokens(-1, -1, -1)
	defer c.RemoveTokens(-1, -1, -1)
	var (
		group   []plan
		nTok    int
		nSeq    int
		seqList []int
	)
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		defer func() {
			group, nTok, nSeq = group[:0], 0, 0
			s.batch.Clear()
			c.RemoveTokens(-1, -1, -1)
		}()
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.Decode(s.batch); err != nil {
			return fmt.Errorf("score: batch of %d requests: %w", len(group), err)
		}
		var jobs []lpJob
		for _, g := range group {
			r := reqs[g.req]
			lg, err := c.Logits(g.prefixOut)
			if err != nil {
				return fmt.Errorf("score: %w", err)
			}
			for k, cont := range r.Conts {
				jobs = append(jobs, lpJob{logits: lg, tok: cont[0], dst: &out[g.req][k].PerToken[0]})
				for i := 0; i < len(cont)-1; i++ {
					lg, err := c.Logits(g.contOut[k] + i)
					if err != nil {
						return fmt.Errorf("score: %w", err)
					}
					jobs = append(jobs, lpJob{logits: lg, tok: cont[i+1], dst: &out[g.req][k].PerToken[i+1]})
				}
			}
		}
		runLogProbs(jobs, c.threadsBatch())
		return nil
	}
	for i, r := range reqs {
		if tokens[i] > s.ctx.hardLimit() || seqs[i] > c.nSeq {
			// Too large for one batch: prefix first, then the
			// continuations, as Scorer does.
			if err := flush(); err != nil {
				return nil, err
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := s.fallback.SetPrefix(ctx, r.Prefix); err != nil {
				return nil, &RequestError{Index: i, Err: err}
			}
			sc, err := s.fallback.ScoreAll(ctx, r.Conts)
			c.RemoveTokens(-1, -1, -1)
			if err != nil {
				return nil, &RequestError{Index: i, Err: err}
			}
			out[i] = sc
			continue
		}
		if nTok > 0 && (nTok+tokens[i] > s.maxTokens || nSeq+seqs[i] > c.nSeq) {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		// The prefix belongs to the sequence of every continuation that
		// needs decoding (or to one sequence when none does).
		seqList = seqList[:0]
		for k := 0; k < seqs[i]; k++ {
			seqList = append(seqList, nSeq+k)
		}
		p := plan{req: i, contOut: make([]int, len(r.Conts))}
		for j, t := range r.Prefix {
			last := j == len(r.Prefix)-1
			if last {
				p.prefixOut = s.batch.Len()
			}
			if err := s.batch.Add(t, j, seqList, last); err != nil {
				return nil, fmt.Errorf("score: %w", err)
			}
		}
		seq := nSeq
		for k, cont := range r.Conts {
			if len(cont) == 1 {
				p.contOut[k] = -1
				continue
			}
			p.contOut[k] = s.batch.Len()
			for j := 0; j < len(cont)-1; j++ {
				if err := s.batch.Add(cont[j], len(r.Prefix)+j, []int{seq}, true); err != nil {
					return nil, fmt.Errorf("score: %w", err)
				}
			}
			seq++
		}
		group = append(group, p)
		nTok += tokens[i]
		nSeq += seqs[i]
	}
	if err := flush(); err != nil {
		return nil, err
	}
	for i := range out {
		for k := range out[i] {
			var sum float64
			for _, v := range out[i][k].PerToken {
				sum += v
			}
			out[i][k].Sum = sum
		}
	}
	return out, nil
}

// threadsBatch is the number of threads the context uses for batches.
func (c *Context) threadsBatch() int { return max(1, int(C.llama_n_threads_batch(c.c))) }

// lpJob is one token's log-probability to compute from a row of logits.
type lpJob struct {
	logits []float32
	tok    Token
	dst    *float64
}

// minJobsPerWorker keeps small batches on one goroutine.
const minJobsPerWorker = 4

// runLogProbs computes every job's log-probability on up to threads
// goroutines (the context's threads are idle between decodes).
func runLogProbs(jobs []lpJob, threads int) {
	workers := min(threads, len(jobs)/minJobsPerWorker)
	if workers <= 1 {
		for _, j := range jobs {
			*j.dst = scoreLogProb(j.logits, j.tok)
		}
		return
	}
	var wg sync.WaitGroup
	per := (len(jobs) + workers - 1) / workers
	for lo := 0; lo < len(jobs); lo += per {
		part := jobs[lo:min(lo+per, len(jobs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, j := range part {
				*j.dst = scoreLogProb(j.logits, j.tok)
			}
		}()
	}
	wg.Wait()
}

// scoreLogProb is log softmax(logits)[tok] in float64, bit for bit
// logits[tok] - logSumExp(logits), about twice as fast (the maximum is
// found on the float32 values).
func scoreLogProb(logits []float32, tok Token) float64 {
	return float64(logits[tok]) - fastLogSumExp(logits)
}

// fastLogSumExp is logSumExp with the maximum taken in float32: the same
// value (the maximum of float32 values is exact either way) and the same
// summation, so the same result, NaN included.
func fastLogSumExp(v []float32) float64 {
	if len(v) == 0 {
		return math.Inf(-1)
	}
	m := v[0]
	for _, x := range v[1:] {
		if x > m || x != x {
			m = x
			if x != x {
				break
			}
		}
	}
	maxv := float64(m)
	var sum float64
	for _, x := range v {
		sum += math.Exp(float64(x) - maxv)
	}
	return maxv + math.Log(sum)
}
