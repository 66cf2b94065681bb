// Command chat is a steered chat in a loop: each line of standard input is
// a user turn, and the model's reply streams to standard output.
//
//	go run ./examples/chat -steer steer.gguf -strength positivity=2,formality=0
package main

import (
	"bufio"
	"context"
	"errors"
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
	steerFile := flag.String("steer", "", "steering file (none: unsteered)")
	strength := flag.String("strength", "", "per-attribute strengths, name=x[,name=x...]")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	m, err := matsteer.Open(*model, matsteer.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	opts := matsteer.GenerateOptions{MaxTokens: 128}
	if *steerFile != "" {
		s, err := m.LoadSteering(*steerFile)
		strengths, err2 := steer.ParseStrengths([]string{*strength})
		if err = errors.Join(err, err2); err != nil {
			log.Fatal(err)
		}
		opts.Steer = matsteer.Steer{Files: []*matsteer.Steering{s}, Strengths: strengths}
	}

	var history []matsteer.Message
	in := bufio.NewScanner(os.Stdin)
	for fmt.Print("> "); in.Scan(); fmt.Print("> ") {
		history = append(history, matsteer.Message{Role: "user", Content: in.Text()})
		var reply strings.Builder
		_, err := m.Chat(ctx, history, opts, func(text string) error {
			reply.WriteString(text)
			_, err := fmt.Print(text)
			return err
		})
		fmt.Println()
		if errors.Is(err, matsteer.ErrContextFull) {
			fmt.Println("(the conversation no longer fits the context: starting over)")
			history = nil
			continue
		} else if err != nil {
			log.Fatal(err)
		}
		history = append(history, matsteer.Message{Role: "assistant", Content: reply.String()})
	}
}
