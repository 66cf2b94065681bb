package main

import (
	"errors"
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
		intIn(&cli.IntFlag{Name: "gpu-layers", Aliases: []string{"ngl"}, Value: 0, Usage: "layers to offload to the GPU or RPC servers, from the last layer down (-1: all; default all with --rpc, else 0; needs a GPU build or --rpc)"}, -1, maxLayers),
		rpcFlag(),
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
	mp, err := modelParams(c)
	if err != nil {
		return nil, err
	}
	m, err := llama.LoadModel(path, mp)
	if err != nil {
		return nil, err
	}
	if len(mp.RPC) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "rpc: %s\n", m.Placement())
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

// rpcFlag is --rpc, checked (syntax, port range, duplicates) when given.
func rpcFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "rpc",
		Usage: "offload layers to llama.cpp rpc-server processes at `HOST:PORT[,HOST:PORT...]` (see bin/rpc-server; unauthenticated: loopback or a private network only)",
		Action: func(_ *cli.Context, v string) error {
			if _, err := llama.ParseRPCServers(v); err != nil {
				return fmt.Errorf("--rpc: %w", err)
			}
			return nil
		},
	}
}

// modelParams builds the model parameters of --gpu-layers and --rpc. With
// --rpc, --gpu-layers defaults to all layers (as llama.cpp's does) and may
// not be 0; without it, offloading needs a local GPU.
func modelParams(c *cli.Context) (llama.ModelParams, error) {
	ngl := c.Int("gpu-layers")
	if !c.IsSet("rpc") {
		if ngl != 0 && !llama.HasLocalGPU() {
			return llama.ModelParams{}, llama.NoLocalGPUError("--gpu-layers", ngl, "--rpc")
		}
		return llama.ModelParams{GPULayers: ngl}, nil
	}
	servers, err := llama.ParseRPCServers(c.String("rpc"))
	if err != nil {
		return llama.ModelParams{}, fmt.Errorf("--rpc: %w", err)
	}
	if !llama.SupportsRPC() {
		return llama.ModelParams{}, fmt.Errorf("--rpc: %w", llama.ErrRPCUnavailable)
	}
	switch {
	case !c.IsSet("gpu-layers"):
		ngl = -1
	case ngl == 0:
		return llama.ModelParams{}, errors.New("--rpc with --gpu-layers 0 would put no layer on the RPC servers; give the number of layers to offload (-1: all)")
	}
	return llama.ModelParams{GPULayers: ngl, RPC: servers}, nil
}
