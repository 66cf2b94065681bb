// Command trainapply trains a steering file on labelled examples in a JSONL
// file (the format `matsteer extract` reads), saves it, and generates a
// reply to one prompt without and with it.
//
//	go run ./examples/trainapply -data demo/data/demo.jsonl -out steer.gguf -strength positivity=2,formality=0
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"

	"github.com/matsteer/matsteer"
	"github.com/matsteer/matsteer/steer"
)

func main() {
	model := flag.String("model", "", "GGUF model (default: the cached default model)")
	data := flag.String("data", "demo/data/demo.jsonl", "labelled examples, JSONL")
	out := flag.String("out", "steer.gguf", "steering file to write")
	layer := flag.Int("layer", 0, "block to steer (0: 2/5 of the model's depth)")
	prompt := flag.String("prompt", "Describe a rainy Monday at work.", "prompt")
	strength := flag.String("strength", "positivity=2,formality=0", "per-attribute strengths, name=x[,name=x...]")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	m, err := matsteer.Open(*model, matsteer.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	strengths, err := steer.ParseStrengths([]string{*strength})
	if err != nil {
		log.Fatal(err)
	}
	s, err := m.TrainJSONL(ctx, *data, matsteer.TrainOptions{Layer: *layer, Out: *out, Progress: os.Stderr})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s: %s at %s-%d\n", *out, strings.Join(s.Attributes(), ", "), s.Site(), s.Layer())

	for _, st := range []matsteer.Steer{{}, {Files: []*matsteer.Steering{s}, Strengths: strengths}} {
		text, _, err := m.GenerateText(ctx, *prompt, matsteer.GenerateOptions{MaxTokens: 40, Steer: st})
		if err != nil {
			log.Fatal(err)
		}
		label := "unsteered"
		if len(st.Files) > 0 {
			label = "steered (" + *strength + ")"
		}
		fmt.Printf("%s: %s\n", label, strings.ReplaceAll(text, "\n", " "))
	}
}
