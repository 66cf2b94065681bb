package main

import (
	"fmt"
	"runtime"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/models"
)

// modelFlags are shared by every command that loads a model.
func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model file at `PATH` (default: the cached default model, see: matsteer model pull)"},
		intIn(&cli.IntFlag{Name: "gpu-layers", Aliases: []string{"ngl"}, Value: 0, Usage: "layers to offload to the GPU (-1: all; needs a CUDA build)"}, -1, maxLayers),
		intIn(&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Value: defaultThreads(), Usage: "CPU threads"}, 1, maxThreads),
		&cli.IntFlag{Name: "ctx", Value: defaultCtx, Action: func(_ *cli.Context, v int) error { return checkCtx(v, 0) },
			Usage: fmt.Sprintf("context length in tokens: a multiple of %d up to the model's training context (default %d, or the training context when smaller)", ctxStep, defaultCtx)},
	}
}

const defaultCtx = 2048

// checkCtx checks a --ctx value: a positive multiple of 256 (llama.cpp
// rounds other sizes up), at most train (the model's training context,
// when known and > 0), which also bounds the memory it allocates.
func checkCtx(v, train int) error {
	hi := maxCtx
	if train > 0 {
		hi = max(ctxStep, train/ctxStep*ctxStep)
	}
	if v < ctxStep || v > hi || v%ctxStep != 0 {
		what := ""
		if train > 0 {
			what = fmt.Sprintf(" (the model's training context is %d)", train)
		}
		return fmt.Errorf("--ctx %d: want a multiple of %d in %d..%d%s", v, ctxStep, ctxStep, hi, what)
	}
	return nil
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
	m, err := llama.LoadModel(path, llama.ModelParams{GPULayers: c.Int("gpu-layers")})
	if err != nil {
		return nil, err
	}
	if err := fitCtx(c, m.NCtxTrain()); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// fitCtx checks --ctx against the model's training context: a --ctx given
// on the command line must fit it; the default is lowered to it.
func fitCtx(c *cli.Context, train int) error {
	if c.IsSet("ctx") {
		return checkCtx(c.Int("ctx"), train)
	}
	if train > 0 && c.Int("ctx") > train {
		return c.Set("ctx", strconv.Itoa(max(ctxStep, train/ctxStep*ctxStep)))
	}
	return nil
}

// contextParams builds context parameters from the command's flags.
func contextParams(c *cli.Context) llama.ContextParams {
	warnOversubscribed(c)
	return llama.ContextParams{NCtx: c.Int("ctx"), Threads: c.Int("threads")}
}

// warnOversubscribed warns when --threads exceeds the CPUs this process may
// use: llama.cpp's compute threads wait for each other by spinning, so a
// thread without a core of its own stalls every step (measured on 2 cores:
// llama.cpp's llama-simple, with its fixed 4 threads, took 100 s for 32
// tokens that take well under a second with 2).
func warnOversubscribed(c *cli.Context) {
	if n, cpus := c.Int("threads"), runtime.NumCPU(); n > cpus {
		fmt.Fprintf(c.App.ErrWriter, "warning: --threads %d is more than the %d CPUs available; expect decoding to be much slower than with --threads %d\n", n, cpus, cpus)
	}
}
