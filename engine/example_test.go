package engine_test

import (
	"context"
	"fmt"

	"github.com/matsteer/matsteer/engine"
	"github.com/matsteer/matsteer/llama"
)

// Two requests with the same prompt: the second reuses the first one's KV
// entries (the prompt cache) and gives the same greedy tokens.
func Example() {
	// A tiny random model stands in for a real one (llama.LoadModel); its
	// text is noise, so IgnoreEOG keeps it going to MaxTokens.
	m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	e, err := engine.New(engine.Config{Model: m, Parallel: 4, NCtx: 256, Threads: 2})
	if err != nil {
		panic(err)
	}
	defer e.Close()

	prompt := []llama.Token{1, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100}
	var first []llama.Token
	for i := 0; i < 2; i++ {
		var got []llama.Token
		res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, MaxTokens: 8, Sampler: llama.SamplerParams{IgnoreEOG: true}},
			func(tok llama.Token, piece string) error {
				got = append(got, tok)
				return nil
			})
		if err != nil {
			panic(err)
		}
		if i == 0 {
			first = got
		}
		fmt.Printf("request %d: %d tokens (%s), %d of %d prompt tokens from the cache, same as the first: %v\n",
			i+1, res.GeneratedTokens, res.StopReason, res.CachedTokens, res.PromptTokens, fmt.Sprint(got) == fmt.Sprint(first))
	}
	// Output:
	// request 1: 8 tokens (max_tokens), 0 of 12 prompt tokens from the cache, same as the first: true
	// request 2: 8 tokens (max_tokens), 11 of 12 prompt tokens from the cache, same as the first: true
}
