// Command outside is built by scripts/test-outside.sh in a module of its
// own, outside this repository, against an installed llama.cpp (make
// install): it checks that a program importing github.com/matsteer/matsteer
// builds and runs without the repository's third_party/ links.
//
// Without arguments it decodes with a small random model built in memory;
// with a GGUF path it also generates greedily from that model.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/matsteer/matsteer/llama"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "outside:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		return err
	}
	defer m.Close()
	fmt.Printf("outside: random model, %d layers, n_embd %d, rpc backend %v\n", m.NLayer(), m.NEmbd(), llama.SupportsRPC())
	if len(args) == 0 {
		fmt.Println("outside: ok")
		return nil
	}
	real, err := llama.LoadModel(args[0], llama.ModelParams{})
	if err != nil {
		return err
	}
	defer real.Close()
	c, err := llama.NewContext(real, llama.ContextParams{NCtx: 256, Threads: 2})
	if err != nil {
		return err
	}
	defer c.Close()
	prompt, err := real.Tokenize("The capital of France is", true, false)
	if err != nil {
		return err
	}
	var out strings.Builder
	if _, err := c.Generate(context.Background(), prompt, llama.GenerateOptions{MaxTokens: 8}, func(_ llama.Token, piece string) error {
		out.WriteString(piece)
		return nil
	}); err != nil {
		return err
	}
	fmt.Printf("outside: %s: %q\n", real.Name(), out.String())
	fmt.Println("outside: ok")
	return nil
}
