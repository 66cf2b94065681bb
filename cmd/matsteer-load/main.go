// Command matsteer-load is a load generator for `matsteer serve` (or any
// OpenAI-compatible server). It fires streaming chat completions from N
// concurrent clients with the official openai-go client and reports
// requests/s, generated tokens/s, latency and time to first token (p50/p99)
// for each concurrency level, unsteered and steered, in one run.
//
//	matsteer-load --url http://127.0.0.1:8080/v1 --concurrency 1,4,16 --requests 16 \
//	    --max-tokens 32 --steering '{"file":"demo","global":1}'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

type config struct {
	url         string
	apiKey      string
	model       string
	prompt      string
	maxTokens   int
	concurrency []int
	requests    int
	warmup      int
	steering    json.RawMessage
	mix         []json.RawMessage
	modes       []string
	timeout     time.Duration
	jsonOut     string
	ignoreEOS   bool
	noKeepAlive bool
}

// sample is one request's measurements.
type sample struct {
	latency time.Duration
	ttft    time.Duration // 0: no content arrived
	tokens  int64
	err     error
}

// result summarises one (mode, concurrency) run.
type result struct {
	Mode        string  `json:"mode"`
	Clients     int     `json:"clients"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	ReqPerSec   float64 `json:"req_per_s"`
	TokPerSec   float64 `json:"tok_per_s"`
	LatencyP50  float64 `json:"latency_p50_ms"`
	LatencyP99  float64 `json:"latency_p99_ms"`
	TTFTP50     float64 `json:"ttft_p50_ms"`
	TTFTP99     float64 `json:"ttft_p99_ms"`
	FirstError  string  `json:"first_error,omitempty"`
	TokensTotal int64   `json:"tokens"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "matsteer-load: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("matsteer-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:8080/v1", "base URL of the OpenAI-compatible API")
	fs.StringVar(&cfg.apiKey, "api-key", "none", "API key sent as a bearer token")
	fs.StringVar(&cfg.model, "model", "default", "model field of the requests")
	fs.StringVar(&cfg.prompt, "prompt", "Write a short note to a colleague about the weekly meeting.", "user message")
	fs.IntVar(&cfg.maxTokens, "max-tokens", 32, "max_tokens per request")
	conc := fs.String("concurrency", "1,4,16", "comma-separated numbers of concurrent clients")
	fs.IntVar(&cfg.requests, "requests", 16, "requests per concurrency level (at least one per client)")
	fs.IntVar(&cfg.warmup, "warmup", 2, "unmeasured requests before each mode")
	steering := fs.String("steering", "", `"steering" field for the steered mode, e.g. {"file":"demo","global":1} (empty: unsteered only)`)
	mix := fs.String("mix", "", `";"-separated "steering" values for the mixed mode: requests cycle through them and no steering`)
	modes := fs.String("modes", "", "modes to run: unsteered,steered,mixed (default: unsteered, steered when --steering is set, mixed when --mix is)")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "per-request timeout")
	fs.StringVar(&cfg.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.BoolVar(&cfg.noKeepAlive, "no-keepalive", false, "open a new connection for every request")
	fs.BoolVar(&cfg.ignoreEOS, "ignore-eos", false, `send "ignore_eos": true (llama.cpp's extension), so every request generates --max-tokens tokens`)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	for _, s := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("--concurrency: %q is not a positive integer", s)
		}
		cfg.concurrency = append(cfg.concurrency, n)
	}
	if cfg.maxTokens < 1 || cfg.requests < 1 || cfg.warmup < 0 {
		return cfg, errors.New("--max-tokens and --requests must be positive, --warmup not negative")
	}
	if *steering != "" {
		if !json.Valid([]byte(*steering)) {
			return cfg, fmt.Errorf("--steering %q is not valid JSON", *steering)
		}
		cfg.steering = json.RawMessage(*steering)
	}
	if *mix != "" {
		for _, v := range strings.Split(*mix, ";") {
			if !json.Valid([]byte(v)) {
				return cfg, fmt.Errorf("--mix: %q is not valid JSON", v)
			}
			cfg.mix = append(cfg.mix, json.RawMessage(v))
		}
	}
	switch {
	case *modes != "":
		cfg.modes = strings.Split(*modes, ",")
	default:
		cfg.modes = []string{"unsteered"}
		if cfg.steering != nil {
			cfg.modes = append(cfg.modes, "steered")
		}
		if cfg.mix != nil {
			cfg.modes = append(cfg.modes, "mixed")
		}
	}
	for _, m := range cfg.modes {
		switch {
		case m != "unsteered" && m != "steered" && m != "mixed":
			return cfg, fmt.Errorf("--modes: unknown mode %q", m)
		case m == "steered" && cfg.steering == nil:
			return cfg, errors.New("--modes steered needs --steering")
		case m == "mixed" && cfg.mix == nil:
			return cfg, errors.New("--modes mixed needs --mix")
		}
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	clientOpts := []option.RequestOption{option.WithBaseURL(strings.TrimSuffix(cfg.url, "/") + "/"), option.WithAPIKey(cfg.apiKey),
		option.WithMaxRetries(0), option.WithRequestTimeout(cfg.timeout)}
	if cfg.noKeepAlive {
		// A new connection per request: some servers (llama-server) close
		// idle keep-alive connections, which fails a request sent on one
		// just then.
		clientOpts = append(clientOpts, option.WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}))
	}
	client := openai.NewClient(clientOpts...)
	// opts[mode][i] are the options of the i-th request of a level (cycled).
	opts := map[string][][]option.RequestOption{}
	for _, mode := range cfg.modes {
		o := [][]option.RequestOption{nil}
		switch mode {
		case "steered":
			o = [][]option.RequestOption{{option.WithJSONSet("steering", cfg.steering)}}
		case "mixed":
			for _, m := range cfg.mix {
				o = append(o, []option.RequestOption{option.WithJSONSet("steering", m)})
			}
		}
		opts[mode] = o
		for i := 0; i < cfg.warmup; i++ {
			if s := one(ctx, client, cfg, o[i%len(o)]); s.err != nil {
				return fmt.Errorf("warm-up request (%s): %s", mode, describe(s.err))
			}
		}
	}
	// The modes alternate at every concurrency level, so that drift in the
	// machine's load affects them alike.
	results := make([]result, 0, len(cfg.modes)*len(cfg.concurrency))
	for _, n := range cfg.concurrency {
		for _, mode := range cfg.modes {
			if err := ctx.Err(); err != nil {
				return err
			}
			r := level(ctx, client, cfg, opts[mode], n)
			r.Mode = mode
			results = append(results, r)
			fmt.Fprintf(stderr, "%-9s %3d clients: %d requests in %.1fs (%d errors)\n", mode, n, r.Requests, r.Seconds, r.Errors)
		}
	}
	slices.SortStableFunc(results, func(a, b result) int { return slices.Index(cfg.modes, a.Mode) - slices.Index(cfg.modes, b.Mode) })
	printTable(stdout, cfg, results)
	if cfg.jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(cfg.jsonOut, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	for _, r := range results {
		if r.Errors > 0 {
			return fmt.Errorf("%d of %d requests failed (%s, %d clients); first: %s", r.Errors, r.Requests, r.Mode, r.Clients, r.FirstError)
		}
	}
	return nil
}

// level runs max(requests, clients) requests from n concurrent clients.
func level(ctx context.Context, client openai.Client, cfg config, opts [][]option.RequestOption, n int) result {
	total := max(cfg.requests, n)
	jobs := make(chan int, total)
	for i := range total {
		jobs <- i
	}
	close(jobs)
	samples := make(chan sample, total)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				samples <- one(ctx, client, cfg, opts[i%len(opts)])
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	close(samples)
	r := result{Clients: n, Seconds: elapsed.Seconds()}
	var lat, ttft []time.Duration
	for s := range samples {
		r.Requests++
		if s.err != nil {
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = describe(s.err)
			}
			continue
		}
		lat = append(lat, s.latency)
		if s.ttft > 0 {
			ttft = append(ttft, s.ttft)
		}
		r.TokensTotal += s.tokens
	}
	ok := r.Requests - r.Errors
	r.ReqPerSec = float64(ok) / elapsed.Seconds()
	r.TokPerSec = float64(r.TokensTotal) / elapsed.Seconds()
	r.LatencyP50, r.LatencyP99 = percentile(lat, 50), percentile(lat, 99)
	r.TTFTP50, r.TTFTP99 = percentile(ttft, 50), percentile(ttft, 99)
	return r
}

// one sends a streaming chat completion and times it.
func one(ctx context.Context, client openai.Client, cfg config, opts []option.RequestOption) sample {
	params := openai.ChatCompletionNewParams{
		Model:         cfg.model,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(cfg.prompt)},
		MaxTokens:     openai.Int(int64(cfg.maxTokens)),
		Temperature:   openai.Float(0),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	t0 := time.Now()
	var s sample
	if cfg.ignoreEOS {
		opts = append(slices.Clip(opts), option.WithJSONSet("ignore_eos", true))
	}
	stream := client.Chat.Completions.NewStreaming(ctx, params, opts...)
	defer stream.Close()
	for stream.Next() {
		ch := stream.Current()
		if s.ttft == 0 && len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			s.ttft = time.Since(t0)
		}
		if ch.Usage.CompletionTokens > 0 {
			s.tokens = ch.Usage.CompletionTokens
		}
	}
	s.latency = time.Since(t0)
	s.err = stream.Err()
	if s.err == nil && s.tokens == 0 {
		s.err = errors.New("the stream carried no usage")
	}
	return s
}

// describe includes the server's error message, which openai.Error's
// Error method leaves out.
func describe(err error) string {
	var apiErr *openai.Error
	if errors.As(err, &apiErr) && apiErr.Message != "" {
		return fmt.Sprintf("%d %s: %s", apiErr.StatusCode, apiErr.Type, apiErr.Message)
	}
	return err.Error()
}

// percentile returns the p-th percentile (nearest rank) in milliseconds.
func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(float64(len(s))*p/100)) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}

func printTable(w io.Writer, cfg config, rs []result) {
	fmt.Fprintf(w, "max_tokens=%d, %d requests per level (streaming chat, greedy)\n\n", cfg.maxTokens, cfg.requests)
	fmt.Fprintln(w, "| mode | clients | requests | errors | req/s | tok/s | latency p50 (ms) | latency p99 (ms) | TTFT p50 (ms) | TTFT p99 (ms) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.2f | %.1f | %.0f | %.0f | %.0f | %.0f |\n",
			r.Mode, r.Clients, r.Requests, r.Errors, r.ReqPerSec, r.TokPerSec, r.LatencyP50, r.LatencyP99, r.TTFTP50, r.TTFTP99)
	}
}
