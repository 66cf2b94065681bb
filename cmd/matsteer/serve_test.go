package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/steer"
)

// serveBuffer is a bytes.Buffer safe for concurrent use.
type serveBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *serveBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *serveBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeServeSteerFile writes a one-attribute gated steering file for the
// random test model.
func writeServeSteerFile(t *testing.T, path string, nEmbd int) {
	t.Helper()
	a := steer.Attribute{Name: "tone", Gated: true, Theta: make([]float64, nEmbd), GateW: make([]float64, nEmbd), GateB: 0.5}
	for i := range nEmbd {
		a.Theta[i] = 3 * math.Sin(float64(i))
		a.GateW[i] = 0.05 * math.Cos(float64(i))
	}
	f := &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: 2, NEmbd: nEmbd, ModelArch: "llama",
		Method: steer.MethodMATSteer, NormPreserve: true, Attributes: []steer.Attribute{a}}
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
}

var listeningRE = regexp.MustCompile(`on http://(127\.0\.0\.1:\d+)`)

// startServe runs `matsteer serve` until the returned stop function is
// called; it returns the server's address and the function, which returns
// Run's error.
func startServe(t *testing.T, args ...string) (string, *serveBuffer, func() error) {
	t.Helper()
	app := newApp()
	errOut := &serveBuffer{}
	app.Writer, app.ErrWriter = &serveBuffer{}, errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.RunContext(ctx, append([]string{"matsteer", "serve"}, args...)) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(errOut.String()); m != nil {
			return m[1], errOut, func() error { cancel(); return <-done }
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve exited before listening: %v\n%s", err, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeCLI(t *testing.T) {
	dir := t.TempDir()
	model := randomModelFile(t)
	steerPath := filepath.Join(dir, "tone.gguf")
	writeServeSteerFile(t, steerPath, 64)
	audit := filepath.Join(dir, "audit.jsonl")
	addr, logs, stop := startServe(t, "--model", model, "--addr", "127.0.0.1:0", "--parallel", "2", "--ctx", "256",
		"-t", "1", "--steer", "tone="+steerPath, "--audit-log", audit, "--chat-template", "chatml", "--alias", "tiny")
	base := "http://" + addr
	c := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0))
	ctx := context.Background()

	resp, err := http.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health["status"] != "ok" || health["slots"] != 2.0 || health["model"] != "tiny" {
		t.Fatalf("health %v", health)
	}
	params := openai.ChatCompletionNewParams{Model: "tiny", MaxTokens: openai.Int(8), Temperature: openai.Float(0),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}
	plain, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	steered, err := c.Chat.Completions.New(ctx, params, option.WithJSONSet("steering", map[string]any{"file": "tone", "global": 2}))
	if err != nil {
		t.Fatal(err)
	}
	if plain.Choices[0].Message.Content == steered.Choices[0].Message.Content || steered.Model != "tiny" {
		t.Errorf("steering changed nothing: %q", plain.Choices[0].Message.Content)
	}
	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: "tiny", MaxTokens: openai.Int(4),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("the cat")}})
	if err != nil || comp.Usage.CompletionTokens != 4 {
		t.Fatalf("completion: %v %+v", err, comp)
	}
	// Default: runtime steering loads are off, and answer at once.
	for _, p := range []string{"/dev/zero", "/dev/urandom", steerPath} {
		t0 := time.Now()
		resp, err := http.Post(base+"/v1/steering", "application/json", strings.NewReader(`{"name":"x","path":"`+p+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || time.Since(t0) > 2*time.Second {
			t.Errorf("default server, load %s: %d after %v", p, resp.StatusCode, time.Since(t0))
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("serve after SIGINT-style cancel: %v", err)
	}
	out := logs.String()
	for _, want := range []string{"tiny on http://", "steering: tone", "steering file loaded", "msg=request", "matsteer serve: stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if b, _ := os.ReadFile(audit); !strings.Contains(string(b), `"request_id":"`+steered.ID+`"`) {
		t.Errorf("audit log lacks the steered request:\n%.300s", b)
	}
}

func TestServeCLIErrors(t *testing.T) {
	model := randomModelFile(t)
	dir := t.TempDir()
	wide := filepath.Join(dir, "wide.gguf")
	writeServeSteerFile(t, wide, 32)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--model", model, "--steer", "x=" + filepath.Join(dir, "none.gguf")}, "no such file"},
		{[]string{"--model", model, "--steer", "w=" + wide}, "n_embd"},
		{[]string{"--model", model, "--steer", "=" + wide}, "NAME=FILE"},
		{[]string{"--model", model, "--steer", "a=" + wide, "--steer", "a=" + wide}, "used twice"},
		{[]string{"--model", model, "--parallel", "0"}, "--parallel 0: out of range, want 1..256"},
		{[]string{"--model", model, "--parallel", "-3"}, "--parallel -3: out of range"},
		{[]string{"--model", model, "--parallel", "100000"}, "--parallel 100000: out of range"},
		{[]string{"--model", model, "--queue", "-2"}, "--queue -2: out of range, want -1..65536"},
		{[]string{"--model", model, "--queue", "99999999"}, "--queue 99999999: out of range"},
		{[]string{"--model", model, "--max-body", "0"}, "--max-body 0 is out of range"},
		{[]string{"--model", model, "--max-body", "99999999999"}, "--max-body 99999999999 is out of range"},
		{[]string{"--model", model, "--shutdown-timeout", "-1s"}, "--shutdown-timeout -1s is out of range"},
		{[]string{"--model", model, "--shutdown-timeout", "2h"}, "--shutdown-timeout 2h0m0s is out of range"},
		{[]string{"--model", model, "--steer-dir", filepath.Join(dir, "missing")}, "--steer-dir: stat"},
		{[]string{"--model", model, "--steer-dir", wide}, "is not a directory"},
		{[]string{"--model", model, "--steer-dir", ""}, "--steer-dir is empty"},
		{[]string{"--model", model, "--addr", "localhost"}, "want HOST:PORT"},
		{[]string{"--model", model, "--addr", "127.0.0.1:http"}, "port \"http\""},
		{[]string{"--model", model, "--chat-template", "not a template"}, "chat template \"not a template\" does not work"},
		{[]string{"--model", model, "--addr", "256.0.0.1:99999"}, "--addr"},
	}
	for _, c := range cases {
		_, _, err := runCLI(t, append([]string{"serve", "-t", "1", "--ctx", "256"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want it to mention %q", c.args, err, c.want)
		}
	}
}

func TestParseSteerSpecs(t *testing.T) {
	got, err := parseSteerSpecs([]string{"safety=/a/b.gguf", "/x/tone.gguf"})
	if err != nil || len(got) != 2 || got[0] != (steerSpec{"safety", "/a/b.gguf"}) || got[1] != (steerSpec{"tone", "/x/tone.gguf"}) {
		t.Fatalf("%+v %v", got, err)
	}
}

// --no-prompt-cache reaches the server: a repeated prompt reuses nothing.
func TestServeNoPromptCache(t *testing.T) {
	model := randomModelFile(t)
	for _, off := range []bool{false, true} {
		args := []string{"--model", model, "--addr", "127.0.0.1:0", "--parallel", "2", "--ctx", "256", "-t", "1", "--chat-template", "chatml"}
		if off {
			args = append(args, "--no-prompt-cache")
		}
		addr, _, stop := startServe(t, args...)
		c := openai.NewClient(option.WithBaseURL("http://"+addr+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0))
		params := openai.ChatCompletionNewParams{MaxTokens: openai.Int(4), Temperature: openai.Float(0),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there")}}
		var cached int64
		for i := 0; i < 2; i++ {
			resp, err := c.Chat.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			cached = resp.Usage.PromptTokensDetails.CachedTokens
		}
		if (cached == 0) != off {
			t.Errorf("--no-prompt-cache=%v: the repeat reused %d tokens", off, cached)
		}
		stop()
	}
}
