package matsteer_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/matsteer/matsteer"
	"github.com/matsteer/matsteer/llama"
)

// The quick start of the package documentation and README.md: open the
// default model, train a steering file on the demo data and generate with
// it. It needs the default model (`make model`); TestQuickStart runs it.
func Example() {
	ctx := context.Background()
	m, err := matsteer.Open("", matsteer.Options{}) // "": the default model (matsteer model pull)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	s, err := m.TrainJSONL(ctx, "demo/data/demo.jsonl", matsteer.TrainOptions{})
	if err != nil {
		log.Fatal(err)
	}
	steer := matsteer.Steer{Files: []*matsteer.Steering{s}, Strengths: map[string]float64{"positivity": 2, "formality": 0}}
	text, _, err := m.GenerateText(ctx, "Describe a rainy Monday at work.", matsteer.GenerateOptions{MaxTokens: 40, Steer: steer})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(text)
}

// tinyModel opens a tiny model with random weights, built in memory, in
// place of a real one (matsteer.Open): the examples then run anywhere.
// Its text is noise.
func tinyModel() (*matsteer.Model, func()) {
	llm, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		log.Fatal(err)
	}
	m, err := matsteer.Wrap(llm, matsteer.Options{Threads: 2, NCtx: 256, Parallel: 2})
	if err != nil {
		log.Fatal(err)
	}
	return m, func() { m.Close(); llm.Close() }
}

// tinyExamples are labelled texts of one attribute, "tone".
func tinyExamples() []matsteer.Example {
	var ex []matsteer.Example
	for _, q := range []string{"How was the trip?", "How is the weather?", "How did the meeting go?", "How was dinner?"} {
		prompt := "Q: " + q + "\nA:"
		ex = append(ex,
			matsteer.Example{Attribute: "tone", Positive: true, Prompt: prompt, Response: " Lovely, thank you for asking!"},
			matsteer.Example{Attribute: "tone", Positive: false, Prompt: prompt, Response: " awful. whatever."})
	}
	return ex
}

// Train a steering file from examples in memory, save it, load it back
// and generate with it.
func ExampleModel_Train() {
	m, closeModel := tinyModel()
	defer closeModel()
	ctx := context.Background()

	dir, err := os.MkdirTemp("", "matsteer-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tone.gguf")
	s, err := m.Train(ctx, tinyExamples(), matsteer.TrainOptions{Out: path})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("trained %v at %s-%d\n", s.Attributes(), s.Site(), s.Layer())

	loaded, err := m.LoadSteering(path)
	if err != nil {
		log.Fatal(err)
	}
	opts := matsteer.GenerateOptions{MaxTokens: 8, Sampler: llama.SamplerParams{IgnoreEOG: true},
		Steer: matsteer.Steer{Files: []*matsteer.Steering{loaded}, Strengths: map[string]float64{"tone": 1.5}}}
	_, res, err := m.GenerateText(ctx, "How was your day?", opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("steered: %d tokens (%s)\n", res.GeneratedTokens, res.StopReason)
	// Output:
	// trained [tone] at l_out-1
	// steered: 8 tokens (max_tokens)
}

// Stream a generation as an iterator; breaking out of the loop stops it.
func ExampleModel_Stream() {
	m, closeModel := tinyModel()
	defer closeModel()

	pieces := 0
	opts := matsteer.GenerateOptions{MaxTokens: 20, Sampler: llama.SamplerParams{IgnoreEOG: true}}
	for piece, err := range m.Stream(context.Background(), "Hello", opts) {
		if err != nil {
			log.Fatal(err)
		}
		_ = piece // fmt.Print(piece) shows the text as it comes
		pieces++
		if pieces == 5 {
			break
		}
	}
	fmt.Println("pieces:", pieces)
	// Output:
	// pieces: 5
}

// Score continuations of a prompt: the log-probability of each, in nats.
func ExampleModel_Score() {
	m, closeModel := tinyModel()
	defer closeModel()

	scores, err := m.Score(context.Background(), "The capital of France is", []string{" Paris", " a small town in Texas"}, matsteer.Steer{})
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range scores {
		fmt.Printf("%d tokens, log-prob < 0: %v\n", len(s.PerToken), s.LogProb < 0)
	}
	// Output:
	// 7 tokens, log-prob < 0: true
	// 22 tokens, log-prob < 0: true
}

// Errors are values to test: a missing model, a strength for an attribute
// that no steering file has.
func ExampleOpen_errors() {
	_, err := matsteer.Open(filepath.Join(os.TempDir(), "no-such-model.gguf"), matsteer.Options{})
	fmt.Println("model not found:", errors.Is(err, matsteer.ErrModelNotFound))

	m, closeModel := tinyModel()
	defer closeModel()
	_, _, err = m.GenerateText(context.Background(), "Hi", matsteer.GenerateOptions{
		Steer: matsteer.Steer{Strengths: map[string]float64{"tone": 2}}})
	var ae *matsteer.AttributeError
	fmt.Println("unknown attribute:", errors.Is(err, matsteer.ErrUnknownAttribute), errors.As(err, &ae) && ae.Names[0] == "tone")
	// Output:
	// model not found: true
	// unknown attribute: true true
}
