// Command matsteer steers language models at inference time with
// MAT-Steer: gated, per-token, multi-attribute steering vectors applied
// inside llama.cpp's compute graph.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/internal/safefile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		safefile.RemoveTemps() // every writer aborts on error; this is a last resort
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "matsteer: interrupted")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "matsteer: %v\n", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "matsteer",
		Usage: "multi-attribute, token-gated steering of llama.cpp models (MAT-Steer)",
		Description: `matsteer trains steering vectors with learned per-token gates from labelled examples
and applies them inside llama.cpp's compute graph while the model runs. No weights change.

Typical workflow:
   matsteer model pull                                   # fetch the default model
   matsteer extract --data pairs.jsonl --layer 14 --out acts.safetensors
   matsteer train --acts acts.safetensors --out steer.gguf
   matsteer generate --prompt "..." --steer steer.gguf --explain`,
		Commands: []*cli.Command{
			generate(),
			serveCommand(),
			modelCommand(),
			extractCommand(),
			trainCommand(),
			inspectCommand(),
			exportCvecCommand(),
			importCvecCommand(),
			evalCommand(),
			calibrateCommand(),
			dataCommand(),
		},
	}
}

// generate is generateCommand with its flags' ranges and an up-front check
// of its output file.
func generate() *cli.Command {
	cmd := withRanges(generateCommand(), generateRanges)
	cmd.Before = checkGenerateOutputs
	return cmd
}
