// Package matsteer steers language models at inference time with MAT-Steer
// (multi-attribute, token-gated activation steering; Nguyen et al., arXiv
// 2502.12446) on GGUF models run by llama.cpp. Start here: this package
// covers the common paths in a few calls, and the packages below it stay
// available for everything else.
//
// # Quick start
//
// Open a model, train a steering file from labelled examples, and generate
// with it (the same code is the package Example, which go test compiles and
// runs on the default model):
//
//	ctx := context.Background()
//	m, err := matsteer.Open("", matsteer.Options{}) // "": the default model (matsteer model pull)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer m.Close()
//	s, err := m.TrainJSONL(ctx, "demo/data/demo.jsonl", matsteer.TrainOptions{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	steer := matsteer.Steer{Files: []*matsteer.Steering{s}, Strengths: map[string]float64{"positivity": 2, "formality": 0}}
//	text, _, err := m.GenerateText(ctx, "Describe a rainy Monday at work.", matsteer.GenerateOptions{MaxTokens: 40, Steer: steer})
//	if err != nil {
//		log.Fatal(err)
//	}
//	fmt.Println(text)
//
// # What is here
//
//   - Open loads a model (the cached default, or any GGUF path) with
//     Options for threads, context length, GPU layers, llama.cpp RPC
//     servers and parallel sequences; Wrap builds a Model on a llama.Model
//     loaded elsewhere.
//   - Model.LoadSteering and ReadSteering read steering files
//     (`matsteer train` writes them); Steering.Save writes one.
//   - Model.Generate, Chat, Stream (an iter.Seq2) and GenerateText
//     generate text, each call with its own Steer: which files, per-attribute
//     strengths s_t and the global strength α. They honour context
//     cancellation.
//   - Model.Score gives the log-probability of continuations of a prompt,
//     steered or not.
//   - Model.Train (examples in memory), Model.TrainJSONL (a JSONL file) and
//     TrainActivations (activation files) build a Steering; Model.Extract
//     writes an activation file.
//
// Errors a caller may want to handle match, with errors.Is,
// ErrModelNotFound, ErrWrongWidth (a steering file made for another
// model), ErrUnknownAttribute (a strength for an attribute no file has),
// ErrContextFull (the prompt does not fit), ErrQueueFull and ErrClosed;
// errors.As gives the details (ModelNotFoundError, WidthError,
// AttributeError, ContextError).
//
// # Concurrency
//
// A Model is safe for concurrent use. Every generation goes through one
// batched engine (package engine): one llama.cpp context decodes up to
// Options.Parallel generations together, each with its own steering,
// which touches only that generation's rows; further callers wait in a
// bounded queue (Options.Queue, then ErrQueueFull). A prompt prefix that
// an earlier generation with identical steering decoded is reused from the
// KV memory (Result.CachedTokens). Score calls take turns on a second
// context; Train and Extract calls each create a context of their own.
// Steering values are immutable and may be shared by any number of calls.
// Close cancels whatever is running.
//
// # The packages below
//
//   - engine: the batched generation engine this package drives.
//   - intervene: applies a steering file to a running llama.cpp context
//     (gated interventions, per-sequence routing).
//   - steer: the steering file format and MAT-Steer training (pure Go).
//   - extract, acts, datasets: activation capture, activation files, data
//     loaders.
//   - eval: multiple-choice evaluation, KL retention, calibration.
//   - llama, hooks: the cgo binding to llama.cpp and its graph hooks.
//   - models: the default models, their cache and download.
//   - server: the OpenAI-compatible HTTP server of `matsteer serve`.
package matsteer
