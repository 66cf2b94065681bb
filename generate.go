package matsteer

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/matsteer/matsteer/engine"
	"github.com/matsteer/matsteer/internal/textstream"
	"github.com/matsteer/matsteer/llama"
)

// MaxStops is the most stop sequences a generation takes.
const MaxStops = 16

// Message is one turn of a conversation (Role "system", "user" or
// "assistant").
type Message = llama.ChatMessage

// GenerateOptions configure one generation. The zero value generates
// greedily, unsteered, until the model ends its turn or the context is
// full.
type GenerateOptions struct {
	// MaxTokens is the most tokens to generate (0: until the end of the
	// turn or the context is full).
	MaxTokens int
	// Sampler chooses tokens (the zero value is greedy; see
	// llama.SamplerParams for temperature, top-k, top-p, seed, ...).
	Sampler llama.SamplerParams
	// Stop ends generation before the first of these strings (at most
	// MaxStops, none empty); the text never includes it.
	Stop []string
	// Steer steers this generation only (the zero value: unsteered).
	Steer Steer
	// System is a system message for Generate's chat template.
	System string
	// Raw makes Generate use the prompt as the model's whole input
	// (special-token text such as "<|im_start|>" is parsed) instead of
	// wrapping it as a user turn in the model's chat template.
	Raw bool
}

// Result summarises a generation.
type Result struct {
	PromptTokens    int
	CachedTokens    int // prompt tokens whose KV entries came from the prompt cache
	GeneratedTokens int
	// StopReason: "eog" (the model ended its turn), "stop" (a Stop
	// string), "max_tokens", "context_full", "callback" (the callback
	// returned llama.ErrStop) or "cancelled".
	StopReason string
	Duration   time.Duration
}

func (o *GenerateOptions) check() error {
	if o.MaxTokens < 0 {
		return fmt.Errorf("GenerateOptions.MaxTokens %d is negative", o.MaxTokens)
	}
	if err := o.Sampler.Validate(); err != nil {
		return fmt.Errorf("GenerateOptions.Sampler: %w", err)
	}
	if len(o.Stop) > MaxStops {
		return fmt.Errorf("GenerateOptions.Stop has %d strings, at most %d are allowed", len(o.Stop), MaxStops)
	}
	for i, s := range o.Stop {
		if s == "" {
			return fmt.Errorf("GenerateOptions.Stop[%d] is empty", i)
		}
	}
	return nil
}

// Generate generates a reply to prompt and calls onText (on the caller's
// goroutine) with each piece of text as it is generated; pieces are whole
// UTF-8 characters. The prompt is wrapped as a user turn (after
// opts.System, if set) in the model's chat template; with opts.Raw, or for
// a model without a template, it is used as is. onText returning
// llama.ErrStop ends generation normally; another error ends it and is
// returned. Cancelling ctx stops it within one decode step and returns
// ctx's error. Generate is safe for concurrent use: concurrent calls are
// decoded together in one batch, each with its own steering.
func (m *Model) Generate(ctx context.Context, prompt string, opts GenerateOptions, onText func(text string) error) (Result, error) {
	if opts.Raw || m.llm.ChatTemplate() == "" {
		return m.generate(ctx, prompt, opts, onText)
	}
	var msgs []Message
	if opts.System != "" {
		msgs = append(msgs, Message{Role: "system", Content: opts.System})
	}
	return m.Chat(ctx, append(msgs, Message{Role: "user", Content: prompt}), opts, onText)
}

// Chat continues a conversation: msgs are formatted with the model's chat
// template (an assistant turn is opened at the end) and the reply is
// streamed to onText as in Generate. opts.System and opts.Raw are not used.
// A model without a chat template gets the messages' contents, one per
// line.
func (m *Model) Chat(ctx context.Context, msgs []Message, opts GenerateOptions, onText func(text string) error) (Result, error) {
	if len(msgs) == 0 {
		return Result{}, errors.New("matsteer: Chat: no messages")
	}
	for i, msg := range msgs {
		switch msg.Role {
		case "system", "user", "assistant":
		default:
			return Result{}, fmt.Errorf("matsteer: Chat: message %d has role %q (want system, user or assistant)", i, msg.Role)
		}
	}
	var text string
	if m.llm.ChatTemplate() == "" {
		var b strings.Builder
		for _, msg := range msgs {
			b.WriteString(msg.Content)
			b.WriteString("\n")
		}
		text = b.String()
	} else {
		var err error
		if text, err = m.llm.ApplyChatTemplate("", msgs, true); err != nil {
			return Result{}, fmt.Errorf("matsteer: chat template: %w", err)
		}
	}
	return m.generate(ctx, text, opts, onText)
}

// GenerateText is Generate returning the whole text at once.
func (m *Model) GenerateText(ctx context.Context, prompt string, opts GenerateOptions) (string, Result, error) {
	var b strings.Builder
	res, err := m.Generate(ctx, prompt, opts, func(t string) error {
		b.WriteString(t)
		return nil
	})
	return b.String(), res, err
}

// Stream is Generate as an iterator over the generated pieces of text.
// An error ends the sequence as its last element (with an empty piece);
// breaking out of the loop stops the generation.
//
//	for piece, err := range m.Stream(ctx, "Hello", opts) {
//		if err != nil { ... }
//		fmt.Print(piece)
//	}
func (m *Model) Stream(ctx context.Context, prompt string, opts GenerateOptions) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		stopped := false
		_, err := m.Generate(ctx, prompt, opts, func(t string) error {
			if !yield(t, nil) {
				stopped = true
				return llama.ErrStop
			}
			return nil
		})
		if err != nil && !stopped {
			yield("", err)
		}
	}
}

// generate runs one generation of text on the engine.
func (m *Model) generate(ctx context.Context, text string, opts GenerateOptions, onText func(string) error) (Result, error) {
	if onText == nil {
		return Result{}, errors.New("matsteer: nil text callback")
	}
	if err := opts.check(); err != nil {
		return Result{}, fmt.Errorf("matsteer: %w", err)
	}
	opCtx, done, err := m.use(ctx)
	if err != nil {
		return Result{}, err
	}
	defer done()
	toks, err := m.llm.Tokenize(text, true, true)
	if err != nil {
		return Result{}, fmt.Errorf("matsteer: tokenize prompt: %w", err)
	}
	res := Result{PromptTokens: len(toks)}
	if len(toks) == 0 {
		return res, errors.New("matsteer: the prompt is empty")
	}
	if len(toks) >= m.opts.NCtx {
		return res, &ContextError{Tokens: len(toks) + 1, NCtx: m.opts.NCtx}
	}
	st, err := m.prepare(opts.Steer)
	if err != nil {
		return res, fmt.Errorf("matsteer: %w", err)
	}
	req := engine.Request{Prompt: toks, MaxTokens: opts.MaxTokens, Sampler: opts.Sampler, SteeringKey: st.key}
	if len(st.ivs) > 0 {
		req.Steering, req.MoreSteering = st.ivs[0], st.ivs[1:]
	}
	stream := textstream.NewStream(opts.Stop)
	var cbErr error
	emit := func(t string) error {
		if t == "" || cbErr != nil {
			return nil
		}
		if err := onText(t); err != nil {
			cbErr = err
			return err
		}
		return nil
	}
	er, err := m.eng.Generate(opCtx, req, func(_ llama.Token, piece string) error {
		t, hit := stream.Push(piece)
		if err := emit(t); err != nil {
			return err
		}
		if hit {
			return llama.ErrStop
		}
		return nil
	})
	res.CachedTokens, res.GeneratedTokens, res.StopReason, res.Duration = er.CachedTokens, er.GeneratedTokens, er.StopReason, er.Duration
	if stream.Stopped() {
		res.StopReason = "stop"
	}
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return res, ctx.Err()
		case opCtx.Err() != nil: // Close
			return res, ErrClosed
		case errors.Is(err, engine.ErrClosed) || errors.Is(err, engine.ErrQueueFull) || (cbErr != nil && err == cbErr):
			return res, err
		}
		return res, fmt.Errorf("matsteer: generate: %w", err)
	}
	if err := emit(stream.Flush()); err != nil && !errors.Is(err, llama.ErrStop) {
		return res, err
	}
	return res, nil
}
