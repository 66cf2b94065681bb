package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/models"
)

// modelFlags are shared by every command that loads a model.
func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model file at `PATH` (default: the cached default model, see: matsteer model pull)"},
		&cli.IntFlag{Name: "gpu-layers", Aliases: []string{"ngl"}, Value: 0, Usage: "layers to offload to the GPU (-1: all; needs a CUDA build)"},
		&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Value: defaultThreads(), Usage: "CPU threads"},
		&cli.IntFlag{Name: "ctx", Value: 2048, Usage: "context length in tokens"},
	}
}

func defaultThreads() int { return min(runtime.NumCPU(), 8) }

// modelPath resolves --model, falling back to the cached default model.
func modelPath(c *cli.Context) (string, error) {
	if p := c.String("model"); p != "" {
		return p, nil
	}
	return models.DefaultPath()
}

// loadModel loads the model named by the command's flags.
func loadModel(c *cli.Context) (*llama.Model, error) {
	path, err := modelPath(c)
	if err != nil {
		return nil, err
	}
	if n := c.Int("gpu-layers"); n != 0 && !llama.SupportsGPUOffload() {
		return nil, fmt.Errorf("--gpu-layers %d: this build has no GPU support; rebuild with `make CUDA=1`", n)
	}
	return llama.LoadModel(path, llama.ModelParams{GPULayers: c.Int("gpu-layers")})
}

// contextParams builds context parameters from the command's flags.
func contextParams(c *cli.Context) llama.ContextParams {
	return llama.ContextParams{NCtx: c.Int("ctx"), Threads: c.Int("threads")}
}
