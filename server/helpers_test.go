package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/textstream"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
	"github.com/matsteer/matsteer/steering"
)

// testSteerFile is a two-attribute file for the random model: a gated
// "tone" and an ungated "style", steering l_out of layer 2.
func testSteerFile(nEmbd, layer int) *steer.File {
	a := steer.Attribute{Name: "tone", Gated: true, Theta: make([]float64, nEmbd), GateW: make([]float64, nEmbd), GateB: 0.1}
	b := steer.Attribute{Name: "style", Gated: false, Theta: make([]float64, nEmbd)}
	for i := 0; i < nEmbd; i++ {
		a.Theta[i] = 2 * math.Sin(float64(i))
		a.GateW[i] = 0.05 * math.Cos(float64(3*i))
		b.Theta[i] = math.Cos(float64(i))
	}
	return &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: layer, NEmbd: nEmbd, ModelArch: "llama",
		Method: steer.MethodMATSteer, NormPreserve: true, Attributes: []steer.Attribute{a, b}}
}

type fixture struct {
	t         *testing.T
	m         *llama.Model
	cat       *hooks.Catalog
	srv       *Server
	ts        *httptest.Server
	client    openai.Client
	file      *steer.File
	steerPath string
	dir       string
}

type fixtureOpts struct {
	modelCtx int           // the random model's training context (0: 512)
	cfg      func(*Config) // adjusts the server config
}

const testThreads = 1

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	mc := llama.DefaultRandomModelConfig()
	if o.modelCtx > 0 {
		mc.NCtx = o.modelCtx
	}
	m, err := llama.NewRandomModel(mc, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	cat, err := hooks.Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, m: m, cat: cat, dir: t.TempDir(), file: testSteerFile(m.NEmbd(), 2)}
	f.steerPath = filepath.Join(f.dir, "tone.gguf")
	if err := f.file.WriteFile(f.steerPath); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Model: m, Catalog: cat, ModelID: "random-test", Parallel: 2, NCtx: mc.NCtx, Threads: testThreads, SteerDir: f.dir}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.LoadSteering("tone", f.steerPath, false); err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		f.ts.Close()
		srv.Close()
	})
	f.client = openai.NewClient(option.WithBaseURL(f.ts.URL+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	return f
}

// chatTokens tokenizes a single user message the way the server does.
func (f *fixture) chatTokens(user string) []llama.Token {
	f.t.Helper()
	text, err := f.m.ApplyChatTemplate("", []llama.ChatMessage{{Role: "user", Content: user}}, true)
	if err != nil {
		f.t.Fatal(err)
	}
	toks, err := f.m.Tokenize(text, true, true)
	if err != nil {
		f.t.Fatal(err)
	}
	return toks
}

// reference generates greedily on a fresh context of its own, without the
// server, with steering installed when opts is non-nil. It returns the
// text as the server sends it: invalid UTF-8 bytes replaced one by one (as
// JSON encoders do), a character cut at the end dropped.
func (f *fixture) reference(prompt []llama.Token, maxTokens int, opts *steer.ApplyOptions) string {
	f.t.Helper()
	var hk llama.EvalHook
	h := hooks.New(f.cat)
	defer h.Close()
	if opts != nil {
		iv, err := steering.New(f.file, *opts, f.m, f.cat)
		if err != nil {
			f.t.Fatal(err)
		}
		if err := steering.Install(h, iv); err != nil {
			f.t.Fatal(err)
		}
		hk = h
	}
	c, err := llama.NewContext(f.m, llama.ContextParams{NCtx: f.srv.NCtx(), Threads: testThreads, ThreadsBatch: testThreads, Hook: hk})
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	var raw []byte
	if _, err := c.Generate(context.Background(), prompt, llama.GenerateOptions{MaxTokens: maxTokens}, func(_ llama.Token, p string) error {
		raw = append(raw, p...)
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	return textstream.Valid(raw)
}

// post sends a raw JSON body and returns the status and decoded body.
func (f *fixture) post(path, body string) (int, map[string]any) {
	f.t.Helper()
	return f.do(http.MethodPost, path, body)
}

func (f *fixture) do(method, path, body string) (int, map[string]any) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		f.t.Fatalf("%s %s: status %d, body is not JSON: %q", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, v
}

// errorOf returns the "error" object of an error response (failing the
// test when the body is not OpenAI-shaped).
func errorOf(t *testing.T, v map[string]any) (msg, typ, param string) {
	t.Helper()
	e, ok := v["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %v", v)
	}
	msg, _ = e["message"].(string)
	typ, _ = e["type"].(string)
	param, _ = e["param"].(string)
	if _, ok := e["param"]; !ok {
		t.Fatalf("error without a param key: %v", v)
	}
	if msg == "" || typ == "" {
		t.Fatalf("error without message or type: %v", v)
	}
	return msg, typ, param
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// steerOpt is the openai-go request option selecting steering.
func steerOpt(file string, global float64, strength map[string]float64) option.RequestOption {
	v := map[string]any{"file": file, "global": global}
	if strength != nil {
		v["strength"] = strength
	}
	return option.WithJSONSet("steering", v)
}

func applyOpts(global float64, strength map[string]float64) *steer.ApplyOptions {
	return &steer.ApplyOptions{Global: global, Strengths: strength}
}
