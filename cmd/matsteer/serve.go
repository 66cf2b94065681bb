package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/server"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve an OpenAI-compatible API with per-request steering",
		UsageText: `matsteer serve [--model PATH] [--steer NAME=FILE ...] [--addr 127.0.0.1:8080] [--parallel N] [--ctx N] [--threads N] [--audit-log FILE]

Endpoints: POST /v1/chat/completions, POST /v1/completions (streaming or not), GET /v1/models,
GET /health, GET|POST /v1/steering, GET|DELETE /v1/steering/NAME. Requests choose steering with
   "steering": {"file": "NAME", "strength": {"ATTR": 1.0}, "global": 1.0}
and are unsteered without it. See the server package documentation for the full API.`,
		Flags: append(modelFlags(),
			&cli.StringSliceFlag{Name: "steer", Usage: "load steering `NAME=FILE` at start-up (repeatable; NAME defaults to the file name without extension)"},
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "listen address (host:port; port 0 picks a free one)"},
			&cli.IntFlag{Name: "parallel", Aliases: []string{"np"}, Value: server.DefaultParallel, Usage: "slots: requests generated at the same time, each with its own context of --ctx tokens"},
			&cli.IntFlag{Name: "queue", Usage: "requests that may wait for a slot before new ones get 503 (0: 8 per slot; -1: none)"},
			&cli.StringFlag{Name: "audit-log", Usage: "append the gates of every steered token to this JSONL `FILE`"},
			&cli.StringFlag{Name: "alias", Usage: "model id reported to clients (default: the model's name)"},
			&cli.StringFlag{Name: "chat-template", Usage: "chat template (Jinja or a llama.cpp name such as chatml) for models without one"},
			&cli.Int64Flag{Name: "max-body", Value: server.DefaultMaxBodyBytes, Usage: "largest request body in bytes"},
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"MATSTEER_API_KEY"}, Usage: "require \"Authorization: Bearer KEY\" on /v1 endpoints"},
			&cli.StringFlag{Name: "steer-dir", Usage: "only load steering files from this directory at run time (POST /v1/steering paths are relative to it)"},
			&cli.BoolFlag{Name: "steer-readonly", Usage: "disable loading and unloading steering files at run time"},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: 10 * time.Second, Usage: "on SIGINT/SIGTERM, let running requests finish for this long before cancelling them"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "log only warnings and errors (default: one line per request)"},
		),
		Action: runServe,
	}
}

// steerSpec is one --steer NAME=FILE.
type steerSpec struct{ name, path string }

func parseSteerSpecs(specs []string) ([]steerSpec, error) {
	var out []steerSpec
	seen := map[string]bool{}
	for _, s := range specs {
		name, path, ok := strings.Cut(s, "=")
		if !ok {
			path = s
			name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		}
		if name == "" || path == "" {
			return nil, fmt.Errorf("--steer %q: want NAME=FILE", s)
		}
		if seen[name] {
			return nil, fmt.Errorf("--steer: the name %q is used twice", name)
		}
		seen[name] = true
		out = append(out, steerSpec{name, path})
	}
	return out, nil
}

func runServe(c *cli.Context) error {
	specs, err := parseSteerSpecs(c.StringSlice("steer"))
	if err != nil {
		return err
	}
	parallel := c.Int("parallel")
	if parallel < 1 {
		return fmt.Errorf("--parallel %d: need at least one slot", parallel)
	}
	threads := c.Int("threads")
	if !c.IsSet("threads") {
		threads = max(1, runtime.NumCPU()/parallel)
	}
	level := slog.LevelInfo
	if c.Bool("quiet") {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))

	m, err := loadModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	cat, err := hooks.Probe(m)
	if err != nil {
		return fmt.Errorf("probing the model's hook sites: %w", err)
	}
	cfg := server.Config{
		Model: m, Catalog: cat, ModelID: c.String("alias"), ChatTemplate: c.String("chat-template"),
		Parallel: parallel, QueueSize: c.Int("queue"), NCtx: c.Int("ctx"), Threads: threads,
		MaxBodyBytes: c.Int64("max-body"), APIKey: c.String("api-key"),
		SteerDir: c.String("steer-dir"), ReadOnlySteering: c.Bool("steer-readonly"), Logger: logger,
	}
	if p := c.String("audit-log"); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--audit-log: %w", err)
		}
		defer f.Close()
		cfg.AuditLog = f
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	for _, s := range specs {
		if _, err := srv.LoadSteering(s.name, s.path, false); err != nil {
			return fmt.Errorf("--steer %s=%s: %w", s.name, s.path, err)
		}
	}
	ln, err := (&net.ListenConfig{}).Listen(c.Context, "tcp", c.String("addr"))
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	loaded := "none"
	if len(specs) > 0 {
		names := make([]string, len(specs))
		for i, s := range specs {
			names[i] = s.name
		}
		loaded = strings.Join(names, ", ")
	}
	fmt.Fprintf(c.App.ErrWriter, "matsteer serve: %s on http://%s (%d slots of %d tokens, %d threads each; steering: %s)\n",
		srv.ModelID(), ln.Addr(), parallel, srv.NCtx(), threads, loaded)
	if err := srv.Serve(c.Context, ln, c.Duration("shutdown-timeout")); err != nil {
		return err
	}
	fmt.Fprintln(c.App.ErrWriter, "matsteer serve: stopped")
	return nil
}
