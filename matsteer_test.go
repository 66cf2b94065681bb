package matsteer_test

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matsteer/matsteer"
	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// openTiny opens a tiny random model (cfg changed by edit, if set).
func openTiny(t *testing.T, opts matsteer.Options, edit func(*llama.RandomModelConfig)) *matsteer.Model {
	t.Helper()
	cfg := llama.DefaultRandomModelConfig()
	if edit != nil {
		edit(&cfg)
	}
	llm, err := llama.NewRandomModel(cfg, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Threads == 0 {
		opts.Threads = 2
	}
	if opts.NCtx == 0 {
		opts.NCtx = 256
	}
	m, err := matsteer.Wrap(llm, opts)
	if err != nil {
		llm.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); llm.Close() })
	return m
}

// trainTiny trains an ungated mean-difference file (it always changes the
// output) of attribute name at layer on m.
func trainTiny(t *testing.T, m *matsteer.Model, name string, layer int) *matsteer.Steering {
	t.Helper()
	return trainTinyOn(t, m, name, layer, " Lovely, thanks!", " awful.")
}

// trainTinyOn is trainTiny with the given positive and negative responses.
func trainTinyOn(t *testing.T, m *matsteer.Model, name string, layer int, pos, neg string) *matsteer.Steering {
	t.Helper()
	var ex []matsteer.Example
	for _, q := range []string{"How was the trip?", "How is the weather?", "How did it go?"} {
		ex = append(ex,
			matsteer.Example{Attribute: name, Positive: true, Prompt: "Q: " + q + "\nA:", Response: pos},
			matsteer.Example{Attribute: name, Positive: false, Prompt: "Q: " + q + "\nA:", Response: neg})
	}
	cfg := steer.DefaultTrainConfig()
	cfg.Method = steer.MethodMeanDiff
	s, err := m.Train(context.Background(), ex, matsteer.TrainOptions{Layer: layer, Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gen generates greedily, ignoring the end of generation.
func gen(t *testing.T, m *matsteer.Model, prompt string, st matsteer.Steer) string {
	t.Helper()
	text, res, err := m.GenerateText(context.Background(), prompt, matsteer.GenerateOptions{MaxTokens: 12,
		Sampler: llama.SamplerParams{IgnoreEOG: true}, Steer: st})
	if err != nil {
		t.Fatal(err)
	}
	if res.GeneratedTokens != 12 {
		t.Fatalf("generated %d tokens (%s), want 12", res.GeneratedTokens, res.StopReason)
	}
	return text
}

func TestSteeringChangesOnlyWhatItShould(t *testing.T) {
	m := openTiny(t, matsteer.Options{}, nil)
	a := trainTiny(t, m, "tone", 1)
	b := trainTinyOn(t, m, "style", 2, " 12345 67890", " ABCDE FGHIJ")
	const prompt = "Tell me a story."
	plain := gen(t, m, prompt, matsteer.Steer{})
	if got := gen(t, m, prompt, matsteer.Steer{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": 0}}); got != plain {
		t.Errorf("strength 0 changed the output: %q, unsteered %q", got, plain)
	}
	onlyA := gen(t, m, prompt, matsteer.Steer{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": 4}})
	onlyB := gen(t, m, prompt, matsteer.Steer{Files: []*matsteer.Steering{b}, Strengths: map[string]float64{"style": 4}})
	if onlyA == plain || onlyB == plain {
		t.Errorf("steering at strength 4 did not change the output %q: %q, %q", plain, onlyA, onlyB)
	}
	both := map[string]float64{"tone": 4, "style": 4}
	ab := gen(t, m, prompt, matsteer.Steer{Files: []*matsteer.Steering{a, b}, Strengths: both})
	ba := gen(t, m, prompt, matsteer.Steer{Files: []*matsteer.Steering{b, a}, Strengths: both})
	if ab != ba {
		t.Errorf("the order of the files matters: %q vs %q", ab, ba)
	}
	if ab == onlyA || ab == onlyB {
		t.Errorf("two files (layers 1 and 2) give %q, the same as one of them alone (%q, %q)", ab, onlyA, onlyB)
	}
	// The second file switched off: the same as the first alone.
	if got := gen(t, m, prompt, matsteer.Steer{Files: []*matsteer.Steering{b, a}, Strengths: map[string]float64{"tone": 4, "style": 0}}); got != onlyA {
		t.Errorf("file b at strength 0 changed the output: %q, file a alone %q", got, onlyA)
	}
	// α scales every attribute: α 8 on strength 0.5 is strength 4.
	if got := gen(t, m, prompt, matsteer.Steer{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": 0.5}, Global: 8}); got != onlyA {
		t.Errorf("α 8 × strength 0.5 gives %q, strength 4 gives %q", got, onlyA)
	}
}

func TestConcurrentCallersGetTheirSoloOutput(t *testing.T) {
	m := openTiny(t, matsteer.Options{Parallel: 3}, nil)
	a := trainTiny(t, m, "tone", 1)
	steers := []matsteer.Steer{
		{},
		{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": 4}},
		{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": 1}},
	}
	prompts := []string{"Once upon a time", "The weather today", "Dear friend"}
	want := map[[2]int]string{}
	for i := range steers {
		for j, p := range prompts {
			want[[2]int{i, j}] = gen(t, m, p, steers[i])
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[[2]int]string{}
	for i := range steers {
		for j, p := range prompts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				text, _, err := m.GenerateText(context.Background(), p, matsteer.GenerateOptions{MaxTokens: 12,
					Sampler: llama.SamplerParams{IgnoreEOG: true}, Steer: steers[i]})
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				got[[2]int{i, j}] = text
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("steering %d, prompt %d: concurrent %q, alone %q", k[0], k[1], got[k], w)
		}
	}
}

func TestErrors(t *testing.T) {
	m := openTiny(t, matsteer.Options{}, nil)
	a := trainTiny(t, m, "tone", 1)
	ctx := context.Background()

	_, err := matsteer.Open(filepath.Join(t.TempDir(), "missing.gguf"), matsteer.Options{})
	var nf *matsteer.ModelNotFoundError
	if !errors.Is(err, matsteer.ErrModelNotFound) || !errors.As(err, &nf) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing model: %v", err)
	}

	wide := openTiny(t, matsteer.Options{}, func(c *llama.RandomModelConfig) { c.NEmbd, c.NFF = 128, 256 })
	var we *matsteer.WidthError
	if err := wide.Check(a); !errors.Is(err, matsteer.ErrWrongWidth) || !errors.As(err, &we) || we.Got != 64 || we.Model != 128 {
		t.Errorf("wrong width: %v", err)
	}
	path := filepath.Join(t.TempDir(), "a.gguf")
	if err := a.Save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := wide.LoadSteering(path); !errors.Is(err, matsteer.ErrWrongWidth) {
		t.Errorf("LoadSteering of a file of another width: %v", err)
	}
	if _, _, err := wide.GenerateText(ctx, "Hi", matsteer.GenerateOptions{Steer: matsteer.Steer{Files: []*matsteer.Steering{a}}}); !errors.Is(err, matsteer.ErrWrongWidth) {
		t.Errorf("generating with a file of another width: %v", err)
	}

	var ae *matsteer.AttributeError
	_, _, err = m.GenerateText(ctx, "Hi", matsteer.GenerateOptions{Steer: matsteer.Steer{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": 1, "tnoe": 2}}})
	if !errors.Is(err, matsteer.ErrUnknownAttribute) || !errors.As(err, &ae) || len(ae.Names) != 1 || ae.Names[0] != "tnoe" || !strings.Contains(err.Error(), "tone") {
		t.Errorf("unknown attribute: %v", err)
	}
	if _, err := m.Score(ctx, "Hi", []string{" there"}, matsteer.Steer{Strengths: map[string]float64{"x": 1}}); !errors.Is(err, matsteer.ErrUnknownAttribute) {
		t.Errorf("Score with an unknown attribute: %v", err)
	}

	long := strings.Repeat("word ", 300) // byte-level vocabulary: 1,500 tokens
	var ce *matsteer.ContextError
	if _, _, err := m.GenerateText(ctx, long, matsteer.GenerateOptions{Raw: true}); !errors.Is(err, matsteer.ErrContextFull) || !errors.As(err, &ce) || ce.NCtx != 256 {
		t.Errorf("prompt longer than the context: %v", err)
	}
	if _, err := m.Score(ctx, "Hi", []string{long}, matsteer.Steer{}); !errors.Is(err, matsteer.ErrContextFull) {
		t.Errorf("continuation longer than the context: %v", err)
	}
}

func TestInputsAreChecked(t *testing.T) {
	m := openTiny(t, matsteer.Options{}, nil)
	a := trainTiny(t, m, "tone", 1)
	ctx := context.Background()
	for name, o := range map[string]matsteer.Options{
		"threads":   {Threads: -1},
		"ctx":       {NCtx: -5},
		"parallel":  {Parallel: 1000},
		"gpu":       {GPULayers: -2},
		"rpc":       {RPC: []string{"not an endpoint"}},
		"rpc port":  {RPC: []string{"127.0.0.1:0"}},
		"rpc twice": {RPC: []string{"127.0.0.1:50052", "127.0.0.1:50052"}},
	} {
		if _, err := matsteer.Open(filepath.Join(t.TempDir(), "missing.gguf"), o); err == nil || errors.Is(err, matsteer.ErrModelNotFound) {
			t.Errorf("Options %s: %v, want an options error before the model is looked for", name, err)
		}
	}
	bad := map[string]matsteer.GenerateOptions{
		"max tokens":   {MaxTokens: -1},
		"empty stop":   {Stop: []string{""}},
		"temperature":  {Sampler: llama.SamplerParams{Temperature: math.NaN()}},
		"NaN strength": {Steer: matsteer.Steer{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": math.NaN()}}},
		"neg strength": {Steer: matsteer.Steer{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": -1}}},
		"inf global":   {Steer: matsteer.Steer{Files: []*matsteer.Steering{a}, Global: math.Inf(1)}},
		"nil file":     {Steer: matsteer.Steer{Files: []*matsteer.Steering{nil}}},
		"same point":   {Steer: matsteer.Steer{Files: []*matsteer.Steering{a, a}}},
	}
	for name, o := range bad {
		if _, _, err := m.GenerateText(ctx, "Hi", o); err == nil {
			t.Errorf("GenerateOptions %s: no error", name)
		}
	}
	if _, err := m.Chat(ctx, []matsteer.Message{{Role: "robot", Content: "hi"}}, matsteer.GenerateOptions{}, func(string) error { return nil }); err == nil {
		t.Error("Chat accepted role robot")
	}
	ex := []matsteer.Example{{Attribute: "tone", Positive: true, Prompt: "a", Response: " b"}, {Attribute: "tone", Prompt: "a", Response: " c"}}
	for name, o := range map[string]matsteer.TrainOptions{
		"layer":  {Layer: 99},
		"site":   {Site: "no_such_site"},
		"tokens": {Tokens: "some"},
		"max":    {MaxTokens: -1},
		"method": {Config: &steer.TrainConfig{Method: "magic"}},
		"out":    {Out: filepath.Join(t.TempDir(), "no-dir", "x.gguf")},
	} {
		if _, err := m.Train(ctx, ex, o); err == nil {
			t.Errorf("TrainOptions %s: no error", name)
		}
	}
	if _, err := m.Train(ctx, ex[:1], matsteer.TrainOptions{}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("Train with positives only: %v", err)
	}
	if _, err := m.Train(ctx, []matsteer.Example{{Attribute: "bad name!", Positive: true, Prompt: "a"}}, matsteer.TrainOptions{}); err == nil {
		t.Error("Train accepted an invalid attribute name")
	}
}

func TestCancelAndClose(t *testing.T) {
	m := openTiny(t, matsteer.Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := m.Generate(ctx, "Hi", matsteer.GenerateOptions{Sampler: llama.SamplerParams{IgnoreEOG: true}}, func(string) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled generation: %v", err)
	}

	// Stop from the callback: a normal end.
	res, err := m.Generate(context.Background(), "Hi", matsteer.GenerateOptions{Sampler: llama.SamplerParams{IgnoreEOG: true}},
		func(string) error { return llama.ErrStop })
	if err != nil || res.StopReason != "callback" {
		t.Errorf("callback stop: %v, %+v", err, res)
	}
	// A callback error is returned as it is.
	errMine := errors.New("mine")
	if _, err := m.Generate(context.Background(), "Hi", matsteer.GenerateOptions{}, func(string) error { return errMine }); err != errMine {
		t.Errorf("callback error: %v", err)
	}

	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := m.Generate(context.Background(), "Hi", matsteer.GenerateOptions{Sampler: llama.SamplerParams{IgnoreEOG: true}}, func(string) error {
			select {
			case <-started:
			default:
				close(started)
			}
			return nil
		})
		done <- err
	}()
	<-started
	m.Close()
	select {
	case err := <-done:
		if !errors.Is(err, matsteer.ErrClosed) {
			t.Errorf("generation running at Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not end a running generation")
	}
	if _, _, err := m.GenerateText(context.Background(), "Hi", matsteer.GenerateOptions{}); !errors.Is(err, matsteer.ErrClosed) {
		t.Errorf("Generate after Close: %v", err)
	}
	if _, err := m.Score(context.Background(), "Hi", []string{" x"}, matsteer.Steer{}); !errors.Is(err, matsteer.ErrClosed) {
		t.Errorf("Score after Close: %v", err)
	}
}

func TestScoreSteering(t *testing.T) {
	m := openTiny(t, matsteer.Options{}, nil)
	a := trainTiny(t, m, "tone", 1)
	ctx := context.Background()
	conts := []string{" Lovely, thanks!", " awful."}
	plain, err := m.Score(ctx, "Q: How was it?\nA:", conts, matsteer.Steer{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Score(ctx, "Q: How was it?\nA:", conts, matsteer.Steer{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": 0}})
	if err != nil {
		t.Fatal(err)
	}
	steered, err := m.Score(ctx, "Q: How was it?\nA:", conts, matsteer.Steer{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": 20}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range conts {
		if plain[i].LogProb != again[i].LogProb {
			t.Errorf("continuation %d: strength 0 changed the score %v -> %v", i, plain[i].LogProb, again[i].LogProb)
		}
		if plain[i].LogProb == steered[i].LogProb {
			t.Errorf("continuation %d: steering did not change the score %v", i, plain[i].LogProb)
		}
		if !(plain[i].LogProb < 0) || len(plain[i].PerToken) == 0 || math.Abs(plain[i].Mean()*float64(len(plain[i].PerToken))-plain[i].LogProb) > 1e-9 {
			t.Errorf("continuation %d: score %+v", i, plain[i])
		}
	}
}

func TestSteeringFileRoundTrip(t *testing.T) {
	m := openTiny(t, matsteer.Options{}, nil)
	a := trainTiny(t, m, "tone", 1)
	path := filepath.Join(t.TempDir(), "a.gguf")
	if err := a.Save(path); err != nil {
		t.Fatal(err)
	}
	b, err := m.LoadSteering(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.Site() != "l_out" || b.Layer() != 1 || b.NEmbd() != 64 || b.Method() != steer.MethodMeanDiff || strings.Join(b.Attributes(), ",") != "tone" {
		t.Errorf("loaded file: %s-%d, %d wide, %s, %v", b.Site(), b.Layer(), b.NEmbd(), b.Method(), b.Attributes())
	}
	// File returns a copy: changing it does not change the Steering.
	f := b.File()
	f.Attributes[0].Theta[0] += 1000
	if b.File().Attributes[0].Theta[0] == f.Attributes[0].Theta[0] {
		t.Error("File's copy shares memory with the Steering")
	}
	st := matsteer.Steer{Files: []*matsteer.Steering{a}, Strengths: map[string]float64{"tone": 4}}
	st2 := matsteer.Steer{Files: []*matsteer.Steering{b}, Strengths: map[string]float64{"tone": 4}}
	if x, y := gen(t, m, "Hello", st), gen(t, m, "Hello", st2); x != y {
		t.Errorf("saved and loaded file steers differently: %q vs %q", x, y)
	}
}

// TestQuickStart runs the package Example (the quick start of the package
// doc and README.md) on the default model.
func TestQuickStart(t *testing.T) {
	testenv.DefaultModel(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	func() {
		defer func() { os.Stdout = stdout; w.Close() }()
		Example()
	}()
	text := <-out
	if len(strings.Fields(text)) < 5 {
		t.Errorf("the quick start printed %q, want a steered completion", text)
	}
	t.Logf("quick start output: %s", text)
}

// exampleBody returns the body of func Example in example_test.go, without
// its leading tab.
func exampleBody(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\nfunc Example\(\) \{\n(.*?)\n\}\n`).FindSubmatch(src)
	if m == nil {
		t.Fatal("no func Example() in example_test.go")
	}
	var lines []string
	for _, l := range strings.Split(string(m[1]), "\n") {
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	return lines
}

// TestQuickStartDocs checks that README.md and the package doc show the
// quick start exactly as the Example that go test compiles.
func TestQuickStartDocs(t *testing.T) {
	body := exampleBody(t)
	if n := len(body); n < 8 || n > 20 {
		t.Errorf("the quick start is %d lines; keep it short", n)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := "```go\n" + strings.Join(body, "\n") + "\n```"; !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not show the quick start of func Example in example_test.go; want this block in it:\n%s", want)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range body {
		if l == "" {
			b.WriteString("//\n")
		} else {
			b.WriteString("//\t" + l + "\n")
		}
	}
	if !strings.Contains(string(doc), b.String()) {
		t.Errorf("doc.go does not show the quick start of func Example; want:\n%s", b.String())
	}
}

// TestDefaultModelText checks text handling on the default model: stop
// strings, the iterator and a multi-turn chat.
func TestDefaultModelText(t *testing.T) {
	path := testenv.DefaultModel(t)
	m, err := matsteer.Open(path, matsteer.Options{Threads: 2, NCtx: 512, Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	opts := matsteer.GenerateOptions{MaxTokens: 30}
	full, res, err := m.GenerateText(ctx, "Name three colours.", opts)
	if err != nil {
		t.Fatal(err)
	}
	words := strings.Fields(full)
	if len(words) < 6 || res.GeneratedTokens == 0 {
		t.Fatalf("generated %q (%+v)", full, res)
	}
	stop := " " + words[len(words)/2]
	opts.Stop = []string{stop}
	cut, res, err := m.GenerateText(ctx, "Name three colours.", opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := full[:strings.Index(full, stop)]; cut != want || res.StopReason != "stop" {
		t.Errorf("with stop %q: %q (%s), want %q", stop, cut, res.StopReason, want)
	}
	if res.CachedTokens == 0 {
		t.Errorf("the same prompt again reused no cached tokens: %+v", res)
	}

	var streamed strings.Builder
	for piece, err := range m.Stream(ctx, "Name three colours.", matsteer.GenerateOptions{MaxTokens: 30}) {
		if err != nil {
			t.Fatal(err)
		}
		streamed.WriteString(piece)
	}
	if streamed.String() != full {
		t.Errorf("Stream gave %q, GenerateText %q", streamed.String(), full)
	}

	var reply strings.Builder
	msgs := []matsteer.Message{{Role: "user", Content: "My name is Ada."}, {Role: "assistant", Content: "Nice to meet you, Ada!"},
		{Role: "user", Content: "What is my name?"}}
	if _, err := m.Chat(ctx, msgs, matsteer.GenerateOptions{MaxTokens: 20}, func(s string) error { reply.WriteString(s); return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(reply.String(), "Ada") {
		t.Errorf("the chat reply %q does not use the earlier turns", reply.String())
	}
}

func TestExtractAndTrainActivations(t *testing.T) {
	m := openTiny(t, matsteer.Options{}, nil)
	ctx := context.Background()
	var ex []matsteer.Example
	for _, q := range []string{"How was it?", "And then?"} {
		ex = append(ex, matsteer.Example{Attribute: "tone", Positive: true, Prompt: q, Response: " Great!"},
			matsteer.Example{Attribute: "tone", Prompt: q, Response: " Bad."})
	}
	dir := t.TempDir()
	p1, p2, out := filepath.Join(dir, "l1.safetensors"), filepath.Join(dir, "l2.safetensors"), filepath.Join(dir, "s.gguf")
	if err := m.Extract(ctx, ex, p1, matsteer.TrainOptions{Layer: 1}); err != nil {
		t.Fatal(err)
	}
	if err := m.Extract(ctx, ex, p2, matsteer.TrainOptions{Layer: 2, Tokens: "response"}); err != nil {
		t.Fatal(err)
	}
	if _, err := matsteer.TrainActivations(ctx, []string{p1, p2}, matsteer.TrainOptions{}); err == nil || !strings.Contains(err.Error(), "different") {
		t.Errorf("training on activations of two layers: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed training left %s: %v", out, err)
	}
	s, err := matsteer.TrainActivations(ctx, []string{p2}, matsteer.TrainOptions{Out: out})
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.LoadSteering(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Layer() != 2 || s.Layer() != 2 || r.Method() != steer.MethodMATSteer || r.File().Training["token_mode"] != "response" {
		t.Errorf("steering file from layer-2 response activations: layer %d/%d, method %s, training %v", s.Layer(), r.Layer(), r.Method(), r.File().Training)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Train(cancelled, ex, matsteer.TrainOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Train with a cancelled context: %v", err)
	}
	if err := m.Extract(ctx, ex, filepath.Join(dir, "missing-dir", "x.safetensors"), matsteer.TrainOptions{}); err == nil {
		t.Error("Extract into a missing directory: no error")
	}
}
