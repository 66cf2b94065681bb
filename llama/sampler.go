package llama

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"math"
	"unsafe"
)

// SamplerParams configure token sampling. The zero value is greedy decoding.
type SamplerParams struct {
	Temperature   float64 // <= 0: greedy (argmax)
	TopK          int     // 0: off
	TopP          float64 // 0 or 1: off
	MinP          float64 // 0: off
	RepeatPenalty float64 // 0 or 1: off
	RepeatLastN   int     // tokens considered by the repetition penalty (0: 64)
	Seed          uint32  // random seed for non-greedy sampling
	// IgnoreEOG never samples an end-of-generation token (generation then
	// runs to its token limit, as benchmarks want).
	IgnoreEOG bool
}

// Validate reports out-of-range parameters.
func (p SamplerParams) Validate() error {
	switch {
	case math.IsNaN(p.Temperature) || p.Temperature < 0 || p.Temperature > 100:
		return fmt.Errorf("temperature %v out of range [0, 100]", p.Temperature)
	case p.TopK < 0:
		return fmt.Errorf("top-k %d is negative", p.TopK)
	case math.IsNaN(p.TopP) || p.TopP < 0 || p.TopP > 1:
		return fmt.Errorf("top-p %v out of range [0, 1]", p.TopP)
	case math.IsNaN(p.MinP) || p.MinP < 0 || p.MinP > 1:
		return fmt.Errorf("min-p %v out of range [0, 1]", p.MinP)
	case math.IsNaN(p.RepeatPenalty) || p.RepeatPenalty < 0 || p.RepeatPenalty > 10:
		return fmt.Errorf("repeat penalty %v out of range [0, 10]", p.RepeatPenalty)
	}
	return nil
}

// Sampler is a llama.cpp sampler chain.
type Sampler struct {
	c *C.struct_llama_sampler
}

// NewSampler builds a sampler chain: repetition penalty, then top-k, top-p,
// min-p and temperature, then a seeded random draw; or argmax when
// Temperature <= 0.
func NewSampler(m *Model, p SamplerParams) (*Sampler, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("sampler: %w", err)
	}
	initBackend()
	sp := C.llama_sampler_chain_default_params()
	sp.no_perf = true
	chain := C.llama_sampler_chain_init(sp)
	if eog := m.EOGTokens(); p.IgnoreEOG && len(eog) > 0 {
		bias := (*C.llama_logit_bias)(C.malloc(C.size_t(len(eog)) * C.size_t(unsafe.Sizeof(C.llama_logit_bias{}))))
		bs := unsafe.Slice(bias, len(eog))
		for i, t := range eog {
			bs[i] = C.llama_logit_bias{token: C.llama_token(t), bias: C.float(math.Inf(-1))}
		}
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_logit_bias(C.int32_t(m.NVocab()), C.int32_t(len(eog)), bias))
		C.free(unsafe.Pointer(bias))
	}
	if p.RepeatPenalty > 0 && p.RepeatPenalty != 1 {
		lastN := p.RepeatLastN
		if lastN == 0 {
			lastN = 64
		}
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_penalties(C.int32_t(m.NVocab()), C.int32_t(lastN), C.float(p.RepeatPenalty), 0, 0))
	}
	if p.Temperature <= 0 {
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
		return &Sampler{c: chain}, nil
	}
	if p.TopK > 0 {
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_k(C.int32_t(p.TopK)))
	}
	if p.TopP > 0 && p.TopP < 1 {
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_p(C.float(p.TopP), 1))
	}
	if p.MinP > 0 {
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_min_p(C.float(p.MinP), 1))
	}
	C.llama_sampler_chain_add(chain, C.llama_sampler_init_temp(C.float(p.Temperature)))
	C.llama_sampler_chain_add(chain, C.llama_sampler_init_dist(C.uint32_t(p.Seed)))
	return &Sampler{c: chain}, nil
}

// Sample picks a token from the logits of output idx of ctx's last Decode
// (-1: the last output) and records it in the sampler's history.
func (s *Sampler) Sample(ctx *Context, idx int) Token {
	return Token(C.llama_sampler_sample(s.c, ctx.c, C.int32_t(idx)))
}

// Accept records tok in the sampler's history (for repetition penalties)
// without sampling, e.g. for prompt tokens.
func (s *Sampler) Accept(tok Token) { C.llama_sampler_accept(s.c, C.llama_token(tok)) }

// Reset clears the sampler's history.
func (s *Sampler) Reset() { C.llama_sampler_reset(s.c) }

// Close frees the sampler.
func (s *Sampler) Close() {
	if s == nil || s.c == nil {
		return
	}
	C.llama_sampler_free(s.c)
	s.c = nil
}
