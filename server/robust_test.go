package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestBadRequests sends malformed and out-of-range requests: each gets a 4xx
// with an OpenAI-style error naming the field, and the server keeps serving.
func TestBadRequests(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.MaxBodyBytes = 4096 }})
	long := strings.Repeat("word ", 600) // > 512 tokens with the byte-level vocabulary
	chat := func(extra string) string {
		return `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4` + extra + `}`
	}
	cases := []struct {
		name, path, body string
		status           int
		param, contains  string
	}{
		{"malformed JSON", "/v1/chat/completions", `{"messages": [`, 400, "", "malformed JSON"},
		{"trailing garbage", "/v1/chat/completions", chat("") + `}`, 400, "", "malformed JSON"},
		{"not an object", "/v1/chat/completions", `[1,2]`, 400, "", "JSON object"},
		{"empty body", "/v1/chat/completions", ``, 400, "", "empty"},
		{"no messages", "/v1/chat/completions", `{"messages":[]}`, 400, "messages", "at least one"},
		{"bad role", "/v1/chat/completions", `{"messages":[{"role":"tool","content":"x"}]}`, 400, "messages[0].role", "not supported"},
		{"image content", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "messages[0].content[0]", "text"},
		{"wrong type", "/v1/chat/completions", chat(`,"temperature":"hot"`), 400, "temperature", "number"},
		{"ignore_eos not a bool", "/v1/chat/completions", chat(`,"ignore_eos":"yes"`), 400, "ignore_eos", "bool"},
		{"ignore_eos a number", "/v1/completions", `{"prompt":"x","ignore_eos":1}`, 400, "ignore_eos", "bool"},
		{"temperature too high", "/v1/chat/completions", chat(`,"temperature":2.5`), 400, "temperature", "out of range"},
		{"temperature negative", "/v1/chat/completions", chat(`,"temperature":-0.1`), 400, "temperature", "out of range"},
		{"top_p zero", "/v1/chat/completions", chat(`,"top_p":0`), 400, "top_p", "out of range"},
		{"n=2", "/v1/chat/completions", chat(`,"n":2`), 400, "n", "not supported"},
		{"tools", "/v1/chat/completions", chat(`,"tools":[{"type":"function"}]`), 400, "tools", "not supported"},
		{"json mode", "/v1/chat/completions", chat(`,"response_format":{"type":"json_object"}`), 400, "response_format", "text"},
		{"logprobs", "/v1/chat/completions", chat(`,"logprobs":true`), 400, "logprobs", "not supported"},
		{"penalty", "/v1/chat/completions", chat(`,"frequency_penalty":0.5`), 400, "frequency_penalty", "repeat_penalty"},
		{"five stops", "/v1/chat/completions", chat(`,"stop":["a","b","c","d","e"]`), 400, "stop", "at most 4"},
		{"max_tokens zero", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}`, 400, "max_tokens", "at least 1"},
		{"max_tokens > ctx", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":100000}`, 400, "max_tokens", "context length"},
		{"max_completion_tokens > room", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":500}`, 400, "max_completion_tokens", "requested"},
		{"max_tokens float", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1e3}`, 400, "max_tokens", "integer"},
		{"max_tokens negative", "/v1/completions", `{"prompt":"a","max_tokens":-5}`, 400, "max_tokens", "at least 1"},
		{"max_tokens beyond int64", "/v1/completions", `{"prompt":"a","max_tokens":99999999999999999999999}`, 400, "max_tokens", "99999999999999999999999 is out of range for an integer"},
		{"temperature overflows", "/v1/chat/completions", chat(`,"temperature":1e400`), 400, "temperature", "temperature 1e400 is out of range"},
		{"top_p overflows", "/v1/completions", `{"prompt":"a","top_p":-1e999}`, 400, "top_p", "top_p -1e999 is out of range"},
		{"top_k negative", "/v1/completions", `{"prompt":"a","top_k":-1}`, 400, "top_k", "out of range [0, 1048576]"},
		{"top_k huge", "/v1/completions", `{"prompt":"a","top_k":4294967296}`, 400, "top_k", "out of range"},
		{"seed negative", "/v1/completions", `{"prompt":"a","seed":-2}`, 400, "seed", "out of range [0, 4294967294]"},
		{"seed huge", "/v1/completions", `{"prompt":"a","seed":4294967295}`, 400, "seed", "out of range"},
		{"n zero", "/v1/completions", `{"prompt":"a","n":0}`, 400, "n", "n must be 1"},
		{"n negative", "/v1/completions", `{"prompt":"a","n":-3}`, 400, "n", "n must be 1"},
		{"best_of", "/v1/completions", `{"prompt":"a","best_of":5}`, 400, "best_of", "must be 1"},
		{"min_p", "/v1/completions", `{"prompt":"a","min_p":1.5}`, 400, "min_p", "out of range"},
		{"repeat_penalty", "/v1/completions", `{"prompt":"a","repeat_penalty":11}`, 400, "repeat_penalty", "out of range"},
		{"stop too long", "/v1/completions", `{"prompt":"a","stop":"` + strings.Repeat("s", 257) + `"}`, 400, "stop", "longer than"},
		{"stop empty", "/v1/completions", `{"prompt":"a","stop":[""]}`, 400, "stop", "empty"},
		{"token id negative", "/v1/completions", `{"prompt":[-1]}`, 400, "prompt", "vocabulary"},
		{"prompt too long", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + long[:3000] + `"}]}`, 400, "messages", "context length"},
		{"completion prompt too long", "/v1/completions", `{"prompt":"` + long[:3000] + `"}`, 400, "prompt", "context length"},
		{"body too large", "/v1/completions", `{"prompt":"` + strings.Repeat("x", 5000) + `"}`, 413, "", "larger than"},
		{"no prompt", "/v1/completions", `{"max_tokens":3}`, 400, "prompt", "required"},
		{"two prompts", "/v1/completions", `{"prompt":["a","b"]}`, 400, "prompt", "one prompt"},
		{"token out of vocab", "/v1/completions", `{"prompt":[1,99999]}`, 400, "prompt", "vocabulary"},
		{"echo", "/v1/completions", `{"prompt":"a","echo":true}`, 400, "echo", "not supported"},
		// Steering.
		{"unknown steering file", "/v1/chat/completions", chat(`,"steering":{"file":"nope"}`), 400, "steering.file", `unknown steering file "nope" (loaded: tone)`},
		{"steering without file", "/v1/chat/completions", chat(`,"steering":{"global":1}`), 400, "steering.file", "required"},
		{"steering not an object", "/v1/chat/completions", chat(`,"steering":"tone"`), 400, "steering", "object"},
		{"unknown steering field", "/v1/chat/completions", chat(`,"steering":{"file":"tone","strenght":{}}`), 400, "steering.strenght", `unknown field "strenght" in steering (known fields: file, global, strength)`},
		{"unknown attribute", "/v1/chat/completions", chat(`,"steering":{"file":"tone","strength":{"toxicity":1}}`), 400, "steering.strength.toxicity", `no attribute "toxicity" (it has tone, style)`},
		{"NaN strength", "/v1/chat/completions", chat(`,"steering":{"file":"tone","strength":{"tone":"NaN"}}`), 400, "steering.strength.tone", "must be a number"},
		{"Infinity global", "/v1/chat/completions", chat(`,"steering":{"file":"tone","global":"Infinity"}`), 400, "steering.global", "must be a number"},
		{"negative strength", "/v1/chat/completions", chat(`,"steering":{"file":"tone","strength":{"style":-1}}`), 400, "steering.strength.style", "out of range"},
		{"huge strength", "/v1/chat/completions", chat(`,"steering":{"file":"tone","strength":{"style":1e300}}`), 400, "steering.strength.style", "out of range"},
		{"overflowing strength", "/v1/chat/completions", chat(`,"steering":{"file":"tone","strength":{"style":1e400}}`), 400, "steering.strength.style", "finite"},
		{"huge global", "/v1/completions", `{"prompt":"a","steering":{"file":"tone","global":1001}}`, 400, "steering.global", "out of range"},
		{"null strength", "/v1/completions", `{"prompt":"a","steering":{"file":"tone","strength":{"tone":null}}}`, 400, "steering.strength.tone", "must be a number"},
		// Routing.
		{"wrong method", "/v1/chat/completions", "", 405, "", "not supported"},
		{"unknown endpoint", "/v1/embeddings", `{}`, 404, "", "unknown endpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := http.MethodPost
			if c.status == 405 {
				method = http.MethodGet
			}
			status, v := f.do(method, c.path, c.body)
			msg, _, param := errorOf(t, v)
			if status != c.status || param != c.param || !strings.Contains(msg, c.contains) {
				t.Errorf("got %d param %q message %q; want %d param %q message containing %q", status, param, msg, c.status, c.param, c.contains)
			}
		})
	}
	// The openai client sees the message and the field.
	_, err := f.client.Chat.Completions.New(context.Background(), chatParams("hi", 2), steerOpt("tone", 1, map[string]float64{"toxicity": 1}))
	var apiErr *openai.Error
	if !errorsAs(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "steering.strength.toxicity" ||
		apiErr.Type != "invalid_request_error" || !strings.Contains(apiErr.Message, "toxicity") {
		t.Fatalf("openai client error: %v %+v", err, apiErr)
	}
	// Still serving, with the same answers.
	resp, err := f.client.Chat.Completions.New(context.Background(), chatParams("Hello there", 8))
	if err != nil || resp.Choices[0].Message.Content != f.reference(f.chatTokens("Hello there"), 8, nil) {
		t.Fatalf("after bad requests: %v", err)
	}
	if st := f.srv.Stats(); st.SlotsBusy != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAPIKey(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.APIKey = "sekrit" }})
	_, err := f.client.Chat.Completions.New(context.Background(), chatParams("hi", 2))
	var apiErr *openai.Error
	if !errorsAs(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Fatalf("wrong key: %v", err)
	}
	c := openai.NewClient(option.WithBaseURL(f.ts.URL+"/v1/"), option.WithAPIKey("sekrit"), option.WithMaxRetries(0))
	if _, err := c.Chat.Completions.New(context.Background(), chatParams("hi", 2)); err != nil {
		t.Fatal(err)
	}
	if status, _ := f.do("GET", "/health", ""); status != 200 {
		t.Fatalf("health needs no key, got %d", status)
	}
}

func TestSteeringManagement(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	status, v := f.do("GET", "/v1/steering", "")
	data, _ := v["data"].([]any)
	if status != 200 || len(data) != 1 || data[0].(map[string]any)["name"] != "tone" {
		t.Fatalf("list: %d %v", status, v)
	}
	item := data[0].(map[string]any)
	if item["site"] != "l_out" || item["layer"] != 2.0 || len(item["attributes"].([]any)) != 2 {
		t.Fatalf("item %v", item)
	}

	// Load a second file at run time, under a new name (paths are relative
	// to the steering directory, f.dir).
	body := `{"name":"t2","path":"tone.gguf"}`
	if status, v := f.post("/v1/steering", body); status != 201 || v["name"] != "t2" {
		t.Fatalf("load: %d %v", status, v)
	}
	if status, v := f.post("/v1/steering", body); status != 409 {
		t.Fatalf("load twice: %d %v", status, v)
	}
	if status, v := f.post("/v1/steering", `{"name":"t2","path":"tone.gguf","replace":true}`); status != 201 {
		t.Fatalf("replace: %d %v", status, v)
	}
	// Bad loads: each a 4xx naming the problem.
	wide := testSteerFile(32, 2)
	widePath := filepath.Join(f.dir, "wide.gguf")
	deep := testSteerFile(f.m.NEmbd(), 40)
	deepPath := filepath.Join(f.dir, "deep.gguf")
	if err := wide.WriteFile(widePath); err != nil {
		t.Fatal(err)
	}
	if err := deep.WriteFile(deepPath); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(f.dir, "junk.gguf")
	if err := os.WriteFile(junk, []byte("not gguf"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ body, param, contains string }{
		{fmt.Sprintf(`{"name":"w","path":%q}`, filepath.Base(widePath)), "path", "n_embd"},
		{fmt.Sprintf(`{"name":"d","path":%q}`, filepath.Base(deepPath)), "path", "layer"},
		{fmt.Sprintf(`{"name":"j","path":%q}`, filepath.Base(junk)), "path", "not a valid matsteer steering file"},
		{`{"name":"x","path":"does/not/exist.gguf"}`, "path", "no loadable steering file"},
		{`{"name":"bad name!","path":"tone.gguf"}`, "name", "letters"},
		{`{"name":"x"}`, "path", "required"},
		{`{"name":"x","path":"a","extra":1}`, "extra", `unknown field "extra" in the request body (known fields: name, path, replace)`},
	} {
		status, v := f.post("/v1/steering", c.body)
		msg, _, param := errorOf(t, v)
		if status != 400 || param != c.param || !strings.Contains(msg, c.contains) {
			t.Errorf("%s: %d %q %q", c.body, status, param, msg)
		}
	}

	// In-flight requests keep the file they started with.
	prompt := f.chatTokens("Keep going")
	want := f.reference(prompt, 300, applyOpts(2, nil))
	s := f.client.Chat.Completions.NewStreaming(context.Background(), chatParams("Keep going", 300), steerOpt("t2", 2, nil))
	defer s.Close()
	var b strings.Builder
	if !s.Next() {
		t.Fatal(s.Err())
	}
	if status, v := f.do("DELETE", "/v1/steering/t2", ""); status != 200 || v["deleted"] != true {
		t.Fatalf("delete: %d %v", status, v)
	}
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) > 0 {
			b.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Errorf("in-flight request after unloading: %q, want %q", b.String(), want)
	}
	// New requests no longer find it.
	status, v = f.post("/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"steering":{"file":"t2"}}`)
	if msg, _, param := errorOf(t, v); status != 400 || param != "steering.file" || !strings.Contains(msg, "t2") {
		t.Fatalf("after unload: %d %v", status, v)
	}
	if status, v := f.do("DELETE", "/v1/steering/t2", ""); status != 404 {
		t.Fatalf("delete twice: %d %v", status, v)
	}
	if status, v := f.do("GET", "/v1/steering/tone", ""); status != 200 || v["name"] != "tone" {
		t.Fatalf("get: %d %v", status, v)
	}
}

func TestSteeringDirAndReadOnly(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.SteerDir = dir }})
	// Without a steering directory, runtime loads and unloads are off.
	off := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.SteerDir = "" }})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/steering", fmt.Sprintf(`{"name":"x","path":%q}`, off.steerPath)},
		{"POST", "/v1/steering", `{"name":"x","path":"/dev/zero"}`},
		{"DELETE", "/v1/steering/tone", ""},
	} {
		status, v := off.do(c.method, c.path, c.body)
		if msg, _, _ := errorOf(t, v); status != 403 || !strings.Contains(msg, "--steer-dir") {
			t.Errorf("no steering directory: %s %s: %d %v", c.method, c.body, status, v)
		}
	}
	if err := f.file.WriteFile(filepath.Join(dir, "ok.gguf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.steerPath, filepath.Join(dir, "escape.gguf")); err != nil {
		t.Fatal(err)
	}
	if status, v := f.post("/v1/steering", `{"name":"ok","path":"ok.gguf"}`); status != 201 {
		t.Fatalf("inside: %d %v", status, v)
	}
	for _, p := range []string{f.steerPath, "../tone.gguf", "escape.gguf", "missing.gguf"} {
		status, v := f.post("/v1/steering", fmt.Sprintf(`{"name":"x","path":%q}`, p))
		if _, _, param := errorOf(t, v); status != 400 || param != "path" {
			t.Errorf("%s: %d %v", p, status, v)
		}
	}
	ro := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.ReadOnlySteering = true }})
	if status, _ := ro.post("/v1/steering", fmt.Sprintf(`{"name":"x","path":%q}`, ro.steerPath)); status != 403 {
		t.Errorf("read-only load: %d", status)
	}
	if status, _ := ro.do("DELETE", "/v1/steering/tone", ""); status != 403 {
		t.Errorf("read-only delete: %d", status)
	}
}

func TestAuditLog(t *testing.T) {
	var log syncBuffer
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.AuditLog = &log }})
	ctx := context.Background()
	if _, err := f.client.Chat.Completions.New(ctx, chatParams("unsteered", 4)); err != nil {
		t.Fatal(err)
	}
	if log.String() != "" {
		t.Fatalf("unsteered request audited: %q", log.String())
	}
	resp, err := f.client.Chat.Completions.New(ctx, chatParams("Hello there", 6), steerOpt("tone", 1, map[string]float64{"style": 0.5}))
	if err != nil {
		t.Fatal(err)
	}
	nPrompt := int(resp.Usage.PromptTokens)
	sc := bufio.NewScanner(strings.NewReader(log.String()))
	special := intervene.SpecialTokensOf(f.m)
	n, generated, skipped := 0, 0, 0
	for sc.Scan() {
		var line struct {
			RequestID string             `json:"request_id"`
			File      string             `json:"file"`
			Pos       int                `json:"pos"`
			Token     int                `json:"token"`
			Text      *string            `json:"text"`
			Generated bool               `json:"generated"`
			Gates     map[string]float64 `json:"gates"`
			Delta     float64            `json:"delta"`
			Skipped   bool               `json:"skipped"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %d: %v: %s", n, err, sc.Text())
		}
		if line.RequestID != resp.ID || line.File != "tone" || line.Pos != n || line.Text == nil || line.Generated != (n >= nPrompt) {
			t.Fatalf("line %d: %s (response id %s, %d prompt tokens)", n, sc.Text(), resp.ID, nPrompt)
		}
		g := line.Gates["tone"]
		if special.IsControl(llama.Token(line.Token)) && !line.Skipped {
			t.Fatalf("line %d: control token %d steered: %s", n, line.Token, sc.Text())
		}
		if line.Skipped {
			// A control token: never steered, so no gate and no change.
			if len(line.Gates) != 2 || line.Gates["style"] != 0 || g != 0 || line.Delta != 0 {
				t.Fatalf("line %d skipped but steered: %s", n, sc.Text())
			}
			skipped++
		} else if len(line.Gates) != 2 || line.Gates["style"] != 1 || g <= 0 || g >= 1 || line.Delta <= 0 {
			t.Fatalf("line %d gates: %s", n, sc.Text())
		}
		if line.Generated {
			generated++
		}
		n++
	}
	// Every prompt row and every generated token but the last is decoded.
	if n != nPrompt+5 || generated != 5 {
		t.Fatalf("%d audit lines (%d generated) for %d prompt + 6 generated tokens", n, generated, nPrompt)
	}
	// The chat prompt starts with BOS, which steering leaves alone.
	if skipped == 0 || skipped >= nPrompt {
		t.Fatalf("%d of %d prompt rows skipped, want the special ones only", skipped, nPrompt)
	}
}

// TestGracefulShutdown serves on a real listener: cancelling Serve's context
// lets a running request finish, refuses new connections and returns nil.
func TestGracefulShutdown(t *testing.T) {
	f := newFixture(t, fixtureOpts{modelCtx: 4096, cfg: func(c *Config) { c.Parallel = 1 }})
	for _, grace := range []time.Duration{time.Minute, 50 * time.Millisecond} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.srv.Serve(ctx, ln, grace) }()
		c := openai.NewClient(option.WithBaseURL("http://"+ln.Addr().String()+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0))
		n := int64(60)
		if grace < time.Second {
			n = 4000 // cannot finish within the grace period
		}
		s := c.Completions.NewStreaming(context.Background(), completionParams("Shut down", n))
		if !s.Next() {
			t.Fatal(s.Err())
		}
		cancelledBefore := f.srv.Stats().Cancelled
		stop()
		chunks, finish := 1, ""
		for s.Next() {
			chunks++
			if ch := s.Current(); len(ch.Choices) > 0 && ch.Choices[0].FinishReason != "" {
				finish = string(ch.Choices[0].FinishReason)
			}
		}
		err = s.Err()
		s.Close()
		if serr := <-done; serr != nil {
			t.Fatalf("grace %v: Serve returned %v", grace, serr)
		}
		if grace > time.Second {
			if err != nil || finish != "length" {
				t.Fatalf("running request cut by a graceful shutdown: %d chunks, finish %q, %v", chunks, finish, err)
			}
		} else if f.srv.Stats().Cancelled != cancelledBefore+1 {
			t.Fatalf("grace over: generation not cancelled: %+v (%d chunks)", f.srv.Stats(), chunks)
		}
		if _, err := http.Get("http://" + ln.Addr().String() + "/health"); err == nil {
			t.Fatal("still accepting connections after shutdown")
		}
		if st := f.srv.Stats(); st.SlotsBusy != 0 {
			t.Fatalf("stats %+v", st)
		}
	}
}

// TestMemoryBounded runs many requests (steered, streamed, cancelled) and
// checks that Go heap, goroutines and process RSS settle.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.AuditLog = discard{} }})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	round := func(n int) {
		for i := 0; i < n; i++ {
			var opts []option.RequestOption
			if i%2 == 0 {
				opts = append(opts, steerOpt("tone", rng.Float64()*3, nil))
			}
			switch i % 3 {
			case 0:
				if _, err := f.client.Chat.Completions.New(ctx, chatParams("memory "+strconv.Itoa(i), 8), opts...); err != nil {
					t.Fatal(err)
				}
			case 1:
				if _, _, _, err := streamChat(ctx, f.client, chatParams("stream", 8), opts...); err != nil {
					t.Fatal(err)
				}
			default:
				cctx, cancel := context.WithCancel(ctx)
				s := f.client.Chat.Completions.NewStreaming(cctx, chatParams("cancel", 200), opts...)
				s.Next()
				cancel()
				s.Close()
			}
		}
	}
	round(30)
	waitFor(t, "idle slots", 5*time.Second, func() bool { return f.srv.Stats().SlotsBusy == 0 })
	f.ts.CloseClientConnections()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	g0, rss0 := runtime.NumGoroutine(), rss(t)
	round(150)
	waitFor(t, "idle slots", 5*time.Second, func() bool { return f.srv.Stats().SlotsBusy == 0 })
	f.ts.CloseClientConnections()
	waitFor(t, "goroutines to settle", 5*time.Second, func() bool { return runtime.NumGoroutine() <= g0+2 })
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	rssGrowth := rss(t) - rss0
	t.Logf("150 requests: heap in use %+d KiB, RSS %+d KiB, goroutines %d -> %d", growth>>10, rssGrowth>>10, g0, runtime.NumGoroutine())
	if growth > 4<<20 {
		t.Errorf("Go heap grew by %d KiB over 150 requests", growth>>10)
	}
	if rssGrowth > 32<<20 {
		t.Errorf("RSS grew by %d KiB over 150 requests", rssGrowth>>10)
	}
}

// discard is an audit sink that keeps nothing.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// rss is the process's resident set size in bytes (0 where /proc is missing).
func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
