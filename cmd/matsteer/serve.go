package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
			intIn(&cli.IntFlag{Name: "parallel", Aliases: []string{"np"}, Value: server.DefaultParallel, Usage: "requests generated together in one batch, each with up to --ctx tokens (KV memory: parallel × ctx tokens)"}, 1, server.MaxParallel),
			intIn(&cli.IntFlag{Name: "queue", Usage: "requests that may wait for a free sequence before new ones get 503 (0: 8 per --parallel; -1: none)"}, -1, server.MaxQueue),
			&cli.StringFlag{Name: "audit-log", Usage: "append the gates of every steered token to this JSONL `FILE`"},
			&cli.StringFlag{Name: "alias", Usage: "model id reported to clients (default: the model's name)"},
			&cli.StringFlag{Name: "chat-template", Usage: "chat template (Jinja or a llama.cpp name such as chatml) for models without one"},
			&cli.Int64Flag{Name: "max-body", Value: server.DefaultMaxBodyBytes, Usage: "largest request body in bytes (1 KiB to 256 MiB)"},
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"MATSTEER_API_KEY"}, Usage: "require \"Authorization: Bearer KEY\" on /v1 endpoints"},
			&cli.StringFlag{Name: "steer-dir", Usage: "allow loading and unloading steering files at run time, from this existing directory only (POST /v1/steering paths are relative to it); without it the steering files are fixed at start-up"},
			&cli.BoolFlag{Name: "steer-readonly", Usage: "disable loading and unloading steering files at run time, even with --steer-dir"},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: 10 * time.Second, Usage: "on SIGINT/SIGTERM, let running and queued requests finish for this long (0 to 1h), then end them: streams with a final chunk, others with 503"},
			&cli.BoolFlag{Name: "no-prompt-cache", Usage: "evaluate every prompt in full instead of reusing the KV entries of a cached prefix"},
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

// maxShutdownTimeout bounds --shutdown-timeout.
const maxShutdownTimeout = time.Hour

// checkServeFlags checks the flags that can be checked before the model is
// loaded: numbers against their ranges, the steering directory, the address.
// (A broken --chat-template fails server.New, before the server listens.)
func checkServeFlags(c *cli.Context) error {
	// --parallel and --queue are checked by their flags, --ctx and --threads
	// by modelFlags and loadModel.
	if n := c.Int64("max-body"); n < server.MinMaxBodyBytes || n > server.MaxMaxBodyBytes {
		return fmt.Errorf("--max-body %d is out of range [%d, %d] bytes", n, server.MinMaxBodyBytes, server.MaxMaxBodyBytes)
	}
	if d := c.Duration("shutdown-timeout"); d < 0 || d > maxShutdownTimeout {
		return fmt.Errorf("--shutdown-timeout %v is out of range [0, %v]", d, maxShutdownTimeout)
	}
	if dir := c.String("steer-dir"); dir != "" {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("--steer-dir: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("--steer-dir %s is not a directory", dir)
		}
	} else if c.IsSet("steer-dir") {
		return fmt.Errorf("--steer-dir is empty: give a directory, or leave the flag out to fix the steering files at start-up")
	}
	if c.String("alias") == "" && c.IsSet("alias") {
		return fmt.Errorf("--alias is empty")
	}
	if _, port, err := net.SplitHostPort(c.String("addr")); err != nil {
		return fmt.Errorf("--addr %q: want HOST:PORT (%v)", c.String("addr"), err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("--addr %q: port %q is not a number in [0, 65535]", c.String("addr"), port)
	}
	return nil
}

func runServe(c *cli.Context) error {
	specs, err := parseSteerSpecs(c.StringSlice("steer"))
	if err != nil {
		return err
	}
	if err := checkServeFlags(c); err != nil {
		return err
	}
	parallel := c.Int("parallel")
	threads := c.Int("threads") // the total budget: one context decodes every request
	warnOversubscribed(c)
	level := slog.LevelInfo
	if c.Bool("quiet") {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	var auditLog *os.File
	if p := c.String("audit-log"); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--audit-log: %w", err)
		}
		defer f.Close()
		auditLog = f
	}

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
		NoPromptCache: c.Bool("no-prompt-cache"),
	}
	if auditLog != nil {
		cfg.AuditLog = auditLog
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
	fmt.Fprintf(c.App.ErrWriter, "matsteer serve: %s on http://%s (%d parallel sequences of %d tokens, %d threads; steering: %s)\n",
		srv.ModelID(), ln.Addr(), parallel, srv.NCtx(), threads, loaded)
	if err := srv.Serve(c.Context, ln, c.Duration("shutdown-timeout")); err != nil {
		return err
	}
	fmt.Fprintln(c.App.ErrWriter, "matsteer serve: stopped")
	return nil
}
