package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

func chatParams(user string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:       "random-test",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(user)},
		MaxTokens:   openai.Int(maxTokens),
		Temperature: openai.Float(0),
	}
}

func completionParams(prompt string, maxTokens int64) openai.CompletionNewParams {
	return openai.CompletionNewParams{
		Model:       "random-test",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		MaxTokens:   openai.Int(maxTokens),
		Temperature: openai.Float(0),
	}
}

// streamChat collects a streamed chat completion: the text, the finish
// reason and the usage chunk.
func streamChat(ctx context.Context, c openai.Client, p openai.ChatCompletionNewParams, opts ...option.RequestOption) (string, string, *openai.CompletionUsage, error) {
	s := c.Chat.Completions.NewStreaming(ctx, p, opts...)
	defer s.Close()
	var b strings.Builder
	finish := ""
	var usage *openai.CompletionUsage
	for s.Next() {
		ch := s.Current()
		if len(ch.Choices) > 0 {
			b.WriteString(ch.Choices[0].Delta.Content)
			if ch.Choices[0].FinishReason != "" {
				finish = ch.Choices[0].FinishReason
			}
		}
		if ch.Usage.TotalTokens > 0 {
			u := ch.Usage
			usage = &u
		}
	}
	return b.String(), finish, usage, s.Err()
}

func TestChatCompletion(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	prompt := f.chatTokens("Hello there")
	want := f.reference(prompt, 12, nil)

	resp, err := f.client.Chat.Completions.New(ctx, chatParams("Hello there", 12))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("%d choices", len(resp.Choices))
	}
	ch := resp.Choices[0]
	if ch.Message.Content != want {
		t.Errorf("unsteered content differs from plain llama.cpp generation:\n got %q\nwant %q", ch.Message.Content, want)
	}
	if ch.Message.Role != "assistant" || ch.FinishReason != "length" {
		t.Errorf("role %q finish %q, want assistant/length", ch.Message.Role, ch.FinishReason)
	}
	if resp.Usage.PromptTokens != int64(len(prompt)) || resp.Usage.CompletionTokens != 12 || resp.Usage.TotalTokens != int64(len(prompt))+12 {
		t.Errorf("usage %+v, want prompt %d completion 12", resp.Usage, len(prompt))
	}
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Model != "random-test" || resp.Object != "chat.completion" {
		t.Errorf("id %q model %q object %q", resp.ID, resp.Model, resp.Object)
	}

	// Streaming gives the same text, the finish reason and usage.
	p := chatParams("Hello there", 12)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	text, finish, usage, err := streamChat(ctx, f.client, p)
	if err != nil {
		t.Fatal(err)
	}
	if text != want || finish != "length" {
		t.Errorf("stream: %q finish %q, want %q length", text, finish, want)
	}
	if usage == nil || usage.CompletionTokens != 12 || usage.PromptTokens != int64(len(prompt)) {
		t.Errorf("stream usage %+v", usage)
	}
}

func TestCompletion(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	toks, err := f.m.Tokenize("The quick brown fox", true, true)
	if err != nil {
		t.Fatal(err)
	}
	want := f.reference(toks, 10, nil)
	resp, err := f.client.Completions.New(ctx, completionParams("The quick brown fox", 10))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Text != want || resp.Choices[0].FinishReason != "length" || resp.Object != "text_completion" {
		t.Errorf("got %q (%s, %s), want %q (length)", resp.Choices[0].Text, resp.Choices[0].FinishReason, resp.Object, want)
	}
	if resp.Usage.PromptTokens != int64(len(toks)) || resp.Usage.CompletionTokens != 10 {
		t.Errorf("usage %+v", resp.Usage)
	}
	// Streaming.
	p := completionParams("The quick brown fox", 10)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := f.client.Completions.NewStreaming(ctx, p)
	var b strings.Builder
	finish := ""
	var usage int64
	for s.Next() {
		c := s.Current()
		for _, ch := range c.Choices {
			b.WriteString(ch.Text)
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
		usage += c.Usage.CompletionTokens
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if b.String() != want || finish != "length" || usage != 10 {
		t.Errorf("stream %q finish %q usage %d, want %q length 10", b.String(), finish, usage, want)
	}
	// Token-id prompts are accepted too.
	ids := make([]int64, len(toks))
	for i, tk := range toks {
		ids[i] = int64(tk)
	}
	p = completionParams("", 10)
	p.Prompt = openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: ids}
	resp, err = f.client.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Text != want {
		t.Errorf("token prompt: %q, want %q", resp.Choices[0].Text, want)
	}
}

func TestModelsAndHealth(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	page, err := f.client.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != "random-test" {
		t.Fatalf("models %+v", page.Data)
	}
	m, err := f.client.Models.Get(context.Background(), "random-test")
	if err != nil || m.ID != "random-test" {
		t.Fatalf("get model: %v %+v", err, m)
	}
	status, v := f.do("GET", "/health", "")
	if status != 200 || v["status"] != "ok" || v["slots"].(float64) != 2 {
		t.Fatalf("health %d %v", status, v)
	}
}

func TestSteeringChangesOutputAndMatchesDirectSteering(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	prompt := f.chatTokens("Tell me a story")
	plain := f.reference(prompt, 16, nil)
	cases := []struct {
		global   float64
		strength map[string]float64
	}{
		{1, nil},
		{2, map[string]float64{"tone": 1.5, "style": 0}},
		{0.5, map[string]float64{"tone": 0}},
	}
	for _, c := range cases {
		want := f.reference(prompt, 16, applyOpts(c.global, c.strength))
		resp, err := f.client.Chat.Completions.New(ctx, chatParams("Tell me a story", 16), steerOpt("tone", c.global, c.strength))
		if err != nil {
			t.Fatal(err)
		}
		got := resp.Choices[0].Message.Content
		if got != want {
			t.Errorf("global %v strength %v: server %q, direct steering %q", c.global, c.strength, got, want)
		}
		if got == plain {
			t.Errorf("global %v strength %v: steering did not change the output %q", c.global, c.strength, got)
		}
		// Streaming agrees.
		text, _, _, err := streamChat(ctx, f.client, chatParams("Tell me a story", 16), steerOpt("tone", c.global, c.strength))
		if err != nil || text != got {
			t.Errorf("stream %q (%v), non-stream %q", text, err, got)
		}
	}
	// Zero strengths are exactly unsteered.
	resp, err := f.client.Chat.Completions.New(ctx, chatParams("Tell me a story", 16), steerOpt("tone", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != plain {
		t.Errorf("global 0: %q, unsteered %q", resp.Choices[0].Message.Content, plain)
	}
	// The steering a request ran with is echoed in the raw response.
	status, v := f.post("/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"temperature":0,"steering":{"file":"tone","strength":{"style":0.25}}}`)
	echo, _ := v["steering"].(map[string]any)
	if status != 200 || echo == nil || echo["file"] != "tone" || echo["global"] != 1.0 ||
		echo["strength"].(map[string]any)["style"] != 0.25 || echo["strength"].(map[string]any)["tone"] != 1.0 {
		t.Errorf("steering echo: %d %v", status, v)
	}
}

func TestStopSequences(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	prompt := f.chatTokens("Hello there")
	full := f.reference(prompt, 40, nil)
	// Stop at a piece of the text that lies well inside it.
	runes := []rune(full)
	if len(runes) < 12 {
		t.Skipf("reference output too short: %q", full)
	}
	stop := string(runes[8:11])
	cut := full[:strings.Index(full, stop)]
	p := chatParams("Hello there", 40)
	p.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"\x00never", stop}}
	resp, err := f.client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != cut || resp.Choices[0].FinishReason != "stop" {
		t.Errorf("stop %q: got %q (%s), want %q (stop)", stop, resp.Choices[0].Message.Content, resp.Choices[0].FinishReason, cut)
	}
	text, finish, _, err := streamChat(ctx, f.client, p)
	if err != nil || text != cut || finish != "stop" {
		t.Errorf("stream with stop: %q %q %v, want %q", text, finish, err, cut)
	}
}

// TestConcurrentIsolation sends sixteen requests with different steering
// at once to four slots; each must get exactly the output it gets alone.
func TestConcurrentIsolation(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.Parallel = 4 }})
	// A second file at another layer: requests with different files, at
	// different layers, share the engine's batches.
	early := filepath.Join(f.dir, "early.gguf")
	if err := testSteerFile(f.m.NEmbd(), 1).WriteFile(early); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.LoadSteering("early", early, false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	type req struct {
		user     string
		chat     bool
		stream   bool
		steered  bool
		file     string
		global   float64
		strength map[string]float64
	}
	var reqs []req
	globals := []float64{0.5, 1, 2, 3}
	for i := 0; i < 16; i++ {
		r := req{user: fmt.Sprintf("Request %d: say something", i%3), chat: i%4 != 3, stream: i%2 == 1, steered: i%4 != 0}
		if r.steered {
			r.file = []string{"tone", "early"}[i%2]
			r.global = globals[i%4]
			r.strength = map[string]float64{"tone": float64(i%3) * 0.75, "style": float64(i%5) * 0.5}
		}
		reqs = append(reqs, r)
	}
	send := func(r req) (string, error) {
		var opts []option.RequestOption
		if r.steered {
			opts = append(opts, steerOpt(r.file, r.global, r.strength))
		}
		switch {
		case r.chat && r.stream:
			text, _, _, err := streamChat(ctx, f.client, chatParams(r.user, 20), opts...)
			return text, err
		case r.chat:
			resp, err := f.client.Chat.Completions.New(ctx, chatParams(r.user, 20), opts...)
			if err != nil {
				return "", err
			}
			return resp.Choices[0].Message.Content, nil
		default:
			resp, err := f.client.Completions.New(ctx, completionParams(r.user, 20), opts...)
			if err != nil {
				return "", err
			}
			return resp.Choices[0].Text, nil
		}
	}
	alone := make([]string, len(reqs))
	distinct := map[string]bool{}
	for i, r := range reqs {
		var err error
		if alone[i], err = send(r); err != nil {
			t.Fatal(err)
		}
		distinct[alone[i]] = true
	}
	if len(distinct) < 8 {
		t.Fatalf("only %d distinct outputs for 16 settings: the test would not see leaks between requests", len(distinct))
	}
	got := make([]string, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], errs[i] = send(r)
		}()
	}
	close(start)
	wg.Wait()
	for i := range reqs {
		if errs[i] != nil {
			t.Errorf("request %d: %v", i, errs[i])
		} else if got[i] != alone[i] {
			t.Errorf("request %d (%+v): concurrent output %q differs from alone %q", i, reqs[i], got[i], alone[i])
		}
	}
	if st := f.srv.Stats(); st.SlotsBusy != 0 || st.Queued != 0 || st.Completed != 32 {
		t.Errorf("stats after the run: %+v", st)
	}
}

// TestClientDisconnectCancels checks that a client that goes away stops its
// generation and frees its slot, both while generating and while queued.
func TestClientDisconnectCancels(t *testing.T) {
	f := newFixture(t, fixtureOpts{modelCtx: 4096, cfg: func(c *Config) { c.Parallel = 1 }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := completionParams("Once upon a time", 4000)
	s := f.client.Completions.NewStreaming(ctx, p)
	if !s.Next() {
		t.Fatalf("no first chunk: %v", s.Err())
	}
	if f.srv.Stats().SlotsBusy != 1 {
		t.Fatalf("stats while generating: %+v", f.srv.Stats())
	}
	// A second request waits in the queue; its client gives up too.
	qctx, qcancel := context.WithCancel(context.Background())
	qdone := make(chan error, 1)
	go func() {
		_, err := f.client.Completions.New(qctx, completionParams("queued", 4))
		qdone <- err
	}()
	waitFor(t, "the second request to queue", 5e9, func() bool { return f.srv.Stats().Queued == 1 })
	qcancel()
	if err := <-qdone; !errors.Is(err, context.Canceled) {
		t.Errorf("queued request: %v", err)
	}
	waitFor(t, "the queued request to leave", 5e9, func() bool { return f.srv.Stats().Queued == 0 })

	cancel()
	s.Close()
	waitFor(t, "the slot to be freed", 5e9, func() bool {
		st := f.srv.Stats()
		return st.SlotsBusy == 0 && st.Cancelled == 2
	})
	if st := f.srv.Stats(); st.Completed != 0 {
		t.Fatalf("the long generation completed instead of being cancelled: %+v", st)
	}
	// The server keeps serving.
	if _, err := f.client.Completions.New(context.Background(), completionParams("after", 4)); err != nil {
		t.Fatal(err)
	}
}

func TestQueueFull(t *testing.T) {
	f := newFixture(t, fixtureOpts{modelCtx: 4096, cfg: func(c *Config) { c.Parallel = 1; c.QueueSize = 1 }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.client.Completions.NewStreaming(ctx, completionParams("long", 4000))
	defer s.Close()
	if !s.Next() {
		t.Fatal(s.Err())
	}
	go func() { _, _ = f.client.Completions.New(ctx, completionParams("queued", 4)) }()
	waitFor(t, "the queue to fill", 5e9, func() bool { return f.srv.Stats().Queued == 1 })
	status, v := f.post("/v1/completions", `{"prompt":"x","max_tokens":2}`)
	msg, typ, _ := errorOf(t, v)
	if status != 503 || typ != "server_overloaded" || !strings.Contains(msg, "queue") {
		t.Fatalf("full queue: %d %v", status, v)
	}
	// The openai client sees it as a 503 API error.
	_, err := f.client.Completions.New(context.Background(), completionParams("x", 2))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
		t.Fatalf("openai client: %v", err)
	}
	if f.srv.Stats().Rejected != 2 {
		t.Errorf("stats %+v", f.srv.Stats())
	}
}

// TestStreamErrorEvent checks that an error after a stream started reaches
// the openai client as a stream error.
func TestStreamErrorEvent(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := newSSE(w)
		_ = e.start("chatcmpl-x")
		e.fail(fmt.Errorf("generation failed on slot 0: %w", errors.New("boom")))
	}))
	defer ts.Close()
	c := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0))
	_, _, _, err := streamChat(context.Background(), c, chatParams("hi", 2))
	var se *ssestream.StreamError
	if !errors.As(err, &se) || !strings.Contains(se.Message, "boom") || !strings.Contains(se.Message, "server_error") {
		t.Fatalf("stream error: %v", err)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// TestPromptCacheOverHTTP: a repeated prompt reports its cached tokens as
// OpenAI does and gives the same text; a steered request does not reuse
// the unsteered prefix, but reuses its own.
func TestPromptCacheOverHTTP(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.Parallel = 2 }})
	ctx := context.Background()
	system := strings.Repeat("You are a careful assistant who answers briefly. ", 4)
	ask := func(user string, opts ...option.RequestOption) (string, int64, int64) {
		t.Helper()
		p := chatParams(user, 12)
		p.Messages = append([]openai.ChatCompletionMessageParamUnion{openai.SystemMessage(system)}, p.Messages...)
		resp, err := f.client.Chat.Completions.New(ctx, p, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Choices[0].Message.Content, resp.Usage.PromptTokens, resp.Usage.PromptTokensDetails.CachedTokens
	}
	first, n, cached := ask("Name a colour.")
	if cached != 0 {
		t.Fatalf("first request: %d cached tokens", cached)
	}
	again, n2, cached := ask("Name a colour.")
	if again != first || n2 != n || cached != n-1 {
		t.Fatalf("repeat: %q vs %q, cached %d of %d", again, first, cached, n)
	}
	_, _, cached = ask("Name a fruit.")
	if cached < int64(len(f.chatTokens(system))/2) {
		t.Fatalf("same system prompt, other question: only %d cached tokens", cached)
	}
	steered, _, cached := ask("Name a colour.", steerOpt("tone", 2, nil))
	if cached != 0 {
		t.Fatalf("steered request reused %d unsteered tokens", cached)
	}
	want := f.reference(f.chatTokensWithSystem(system, "Name a colour."), 12, applyOpts(2, nil))
	if steered != want {
		t.Fatalf("steered: %q, alone %q", steered, want)
	}
	again, _, cached = ask("Name a colour.", steerOpt("tone", 2, nil))
	if again != steered || cached != n-1 {
		t.Fatalf("steered repeat: %q vs %q, cached %d", again, steered, cached)
	}
	if _, _, cached = ask("Name a colour.", steerOpt("tone", 1, nil)); cached != 0 {
		t.Fatalf("other strength reused %d tokens", cached)
	}
	if st := f.srv.Stats(); st.CachedTokens == 0 {
		t.Fatalf("stats: %+v", st)
	}
}
